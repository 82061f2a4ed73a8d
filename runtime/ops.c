/* ops.c - differentiable ops over the kernel table (ops.h). Backward functions read the
 * tensors saved on their tape entry; gradients of inputs that do not require grad (frozen
 * weights, data) are passed to the kernels as NULL and never computed. */
#include "runtime/ops.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/ops_internal.h"

/* ---------------------------------------------------------------- linear */

/* the weight's bf16 copy the GEMM reads: only for bf16 operands, and only an f32 weight's */
static const uint16_t *w16_of(const Graph *g, const Tensor *w) {
    return g->precision == KP_BF16 && w->dtype == DT_F32 ? w->w16 : NULL;
}

static void linear_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0], *w = e->in[1], *b = e->in[2], *y = e->out[0];
    int OC = w->shape[0], C = (int)(w->numel / OC), N = (int)(x->numel / C);
    float *dx = gin(g, x), *dw = gin(g, w), *db = gin(g, b);
    if (x->dtype == DT_BF16 && w->dtype == DT_F32 && g->K->matmul_backward_x16)
        g->K->matmul_backward_x16(dx, dw, db, y->grad, x->data, F(w), w16_of(g, w), N, C, OC,
                                  g->precision);
    else
        g->K->matmul_backward(dx, dw, db, y->grad, in32(g, x), in32(g, w), w16_of(g, w), N, C,
                              OC, g->precision);
    done(g);
}

static Tensor *linear(Graph *g, Tensor *x, Tensor *w, Tensor *b, int f32_out) {
    char bx[200], bw[200];
    require_float("linear", x);
    int OC = w->shape[0], C = (int)(w->numel / (size_t)OC);
    MMRM_CHECK(last_dim(x) == C, "linear: input %s does not match weight %s (need last dim %d)",
               tensor_describe(x, bx, sizeof bx), tensor_describe(w, bw, sizeof bw), C);
    MMRM_CHECK(!b || b->numel == (size_t)OC, "linear: bias %s does not match %d outputs",
               tensor_describe(b, bx, sizeof bx), OC);
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = OC;
    Tensor *y = f32_out ? graph_tensor(g, "linear", x->ndim, shape)
                        : graph_activation(g, "linear", x->ndim, shape);
    int N = (int)(x->numel / C);
    if (x->dtype == DT_BF16 && w->dtype == DT_F32 && g->K->matmul_forward_x16) {
        /* a bf16 output is written by the GEMM itself */
        g->K->matmul_forward_x16(y->dtype == DT_F32 ? F(y) : NULL, H(y), x->data, F(w),
                                 w16_of(g, w), in32(g, b), N, C, OC, g->precision);
    } else {
        float *yf = out32(g, y);
        g->K->matmul_forward(yf, in32(g, x), in32(g, w), w16_of(g, w), in32(g, b), N, C, OC,
                             g->precision);
        put(g, y, yf);
    }
    done(g);
    graph_record(g, "linear", linear_bw, (Tensor *[]){x, w, b}, 3, &y, 1);
    return y;
}

Tensor *op_linear(Graph *g, Tensor *x, Tensor *w, Tensor *b) { return linear(g, x, w, b, 0); }

Tensor *op_linear_f32(Graph *g, Tensor *x, Tensor *w, Tensor *b) { return linear(g, x, w, b, 1); }

/* ---------------------------------------------------------------- embedding */

static void embedding_bw(Graph *g, TapeEntry *e) {
    Tensor *table = e->in[0], *y = e->out[0];
    int C = table->shape[1], N = (int)(y->numel / C);
    g->K->embedding_backward(gin(g, table), y->grad, e->ctx, N, C, table->shape[0]);
}

