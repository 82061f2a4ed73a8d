/* comm_mpi_check.c - the multi-process check of runtime/comm.c, run by
 * tests/integration/comm_mpi.sh under `mpirun -np W` (and once as a plain process).
 *
 * Every rank fills its inputs from a seed derived from its rank, so every rank can
 * regenerate every other rank's inputs and compute the expected collective results
 * itself: sums in double in rank order rounded once (the documented fixed order), the
 * mean, each ZeRO-1 shard, the all-gather of the shards, the metrics sum and a broadcast;
 * and the work queue hands every task to exactly one rank.
 * Results are compared bitwise, and rank 0's all-reduce result is broadcast so every
 * rank also checks it holds the identical buffer.
 *
 * usage: comm_mpi_check [check | fail-abort | fail-fatal | nccl]
 *   check       run the checks; prints "rank R/W (KIND): N checks, 0 failed" and exits 0
 *   fail-abort  rank 1 calls comm_abort while the others wait in a barrier
 *   fail-fatal  rank 1 fails through MMRM_FATAL while the others wait in an all-reduce
 *   nccl        (built with MMRM_NCCL, one GPU per rank) the device collectives against
 *               the same regenerated expectations, within NCCL's summation-order rounding
 */
#include "runtime/comm.h"
#include "runtime/error.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MMRM_NCCL
#include <cuda_runtime_api.h>
#endif

static int g_checks, g_failed;
static Comm g_comm;

