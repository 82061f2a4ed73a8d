/* lora.c - LoRA adapters (lora.h): declaration, init, the adapted linear, PEFT files and
 * merging. Shapes: r rank, IN/OUT the adapted weight's input/output features. */
#include "models/lora.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/reward_model.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/ops.h"
#include "runtime/safetensors.h"

#define PEFT_PREFIX "base_model.model."

static const char *const k_qwen2[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                      "up_proj", "down_proj", NULL};
static const char *const k_internlm2[] = {"wqkv", "wo", "w1", "w2", "w3", NULL};
static const char *const k_vit[] = {"qkv", "proj", "fc1", "fc2", NULL};
static const char *const k_connector[] = {"mlp1.1", "mlp1.3", NULL};

static int in_list(const char *const *l, const char *s) {
    for (; *l; l++)
        if (!strcmp(*l, s)) return 1;
    return 0;
}

int lora_known_target(const char *name) {
    return in_list(k_qwen2, name) || in_list(k_internlm2, name) || in_list(k_vit, name) ||
           in_list(k_connector, name);
}

static const char *const *llm_names(const ModelConfig *cfg) {
    return cfg->llm.arch == LLM_INTERNLM2 ? k_internlm2 : k_qwen2;
}

int lora_check(const LoraConfig *lc, const ModelConfig *cfg, const char *what) {
    MMRM_REQUIRE(lc->r >= 1, "%s: lora_r = %d: the rank must be >= 1", what, lc->r);
    MMRM_REQUIRE(lc->alpha > 0, "%s: lora_alpha = %g must be > 0", what, lc->alpha);
    MMRM_REQUIRE(lc->dropout >= 0 && lc->dropout < 1, "%s: lora_dropout = %g outside [0, 1)",
                 what, lc->dropout);
    const char *const *llm = llm_names(cfg);
    for (int i = 0; i < lc->n_targets; i++) {
        const char *t = lc->targets[i];
        if (!in_list(llm, t) && !in_list(k_vit, t) && !in_list(k_connector, t)) {
            char have[256] = "";
            for (const char *const *l = llm; *l; l++) {
                strncat(have, *l, sizeof have - strlen(have) - 1);
                strncat(have, ",", sizeof have - strlen(have) - 1);
            }
            mmrm_set_error("%s: lora_target_modules: \"%s\" is no linear layer of this %s model "
                           "(it has %sqkv,proj,fc1,fc2,mlp1.1,mlp1.3)", what, t,
                           llm_arch_name(cfg->llm.arch), have);
            return -1;
        }
    }
    return 0;
}

/* the module path of a linear weight ("...q_proj" of "...q_proj.weight"), or 0 when
 * parameter p is not the weight of a linear layer */
static int linear_module(const Tensor *p, ParamGroup gr, char *mod, size_t cap) {
    size_t n = strlen(p->name);
    if (p->ndim != 2 || n < 8 || strcmp(p->name + n - 7, ".weight") || n - 7 >= cap) return 0;
    if (gr != PG_VISION && gr != PG_CONNECTOR && gr != PG_LLM) return 0;
    if (strstr(p->name, "embed_tokens") || strstr(p->name, "tok_embeddings")) return 0;
    memcpy(mod, p->name, n - 7);
    mod[n - 7] = '\0';
    return 1;
}

/* PEFT's rule: the module path equals the target or ends with "." + target */
static int matches(const char *mod, const char *t) {
    size_t n = strlen(mod), k = strlen(t);
    return !strcmp(mod, t) || (n > k && mod[n - k - 1] == '.' && !strcmp(mod + n - k, t));
}

static int targeted(const LoraConfig *lc, const char *mod, ParamGroup gr) {
    if (lc->n_targets == 0) return gr == PG_LLM;
    for (int i = 0; i < lc->n_targets; i++)
        if (matches(mod, lc->targets[i])) return 1;
    return 0;
}

