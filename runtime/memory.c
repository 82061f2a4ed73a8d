/* memory.c - the activation arena and the flat parameter store (see memory.h). */
#include "runtime/memory.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/autograd.h"
#include "runtime/error.h"

#define ALIGN 64
static size_t align_up(size_t n) { return (n + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

struct ArenaBlock {
    ArenaBlock *next;
    char *data;
    size_t cap, used;
};

void arena_init(Arena *a, Device d, size_t initial_bytes) {
    memset(a, 0, sizeof *a);
    a->device = d;
    a->cap = align_up(initial_bytes ? initial_bytes : ALIGN);
    a->base = device_alloc(d, a->cap);
}

static void free_overflow(Arena *a) {
    for (ArenaBlock *b = a->overflow, *next; b; b = next) {
        next = b->next;
        device_free(a->device, b->data);
        free(b);
    }
    a->overflow = NULL;
    a->overflow_used = 0;
}

void arena_free(Arena *a) {
    free_overflow(a);
    if (a->base) device_free(a->device, a->base);
    memset(a, 0, sizeof *a);
}

static void note_peak(Arena *a) {
    size_t u = a->used + a->overflow_used;
    if (u > a->peak) a->peak = u;
}

void *arena_alloc(Arena *a, size_t bytes) {
    bytes = align_up(bytes ? bytes : 1);
    if (!a->overflow && a->used + bytes <= a->cap) {
        void *p = a->base + a->used;
        a->used += bytes;
        note_peak(a);
        return p;
    }
    /* Overflow: chain a block. Happens while the arena learns a step's size. */
    ArenaBlock *b = a->overflow;
    if (!b || b->used + bytes > b->cap) {
        ArenaBlock *nb = xcalloc(1, sizeof *nb);
        nb->cap = bytes > a->cap ? bytes : a->cap;
        nb->data = device_alloc(a->device, nb->cap);
        nb->next = b;
        a->overflow = b = nb;
    }
    void *p = b->data + b->used;
    b->used += bytes;
    a->overflow_used += bytes;
    note_peak(a);
    return p;
}

void *arena_calloc(Arena *a, size_t bytes) {
    void *p = arena_alloc(a, bytes);
    device_memset0(a->device, p, bytes);
    return p;
}

void arena_reset(Arena *a) {
    if (a->overflow) {
        size_t need = align_up(a->peak + a->peak / 8);
        free_overflow(a);
        device_free(a->device, a->base);
        a->cap = need;
        a->base = device_alloc(a->device, a->cap);
        a->n_grow++;
    }
    a->used = 0;
}

/* While overflow blocks exist (a first step that is still learning its size) marks are
 * ARENA_NO_MARK and release/compact keep everything: the memory comes back at reset. */
size_t arena_mark(const Arena *a) { return a->overflow ? ARENA_NO_MARK : a->used; }

void arena_release(Arena *a, size_t mark) {
    if (mark == ARENA_NO_MARK || a->overflow) return;
    MMRM_CHECK(mark <= a->used, "arena_release past the top (%zu > %zu)", mark, a->used);
    a->used = mark;
}

void arena_compact(Arena *a, size_t mark, void **ptrs, const size_t *bytes, int n) {
    if (mark == ARENA_NO_MARK || a->overflow) return;
    /* Move in increasing address order: each destination is at or below its source
     * and above everything already moved, so overlapping moves are safe with memmove. */
    int order[16];
    MMRM_CHECK(n <= 16, "arena_compact: at most 16 live allocations (got %d)", n);
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && (char *)ptrs[order[j]] < (char *)ptrs[order[j - 1]]; j--) {
            int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    size_t top = mark;
    for (int k = 0; k < n; k++) {
        int i = order[k];
        char *src = ptrs[i];
        MMRM_CHECK(src >= a->base + mark && src + bytes[i] <= a->base + a->used,
                   "arena_compact: allocation %d is not above the mark", i);
        char *dst = a->base + top;
        if (dst != src) device_memcpy(a->device, dst, src, bytes[i]);
        ptrs[i] = dst;
        top += align_up(bytes[i]);
    }
    a->used = top;
}

/* ---------------------------------------------------------------- parameters */

const char *param_group_name(ParamGroup g) {
    static const char *names[PG_COUNT] = {"vision", "connector", "llm", "head", "other", "lora"};
    return (unsigned)g < PG_COUNT ? names[g] : "?";
}

void params_init(ParamStore *s, Device d) {
    memset(s, 0, sizeof *s);
    s->device = d;
}

/* frees the bf16 copy (before s->data is freed or moved); the tensors forget it */
static void drop_bf16(ParamStore *s) {
    if (!s->w16) return;
    device_free(s->device, s->w16); /* stream-ordered: kernels queued before still see it */
    s->w16 = NULL;
    for (int i = 0; i < s->n; i++) s->params[i].w16 = NULL;
}

int params_enable_bf16(ParamStore *s) {
    MMRM_CHECK(s->finalized, "params_enable_bf16 before params_finalize");
    if (s->device != DEV_CUDA || !s->numel) return 0;
    if (!s->w16) s->w16 = device_alloc(s->device, s->numel * sizeof(uint16_t));
    kernels_for(s->device)->f32_to_bf16(s->w16, s->data, s->numel);
    for (int i = 0; i < s->n; i++) {
        Tensor *t = &s->params[i];
        t->w16 = s->w16 + ((float *)t->data - s->data);
    }
    return 1;
}

void params_refresh_bf16(ParamStore *s, size_t off, size_t n) {
    if (!s->w16 || !n) return;
    MMRM_CHECK(off <= s->numel && n <= s->numel - off, "params_refresh_bf16: [%zu, %zu) outside %zu",
               off, off + n, s->numel);
    kernels_for(s->device)->f32_to_bf16(s->w16 + off, s->data + off, n);
}

void params_free(ParamStore *s) {
    drop_bf16(s);
    if (s->data) device_free(s->device, s->data);
    if (s->grad) device_free(s->device, s->grad);
    if (s->m) device_free(s->device, s->m);
    if (s->v) device_free(s->device, s->v);
    free(s->params);
    free(s->group);
    free(s->decay);
    memset(s, 0, sizeof *s);
}

int params_add(ParamStore *s, const char *name, ParamGroup g, int decay, int ndim,
               const int *shape) {
    MMRM_CHECK(!s->finalized, "params_add(%s) after params_finalize", name);
    MMRM_CHECK((unsigned)g < PG_COUNT, "params_add(%s): bad group %d", name, (int)g);
    MMRM_CHECK(params_find(s, name) == NULL, "parameter %s declared twice", name);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->params = xrealloc(s->params, s->cap * sizeof *s->params);
        s->group = xrealloc(s->group, s->cap * sizeof *s->group);
        s->decay = xrealloc(s->decay, s->cap);
    }
    Tensor *t = &s->params[s->n];
    memset(t, 0, sizeof *t);
    tensor_set_shape(t, name, ndim, shape);
    t->dtype = DT_F32;
    t->device = s->device;
    t->is_param = 1;
    s->group[s->n] = g;
    s->decay[s->n] = (unsigned char)(decay != 0);
    return s->n++;
}

void params_freeze_group(ParamStore *s, ParamGroup g, int frozen) {
    MMRM_CHECK(!s->finalized, "params_freeze_group after params_finalize");
    s->group_frozen[g] = frozen;
}

void params_finalize(ParamStore *s) {
    MMRM_CHECK(!s->finalized, "params_finalize called twice");
    /* three passes place the regions: trainable+decay, trainable+no-decay, frozen */
    size_t off = 0;
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < s->n; i++) {
            int trainable = !s->group_frozen[s->group[i]];
            int region = !trainable ? 2 : (s->decay[i] ? 0 : 1);
            if (region != pass) continue;
            s->params[i].data = (void *)(uintptr_t)off; /* offset until the buffer exists */
            s->params[i].requires_grad = trainable;
            off += s->params[i].numel;
        }
        if (pass == 0) s->n_decay = off;
        if (pass == 1) s->n_trainable = off;
    }
    s->numel = off;
    s->data = device_alloc(s->device, (s->numel ? s->numel : 1) * sizeof(float));
    device_memset0(s->device, s->data, s->numel * sizeof(float));
    if (s->n_trainable) {
        s->grad = device_alloc(s->device, s->n_trainable * sizeof(float));
        device_memset0(s->device, s->grad, s->n_trainable * sizeof(float));
    }
    for (int i = 0; i < s->n; i++) {
        size_t o = (size_t)(uintptr_t)s->params[i].data;
        s->params[i].data = s->data + o;
        s->params[i].grad = s->params[i].requires_grad ? s->grad + o : NULL;
    }
    s->finalized = 1;
}