Tensor *op_embedding(Graph *g, Tensor *table, const int *ids, int B, int T) {
    MMRM_CHECK(table->ndim == 2, "embedding: table %s must be (V, C)", table->name);
    int V = table->shape[0], C = table->shape[1];
    for (int i = 0; i < B * T; i++)
        MMRM_CHECK(ids[i] >= 0 && ids[i] < V,
                   "embedding: token id %d at position %d (sequence %d) is outside the "
                   "vocabulary of %s (%d entries): tokenizer and model do not match?",
                   ids[i], i % T, i / T, table->name, V);
    Tensor *y = graph_activation(g, "embedding", 3, (int[]){B, T, C});
    int *dids = copy_ints(g, ids, (size_t)B * T);
    if (table->dtype == DT_F32 && x16(g->K->embedding_forward_x16, y, NULL, NULL)) {
        g->K->embedding_forward_x16(H(y), dids, F(table), B * T, C);
    } else {
        float *yf = out32(g, y);
        g->K->embedding_forward(yf, dids, in32(g, table), B * T, C);
        put(g, y, yf);
        done(g);
    }
    TapeEntry *e = graph_record(g, "embedding", embedding_bw, &table, 1, &y, 1);
    if (e) e->ctx = dids;
    return y;
}

/* ---------------------------------------------------------------- norms */

typedef struct { float *mean, *rstd; } NormCtx; /* mean NULL: RMSNorm */

/* the norm's backward from dout into dx (accumulating), reading the saved input x */
static void norm_backward(Graph *g, float *dx, const float *dout, Tensor *x, Tensor *w,
                          Tensor *b, const NormCtx *c) {
    int C = last_dim(x), N = (int)(x->numel / C);
    float *dw = gin(g, w), *db = gin(g, b);
    int pf = f32_params(w, b);
    if (pf && c->mean && x16(g->K->layernorm_backward_x16, x, NULL, NULL))
        g->K->layernorm_backward_x16(dx, dw, db, dout, H(x), F(w), c->mean, c->rstd, N, C);
    else if (pf && !c->mean && x16(g->K->rmsnorm_backward_x16, x, NULL, NULL))
        g->K->rmsnorm_backward_x16(dx, dw, dout, H(x), F(w), c->rstd, N, C);
    else if (c->mean)
        g->K->layernorm_backward(dx, dw, db, dout, in32(g, x), in32(g, w), c->mean, c->rstd, N, C);
    else
        g->K->rmsnorm_backward(dx, dw, dout, in32(g, x), in32(g, w), c->rstd, N, C);
    done(g);
}

static void norm_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0];
    norm_backward(g, gin(g, x), e->out[0]->grad, x, e->in[1], e->in[2], e->ctx);
}

static void check_norm(const char *op, const Tensor *x, const Tensor *w, const Tensor *b) {
    char bx[200], bw[200];
    require_float(op, x);
    MMRM_CHECK(w->numel == (size_t)last_dim(x) && (!b || b->numel == w->numel),
               "%s: weight %s does not match input %s", op, tensor_describe(w, bw, sizeof bw),
               tensor_describe(x, bx, sizeof bx));
}

static void add_fw(Graph *g, Tensor *y, const Tensor *a, const Tensor *b);

/* y = norm(x): LayerNorm (layer; bias b or NULL) or RMSNorm, statistics into c */
static void norm_fw(Graph *g, Tensor *y, NormCtx *c, Tensor *x, Tensor *w, Tensor *b, float eps,
                    int layer) {
    const KernelOps *K = g->K;
    int C = last_dim(x), N = (int)(x->numel / C), pf = f32_params(w, b);
    if (pf && layer && x16(K->layernorm_forward_x16, x, y, NULL)) {
        K->layernorm_forward_x16(H(y), c->mean, c->rstd, H(x), F(w), F(b), N, C, eps);
    } else if (pf && !layer && x16(K->rmsnorm_forward_x16, x, y, NULL)) {
        K->rmsnorm_forward_x16(H(y), c->rstd, H(x), F(w), N, C, eps);
    } else {
        float *yf = out32(g, y);
        if (layer)
            K->layernorm_forward(yf, c->mean, c->rstd, in32(g, x), in32(g, w), in32(g, b), N, C, eps);
        else
            K->rmsnorm_forward(yf, c->rstd, in32(g, x), in32(g, w), N, C, eps);
        put(g, y, yf);
        done(g);
    }
}

/* sum = x + a, y = norm(sum) in one kernel where the table has one for the storage (the
 * fp32 entries for f32 tensors, the *_x16 ones for bf16); else the add, then the norm of
 * the stored (rounded) sum, which is what the fused bf16 kernels compute too */
