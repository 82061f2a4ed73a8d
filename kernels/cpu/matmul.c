/* matmul.c - nn.Linear on the CPU: out = inp . weight^T + bias, and its backward.
 *
 * The forward and both gradient products run through one GEMM, c (M, Nc) += a (M, K) .
 * b (K, Nc), whose operands are given by row and column strides so that a transposed
 * operand (weight^T in the forward, dout^T for dweight) needs no copy of the whole matrix.
 * c is cut into blocks of the chosen kernel's size (kernels/cpu/simd.h), one OpenMP task
 * each; a block kernel (kernels/cpu/simd_gemm.h: packed panels, a register-tiled
 * micro-kernel) owns its block and sums every element in increasing k from its previous
 * value. The partition depends only on the kernel, never on the thread count or the
 * schedule, so results are bitwise independent of the thread count.
 *
 * The kernel is chosen at run time (simd.h): AVX-512F, else AVX2+FMA, else the portable
 * one; MMRM_CPU_ISA forces one. FMA, deliberately: the contract is independence of the
 * thread count, not equality with a multiply-then-add loop. The FMA kernels round once per
 * product-add (each output equals the loop `s = bias; for c: s = fmaf(inp, w, s)` bit for
 * bit, the same bits on AVX2 and AVX-512); the portable kernel multiplies then adds (the
 * textbook float loop's bits). The tests check each kernel against its own float loop
 * bitwise and all of them against double references.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd.h"
#include "runtime/error.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

static const char *const ISA_NAMES[CPU_ISA_COUNT] = {"generic", "avx2", "avx512"};

const char *cpu_isa_name(CpuIsa isa) {
    return (unsigned)isa < CPU_ISA_COUNT ? ISA_NAMES[isa] : "?";
}

int cpu_isa_supported(CpuIsa isa) {
    switch (isa) {
    case CPU_ISA_GENERIC: return 1;
#if defined(__x86_64__) || defined(__i386__)
    case CPU_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CPU_ISA_AVX512: return __builtin_cpu_supports("avx512f");
#endif
    default: return 0;
    }
}

int cpu_isa_fma(CpuIsa isa) { return isa == CPU_ISA_AVX2 || isa == CPU_ISA_AVX512; }

CpuIsa cpu_isa_active(void) {
    const char *e = getenv("MMRM_CPU_ISA");
    if (e && *e && strcmp(e, "auto")) {
        for (int i = 0; i < CPU_ISA_COUNT; i++)
            if (!strcmp(e, ISA_NAMES[i])) {
                if (!cpu_isa_supported((CpuIsa)i))
                    MMRM_FATAL("MMRM_CPU_ISA=%s: this CPU does not support it "
                               "(use generic, auto, or unset it)", e);
                return (CpuIsa)i;
            }
        MMRM_FATAL("MMRM_CPU_ISA=%s: unknown; expected generic, avx2, avx512 or auto", e);
    }
    /* __builtin_cpu_supports reads flags libgcc set at start-up: cheap enough per call */
    for (int i = CPU_ISA_COUNT - 1; i > 0; i--)
        if (cpu_isa_supported((CpuIsa)i)) return (CpuIsa)i;
    return CPU_ISA_GENERIC;
}

static const GemmKernel *kernel_for(CpuIsa isa) {
    switch (isa) {
    case CPU_ISA_AVX512: return &cpu_gemm_avx512;
    case CPU_ISA_AVX2: return &cpu_gemm_avx2;
    default: return &cpu_gemm_generic;
    }
}

static inline int imin(int a, int b) { return a < b ? a : b; }

static inline int round_up(int x, int m) { return (x + m - 1) / m * m; }

/* c (M, Nc), row stride ldc, += a . b with a[i, k] = a[i*ars + k*acs] (M, K) and
 * b[k, j] = b[k*brs + j*bcs] (K, Nc). With init, c is first set to bias (Nc), or to 0
 * when bias is NULL. Per k-block of b: its column tiles are packed once (shared by all
 * threads), then the blocks of c are updated, one task each. The task sizes shrink when
 * there are fewer than two per thread; that changes no bits (see simd.h). */
