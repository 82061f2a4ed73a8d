/* bench_matmul.c - times cpu_matmul_forward and cpu_matmul_backward at shapes of the
 * model's linear layers (Qwen2-0.5B attention and MLP, a ViT MLP, a connector-like
 * down-projection, and the linear layers of configs/model/small.json and tiny.json at 1024
 * tokens) and a naive triple loop at one shape for the ratio. Prints GFLOP/s
 * (2*N*C*OC per forward, 4*N*C*OC per backward with dinp and dweight) and never asserts:
 * it is a measurement, not a test. OMP_NUM_THREADS sets the thread count as usual.
 *
 *   bench_matmul [--help] [N,C,OC ...]
 * With shapes on the command line, times those instead (e.g. a training step's token count:
 * `bench_matmul 4352,256,768`) and also the two backward products alone (dinp, dweight). */
#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { WARMUP = 1, REPS = 3 };

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *alloc_random(size_t n, uint64_t seed) {
    float *x = malloc(n * sizeof(float));
    if (!x) {
        fprintf(stderr, "bench_matmul: out of memory (%zu floats)\n", n);
        exit(1);
    }
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 40) / (double)(1ull << 24) - 0.5);
    }
    return x;
}

/* out = inp . weight^T + bias the textbook way, one row of out per thread: the baseline
 * the blocked kernel is measured against. */
static void naive_forward(float *out, const float *inp, const float *weight, const float *bias,
                          int N, int C, int OC) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            float s = bias[o];
            for (int c = 0; c < C; c++) s += inp[(size_t)n * C + c] * weight[(size_t)o * C + c];
            out[(size_t)n * OC + o] = s;
        }
}

typedef struct {
    int N, C, OC;
    const char *what;
} Shape;

typedef struct {
    float *inp, *weight, *bias, *out, *dout, *dinp, *dweight, *dbias;
} Buffers;

static Buffers buffers_new(Shape s) {
    size_t nc = (size_t)s.N * s.C, oc = (size_t)s.OC * s.C, no = (size_t)s.N * s.OC;
    return (Buffers){
        .inp = alloc_random(nc, 1), .weight = alloc_random(oc, 2), .bias = alloc_random(s.OC, 3),
        .out = alloc_random(no, 4), .dout = alloc_random(no, 5), .dinp = alloc_random(nc, 6),
        .dweight = alloc_random(oc, 7), .dbias = alloc_random(s.OC, 8),
    };
}

static void buffers_free(Buffers *b) {
    free(b->inp); free(b->weight); free(b->bias); free(b->out);
    free(b->dout); free(b->dinp); free(b->dweight); free(b->dbias);
}

/* best and mean seconds of REPS timed calls after WARMUP untimed ones */
typedef struct { double best, mean; } Timing;

static Timing time_forward(const Buffers *b, Shape s, int naive) {
    Timing t = {INFINITY, 0};
    for (int r = 0; r < WARMUP + REPS; r++) {
        double t0 = now_s();
        if (naive) naive_forward(b->out, b->inp, b->weight, b->bias, s.N, s.C, s.OC);
        else kernels_cpu.matmul_forward(b->out, b->inp, b->weight, NULL, b->bias, s.N, s.C, s.OC, KP_FP32);
        double dt = now_s() - t0;
        if (r < WARMUP) continue;
        t.best = fmin(t.best, dt);
        t.mean += dt / REPS;
    }
    return t;
}

/* which = 0: dinp, dweight and dbias; 1: dinp only; 2: dweight only */
static Timing time_backward(const Buffers *b, Shape s, int which) {
    Timing t = {INFINITY, 0};
    for (int r = 0; r < WARMUP + REPS; r++) {
        double t0 = now_s();
        kernels_cpu.matmul_backward(which == 2 ? NULL : b->dinp, which == 1 ? NULL : b->dweight,
                                    which ? NULL : b->dbias, b->dout, b->inp, b->weight, NULL,
                                    s.N, s.C, s.OC, KP_FP32);
        double dt = now_s() - t0;
        if (r < WARMUP) continue;
        t.best = fmin(t.best, dt);
        t.mean += dt / REPS;
    }
    return t;
}

