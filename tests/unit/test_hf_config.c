/* test_hf_config.c - mmrm against the InternVL2 config.json files as published
 * (tests/fixtures/hf_configs/): they parse with their real sizes, load -> save keeps every key
 * and value they have (numbers as written: 2.0 stays 2.0), a config built in code is saved with the keys HF's loaders read, and a
 * checkpoint stored in F16 is reported as F16. Run from the repository root. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/checkpoint.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/safetensors.h"
#include "tests/harness.h"

#define HF_CONFIGS "tests/fixtures/hf_configs/"
#define SMALL_MODEL "tests/fixtures/model/qwen2_gqa" /* a small model directory to start from */

static int load_published(const char *name, ModelConfig *c) {
    char path[256];
    snprintf(path, sizeof path, HF_CONFIGS "%s/config.json", name);
    return CHECK(config_load(path, c) == 0, "%s: %s", path, mmrm_last_error()) ? 0 : -1;
}

/* the InternViT-300M-448px tower and connector geometry all InternVL2 sizes share */
static void check_vit_300m(const char *name, const ModelConfig *c) {
    const VisionConfig *v = &c->vision;
    CHECK(v->hidden == 1024 && v->heads == 16 && v->intermediate == 4096 && v->layers == 24 &&
              v->image_size == 448 && v->patch == 14 && v->channels == 3,
          "%s: vision sizes %d/%d/%d/%d image %d patch %d", name, v->hidden, v->heads,
          v->intermediate, v->layers, v->image_size, v->patch);
    CHECK(v->qkv_bias && !v->qk_norm && !v->rms_norm && v->eps == 1e-6 && v->drop_path_rate == 0,
          "%s: vision flags qkv_bias %d qk_norm %d rms %d eps %g", name, v->qkv_bias, v->qk_norm,
          v->rms_norm, v->eps);
    CHECK(c->image_size == 448 && c->downsample_ratio == 0.5 && c->select_layer == -1 &&
              config_tokens_per_tile(c) == 256,
          "%s: image %d ratio %g select %d tokens/tile %d", name, c->image_size,
          c->downsample_ratio, c->select_layer, config_tokens_per_tile(c));
    CHECK(c->has_tiling && c->dynamic_image_size && c->use_thumbnail && c->min_dynamic_patch == 1 &&
              c->max_dynamic_patch == 12,
          "%s: tiling %d %d %d..%d", name, c->dynamic_image_size, c->use_thumbnail,
          c->min_dynamic_patch, c->max_dynamic_patch);
}

TEST(test_hf_published_internvl2_1b_config_parses_with_qwen2_0_5b_sizes) {
    ModelConfig c;
    if (load_published("InternVL2-1B", &c)) return;
    check_vit_300m("InternVL2-1B", &c);
    const LlmConfig *l = &c.llm;
    CHECK(l->arch == LLM_QWEN2 && l->hidden == 896 && l->layers == 24 && l->heads == 14 &&
              l->kv_heads == 2 && l->head_dim == 64 && l->intermediate == 4864 &&
              l->vocab == 151655 && l->max_positions == 32768,
          "llm %s %d/%d layers %d heads %d kv %d hd %d I %d V %d", llm_arch_name(l->arch),
          l->hidden, l->layers, l->heads, l->kv_heads, l->head_dim, l->intermediate, l->vocab,
          l->max_positions);
    CHECK(l->rope_theta == 1e6 && l->rms_eps == 1e-6, "rope theta %g rms eps %g", l->rope_theta,
          l->rms_eps);
    CHECK(!strcmp(c.template_name, "Hermes-2"), "template %s", c.template_name);
}

TEST(test_hf_published_internvl2_8b_config_parses_with_internlm2_5_7b_sizes) {
    ModelConfig c;
    if (load_published("InternVL2-8B", &c)) return;
    check_vit_300m("InternVL2-8B", &c);
    const LlmConfig *l = &c.llm;
    CHECK(l->arch == LLM_INTERNLM2 && l->hidden == 4096 && l->layers == 32 && l->heads == 32 &&
              l->kv_heads == 8 && l->head_dim == 128 && l->intermediate == 14336 &&
              l->vocab == 92553 && l->max_positions == 32768,
          "llm %s %d layers %d heads %d kv %d hd %d I %d V %d", llm_arch_name(l->arch), l->hidden,
          l->layers, l->heads, l->kv_heads, l->head_dim, l->intermediate, l->vocab);
    CHECK(l->rope_theta == 1e6 && l->rms_eps == 1e-5, "rope theta %g rms eps %g", l->rope_theta,
          l->rms_eps);
    CHECK(!strcmp(c.template_name, "internlm2-chat"), "template %s", c.template_name);
}

