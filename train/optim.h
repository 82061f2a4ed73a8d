/* optim.h - AdamW over flat parameter stores, learning-rate schedules and clipping.
 *
 * The update follows HF Trainer: gradients of every store taking part in a step are
 * clipped together to max_grad_norm (torch.nn.utils.clip_grad_norm_ over all trainable
 * parameters, coefficient max_norm / (norm + 1e-6) when below 1), then torch.optim.AdamW
 * runs over each store's trainable prefix in two calls: the decayed region with
 * weight_decay, the no-decay region (biases, norm weights) with 0. The schedule is HF's
 * get_scheduler(name, warmup, total) lambda evaluated at the 0-based step.
 */
#ifndef MMRM_OPTIM_H
#define MMRM_OPTIM_H

#include "kernels/kernels.h"
#include "runtime/comm.h"
#include "runtime/memory.h"

typedef enum { SCHED_COSINE, SCHED_LINEAR, SCHED_CONSTANT, SCHED_CONSTANT_WITH_WARMUP } SchedKind;

typedef struct AdamW {
    double lr;            /* peak learning rate */
    double beta1, beta2, eps, weight_decay;
    double max_grad_norm; /* <= 0: no clipping */
    SchedKind sched;
    long warmup_steps, total_steps;
    long t;               /* optimizer steps taken (AdamW's bias-correction step) */
    double *clip;         /* device scratch of adamw_step: [0] the sum of squares, [1] the
                           * clip coefficient (a float); allocated on first use */
    Device clip_device;
} AdamW;

/* frees the scratch adamw_step allocated (o stays usable) */
void adamw_free(AdamW *o);

/* the learning rate at 0-based step s */
double lr_at(const AdamW *o, long s);

typedef struct StepResult {
    double grad_norm;     /* global norm before clipping */
    double lr;
    int skipped;          /* gradients were not finite: nothing was updated */
} StepResult;

/* One optimizer step at 0-based step s over n stores (their optimizer state allocated on
 * first use). Non-finite gradients skip the update (the caller counts it). Gradients are
 * left as they are; the caller zeroes them. The norm, the clip coefficient and the skip are
 * computed on the stores' device: the host queues the whole step and reads the norm once,
 * after the update has been queued. */
StepResult adamw_step(AdamW *o, const KernelOps *K, ParamStore **stores, int n, long s);

/* ZeRO-1: this rank's shard of one store's trainable prefix (runtime/comm.h layout):
 * elements [lo, lo + count) of n, with its gradient shard and AdamW moments (S floats each,
 * S = ceil(n / world)). The store itself keeps full parameters and gradients but no
 * moments: optimizer memory per rank is divided by the number of ranks. CPU stores use the
 * host collectives; GPU stores NCCL's (comm_*_device, on the compute stream). */
typedef struct ZeroShard {
    size_t n, S, lo, count;
    Device device;    /* the store's: the shard buffers live there */
    float *g, *m, *v;
} ZeroShard;

/* On a GPU (NCCL communicator) this also pads the store's gradient buffer to W * S floats:
 * the reduce-scatter reads it whole and the all-gather of the updated parameters uses it
 * as its landing buffer once the gradients are spent. */
void zero_shard_init(ZeroShard *z, ParamStore *ps, const Comm *c);
void zero_shard_free(ZeroShard *z);
/* The ZeRO-1 step: gradients reduce-scattered (mean over ranks) into the shards, the global
 * norm from the shards' sums of squares (on the device, all-reduced by NCCL on GPUs, by MPI on
 * the CPU), AdamW on each shard scaled by the device's clip coefficient, parameters
 * all-gathered. Every rank ends with identical parameters. Same clipping, schedule and
 * skipping as adamw_step; the host reads the norm once, after the work is queued. */
StepResult adamw_step_zero1(AdamW *o, const KernelOps *K, const Comm *c, ParamStore **stores,
                            ZeroShard *shards, int n, long s);

#endif