void lora_declare(RewardModel *m) {
    ParamStore *ps = &m->ps;
    const LoraConfig *lc = &m->lora;
    int n0 = ps->n, r = lc->r;
    int *base = xmalloc((size_t)n0 * sizeof *base), *first = xmalloc((size_t)n0 * sizeof *first);
    int k = 0;
    for (int i = 0; i < n0; i++) {
        char mod[TENSOR_NAME_LEN], name[TENSOR_NAME_LEN + 16];
        const Tensor *p = &ps->params[i];
        int out = p->shape[0], in = p->shape[1];
        if (!linear_module(p, ps->group[i], mod, sizeof mod) || !targeted(lc, mod, ps->group[i])) continue;
        snprintf(name, sizeof name, "%s.lora_A.weight", mod);
        MMRM_CHECK(strlen(name) < TENSOR_NAME_LEN, "LoRA name %s too long", name);
        base[k] = i;
        first[k] = params_add(ps, name, PG_LORA, 1, 2, (int[]){r, in});
        snprintf(name, sizeof name, "%s.lora_B.weight", mod);
        params_add(ps, name, PG_LORA, 1, 2, (int[]){out, r});
        k++;
    }
    MMRM_CHECK(k > 0, "LoRA: lora_target_modules match no linear layer of this model");
    m->lora_of = xmalloc((size_t)ps->n * sizeof *m->lora_of);
    for (int i = 0; i < ps->n; i++) m->lora_of[i] = -1;
    for (int j = 0; j < k; j++) m->lora_of[base[j]] = first[j];
    free(base);
    free(first);
}

/* the store lora_of indexes: the model's own, or the shared base's */
static const ParamStore *base_store(const RewardModel *m) {
    return m->shared_base ? &m->shared_base->ps : &m->ps;
}

int lora_count(const RewardModel *m) {
    int n = 0;
    for (int i = 0; m->lora_of && i < base_store(m)->n; i++) n += m->lora_of[i] >= 0;
    return n;
}

int lora_adapts_group(const RewardModel *m, int g) {
    const ParamStore *bs = base_store(m);
    for (int i = 0; m->lora_of && i < bs->n; i++)
        if (m->lora_of[i] >= 0 && (int)bs->group[i] == g) return 1;
    return 0;
}

void lora_init(RewardModel *m, uint64_t seed) {
    uint64_t k = 0; /* the adapter's ordinal: the same streams whatever the store's layout */
    for (int i = 0; m->lora_of && i < base_store(m)->n; i++) {
        int a = m->lora_of[i];
        if (a < 0) continue;
        Tensor *A = &m->ps.params[a], *B = &m->ps.params[a + 1];
        /* kaiming_uniform_(a=sqrt(5)): gain sqrt(2/6), bound gain*sqrt(3/fan_in) = 1/sqrt(fan_in) */
        float bound = 1.0f / sqrtf((float)A->shape[1]);
        Rng rng = rng_make(seed, 0x6c6f7261000000ull + k++); /* "lora", per adapter */
        rng_fill_uniform(&rng, tensor_f32(A), A->numel, -bound, bound);
        memset(B->data, 0, B->numel * sizeof(float));
    }
}

int lora_has(const RewardModel *m, const Tensor *w) {
    return m->lora_of && m->lora_of[w - base_store(m)->params] >= 0;
}

Tensor *lora_linear(Graph *g, RewardModel *m, Tensor *x, Tensor *w, Tensor *b) {
    Tensor *y = op_linear(g, x, w, b);
    int a = m->lora_of ? m->lora_of[w - base_store(m)->params] : -1;
    if (a < 0) return y;
    Tensor *A = &m->ps.params[a], *B = &m->ps.params[a + 1];
    int r = m->lora.r;
    Tensor *xd = x;
    if (m->lora.dropout > 0 && g->training) { /* element-wise: each element is a drop_path sample */
        MMRM_CHECK(x->numel <= INT_MAX, "lora_dropout: %zu elements in one activation", x->numel);
        xd = op_reshape(g, op_drop_path(g, op_reshape(g, x, 2, (int[]){(int)x->numel, 1}),
                                        (float)m->lora.dropout), x->ndim, x->shape);
    }
    float *hs = graph_scratch(g, (size_t)r * sizeof(float));
    for (int i = 0; i < r; i++) hs[i] = (float)(m->lora.alpha / r);
    Tensor *s = graph_tensor(g, "lora_scale", 1, &r);
    device_copy_from_host(g->device, s->data, hs, (size_t)r * sizeof(float));
    Tensor *d = op_linear(g, op_channel_scale(g, op_linear(g, xd, A, NULL), s), B, NULL);
    return op_add(g, y, d);
}

