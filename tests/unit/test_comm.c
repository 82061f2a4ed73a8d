/* test_comm.c - the communicator's single-process back end (runtime/comm.c) and the ZeRO-1
 * shard layout. Without a launcher, comm_init gives rank 0 of world 1 with no MPI; every
 * collective then leaves its buffer bitwise unchanged and a one-rank reduce-scatter /
 * all-gather moves the whole buffer, and the work queue runs its tasks in order. The layout is checked for many (n, world) pairs
 * against ownership counted element by element. Multi-process behaviour is checked by
 * tests/integration/comm_mpi.sh. */
#include <stdlib.h>
#include <string.h>

#include "runtime/comm.h"
#include "tests/harness.h"

static const char *const LAUNCH_VARS[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
                                          "SLURM_STEP_NUM_TASKS"};
enum { NVARS = sizeof LAUNCH_VARS / sizeof *LAUNCH_VARS };

/* comm_init as a plain process, even if the test binary itself runs under a launcher */
static void init_single(Comm *c, char *saved[NVARS]) {
    for (int k = 0; k < NVARS; k++) {
        const char *v = getenv(LAUNCH_VARS[k]);
        saved[k] = v ? strdup(v) : NULL;
        unsetenv(LAUNCH_VARS[k]);
    }
    comm_init(c, NULL, NULL);
}

static void restore_env(char *saved[NVARS]) {
    for (int k = 0; k < NVARS; k++)
        if (saved[k]) {
            setenv(LAUNCH_VARS[k], saved[k], 1);
            free(saved[k]);
        }
}

TEST(test_comm_without_launcher_is_rank_zero_of_one_without_mpi) {
    char *saved[NVARS];
    Comm c;
    memset(&c, 0x5A, sizeof c);
    init_single(&c, saved);
    CHECK(c.rank == 0 && c.world == 1, "rank %d world %d", c.rank, c.world);
    CHECK(c.local_rank == 0 && c.local_world == 1, "local %d/%d", c.local_rank, c.local_world);
    CHECK(c.kind == COMM_SINGLE && !c.mpi && !c.nccl && c.device == -1,
          "kind %s mpi %d device %d", comm_kind_name(c.kind), c.mpi, c.device);
    comm_finalize(&c);
    restore_env(saved);
}

TEST(test_comm_single_process_collectives_leave_buffers_unchanged) {
    char *saved[NVARS];
    Comm c;
    init_single(&c, saved);
    enum { N = 1001 };
    TRng r = trng(41);
    float *x = tmalloc(N), *y = tmalloc(N);
    fill_normal(&r, x, N, 3.0f);
    memcpy(y, x, sizeof(float) * N);
    comm_allreduce_sum_f32(&c, y, N);
    EXPECT_SAME("sum all-reduce", y, x, N);
    comm_allreduce_mean_f32(&c, y, N);
    EXPECT_SAME("mean all-reduce", y, x, N);

    double d[7], d0[7];
    for (int i = 0; i < 7; i++) d[i] = d0[i] = trng_uniform(&r) * 1e6 - 3.5e5;
    comm_allreduce_sum_f64(&c, d, 7);
    CHECK(memcmp(d, d0, sizeof d) == 0, "f64 all-reduce changed the metrics");

    comm_broadcast(&c, y, sizeof(float) * N, 0);
    EXPECT_SAME("broadcast", y, x, N);
    comm_barrier(&c);
    free(x);
    free(y);
    comm_finalize(&c);
    restore_env(saved);
}

TEST(test_comm_single_process_shard_is_the_whole_buffer) {
    char *saved[NVARS];
    Comm c;
    init_single(&c, saved);
    enum { N = 517 };
    CHECK(comm_shard_size(N, 1) == N && comm_shard_count(N, 1, 0) == N, "one shard of %d", N);
    TRng r = trng(42);
    float *x = tmalloc(N), *shard = tmalloc(N), *y = tmalloc(N);
    fill_uniform(&r, x, N, -2.0f, 2.0f);
    comm_reduce_scatter_sum_f32(&c, x, N, shard);
    EXPECT_SAME("reduce-scatter shard", shard, x, N);
    fill_uniform(&r, y, N, 5.0f, 6.0f);
    comm_allgather_f32(&c, shard, y, N);
    EXPECT_SAME("all-gather", y, x, N);
    comm_allgather_f32(&c, y, y, N); /* in place: the shard is the buffer itself */
    EXPECT_SAME("in-place all-gather", y, x, N);
    free(x);
    free(shard);
    free(y);
    comm_finalize(&c);
    restore_env(saved);
}

