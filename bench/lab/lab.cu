// lab.cu - the kernel lab's harness (bench/lab/lab.h, README.md here): option parsing, the
// family table, random inputs, the check against the CPU reference, CUDA-event timing and the
// result lines, and the lab's only calls through the KernelOps tables (lab_op_*).
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/lab/lab.h"
#include "kernels/cuda/cuda_common.cuh"
extern "C" {
#include "runtime/rng.h"
}

// ---------------------------------------------------------------------------------------
// the calls through the op table (kernels/kernels.h): one line per op, nowhere else

extern "C" void lab_op_matmul_forward(const KernelOps *ops, float *out, const float *inp,
                                      const float *weight, const float *bias, int N, int C,
                                      int OC) {
    ops->matmul_forward(out, inp, weight, nullptr, bias, N, C, OC, KP_FP32);
}

extern "C" void lab_op_layernorm_forward(const KernelOps *ops, float *out, float *mean,
                                         float *rstd, const float *inp, const float *weight,
                                         const float *bias, int N, int C, float eps) {
    ops->layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps);
}

extern "C" void lab_op_rmsnorm_forward(const KernelOps *ops, float *out, float *rstd,
                                       const float *inp, const float *weight, int N, int C,
                                       float eps) {
    ops->rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
}

extern "C" void lab_op_attention_forward(const KernelOps *ops, float *out, float *lse,
                                         const float *q, const float *k, const float *v,
                                         const int *lengths, int B, int T, int NH, int KV,
                                         int HD, int causal, int precision) {
    ops->attention_forward(out, lse, q, k, v, lengths, NULL, B, T, NH, KV, HD, causal, precision);
}

extern "C" void lab_op_attention_backward(const KernelOps *ops, float *dq, float *dk, float *dv,
                                          const float *dout, const float *out, const float *lse,
                                          const float *q, const float *k, const float *v,
                                          const int *lengths, int B, int T, int NH, int KV,
                                          int HD, int causal, int precision) {
    ops->attention_backward(dq, dk, dv, dout, out, lse, q, k, v, lengths, NULL, B, T, NH, KV, HD,
                            causal, precision);
}

extern "C" void lab_op_gelu_forward(const KernelOps *ops, float *out, const float *inp, size_t n) {
    ops->gelu_forward(out, inp, n);
}

extern "C" void lab_op_swiglu_forward(const KernelOps *ops, float *out, const float *gate,
                                      const float *up, size_t n) {
    ops->swiglu_forward(out, gate, up, n);
}

extern "C" void lab_op_add_forward(const KernelOps *ops, float *out, const float *a,
                                   const float *b, size_t n) {
    ops->add_forward(out, a, b, n);
}

extern "C" void lab_op_shortcut_loss(const KernelOps *ops, float *loss, float *w, float *lm,
                                     float *lb, float *dmc, float *dmr, float *dbc, float *dbr,
                                     const float *mc, const float *mr, const float *bc,
                                     const float *br, int P, float eps, float dloss) {
    ops->shortcut_loss(loss, w, lm, lb, dmc, dmr, dbc, dbr, mc, mr, bc, br, P, eps, dloss);
}

extern "C" void lab_op_adamw_update(const KernelOps *ops, float *params, const float *grads,
                                    float *m, float *v, size_t n, float lr, float beta1,
                                    float beta2, float eps, float weight_decay, int t,
                                    float grad_scale) {
    ops->adamw_update(params, nullptr, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, t, grad_scale);
}

// ---------------------------------------------------------------------------------------
// inputs, checks, timing

extern "C" float *lab_rand(size_t n, uint64_t seed, float lo, float hi) {
    float *x = (float *)malloc((n ? n : 1) * sizeof *x);
    if (!x) abort();
    Rng r = rng_make(seed, 7);
    rng_fill_uniform(&r, x, n, lo, hi);
    return x;
}

