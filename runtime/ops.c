/* ops.c - differentiable ops over the kernel table (ops.h). Backward functions read the
 * tensors saved on their tape entry; gradients of inputs that do not require grad (frozen
 * weights, data) are passed to the kernels as NULL and never computed. */
#include "runtime/ops.h"

#include <string.h>

#include "runtime/error.h"

static float *F(const Tensor *t) { return t ? (float *)t->data : NULL; }

/* the gradient buffer of an input that needs one, else NULL */
static float *gin(Graph *g, Tensor *t) {
    return t && t->requires_grad ? graph_grad(g, t) : NULL;
}

static void require_f32(const char *op, const Tensor *t) {
    char buf[200];
    MMRM_CHECK(t->dtype == DT_F32, "%s: %s must be f32 (convert bf16 storage on load)", op,
               tensor_describe(t, buf, sizeof buf));
}

/* a device copy of a host array, from the activation arena (lives until graph_reset) */
static void *upload(Graph *g, const void *src, size_t bytes) {
    void *dst = arena_alloc(&g->act, bytes);
    device_copy_from_host(g->device, dst, src, bytes);
    return dst;
}

static int *copy_ints(Graph *g, const int *src, size_t n) {
    return upload(g, src, n * sizeof(int));
}

static int last_dim(const Tensor *t) { return t->shape[t->ndim - 1]; }

static Tensor *like(Graph *g, const Tensor *x, const char *name) {
    return graph_tensor(g, name, x->ndim, x->shape);
}

/* ---------------------------------------------------------------- linear */

static void linear_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0], *w = e->in[1], *b = e->in[2], *y = e->out[0];
    int OC = w->shape[0], C = (int)(w->numel / OC), N = (int)(x->numel / C);
    g->K->matmul_backward(gin(g, x), gin(g, w), gin(g, b), y->grad, F(x), F(w), N, C, OC);
}

Tensor *op_linear(Graph *g, Tensor *x, Tensor *w, Tensor *b) {
    char bx[200], bw[200];
    require_f32("linear", x);
    int OC = w->shape[0], C = (int)(w->numel / (size_t)OC);
    MMRM_CHECK(last_dim(x) == C, "linear: input %s does not match weight %s (need last dim %d)",
               tensor_describe(x, bx, sizeof bx), tensor_describe(w, bw, sizeof bw), C);
    MMRM_CHECK(!b || b->numel == (size_t)OC, "linear: bias %s does not match %d outputs",
               tensor_describe(b, bx, sizeof bx), OC);
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = OC;
    Tensor *y = graph_tensor(g, "linear", x->ndim, shape);
    int N = (int)(x->numel / C);
    g->K->matmul_forward(F(y), F(x), F(w), F(b), N, C, OC);
    graph_record(g, "linear", linear_bw, (Tensor *[]){x, w, b}, 3, &y, 1);
    return y;
}

/* ---------------------------------------------------------------- embedding */

static void embedding_bw(Graph *g, TapeEntry *e) {
    Tensor *table = e->in[0], *y = e->out[0];
    int C = table->shape[1], N = (int)(y->numel / C);
    g->K->embedding_backward(gin(g, table), y->grad, e->ctx, N, C);
}

Tensor *op_embedding(Graph *g, Tensor *table, const int *ids, int B, int T) {
    MMRM_CHECK(table->ndim == 2, "embedding: table %s must be (V, C)", table->name);
    int V = table->shape[0], C = table->shape[1];
    for (int i = 0; i < B * T; i++)
        MMRM_CHECK(ids[i] >= 0 && ids[i] < V,
                   "embedding: token id %d at position %d (sequence %d) is outside the "
                   "vocabulary of %s (%d entries): tokenizer and model do not match?",
                   ids[i], i % T, i / T, table->name, V);
    Tensor *y = graph_tensor(g, "embedding", 3, (int[]){B, T, C});
    int *dids = copy_ints(g, ids, (size_t)B * T);
    g->K->embedding_forward(F(y), dids, F(table), B * T, C);
    TapeEntry *e = graph_record(g, "embedding", embedding_bw, &table, 1, &y, 1);
    if (e) e->ctx = dids;
    return y;
}