static void add_norm_fw(Graph *g, Tensor *s, Tensor *y, NormCtx *c, Tensor *x, Tensor *a,
                        Tensor *w, Tensor *b, float eps, int layer) {
    const KernelOps *K = g->K;
    int C = last_dim(x), N = (int)(x->numel / C);
    int f32 = x->dtype == DT_F32 && a->dtype == DT_F32 && y->dtype == DT_F32;
    int pf = f32_params(w, b);
    if (pf && layer && x16(K->add_layernorm_forward_x16, x, a, y)) {
        K->add_layernorm_forward_x16(H(s), H(y), c->mean, c->rstd, H(x), H(a), F(w), F(b), N, C,
                                     eps);
    } else if (pf && !layer && x16(K->add_rmsnorm_forward_x16, x, a, y)) {
        K->add_rmsnorm_forward_x16(H(s), H(y), c->rstd, H(x), H(a), F(w), N, C, eps);
    } else if (f32 && layer) {
        K->add_layernorm_forward(F(s), F(y), c->mean, c->rstd, F(x), F(a), in32(g, w), in32(g, b),
                                 N, C, eps);
        done(g);
    } else if (f32) {
        K->add_rmsnorm_forward(F(s), F(y), c->rstd, F(x), F(a), in32(g, w), N, C, eps);
        done(g);
    } else {
        add_fw(g, s, x, a);
        norm_fw(g, y, c, s, w, b, eps, layer);
    }
}

/* the fused op's backward: the norm's gradient joins the sum's (from the residual stream
 * downstream), and the add hands the total to x and a; in one kernel where the table has
 * it (the CUDA one), else the norm's backward into the sum's gradient, then the add's */
static void add_norm_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0], *a = e->in[1], *w = e->in[2], *b = e->in[3], *s = e->out[0];
    Tensor *y = e->out[1];
    const KernelOps *K = g->K;
    const NormCtx *c = e->ctx;
    int C = last_dim(s), N = (int)(s->numel / C);
    float *dx = gin(g, x), *da = gin(g, a), *dw = gin(g, w), *db = gin(g, b);
    int f32 = s->dtype == DT_F32, layer = c->mean != NULL;
    int fused = y->grad && f32_params(w, b);
    if (fused && layer && (f32 ? K->add_layernorm_backward != NULL
                                 : x16(K->add_layernorm_backward_x16, s, NULL, NULL))) {
        if (f32)
            K->add_layernorm_backward(dx, da, dw, db, s->grad, y->grad, F(s), F(w), c->mean,
                                      c->rstd, N, C);
        else
            K->add_layernorm_backward_x16(dx, da, dw, db, s->grad, y->grad, H(s), F(w), c->mean,
                                          c->rstd, N, C);
        return;
    }
    if (fused && !layer && (f32 ? K->add_rmsnorm_backward != NULL
                                  : x16(K->add_rmsnorm_backward_x16, s, NULL, NULL))) {
        if (f32)
            K->add_rmsnorm_backward(dx, da, dw, s->grad, y->grad, F(s), F(w), c->rstd, N, C);
        else
            K->add_rmsnorm_backward_x16(dx, da, dw, s->grad, y->grad, H(s), F(w), c->rstd, N, C);
        return;
    }
    float *ds = graph_grad(g, s);
    if (y->grad) norm_backward(g, ds, y->grad, s, w, b, c);
    K->add_backward(dx, da, ds, s->numel);
}

/* y = norm(x); with a (the fused residual add) *sum = x + a and y = norm(*sum) */
static Tensor *norm(Graph *g, Tensor *x, Tensor *a, Tensor *w, Tensor *b, float eps, int layer,
                    Tensor **sum) {
    const char *op = a ? (layer ? "add_layernorm" : "add_rmsnorm") : layer ? "layernorm" : "rmsnorm";
    check_norm(op, x, w, b);
    char bx[200], ba[200];
    MMRM_CHECK(!a || tensor_same_shape(x, a), "%s: %s and %s differ in shape", op,
               tensor_describe(x, bx, sizeof bx), tensor_describe(a, ba, sizeof ba));
    int N = (int)(x->numel / last_dim(x));
    Tensor *s = a ? like(g, x, "residual") : NULL, *y = like(g, x, op);
    NormCtx *c = graph_scratch(g, sizeof *c);
    c->mean = layer ? arena_alloc(&g->act, N * sizeof(float)) : NULL;
    c->rstd = arena_alloc(&g->act, N * sizeof(float));
    TapeEntry *e;
    if (a) {
        add_norm_fw(g, s, y, c, x, a, w, b, eps, layer);
        e = graph_record(g, op, add_norm_bw, (Tensor *[]){x, a, w, b}, 4, (Tensor *[]){s, y}, 2);
        *sum = s;
    } else {
        norm_fw(g, y, c, x, w, b, eps, layer);
        e = graph_record(g, op, norm_bw, (Tensor *[]){x, w, b}, 3, &y, 1);
    }
    if (e) e->ctx = c;
    return y;
}

