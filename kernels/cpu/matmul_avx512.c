/* matmul_avx512.c - the AVX-512F GEMM block kernel (simd_gemm.h): a 12 x 32 register tile
 * (24 zmm accumulators, 2 for b, 1 broadcast of a), fused multiply-adds. Compiled with
 * target attributes and only called where __builtin_cpu_supports("avx512f") says so
 * (matmul.c). Elsewhere a stub that is never chosen. */
#include "kernels/cpu/simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GEMM_KERNEL cpu_gemm_avx512
#define TGT __attribute__((target("avx512f")))
#define VW 16
#define MR 12
#define NV 2
typedef __m512 vec;
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VBCAST(x) _mm512_set1_ps(x)
#define VMADD(acc, a, b) _mm512_fmadd_ps(a, b, acc)
#include "kernels/cpu/simd_gemm.h"
#else
const GemmKernel cpu_gemm_avx512 = {0, 0, 0};
#endif
