/* matmul_avx2.c - the AVX2+FMA GEMM block kernel (simd_gemm.h): a 6 x 16 register tile
 * (12 ymm accumulators, 2 for b, 1 broadcast of a), fused multiply-adds. Compiled with
 * target attributes, so it is in every x86-64 build and only called where
 * __builtin_cpu_supports says so (matmul.c). Elsewhere a stub that is never chosen. */
#include "kernels/cpu/simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GEMM_KERNEL cpu_gemm_avx2
#define TGT __attribute__((target("avx2,fma")))
#define VW 8
#define MR 6
#define NV 2
typedef __m256 vec;
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VBCAST(x) _mm256_set1_ps(x)
#define VMADD(acc, a, b) _mm256_fmadd_ps(a, b, acc)
#include "kernels/cpu/simd_gemm.h"
#else
const GemmKernel cpu_gemm_avx2 = {0, 0, 0};
#endif