Tensor *op_layernorm(Graph *g, Tensor *x, Tensor *w, Tensor *b, float eps) {
    return norm(g, x, NULL, w, b, eps, 1, NULL);
}

Tensor *op_rmsnorm(Graph *g, Tensor *x, Tensor *w, float eps) {
    return norm(g, x, NULL, w, NULL, eps, 0, NULL);
}

Tensor *op_add_layernorm(Graph *g, Tensor *x, Tensor *a, Tensor *w, Tensor *b, float eps,
                         Tensor **sum) {
    return norm(g, x, a, w, b, eps, 1, sum);
}

Tensor *op_add_rmsnorm(Graph *g, Tensor *x, Tensor *a, Tensor *w, float eps, Tensor **sum) {
    return norm(g, x, a, w, NULL, eps, 0, sum);
}

/* ---------------------------------------------------------------- activations */

static void gelu_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0];
    float *dx = gin(g, x);
    if (x16(g->K->gelu_backward_x16, x, NULL, NULL))
        g->K->gelu_backward_x16(dx, e->out[0]->grad, H(x), x->numel);
    else
        g->K->gelu_backward(dx, e->out[0]->grad, in32(g, x), x->numel);
    done(g);
}

Tensor *op_gelu(Graph *g, Tensor *x) {
    require_float("gelu", x);
    Tensor *y = like(g, x, "gelu");
    if (x16(g->K->gelu_forward_x16, x, y, NULL)) {
        g->K->gelu_forward_x16(H(y), H(x), x->numel);
    } else {
        float *yf = out32(g, y);
        g->K->gelu_forward(yf, in32(g, x), x->numel);
        put(g, y, yf);
        done(g);
    }
    graph_record(g, "gelu", gelu_bw, &x, 1, &y, 1);
    return y;
}

static void swiglu_bw(Graph *g, TapeEntry *e) {
    Tensor *gate = e->in[0], *up = e->in[1];
    float *dg = gin(g, gate), *du = gin(g, up);
    if (x16(g->K->swiglu_backward_x16, gate, up, NULL))
        g->K->swiglu_backward_x16(dg, du, e->out[0]->grad, H(gate), H(up), gate->numel);
    else
        g->K->swiglu_backward(dg, du, e->out[0]->grad, in32(g, gate), in32(g, up), gate->numel);
    done(g);
}

Tensor *op_swiglu(Graph *g, Tensor *gate, Tensor *up) {
    char ba[200], bb[200];
    MMRM_CHECK(tensor_same_shape(gate, up), "swiglu: gate %s and up %s differ in shape",
               tensor_describe(gate, ba, sizeof ba), tensor_describe(up, bb, sizeof bb));
    Tensor *y = like(g, gate, "swiglu");
    if (x16(g->K->swiglu_forward_x16, gate, up, y)) {
        g->K->swiglu_forward_x16(H(y), H(gate), H(up), gate->numel);
    } else {
        float *yf = out32(g, y);
        g->K->swiglu_forward(yf, in32(g, gate), in32(g, up), gate->numel);
        put(g, y, yf);
        done(g);
    }
    graph_record(g, "swiglu", swiglu_bw, (Tensor *[]){gate, up}, 2, &y, 1);
    return y;
}

