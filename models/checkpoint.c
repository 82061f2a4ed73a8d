/* checkpoint.c - load and save reward model directories (checkpoint.h). */
#include "models/checkpoint.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/safetensors.h"

/* PyTorch's cubic convolution kernel with A = -0.75 (upsample_bicubic2d) */
static void cubic_coeffs(float t, float c[4]) {
    const float A = -0.75f;
    float x1 = t + 1, x2 = t, x3 = 1 - t, x4 = 2 - t;
    c[0] = ((A * x1 - 5 * A) * x1 + 8 * A) * x1 - 4 * A;
    c[1] = ((A + 2) * x2 - (A + 3)) * x2 * x2 + 1;
    c[2] = ((A + 2) * x3 - (A + 3)) * x3 * x3 + 1;
    c[3] = ((A * x4 - 5 * A) * x4 + 8 * A) * x4 - 4 * A;
}

/* bicubic resize of a (C, gi, gi) grid stored as (gi*gi, C) rows into (go*go, C) rows */
static void pos_embed_resize(const float *in, int gi, float *out, int go, int C) {
    float scale = (float)gi / (float)go;
    for (int oy = 0; oy < go; oy++) {
        /* align_corners=False source index, not clamped for cubic (as PyTorch) */
        float sy = scale * (oy + 0.5f) - 0.5f;
        int iy = (int)floorf(sy);
        float cy[4];
        cubic_coeffs(sy - iy, cy);
        for (int ox = 0; ox < go; ox++) {
            float sx = scale * (ox + 0.5f) - 0.5f;
            int ix = (int)floorf(sx);
            float cx[4];
            cubic_coeffs(sx - ix, cx);
            for (int c = 0; c < C; c++) {
                float rows[4];
                for (int k = 0; k < 4; k++) {
                    int y = iy - 1 + k;
                    y = y < 0 ? 0 : y >= gi ? gi - 1 : y;
                    float acc = 0;
                    for (int j = 0; j < 4; j++) {
                        int x = ix - 1 + j;
                        x = x < 0 ? 0 : x >= gi ? gi - 1 : x;
                        acc += in[(size_t)(y * gi + x) * C + c] * cx[j];
                    }
                    rows[k] = acc;
                }
                out[(size_t)(oy * go + ox) * C + c] =
                    rows[0] * cy[0] + rows[1] * cy[1] + rows[2] * cy[2] + rows[3] * cy[3];
            }
        }
    }
}

static int load_pos(RewardModel *m, const SafeTensors *st, const StEntry *e, LoadReport *rep) {
    const ModelConfig *cfg = &m->cfg;
    int C = cfg->vision.hidden, G = config_grid(cfg);
    int G0 = cfg->vision.image_size / cfg->vision.patch;
    if (G0 == G) return st_check_shape(st, e, 3, (int[]){1, G * G + 1, C}) ||
                        st_read_f32(st, e, tensor_f32(m->pos), m->pos->numel);
    if (st_check_shape(st, e, 3, (int[]){1, G0 * G0 + 1, C})) return -1;
    float *old = xmalloc(e->numel * sizeof(float));
    int rc = st_read_f32(st, e, old, e->numel);
    if (rc == 0) {
        float *dst = tensor_f32(m->pos);
        memcpy(dst, old, C * sizeof(float)); /* the CLS entry is kept */
        pos_embed_resize(old + C, G0, dst + C, G, C);
        rep->pos_resized_from = G0;
    }
    free(old);
    return rc;
}

int rm_load(RewardModel *m, const char *dir, Device d, const int freeze[PG_COUNT], uint64_t seed,
            LoadReport *rep) {
    return rm_load_ex(m, dir, d, freeze, seed, 0, -1, NULL, NULL, rep);
}