static void check(int cond, const char *what, size_t n, size_t i) {
    g_checks++;
    if (cond) return;
    if (g_failed++ < 10)
        fprintf(stderr, "rank %d/%d: FAIL %s (n %zu, index %zu)\n", g_comm.rank, g_comm.world,
                what, n, i);
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* rank r's input for case n: uniform in [-1, 1) times 2^[-60, 60], so that even the
 * double sums round and a different summation order would change results */
static void fill_input(float *x, size_t n, int r) {
    uint64_t s = 0x5EED0000ull + (uint64_t)r * 7919u + n;
    for (size_t i = 0; i < n; i++) {
        uint64_t u = splitmix(&s);
        float v = (float)((double)(u >> 11) / 9007199254740992.0 * 2.0 - 1.0);
        x[i] = ldexpf(v, (int)(u % 121) - 60);
    }
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void check_case(const Comm *c, size_t n) {
    int W = c->world;
    size_t S = comm_shard_size(n, W), mine = comm_shard_count(n, W, c->rank);
    float *x = malloc((n + 1) * sizeof *x), *in = malloc((n + 1) * sizeof *in);
    double *sum = calloc(n + 1, sizeof *sum);
    for (int r = 0; r < W; r++) { /* the expected sums, regenerated in rank order */
        fill_input(x, n, r);
        for (size_t i = 0; i < n; i++) sum[i] += (double)x[i];
    }
    fill_input(in, n, c->rank);

    float *a = malloc((n + 1) * sizeof *a);
    memcpy(a, in, n * sizeof *a);
    comm_allreduce_sum_f32(c, a, n);
    for (size_t i = 0; i < n; i++) check(same_bits(a[i], (float)sum[i]), "all-reduce sum", n, i);

    float *b = malloc((n + 1) * sizeof *b); /* rank 0's result reaches everyone unchanged */
    memcpy(b, a, n * sizeof *b);
    comm_broadcast(c, b, n * sizeof *b, 0);
    check(memcmp(a, b, n * sizeof *a) == 0, "all-reduce result identical on every rank", n, 0);

    memcpy(b, in, n * sizeof *b);
    comm_allreduce_mean_f32(c, b, n);
    for (size_t i = 0; i < n; i++)
        check(same_bits(b[i], (float)(sum[i] / W)), "all-reduce mean", n, i);

    float *shard = malloc((S + 1) * sizeof *shard);
    for (size_t k = 0; k < S; k++) shard[k] = NAN;
    comm_reduce_scatter_sum_f32(c, in, n, shard);
    for (size_t k = 0; k < S; k++) {
        size_t i = (size_t)c->rank * S + k;
        check(same_bits(shard[k], i < n ? (float)sum[i] : 0.0f), "reduce-scatter shard", n, i);
    }
    for (size_t i = 0; i < n; i++) b[i] = NAN;
    comm_allgather_f32(c, shard, b, n);
    check(memcmp(a, b, n * sizeof *a) == 0, "reduce-scatter + all-gather = all-reduce", n, 0);

    /* the in-place form used by ZeRO-1: the shard lives inside the buffer */
    for (size_t i = 0; i < n; i++) b[i] = NAN;
    memcpy(b + (size_t)c->rank * S, shard, mine * sizeof *b);
    comm_allgather_f32(c, b + (size_t)c->rank * S, b, n);
    check(memcmp(a, b, n * sizeof *a) == 0, "in-place all-gather = all-reduce", n, 0);

    free(x), free(in), free(sum), free(a), free(b), free(shard);
}

static void check_metrics_and_broadcast(const Comm *c) {
    enum { M = 5 };
    double got[M], want[M] = {0};
    for (int r = 0; r < c->world; r++)
        for (int j = 0; j < M; j++) want[j] += 1.0 / (3.0 + r + 7 * j) + r * 1e6;
    for (int j = 0; j < M; j++) got[j] = 1.0 / (3.0 + c->rank + 7 * j) + c->rank * 1e6;
    comm_allreduce_sum_f64(c, got, M);
    for (int j = 0; j < M; j++) check(memcmp(&got[j], &want[j], sizeof got[j]) == 0,
                                      "metrics sum in rank order", M, (size_t)j);

    int root = c->world - 1;
    unsigned char bytes[1000], want_bytes[1000];
    uint64_t s = 77 + (uint64_t)root, t = 77 + (uint64_t)c->rank;
    for (size_t i = 0; i < sizeof bytes; i++) {
        want_bytes[i] = (unsigned char)splitmix(&s);
        bytes[i] = (unsigned char)splitmix(&t);
    }
    comm_broadcast(c, bytes, sizeof bytes, root);
    check(memcmp(bytes, want_bytes, sizeof bytes) == 0, "broadcast from the last rank", 1000, 0);
    comm_barrier(c);
}

/* the work queue: over all ranks every task runs exactly once, rank 0 learns every unit done
 * and how many tasks each rank ran, and the workers' done callback is never called */
typedef struct {
    double *ran; /* (n) times this rank ran task k */
    long units;  /* what done() received */
    int calls;   /* done() calls */
} QueueCheck;

static long queue_task(void *ctx, size_t k) {
    ((QueueCheck *)ctx)->ran[k] += 1;
    return (long)k + 1;
}

static void queue_done(void *ctx, long units) {
    QueueCheck *q = ctx;
    q->units += units;
    q->calls++;
}

static void check_work_queue(const Comm *c, size_t n) {
    QueueCheck q = {calloc(n + 1, sizeof(double)), 0, 0};
    long *tasks = calloc((size_t)c->world, sizeof *tasks);
    check(comm_work_queue(c, n, queue_task, queue_done, &q, tasks) == 0, "work queue rc", n, 0);
    long mine = 0;
    for (size_t k = 0; k < n; k++) mine += q.ran[k] > 0;
    comm_allreduce_sum_f64(c, q.ran, n);
    for (size_t k = 0; k < n; k++) check(q.ran[k] == 1.0, "work queue: each task once", n, k);
    if (c->rank == 0) {
        long total = 0;
        for (int r = 0; r < c->world; r++) total += tasks[r];
        check(total == (long)n && tasks[0] == mine, "work queue: tasks per rank", n, 0);
        check(q.units == (long)(n * (n + 1) / 2), "work queue: units reported", n, 0);
    } else {
        check(q.calls == 0, "work queue: no done() on a worker", n, 0);
    }
    comm_barrier(c);
    free(q.ran);
    free(tasks);
}

#ifdef MMRM_NCCL
#define CUDA_OK(call)                                                                   \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) MMRM_FATAL("%s: %s", #call, cudaGetErrorString(e_));     \
    } while (0)

/* NCCL sums in its own order: |got - exact| <= (W - 1) * eps * sum |x_r| per element */
static void check_near(const float *got, const double *sum, const double *abs_sum, size_t n,
                       int world, double scale, const char *what) {
    for (size_t i = 0; i < n; i++) {
        double tol = 2.0 * world * 6e-8 * abs_sum[i] * scale;
        check(fabs((double)got[i] - sum[i] * scale) <= tol, what, n, i);
    }
}

static void check_nccl(Comm *c) {
    comm_nccl_init(c);
    check(c->kind == COMM_NCCL && c->device == c->local_rank, "NCCL kind and device", 0, 0);
    int W = c->world;
    size_t n = 100003, S = comm_shard_size(n, W), P = comm_padded_size(n, W);
    float *x = calloc(P, sizeof *x), *in = calloc(P, sizeof *in), *got = calloc(P, sizeof *got);
    float *ref = calloc(P, sizeof *ref);
    double *sum = calloc(n, sizeof *sum), *abs_sum = calloc(n, sizeof *abs_sum);
    for (int r = 0; r < W; r++) {
        fill_input(x, n, r);
        for (size_t i = 0; i < n; i++) sum[i] += x[i], abs_sum[i] += fabs((double)x[i]);
    }
    fill_input(in, n, c->rank);
    float *d, *dshard;
    CUDA_OK(cudaMalloc((void **)&d, P * sizeof *d));
    CUDA_OK(cudaMalloc((void **)&dshard, S * sizeof *dshard));

    CUDA_OK(cudaMemcpy(d, in, P * sizeof *d, cudaMemcpyHostToDevice));
    comm_allreduce_sum_f32_device(c, d, n, NULL);
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(got, d, n * sizeof *got, cudaMemcpyDeviceToHost));
    check_near(got, sum, abs_sum, n, W, 1.0, "device all-reduce sum");
    memcpy(ref, got, n * sizeof *ref);
    comm_broadcast(c, ref, n * sizeof *ref, 0);
    check(memcmp(ref, got, n * sizeof *got) == 0, "device sum identical on every rank", n, 0);

    CUDA_OK(cudaMemcpy(d, in, P * sizeof *d, cudaMemcpyHostToDevice));
    comm_allreduce_mean_f32_device(c, d, n, NULL);
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(got, d, n * sizeof *got, cudaMemcpyDeviceToHost));
    check_near(got, sum, abs_sum, n, W, 1.0 / W, "device all-reduce mean");

    CUDA_OK(cudaMemcpy(d, in, P * sizeof *d, cudaMemcpyHostToDevice));
    comm_reduce_scatter_sum_f32_device(c, d, dshard, n, NULL);
    CUDA_OK(cudaDeviceSynchronize());
    float *shard = calloc(S + 1, sizeof *shard);
    CUDA_OK(cudaMemcpy(shard, dshard, S * sizeof *shard, cudaMemcpyDeviceToHost));
    size_t mine = comm_shard_count(n, W, c->rank);
    check_near(shard, sum + (size_t)c->rank * S, abs_sum + (size_t)c->rank * S, mine, W, 1.0,
               "device reduce-scatter shard");
    comm_allgather_f32(c, shard, ref, n); /* the host all-gather of the same shards */
    comm_allgather_f32_device(c, dshard, d, n, NULL);
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(got, d, n * sizeof *got, cudaMemcpyDeviceToHost));
    check(memcmp(ref, got, n * sizeof *got) == 0, "device all-gather = host all-gather", n, 0);

    unsigned char bytes[1000], want_bytes[1000];
    uint64_t s = 99 + (uint64_t)(W - 1), t = 99 + (uint64_t)c->rank;
    for (size_t i = 0; i < sizeof bytes; i++) {
        want_bytes[i] = (unsigned char)splitmix(&s);
        bytes[i] = (unsigned char)splitmix(&t);
    }
    CUDA_OK(cudaMemcpy(d, bytes, sizeof bytes, cudaMemcpyHostToDevice));
    comm_broadcast_device(c, d, sizeof bytes, W - 1, NULL);
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(bytes, d, sizeof bytes, cudaMemcpyDeviceToHost));
    check(memcmp(bytes, want_bytes, sizeof bytes) == 0, "device broadcast from the last rank",
          sizeof bytes, 0);

    CUDA_OK(cudaFree(d));
    CUDA_OK(cudaFree(dshard));
    free(x), free(in), free(got), free(ref), free(sum), free(abs_sum), free(shard);
}
#endif