static void swiglu_fused_bw(Graph *g, TapeEntry *e) {
    Tensor *gu = e->in[0];
    int I = last_dim(gu) / 2, N = (int)(gu->numel / (2 * (size_t)I));
    g->K->swiglu_fused_backward(gin(g, gu), e->out[0]->grad, in32(g, gu), N, I);
    done(g);
}

Tensor *op_swiglu_fused(Graph *g, Tensor *gu) {
    char b[200];
    MMRM_CHECK(last_dim(gu) % 2 == 0, "swiglu_fused: %s must end in 2I (gate | up)",
               tensor_describe(gu, b, sizeof b));
    int shape[TENSOR_MAX_DIMS], I = last_dim(gu) / 2, N = (int)(gu->numel / (2 * (size_t)I));
    memcpy(shape, gu->shape, sizeof shape);
    shape[gu->ndim - 1] = I;
    Tensor *y = graph_activation(g, "swiglu", gu->ndim, shape);
    float *yf = out32(g, y);
    g->K->swiglu_fused_forward(yf, in32(g, gu), N, I);
    put(g, y, yf);
    done(g);
    graph_record(g, "swiglu_fused", swiglu_fused_bw, &gu, 1, &y, 1);
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
    int B = img->shape[0], CH = img->shape[1], Hh = img->shape[2], W = img->shape[3];
    int p = w->shape[2], np = (Hh / p) * (W / p);
    Tensor *cols = graph_activation(g, "im2col", 3, (int[]){B, np, CH * p * p});
    if (img->dtype == DT_F32 && x16(g->K->im2col_forward_x16, cols, NULL, NULL)) {
        g->K->im2col_forward_x16(H(cols), F(img), B, CH, Hh, W, p);
    } else {
        float *cf = out32(g, cols);
        g->K->im2col_forward(cf, in32(g, img), B, CH, Hh, W, p);
        put(g, cols, cf);
        done(g);
    }
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
    Tensor *y = graph_activation(g, "pixel_shuffle", 3, (int[]){B, (G / 2) * (G / 2), 4 * C});
    if (x16(g->K->pixel_shuffle_forward_x16, x, y, NULL)) {
        g->K->pixel_shuffle_forward_x16(H(y), H(x), B, G, C);
    } else {
        float *yf = out32(g, y);
        g->K->pixel_shuffle_forward(yf, in32(g, x), B, G, C);
        put(g, y, yf);
        done(g);
    }
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

static void add_fw(Graph *g, Tensor *y, const Tensor *a, const Tensor *b) {
    if (x16(g->K->add_forward_x16, y, a, b)) {
        g->K->add_forward_x16(H(y), H(a), H(b), a->numel);
    } else {
        float *yf = out32(g, y);
        g->K->add_forward(yf, in32(g, a), in32(g, b), a->numel);
        put(g, y, yf);
        done(g);
    }
}

Tensor *op_add(Graph *g, Tensor *a, Tensor *b) {
    char ba[200], bb[200];
    MMRM_CHECK(tensor_same_shape(a, b), "add: %s and %s differ in shape",
               tensor_describe(a, ba, sizeof ba), tensor_describe(b, bb, sizeof bb));
    Tensor *y = like(g, a, "add");
    add_fw(g, y, a, b);
    graph_record(g, "add", add_bw, (Tensor *[]){a, b}, 2, &y, 1);
    return y;
}

static void channel_scale_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0], *s = e->in[1];
    int C = last_dim(x);
    float *dx = gin(g, x), *ds = gin(g, s);
    if (s->dtype == DT_F32 && x16(g->K->channel_scale_backward_x16, x, NULL, NULL))
        g->K->channel_scale_backward_x16(dx, ds, e->out[0]->grad, H(x), F(s),
                                         (int)(x->numel / C), C);
    else
        g->K->channel_scale_backward(dx, ds, e->out[0]->grad, in32(g, x), in32(g, s),
                                     (int)(x->numel / C), C);
    done(g);
}

