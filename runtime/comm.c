/* comm.c - the communicator's three back ends: single process, MPI for host buffers
 * (compiled with MMRM_MPI) and NCCL for device buffers (compiled with MMRM_NCCL, which
 * needs MMRM_MPI for multi-process runs: the NCCL unique id travels over MPI), and the work
 * queue over MPI point-to-point messages. A build without either still has the whole API:
 * world is 1, collectives are identities and the queue runs every task in order. No other
 * product file calls MPI.
 *
 * Host float sums run in rounds through bounded scratch: an all-to-all hands each rank
 * the W contributions to the elements it owns, the owner sums them in double in rank
 * order and rounds once, and an all-gather returns the owners' results to everyone. */
#include "runtime/comm.h"

#include "runtime/error.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MMRM_MPI
#include <mpi.h>
#endif
#ifdef MMRM_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>
#endif

/* scratch per direction for one round of the host float collectives: 16 MiB */
#define ROUND_FLOATS ((size_t)4 << 20)

/* ---- launch detection ---- */

static int env_int(const char *name, int *out) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0 || v > INT_MAX) return 0;
    *out = (int)v;
    return 1;
}

/* World size and rank announced by a launcher, or world 1. SLURM_NTASKS is not used: it
 * is also set inside an sbatch script for a plain process, while SLURM_STEP_NUM_TASKS
 * belongs to srun's tasks only. */
static int launched_world(int *rank, const char **by) {
    int world;
    *rank = 0;
    if (env_int("OMPI_COMM_WORLD_SIZE", &world)) {
        env_int("OMPI_COMM_WORLD_RANK", rank);
        *by = "mpirun";
    } else if (env_int("PMI_SIZE", &world)) {
        env_int("PMI_RANK", rank);
        *by = "a PMI launcher (srun/mpiexec)";
    } else if (env_int("SLURM_STEP_NUM_TASKS", &world)) {
        env_int("SLURM_PROCID", rank);
        *by = "srun";
    } else {
        world = 1;
        *by = "none";
    }
    return world < 1 ? 1 : world;
}

const char *comm_kind_name(CommKind k) {
    switch (k) {
    case COMM_SINGLE: return "single";
    case COMM_MPI: return "mpi";
    case COMM_NCCL: return "nccl";
    }
    return "?";
}

int comm_mpi_compiled(void) {
#ifdef MMRM_MPI
    return 1;
#else
    return 0;
#endif
}

int comm_nccl_compiled(void) {
#ifdef MMRM_NCCL
    return 1;
#else
    return 0;
#endif
}

/* ---- MPI plumbing: error checks, abort, the exit handler ---- */

#ifdef MMRM_MPI
/* One MPI per process: the exit handler needs the state without a Comm. */
static int g_mpi_live; /* MPI initialised and not yet finalized */
static int g_rank, g_world;

_Noreturn static void mpi_fail(const char *call, int rc, const char *file, int line) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    fflush(stdout);
    fprintf(stderr, "mmrm: error: rank %d/%d: %s failed: %s [%s:%d]\n", g_rank, g_world, call,
            msg, file, line);
    fflush(stderr);
    g_mpi_live = 0;
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}
#define MPI_CHECK(call)                                                            \
    do {                                                                           \
        int mpi_rc_ = (call);                                                      \
        if (mpi_rc_ != MPI_SUCCESS) mpi_fail(#call, mpi_rc_, __FILE__, __LINE__);  \
    } while (0)

/* Runs at exit() (so after MMRM_FATAL's message): a failing rank takes the job down
 * instead of leaving the others blocked in a collective; a clean exit that skipped
 * comm_finalize finalizes here. */
static void comm_on_exit(int status, void *arg) {
    (void)arg;
    if (!g_mpi_live) return;
    g_mpi_live = 0;
    if (status == 0) {
        MPI_Finalize();
        return;
    }
    fprintf(stderr,
            "mmrm: error: rank %d/%d exited with status %d; aborting every rank of the job\n",
            g_rank, g_world, status);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, status);
}