void params_alloc_optimizer(ParamStore *s) {
    MMRM_CHECK(s->finalized, "params_alloc_optimizer before params_finalize");
    if (s->m || !s->n_trainable) return;
    s->m = device_alloc(s->device, s->n_trainable * sizeof(float));
    s->v = device_alloc(s->device, s->n_trainable * sizeof(float));
    device_memset0(s->device, s->m, s->n_trainable * sizeof(float));
    device_memset0(s->device, s->v, s->n_trainable * sizeof(float));
}

/* a buffer of n floats on device d with the contents of src (on device `from`) */
static float *moved(Device from, Device d, const float *src, size_t n) {
    if (!src) return NULL;
    float *dst = device_alloc(d, (n ? n : 1) * sizeof(float));
    if (from == DEV_CPU) device_copy_from_host(d, dst, src, n * sizeof(float));
    else if (d == DEV_CPU) device_copy_to_host(from, dst, src, n * sizeof(float));
    else device_memcpy(d, dst, src, n * sizeof(float));
    return dst;
}

void params_to_device(ParamStore *s, Device d) {
    MMRM_CHECK(s->finalized, "params_to_device before params_finalize");
    if (s->device == d) return;
    MMRM_CHECK(s->device == DEV_CPU || d == DEV_CPU, "params_to_device: %s to %s goes through the CPU",
               device_name(s->device), device_name(d));
    Device from = s->device;
    drop_bf16(s);
    float *data = moved(from, d, s->data, s->numel);
    float *grad = moved(from, d, s->grad, s->n_trainable);
    float *m = moved(from, d, s->m, s->n_trainable);
    float *v = moved(from, d, s->v, s->n_trainable);
    for (int i = 0; i < s->n; i++) {
        Tensor *t = &s->params[i];
        size_t o = (size_t)((float *)t->data - s->data);
        t->data = data + o;
        t->grad = t->grad ? grad + o : NULL;
        t->device = d;
    }
    if (s->data) device_free(from, s->data);
    if (s->grad) device_free(from, s->grad);
    if (s->m) device_free(from, s->m);
    if (s->v) device_free(from, s->v);
    s->data = data;
    s->grad = grad;
    s->m = m;
    s->v = v;
    s->device = d;
}