Tensor *op_channel_scale(Graph *g, Tensor *x, Tensor *scale) {
    char bx[200], bs[200];
    MMRM_CHECK(scale->numel == (size_t)last_dim(x), "channel_scale: scale %s does not match %s",
               tensor_describe(scale, bs, sizeof bs), tensor_describe(x, bx, sizeof bx));
    int C = last_dim(x);
    Tensor *y = like(g, x, "channel_scale");
    if (scale->dtype == DT_F32 && x16(g->K->channel_scale_forward_x16, x, y, NULL)) {
        g->K->channel_scale_forward_x16(H(y), H(x), F(scale), (int)(x->numel / C), C);
    } else {
        float *yf = out32(g, y);
        g->K->channel_scale_forward(yf, in32(g, x), in32(g, scale), (int)(x->numel / C), C);
        put(g, y, yf);
        done(g);
    }
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
    if (x16(g->K->drop_path_forward_x16, x, y, NULL)) {
        g->K->drop_path_forward_x16(H(y), H(x), keep, B, x->numel / B);
    } else {
        float *yf = out32(g, y);
        g->K->drop_path_forward(yf, in32(g, x), keep, B, x->numel / B);
        put(g, y, yf);
        done(g);
    }
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

Tensor *op_param_rows(Graph *g, Tensor *const *parts, int n, const char *name) {
    Tensor *p0 = parts[0];
    int rows = 0;
    for (int i = 0; i < n; i++) {
        Tensor *p = parts[i];
        if (!p || !p->is_param || p->dtype != p0->dtype || p->requires_grad != p0->requires_grad ||
            p->numel / p->shape[0] != p0->numel / p0->shape[0])
            return NULL;
        if (i > 0) { /* data, gradient and bf16 copy each continue where the previous part ends */
            Tensor *q = parts[i - 1];
            size_t step = q->numel * dtype_size(q->dtype);
            if ((char *)p->data != (char *)q->data + step || (!p->grad) != (!q->grad) ||
                (p->grad && p->grad != q->grad + q->numel) || (!p->w16) != (!q->w16) ||
                (p->w16 && p->w16 != q->w16 + q->numel))
                return NULL;
        }
        rows += p->shape[0];
    }
    Tensor *y = graph_scratch(g, sizeof *y);
    *y = *p0;
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, p0->shape, sizeof shape);
    shape[0] = rows;
    tensor_set_shape(y, name, p0->ndim, shape);
    return y;
}

static void gather_rows_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0], *y = e->out[0];
    int C = last_dim(x);
    g->K->embedding_backward(gin(g, x), y->grad, e->ctx, (int)(y->numel / C), C,
                             (int)(x->numel / C));
}

/* every row of x gathered at most once (head splits, dropping rows): a plain scatter */
static void gather_rows_unique_bw(Graph *g, TapeEntry *e) {
    Tensor *x = e->in[0], *y = e->out[0];
    int C = last_dim(x);
    g->K->scatter_rows_add(gin(g, x), y->grad, e->ctx, (int)(y->numel / C), C);
}

/* whether idx (M) picks each of N rows at most once */
static int distinct_rows(const int *idx, int M, int N) {
    if (M > N) return 0;
    unsigned char *seen = calloc((size_t)N + 1, 1);
    MMRM_CHECK(seen, "gather_rows: out of memory (%d rows)", N);
    int ok = 1;
    for (int m = 0; m < M && ok; m++) ok = !seen[idx[m]]++;
    free(seen);
    return ok;
}

Tensor *op_gather_rows(Graph *g, Tensor *x, const int *idx, int M) {
    int C = last_dim(x), N = (int)(x->numel / C);
    for (int m = 0; m < M; m++)
        MMRM_CHECK(idx[m] >= 0 && idx[m] < N, "gather_rows from %s: row %d (entry %d) outside [0, %d)",
                   x->name, idx[m], m, N);
    Tensor *y = graph_activation(g, "gather_rows", 2, (int[]){M, C});
    int *didx = copy_ints(g, idx, M);
    /* a gather is an embedding lookup with x as the table */
    if (x16(g->K->gather_rows_x16, x, y, NULL)) {
        g->K->gather_rows_x16(H(y), didx, H(x), M, C);
    } else if (x->dtype == DT_F32 && x16(g->K->embedding_forward_x16, y, NULL, NULL)) {
        g->K->embedding_forward_x16(H(y), didx, F(x), M, C);
    } else {
        float *yf = out32(g, y);
        g->K->embedding_forward(yf, didx, in32(g, x), M, C);
        put(g, y, yf);
        done(g);
    }
    BackwardFn bw = gather_rows_bw;
    if (g->grad_enabled && x->requires_grad && distinct_rows(idx, M, N)) bw = gather_rows_unique_bw;
    TapeEntry *e = graph_record(g, "gather_rows", bw, &x, 1, &y, 1);
    if (e) e->ctx = didx;
    return y;
}