static void mpi_start(Comm *c, int *argc, char ***argv, int env_rank, int env_world,
                      const char *by) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    MMRM_CHECK(!initialized, "comm_init called twice in one process (MPI is initialised once)");
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        MMRM_FATAL("rank %d: MPI_Init_thread failed (launched as %d processes by %s)", env_rank,
                   env_world, by);
    g_mpi_live = 1;
    g_rank = env_rank;
    g_world = env_world;
    /* errors come back to MPI_CHECK, which names the call and this rank before aborting */
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &g_rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &g_world));
    on_exit(comm_on_exit, NULL);
    c->rank = g_rank;
    c->world = g_world;
    c->mpi = 1;
    c->kind = COMM_MPI;
    if (provided < MPI_THREAD_FUNNELED)
        comm_abort(c, 1, "the MPI library does not support MPI_THREAD_FUNNELED (mmrm calls MPI "
                         "from its main thread while OpenMP threads run)");
    if (g_world != env_world) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "launched as %d processes by %s but MPI reports a world of %d: the launcher "
                 "belongs to a different MPI than the one mmrm was built with (see mpicc "
                 "--showme)", env_world, by, g_world);
        comm_abort(c, 1, msg);
    }
    MPI_Comm node;
    MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL,
                                  &node));
    MPI_CHECK(MPI_Comm_rank(node, &c->local_rank));
    MPI_CHECK(MPI_Comm_size(node, &c->local_world));
    MPI_CHECK(MPI_Comm_free(&node));
}
#endif

void comm_init(Comm *c, int *argc, char ***argv) {
    memset(c, 0, sizeof *c);
    c->world = c->local_world = 1;
    c->kind = COMM_SINGLE;
    c->device = -1;
    const char *by;
    int env_rank, env_world = launched_world(&env_rank, &by);
    if (env_world == 1) return;
#ifdef MMRM_MPI
    mpi_start(c, argc, argv, env_rank, env_world, by);
#else
    (void)argc;
    (void)argv;
    MMRM_FATAL("rank %d: launched as %d processes by %s, but this mmrm was built without MPI; "
               "rebuild with OpenMPI installed (apt-get install libopenmpi-dev) or run one process",
               env_rank, env_world, by);
#endif
}

void comm_finalize(Comm *c) {
#ifdef MMRM_NCCL
    if (c->nccl) ncclCommDestroy((ncclComm_t)c->nccl);
#endif
    c->nccl = NULL;
#ifdef MMRM_MPI
    if (c->mpi && g_mpi_live) {
        g_mpi_live = 0;
        MPI_Finalize();
    }
#endif
    c->mpi = 0;
    c->kind = COMM_SINGLE;
}

void comm_abort(const Comm *c, int code, const char *msg) {
    if (code == 0) code = 1;
    fflush(stdout);
    fprintf(stderr, "mmrm: error: rank %d/%d: %s\n", c->rank, c->world, msg);
    fflush(stderr);
#ifdef MMRM_MPI
    if (g_mpi_live) {
        g_mpi_live = 0;
        MPI_Abort(MPI_COMM_WORLD, code);
    }
#endif
    exit(code);
}

/* ---- ZeRO-1 shard layout ---- */

size_t comm_shard_size(size_t n, int world) {
    MMRM_CHECK(world >= 1, "comm_shard_size: world %d", world);
    return (n + (size_t)world - 1) / (size_t)world;
}

size_t comm_padded_size(size_t n, int world) { return comm_shard_size(n, world) * (size_t)world; }

size_t comm_shard_count(size_t n, int world, int r) {
    MMRM_CHECK(r >= 0 && r < world, "comm_shard_count: rank %d of %d", r, world);
    size_t s = comm_shard_size(n, world), begin = (size_t)r * s;
    return begin >= n ? 0 : (n - begin < s ? n - begin : s);
}

/* ---- host collectives ---- */

#ifdef MMRM_MPI
/* Elements per shard handled in one round, so that W of them fill at most the scratch. */
static size_t round_len(const Comm *c) {
    size_t m = ROUND_FLOATS / (size_t)c->world;
    return m ? m : 1;
}

/* Elements of shard-slice [d*S + k0, d*S + k0 + m) that lie inside [0, n). */
static size_t slice_valid(size_t n, size_t S, size_t d, size_t k0, size_t m) {
    size_t begin = d * S + k0;
    return begin >= n ? 0 : (n - begin < m ? n - begin : m);
}

/* The fixed-order reduction of every rank's buf (n floats). For each round of m
 * elements per shard: own[j] = float(sum_s double(contribution of rank s) [/ W]) for
 * element rank*S + k0 + j; then either out_shard gets own, or out (all n) gets every
 * owner's own through an all-gather. The sum runs over blocks of elements, rank by rank,
 * so the compiler vectorizes it; each element still adds ranks 0..W-1 in order. */