static cJSON *read_json(const char *path) {
    size_t n;
    char *text = fs_read_file(path, &n);
    cJSON *j = text ? cJSON_ParseWithLength(text, n) : NULL;
    free(text);
    return j;
}

/* every key of want (recursively through objects) is in got with an equal value; prefix
 * names the object in messages */
static int keeps_every_key(const cJSON *want, const cJSON *got, const char *file, const char *prefix) {
    int ok = 1;
    const cJSON *w;
    cJSON_ArrayForEach(w, want) {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(got, w->string);
        char where[160];
        snprintf(where, sizeof where, "%s%s", prefix, w->string);
        if (!CHECK(g != NULL, "%s: key \"%s\" was dropped", file, where)) {
            ok = 0;
        } else if (cJSON_IsObject(w) && cJSON_IsObject(g)) {
            char sub[170];
            snprintf(sub, sizeof sub, "%s.", where);
            ok &= keeps_every_key(w, g, file, sub);
        } else if (!CHECK(cJSON_Compare(w, g, 1), "%s: key \"%s\" changed value", file, where)) {
            ok = 0;
        }
    }
    return ok;
}

TEST(test_hf_config_load_save_keeps_every_published_key_and_value) {
    const char *names[] = {"InternVL2-1B", "InternVL2-8B"};
    /* what mmrm adds to a published config: its own keys */
    const char *added[] = {"img_context_token_id", "initializer_range"};
    char out[256];
    snprintf(out, sizeof out, "/tmp/mmrm_test_%d_hf_config.json", (int)getpid());
    for (int k = 0; k < 2; k++) {
        ModelConfig c, d;
        if (load_published(names[k], &c)) return;
        /* published weights are bf16: saving as bf16 leaves torch_dtype as it was */
        if (!CHECK(config_save(&c, out, "bfloat16") == 0, "save: %s", mmrm_last_error())) return;
        char in[256];
        snprintf(in, sizeof in, HF_CONFIGS "%s/config.json", names[k]);
        cJSON *want = read_json(in), *got = read_json(out);
        if (CHECK(want && got, "%s or its saved copy does not parse", in)) {
            keeps_every_key(want, got, names[k], "");
            const cJSON *g;
            cJSON_ArrayForEach(g, got) {
                int known = cJSON_GetObjectItemCaseSensitive(want, g->string) != NULL;
                for (size_t a = 0; a < sizeof added / sizeof added[0]; a++)
                    known |= !strcmp(g->string, added[a]);
                CHECK(known, "%s: saved config has an unexpected top-level key \"%s\"", names[k],
                      g->string);
            }
        }
        cJSON_Delete(want);
        cJSON_Delete(got);
        /* numbers keep their text: Python reads 2.0 as a float and 2 as an int */
        char *text = fs_read_file(out, NULL);
        struct { const char *name, *key, *want; } num[] = {
            {"InternVL2-1B", "rope_theta", "1000000.0"}, {"InternVL2-1B", "temperature", "1.0"},
            {"InternVL2-1B", "layer_norm_eps", "1e-06"}, {"InternVL2-8B", "factor", "2.0"},
            {"InternVL2-8B", "rope_theta", "1000000"}, {"InternVL2-8B", "downsample_ratio", "0.5"},
        };
        for (size_t i = 0; text && i < sizeof num / sizeof num[0]; i++) {
            if (strcmp(num[i].name, names[k])) continue;
            char key[64];
            snprintf(key, sizeof key, "\"%s\":", num[i].key);
            const char *at = strstr(text, key);
            at = at ? at + strlen(key) + strspn(at + strlen(key), " \t") : NULL;
            CHECK(at && !strncmp(at, num[i].want, strlen(num[i].want)) &&
                      strchr(",\n}", at[strlen(num[i].want)]),
                  "%s: \"%s\" is written as %.12s, published as %s", names[k], num[i].key,
                  at ? at : "(absent)", num[i].want);
        }
        free(text);
        /* and mmrm reads back what it wrote */
        CHECK(config_load(out, &d) == 0, "reload: %s", mmrm_last_error());
        CHECK(d.llm.arch == c.llm.arch && d.llm.hidden == c.llm.hidden && d.llm.vocab == c.llm.vocab &&
                  d.llm.rope_theta == c.llm.rope_theta && d.vision.layers == c.vision.layers &&
                  !strcmp(d.template_name, c.template_name) && d.max_dynamic_patch == 12,
              "%s: reloaded config differs", names[k]);
    }
    unlink(out);
}

