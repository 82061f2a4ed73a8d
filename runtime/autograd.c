/* autograd.c - graph context, tape, backward and recompute segments (autograd.h). */
#include "runtime/autograd.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

const KernelOps *kernels_for(Device d) {
    if (d == DEV_CPU) return &kernels_cpu;
#ifdef MMRM_CUDA
    if (d == DEV_CUDA) return &kernels_cuda;
#endif
    MMRM_FATAL("no %s kernels in this build: rebuild with `make cuda` on a machine with the "
               "CUDA toolkit, or run with device = cpu", device_name(d));
}

void graph_init(Graph *g, Device d, size_t arena_bytes, uint64_t seed) {
    memset(g, 0, sizeof *g);
    g->device = d;
    g->K = kernels_for(d);
    arena_init(&g->act, d, arena_bytes);
    arena_init(&g->meta, DEV_CPU, 1 << 20);
    arena_init(&g->stage, d, 1 << 16);
    arena_init(&g->inputs, d, 1 << 16);
    g->act_dtype = DT_F32;
    g->precision = KP_FP32;
    g->tape_cap = 256;
    g->tape = xmalloc(g->tape_cap * sizeof *g->tape);
    g->grad_enabled = 1;
    g->dropout = rng_make(seed, 0x64726f70 /* "drop" */);
}

void graph_free(Graph *g) {
    arena_free(&g->act);
    arena_free(&g->meta);
    arena_free(&g->stage);
    arena_free(&g->inputs);
    for (int i = 0; i < GRAPH_UPLOADS; i++) free(g->uploads[i].copy);
    free(g->tape);
    memset(g, 0, sizeof *g);
}

void graph_reset(Graph *g) {
    g->ntape = 0;
    arena_reset(&g->act);
    arena_reset(&g->meta);
    arena_reset(&g->stage);
    arena_reset(&g->inputs);
    for (int i = 0; i < GRAPH_UPLOADS; i++) g->uploads[i].host = NULL;
}

void *graph_upload_input(Graph *g, const void *src, size_t bytes) {
    enum { MEMO_MAX = 1 << 20 }; /* a larger array is uploaded again rather than compared */
    int memo = bytes > 0 && bytes <= MEMO_MAX;
    for (int i = 0; i < GRAPH_UPLOADS && memo; i++) {
        GraphUpload *u = &g->uploads[i];
        if (u->host == src && u->bytes == bytes && memcmp(u->copy, src, bytes) == 0) {
            g->n_reused++;
            return u->dev;
        }
    }
    void *dst = arena_alloc(&g->inputs, bytes ? bytes : 1);
    device_copy_from_host(g->device, dst, src, bytes);
    g->n_uploads++;
    if (memo) {
        GraphUpload *u = &g->uploads[g->next_upload];
        g->next_upload = (g->next_upload + 1) % GRAPH_UPLOADS;
        if (u->cap < bytes) {
            u->copy = xrealloc(u->copy, bytes);
            u->cap = bytes;
        }
        memcpy(u->copy, src, bytes);
        *u = (GraphUpload){src, bytes, dst, u->copy, u->cap};
    }
    return dst;
}

int graph_set_grad(Graph *g, int enabled) {
    int prev = g->grad_enabled;
    g->grad_enabled = enabled;
    return prev;
}

void *graph_scratch(Graph *g, size_t bytes) { return arena_alloc(&g->meta, bytes); }

const float *graph_host(Graph *g, const Tensor *t) {
    if (t->dtype == DT_F32 && t->device == DEV_CPU) return (const float *)t->data;
    float *h = graph_scratch(g, t->numel * sizeof(float));
    if (t->dtype == DT_F32) {
        device_copy_to_host(t->device, h, t->data, t->numel * sizeof(float));
        return h;
    }
    MMRM_CHECK(t->dtype == DT_BF16, "graph_host: %s is %s (f32 or bf16 expected)", t->name,
               dtype_name(t->dtype));
    uint16_t *b = graph_scratch(g, t->numel * sizeof(uint16_t));
    device_copy_to_host(t->device, b, t->data, t->numel * sizeof(uint16_t));
    bf16_to_f32_array(h, b, t->numel);
    return h;
}

void graph_set_act_dtype(Graph *g, DType dt) {
    MMRM_CHECK(dt == DT_F32 || dt == DT_BF16, "activations are stored as f32 or bf16, not %s",
               dtype_name(dt));
    g->act_dtype = dt;
}

