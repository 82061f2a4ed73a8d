/* gradsync.c - bucketed gradient averaging overlapped with backward (gradsync.h). */
#include "runtime/gradsync.h"

#include "runtime/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef MMRM_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

typedef struct {
    int store;      /* index into s->st */
    size_t off, n;  /* elements of the store's grad buffer */
    int key;        /* lowest declaration index of its parameters: the order key */
    int nparams;
    int pending;    /* parameters not final yet this step */
} Bucket;

typedef struct {
    ParamStore *ps;
    int *by_off;     /* trainable parameter indices sorted by offset */
    int ntrain;
    int *bucket_of;  /* per parameter index: its bucket, -1 when frozen */
    unsigned *seen;  /* per parameter index: step stamp of its first use */
} StoreInfo;

typedef struct {
    int store, param, first_use;
} Use;

struct GradSync {
    const Comm *c;
    StoreInfo st[4];
    int nst;
    Bucket *b;
    int nb;
    int *order;      /* launch order: indices into b */
    int next;        /* order[next] is the next bucket to start */
    Use *used;       /* parameters in order of first use this step */
    int nused, cap_used, ready_end;
    unsigned stamp;
    int nccl, armed; /* overlap and staging: in stats */
    GraphHooks hooks;
    GradSyncStats stats;
};

static size_t param_off(const ParamStore *ps, int i) { return (size_t)(ps->params[i].grad - ps->grad); }

static const ParamStore *sort_ps; /* qsort has no context argument */
static int cmp_off(const void *a, const void *b) {
    size_t x = param_off(sort_ps, *(const int *)a), y = param_off(sort_ps, *(const int *)b);
    return x < y ? -1 : x > y;
}

static GradSync *sort_gs;
static int cmp_order(const void *a, const void *b) {
    const Bucket *x = &sort_gs->b[*(const int *)a], *y = &sort_gs->b[*(const int *)b];
    if (x->store != y->store) return y->store - x->store; /* the last store first */
    if (x->key != y->key) return y->key - x->key;         /* latest-declared first */
    return x->off < y->off ? 1 : -1;
}

static void reduce_bucket(GradSync *s, Bucket *k) {
    ParamStore *ps = s->st[k->store].ps;
    float *g = ps->grad + k->off;
    if (ps->device == DEV_CPU) {
        comm_allreduce_mean_f32(s->c, g, k->n);
        return;
    }
#if defined(MMRM_CUDA)
    if (s->nccl) {
        cuda_side_wait_main(); /* the gradients were written by the compute stream */
        comm_allreduce_mean_f32_device(s->c, g, k->n, cuda_side_stream_handle());
        return;
    }
#endif
    MMRM_FATAL("gradsync: no way to reduce a %s bucket", device_name(ps->device));
}

/* starts the ready buckets at the head of the order; tape_index: the backward entry just
 * finished (the last one is 0: buckets started then do not overlap anything) */
static void start_ready(GradSync *s, int tape_index) {
    while (s->next < s->nb && s->b[s->order[s->next]].pending == 0) {
        reduce_bucket(s, &s->b[s->order[s->next]]);
        s->next++;
        if (tape_index > 0) s->stats.started_early++;
    }
}

static void hook_use(void *ctx, const Tensor *t, int tape_index) {
    GradSync *s = ctx;
    for (int k = 0; k < s->nst; k++) {
        StoreInfo *si = &s->st[k];
        const ParamStore *ps = si->ps;
        /* as integers: t->grad may point into another allocation */
        uintptr_t a = (uintptr_t)t->grad, lo0 = (uintptr_t)ps->grad;
        if (a < lo0 || a >= lo0 + ps->n_trainable * sizeof(float)) continue;
        size_t off = (a - lo0) / sizeof(float);
        int lo = 0, hi = si->ntrain - 1; /* the last parameter starting at or before off */
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (param_off(ps, si->by_off[mid]) <= off) lo = mid;
            else hi = mid - 1;
        }
        /* every parameter the tensor covers: a fused view (op_param_rows) spans several */
        for (int j = lo; j < si->ntrain && param_off(ps, si->by_off[j]) < off + t->numel; j++) {
            int p = si->by_off[j];
            if (si->seen[p] == s->stamp) continue;
            si->seen[p] = s->stamp;
            if (s->nused == s->cap_used) {
                s->cap_used = s->cap_used ? 2 * s->cap_used : 256;
                s->used = xrealloc(s->used, s->cap_used * sizeof *s->used);
            }
            s->used[s->nused++] = (Use){k, p, tape_index};
        }
        s->ready_end = s->nused;
        return;
    }
}

static void hook_done(void *ctx, int tape_index) {
    GradSync *s = ctx;
    int any = 0;
    while (s->ready_end > 0 && s->used[s->ready_end - 1].first_use >= tape_index) {
        Use u = s->used[--s->ready_end];
        Bucket *k = &s->b[s->st[u.store].bucket_of[u.param]];
        if (--k->pending == 0) any = 1;
    }
    if (any) start_ready(s, tape_index);
}