static void fixed_order_reduce(const Comm *c, const float *buf, size_t n, int mean,
                               float *out, float *out_shard) {
    enum { BLOCK = 256 };
    size_t W = (size_t)c->world, S = comm_shard_size(n, c->world), M = round_len(c);
    float *send = xmalloc(W * M * sizeof *send), *recv = xmalloc(W * M * sizeof *recv);
    float *own = xmalloc(M * sizeof *own);
    for (size_t k0 = 0; k0 < S; k0 += M) {
        size_t m = S - k0 < M ? S - k0 : M;
        for (size_t d = 0; d < W; d++) {
            size_t v = slice_valid(n, S, d, k0, m);
            memcpy(send + d * m, buf + d * S + k0, v * sizeof *send);
            memset(send + d * m + v, 0, (m - v) * sizeof *send);
        }
        MPI_CHECK(MPI_Alltoall(send, (int)m, MPI_FLOAT, recv, (int)m, MPI_FLOAT, MPI_COMM_WORLD));
        for (size_t j0 = 0; j0 < m; j0 += BLOCK) {
            size_t b = m - j0 < BLOCK ? m - j0 : BLOCK;
            double acc[BLOCK] = {0};
            for (size_t r = 0; r < W; r++) {
                const float *x = recv + r * m + j0;
                for (size_t j = 0; j < b; j++) acc[j] += (double)x[j];
            }
            for (size_t j = 0; j < b; j++)
                own[j0 + j] = (float)(mean ? acc[j] / (double)W : acc[j]);
        }
        if (out_shard) {
            memcpy(out_shard + k0, own, m * sizeof *own);
            continue;
        }
        MPI_CHECK(MPI_Allgather(own, (int)m, MPI_FLOAT, recv, (int)m, MPI_FLOAT, MPI_COMM_WORLD));
        for (size_t r = 0; r < W; r++)
            memcpy(out + r * S + k0, recv + r * m, slice_valid(n, S, r, k0, m) * sizeof *out);
    }
    free(send);
    free(recv);
    free(own);
}
#else
_Noreturn static void no_mpi(const Comm *c, const char *what) {
    MMRM_FATAL("%s over %d ranks in a build without MPI (rebuild with OpenMPI installed)", what,
               c->world);
}
#endif

static void allreduce_f32(const Comm *c, float *buf, size_t n, int mean) {
    if (c->world == 1 || n == 0) return;
#ifdef MMRM_MPI
    fixed_order_reduce(c, buf, n, mean, buf, NULL);
#else
    (void)buf, (void)mean;
    no_mpi(c, "all-reduce");
#endif
}

void comm_allreduce_sum_f32(const Comm *c, float *buf, size_t n) { allreduce_f32(c, buf, n, 0); }
void comm_allreduce_mean_f32(const Comm *c, float *buf, size_t n) { allreduce_f32(c, buf, n, 1); }

void comm_allreduce_sum_f64(const Comm *c, double *buf, size_t n) {
    if (c->world == 1 || n == 0) return;
#ifdef MMRM_MPI
    size_t W = (size_t)c->world, M = round_len(c);
    double *all = xmalloc(W * M * sizeof *all);
    for (size_t k0 = 0; k0 < n; k0 += M) {
        size_t m = n - k0 < M ? n - k0 : M;
        MPI_CHECK(MPI_Allgather(buf + k0, (int)m, MPI_DOUBLE, all, (int)m, MPI_DOUBLE,
                                MPI_COMM_WORLD));
        for (size_t j = 0; j < m; j++) {
            double s = 0.0;
            for (size_t r = 0; r < W; r++) s += all[r * m + j];
            buf[k0 + j] = s;
        }
    }
    free(all);
#else
    (void)buf;
    no_mpi(c, "all-reduce");
#endif
}

void comm_broadcast(const Comm *c, void *buf, size_t bytes, int root) {
    MMRM_CHECK(root >= 0 && root < c->world, "comm_broadcast: root %d outside world %d", root,
               c->world);
    if (c->world == 1 || bytes == 0) return;
#ifdef MMRM_MPI
    for (size_t off = 0; off < bytes; off += (size_t)INT_MAX) {
        size_t m = bytes - off < (size_t)INT_MAX ? bytes - off : (size_t)INT_MAX;
        MPI_CHECK(MPI_Bcast((char *)buf + off, (int)m, MPI_BYTE, root, MPI_COMM_WORLD));
    }
#else
    (void)buf;
    no_mpi(c, "broadcast");
#endif
}

