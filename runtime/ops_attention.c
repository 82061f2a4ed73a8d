/* ops_attention.c - the differentiable RoPE and attention ops (ops.h): full attention and its
 * subset of query rows (the decoder's last layer at the rewarded rows), native bf16 entries
 * where the table has them (ops_internal.h). */
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/ops.h"
#include "runtime/ops_internal.h"

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
    if (x16(g->K->rope_forward_x16, x, y, NULL)) {
        g->K->rope_forward_x16(H(y), H(x), c->pos, N, x->shape[2], x->shape[3], theta);
    } else {
        float *yf = out32(g, y);
        g->K->rope_forward(yf, in32(g, x), c->pos, N, x->shape[2], x->shape[3], theta);
        put(g, y, yf);
        done(g);
    }
    TapeEntry *e = graph_record(g, "rope", rope_bw, &x, 1, &y, 1);
    if (e) e->ctx = c;
    return y;
}

typedef struct { float *lse; int *lengths, *seg; int causal, precision; } AttnCtx;

static void attention_bw(Graph *g, TapeEntry *e) {
    Tensor *q = e->in[0], *k = e->in[1], *v = e->in[2], *y = e->out[0];
    AttnCtx *c = e->ctx;
    float *dq = gin(g, q), *dk = gin(g, k), *dv = gin(g, v);
    int native = 0;
    if (x16(g->K->attention_backward_x16, q, k, v) && y->dtype == DT_BF16)
        g->K->attention_backward_x16(&native, dq, dk, dv, y->grad, H(y), c->lse, H(q), H(k),
                                     H(v), c->lengths, c->seg, q->shape[0], q->shape[1],
                                     q->shape[2], k->shape[2], q->shape[3], c->causal,
                                     c->precision);
    if (native) return;
    g->K->attention_backward(dq, dk, dv, y->grad, in32(g, y), c->lse, in32(g, q), in32(g, k),
                             in32(g, v), c->lengths, c->seg, q->shape[0], q->shape[1], q->shape[2],
                             k->shape[2], q->shape[3], c->causal, c->precision);
    done(g);
}

Tensor *op_attention(Graph *g, Tensor *q, Tensor *k, Tensor *v, const int *lengths,
                     const int *seg, int causal) {
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
    c->seg = seg ? copy_ints(g, seg, (size_t)B * T) : NULL;
    c->causal = causal;
    c->precision = g->precision; /* the backward runs at the forward's precision */
    int native = 0; /* the native entry decides whether it takes the call (op_list.h) */
    if (x16(g->K->attention_forward_x16, q, k, v) && y->dtype == DT_BF16)
        g->K->attention_forward_x16(&native, H(y), c->lse, H(q), H(k), H(v), c->lengths, c->seg,
                                    B, T, NH, KV, HD, causal, c->precision);
    if (!native) {
        float *yf = out32(g, y);
        g->K->attention_forward(yf, c->lse, in32(g, q), in32(g, k), in32(g, v), c->lengths,
                                c->seg, B, T, NH, KV, HD, causal, c->precision);
        put(g, y, yf);
        done(g);
    }
    TapeEntry *e = graph_record(g, "attention", attention_bw, (Tensor *[]){q, k, v}, 3, &y, 1);
    if (e) e->ctx = c;
    return y;
}

typedef struct { float *lse; int *rows, *lengths, *seg; int M, B, T, causal, precision; } AttnRowsCtx;

static void attention_rows_bw(Graph *g, TapeEntry *e) {
    Tensor *q = e->in[0], *k = e->in[1], *v = e->in[2], *y = e->out[0];
    AttnRowsCtx *c = e->ctx;
    float *dq = gin(g, q), *dk = gin(g, k), *dv = gin(g, v);
    const int NH = q->shape[1], KV = k->shape[2], HD = q->shape[2];
    int native = 0;
    if (x16(g->K->attention_rows_backward_x16, q, k, v) && y->dtype == DT_BF16)
        g->K->attention_rows_backward_x16(&native, dq, dk, dv, y->grad, H(y), c->lse, H(q), H(k),
                                          H(v), c->rows, c->lengths, c->seg, c->M, c->B, c->T,
                                          NH, KV, HD, c->causal, c->precision);
    if (native) return;
    g->K->attention_rows_backward(dq, dk, dv, y->grad, in32(g, y), c->lse, in32(g, q),
                                  in32(g, k), in32(g, v), c->rows, c->lengths, c->seg, c->M,
                                  c->B, c->T, NH, KV, HD, c->causal, c->precision);
    done(g);
}

int op_attention_rows_supported(const Graph *g) {
    return g->K->attention_rows_forward && g->K->attention_rows_backward;
}

Tensor *op_attention_rows(Graph *g, Tensor *q, Tensor *k, Tensor *v, const int *lengths,
                          const int *seg, int causal, const int *rows) {
    char bq[200], bk[200];
    MMRM_CHECK(q->ndim == 3 && k->ndim == 4 && tensor_same_shape(k, v) &&
                   q->shape[2] == k->shape[3] && k->shape[2] > 0 && q->shape[1] % k->shape[2] == 0,
               "attention rows: q %s and k/v %s must be (M, NH, HD) and (B, T, KV, HD) with NH a "
               "multiple of KV", tensor_describe(q, bq, sizeof bq), tensor_describe(k, bk, sizeof bk));
    MMRM_CHECK(op_attention_rows_supported(g), "attention rows: the %s kernels do not have it "
               "(op_attention_rows_supported)", g->K->name);
    int M = q->shape[0], B = k->shape[0], T = k->shape[1], NH = q->shape[1], KV = k->shape[2];
    for (int b = 0; b < B; b++)
        MMRM_CHECK(lengths[b] >= 0 && lengths[b] <= T,
                   "attention rows: sequence %d has length %d outside [0, %d]", b, lengths[b], T);
    Tensor *y = like(g, q, "attention_rows");
    AttnRowsCtx *c = graph_scratch(g, sizeof *c);
    c->lse = arena_alloc(&g->act, (size_t)NH * M * sizeof(float));
    c->rows = copy_ints(g, rows, M);
    c->lengths = copy_ints(g, lengths, B);
    c->seg = seg ? copy_ints(g, seg, (size_t)B * T) : NULL;
    c->M = M, c->B = B, c->T = T, c->causal = causal, c->precision = g->precision;
    /* bf16 activations: the native entry reads K and V where they are (no fp32 copy of the
     * (B, T, KV, HD) K and V per call) where the table has it and it takes the call */
    int native = 0;
    if (x16(g->K->attention_rows_forward_x16, q, k, v) && y->dtype == DT_BF16)
        g->K->attention_rows_forward_x16(&native, H(y), c->lse, H(q), H(k), H(v), c->rows,
                                         c->lengths, c->seg, M, B, T, NH, KV, q->shape[2], causal,
                                         c->precision);
    if (!native) {
        float *yf = out32(g, y);
        g->K->attention_rows_forward(yf, c->lse, in32(g, q), in32(g, k), in32(g, v), c->rows,
                                     c->lengths, c->seg, M, B, T, NH, KV, q->shape[2], causal,
                                     c->precision);
        put(g, y, yf);
        done(g);
    }
    TapeEntry *e = graph_record(g, "attention_rows", attention_rows_bw, (Tensor *[]){q, k, v}, 3, &y, 1);
    if (e) e->ctx = c;
    return y;
}