GradSync *gradsync_create(const Comm *c, ParamStore **stores, int nstores, size_t bucket_bytes,
                          int overlap) {
    GradSync *s = xcalloc(1, sizeof *s);
    s->c = c;
    s->stats.overlap = overlap;
#ifdef MMRM_CUDA
    s->nccl = c->kind == COMM_NCCL;
#endif
    size_t cap_elems = bucket_bytes ? (bucket_bytes + 3) / 4 : (size_t)-1;
    int capb = 0;
    for (int k = 0; k < nstores; k++) {
        ParamStore *ps = stores[k];
        if (!ps->n_trainable) continue;
        MMRM_CHECK(s->nst < 4, "gradsync: at most 4 stores");
        if (ps->device != DEV_CPU && !s->nccl) s->stats.staged = 1;
        StoreInfo *si = &s->st[s->nst];
        si->ps = ps;
        si->by_off = xmalloc(ps->n * sizeof *si->by_off);
        si->bucket_of = xmalloc(ps->n * sizeof *si->bucket_of);
        si->seen = xcalloc(ps->n, sizeof *si->seen);
        for (int i = 0; i < ps->n; i++) {
            si->bucket_of[i] = -1;
            if (ps->params[i].grad) si->by_off[si->ntrain++] = i;
        }
        sort_ps = ps;
        qsort(si->by_off, si->ntrain, sizeof *si->by_off, cmp_off);
        for (int j = 0; j < si->ntrain;) {
            if (s->nb == capb) {
                capb = capb ? 2 * capb : 16;
                s->b = xrealloc(s->b, capb * sizeof *s->b);
            }
            Bucket *bk = &s->b[s->nb];
            *bk = (Bucket){.store = s->nst, .off = param_off(ps, si->by_off[j]), .key = ps->n};
            while (j < si->ntrain && (bk->n == 0 || bk->n + ps->params[si->by_off[j]].numel <= cap_elems)) {
                int p = si->by_off[j++];
                MMRM_CHECK(param_off(ps, p) == bk->off + bk->n, "gradsync: %s is not contiguous",
                           ps->params[p].name);
                bk->n += ps->params[p].numel;
                bk->nparams++;
                if (p < bk->key) bk->key = p;
                si->bucket_of[p] = s->nb;
            }
            if ((size_t)bk->n * 4 > s->stats.largest_bytes) s->stats.largest_bytes = bk->n * 4;
            s->nb++;
        }
        s->nst++;
    }
    s->order = xmalloc((s->nb ? s->nb : 1) * sizeof *s->order);
    for (int i = 0; i < s->nb; i++) s->order[i] = i;
    sort_gs = s;
    qsort(s->order, s->nb, sizeof *s->order, cmp_order);
    if (s->stats.staged) s->stats.overlap = 0; /* one host round trip at the end instead */
    s->hooks = (GraphHooks){hook_use, hook_done, s};
    s->stats.buckets = s->nb;
    return s;
}

void gradsync_free(GradSync *s) {
    if (!s) return;
    for (int k = 0; k < s->nst; k++) {
        free(s->st[k].by_off);
        free(s->st[k].bucket_of);
        free(s->st[k].seen);
    }
    free(s->b);
    free(s->order);
    free(s->used);
    free(s);
}

void gradsync_begin(GradSync *s, Graph *g) {
    s->stamp++;
    s->nused = s->ready_end = 0;
    s->next = 0;
    for (int i = 0; i < s->nb; i++) s->b[i].pending = s->b[i].nparams;
    s->armed = 1;
    if (s->stats.overlap) graph_set_hooks(g, &s->hooks);
}

void gradsync_finish(GradSync *s, Graph *g) {
    MMRM_CHECK(s->armed, "gradsync_finish without gradsync_begin");
    s->armed = 0;
    graph_set_hooks(g, NULL);
    s->stats.steps++;
    if (s->stats.staged) {
        for (int k = 0; k < s->nst; k++) {
            ParamStore *ps = s->st[k].ps;
            float *h;
            params_host(ps, ps->grad, ps->n_trainable, &h);
            comm_allreduce_mean_f32(s->c, h, ps->n_trainable);
            device_copy_from_host(ps->device, ps->grad, h, ps->n_trainable * sizeof(float));
            device_sync(ps->device);
            free(h);
        }
        return;
    }
    for (; s->next < s->nb; s->next++) reduce_bucket(s, &s->b[s->order[s->next]]);
#ifdef MMRM_CUDA
    if (s->nccl) cuda_main_wait_side(); /* the optimizer reads the averaged gradients */
#endif
}

GradSyncStats gradsync_stats(const GradSync *s) { return s->stats; }