static void report(const char *op, Shape s, double flops, Timing t) {
    printf("%-9s N=%-5d C=%-5d OC=%-5d %-24s %7.2f GFLOP/s best  %7.2f mean  (%.1f ms best)\n", op,
           s.N, s.C, s.OC, s.what, flops / t.best * 1e-9, flops / t.mean * 1e-9, t.best * 1e3);
}

int main(int argc, char **argv) {
    static const Shape builtin[] = {
        {512, 896, 896, "(Qwen2-0.5B q/o proj)"},
        {512, 896, 4864, "(Qwen2-0.5B gate/up)"},
        {1024, 1024, 4096, "(ViT-300M MLP fc1)"},
        {256, 4096, 1024, "(connector-like down)"},
        {1024, 256, 768, "(small.json MLP up)"},
        {1024, 768, 256, "(small.json MLP down)"},
        {1024, 256, 256, "(small.json o proj)"},
        {1024, 64, 128, "(tiny.json MLP up)"},
    };
    const Shape *shapes = builtin;
    size_t nshapes = sizeof builtin / sizeof builtin[0];
    Shape *given = NULL;
    if (argc > 1) {
        if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
            printf("usage: bench_matmul [N,C,OC ...]\n"
                   "Times the CPU matmul forward and backward (GFLOP/s) at built-in shapes, or at\n"
                   "the given ones (then also dinp and dweight alone). OMP_NUM_THREADS and\n"
                   "MMRM_CPU_ISA apply as usual.\n");
            return 0;
        }
        given = calloc((size_t)argc, sizeof *given);
        if (!given) { fprintf(stderr, "bench_matmul: out of memory\n"); return 1; }
        for (int i = 1; i < argc; i++) {
            Shape *g = &given[i - 1];
            if (sscanf(argv[i], "%d,%d,%d", &g->N, &g->C, &g->OC) != 3 || g->N < 1 || g->C < 1 ||
                g->OC < 1) {
                fprintf(stderr, "bench_matmul: shape '%s': expected N,C,OC (positive integers)\n",
                        argv[i]);
                return 2;
            }
            g->what = "(command line)";
        }
        shapes = given;
        nshapes = (size_t)argc - 1;
    }
#ifdef __AVX512F__
    const char *build = "AVX-512";
#elif defined(__AVX__)
    const char *build = "AVX";
#else
    const char *build = "SSE2";
#endif
    printf("bench_matmul: %d OpenMP threads, %s build, %s kernel (MMRM_CPU_ISA), %d warm-up + "
           "%d timed calls per row\n",
           omp_get_max_threads(), build, cpu_isa_name(cpu_isa_active()), WARMUP, REPS);
    for (size_t i = 0; i < nshapes; i++) {
        Shape s = shapes[i];
        Buffers b = buffers_new(s);
        double mnk = (double)s.N * s.C * s.OC;
        report("forward", s, 2 * mnk, time_forward(&b, s, 0));
        report("backward", s, 4 * mnk, time_backward(&b, s, 0));
        if (given) {
            report("dinp", s, 2 * mnk, time_backward(&b, s, 1));
            report("dweight", s, 2 * mnk, time_backward(&b, s, 2));
        }
        if (i == 0 && !given) {
            Timing fast = time_forward(&b, s, 0);
            float *ref = malloc((size_t)s.N * s.OC * sizeof(float));
            if (!ref) { fprintf(stderr, "bench_matmul: out of memory\n"); return 1; }
            for (size_t k = 0; k < (size_t)s.N * s.OC; k++) ref[k] = b.out[k];
            Timing slow = time_forward(&b, s, 1);
            double maxdiff = 0;
            for (size_t k = 0; k < (size_t)s.N * s.OC; k++)
                maxdiff = fmax(maxdiff, fabs((double)ref[k] - b.out[k]));
            report("naive fwd", s, 2 * mnk, slow);
            printf("          blocked / naive forward: %.1fx faster (max |difference| %.3g)\n",
                   slow.best / fast.best, maxdiff);
            free(ref);
        }
        buffers_free(&b);
    }
    free(given);
    return 0;
}