void comm_barrier(const Comm *c) {
    if (c->world == 1) return;
#ifdef MMRM_MPI
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
#else
    no_mpi(c, "barrier");
#endif
}

void comm_reduce_scatter_sum_f32(const Comm *c, const float *buf, size_t n, float *shard) {
    if (n == 0) return;
    if (c->world == 1) {
        memmove(shard, buf, n * sizeof *buf);
        return;
    }
#ifdef MMRM_MPI
    fixed_order_reduce(c, buf, n, 0, NULL, shard);
#else
    no_mpi(c, "reduce-scatter");
#endif
}

void comm_allgather_f32(const Comm *c, const float *shard, float *buf, size_t n) {
    if (n == 0) return;
    if (c->world == 1) {
        memmove(buf, shard, n * sizeof *buf);
        return;
    }
#ifdef MMRM_MPI
    size_t W = (size_t)c->world, S = comm_shard_size(n, c->world), M = round_len(c);
    float *send = xmalloc(M * sizeof *send), *recv = xmalloc(W * M * sizeof *recv);
    for (size_t k0 = 0; k0 < S; k0 += M) {
        size_t m = S - k0 < M ? S - k0 : M;
        /* only the shard's elements inside [0, n) are read: shard may alias the end of buf */
        size_t v = slice_valid(n, S, (size_t)c->rank, k0, m);
        memcpy(send, shard + k0, v * sizeof *send);
        memset(send + v, 0, (m - v) * sizeof *send);
        MPI_CHECK(MPI_Allgather(send, (int)m, MPI_FLOAT, recv, (int)m, MPI_FLOAT, MPI_COMM_WORLD));
        for (size_t r = 0; r < W; r++)
            memcpy(buf + r * S + k0, recv + r * m, slice_valid(n, S, r, k0, m) * sizeof *buf);
    }
    free(send);
    free(recv);
#else
    no_mpi(c, "all-gather");
#endif
}

/* ---- the work queue ---- */

#ifdef MMRM_MPI
/* Worker -> rank 0 on TAG_ASK: {units this rank has done so far, 1 when it asks for nothing
 * more}; rank 0 -> worker on TAG_TASK: a task index, or -1 when none is left. */
enum { TAG_ASK = 7101, TAG_TASK = 7102, QUEUE_AHEAD = 2 };

typedef struct {
    size_t n, next;    /* tasks, and the next one to hand out */
    int finished;      /* workers that asked for nothing more */
    long *worker_done; /* (world) units each worker reported */
    long *tasks;       /* (world) tasks handed to each rank */
    CommDoneFn done;
    void *ctx;
} Queue;

/* Receives one message from src and answers it. */
static void queue_serve(Queue *q, int src) {
    long m[2];
    MPI_CHECK(MPI_Recv(m, 2, MPI_LONG, src, TAG_ASK, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    if (q->done) q->done(q->ctx, m[0] - q->worker_done[src]);
    q->worker_done[src] = m[0];
    if (m[1]) {
        q->finished++;
        return;
    }
    long k = q->next < q->n ? (long)q->next++ : -1;
    q->tasks[src] += k >= 0;
    MPI_CHECK(MPI_Send(&k, 1, MPI_LONG, src, TAG_TASK, MPI_COMM_WORLD));
}

/* Rank 0: answers every pending request, runs the next task itself, and so on; when none is
 * left, answers until every worker has finished. */
static int queue_coordinate(const Comm *c, Queue *q, CommTaskFn run) {
    for (;;) {
        int flag;
        MPI_Status st;
        for (;;) {
            MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, TAG_ASK, MPI_COMM_WORLD, &flag, &st));
            if (!flag) break;
            queue_serve(q, st.MPI_SOURCE);
        }
        if (q->next >= q->n) break;
        q->tasks[0]++;
        long units = run(q->ctx, q->next++);
        if (units < 0) return -1;
        if (q->done) q->done(q->ctx, units);
    }
    while (q->finished < c->world - 1) {
        MPI_Status st;
        MPI_CHECK(MPI_Probe(MPI_ANY_SOURCE, TAG_ASK, MPI_COMM_WORLD, &st));
        queue_serve(q, st.MPI_SOURCE);
    }
    return 0;
}

