/* ops_internal.h - what the files of the differentiable ops (ops.c, ops_attention.c) share:
 * activation storage (native bf16 entries or fp32 staging), gradient buffers, uploads.
 * Private to runtime/; not part of ops.h. */
#ifndef MMRM_OPS_INTERNAL_H
#define MMRM_OPS_INTERNAL_H

#include <stdint.h>

#include "runtime/error.h"
#include "runtime/ops.h"

static inline float *F(const Tensor *t) { return t ? (float *)t->data : NULL; }

/* ---------------------------------------------------------------- activation storage
 * Activations are stored as g->act_dtype (f32, or bf16 for half the memory); the kernels
 * compute in fp32 either way. Where every activation an op reads or writes is bf16 and the
 * table has the op's native bf16 entry (the *_x16 ops: the CUDA table), the op calls it on
 * the bf16 data. Otherwise it reads every tensor through in32(): an f32 tensor's own data,
 * or a bf16 one widened into the graph's staging arena, and writes each output through
 * out32(): an f32 output's own data, or staging that done() rounds into the bf16 tensor.
 * done() also empties the staging, so it holds one op's operands at a time. Backward
 * functions read saved activations the same way; gradients are fp32 and never staged.
 * g->staged_bytes counts the staging (bench_step prints it per step). */
static inline const float *in32(Graph *g, const Tensor *t) {
    if (!t || t->dtype == DT_F32) return F(t);
    float *f = arena_alloc(&g->stage, t->numel * sizeof(float));
    g->K->bf16_to_f32(f, t->data, t->numel);
    g->staged_bytes += t->numel * sizeof(float);
    return f;
}

static inline float *out32(Graph *g, Tensor *y) {
    if (y->dtype == DT_F32) return F(y);
    g->staged_bytes += y->numel * sizeof(float);
    return arena_alloc(&g->stage, y->numel * sizeof(float));
}

/* each of a, b, c is NULL or bf16 */
static inline int all16(const Tensor *a, const Tensor *b, const Tensor *c) {
    return (!a || a->dtype == DT_BF16) && (!b || b->dtype == DT_BF16) &&
           (!c || c->dtype == DT_BF16);
}

/* the table's native bf16 entry fn can run on the activations a, b, c (NULL: none) */
#define x16(fn, a, b, c) ((fn) != NULL && all16(a, b, c))

/* the native norm kernels take fp32 parameters (weight, bias or NULL) */
static inline int f32_params(const Tensor *w, const Tensor *b) {
    return w->dtype == DT_F32 && (!b || b->dtype == DT_F32);
}

static inline uint16_t *H(const Tensor *t) { return t ? (uint16_t *)t->data : NULL; }

/* rounds the staged fp32 result f of output y into y (bf16), or nothing for f32 */
static inline void put(Graph *g, Tensor *y, const float *f) {
    if (y->dtype == DT_BF16) g->K->f32_to_bf16(y->data, f, y->numel);
}

static inline void done(Graph *g) { arena_reset(&g->stage); }

/* the gradient buffer of an input that needs one, else NULL */
static inline float *gin(Graph *g, Tensor *t) {
    return t && t->requires_grad ? graph_grad(g, t) : NULL;
}

static inline void require_float(const char *op, const Tensor *t) {
    char buf[200];
    MMRM_CHECK(t->dtype == DT_F32 || t->dtype == DT_BF16, "%s: %s must be f32 or bf16", op,
               tensor_describe(t, buf, sizeof buf));
}

/* a device copy of a host array, from the activation arena (lives until graph_reset) */
static inline void *upload(Graph *g, const void *src, size_t bytes) {
    void *dst = arena_alloc(&g->act, bytes);
    device_copy_from_host(g->device, dst, src, bytes);
    return dst;
}

/* ids, positions, lengths, row indices: shared by the ops of a step (graph_upload_input) */
static inline int *copy_ints(Graph *g, const int *src, size_t n) {
    return graph_upload_input(g, src, n * sizeof(int));
}

static inline int last_dim(const Tensor *t) { return t->shape[t->ndim - 1]; }

static inline Tensor *like(Graph *g, const Tensor *x, const char *name) {
    return graph_activation(g, name, x->ndim, x->shape);
}

#endif
