/* gradsync.h - data-parallel gradient averaging in buckets, each started as soon as
 * backward is done with it.
 *
 * The trainable part of each store's flat gradient buffer is cut, at parameter boundaries,
 * into buckets of about bucket_bytes. Every rank starts the buckets' all-reduces in one
 * fixed order (collectives must match across ranks): the last store first (the bias model
 * of the shortcut-aware run is the last one forwarded, so backward finishes it first),
 * within a store the bucket holding the latest-declared first parameter first (backward
 * runs the network from the head down to the vision tower). A bucket is ready when every
 * parameter in it is: the graph hooks (runtime/autograd.h) record each parameter's first
 * use in the forward, and a parameter is final once backward has passed that entry.
 * A bucket starts when it is ready and every bucket before it in the order has started;
 * gradsync_finish starts whatever is left (parameters this rank did not use) in the same
 * order, so every rank issues the same sequence of collectives whatever its batch held.
 *
 * Where the reduction runs:
 * - CPU stores: comm_allreduce_mean_f32 on the bucket, blocking, from inside backward (the
 *   process has no second stream; this runs the same schedule, and a bucketed reduction
 *   needs no whole-buffer scratch).
 * - GPU stores with NCCL: ncclAllReduce(avg) on the bucket on a second CUDA stream that
 *   first waits (event) for the compute stream's work so far, so the reductions of the
 *   late layers overlap the backward of the early ones; gradsync_finish makes the compute
 *   stream wait for them before the optimizer reads the gradients.
 * - GPU stores without NCCL: the whole buffer staged through the host at finish (no
 *   overlap).
 * With overlap = 0 nothing starts during backward: finish runs every bucket in order. */
#ifndef MMRM_GRADSYNC_H
#define MMRM_GRADSYNC_H

#include "runtime/autograd.h"
#include "runtime/comm.h"
#include "runtime/memory.h"

typedef struct GradSync GradSync;

/* Buckets over stores[0..nstores) (stores with nothing trainable are skipped). The stores
 * must be final and on their device. bucket_bytes 0 = one bucket per store. */
GradSync *gradsync_create(const Comm *c, ParamStore **stores, int nstores, size_t bucket_bytes,
                          int overlap);
void gradsync_free(GradSync *s);
/* Before the forward of the step's last micro-batch: watches g's parameter use. */
void gradsync_begin(GradSync *s, Graph *g);
/* After that micro-batch's backward (or instead of it, when this rank's last micro-batch
 * was empty): starts what is left, stops watching g, and leaves the averaged gradients
 * ready for the compute stream. Every rank must call it once per step. */
void gradsync_finish(GradSync *s, Graph *g);

typedef struct GradSyncStats {
    int buckets;            /* buckets in all */
    long steps;             /* gradsync_finish calls */
    long started_early;     /* buckets started before backward's last entry, summed over the steps */
    size_t largest_bytes;   /* the largest bucket */
    int overlap;            /* buckets may start during backward */
    int staged;             /* a GPU store without NCCL: staged through the host */
} GradSyncStats;
GradSyncStats gradsync_stats(const GradSync *s);

#endif