void params_pad_grad(ParamStore *s, size_t n_padded) {
    MMRM_CHECK(s->finalized && n_padded >= s->n_trainable, "params_pad_grad: %zu < %zu trainable",
               n_padded, s->n_trainable);
    if (!s->grad) return;
    float *g = device_alloc(s->device, n_padded * sizeof(float));
    device_memset0(s->device, g, n_padded * sizeof(float));
    device_memcpy(s->device, g, s->grad, s->n_trainable * sizeof(float));
    for (int i = 0; i < s->n; i++)
        if (s->params[i].grad) s->params[i].grad = g + (s->params[i].grad - s->grad);
    device_free(s->device, s->grad);
    s->grad = g;
}

const float *params_host(const ParamStore *s, const float *p, size_t n, float **tofree) {
    *tofree = NULL;
    if (s->device == DEV_CPU || !p) return p;
    *tofree = xmalloc((n ? n : 1) * sizeof(float));
    device_copy_to_host(s->device, *tofree, p, n * sizeof(float));
    return *tofree;
}

Tensor *params_get(ParamStore *s, int i) {
    MMRM_CHECK(i >= 0 && i < s->n, "parameter index %d out of range (%d declared)", i, s->n);
    return &s->params[i];
}

Tensor *params_find(ParamStore *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->params[i].name, name) == 0) return &s->params[i];
    return NULL;
}

void params_zero_grad(ParamStore *s) {
    if (s->grad) device_memset0(s->device, s->grad, s->n_trainable * sizeof(float));
}

size_t params_count_group(const ParamStore *s, ParamGroup g) {
    size_t n = 0;
    for (int i = 0; i < s->n; i++)
        if (s->group[i] == g) n += s->params[i].numel;
    return n;
}