int lora_create_shared(RewardModel *m, const RewardModel *base, uint64_t seed, int init_score,
                       const char *adapter) {
    MMRM_CHECK(base->lora_of && !base->shared_base, "lora_create_shared: the base model has no "
               "adapters of its own");
    const ParamStore *bs = &base->ps;
    memset(m, 0, sizeof *m);
    m->cfg = base->cfg;
    m->lora = base->lora;
    m->shared_base = base;
    params_init(&m->ps, DEV_CPU);
    m->lora_of = xmalloc((size_t)bs->n * sizeof *m->lora_of);
    for (int i = 0; i < bs->n; i++) {
        m->lora_of[i] = -1;
        int a = base->lora_of[i];
        if (a < 0) continue;
        const Tensor *A = &bs->params[a], *B = &bs->params[a + 1];
        m->lora_of[i] = params_add(&m->ps, A->name, PG_LORA, 1, A->ndim, A->shape);
        params_add(&m->ps, B->name, PG_LORA, 1, B->ndim, B->shape);
    }
    int score = params_add(&m->ps, base->score->name, PG_HEAD, 1, base->score->ndim, base->score->shape);
    params_finalize(&m->ps);
    /* the base's layers, with this model's head */
    int LV = m->cfg.vision.layers, LL = m->cfg.llm.layers;
    m->patch_w = base->patch_w; m->patch_b = base->patch_b; m->cls = base->cls; m->pos = base->pos;
    m->vit = xmalloc((size_t)LV * sizeof *m->vit);
    memcpy(m->vit, base->vit, (size_t)LV * sizeof *m->vit);
    m->mlp_ln_w = base->mlp_ln_w; m->mlp_ln_b = base->mlp_ln_b;
    m->mlp_fc1_w = base->mlp_fc1_w; m->mlp_fc1_b = base->mlp_fc1_b;
    m->mlp_fc2_w = base->mlp_fc2_w; m->mlp_fc2_b = base->mlp_fc2_b;
    m->embed = base->embed;
    m->llm = xmalloc((size_t)LL * sizeof *m->llm);
    memcpy(m->llm, base->llm, (size_t)LL * sizeof *m->llm);
    m->final_norm = base->final_norm;
    m->score = params_get(&m->ps, score);
    if (init_score)
        rm_init_score(m, seed);
    else
        device_copy_to_host(bs->device, m->score->data, base->score->data, m->score->numel * sizeof(float));
    lora_init(m, seed);
    if (adapter && lora_load_weights(m, adapter)) {
        rm_free(m);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- files */

int lora_read_config(const char *dir, LoraConfig *lc) {
    char path[4096];
    if (!fs_join(path, sizeof path, dir, "adapter_config.json")) return -1;
    size_t n;
    char *text = fs_read_file(path, &n);
    if (!text) return -1;
    cJSON *j = cJSON_ParseWithLength(text, n);
    free(text);
    MMRM_REQUIRE(j && cJSON_IsObject(j), "%s: not a JSON object", path);
    memset(lc, 0, sizeof *lc);
    int rc = -1;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "r");
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    const cJSON *dr = cJSON_GetObjectItemCaseSensitive(j, "lora_dropout");
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    const cJSON *fi = cJSON_GetObjectItemCaseSensitive(j, "fan_in_fan_out");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "use_rslora");
    const cJSON *dora = cJSON_GetObjectItemCaseSensitive(j, "use_dora");
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(j, "rank_pattern");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(j, "alpha_pattern");
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(j, "layers_to_transform");
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(j, "bias");
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA"))
        mmrm_set_error("%s: peft_type must be \"LORA\"", path);
    else if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble != (int)r->valuedouble)
        mmrm_set_error("%s: field \"r\" must be an integer >= 1", path);
    else if (!cJSON_IsNumber(al))
        mmrm_set_error("%s: field \"lora_alpha\" must be a number", path);
    else if (dr && !cJSON_IsNumber(dr))
        mmrm_set_error("%s: field \"lora_dropout\" must be a number", path);
    else if (cJSON_IsTrue(fi) || cJSON_IsTrue(rs) || cJSON_IsTrue(dora))
        mmrm_set_error("%s: fan_in_fan_out, use_rslora and use_dora are not supported", path);
    else if ((cJSON_IsObject(rp) && cJSON_GetArraySize(rp) > 0) ||
             (cJSON_IsObject(ap) && cJSON_GetArraySize(ap) > 0))
        mmrm_set_error("%s: rank_pattern and alpha_pattern are not supported (one rank and alpha "
                       "for every module)", path);
    else if (bias && !(cJSON_IsString(bias) && !strcmp(bias->valuestring, "none")))
        mmrm_set_error("%s: field \"bias\" must be \"none\" (trained biases are not supported)", path);
    else if (lt && !cJSON_IsNull(lt))
        mmrm_set_error("%s: layers_to_transform is not supported (every layer is adapted)", path);
    else if (!cJSON_IsArray(tm) || cJSON_GetArraySize(tm) < 1 ||
             cJSON_GetArraySize(tm) > LORA_MAX_TARGETS)
        mmrm_set_error("%s: field \"target_modules\" must be a list of 1 to %d module names "
                       "(a regular expression string is not supported)", path, LORA_MAX_TARGETS);
    else {
        lc->r = (int)r->valuedouble;
        lc->alpha = al->valuedouble;
        lc->dropout = dr ? dr->valuedouble : 0;
        rc = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, tm) {
            if (!cJSON_IsString(e) || !lora_known_target(e->valuestring)) {
                mmrm_set_error("%s: target_modules: %s%s%s is not a linear layer name mmrm knows "
                               "(see lora_target_modules in the README)", path,
                               cJSON_IsString(e) ? "\"" : "", cJSON_IsString(e) ? e->valuestring : "a non-string",
                               cJSON_IsString(e) ? "\"" : "");
                rc = -1;
                break;
            }
            snprintf(lc->targets[lc->n_targets++], LORA_NAME_LEN, "%s", e->valuestring);
        }
    }
    cJSON_Delete(j);
    return rc;
}

