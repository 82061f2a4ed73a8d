/* simd.h - run-time choice of the CPU's instruction set for the GEMM behind matmul
 * (kernels/cpu/matmul.c) and its per-ISA block kernels (kernels/cpu/matmul_<isa>.c, all
 * generated from kernels/cpu/simd_gemm.h).
 *
 * The default build targets plain x86-64 (or whatever the compiler targets); the AVX2+FMA
 * and AVX-512F kernels are compiled with function target attributes and picked at run time
 * by __builtin_cpu_supports, so no NATIVE=1 build is needed. MMRM_CPU_ISA=generic|avx2|
 * avx512 forces one (an error when the CPU lacks it); unset, empty or "auto" picks the best.
 *
 * Rounding: generic multiplies then adds (no contraction under -std=c11), avx2 and avx512
 * use fused multiply-adds. Every kernel sums each output element in increasing k starting
 * from its previous value, so avx2 and avx512 give the same bits, generic gives the textbook
 * float loop's bits, and no kernel's result depends on the thread count. */
#ifndef MMRM_KERNELS_CPU_SIMD_H
#define MMRM_KERNELS_CPU_SIMD_H

#include <stddef.h>

typedef enum { CPU_ISA_GENERIC, CPU_ISA_AVX2, CPU_ISA_AVX512, CPU_ISA_COUNT } CpuIsa;

/* "generic", "avx2", "avx512" */
const char *cpu_isa_name(CpuIsa isa);
/* whether this CPU (and OS) runs isa's kernels */
int cpu_isa_supported(CpuIsa isa);
/* the kernel set used now: MMRM_CPU_ISA if set (fatal when unknown or unsupported), else
 * the best supported one; read on every call, so tests may switch with setenv */
CpuIsa cpu_isa_active(void);
/* whether isa's kernels use fused multiply-adds */
int cpu_isa_fma(CpuIsa isa);

/* The GEMM c += a . b in two steps per k-block of kc (<= kc_max) rows of b:
 *   pack_b(bp, b, brs, bcs, k0, kc, nc, t) copies column tile t (nr columns from t * nr;
 *     b[k, j] = b[k*brs + j*bcs], nc columns in all, zero past them) of rows k0 .. k0+kc into
 *     bp (kc * nr floats); the tiles of a k-block lie one after another.
 *   block(c, ldc, a, ars, acs, bp, mc, nc, kc): c (mc, nc), row stride ldc, += a (mc, kc)
 *     (a[i, k] = a[i*ars + k*acs]) . the packed tiles at bp (c's first column is bp's).
 * Every element is summed in increasing k from its previous value, whatever the blocking,
 * so any split of c and of k gives the same bits. Single-threaded: the caller splits c;
 * mc_max and nc_max are the preferred task sizes (nc_max a multiple of nr). */
typedef struct {
    void (*pack_b)(float *bp, const float *b, size_t brs, size_t bcs, int k0, int kc, int nc,
                   int t);
    void (*block)(float *c, size_t ldc, const float *a, size_t ars, size_t acs, const float *bp,
                  int mc, int nc, int kc);
    int mr, nr, kc_max;
    int mc_max, nc_max;
} GemmKernel;

extern const GemmKernel cpu_gemm_generic, cpu_gemm_avx2, cpu_gemm_avx512;

/* The attention kernels of one ISA (kernels/cpu/simd_attention.h documents them; the
 * OpenMP split is kernels/cpu/attention.c's). */
/* kr: NULL (row t sees keys [0, causal ? t+1 : L)) or, per row t of the piece, three ints
 * kr[3t], kr[3t+1], kr[3t+2] = a, b, c: row t sees keys [0, a) and [b, c) (a <= b <= c;
 * the segment mask of kernels/op_list.h, cut to one doc by attention.c). */
/* query rows per tile of the forward (simd_attention.h): its scratch has 2 * AK_TILE score rows */
enum { AK_TILE = 4 };
/* ts: NULL (query row i is token i of the piece) or the piece's tokens of the query rows
 * (row i is token ts[i], increasing: a subset of the rows, attention.c's rows ops). */
typedef struct {
    void (*forward_rows)(float *o, float *lse, const float *q, size_t qs, const float *k,
                         const float *v, size_t ks, const int *kr, const int *ts, int L,
                         int t0, int t1, int HD, int causal, float scale, float *scratch);
    void (*backward_head)(float *dq, float *dk, float *dv, const float *dout, const float *out,
                          const float *lse, const float *q, size_t qs, const float *k,
                          const float *v, size_t ks, const int *kr, const int *ts, int n,
                          int L, int T, int group, int HD, int causal, float scale,
                          float *scratch);
    /* y[i] = expf(x[i]) within 2 ulp on [-87.3, 88] (simd_attention.h) */
    void (*exp_array)(float *y, const float *x, size_t n);
    int vw; /* floats per vector: scratch rows are rounded up to it */
} AttnKernel;

extern const AttnKernel cpu_attn_generic, cpu_attn_avx2, cpu_attn_avx512;
/* the attention kernels of isa (generic where isa's are not compiled in) */
const AttnKernel *cpu_attn_kernel(CpuIsa isa);

#endif