void graph_set_precision(Graph *g, KernelPrecision p) {
    MMRM_CHECK(p == KP_FP32 || p == KP_BF16 || p == KP_BF16_FP32_OPERANDS,
               "graph_set_precision: unknown precision %d", (int)p);
    g->precision = p;
}

static Tensor *new_tensor(Graph *g, const char *name, int ndim, const int *shape) {
    Tensor *t = arena_alloc(&g->meta, sizeof *t);
    memset(t, 0, sizeof *t);
    tensor_set_shape(t, name, ndim, shape);
    t->dtype = DT_F32;
    t->device = g->device;
    return t;
}

Tensor *graph_tensor(Graph *g, const char *name, int ndim, const int *shape) {
    Tensor *t = new_tensor(g, name, ndim, shape);
    t->data = arena_alloc(&g->act, t->numel * sizeof(float));
    return t;
}

Tensor *graph_activation(Graph *g, const char *name, int ndim, const int *shape) {
    Tensor *t = new_tensor(g, name, ndim, shape);
    t->dtype = g->act_dtype;
    t->data = arena_alloc(&g->act, t->numel * dtype_size(t->dtype));
    return t;
}

float *graph_grad(Graph *g, Tensor *t) {
    if (!t->grad) {
        MMRM_CHECK(!t->is_param, "parameter %s has no gradient buffer (frozen?)", t->name);
        t->grad = arena_calloc(&g->act, t->numel * sizeof(float));
    }
    return t->grad;
}

void graph_set_hooks(Graph *g, const GraphHooks *h) { g->hooks = h; }

TapeEntry *graph_record(Graph *g, const char *op, BackwardFn bw, Tensor **in, int nin,
                        Tensor **out, int nout) {
    if (g->hooks && !g->in_backward)
        for (int i = 0; i < nin; i++)
            if (in[i] && in[i]->grad) g->hooks->use(g->hooks->ctx, in[i], g->ntape);
    if (!g->grad_enabled) return NULL;
    int any = 0;
    for (int i = 0; i < nin; i++) any |= in[i] && in[i]->requires_grad;
    if (!any) return NULL;
    MMRM_CHECK(nin <= TAPE_MAX_IN && nout <= TAPE_MAX_OUT, "op %s: too many tensors", op);
    if (g->ntape == g->tape_cap) {
        g->tape_cap *= 2;
        g->tape = xrealloc(g->tape, g->tape_cap * sizeof *g->tape);
    }
    TapeEntry *e = &g->tape[g->ntape++];
    memset(e, 0, sizeof *e);
    e->op = op;
    e->backward = bw;
    e->nin = nin;
    e->nout = nout;
    for (int i = 0; i < nin; i++) e->in[i] = in[i];
    for (int i = 0; i < nout; i++) {
        e->out[i] = out[i];
        out[i]->requires_grad = 1;
    }
    return e;
}

/* Entries [lo, hi] in reverse; an entry none of whose outputs received a gradient is
 * skipped. Indices, not pointers: a recompute segment appends to (and may move) the tape. */
static void run_backward(Graph *g, int hi, int lo) {
    for (int i = hi; i >= lo; i--) {
        TapeEntry *e = &g->tape[i];
        int live = 0;
        for (int k = 0; k < e->nout; k++) live |= e->out[k]->grad != NULL;
        if (live) e->backward(g, e);
    }
}

/* the whole tape from the top, telling the hooks after each entry */
static void backward_top(Graph *g) {
    g->in_backward = 1;
    for (int i = g->ntape - 1; i >= 0; i--) {
        run_backward(g, i, i);
        if (g->hooks) g->hooks->done(g->hooks->ctx, i);
    }
    g->in_backward = 0;
}

void graph_backward(Graph *g, Tensor *root) {
    MMRM_CHECK(root->numel == 1, "backward from %s: the root must be a scalar (has %zu elements)",
               root->name, root->numel);
    MMRM_CHECK(root->requires_grad, "backward from %s: nothing it depends on requires grad",
               root->name);
    const float one = 1.0f;
    device_copy_from_host(g->device, graph_grad(g, root), &one, sizeof one);
    g->root = root;
    g->root_seed = one;
    backward_top(g);
    g->root = NULL;
}

void graph_backward_from(Graph *g, Tensor *t, const float *dout) {
    MMRM_CHECK(t->requires_grad, "backward from %s: nothing it depends on requires grad", t->name);
    device_copy_from_host(g->device, graph_grad(g, t), dout, t->numel * sizeof(float));
    if (t->numel == 1) {
        g->root = t;
        g->root_seed = dout[0];
    }
    backward_top(g);
    g->root = NULL;
}