int lora_load_weights(RewardModel *m, const char *dir) {
    char path[4096], name[TENSOR_NAME_LEN + 32];
    if (!fs_join(path, sizeof path, dir, "adapter_model.safetensors")) return -1;
    MMRM_REQUIRE(m->ps.device == DEV_CPU, "lora_load_weights: the model must be on the host");
    SafeTensors *st = st_open(path);
    if (!st) return -1;
    int rc = 0;
    for (int i = 0; i < m->ps.n && rc == 0; i++) {
        Tensor *t = &m->ps.params[i];
        if (m->ps.group[i] != PG_LORA && t != m->score) continue;
        snprintf(name, sizeof name, PEFT_PREFIX "%s", t->name);
        const StEntry *e = st_find(st, name);
        if (!e && !strncmp(t->name, "language_model.", 15)) {
            /* peft on the language model alone (e.g. Qwen2ForSequenceClassification):
             * base_model.model.model.layers... */
            snprintf(name, sizeof name, PEFT_PREFIX "%s", t->name + 15);
            e = st_find(st, name);
        }
        if (!e) {
            if (t == m->score) continue; /* the base's head stays */
            mmrm_set_error("%s: tensor " PEFT_PREFIX "%s is missing (adapter_config.json's "
                           "target_modules name that module)", path, t->name);
            rc = -1;
            break;
        }
        rc = st_check_shape(st, e, t->ndim, t->shape) || st_read_f32(st, e, tensor_f32(t), t->numel);
    }
    st_close(st);
    return rc ? -1 : 0;
}