int rm_load_ex(RewardModel *m, const char *dir, Device d, const int freeze[PG_COUNT],
               uint64_t seed, int force_image_size, double drop_path_rate, const LoraConfig *lora,
               const char *adapter, LoadReport *rep) {
    LoadReport local;
    LoraConfig from_adapter;
    if (adapter) {
        if (lora_read_config(adapter, &from_adapter)) return -1;
        lora = &from_adapter;
    }
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    char path[4096];
    if (!fs_join(path, sizeof path, dir, "config.json")) return -1;
    ModelConfig cfg;
    if (config_load(path, &cfg) != 0) return -1;
    if (force_image_size > 0) cfg.image_size = force_image_size;
    if (drop_path_rate >= 0) cfg.vision.drop_path_rate = drop_path_rate;
    if (config_validate(&cfg, path) != 0) return -1;
    if (lora && lora->r > 0 && lora_check(lora, &cfg, adapter ? adapter : "LoRA")) return -1;
    ModelWeights *w = mw_open(dir);
    if (!w) return -1;
    RewardModel tmp;
    rm_create_lora(&tmp, &cfg, DEV_CPU, freeze, lora); /* filled on the host, moved at the end */
    int rc = 0, n_read = 0;
    StDType disk = ST_F32; /* of the first tensor read; "mixed" when another differs */
    int mixed = 0;
    for (int i = 0; i < tmp.ps.n && rc == 0; i++) {
        Tensor *t = params_get(&tmp.ps, i);
        if (tmp.ps.group[i] == PG_LORA) continue;
        const SafeTensors *st;
        const StEntry *e = mw_find(w, t->name, &st);
        if (!e) {
            if (t == tmp.score) {
                rm_init_score(&tmp, seed);
                rep->score_initialised = 1;
                continue;
            }
            mmrm_set_error("%s: tensor %s is missing (the model's config needs it; is this an "
                           "InternVL2 checkpoint with this config.json?)", dir, t->name);
            rc = -1;
            break;
        }
        if (n_read++ == 0) disk = e->dtype;
        mixed |= e->dtype != disk;
        if (t == tmp.pos)
            rc = load_pos(&tmp, st, e, rep);
        else
            rc = st_check_shape(st, e, t->ndim, t->shape) || st_read_f32(st, e, tensor_f32(t), t->numel);
        rep->n_loaded += rc == 0;
    }
    if (rc == 0 && tmp.lora_of) {
        lora_init(&tmp, seed);
        if (adapter) rc = lora_load_weights(&tmp, adapter);
    }
    if (rc == 0) {
        for (int i = 0; i < mw_count(w); i++)
            if (!params_find(&tmp.ps, mw_get(w, i, NULL)->name)) rep->n_ignored++;
        snprintf(rep->disk_dtype, sizeof rep->disk_dtype, "%s",
                 mixed ? "mixed" : st_dtype_name(disk));
        /* the model now holds the run-size grid: a save must not resize again */
        tmp.cfg.vision.image_size = tmp.cfg.image_size;
        rm_to_device(&tmp, d);
        *m = tmp;
    } else {
        rm_free(&tmp);
    }
    mw_close(w);
    return rc ? -1 : 0;
}

int rm_save(const RewardModel *m, const char *dir, const char *dtype) {
    StDType dt;
    const char *torch_dtype; /* config.json's name for it, as save_pretrained writes */
    if (!strcmp(dtype, "F32")) dt = ST_F32, torch_dtype = "float32";
    else if (!strcmp(dtype, "BF16")) dt = ST_BF16, torch_dtype = "bfloat16";
    else {
        mmrm_set_error("save dtype \"%s\": valid: F32, BF16", dtype);
        return -1;
    }
    if (fs_mkdir_p(dir) != 0) return -1;
    int n = m->ps.n;
    float *host_copy;
    const float *base = params_host(&m->ps, m->ps.data, m->ps.numel, &host_copy);
    StTensorOut *t = xcalloc(n, sizeof *t);
    int k = 0;
    for (int i = 0; i < n; i++) {
        const Tensor *p = &m->ps.params[i];
        if (m->ps.group[i] == PG_LORA) continue;
        t[k].name = p->name;
        t[k].src = DT_F32;
        t[k].dtype = dt;
        t[k].ndim = p->ndim;
        for (int j = 0; j < p->ndim; j++) t[k].shape[j] = p->shape[j];
        t[k].data = base + ((const float *)p->data - m->ps.data);
        k++;
    }
    StMeta meta[1] = {{"format", "pt"}};
    /* 5 GB shards like HF save_pretrained's default */
    int rc = st_save_sharded(dir, t, k, meta, 1, (size_t)5 << 30);
    free(t);
    free(host_copy);
    if (rc != 0) return -1;
    char path[4096];
    if (!fs_join(path, sizeof path, dir, "config.json")) return -1;
    return config_save(&m->cfg, path, torch_dtype);
}