/* ---------------------------------------------------------------- norms */

typedef struct { float *mean, *rstd; } NormCtx;

static void layernorm_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0], *w = e->in[1], *b = e->in[2], *y = e->out[0];
    NormCtx *c = e->ctx;
    int C = last_dim(x), N = (int)(x->numel / C);
    g->K->layernorm_backward(gin(g, x), gin(g, w), gin(g, b), y->grad, F(x), F(w), c->mean,
                             c->rstd, N, C);
}

static void check_norm(const char *op, const Tensor *x, const Tensor *w, const Tensor *b) {
    char bx[200], bw[200];
    require_f32(op, x);
    MMRM_CHECK(w->numel == (size_t)last_dim(x) && (!b || b->numel == w->numel),
               "%s: weight %s does not match input %s", op, tensor_describe(w, bw, sizeof bw),
               tensor_describe(x, bx, sizeof bx));
}

Tensor *op_layernorm(Graph *g, Tensor *x, Tensor *w, Tensor *b, float eps) {
    check_norm("layernorm", x, w, b);
    int C = last_dim(x), N = (int)(x->numel / C);
    Tensor *y = like(g, x, "layernorm");
    NormCtx *c = graph_scratch(g, sizeof *c);
    c->mean = arena_alloc(&g->act, N * sizeof(float));
    c->rstd = arena_alloc(&g->act, N * sizeof(float));
    g->K->layernorm_forward(F(y), c->mean, c->rstd, F(x), F(w), F(b), N, C, eps);
    TapeEntry *e = graph_record(g, "layernorm", layernorm_bw, (Tensor *[]){x, w, b}, 3, &y, 1);
    if (e) e->ctx = c;
    return y;
}

static void rmsnorm_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0], *w = e->in[1], *y = e->out[0];
    int C = last_dim(x), N = (int)(x->numel / C);
    g->K->rmsnorm_backward(gin(g, x), gin(g, w), y->grad, F(x), F(w), e->ctx, N, C);
}

Tensor *op_rmsnorm(Graph *g, Tensor *x, Tensor *w, float eps) {
    check_norm("rmsnorm", x, w, NULL);
    int C = last_dim(x), N = (int)(x->numel / C);
    Tensor *y = like(g, x, "rmsnorm");
    float *rstd = arena_alloc(&g->act, N * sizeof(float));
    g->K->rmsnorm_forward(F(y), rstd, F(x), F(w), N, C, eps);
    TapeEntry *e = graph_record(g, "rmsnorm", rmsnorm_bw, (Tensor *[]){x, w}, 2, &y, 1);
    if (e) e->ctx = rstd;
    return y;
}

/* ---------------------------------------------------------------- activations */

static void gelu_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0];
    g->K->gelu_backward(gin(g, x), e->out[0]->grad, F(x), x->numel);
}

Tensor *op_gelu(Graph *g, Tensor *x) {
    require_f32("gelu", x);
    Tensor *y = like(g, x, "gelu");
    g->K->gelu_forward(F(y), F(x), x->numel);
    graph_record(g, "gelu", gelu_bw, &x, 1, &y, 1);
    return y;
}

static void swiglu_bw(Graph *g, TapeEntry *e) {
    Tensor *gate = e->in[0], *up = e->in[1];
    g->K->swiglu_backward(gin(g, gate), gin(g, up), e->out[0]->grad, F(gate), F(up), gate->numel);
}

Tensor *op_swiglu(Graph *g, Tensor *gate, Tensor *up) {
    char ba[200], bb[200];
    MMRM_CHECK(tensor_same_shape(gate, up), "swiglu: gate %s and up %s differ in shape",
               tensor_describe(gate, ba, sizeof ba), tensor_describe(up, bb, sizeof bb));
    Tensor *y = like(g, gate, "swiglu");
    g->K->swiglu_forward(F(y), F(gate), F(up), gate->numel);
    graph_record(g, "swiglu", swiglu_bw, (Tensor *[]){gate, up}, 2, &y, 1);
    return y;
}

