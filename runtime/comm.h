/* comm.h - the communicator: data parallelism across processes, GPUs and nodes.
 *
 * Three back ends behind one struct:
 * - COMM_SINGLE: one process, no MPI involved; every collective is the identity.
 * - COMM_MPI: launched by mpirun/srun in a build with MPI (MMRM_MPI); host buffers go
 *   through MPI.
 * - COMM_NCCL: after comm_nccl_init in a build with NCCL (MMRM_NCCL); device buffers go
 *   through NCCL (unique id broadcast over MPI, one GPU per node-local rank) and host
 *   buffers still through MPI.
 *
 * Float sums are reduced in a fixed order: every element is owned by one rank, which
 * sums the W contributions in double in rank order 0..W-1 and rounds once; the owners'
 * results are then gathered by all. So every rank ends with the identical buffer, equal
 * bitwise to float(x_0 + x_1 + ... + x_{W-1}) summed in double in that order, whatever
 * algorithm or version of MPI runs underneath. The traffic is that of a ring all-reduce
 * (an all-to-all then an all-gather: 2(W-1)/W of the buffer sent per rank), staged through
 * bounded scratch (16 MiB a direction); the two collectives plus the staging copies take
 * about twice OpenMPI's own MPI_Allreduce on one node, the price of the guarantee (gradients
 * on GPUs take the NCCL path). Device sums are NCCL's: its
 * algorithms reduce each element once and send that result to every rank, so ranks agree,
 * but the summation order (and so the rounding) is NCCL's own.
 *
 * ZeRO-1 shard layout (comm_shard_size): with S = ceil(n / W), shard r is elements
 * [r*S, (r+1)*S) of the buffer padded to W*S (the last shards may be short or empty). Host
 * functions take buffers of the unpadded length n; shard buffers always hold S floats.
 * Device functions need buffers of comm_padded_size elements: NCCL moves equal counts.
 *
 * Failure: in an MPI run a rank that exits with a non-zero status (MMRM_FATAL, exit(1))
 * prints its rank and aborts the whole job through MPI_Abort, so no other rank waits
 * forever in a collective; a rank exiting with 0 without comm_finalize finalizes MPI.
 * Collectives are called from the thread that called comm_init (MPI_THREAD_FUNNELED).
 */
#ifndef MMRM_COMM_H
#define MMRM_COMM_H

#include <stddef.h>

typedef enum { COMM_SINGLE, COMM_MPI, COMM_NCCL } CommKind;

typedef struct Comm {
    int rank, world;             /* this process's rank among world processes */
    int local_rank, local_world; /* the same among the processes on this node */
    CommKind kind;
    int mpi;                     /* 1 when comm_init initialised MPI (finalized by comm_finalize) */
    int device;                  /* CUDA device of this rank after comm_nccl_init, else -1 */
    void *nccl;                  /* ncclComm_t after comm_nccl_init, else NULL */
} Comm;

/* Detects a launch by mpirun/srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE, or srun's
 * SLURM_STEP_NUM_TASKS) and initialises MPI; otherwise a single process. A build without
 * MPI launched as several processes is a fatal error with a hint. argc/argv may be NULL. */
void comm_init(Comm *c, int *argc, char ***argv);
void comm_finalize(Comm *c);
const char *comm_kind_name(CommKind k);
int comm_mpi_compiled(void);
int comm_nccl_compiled(void);

/* Prints "mmrm: error: rank R/W: msg" and ends every rank of the job with code. */
_Noreturn void comm_abort(const Comm *c, int code, const char *msg);

/* ---- host buffers (identity at world 1) ---- */
void comm_allreduce_sum_f32(const Comm *c, float *buf, size_t n);
void comm_allreduce_mean_f32(const Comm *c, float *buf, size_t n); /* float(sum / W) */
/* small arrays (metrics): every rank sums all W arrays in rank order */
void comm_allreduce_sum_f64(const Comm *c, double *buf, size_t n);
void comm_broadcast(const Comm *c, void *buf, size_t bytes, int root);
void comm_barrier(const Comm *c);

/* ZeRO-1 (layout above). S = comm_shard_size(n, W) */
size_t comm_shard_size(size_t n, int world);
size_t comm_padded_size(size_t n, int world);
/* number of shard r's elements that lie inside [0, n) */
size_t comm_shard_count(size_t n, int world, int r);
/* shard (S floats; elements past the buffer come out 0) = this rank's shard of the sum
 * of every rank's buf (n floats), reduced as described above */
void comm_reduce_scatter_sum_f32(const Comm *c, const float *buf, size_t n, float *shard);
/* buf (n floats) = every rank's shard (S floats) placed at r*S; shard may alias
 * buf + rank*S */
void comm_allgather_f32(const Comm *c, const float *shard, float *buf, size_t n);

/* ---- a work queue: tasks 0..n-1 handed out on request ----
 *
 * Every rank calls comm_work_queue with the same n. Rank 0 hands out the task indices in
 * increasing order: to a worker when it asks, and to itself between its own tasks, answering
 * every pending request before it takes one, so a faster rank asks more often and takes more.
 * A worker keeps its next two requests in flight, so that an answer is there when a task ends
 * although rank 0 answers only between its own tasks (a slow rank delays the end of the queue
 * by at most two of its tasks). run(ctx, k) does task k on this rank and returns the units of
 * work it held (>= 0, e.g. responses scored) or -1 to stop: the queue then returns -1 at once,
 * and the caller's non-zero exit ends the job (above). On rank 0, done(ctx, units) (NULL:
 * none) is called with the units newly done by any rank as they become known (its own after
 * each task, a worker's with its next request), for a progress display. tasks (NULL, or world
 * longs) receives on rank 0 how many tasks each rank ran. At world 1 the tasks run in order
 * 0..n-1 without MPI. Returns 0 or -1 (run's error, or a worker handed an index past n). */
typedef long (*CommTaskFn)(void *ctx, size_t k);
typedef void (*CommDoneFn)(void *ctx, long units);
int comm_work_queue(const Comm *c, size_t n, CommTaskFn run, CommDoneFn done, void *ctx,
                    long *tasks);

/* ---- device buffers (NCCL; stream is a cudaStream_t, NULL = default stream) ---- */
/* Selects this rank's GPU (local_rank; fatal if the node has fewer GPUs than ranks) and
 * creates the NCCL communicator; allowed at world 1 so the code path is the same. */
void comm_nccl_init(Comm *c);
void comm_allreduce_sum_f32_device(const Comm *c, float *dbuf, size_t n, void *stream);
void comm_allreduce_mean_f32_device(const Comm *c, float *dbuf, size_t n, void *stream);
/* doubles summed (ZeRO-1's squared gradient norm, kept on the device) */
void comm_allreduce_sum_f64_device(const Comm *c, double *dbuf, size_t n, void *stream);
void comm_broadcast_device(const Comm *c, void *dbuf, size_t bytes, int root, void *stream);
/* dbuf holds comm_padded_size(n, W) floats; dshard gets S floats */
void comm_reduce_scatter_sum_f32_device(const Comm *c, const float *dbuf, float *dshard,
                                        size_t n, void *stream);
void comm_allgather_f32_device(const Comm *c, const float *dshard, float *dbuf, size_t n,
                               void *stream);

#endif
