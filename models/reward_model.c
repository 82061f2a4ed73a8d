/* reward_model.c - parameters, initialisation and forward of the reward model
 * (reward_model.h). Shapes: n tiles, G patch grid side, GG = G*G patches, C ViT width,
 * NH ViT heads, B sequences, T tokens, H LLM width, hd head dim. */
#include "models/reward_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/ops.h"
#include "runtime/rng.h"

/* ---------------------------------------------------------------- parameters */

typedef struct { ParamStore *ps; int *slots; int n; } Decl;

/* Declares NAME (printf-style) and remembers its index so the Tensor pointer can be taken
 * once the store is laid out. decay: HF's convention (not biases, not norm weights). */
static int decl(ParamStore *ps, ParamGroup gr, int decay, int ndim, const int *shape,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int decl(ParamStore *ps, ParamGroup gr, int decay, int ndim, const int *shape,
                const char *fmt, ...) {
    char name[TENSOR_NAME_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return params_add(ps, name, gr, decay, ndim, shape);
}

#define D1(a) 1, (int[]){a}
#define D2(a, b) 2, (int[]){a, b}
#define D3(a, b, c) 3, (int[]){a, b, c}
#define D4(a, b, c, d) 4, (int[]){a, b, c, d}

typedef struct { int norm1_w, norm1_b, norm2_w, norm2_b, ls1, ls2, qkv_w, qkv_b, q_norm, k_norm,
                 proj_w, proj_b, fc1_w, fc1_b, fc2_w, fc2_b; } VitIdx;
typedef struct { int attn_norm, ffn_norm, q_w, q_b, k_w, k_b, v_w, v_b, wqkv, o_w, gate_w, up_w,
                 down_w; } LlmIdx;

static Tensor *P(RewardModel *m, int i) { return i < 0 ? NULL : params_get(&m->ps, i); }

void rm_to_device(RewardModel *m, Device d) { params_to_device(&m->ps, d); }

void rm_create(RewardModel *m, const ModelConfig *cfg, Device d, const int freeze[PG_COUNT]) {
    rm_create_lora(m, cfg, d, freeze, NULL);
}

void rm_create_lora(RewardModel *m, const ModelConfig *cfg, Device d, const int freeze[PG_COUNT],
                    const LoraConfig *lora) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    ParamStore *ps = &m->ps;
    MMRM_CHECK(d == DEV_CPU, "rm_create on %s: models are built on the CPU, then moved with "
               "rm_to_device", device_name(d));
    params_init(ps, d);
    const VisionConfig *v = &cfg->vision;
    const LlmConfig *l = &cfg->llm;
    int C = v->hidden, G = config_grid(cfg), p = v->patch, H = l->hidden, hd = l->head_dim;
    const char *vp = "vision_model.";
    int patch_w = decl(ps, PG_VISION, 1, D4(C, v->channels, p, p), "%sembeddings.patch_embedding.weight", vp);
    int patch_b = decl(ps, PG_VISION, 0, D1(C), "%sembeddings.patch_embedding.bias", vp);
    int cls = decl(ps, PG_VISION, 1, D3(1, 1, C), "%sembeddings.class_embedding", vp);
    int pos = decl(ps, PG_VISION, 1, D3(1, G * G + 1, C), "%sembeddings.position_embedding", vp);
    VitIdx *vi = xcalloc(v->layers, sizeof *vi);
    for (int i = 0; i < v->layers; i++) {
        char pre[96];
        snprintf(pre, sizeof pre, "%sencoder.layers.%d.", vp, i);
        VitIdx *x = &vi[i];
        x->norm1_w = decl(ps, PG_VISION, 0, D1(C), "%snorm1.weight", pre);
        x->norm1_b = v->rms_norm ? -1 : decl(ps, PG_VISION, 0, D1(C), "%snorm1.bias", pre);
        x->qkv_w = decl(ps, PG_VISION, 1, D2(3 * C, C), "%sattn.qkv.weight", pre);
        x->qkv_b = v->qkv_bias ? decl(ps, PG_VISION, 0, D1(3 * C), "%sattn.qkv.bias", pre) : -1;
        x->q_norm = v->qk_norm ? decl(ps, PG_VISION, 0, D1(C), "%sattn.q_norm.weight", pre) : -1;
        x->k_norm = v->qk_norm ? decl(ps, PG_VISION, 0, D1(C), "%sattn.k_norm.weight", pre) : -1;
        x->proj_w = decl(ps, PG_VISION, 1, D2(C, C), "%sattn.proj.weight", pre);
        x->proj_b = decl(ps, PG_VISION, 0, D1(C), "%sattn.proj.bias", pre);
        x->ls1 = decl(ps, PG_VISION, 1, D1(C), "%sls1", pre);
        x->norm2_w = decl(ps, PG_VISION, 0, D1(C), "%snorm2.weight", pre);
        x->norm2_b = v->rms_norm ? -1 : decl(ps, PG_VISION, 0, D1(C), "%snorm2.bias", pre);
        x->fc1_w = decl(ps, PG_VISION, 1, D2(v->intermediate, C), "%smlp.fc1.weight", pre);
        x->fc1_b = decl(ps, PG_VISION, 0, D1(v->intermediate), "%smlp.fc1.bias", pre);
        x->fc2_w = decl(ps, PG_VISION, 1, D2(C, v->intermediate), "%smlp.fc2.weight", pre);
        x->fc2_b = decl(ps, PG_VISION, 0, D1(C), "%smlp.fc2.bias", pre);
        x->ls2 = decl(ps, PG_VISION, 1, D1(C), "%sls2", pre);
    }
    int mln_w = decl(ps, PG_CONNECTOR, 0, D1(4 * C), "mlp1.0.weight");
    int mln_b = decl(ps, PG_CONNECTOR, 0, D1(4 * C), "mlp1.0.bias");
    int mfc1_w = decl(ps, PG_CONNECTOR, 1, D2(H, 4 * C), "mlp1.1.weight");
    int mfc1_b = decl(ps, PG_CONNECTOR, 0, D1(H), "mlp1.1.bias");
    int mfc2_w = decl(ps, PG_CONNECTOR, 1, D2(H, H), "mlp1.3.weight");
    int mfc2_b = decl(ps, PG_CONNECTOR, 0, D1(H), "mlp1.3.bias");

    const char *lp = "language_model.model.";
    int ilm = l->arch == LLM_INTERNLM2;
    int embed = decl(ps, PG_LLM, 1, D2(l->vocab, H), "%s%s.weight", lp, ilm ? "tok_embeddings" : "embed_tokens");
    LlmIdx *li = xcalloc(l->layers, sizeof *li);
    for (int i = 0; i < l->layers; i++) {
        char pre[96];
        snprintf(pre, sizeof pre, "%slayers.%d.", lp, i);
        LlmIdx *x = &li[i];
        memset(x, -1, sizeof *x);
        int qd = l->heads * hd, kd = l->kv_heads * hd;
        if (ilm) {
            x->attn_norm = decl(ps, PG_LLM, 0, D1(H), "%sattention_norm.weight", pre);
            x->wqkv = decl(ps, PG_LLM, 1, D2(qd + 2 * kd, H), "%sattention.wqkv.weight", pre);
            x->o_w = decl(ps, PG_LLM, 1, D2(H, qd), "%sattention.wo.weight", pre);
            x->ffn_norm = decl(ps, PG_LLM, 0, D1(H), "%sffn_norm.weight", pre);
            x->gate_w = decl(ps, PG_LLM, 1, D2(l->intermediate, H), "%sfeed_forward.w1.weight", pre);
            x->up_w = decl(ps, PG_LLM, 1, D2(l->intermediate, H), "%sfeed_forward.w3.weight", pre);
            x->down_w = decl(ps, PG_LLM, 1, D2(H, l->intermediate), "%sfeed_forward.w2.weight", pre);
        } else {
            int bias = l->arch == LLM_QWEN2;
            x->attn_norm = decl(ps, PG_LLM, 0, D1(H), "%sinput_layernorm.weight", pre);
            x->q_w = decl(ps, PG_LLM, 1, D2(qd, H), "%sself_attn.q_proj.weight", pre);
            x->q_b = bias ? decl(ps, PG_LLM, 0, D1(qd), "%sself_attn.q_proj.bias", pre) : -1;
            x->k_w = decl(ps, PG_LLM, 1, D2(kd, H), "%sself_attn.k_proj.weight", pre);
            x->k_b = bias ? decl(ps, PG_LLM, 0, D1(kd), "%sself_attn.k_proj.bias", pre) : -1;
            x->v_w = decl(ps, PG_LLM, 1, D2(kd, H), "%sself_attn.v_proj.weight", pre);
            x->v_b = bias ? decl(ps, PG_LLM, 0, D1(kd), "%sself_attn.v_proj.bias", pre) : -1;
            x->o_w = decl(ps, PG_LLM, 1, D2(H, qd), "%sself_attn.o_proj.weight", pre);
            x->ffn_norm = decl(ps, PG_LLM, 0, D1(H), "%spost_attention_layernorm.weight", pre);
            x->gate_w = decl(ps, PG_LLM, 1, D2(l->intermediate, H), "%smlp.gate_proj.weight", pre);
            x->up_w = decl(ps, PG_LLM, 1, D2(l->intermediate, H), "%smlp.up_proj.weight", pre);
            x->down_w = decl(ps, PG_LLM, 1, D2(H, l->intermediate), "%smlp.down_proj.weight", pre);
        }
    }
    int fnorm = decl(ps, PG_LLM, 0, D1(H), "%snorm.weight", lp);
    int score = decl(ps, PG_HEAD, 1, D2(1, H), "score.weight");
    if (lora && lora->r > 0) {
        m->lora = *lora;
        lora_declare(m);
    }

    for (int g = 0; g < PG_COUNT; g++) params_freeze_group(ps, (ParamGroup)g, freeze ? freeze[g] : 0);
    params_finalize(ps);

    m->patch_w = P(m, patch_w); m->patch_b = P(m, patch_b); m->cls = P(m, cls); m->pos = P(m, pos);
    m->vit = xcalloc(v->layers, sizeof *m->vit);
    for (int i = 0; i < v->layers; i++) {
        VitIdx *x = &vi[i];
        m->vit[i] = (VitLayer){P(m, x->norm1_w), P(m, x->norm1_b), P(m, x->norm2_w), P(m, x->norm2_b),
                               P(m, x->ls1), P(m, x->ls2), P(m, x->qkv_w), P(m, x->qkv_b),
                               P(m, x->q_norm), P(m, x->k_norm), P(m, x->proj_w), P(m, x->proj_b),
                               P(m, x->fc1_w), P(m, x->fc1_b), P(m, x->fc2_w), P(m, x->fc2_b)};
    }
    m->mlp_ln_w = P(m, mln_w); m->mlp_ln_b = P(m, mln_b);
    m->mlp_fc1_w = P(m, mfc1_w); m->mlp_fc1_b = P(m, mfc1_b);
    m->mlp_fc2_w = P(m, mfc2_w); m->mlp_fc2_b = P(m, mfc2_b);
    m->embed = P(m, embed);
    m->llm = xcalloc(l->layers, sizeof *m->llm);
    for (int i = 0; i < l->layers; i++) {
        LlmIdx *x = &li[i];
        m->llm[i] = (LlmLayer){P(m, x->attn_norm), P(m, x->ffn_norm), P(m, x->q_w), P(m, x->q_b),
                               P(m, x->k_w), P(m, x->k_b), P(m, x->v_w), P(m, x->v_b),
                               P(m, x->wqkv), P(m, x->o_w), P(m, x->gate_w), P(m, x->up_w),
                               P(m, x->down_w)};
    }
    m->final_norm = P(m, fnorm);
    m->score = P(m, score);
    free(vi);
    free(li);
}

void rm_free(RewardModel *m) {
    params_free(&m->ps);
    free(m->lora_of);
    free(m->vit);
    free(m->llm);
    memset(m, 0, sizeof *m);
}

void rm_init_score(RewardModel *m, uint64_t seed) {
    Rng r = rng_make(seed, 0x73636f7265 /* "score" */);
    rng_fill_normal(&r, tensor_f32(m->score), m->score->numel, 0.0f,
                    1.0f / (float)(m->cfg.llm.hidden + 1));
}

void rm_init_random(RewardModel *m, uint64_t seed) {
    for (int i = 0; i < m->ps.n; i++) {
        Tensor *t = params_get(&m->ps, i);
        float *x = tensor_f32(t);
        const char *n = t->name;
        size_t len = strlen(n);
        int is_bias = len > 5 && !strcmp(n + len - 5, ".bias");
        int is_norm = strstr(n, "norm") != NULL || !strncmp(n, "mlp1.0.", 7);
        int is_ls = len > 4 && (!strcmp(n + len - 4, ".ls1") || !strcmp(n + len - 4, ".ls2"));
        if (is_bias) {
            memset(x, 0, t->numel * sizeof *x);
        } else if (is_norm) {
            for (size_t k = 0; k < t->numel; k++) x[k] = 1.0f;
        } else if (is_ls) {
            for (size_t k = 0; k < t->numel; k++) x[k] = 0.1f;
        } else {
            Rng r = rng_make(seed, 1000 + (uint64_t)i); /* per tensor: independent of order */
            rng_fill_normal(&r, x, t->numel, 0.0f,
                            m->cfg.init_range > 0 ? (float)m->cfg.init_range : 0.02f);
        }
    }
    rm_init_score(m, seed);
    lora_init(m, seed);
}

/* ---------------------------------------------------------------- vision */

typedef struct { RewardModel *m; int layer, n, T; const int *lengths, *q_rows, *k_rows, *v_rows; } VitCtx;

static Tensor *vit_norm(Graph *g, const RewardModel *m, Tensor *x, Tensor *w, Tensor *b) {
    return m->cfg.vision.rms_norm ? op_rmsnorm(g, x, w, m->cfg.vision.eps)
                                  : op_layernorm(g, x, w, b, m->cfg.vision.eps);
}

static void vit_layer(Graph *g, void *vctx, Tensor **in, int nin, Tensor **out, int nout) {
    (void)nin; (void)nout;
    VitCtx *c = vctx;
    RewardModel *m = c->m;
    const VisionConfig *v = &m->cfg.vision;
    VitLayer *L = &m->vit[c->layer];
    int n = c->n, T = c->T, C = v->hidden, NH = v->heads, hd = C / NH;
    float rate = v->layers > 1 ? v->drop_path_rate * c->layer / (v->layers - 1) : 0.0f;
    Tensor *x = in[0];
    Tensor *h = vit_norm(g, m, x, L->norm1_w, L->norm1_b);
    Tensor *qkv = lora_linear(g, m, h, L->qkv_w, L->qkv_b);        /* (n, T, 3C) */
    Tensor *rows = op_reshape(g, qkv, 2, (int[]){n * T * 3 * NH, hd});
    Tensor *q = op_gather_rows(g, rows, c->q_rows, n * T * NH);  /* (n*T*NH, hd) */
    Tensor *k = op_gather_rows(g, rows, c->k_rows, n * T * NH);
    Tensor *vv = op_gather_rows(g, rows, c->v_rows, n * T * NH);
    if (v->qk_norm) { /* RMSNorm over the full C before the head split */
        q = op_rmsnorm(g, op_reshape(g, q, 2, (int[]){n * T, C}), L->q_norm, v->eps);
        k = op_rmsnorm(g, op_reshape(g, k, 2, (int[]){n * T, C}), L->k_norm, v->eps);
    }
    int shape4[4] = {n, T, NH, hd};
    Tensor *a = op_attention(g, op_reshape(g, q, 4, shape4), op_reshape(g, k, 4, shape4),
                             op_reshape(g, vv, 4, shape4), c->lengths, NULL, 0);
    a = lora_linear(g, m, op_reshape(g, a, 3, (int[]){n, T, C}), L->proj_w, L->proj_b);
    a = op_drop_path(g, op_channel_scale(g, a, L->ls1), rate);
    h = m->cfg.vision.rms_norm ? op_add_rmsnorm(g, x, a, L->norm2_w, v->eps, &x)
                               : op_add_layernorm(g, x, a, L->norm2_w, L->norm2_b, v->eps, &x);
    h = lora_linear(g, m, op_gelu(g, lora_linear(g, m, h, L->fc1_w, L->fc1_b)), L->fc2_w, L->fc2_b);
    out[0] = op_add(g, x, op_drop_path(g, op_channel_scale(g, h, L->ls2), rate));
}

static int *ints(Graph *g, size_t n) { return graph_scratch(g, n * sizeof(int)); }

Tensor *rm_vit_features(RewardModel *m, Graph *g, const float *pixels, int n) {
    const ModelConfig *cfg = &m->cfg;
    const VisionConfig *v = &cfg->vision;
    int S = cfg->image_size, G = config_grid(cfg), GG = G * G, T = GG + 1, C = v->hidden;
    int NH = v->heads;
    Tensor *img = graph_tensor(g, "pixel_values", 4, (int[]){n, v->channels, S, S});
    device_copy_from_host(g->device, img->data, pixels, img->numel * sizeof(float));
    Tensor *patches = op_patch_embed(g, img, m->patch_w, m->patch_b); /* (n, GG, C) */
    /* prepend CLS and add the position embedding: both are row gathers (broadcasts) */
    Tensor *cls = op_reshape(g, m->cls, 2, (int[]){1, C});
    Tensor *table = op_concat_rows(g, patches, cls);
    int *idx = ints(g, (size_t)n * T), *pidx = ints(g, (size_t)n * T);
    for (int t = 0; t < n; t++)
        for (int j = 0; j < T; j++) {
            idx[t * T + j] = j == 0 ? n * GG : t * GG + j - 1;
            pidx[t * T + j] = j;
        }
    Tensor *x = op_gather_rows(g, table, idx, n * T);
    Tensor *pos = op_gather_rows(g, op_reshape(g, m->pos, 2, (int[]){T, C}), pidx, n * T);
    x = op_reshape(g, op_add(g, x, pos), 3, (int[]){n, T, C});

    int L = v->layers;
    int keep = cfg->select_layer < 0 ? L + 1 + cfg->select_layer : cfg->select_layer;
    VitCtx ctx = {m, 0, n, T, NULL, NULL, NULL, NULL};
    int *lengths = ints(g, n), *qr = ints(g, (size_t)n * T * NH), *kr = ints(g, (size_t)n * T * NH),
        *vr = ints(g, (size_t)n * T * NH);
    for (int t = 0; t < n; t++) lengths[t] = T;
    for (int r = 0; r < n * T; r++)
        for (int h = 0; h < NH; h++) {
            qr[r * NH + h] = r * 3 * NH + h;
            kr[r * NH + h] = r * 3 * NH + NH + h;
            vr[r * NH + h] = r * 3 * NH + 2 * NH + h;
        }
    ctx.lengths = lengths; ctx.q_rows = qr; ctx.k_rows = kr; ctx.v_rows = vr;
    for (int i = 0; i < keep; i++) { /* layers past select_layer do not affect the output */
        ctx.layer = i;
        Tensor *out;
        if (m->grad_checkpoint)
            graph_checkpoint(g, vit_layer, &ctx, sizeof ctx, &x, 1, &out, 1);
        else
            vit_layer(g, &ctx, &x, 1, &out, 1);
        x = out;
    }
    /* drop CLS, pixel shuffle, mlp1 */
    int *drop = ints(g, (size_t)n * GG);
    for (int t = 0; t < n; t++)
        for (int j = 0; j < GG; j++) drop[t * GG + j] = t * T + 1 + j;
    x = op_reshape(g, op_gather_rows(g, x, drop, n * GG), 3, (int[]){n, GG, C});
    return op_pixel_shuffle(g, x);
}

Tensor *rm_connector(RewardModel *m, Graph *g, Tensor *x) {
    x = op_layernorm(g, x, m->mlp_ln_w, m->mlp_ln_b, 1e-5f);
    x = op_gelu(g, lora_linear(g, m, x, m->mlp_fc1_w, m->mlp_fc1_b));
    return lora_linear(g, m, x, m->mlp_fc2_w, m->mlp_fc2_b);
}

/* ---------------------------------------------------------------- decoder */

/* rows: NULL, or the layer's output rows (n_rows of the B*T, increasing; row_pos their
 * positions, q_rows theirs): the last layer computes q, attention, o_proj and the MLP only
 * there (K and V for every token), its output (1, n_rows, H) */
typedef struct { RewardModel *m; int layer, B, T, n_rows; const int *pos, *lengths, *seg, *q_rows, *k_rows, *v_rows, *rows, *row_pos; } LlmCtx;

/* x W^T + b with W the parts' rows stacked, as one GEMM: the fused [q; k; v] and [gate; up]
 * weights, which the store keeps back to back under their HF names (declared in that
 * order). NULL where the layer keeps separate GEMMs: m->unfused, an adapter on a part
 * (lora_linear adds it per module), or parts that are not adjacent. */
static Tensor *fused_linear(Graph *g, RewardModel *m, Tensor *x, Tensor **w, Tensor **b, int n,
                            const char *name) {
    if (m->unfused) return NULL;
    for (int i = 0; i < n; i++)
        if (lora_has(m, w[i])) return NULL;
    char bn[64];
    snprintf(bn, sizeof bn, "%s.bias", name);
    Tensor *W = op_param_rows(g, w, n, name), *bias = b[0] ? op_param_rows(g, b, n, bn) : NULL;
    if (!W || (b[0] && !bias)) return NULL;
    return op_linear(g, x, W, bias);
}

static void llm_layer(Graph *g, void *vctx, Tensor **in, int nin, Tensor **out, int nout) {
    (void)nin; (void)nout;
    LlmCtx *c = vctx;
    RewardModel *m = c->m;
    const LlmConfig *l = &m->cfg.llm;
    LlmLayer *L = &m->llm[c->layer];
    int B = c->B, T = c->T, NH = l->heads, KV = l->kv_heads, hd = l->head_dim;
    int Bq = c->rows ? 1 : B, Tq = c->rows ? c->n_rows : T; /* the query rows */
    Tensor *x = in[0];
    Tensor *h = op_rmsnorm(g, x, L->attn_norm, l->rms_eps);
    Tensor *q, *k, *v;
    Tensor *qkv = L->wqkv ? lora_linear(g, m, h, L->wqkv, NULL)
                          : fused_linear(g, m, h, (Tensor *[]){L->q_w, L->k_w, L->v_w},
                                         (Tensor *[]){L->q_b, L->k_b, L->v_b}, 3, "qkv_proj");
    if (qkv) { /* head rows of hd values; c->q_rows etc. pick q, k and v */
        Tensor *rows = op_reshape(g, qkv, 2, (int[]){B * T * (NH + 2 * KV), hd});
        q = op_gather_rows(g, rows, c->q_rows, Bq * Tq * NH);
        k = op_gather_rows(g, rows, c->k_rows, B * T * KV);
        v = op_gather_rows(g, rows, c->v_rows, B * T * KV);
    } else {
        q = lora_linear(g, m, c->rows ? op_gather_rows(g, h, c->rows, Tq) : h, L->q_w, L->q_b);
        k = lora_linear(g, m, h, L->k_w, L->k_b);
        v = lora_linear(g, m, h, L->v_w, L->v_b);
    }
    q = op_rope(g, op_reshape(g, q, 4, (int[]){Bq, Tq, NH, hd}), c->rows ? c->row_pos : c->pos,
                l->rope_theta);
    k = op_rope(g, op_reshape(g, k, 4, (int[]){B, T, KV, hd}), c->pos, l->rope_theta);
    v = op_reshape(g, v, 4, (int[]){B, T, KV, hd});
    Tensor *a = c->rows ? op_attention_rows(g, op_reshape(g, q, 3, (int[]){Tq, NH, hd}), k, v,
                                            c->lengths, c->seg, 1, c->rows)
                        : op_attention(g, q, k, v, c->lengths, c->seg, 1);
    a = lora_linear(g, m, op_reshape(g, a, 3, (int[]){Bq, Tq, NH * hd}), L->o_w, NULL);
    if (c->rows) x = op_reshape(g, op_gather_rows(g, x, c->rows, Tq), 3, (int[]){Bq, Tq, l->hidden});
    h = op_add_rmsnorm(g, x, a, L->ffn_norm, l->rms_eps, &x); /* x += a; h = norm(x) */
    Tensor *gu = fused_linear(g, m, h, (Tensor *[]){L->gate_w, L->up_w}, (Tensor *[]){NULL, NULL},
                              2, "gate_up_proj");
    h = gu ? op_swiglu_fused(g, gu)
           : op_swiglu(g, lora_linear(g, m, h, L->gate_w, NULL), lora_linear(g, m, h, L->up_w, NULL));
    out[0] = op_add(g, x, lora_linear(g, m, h, L->down_w, NULL));
}


int rm_check_batch(const RewardModel *m, const RmBatch *bt) {
    const ModelConfig *cfg = &m->cfg;
    int B = bt->B, T = bt->T, tpt = config_tokens_per_tile(cfg);
    MMRM_REQUIRE(B > 0 && T > 0, "empty batch (%d sequences x %d tokens)", B, T);
    MMRM_REQUIRE(T <= cfg->llm.max_positions,
                  "sequence length %d exceeds max_position_embeddings %d (InternLM2's dynamic "
                  "rope scaling is not implemented)", T, cfg->llm.max_positions);
    for (int i = 0; i < bt->n_images; i++)
        MMRM_REQUIRE(bt->tiles[i] >= 1, "image %d has %d tiles", i, bt->tiles[i]);
    for (int b = 0; b < B; b++) {
        MMRM_REQUIRE(bt->lengths[b] >= 1 && bt->lengths[b] <= T,
                      "sequence %d: length %d outside [1, %d]", b, bt->lengths[b], T);
        int im = bt->image_of[b];
        MMRM_REQUIRE(im >= -1 && im < bt->n_images, "sequence %d: image %d of %d", b, im,
                      bt->n_images);
        int have = im >= 0 ? bt->tiles[im] * tpt : 0, count = 0;
        for (int t = 0; t < T; t++) {
            int id = bt->ids[b * T + t];
            MMRM_REQUIRE(id >= 0 && id < cfg->llm.vocab,
                          "sequence %d position %d: token id %d outside the vocabulary (%d)", b, t,
                          id, cfg->llm.vocab);
            count += id == cfg->img_context_id;
        }
        MMRM_REQUIRE(count == have,
                      "sequence %d: %d <IMG_CONTEXT> tokens but its image provides %d (%d tiles x "
                      "%d tokens): the prompt and the tiling disagree", b, count, have,
                      im >= 0 ? bt->tiles[im] : 0, tpt);
    }
    return 0;
}

/* The rows the decoder computes when they are not the batch's own (RewardModel.share_prefix,
 * .packing): B x T compact tokens, each a token (b, t) of the batch (src = b * bt->T + t) or
 * padding (-1), its RoPE position (t), the segment ids of the attention op, and each batch
 * row's last token in the compact rows. */
typedef struct {
    int B, T;
    int *src, *pos, *seg, *lengths; /* (B*T) (B*T) (B*T) (B) */
    int *last;                      /* (bt->B) */
    long tokens;                    /* compact tokens that are not padding */
} Layout;

/* the docs of a layout: doc d is rows [d_b0[d], d_b0[d+1]) (B + 1) of the batch with its
 * shared prefix d_pre[d] and its d_len[d] tokens (B each); returns their number */
static int layout_docs(const RmBatch *bt, int share, int *d_b0, int *d_pre, int *d_len) {
    int B0 = bt->B, T0 = bt->T, nd = 0;
    for (int b0 = 0, b1; b0 < B0; b0 = b1) {
        b1 = b0 + 1;
        if (share)
            while (b1 < B0 && bt->image_of[b1] == bt->image_of[b0] && b1 - b0 < 0xfffe) b1++;
        int pre = bt->lengths[b0];
        for (int b = b0 + 1; b < b1; b++) {
            int n = 0, lim = pre < bt->lengths[b] ? pre : bt->lengths[b];
            const int *x = bt->ids + (size_t)b0 * T0, *y = bt->ids + (size_t)b * T0;
            while (n < lim && x[n] == y[n]) n++;
            pre = n;
        }
        if (b1 - b0 > 1) /* every row keeps its last token as its own */
            for (int b = b0; b < b1; b++)
                if (pre > bt->lengths[b] - 1) pre = bt->lengths[b] - 1;
        int len = b1 - b0 > 1 ? pre : 0;
        for (int b = b0; b < b1; b++) len += bt->lengths[b] - (b1 - b0 > 1 ? pre : 0);
        d_b0[nd] = b0, d_pre[nd] = pre, d_len[nd++] = len;
        d_b0[nd] = b1;
    }
    return nd;
}

static Layout *layout_build(Graph *g, const RmBatch *bt, int share, int pack, int bucket) {
    int B0 = bt->B, T0 = bt->T;
    /* docs: a group's prefix length and its rows [b0, b1) */
    int *d_b0 = ints(g, B0 + 1), *d_pre = ints(g, B0), *d_len = ints(g, B0);
    int nd = layout_docs(bt, share, d_b0, d_pre, d_len);
    Layout *L = graph_scratch(g, sizeof *L);
    L->tokens = 0;
    for (int d = 0; d < nd; d++) L->tokens += d_len[d];
    if (pack) {
        L->B = 1, L->T = (int)rm_bucket_round(L->tokens, bucket);
    } else {
        L->B = nd, L->T = 0;
        for (int d = 0; d < nd; d++) L->T = d_len[d] > L->T ? d_len[d] : L->T;
        L->T = (int)rm_bucket_round(L->T, bucket);
    }
    /* the packed stream's bucket tail: one more doc */
    int tail = pack ? L->T - (int)L->tokens : 0;
    MMRM_CHECK(!pack || nd + (tail > 0) <= 32767, "rm_forward: %d sequences in one packed stream", nd);
    size_t n = (size_t)L->B * L->T;
    L->src = ints(g, n), L->pos = ints(g, n), L->seg = ints(g, n);
    L->lengths = ints(g, L->B), L->last = ints(g, B0);
    for (size_t r = 0; r < n; r++) L->src[r] = -1, L->pos[r] = 0, L->seg[r] = 0;
    for (int d = 0, r = 0; d < nd; d++) {
        if (!pack) r = d * L->T;
        int row = pack ? 0 : d, doc = pack ? d : 0, b0 = d_b0[d], b1 = d_b0[d + 1];
        int pre = d_pre[d], grouped = b1 - b0 > 1;
        if (!grouped) pre = bt->lengths[b0];
        for (int t = 0; t < pre; t++, r++)
            L->src[r] = b0 * T0 + t, L->pos[r] = t, L->seg[r] = doc << 16;
        if (!grouped) L->last[b0] = r - 1;
        for (int b = b0; grouped && b < b1; b++) {
            for (int t = pre; t < bt->lengths[b]; t++, r++)
                L->src[r] = b * T0 + t, L->pos[r] = t, L->seg[r] = doc << 16 | (b - b0 + 1);
            L->last[b] = r - 1;
        }
        L->lengths[row] = pack ? L->T : d_len[d];
    }
    /* a doc of its own at valid positions: it attends only to itself and nothing attends to
     * it; no reward is read there, so its gradient is exactly 0 and adds 0 everywhere */
    for (int t = 0; t < tail; t++) {
        size_t r = (size_t)L->tokens + t;
        L->pos[r] = t, L->seg[r] = nd << 16;
    }
    return L;
}

/* images, splice and decoder layers: (B, T, H) before the final norm; lay NULL: the
 * batch's own rows, else its compact rows (lay->B, lay->T); rows NULL, or the n_rows
 * (increasing) of those that the caller reads: then (1, n_rows, H), the last layer computed
 * past its K and V at those rows only (LlmCtx) */
static Tensor *decoder(RewardModel *m, Graph *g, const RmBatch *bt, const Layout *lay,
                       const int *rows, int n_rows) {
    const ModelConfig *cfg = &m->cfg;
    const LlmConfig *l = &cfg->llm;
    int B = lay ? lay->B : bt->B, T = lay ? lay->T : bt->T, H = l->hidden;
    int tpt = config_tokens_per_tile(cfg);
    /* images -> connector rows; row offset of each image */
    int *first = ints(g, bt->n_images + 1);
    first[0] = 0;
    for (int i = 0; i < bt->n_images; i++) first[i + 1] = first[i] + bt->tiles[i];
    Tensor *V = NULL;
    int n_tiles = first[bt->n_images];
    if (n_tiles > 0) {
        Tensor *feat;
        if (bt->vit_cache) {
            int C4 = 4 * cfg->vision.hidden;
            feat = graph_tensor(g, "vit_cache", 3, (int[]){n_tiles, tpt, C4});
            device_copy_from_host(g->device, feat->data, bt->vit_cache, feat->numel * sizeof(float));
        } else {
            feat = rm_vit_features(m, g, bt->pixels, n_tiles);
        }
        V = op_reshape(g, rm_connector(m, g, feat), 2, (int[]){n_tiles * tpt, H});
    }
    /* splice: every IMG_CONTEXT position takes the next row of its sequence's image */
    const int *ids = bt->ids;
    int *idx = ints(g, (size_t)B * T);
    if (!lay) {
        for (int b = 0; b < B; b++) {
            int im = bt->image_of[b], next = 0;
            for (int t = 0; t < T; t++) {
                int r = b * T + t;
                idx[r] = bt->ids[r] == cfg->img_context_id ? B * T + first[im] * tpt + next++ : r;
            }
        }
    } else { /* the image row of batch token (b, t): the IMG_CONTEXT tokens before it in b */
        int T0 = bt->T, *nimg = ints(g, (size_t)bt->B * T0), *cid = ints(g, (size_t)B * T);
        for (int b = 0; b < bt->B; b++)
            for (int t = 0, c = 0; t < T0; t++) {
                nimg[b * T0 + t] = c;
                c += bt->ids[b * T0 + t] == cfg->img_context_id;
            }
        for (int r = 0; r < B * T; r++) {
            int s = lay->src[r];
            cid[r] = s >= 0 ? bt->ids[s] : bt->ids[0];
            idx[r] = s >= 0 && cid[r] == cfg->img_context_id
                         ? B * T + first[bt->image_of[s / T0]] * tpt + nimg[s]
                         : r;
        }
        ids = cid;
    }
    Tensor *E = op_embedding(g, m->embed, ids, B, T);
    Tensor *x = E;
    if (V) x = op_reshape(g, op_gather_rows(g, op_concat_rows(g, E, V), idx, B * T), 3, (int[]){B, T, H});

    int NH = l->heads, KV = l->kv_heads, gs = NH / KV, W = NH + 2 * KV;
    LlmCtx ctx = {m, 0, B, T, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    if (lay) {
        ctx.pos = lay->pos, ctx.lengths = lay->lengths, ctx.seg = lay->seg;
    } else {
        int *pos = ints(g, (size_t)B * T), *lengths = ints(g, B);
        for (int r = 0; r < B * T; r++) pos[r] = r % T;
        memcpy(lengths, bt->lengths, B * sizeof(int));
        ctx.pos = pos;
        ctx.lengths = lengths;
    }
    /* the head rows of each token's fused q/k/v output: InternLM2's wqkv holds per kv group k
     * its gs q heads, k, v; the fused [q; k; v] of Qwen2 / Llama all q heads, then k, then v */
    int ilm = l->arch == LLM_INTERNLM2;
    int *qr = ints(g, (size_t)B * T * NH), *kr = ints(g, (size_t)B * T * KV), *vr = ints(g, (size_t)B * T * KV);
    for (int r = 0; r < B * T; r++) {
        for (int j = 0; j < NH; j++)
            qr[r * NH + j] = r * W + (ilm ? (j / gs) * (gs + 2) + j % gs : j);
        for (int kk = 0; kk < KV; kk++) {
            kr[r * KV + kk] = r * W + (ilm ? kk * (gs + 2) + gs : NH + kk);
            vr[r * KV + kk] = r * W + (ilm ? kk * (gs + 2) + gs + 1 : NH + KV + kk);
        }
    }
    ctx.q_rows = qr; ctx.k_rows = kr; ctx.v_rows = vr;
    for (int i = 0; i < l->layers; i++) {
        ctx.layer = i;
        if (rows && i == l->layers - 1) {
            int *rp = ints(g, n_rows), *rq = ints(g, (size_t)n_rows * NH);
            for (int j = 0; j < n_rows; j++) {
                rp[j] = ctx.pos[rows[j]];
                for (int h = 0; h < NH && ctx.q_rows; h++) rq[j * NH + h] = ctx.q_rows[rows[j] * NH + h];
            }
            ctx.rows = rows, ctx.n_rows = n_rows, ctx.row_pos = rp;
            if (ctx.q_rows) ctx.q_rows = rq;
        }
        Tensor *out;
        if (m->grad_checkpoint)
            graph_checkpoint(g, llm_layer, &ctx, sizeof ctx, &x, 1, &out, 1);
        else
            llm_layer(g, &ctx, &x, 1, &out, 1);
        x = out;
    }
    return x;
}

static long g_rm_tokens[2]; /* rm_tokens_counted */

static int int_cmp(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

void rm_tokens_counted(long *computed, long *in_rows) {
    *computed = g_rm_tokens[0], *in_rows = g_rm_tokens[1];
}

long rm_forward_tokens(const RewardModel *m, const RmBatch *bt) {
    if (!m->share_prefix && !m->packing) return (long)bt->B * bt->T;
    int *d = xmalloc(3 * ((size_t)bt->B + 1) * sizeof *d), B1 = bt->B + 1;
    int nd = layout_docs(bt, m->share_prefix, d, d + B1, d + 2 * B1), longest = 0;
    long sum = 0;
    for (int k = 0; k < nd; k++) {
        sum += d[2 * B1 + k];
        if (d[2 * B1 + k] > longest) longest = d[2 * B1 + k];
    }
    free(d);
    /* layout_build's B x T */
    return m->packing ? rm_bucket_round(sum, m->t_bucket) : (long)nd * rm_bucket_round(longest, m->t_bucket);
}

Tensor *rm_forward(RewardModel *m, Graph *g, const RmBatch *bt) {
    if (rm_check_batch(m, bt) != 0) MMRM_FATAL("rm_forward: %s", mmrm_last_error());
    const LlmConfig *l = &m->cfg.llm;
    int B = bt->B, T = bt->T;
    const Layout *lay = NULL;
    if (m->share_prefix || m->packing) lay = layout_build(g, bt, m->share_prefix, m->packing, m->t_bucket);
    /* the final norm is row-wise, so only the pooled rows need it; with the compact rows
     * the last layer too computes past K and V only there (decoder): then x holds the rows
     * rows[0 .. n) (the distinct pooled rows, increasing) and last[b] indexes them */
    int *last = ints(g, B), *rows = NULL, n = 0;
    long in_rows = 0;
    for (int b = 0; b < B; b++) {
        last[b] = lay ? lay->last[b] : b * T + bt->lengths[b] - 1;
        in_rows += bt->lengths[b];
    }
    if (lay && op_attention_rows_supported(g)) {
        rows = ints(g, B);
        memcpy(rows, last, B * sizeof(int));
        qsort(rows, B, sizeof(int), int_cmp);
        for (int b = 0; b < B; b++)
            if (n == 0 || rows[b] != rows[n - 1]) rows[n++] = rows[b];
        for (int b = 0; b < B; b++) {
            int lo = 0, hi = n - 1;
            while (lo < hi) {
                int mid = (lo + hi) / 2;
                if (rows[mid] < last[b]) lo = mid + 1; else hi = mid;
            }
            last[b] = lo;
        }
    }
    Tensor *x = decoder(m, g, bt, lay, rows, n);
    g_rm_tokens[0] += lay ? (long)lay->B * lay->T : (long)B * T;
    g_rm_tokens[1] += in_rows;
    Tensor *h = op_rmsnorm(g, op_gather_rows(g, x, last, B), m->final_norm, l->rms_eps);
    return op_reshape(g, op_linear_f32(g, h, m->score, NULL), 1, (int[]){B});
}

Tensor *rm_hidden_states(RewardModel *m, Graph *g, const RmBatch *bt) {
    if (rm_check_batch(m, bt) != 0) MMRM_FATAL("rm_hidden_states: %s", mmrm_last_error());
    return op_rmsnorm(g, decoder(m, g, bt, NULL, NULL, 0), m->final_norm, m->cfg.llm.rms_eps);
}

/* ---------------------------------------------------------------- cost */

double rm_llm_flops_per_token(const ModelConfig *cfg) {
    const LlmConfig *l = &cfg->llm;
    double qkvo = (double)l->hidden * l->head_dim * (2.0 * l->heads + 2.0 * l->kv_heads);
    double mlp = 3.0 * l->hidden * l->intermediate;
    return 2.0 * l->layers * (qkvo + mlp) + 2.0 * l->hidden; /* + score head */
}

double rm_vit_flops_per_tile(const ModelConfig *cfg) {
    const VisionConfig *v = &cfg->vision;
    double T = (double)config_grid(cfg) * config_grid(cfg) + 1, C = v->hidden;
    double per_layer = 2.0 * T * (4.0 * C * C + 2.0 * C * v->intermediate) + 4.0 * T * T * C;
    double patch = 2.0 * (T - 1) * C * v->channels * v->patch * v->patch;
    double tpt = config_tokens_per_tile(cfg), H = cfg->llm.hidden;
    double mlp1 = 2.0 * tpt * (4.0 * C * H + H * H);
    return v->layers * per_layer + patch + mlp1;
}

Tensor *rm_vision(RewardModel *m, Graph *g, const float *pixels, int n) {
    return rm_connector(m, g, rm_vit_features(m, g, pixels, n));
}