int main(int argc, char **argv) {
    comm_init(&g_comm, &argc, &argv);
    const Comm *c = &g_comm;
    const char *mode = argc > 1 ? argv[1] : "check";
    if (!strcmp(mode, "fail-abort") || !strcmp(mode, "fail-fatal")) {
        if (c->rank == 1) {
            if (mode[5] == 'a') comm_abort(c, 3, "injected failure through comm_abort");
            MMRM_FATAL("injected failure through MMRM_FATAL");
        }
        float v[4] = {1, 2, 3, 4};
        if (mode[5] == 'a') comm_barrier(c);
        else comm_allreduce_sum_f32(c, v, 4);
        fprintf(stderr, "rank %d: a collective finished without rank 1\n", c->rank);
        return 1;
    }
#ifdef MMRM_NCCL
    if (!strcmp(mode, "nccl")) {
        check_nccl(&g_comm);
        printf("rank %d/%d (%s, GPU %d): %d checks, %d failed\n", c->rank, c->world,
               comm_kind_name(c->kind), c->device, g_checks, g_failed);
        comm_finalize(&g_comm);
        return g_failed ? 1 : 0;
    }
#endif
    if (strcmp(mode, "check")) {
        fprintf(stderr, "usage: comm_mpi_check [check | fail-abort | fail-fatal | nccl]\n");
        return 2;
    }
    check(c->kind == (c->world > 1 ? COMM_MPI : COMM_SINGLE), "kind", 0, 0);
    /* one node: node-local ranks are the global ones */
    check(c->local_world == c->world && c->local_rank == c->rank, "node-local rank", 0, 0);
    /* sizes: empty, smaller than the world, ragged last shards, and more than one round of
     * the 4M-float scratch */
    const size_t sizes[] = {0, 1, 2, 7, 1000, 100003, ((size_t)4 << 20) + 12345};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) check_case(c, sizes[k]);
    check_metrics_and_broadcast(c);
    const size_t queues[] = {0, 1, 2, 37};
    for (size_t k = 0; k < sizeof queues / sizeof *queues; k++) check_work_queue(c, queues[k]);
    printf("rank %d/%d (%s): %d checks, %d failed\n", c->rank, c->world, comm_kind_name(c->kind),
           g_checks, g_failed);
    comm_finalize(&g_comm);
    return g_failed ? 1 : 0;
}
