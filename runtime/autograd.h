/* autograd.h - the graph context, the tape, backward and recompute segments.
 *
 * A Graph carries what every op needs: the op table of its device, the activation
 * arena (tensor data), a host arena for metadata (Tensor structs, saved op state), the
 * tape, grad mode and a dropout RNG stream. Ops (runtime/ops.h) allocate their outputs
 * from the arena and, while grad is enabled and an input requires grad, append a tape
 * entry. graph_backward walks the tape in reverse and accumulates into .grad:
 * parameters' grads are views of the flat grad buffer, activations' grads are
 * allocated (zeroed) from the arena on first use. graph_reset ends a step.
 *
 * Recompute segments (activation checkpointing): graph_checkpoint runs a segment
 * function with grad disabled, keeps only its outputs (the arena is compacted back to
 * where the segment started) and records one entry; backward re-runs the segment with
 * grad enabled and the same dropout counters, then backpropagates through it. The
 * kernels are deterministic, so gradients are bitwise those of a run without recompute.
 */
#ifndef MMRM_AUTOGRAD_H
#define MMRM_AUTOGRAD_H

#include "kernels/kernels.h"
#include "runtime/memory.h"
#include "runtime/rng.h"
#include "runtime/tensor.h"

#define TAPE_MAX_IN 6
#define TAPE_MAX_OUT 4

typedef struct Graph Graph;
typedef struct TapeEntry TapeEntry;
typedef void (*BackwardFn)(Graph *g, TapeEntry *e);

struct TapeEntry {
    const char *op;
    BackwardFn backward;
    Tensor *in[TAPE_MAX_IN];
    Tensor *out[TAPE_MAX_OUT];
    int nin, nout;
    void *ctx; /* op-specific saved state, in the host arena */
};

/* Observers of parameter use, for starting each gradient bucket's all-reduce as soon as
 * backward has finished with it (runtime/gradsync.h). While hooks are set and the graph is
 * not in backward, `use` sees every input that already holds a gradient buffer when an
 * op records (parameters and views of them, a view possibly spanning several adjacent
 * parameters: op_param_rows's fused weights; also activation views, which the observer
 * ignores), with the index the op's top-level tape entry has or will have (inside a
 * recompute segment: the segment's entry). During graph_backward/graph_backward_from,
 * `done(i)` follows top-level entry i (run or skipped): from then on no entry left can
 * write a gradient into an input first used at index >= i. */
typedef struct GraphHooks {
    void (*use)(void *ctx, const Tensor *t, int tape_index);
    void (*done)(void *ctx, int tape_index);
    void *ctx;
} GraphHooks;

/* a host array an op uploaded in this step, remembered so that the next op given the same
 * array (the positions and lengths every decoder layer takes) reuses the device copy */
typedef struct GraphUpload {
    const void *host;
    size_t bytes;
    void *dev;     /* in Graph.inputs */
    void *copy;    /* (cap bytes) the contents uploaded: a reuse needs equal contents */
    size_t cap;
} GraphUpload;
enum { GRAPH_UPLOADS = 8 };

struct Graph {
    Device device;
    const KernelOps *K;
    Arena act;       /* tensor data and activation grads, on the device */
    Arena meta;      /* Tensor structs and saved op state, on the host */
    Arena stage;     /* fp32 views of bf16 activations for one op's kernels, on the device */
    size_t staged_bytes; /* bytes of fp32 views staged there since graph_init (bf16 inputs
                          * widened, outputs rounded back): zero where every op a bf16 graph
                          * runs has a native bf16 kernel (the *_x16 entries) */
    DType act_dtype; /* storage of the activations the ops produce: DT_F32 or DT_BF16 */
    KernelPrecision precision; /* of the GEMMs and attention: KP_FP32, or KP_BF16 on a GPU */
    TapeEntry *tape;
    int ntape, tape_cap;
    int grad_enabled;
    int training;    /* drop_path is active only while training */
    int recompute;   /* graph_checkpoint recomputes (else it runs the segment inline) */
    Rng dropout;     /* counter advances by one per drawn mask element */
    const GraphHooks *hooks; /* NULL: none */
    int in_backward;
    /* the scalar root of the running backward and the gradient it was seeded with, kept on
     * the host: a loss op's backward reads it here instead of copying it back from the
     * device, which would make the host wait for the whole forward (graph_root_grad) */
    const Tensor *root;
    float root_seed;
    /* device copies of host op inputs (ids, positions, lengths, row indices), kept until
     * graph_reset (never released by a recompute segment, so they can be shared across
     * layers and replays): graph_upload_input */
    Arena inputs;
    GraphUpload uploads[GRAPH_UPLOADS];
    int next_upload;
    long n_uploads, n_reused;  /* counts since graph_init */
};