extern "C" float *lab_upload(const float *h, size_t n) {
    float *d = (float *)cuda_malloc((n ? n : 1) * sizeof *d);
    cuda_copy_h2d(d, h, n * sizeof *d);
    return d;
}

extern "C" int *lab_upload_i(const int *h, size_t n) {
    int *d = (int *)cuda_malloc((n ? n : 1) * sizeof *d);
    cuda_copy_h2d(d, h, n * sizeof *d);
    return d;
}

extern "C" void lab_fill_nan(float *d, size_t n) {
    CUDA_CHECK(cudaMemsetAsync(d, 0xff, n * sizeof *d, cuda_stream()));
}

extern "C" float *lab_nan(size_t n) {
    float *d = (float *)cuda_malloc((n ? n : 1) * sizeof *d);
    lab_fill_nan(d, n);
    return d;
}

extern "C" void lab_reset(float *d, const float *h, size_t n) { cuda_copy_h2d(d, h, n * sizeof *d); }

extern "C" int lab_want(Lab *L, int v, int nv) {
    if (v >= nv || (L->variant >= 0 && L->variant != v)) return 0;
    L->ran++;
    return 1;
}

extern "C" int lab_check(Lab *L, const char *what, const float *ref, const float *d, size_t n,
                         double tol) {
    float *got = (float *)malloc((n ? n : 1) * sizeof *got);
    if (!got) abort();
    cuda_copy_d2h(got, d, n * sizeof *got);
    double num = 0, den = 0, maxabs = 0;
    size_t worst = 0, nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        double diff = (double)got[i] - ref[i];
        if (!isfinite(got[i]) && isfinite(ref[i])) nonfinite++;
        num += diff * diff;
        den += (double)ref[i] * ref[i];
        if (!(fabs(diff) <= maxabs)) maxabs = fabs(diff), worst = i; // NaN counts as worst
    }
    double rel = sqrt(num) / fmax(sqrt(den), 1e-30);
    int ok = n > 0 && den > 0 && !nonfinite && isfinite(rel) && rel <= tol;
    printf("  %s %-56s n=%-9zu rel=%.2e (tol %.0e)%s%s\n", ok ? "ok  " : "FAIL", what, n, rel, tol,
           nonfinite ? " NON-FINITE" : "", den > 0 ? "" : " REFERENCE ALL ZERO");
    if (!ok && n)
        printf("       worst at %zu: cpu %.8g gpu %.8g (%zu non-finite)\n", worst, ref[worst],
               got[worst], nonfinite);
    free(got);
    L->checks++;
    L->failed += !ok;
    return ok;
}