/* ---------------------------------------------------------------- rope, attention */

typedef struct { int *pos; float theta; } RopeCtx;

static void rope_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0];
    RopeCtx *c = e->ctx;
    int NH = x->shape[2], HD = x->shape[3], N = x->shape[0] * x->shape[1];
    g->K->rope_backward(gin(g, x), e->out[0]->grad, c->pos, N, NH, HD, c->theta);
}

Tensor *op_rope(Graph *g, Tensor *x, const int *pos, float theta) {
    char bx[200];
    MMRM_CHECK(x->ndim == 4 && x->shape[3] % 2 == 0,
               "rope: input %s must be (B, T, NH, HD) with an even HD",
               tensor_describe(x, bx, sizeof bx));
    int N = x->shape[0] * x->shape[1];
    Tensor *y = like(g, x, "rope");
    RopeCtx *c = graph_scratch(g, sizeof *c);
    c->pos = copy_ints(g, pos, N);
    c->theta = theta;
    g->K->rope_forward(F(y), F(x), c->pos, N, x->shape[2], x->shape[3], theta);
    TapeEntry *e = graph_record(g, "rope", rope_bw, &x, 1, &y, 1);
    if (e) e->ctx = c;
    return y;
}

typedef struct { float *lse; int *lengths; int causal; } AttnCtx;

static void attention_bw(Graph *g, TapeEntry *e) {
    Tensor *q = e->in[0], *k = e->in[1], *v = e->in[2], *y = e->out[0];
    AttnCtx *c = e->ctx;
    g->K->attention_backward(gin(g, q), gin(g, k), gin(g, v), y->grad, F(y), c->lse, F(q), F(k),
                             F(v), c->lengths, q->shape[0], q->shape[1], q->shape[2],
                             k->shape[2], q->shape[3], c->causal);
}

Tensor *op_attention(Graph *g, Tensor *q, Tensor *k, Tensor *v, const int *lengths, int causal) {
    char bq[200], bk[200];
    MMRM_CHECK(q->ndim == 4 && k->ndim == 4 && tensor_same_shape(k, v) &&
                   q->shape[0] == k->shape[0] && q->shape[1] == k->shape[1] &&
                   q->shape[3] == k->shape[3] && k->shape[2] > 0 && q->shape[2] % k->shape[2] == 0,
               "attention: q %s and k/v %s must be (B, T, NH, HD) and (B, T, KV, HD) with NH a "
               "multiple of KV", tensor_describe(q, bq, sizeof bq), tensor_describe(k, bk, sizeof bk));
    int B = q->shape[0], T = q->shape[1], NH = q->shape[2], KV = k->shape[2], HD = q->shape[3];
    for (int b = 0; b < B; b++)
        MMRM_CHECK(lengths[b] >= 0 && lengths[b] <= T,
                   "attention: sequence %d has length %d outside [0, %d]", b, lengths[b], T);
    Tensor *y = like(g, q, "attention");
    AttnCtx *c = graph_scratch(g, sizeof *c);
    c->lse = arena_alloc(&g->act, (size_t)B * NH * T * sizeof(float));
    c->lengths = copy_ints(g, lengths, B);
    c->causal = causal;
    g->K->attention_forward(F(y), c->lse, F(q), F(k), F(v), c->lengths, B, T, NH, KV, HD, causal);
    TapeEntry *e = graph_record(g, "attention", attention_bw, (Tensor *[]){q, k, v}, 3, &y, 1);
    if (e) e->ctx = c;
    return y;
}

/* ---------------------------------------------------------------- patches, pixel shuffle */

static void im2col_bw(Graph *g, TapeEntry *e) {
    Tensor *img = e->in[0];
    int p = *(int *)e->ctx;
    g->K->im2col_backward(gin(g, img), e->out[0]->grad, img->shape[0], img->shape[1],
                          img->shape[2], img->shape[3], p);
}