/* Entries recorded after the root only run when their outputs hold a gradient, and only the
 * root was seeded: the root's gradient is its seed throughout backward. */
float graph_root_grad(Graph *g, const Tensor *t) {
    if (t == g->root) return g->root_seed;
    float d;
    device_copy_to_host(t->device, &d, t->grad, sizeof d);
    return d;
}

/* ---------------------------------------------------------------- recompute */

typedef struct {
    SegmentFn fn;
    void *ctx;
    uint64_t dropout_counter; /* at segment start, so the replay draws the same masks */
} SegmentCtx;

static void segment_backward(Graph *g, TapeEntry *e) {
    /* copy what we need: the tape may be reallocated by the replay */
    SegmentCtx sc = *(SegmentCtx *)e->ctx;
    int nin = e->nin, nout = e->nout;
    Tensor *in[TAPE_MAX_IN], *out[TAPE_MAX_OUT], *re[TAPE_MAX_OUT];
    memcpy(in, e->in, sizeof in);
    memcpy(out, e->out, sizeof out);
    /* input grads must outlive the replay's scratch, so they come from below the mark */
    for (int i = 0; i < nin; i++)
        if (in[i] && in[i]->requires_grad && !in[i]->is_param) graph_grad(g, in[i]);
    size_t mark_act = arena_mark(&g->act), mark_meta = arena_mark(&g->meta);
    int t0 = g->ntape;
    uint64_t saved = g->dropout.counter;
    g->dropout.counter = sc.dropout_counter;
    int prev = graph_set_grad(g, 1);
    sc.fn(g, sc.ctx, in, nin, re, nout);
    graph_set_grad(g, prev);
    g->dropout.counter = saved;
    for (int i = 0; i < nout; i++) {
        MMRM_CHECK(tensor_same_shape(re[i], out[i]),
                   "recompute segment output %d changed shape between forward and replay", i);
        if (!out[i]->grad) continue;
        if (re[i]->grad) /* the replayed output is a view with its own buffer already */
            g->K->add_backward(re[i]->grad, NULL, out[i]->grad, out[i]->numel);
        else
            re[i]->grad = out[i]->grad;
    }
    run_backward(g, g->ntape - 1, t0);
    g->ntape = t0;
    arena_release(&g->act, mark_act);
    arena_release(&g->meta, mark_meta);
}

void graph_checkpoint(Graph *g, SegmentFn fn, const void *ctx, size_t ctx_bytes, Tensor **in,
                      int nin, Tensor **out, int nout) {
    void *own = graph_scratch(g, ctx_bytes);
    memcpy(own, ctx, ctx_bytes);
    int any = 0;
    for (int i = 0; i < nin; i++) any |= in[i] && in[i]->requires_grad;
    if (!g->recompute || !g->grad_enabled || !any) {
        fn(g, own, in, nin, out, nout);
        return;
    }
    MMRM_CHECK(nin <= TAPE_MAX_IN && nout <= TAPE_MAX_OUT, "recompute segment: too many tensors");
    SegmentCtx *sc = graph_scratch(g, sizeof *sc);
    sc->fn = fn;
    sc->ctx = own;
    sc->dropout_counter = g->dropout.counter;
    size_t mark = arena_mark(&g->act);
    int prev = graph_set_grad(g, 0);
    fn(g, own, in, nin, out, nout);
    graph_set_grad(g, prev);
    /* keep only the outputs that the segment allocated; inputs passed through stay put */
    void *ptrs[TAPE_MAX_OUT];
    size_t bytes[TAPE_MAX_OUT];
    int idx[TAPE_MAX_OUT], n = 0;
    for (int i = 0; i < nout; i++) {
        char *d = out[i]->data;
        if (mark != ARENA_NO_MARK && d >= g->act.base + mark && d < g->act.base + g->act.used) {
            ptrs[n] = d;
            bytes[n] = out[i]->numel * dtype_size(out[i]->dtype);
            idx[n++] = i;
        }
    }
    arena_compact(&g->act, mark, ptrs, bytes, n);
    for (int k = 0; k < n; k++) out[idx[k]]->data = ptrs[k];
    TapeEntry *e = graph_record(g, "checkpoint", segment_backward, in, nin, out, nout);
    e->ctx = sc;
}