int lora_save(const RewardModel *m, const char *dir, const char *base) {
    const LoraConfig *lc = &m->lora;
    if (fs_mkdir_p(dir) != 0) return -1;
    float *host_copy;
    const float *hd = params_host(&m->ps, m->ps.data, m->ps.numel, &host_copy);
    StTensorOut *t = xcalloc(m->ps.n, sizeof *t);
    char (*names)[TENSOR_NAME_LEN + 32] = xcalloc(m->ps.n, sizeof *names);
    int n = 0;
    for (int i = 0; i < m->ps.n; i++) {
        const Tensor *p = &m->ps.params[i];
        if (m->ps.group[i] != PG_LORA && p != m->score) continue;
        snprintf(names[n], sizeof names[n], PEFT_PREFIX "%s", p->name);
        t[n].name = names[n];
        t[n].src = DT_F32;
        t[n].dtype = ST_F32;
        t[n].ndim = p->ndim;
        for (int k = 0; k < p->ndim; k++) t[n].shape[k] = p->shape[k];
        t[n].data = hd + ((const float *)p->data - m->ps.data);
        n++;
    }
    char path[4096];
    StMeta meta[1] = {{"format", "pt"}};
    int rc = fs_join(path, sizeof path, dir, "adapter_model.safetensors") ? st_save(path, t, n, meta, 1) : -1;
    free(t);
    free(names);
    free(host_copy);
    if (rc) return -1;

    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddStringToObject(j, "task_type", "SEQ_CLS");
    cJSON_AddStringToObject(j, "base_model_name_or_path", base ? base : "");
    cJSON_AddNumberToObject(j, "r", lc->r);
    cJSON_AddNumberToObject(j, "lora_alpha", lc->alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", lc->dropout);
    cJSON *tm = cJSON_AddArrayToObject(j, "target_modules");
    if (lc->n_targets)
        for (int i = 0; i < lc->n_targets; i++) cJSON_AddItemToArray(tm, cJSON_CreateString(lc->targets[i]));
    else
        for (const char *const *l = llm_names(&m->cfg); *l; l++) cJSON_AddItemToArray(tm, cJSON_CreateString(*l));
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(j, "use_rslora", 0);
    cJSON_AddBoolToObject(j, "use_dora", 0);
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    cJSON_AddBoolToObject(j, "init_lora_weights", 1);
    cJSON *ms = cJSON_AddArrayToObject(j, "modules_to_save");
    cJSON_AddItemToArray(ms, cJSON_CreateString("score"));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    rc = fs_join(path, sizeof path, dir, "adapter_config.json") ? fs_write_atomic(path, text, strlen(text)) : -1;
    free(text);
    return rc;
}

void lora_merge(RewardModel *m) {
    MMRM_CHECK(m->ps.device == DEV_CPU && !m->shared_base,
               "lora_merge: the model must be on the host and own its base");
    float s = (float)(m->lora.alpha / m->lora.r);
    int r = m->lora.r;
    for (int i = 0; m->lora_of && i < m->ps.n; i++) {
        int a = m->lora_of[i];
        if (a < 0) continue;
        Tensor *W = &m->ps.params[i], *A = &m->ps.params[a], *B = &m->ps.params[a + 1];
        int OUT = W->shape[0], IN = W->shape[1];
        float *w = tensor_f32(W);
        const float *ha = tensor_f32(A), *hb = tensor_f32(B);
        for (int o = 0; o < OUT; o++)
            for (int c = 0; c < IN; c++) {
                double acc = 0;
                for (int k = 0; k < r; k++) acc += (double)hb[o * r + k] * ha[k * IN + c];
                w[(size_t)o * IN + c] += s * (float)acc;
            }
        memset(B->data, 0, B->numel * sizeof(float));
    }
}