Tensor *op_patch_embed(Graph *g, Tensor *img, Tensor *w, Tensor *b) {
    char bi[200], bw[200];
    MMRM_CHECK(img->ndim == 4 && w->ndim == 4 && w->shape[1] == img->shape[1] &&
                   w->shape[2] == w->shape[3] && w->shape[2] > 0 &&
                   img->shape[2] % w->shape[2] == 0 && img->shape[3] % w->shape[2] == 0,
               "patch_embed: image %s and weight %s must be (B, CH, H, W) and (C, CH, p, p) "
               "with H and W multiples of p", tensor_describe(img, bi, sizeof bi),
               tensor_describe(w, bw, sizeof bw));
    int B = img->shape[0], CH = img->shape[1], H = img->shape[2], W = img->shape[3];
    int p = w->shape[2], np = (H / p) * (W / p);
    Tensor *cols = graph_tensor(g, "im2col", 3, (int[]){B, np, CH * p * p});
    g->K->im2col_forward(F(cols), F(img), B, CH, H, W, p);
    int *pc = graph_scratch(g, sizeof *pc);
    *pc = p;
    TapeEntry *e = graph_record(g, "im2col", im2col_bw, &img, 1, &cols, 1);
    if (e) e->ctx = pc;
    return op_linear(g, cols, w, b);
}

static void pixel_shuffle_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0];
    int G = *(int *)e->ctx;
    g->K->pixel_shuffle_backward(gin(g, x), e->out[0]->grad, x->shape[0], G, x->shape[2]);
}

Tensor *op_pixel_shuffle(Graph *g, Tensor *x) {
    char bx[200];
    int G = 0;
    if (x->ndim == 3)
        while (G * G < x->shape[1]) G++;
    MMRM_CHECK(x->ndim == 3 && G * G == x->shape[1] && G % 2 == 0,
               "pixel_shuffle: input %s must be (B, G*G, C) with an even G",
               tensor_describe(x, bx, sizeof bx));
    int B = x->shape[0], C = x->shape[2];
    Tensor *y = graph_tensor(g, "pixel_shuffle", 3, (int[]){B, (G / 2) * (G / 2), 4 * C});
    g->K->pixel_shuffle_forward(F(y), F(x), B, G, C);
    int *pg = graph_scratch(g, sizeof *pg);
    *pg = G;
    TapeEntry *e = graph_record(g, "pixel_shuffle", pixel_shuffle_bw, &x, 1, &y, 1);
    if (e) e->ctx = pg;
    return y;
}

/* ---------------------------------------------------------------- residual, scale, drop */

static void add_bw(Graph *g, TapeEntry *e) {
    g->K->add_backward(gin(g, e->in[0]), gin(g, e->in[1]), e->out[0]->grad, e->out[0]->numel);
}

Tensor *op_add(Graph *g, Tensor *a, Tensor *b) {
    char ba[200], bb[200];
    MMRM_CHECK(tensor_same_shape(a, b), "add: %s and %s differ in shape",
               tensor_describe(a, ba, sizeof ba), tensor_describe(b, bb, sizeof bb));
    Tensor *y = like(g, a, "add");
    g->K->add_forward(F(y), F(a), F(b), a->numel);
    graph_record(g, "add", add_bw, (Tensor *[]){a, b}, 2, &y, 1);
    return y;
}

static void channel_scale_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0], *s = e->in[1];
    int C = last_dim(x);
    g->K->channel_scale_backward(gin(g, x), gin(g, s), e->out[0]->grad, F(x), F(s),
                                 (int)(x->numel / C), C);
}

Tensor *op_channel_scale(Graph *g, Tensor *x, Tensor *scale) {
    char bx[200], bs[200];
    MMRM_CHECK(scale->numel == (size_t)last_dim(x), "channel_scale: scale %s does not match %s",
               tensor_describe(scale, bs, sizeof bs), tensor_describe(x, bx, sizeof bx));
    int C = last_dim(x);
    Tensor *y = like(g, x, "channel_scale");
    g->K->channel_scale_forward(F(y), F(x), F(scale), (int)(x->numel / C), C);
    graph_record(g, "channel_scale", channel_scale_bw, (Tensor *[]){x, scale}, 2, &y, 1);
    return y;
}

static void drop_path_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0];
    int B = x->shape[0];
    g->K->drop_path_backward(gin(g, x), e->out[0]->grad, e->ctx, B, x->numel / B);
}