static void gemm(float *c, size_t ldc, const float *a, size_t ars, size_t acs, const float *b,
                 size_t brs, size_t bcs, int M, int Nc, int K, int init, const float *bias) {
    const GemmKernel *kern = kernel_for(cpu_isa_active());
    int MC = kern->mc_max, NC = kern->nc_max, KC = kern->kc_max, NR = kern->nr;
    int nthreads = 1;
#ifdef _OPENMP
    nthreads = omp_in_parallel() ? 1 : omp_get_max_threads();
#endif
    MC = imin(MC, round_up(M, kern->mr));
    NC = imin(NC, round_up(Nc, NR));
    for (int split = 0; nthreads > 1; split++) {
        int tasks = ((M + MC - 1) / MC) * ((Nc + NC - 1) / NC);
        if (tasks >= 2 * nthreads) break;
        if (split % 2 == 0 && MC >= 8 * kern->mr) MC = round_up(MC / 2, kern->mr);
        else if (NC >= 4 * NR) NC = round_up(NC / 2, NR);
        else if (MC >= 8 * kern->mr) MC = round_up(MC / 2, kern->mr);
        else break;
    }
    int mblocks = (M + MC - 1) / MC, nblocks = (Nc + NC - 1) / NC, ntasks = mblocks * nblocks;
    int ntiles = (Nc + NR - 1) / NR, kc0 = imin(KC, K);
    float *bp = malloc(((size_t)kc0 * ntiles * NR + 1) * sizeof(float));
    if (!bp) MMRM_FATAL("matmul: out of memory packing a %d x %d operand", kc0, Nc);
#pragma omp parallel if (ntasks > 1 && nthreads > 1)
    for (int k0 = 0; k0 == 0 || k0 < K; k0 += KC) {
        int kc = imin(KC, K - k0);
#pragma omp for schedule(static)
        for (int t = 0; t < ntiles; t++)
            kern->pack_b(bp + (size_t)t * kc * NR, b, brs, bcs, k0, kc, Nc, t);
#pragma omp for schedule(dynamic)
        for (int task = 0; task < ntasks; task++) {
            int i0 = task / nblocks * MC, j0 = task % nblocks * NC;
            int mc = imin(MC, M - i0), nc = imin(NC, Nc - j0);
            float *cb = c + (size_t)i0 * ldc + j0;
            if (init && k0 == 0)
                for (int i = 0; i < mc; i++)
                    for (int j = 0; j < nc; j++) cb[i * ldc + j] = bias ? bias[j0 + j] : 0.0f;
            kern->block(cb, ldc, a + (size_t)i0 * ars + (size_t)k0 * acs, ars, acs,
                        bp + (size_t)j0 * kc, mc, nc, kc);
        }
    }
    free(bp);
}

/* fp32 at every precision: weight16 and precision are the GPU's (op_list.h) */
void cpu_matmul_forward(float *out, const float *inp, const float *weight,
                        const uint16_t *weight16, const float *bias, int N, int C, int OC,
                        int precision) {
    (void)weight16, (void)precision;
    /* out (N, OC) = bias + inp (N, C) . weight^T (C, OC) */
    gemm(out, OC, inp, C, 1, weight, 1, C, N, OC, C, 1, bias);
}

void cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, const uint16_t *weight16, int N,
                         int C, int OC, int precision) {
    (void)weight16, (void)precision;
    if (dinp) /* dinp (N, C) += dout (N, OC) . weight (OC, C) */
        gemm(dinp, C, dout, OC, 1, weight, C, 1, N, C, OC, 0, NULL);
    if (dweight) /* dweight (OC, C) += dout^T (OC, N) . inp (N, C) */
        gemm(dweight, C, dout, 1, OC, inp, C, 1, OC, C, N, 0, NULL);
    if (dbias) {
        /* threads own 64-column ranges (false sharing only at range edges); every column
         * adds its rows in increasing n */
#pragma omp parallel for schedule(static) if (OC > 64)
        for (int o0 = 0; o0 < OC; o0 += 64) {
            int o1 = imin(o0 + 64, OC);
            for (int n = 0; n < N; n++) {
                const float *row = dout + (size_t)n * OC;
                for (int o = o0; o < o1; o++) dbias[o] += row[o];
            }
        }
    }
}