/* The op table for a device; fatal with a hint when the build lacks that backend. */
const KernelOps *kernels_for(Device d);

void graph_init(Graph *g, Device d, size_t arena_bytes, uint64_t seed);
void graph_free(Graph *g);
/* End of step: drops the tape and every activation (parameters are untouched). */
void graph_reset(Graph *g);
/* Previous grad mode is returned so callers can restore it. */
int graph_set_grad(Graph *g, int enabled);

/* Sets (or with NULL clears) the parameter-use observers; they stay until cleared. */
void graph_set_hooks(Graph *g, const GraphHooks *h);

/* New f32 tensor from the arena (uninitialised): inputs, losses. */
Tensor *graph_tensor(Graph *g, const char *name, int ndim, const int *shape);
/* New activation in the graph's activation storage type (act_dtype), uninitialised. */
Tensor *graph_activation(Graph *g, const char *name, int ndim, const int *shape);
/* Activation storage: DT_F32 (default) or DT_BF16, which halves the memory of the stored
 * activations. Ops compute in fp32 either way (runtime/ops.c stages bf16 tensors through
 * fp32 for the kernels); gradients, norm/softmax statistics, rewards and losses stay fp32.
 * Set it before the first op of a step. */
void graph_set_act_dtype(Graph *g, DType dt);
/* The GEMMs' and attention's precision (KP_FP32 by default): with KP_BF16, op_linear runs
 * bf16 operands with fp32 accumulation, reading a weight's bf16 copy (Tensor.w16, from
 * params_enable_bf16) when it has one, and op_attention rounds q, k, v to bf16 (the CUDA
 * tensor-core kernels). The CPU table computes in fp32 whatever this says. Training and scoring
 * with precision = bf16 set this and act_dtype = DT_BF16 together. */
void graph_set_precision(Graph *g, KernelPrecision p);
/* Scratch from the host/meta arena for op state (lives until graph_reset). */
void *graph_scratch(Graph *g, size_t bytes);
/* t's values as fp32 readable on the host: an f32 tensor's data on the CPU, else a copy
 * (bf16 widened) in the host arena (waits for the device; lives until graph_reset). For
 * logging and scoring. */
const float *graph_host(Graph *g, const Tensor *t);
/* The gradient buffer of t, allocated and zeroed on first use. */
float *graph_grad(Graph *g, Tensor *t);

/* Appends a tape entry when grad is enabled and some input requires grad; marks the
 * outputs as requiring grad. Returns the entry (to attach ctx) or NULL. */
TapeEntry *graph_record(Graph *g, const char *op, BackwardFn bw, Tensor **in, int nin,
                        Tensor **out, int nout);

/* Backpropagates from a scalar root (numel 1) with d(root) = 1. */
void graph_backward(Graph *g, Tensor *root);
/* Backpropagates from any output with a given gradient dout (t->numel floats in host
 * memory, copied to the graph's device), e.g. to scale a micro-batch's loss or to test a
 * sub-network. */
void graph_backward_from(Graph *g, Tensor *t, const float *dout);
/* a device copy of the host array src (bytes), valid until graph_reset: the copy made for
 * an earlier op of this step when that op was given the same array with the same contents
 * (arrays up to 1 MiB are remembered, the last GRAPH_UPLOADS of them), else a new one */
void *graph_upload_input(Graph *g, const void *src, size_t bytes);
/* the gradient of the scalar t during backward: the host copy of the seed when t is the root
 * (no device round trip), else read back from the device */
float graph_root_grad(Graph *g, const Tensor *t);

typedef void (*SegmentFn)(Graph *g, void *ctx, Tensor **in, int nin, Tensor **out, int nout);
/* Runs fn(in) -> out as a recompute segment (see above). nin <= TAPE_MAX_IN,
 * nout <= TAPE_MAX_OUT. The ctx_bytes at ctx are copied, so the caller's ctx may be a
 * local; whatever it points to must live until backward. */
void graph_checkpoint(Graph *g, SegmentFn fn, const void *ctx, size_t ctx_bytes, Tensor **in,
                      int nin, Tensor **out, int nout);

#endif