Tensor *op_drop_path(Graph *g, Tensor *x, float rate) {
    MMRM_CHECK(rate >= 0 && rate < 1, "drop_path: rate %g outside [0, 1)", rate);
    if (!g->training || rate == 0) return x;
    int B = x->shape[0];
    float *hkeep = graph_scratch(g, B * sizeof(float));
    for (int b = 0; b < B; b++)
        hkeep[b] = rng_uniform(&g->dropout) < 1.0 - rate ? 1.0f / (1.0f - rate) : 0.0f;
    float *keep = upload(g, hkeep, B * sizeof(float));
    Tensor *y = like(g, x, "drop_path");
    g->K->drop_path_forward(F(y), F(x), keep, B, x->numel / B);
    TapeEntry *e = graph_record(g, "drop_path", drop_path_bw, &x, 1, &y, 1);
    if (e) e->ctx = keep;
    return y;
}

Tensor *op_reshape(Graph *g, Tensor *x, int ndim, const int *shape) {
    Tensor *y = graph_scratch(g, sizeof *y);
    *y = *x;
    y->grad = NULL;
    y->requires_grad = 0;
    y->is_param = 0;
    tensor_set_shape(y, x->name, ndim, shape);
    char bx[200];
    MMRM_CHECK(y->numel == x->numel, "reshape of %s to %zu elements",
               tensor_describe(x, bx, sizeof bx), y->numel);
    /* Gradients written into the view land in x's buffer: no tape entry, no copy. */
    if (g->grad_enabled && x->requires_grad) {
        y->grad = graph_grad(g, x);
        y->requires_grad = 1;
    }
    return y;
}

static void gather_rows_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0], *y = e->out[0];
    int C = last_dim(x);
    g->K->embedding_backward(gin(g, x), y->grad, e->ctx, (int)(y->numel / C), C);
}

Tensor *op_gather_rows(Graph *g, Tensor *x, const int *idx, int M) {
    int C = last_dim(x), N = (int)(x->numel / C);
    for (int m = 0; m < M; m++)
        MMRM_CHECK(idx[m] >= 0 && idx[m] < N, "gather_rows from %s: row %d (entry %d) outside [0, %d)",
                   x->name, idx[m], m, N);
    Tensor *y = graph_tensor(g, "gather_rows", 2, (int[]){M, C});
    int *didx = copy_ints(g, idx, M);
    /* a gather is an embedding lookup with x as the table */
    g->K->embedding_forward(F(y), didx, F(x), M, C);
    TapeEntry *e = graph_record(g, "gather_rows", gather_rows_bw, &x, 1, &y, 1);
    if (e) e->ctx = didx;
    return y;
}

static void concat_rows_bw(Graph *g, TapeEntry *e) {
    Tensor *a = e->in[0], *b = e->in[1];
    const float *d = e->out[0]->grad;
    if (a->requires_grad) g->K->add_backward(graph_grad(g, a), NULL, d, a->numel);
    if (b->requires_grad) g->K->add_backward(graph_grad(g, b), NULL, d + a->numel, b->numel);
}

Tensor *op_concat_rows(Graph *g, Tensor *a, Tensor *b) {
    char ba[200], bb[200];
    int C = last_dim(a);
    MMRM_CHECK(last_dim(b) == C, "concat_rows: %s and %s differ in the last dim",
               tensor_describe(a, ba, sizeof ba), tensor_describe(b, bb, sizeof bb));
    int Na = (int)(a->numel / C), Nb = (int)(b->numel / C);
    Tensor *y = graph_tensor(g, "concat_rows", 2, (int[]){Na + Nb, C});
    device_memcpy(g->device, F(y), F(a), a->numel * sizeof(float));
    device_memcpy(g->device, F(y) + a->numel, F(b), b->numel * sizeof(float));
    graph_record(g, "concat_rows", concat_rows_bw, (Tensor *[]){a, b}, 2, &y, 1);
    return y;
}

/* ---------------------------------------------------------------- losses */