TEST(test_hf_config_built_in_code_is_saved_with_the_keys_hf_loaders_read) {
    ModelConfig c, d;
    if (load_published("InternVL2-8B", &c)) return;
    /* the same sizes with no source file: what `mmrm init` writes for a config made in code */
    c.source[0] = 0;
    char out[256];
    snprintf(out, sizeof out, "/tmp/mmrm_test_%d_hf_scratch.json", (int)getpid());
    if (!CHECK(config_save(&c, out, "float32") == 0, "save: %s", mmrm_last_error())) return;
    cJSON *j = read_json(out);
    const cJSON *lc = cJSON_GetObjectItemCaseSensitive(j, "llm_config");
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(j, "vision_config");
    struct { const cJSON *obj; const char *key, *want; } str[] = {
        {j, "model_type", "internvl_chat"}, {j, "torch_dtype", "float32"},
        {lc, "model_type", "internlm2"}, {lc, "hidden_act", "silu"}, {lc, "torch_dtype", "float32"},
        {vc, "model_type", "intern_vit_6b"}, {vc, "hidden_act", "gelu"}, {vc, "torch_dtype", "float32"},
    };
    for (size_t i = 0; i < sizeof str / sizeof str[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(str[i].obj, str[i].key);
        CHECK(cJSON_IsString(v) && !strcmp(v->valuestring, str[i].want), "key %s: want \"%s\"",
              str[i].key, str[i].want);
    }
    const cJSON *archs[] = {cJSON_GetObjectItemCaseSensitive(j, "architectures"),
                            cJSON_GetObjectItemCaseSensitive(lc, "architectures"),
                            cJSON_GetObjectItemCaseSensitive(vc, "architectures")};
    const char *want_arch[] = {"InternVLChatModel", "InternLM2ForCausalLM", "InternVisionModel"};
    for (int i = 0; i < 3; i++) {
        const cJSON *a0 = cJSON_GetArrayItem(archs[i], 0);
        CHECK(cJSON_IsString(a0) && !strcmp(a0->valuestring, want_arch[i]), "architectures[0] %s",
              want_arch[i]);
    }
    CHECK(!cJSON_GetObjectItemCaseSensitive(j, "auto_map"),
          "auto_map names remote code mmrm does not ship: only kept when the input had it");
    cJSON_Delete(j);
    CHECK(config_load(out, &d) == 0 && d.llm.arch == LLM_INTERNLM2 && d.llm.kv_heads == 8,
          "reload: %s", mmrm_last_error());
    unlink(out);
}

/* ---- F16 checkpoints ---- */

static uint16_t f16_of(float f) { /* exact for the values used below */
    if (f == 0) return 0;
    uint32_t b;
    memcpy(&b, &f, 4);
    uint32_t sign = (b >> 16) & 0x8000, exp = (b >> 23) & 0xff, man = b & 0x7fffff;
    return (uint16_t)(sign | ((exp - 127 + 15) << 10) | (man >> 13));
}

/* values of the form j/8, exact in F16, so a read-back is checked bit for bit */
static float pattern(size_t k) { return (float)((int)(k % 17) - 8) / 8.0f; }

/* rewrites dir/model.safetensors with every tensor in F16 except those named in keep_f32 */
static int write_f16_copy(const char *dir, const char *keep_f32) {
    char path[300];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    SafeTensors *st = st_open(path);
    if (!st) return -1;
    cJSON *hdr = cJSON_CreateObject();
    size_t off = 0;
    int n = st_count(st);
    for (int i = 0; i < n; i++) {
        const StEntry *e = st_get(st, i);
        int f32 = keep_f32 && !strcmp(e->name, keep_f32);
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "dtype", f32 ? "F32" : "F16");
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int k = 0; k < e->ndim; k++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[k]));
        size_t bytes = e->numel * (f32 ? 4 : 2);
        cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + bytes)));
        cJSON_AddItemToObject(hdr, e->name, t);
        off += bytes;
    }
    char *h = cJSON_PrintUnformatted(hdr);
    uint64_t hlen = strlen(h);
    unsigned char *data = xcalloc(off ? off : 1, 1);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const StEntry *e = st_get(st, i);
        int f32 = keep_f32 && !strcmp(e->name, keep_f32);
        for (size_t k = 0; k < e->numel; k++) {
            float v = pattern(k);
            if (f32) memcpy(data + at + 4 * k, &v, 4);
            else {
                uint16_t x = f16_of(v);
                memcpy(data + at + 2 * k, &x, 2);
            }
        }
        at += e->numel * (f32 ? 4 : 2);
    }
    st_close(st);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(&hlen, 8, 1, f) == 1 && fwrite(h, 1, hlen, f) == hlen &&
             fwrite(data, 1, off, f) == off;
    if (f) ok &= fclose(f) == 0;
    free(h);
    free(data);
    cJSON_Delete(hdr);
    return ok ? 0 : -1;
}