static void concat_rows_bw(Graph *g, TapeEntry *e) {
    Tensor *a = e->in[0], *b = e->in[1];
    const float *d = e->out[0]->grad;
    if (a->requires_grad) g->K->add_backward(graph_grad(g, a), NULL, d, a->numel);
    if (b->requires_grad) g->K->add_backward(graph_grad(g, b), NULL, d + a->numel, b->numel);
}

/* elements [at, at + x->numel) of y = x, converting between the storage types */
static void copy_into(Graph *g, Tensor *y, size_t at, const Tensor *x) {
    size_t es = dtype_size(y->dtype);
    char *dst = (char *)y->data + at * es;
    if (x->dtype == y->dtype)
        device_memcpy(g->device, dst, x->data, x->numel * es);
    else if (y->dtype == DT_BF16)
        g->K->f32_to_bf16((uint16_t *)dst, F(x), x->numel);
    else
        g->K->bf16_to_f32((float *)dst, x->data, x->numel);
}

Tensor *op_concat_rows(Graph *g, Tensor *a, Tensor *b) {
    char ba[200], bb[200];
    int C = last_dim(a);
    MMRM_CHECK(last_dim(b) == C, "concat_rows: %s and %s differ in the last dim",
               tensor_describe(a, ba, sizeof ba), tensor_describe(b, bb, sizeof bb));
    int Na = (int)(a->numel / C), Nb = (int)(b->numel / C);
    Tensor *y = graph_activation(g, "concat_rows", 2, (int[]){Na + Nb, C});
    copy_into(g, y, 0, a);
    copy_into(g, y, a->numel, b);
    graph_record(g, "concat_rows", concat_rows_bw, (Tensor *[]){a, b}, 2, &y, 1);
    return y;
}

/* ---------------------------------------------------------------- losses */

/* Loss kernels produce their gradients in one pass; forward runs them without gradient
 * outputs, backward runs them again with the root's gradient as dloss (a P-element
 * recompute is cheaper than keeping four gradient vectors alive). */
typedef struct { float *margin; float eps; } LossCtx;


static void bt_bw(Graph *g, TapeEntry *e) {
    Tensor *rc = e->in[0], *rr = e->in[1], *loss = e->out[0];
    LossCtx *c = e->ctx;
    int P = (int)rc->numel;
    float *scratch = arena_alloc(&g->act, (P + 1) * sizeof(float));
    float *drc = gin(g, rc), *drr = gin(g, rr);
    g->K->bt_loss(scratch, scratch + 1, drc, drr, in32(g, rc), in32(g, rr), c->margin, P,
                  graph_root_grad(g, loss));
    done(g);
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
    g->K->bt_loss(F(loss), F(losses), NULL, NULL, in32(g, rc), in32(g, rr), c->margin, P, 1.0f);
    done(g);
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
    float *dmc = gin(g, mc), *dmr = gin(g, mr), *dbc = gin(g, bc), *dbr = gin(g, br);
    g->K->shortcut_loss(s, s + 1, s + 1 + P, s + 1 + 2 * P, dmc, dmr, dbc, dbr, in32(g, mc),
                        in32(g, mr), in32(g, bc), in32(g, br), P, c->eps, graph_root_grad(g, loss));
    done(g);
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
    g->K->shortcut_loss(F(r.loss), F(r.w), F(r.lm), F(r.lb), NULL, NULL, NULL, NULL, in32(g, mc),
                        in32(g, mr), in32(g, bc), in32(g, br), P, eps, 1.0f);
    done(g);
    LossCtx *c = graph_scratch(g, sizeof *c);
    c->margin = NULL;
    c->eps = eps;
    TapeEntry *e = graph_record(g, "shortcut_loss", shortcut_bw, (Tensor *[]){mc, mr, bc, br}, 4,
                                &r.loss, 1);
    if (e) e->ctx = c;
    return r;
}
