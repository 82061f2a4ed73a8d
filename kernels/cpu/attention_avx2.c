/* attention_avx2.c - the attention kernels (simd_attention.h) at 8 floats per vector,
 * compiled with target attributes and only called where __builtin_cpu_supports says so
 * (attention.c). Elsewhere a stub that is never chosen. */
#include "kernels/cpu/simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ATTN_KERNEL cpu_attn_avx2
#define TGT __attribute__((target("avx2,fma")))
#define AK_MADD(acc, a, b) _mm256_fmadd_ps(a, b, acc)
#define VW 8
#include "kernels/cpu/simd_attention.h"
#else
const AttnKernel cpu_attn_avx2 = {0, 0, 0, 0};
#endif