static void queue_ask(long done, int more, long *reply, MPI_Request *rq) {
    long m[2] = {done, !more};
    MPI_CHECK(MPI_Send(m, 2, MPI_LONG, 0, TAG_ASK, MPI_COMM_WORLD));
    if (more) MPI_CHECK(MPI_Irecv(reply, 1, MPI_LONG, 0, TAG_TASK, MPI_COMM_WORLD, rq));
}

/* A worker: QUEUE_AHEAD requests stay in flight (answers to one sender arrive in the order
 * asked), so the next task is known when one ends. */
static int queue_work(size_t n, CommTaskFn run, void *ctx) {
    long got[QUEUE_AHEAD], done = 0;
    MPI_Request rq[QUEUE_AHEAD];
    for (int d = 0; d < QUEUE_AHEAD; d++) queue_ask(done, 1, &got[d], &rq[d]);
    for (int d = 0;; d = (d + 1) % QUEUE_AHEAD) {
        MPI_CHECK(MPI_Wait(&rq[d], MPI_STATUS_IGNORE));
        long k = got[d];
        if (k < 0) break; /* and the requests still in flight are answered -1 too */
        if ((size_t)k >= n) {
            mmrm_set_error("rank 0 handed out chunk %ld of %zu: the ranks planned different "
                           "work", k, n);
            return -1;
        }
        queue_ask(done, 1, &got[d], &rq[d]);
        long units = run(ctx, (size_t)k);
        if (units < 0) return -1;
        done += units;
    }
    MPI_CHECK(MPI_Waitall(QUEUE_AHEAD, rq, MPI_STATUSES_IGNORE));
    queue_ask(done, 0, NULL, NULL);
    return 0;
}
#endif

int comm_work_queue(const Comm *c, size_t n, CommTaskFn run, CommDoneFn done, void *ctx,
                    long *tasks) {
    if (c->world == 1) {
        for (size_t k = 0; k < n; k++) {
            long units = run(ctx, k);
            if (units < 0) return -1;
            if (done) done(ctx, units);
        }
        if (tasks) tasks[0] = (long)n;
        return 0;
    }
#ifdef MMRM_MPI
    if (c->rank > 0) return queue_work(n, run, ctx);
    Queue q = {n, 0, 0, xcalloc((size_t)c->world, sizeof(long)),
               xcalloc((size_t)c->world, sizeof(long)), done, ctx};
    int rc = queue_coordinate(c, &q, run);
    if (tasks) memcpy(tasks, q.tasks, (size_t)c->world * sizeof *tasks);
    free(q.worker_done);
    free(q.tasks);
    return rc;
#else
    (void)done, (void)ctx, (void)tasks;
    no_mpi(c, "work queue");
#endif
}

/* ---- device collectives (NCCL) ---- */

#ifdef MMRM_NCCL
_Noreturn static void cuda_fail(const Comm *c, const char *call, const char *what,
                                const char *file, int line) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s failed: %s [%s:%d]", call, what, file, line);
    comm_abort(c, 1, msg);
}
#define CUDA_CHECK(c, call)                                                        \
    do {                                                                           \
        cudaError_t cuda_rc_ = (call);                                             \
        if (cuda_rc_ != cudaSuccess)                                               \
            cuda_fail(c, #call, cudaGetErrorString(cuda_rc_), __FILE__, __LINE__); \
    } while (0)
#define NCCL_CHECK(c, call)                                                          \
    do {                                                                             \
        ncclResult_t nccl_rc_ = (call);                                              \
        if (nccl_rc_ != ncclSuccess) {                                               \
            char nccl_msg_[384];                                                     \
            snprintf(nccl_msg_, sizeof nccl_msg_, "%s (%s)", ncclGetErrorString(nccl_rc_), \
                     ncclGetLastError(NULL));                                        \
            cuda_fail(c, #call, nccl_msg_, __FILE__, __LINE__);                      \
        }                                                                            \
    } while (0)

static ncclComm_t nccl_of(const Comm *c) {
    MMRM_CHECK(c->nccl, "device collective before comm_nccl_init");
    return (ncclComm_t)c->nccl;
}

void comm_nccl_init(Comm *c) {
    MMRM_CHECK(!c->nccl, "comm_nccl_init called twice");
    int ndev = 0;
    CUDA_CHECK(c, cudaGetDeviceCount(&ndev));
    if (c->local_world > ndev) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "%d ranks on this node but %d visible GPU(s): launch at most %d rank(s) per "
                 "node (check CUDA_VISIBLE_DEVICES)", c->local_world, ndev, ndev);
        comm_abort(c, 1, msg);
    }
    c->device = c->local_rank;
    CUDA_CHECK(c, cudaSetDevice(c->device));
    ncclUniqueId id;
    if (c->rank == 0) NCCL_CHECK(c, ncclGetUniqueId(&id));
    comm_broadcast(c, &id, sizeof id, 0);
    ncclComm_t nc;
    NCCL_CHECK(c, ncclCommInitRank(&nc, c->world, id, c->rank));
    c->nccl = nc;
    c->kind = COMM_NCCL;
}