TEST(test_comm_shards_are_equal_padded_slices_covering_each_element_once) {
    TRng r = trng(43);
    enum { MAXN = 300 };
    size_t owned[64];
    for (int t = 0; t < 400; t++) {
        int world = 1 + (int)(trng_uniform(&r) * 64);
        size_t n = t < 20 ? (size_t)t : (size_t)(trng_uniform(&r) * MAXN);
        size_t S = comm_shard_size(n, world);
        /* the smallest S with world*S >= n */
        int ok = S * (size_t)world >= n && (S == 0 || (S - 1) * (size_t)world < n);
        CHECK(ok, "n %zu world %d: shard size %zu", n, world, S);
        CHECK(comm_padded_size(n, world) == S * (size_t)world, "n %zu world %d: padded %zu", n,
              world, comm_padded_size(n, world));
        memset(owned, 0, sizeof owned);
        for (size_t i = 0; i < n; i++) /* shard r holds [r*S, (r+1)*S) */
            for (int q = 0; q < world; q++)
                if (i >= (size_t)q * S && i < (size_t)(q + 1) * S) owned[q]++;
        size_t total = 0;
        for (int q = 0; q < world; q++) {
            total += comm_shard_count(n, world, q);
            if (!CHECK(comm_shard_count(n, world, q) == owned[q],
                       "n %zu world %d rank %d: count %zu, owns %zu", n, world, q,
                       comm_shard_count(n, world, q), owned[q]))
                break;
        }
        CHECK(total == n, "n %zu world %d: counts sum to %zu", n, world, total);
    }
}

TEST(test_comm_kind_names_are_distinct) {
    CHECK(strcmp(comm_kind_name(COMM_SINGLE), comm_kind_name(COMM_MPI)) &&
              strcmp(comm_kind_name(COMM_MPI), comm_kind_name(COMM_NCCL)) &&
              strcmp(comm_kind_name(COMM_SINGLE), comm_kind_name(COMM_NCCL)),
          "kind names %s %s %s", comm_kind_name(COMM_SINGLE), comm_kind_name(COMM_MPI),
          comm_kind_name(COMM_NCCL));
}

typedef struct {
    size_t order[8];
    int ran, stop_at;
    long units;
} QueueLog;

static long queue_task(void *ctx, size_t k) {
    QueueLog *q = ctx;
    if (q->ran == q->stop_at) return -1;
    q->order[q->ran++] = k;
    return 10 + (long)k;
}

static void queue_done(void *ctx, long units) { ((QueueLog *)ctx)->units += units; }

TEST(test_comm_single_process_work_queue_runs_tasks_in_order_and_stops_on_error) {
    char *saved[NVARS];
    Comm c;
    init_single(&c, saved);
    QueueLog q = {.stop_at = -1};
    long tasks = -1;
    CHECK(comm_work_queue(&c, 5, queue_task, queue_done, &q, &tasks) == 0, "queue failed");
    CHECK(q.ran == 5 && tasks == 5 && q.units == 10 + 11 + 12 + 13 + 14,
          "ran %d tasks (reported %ld), units %ld", q.ran, tasks, q.units);
    for (int i = 0; i < q.ran; i++) CHECK(q.order[i] == (size_t)i, "task %d was %zu", i, q.order[i]);
    QueueLog bad = {.stop_at = 2};
    CHECK(comm_work_queue(&c, 5, queue_task, NULL, &bad, NULL) == -1 && bad.ran == 2,
          "a failing task did not stop the queue (ran %d)", bad.ran);
    comm_finalize(&c);
    restore_env(saved);
}