/* Loss kernels produce their gradients in one pass; forward runs them without gradient
 * outputs, backward runs them again with the root's gradient as dloss (a P-element
 * recompute is cheaper than keeping four gradient vectors alive). */
typedef struct { float *margin; float eps; } LossCtx;

static float root_grad(const Tensor *loss) {
    float d;
    device_copy_to_host(loss->device, &d, loss->grad, sizeof d);
    return d;
}

static void bt_bw(Graph *g, TapeEntry *e) {
    Tensor *rc = e->in[0], *rr = e->in[1], *loss = e->out[0];
    LossCtx *c = e->ctx;
    int P = (int)rc->numel;
    float *scratch = arena_alloc(&g->act, (P + 1) * sizeof(float));
    g->K->bt_loss(scratch, scratch + 1, gin(g, rc), gin(g, rr), F(rc), F(rr), c->margin, P,
                  root_grad(loss));
}

static void check_rewards(const char *op, Tensor *a, Tensor *b) {
    char ba[200], bb[200];
    MMRM_CHECK(a->numel == b->numel && a->numel > 0,
               "%s: reward vectors %s and %s must have the same number (> 0) of pairs", op,
               tensor_describe(a, ba, sizeof ba), tensor_describe(b, bb, sizeof bb));
}

Tensor *op_bt_loss(Graph *g, Tensor *rc, Tensor *rr, const float *margin, Tensor **losses_out) {
    check_rewards("bt_loss", rc, rr);
    int P = (int)rc->numel;
    Tensor *loss = graph_tensor(g, "bt_loss", 1, (int[]){1});
    Tensor *losses = graph_tensor(g, "bt_losses", 1, (int[]){P});
    LossCtx *c = graph_scratch(g, sizeof *c);
    c->margin = NULL;
    if (margin) c->margin = upload(g, margin, P * sizeof(float));
    g->K->bt_loss(F(loss), F(losses), NULL, NULL, F(rc), F(rr), c->margin, P, 1.0f);
    TapeEntry *e = graph_record(g, "bt_loss", bt_bw, (Tensor *[]){rc, rr}, 2, &loss, 1);
    if (e) e->ctx = c;
    if (losses_out) *losses_out = losses;
    return loss;
}

static void shortcut_bw(Graph *g, TapeEntry *e) {
    Tensor *mc = e->in[0], *mr = e->in[1], *bc = e->in[2], *br = e->in[3], *loss = e->out[0];
    LossCtx *c = e->ctx;
    int P = (int)mc->numel;
    float *s = arena_alloc(&g->act, (3 * P + 1) * sizeof(float));
    g->K->shortcut_loss(s, s + 1, s + 1 + P, s + 1 + 2 * P, gin(g, mc), gin(g, mr), gin(g, bc),
                        gin(g, br), F(mc), F(mr), F(bc), F(br), P, c->eps, root_grad(loss));
}

ShortcutLoss op_shortcut_loss(Graph *g, Tensor *mc, Tensor *mr, Tensor *bc, Tensor *br,
                              float eps) {
    check_rewards("shortcut_loss", mc, mr);
    check_rewards("shortcut_loss", mc, bc);
    check_rewards("shortcut_loss", mc, br);
    int P = (int)mc->numel;
    ShortcutLoss r;
    r.loss = graph_tensor(g, "shortcut_loss", 1, (int[]){1});
    r.w = graph_tensor(g, "sfc_w", 1, (int[]){P});
    r.lm = graph_tensor(g, "loss_main", 1, (int[]){P});
    r.lb = graph_tensor(g, "loss_bias", 1, (int[]){P});
    g->K->shortcut_loss(F(r.loss), F(r.w), F(r.lm), F(r.lb), NULL, NULL, NULL, NULL, F(mc), F(mr),
                        F(bc), F(br), P, eps, 1.0f);
    LossCtx *c = graph_scratch(g, sizeof *c);
    c->margin = NULL;
    c->eps = eps;
    TapeEntry *e = graph_record(g, "shortcut_loss", shortcut_bw, (Tensor *[]){mc, mr, bc, br}, 4,
                                &r.loss, 1);
    if (e) e->ctx = c;
    return r;
}
