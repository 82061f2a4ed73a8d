/* memory.h - planned memory: the activation arena and the flat parameter store.
 *
 * Arena: a bump allocator reset at every step. It never frees piecemeal; a step that
 * needs more than the current block chains overflow blocks, and the next reset replaces
 * them all by one block of the high-water size, so from the second step on a step
 * performs no allocation at all. mark/release give stack-like scratch (recompute
 * segments free their recomputed activations that way).
 *
 * ParamStore: parameters are declared by name, shape, group and decay flag, then
 * laid out once in ONE contiguous buffer ordered [trainable, decayed | trainable, not
 * decayed | frozen]. Gradients and AdamW moments cover the trainable prefix with the same
 * offsets, so one collective reduces all gradients, ZeRO sharding is
 * slicing, and frozen parameters own no gradient or optimizer memory at all.
 */
#ifndef MMRM_MEMORY_H
#define MMRM_MEMORY_H

#include <stddef.h>

#include "runtime/tensor.h"

typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
    Device device;
    char *base;          /* the main block */
    size_t cap, used;    /* bytes */
    ArenaBlock *overflow;/* chained blocks of this step (first steps only) */
    size_t overflow_used;/* bytes handed out from overflow blocks */
    size_t peak;         /* high-water mark of used + overflow_used since init */
    size_t n_grow;       /* how many times reset had to grow the main block */
} Arena;

void arena_init(Arena *a, Device d, size_t initial_bytes);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t bytes);       /* 64-byte aligned, uninitialised */
void *arena_calloc(Arena *a, size_t bytes);      /* zeroed */
void arena_reset(Arena *a);                      /* end of step */
#define ARENA_NO_MARK ((size_t)-1)
size_t arena_mark(const Arena *a);
/* Frees everything allocated after the mark. While the arena is overflowing (first
 * steps) it keeps everything instead; reset then grows the main block. */
void arena_release(Arena *a, size_t mark);
/* Compacts the allocations above the mark: moves the given live ones (pointers into
 * the main block above the mark, any order, at most 16) down to the mark, frees the
 * rest, and returns their new addresses in place. Recompute segments keep their
 * outputs this way. A no-op while overflowing, like release. */
void arena_compact(Arena *a, size_t mark, void **ptrs, const size_t *bytes, int n);

/* parameter groups, so training can freeze by group */
/* PG_LORA: LoRA adapters (models/lora.h), trainable while the groups they adapt are frozen */
typedef enum { PG_VISION = 0, PG_CONNECTOR, PG_LLM, PG_HEAD, PG_OTHER, PG_LORA, PG_COUNT } ParamGroup;
const char *param_group_name(ParamGroup g);

typedef struct ParamStore {
    Device device;
    Tensor *params;  /* n entries, in declaration order */
    int n, cap;
    int group_frozen[PG_COUNT];
    int finalized;
    float *data;     /* (numel) all parameters */
    size_t numel;
    size_t n_trainable;  /* length of the trainable prefix */
    size_t n_decay;      /* length of its decayed part (the first n_decay elements) */
    float *grad;     /* (n_trainable) or NULL when nothing trains */
    float *m, *v;    /* (n_trainable) AdamW moments, after params_alloc_optimizer */
    uint16_t *w16;   /* (numel) bf16 copy of data for precision = bf16 on CUDA (data stays the
                      * fp32 master weights), after params_enable_bf16; else NULL */
    ParamGroup *group;  /* per param */
    unsigned char *decay;
} ParamStore;

void params_init(ParamStore *s, Device d);
void params_free(ParamStore *s);
/* Declares a parameter; returns its index. decay: weight decay applies (false for
 * biases and norm weights, the HF convention). */
int params_add(ParamStore *s, const char *name, ParamGroup g, int decay, int ndim,
               const int *shape);
void params_freeze_group(ParamStore *s, ParamGroup g, int frozen);
/* Lays out the buffers (data zeroed, grads zeroed). After this, params[i] is final. */
void params_finalize(ParamStore *s);
void params_alloc_optimizer(ParamStore *s);
Tensor *params_get(ParamStore *s, int i);
Tensor *params_find(ParamStore *s, const char *name); /* NULL if absent */
void params_zero_grad(ParamStore *s);
/* Reallocates the gradient buffer with room for n_padded >= n_trainable floats (the tail
 * zeroed; parameters' grad views follow), for collectives that move equal counts per rank
 * (ZeRO-1 on NCCL). params_to_device drops the padding again. */
void params_pad_grad(ParamStore *s, size_t n_padded);
/* Moves every buffer (parameters, gradients, moments) to device d, keeping the layout;
 * tensors' pointers follow. Models are built and loaded on the CPU and then moved. The bf16
 * copy is dropped (enable it again on the new device). */
void params_to_device(ParamStore *s, Device d);
/* Host-readable view of n floats at p (a buffer of s): p itself on the CPU, else a host
 * copy returned in *tofree too (free it). For checkpoints and logging. */
const float *params_host(const ParamStore *s, const float *p, size_t n, float **tofree);
size_t params_count_group(const ParamStore *s, ParamGroup g);
/* precision = bf16 on CUDA: keeps a bf16 copy of all parameters (w16; each parameter
 * tensor's w16 points at its part) that runtime/ops.c passes to the GEMMs as their weight
 * operand and train/optim.c to AdamW, which rewrites it with every update. Returns 0
 * (nothing done) on the CPU. Whoever else writes data after this (a ZeRO-1 all-gather, a
 * load) calls params_refresh_bf16 over what it wrote. */
int params_enable_bf16(ParamStore *s);
void params_refresh_bf16(ParamStore *s, size_t off, size_t n);

#endif