extern "C" const char *lab_name(const char *fmt, ...) {
    static char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return name;
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

extern "C" float lab_time_ms(void (*body)(void *), void *ctx) {
    cudaStream_t s = cuda_stream();
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    body(ctx); // warm-up (plan caches, smem opt-ins, clocks)
    float ms[LAB_REPS];
    for (int i = 0; i < LAB_REPS; i++) {
        CUDA_CHECK(cudaEventRecord(a, s));
        body(ctx);
        CUDA_CHECK(cudaEventRecord(b, s));
        CUDA_CHECK(cudaEventSynchronize(b));
        CUDA_CHECK(cudaEventElapsedTime(&ms[i], a, b));
    }
    CUDA_LAUNCH_CHECK();
    CUDA_CHECK(cudaEventDestroy(a));
    CUDA_CHECK(cudaEventDestroy(b));
    qsort(ms, LAB_REPS, sizeof *ms, cmp_f);
    return ms[LAB_REPS / 2];
}

extern "C" float lab_copy_ms(double traffic) {
    size_t bytes = ((size_t)(traffic / 2) + 3) & ~(size_t)3;
    void *src = cuda_malloc(bytes), *dst = cuda_malloc(bytes);
    cuda_memset0(src, bytes);
    struct Cp {
        void *dst, *src;
        size_t bytes;
    } c = {dst, src, bytes};
    float ms = lab_time([&] {
        CUDA_CHECK(cudaMemcpyAsync(c.dst, c.src, c.bytes, cudaMemcpyDeviceToDevice, cuda_stream()));
    });
    cuda_free(src);
    cuda_free(dst);
    return ms;
}

extern "C" void lab_row(int v, const char *name, float ms, double flop, double bytes, float ref_ms) {
    if (!(ms > 0)) // the emulator's events measure nothing
        printf("  time v%d %-44s %10.4f ms (no rate: not a GPU time)\n", v, name, ms);
    else if (flop > 0)
        printf("  time v%d %-44s %10.4f ms %9.2f TFLOP/s %7.1f%% of ref\n", v, name, ms,
               flop / ms / 1e9, 100.0 * ref_ms / ms);
    else
        printf("  time v%d %-44s %10.4f ms %9.1f GB/s    %7.1f%% of ref\n", v, name, ms,
               bytes / ms / 1e6, 100.0 * ref_ms / ms);
}

// ---------------------------------------------------------------------------------------
// the entry

namespace {

struct Family {
    const char *name;
    void (*fn)(Lab *);
    const char *what;
};

const Family kFamilies[] = {
    {"matmul", lab_matmul, "matmul forward (nn.Linear), fp32"},
    {"norm", lab_norm, "layernorm and rmsnorm forward"},
    {"attention", lab_attention, "attention forward (GQA, padding, causal)"},
    {"elementwise", lab_elementwise, "gelu, swiglu and add forward"},
    {"loss", lab_loss, "shortcut loss (fused forward+backward) and the AdamW update"},
};

void usage(void) {
    fprintf(stderr, "usage: bench_cuda [--only FAMILY [--variant N] [--check]]\n"
                    "  without --only: the GEMM/norm/attention/model tables (and NCCL)\n"
                    "  --only FAMILY: the kernel lab (bench/lab/README.md); families:\n");
    for (const Family &f : kFamilies) fprintf(stderr, "    %-12s %s\n", f.name, f.what);
    fprintf(stderr, "  --variant N: only variant N (0 is production, through kernels_cuda)\n"
                    "  --check: correctness on small odd shapes only, no timing (the emulator)\n");
}

} // namespace

extern "C" int lab_main(int argc, char **argv) {
    const char *only = nullptr;
    int variant = -1, check = 0, any = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--only") || !strcmp(argv[i], "--variant") || !strcmp(argv[i], "--check"))
            any = 1;
    }
    if (!any) return -1; // not a lab run: bench_cuda's usual sections
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--variant") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 99) return usage(), 2;
            variant = (int)v;
        } else if (!strcmp(argv[i], "--check")) check = 1;
        else return usage(), 2;
    }
    const Family *fam = nullptr;
    for (const Family &f : kFamilies)
        if (only && !strcmp(only, f.name)) fam = &f;
    if (!fam) {
        if (only) fprintf(stderr, "bench_cuda: --only %s: not a lab family\n", only);
        usage();
        return 2;
    }
    cuda_backend_init();
    Lab L = {variant, check, 0, 0, 0};
    printf("kernel lab: %s: %s%s\n", fam->name, fam->what,
           check ? " (--check: small odd shapes, correctness only)" : "");
    printf("  checks: rel = ||gpu - cpu||_2 / ||cpu||_2 against kernels_cpu on seeded random "
           "inputs; times: median of %d after a warm-up\n", (int)LAB_REPS);
    fflush(stdout);
    fam->fn(&L);
    cuda_synchronize();
    if (!L.ran) {
        fprintf(stderr, "bench_cuda: %s has no variant %d\n", fam->name, variant);
        return 2;
    }
    printf("lab %s: %d passed, %d failed\n", fam->name, L.checks - L.failed, L.failed);
    return L.failed ? 1 : 0;
}