TEST(test_checkpoint_stored_in_f16_is_reported_as_f16_and_mixed_when_not_all_are) {
    RewardModel m;
    if (!CHECK(rm_load(&m, SMALL_MODEL, DEV_CPU, NULL, 1, NULL) == 0, "%s",
               mmrm_last_error()))
        return;
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/mmrm_test_%d_f16", (int)getpid());
    CHECK(rm_save(&m, dir, "F32") == 0, "save: %s", mmrm_last_error());
    rm_free(&m);
    for (int mixed = 0; mixed < 2; mixed++) {
        if (!CHECK(write_f16_copy(dir, mixed ? "score.weight" : NULL) == 0, "writing the F16 copy"))
            break;
        LoadReport rep;
        if (!CHECK(rm_load(&m, dir, DEV_CPU, NULL, 1, &rep) == 0, "load F16: %s", mmrm_last_error()))
            break;
        CHECK(!strcmp(rep.disk_dtype, mixed ? "mixed" : "F16"), "disk dtype \"%s\", want %s",
              rep.disk_dtype, mixed ? "mixed" : "F16");
        const float *w = tensor_f32(m.score);
        size_t wrong = 0;
        for (size_t k = 0; k < m.score->numel; k++) wrong += w[k] != pattern(k);
        CHECK(wrong == 0, "score.weight read back with %zu of %zu values changed", wrong,
              m.score->numel);
        rm_free(&m);
    }
    char p[300];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    rmdir(dir);
}

/* Found by the fuzz_config campaign: a number literal that overflows a double (1e606 parses
 * to infinity) was accepted as rms_norm_eps and saved as the non-JSON "inf", and a NUL byte,
 * which cJSON skips as white space, stopped the number-text pass early; both are refused. */
TEST(test_config_refuses_infinite_numbers_and_nul_bytes) {
    size_t n;
    char *base = fs_read_file("configs/model/tiny.json", &n);
    if (!CHECK(base != NULL, "%s", mmrm_last_error())) return;
    char *at = strstr(base, "\"rms_norm_eps\"");
    if (!CHECK(at != NULL, "tiny.json has no rms_norm_eps")) { free(base); return; }
    char *colon = strchr(at, ':');
    size_t head = (size_t)(colon + 1 - base);
    size_t tail = strcspn(colon + 1, ",}\n");
    static ModelConfig cfg;
    char path[] = "/tmp/mmrm_cfg_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    /* 1e606 in place of the value */
    FILE *f = fopen(path, "wb");
    fwrite(base, 1, head, f);
    fputs(" 1e606", f);
    fputs(colon + 1 + tail, f);
    fclose(f);
    CHECK(config_load(path, &cfg) == -1 && strstr(mmrm_last_error(), "rms_norm_eps") &&
              strstr(mmrm_last_error(), "finite"),
          "1e606 accepted or unclear error: %s", mmrm_last_error());
    /* a NUL byte inside white space */
    f = fopen(path, "wb");
    fwrite(base, 1, 2, f);
    fputc(0, f);
    fwrite(base + 2, 1, n - 2, f);
    fclose(f);
    CHECK(config_load(path, &cfg) == -1 && strstr(mmrm_last_error(), "NUL byte") &&
              strstr(mmrm_last_error(), path),
          "a NUL byte accepted or unclear error: %s", mmrm_last_error());
    /* the file itself loads */
    CHECK(config_load("configs/model/tiny.json", &cfg) == 0, "%s", mmrm_last_error());
    unlink(path);
    free(base);
}