void comm_allreduce_sum_f32_device(const Comm *c, float *dbuf, size_t n, void *stream) {
    NCCL_CHECK(c, ncclAllReduce(dbuf, dbuf, n, ncclFloat, ncclSum, nccl_of(c),
                                (cudaStream_t)stream));
}

void comm_allreduce_mean_f32_device(const Comm *c, float *dbuf, size_t n, void *stream) {
    NCCL_CHECK(c, ncclAllReduce(dbuf, dbuf, n, ncclFloat, ncclAvg, nccl_of(c),
                                (cudaStream_t)stream));
}

void comm_allreduce_sum_f64_device(const Comm *c, double *dbuf, size_t n, void *stream) {
    NCCL_CHECK(c, ncclAllReduce(dbuf, dbuf, n, ncclDouble, ncclSum, nccl_of(c),
                                (cudaStream_t)stream));
}

void comm_broadcast_device(const Comm *c, void *dbuf, size_t bytes, int root, void *stream) {
    MMRM_CHECK(root >= 0 && root < c->world, "comm_broadcast_device: root %d outside world %d",
               root, c->world);
    NCCL_CHECK(c, ncclBroadcast(dbuf, dbuf, bytes, ncclChar, root, nccl_of(c),
                                (cudaStream_t)stream));
}

void comm_reduce_scatter_sum_f32_device(const Comm *c, const float *dbuf, float *dshard,
                                        size_t n, void *stream) {
    NCCL_CHECK(c, ncclReduceScatter(dbuf, dshard, comm_shard_size(n, c->world), ncclFloat,
                                    ncclSum, nccl_of(c), (cudaStream_t)stream));
}

void comm_allgather_f32_device(const Comm *c, const float *dshard, float *dbuf, size_t n,
                               void *stream) {
    NCCL_CHECK(c, ncclAllGather(dshard, dbuf, comm_shard_size(n, c->world), ncclFloat,
                                nccl_of(c), (cudaStream_t)stream));
}
#else
_Noreturn static void no_nccl(const char *what) {
    MMRM_FATAL("%s: this mmrm was built without NCCL (rebuild with NCCL=1 on a machine with "
               "CUDA and NCCL)", what);
}

void comm_nccl_init(Comm *c) {
    (void)c;
    no_nccl("comm_nccl_init");
}

void comm_allreduce_sum_f32_device(const Comm *c, float *dbuf, size_t n, void *stream) {
    (void)c, (void)dbuf, (void)n, (void)stream;
    no_nccl("device all-reduce");
}

void comm_allreduce_mean_f32_device(const Comm *c, float *dbuf, size_t n, void *stream) {
    (void)c, (void)dbuf, (void)n, (void)stream;
    no_nccl("device all-reduce");
}

void comm_allreduce_sum_f64_device(const Comm *c, double *dbuf, size_t n, void *stream) {
    (void)c, (void)dbuf, (void)n, (void)stream;
    no_nccl("device all-reduce");
}

void comm_broadcast_device(const Comm *c, void *dbuf, size_t bytes, int root, void *stream) {
    (void)c, (void)dbuf, (void)bytes, (void)root, (void)stream;
    no_nccl("device broadcast");
}

void comm_reduce_scatter_sum_f32_device(const Comm *c, const float *dbuf, float *dshard,
                                        size_t n, void *stream) {
    (void)c, (void)dbuf, (void)dshard, (void)n, (void)stream;
    no_nccl("device reduce-scatter");
}

void comm_allgather_f32_device(const Comm *c, const float *dshard, float *dbuf, size_t n,
                               void *stream) {
    (void)c, (void)dshard, (void)dbuf, (void)n, (void)stream;
    no_nccl("device all-gather");
}
#endif
