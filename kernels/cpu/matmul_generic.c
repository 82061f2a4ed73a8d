/* matmul_generic.c - the portable GEMM block kernel (simd_gemm.h) in GCC vector extensions
 * at the build's baseline ISA (SSE2 on x86-64; wider under NATIVE=1). Multiply then add:
 * no FMA contraction under -std=c11, so every output equals the textbook float loop. */
#include <string.h>

#define GEMM_KERNEL cpu_gemm_generic
#define TGT
#if defined(__AVX512F__)
#define VW 16
#define MR 12
#elif defined(__AVX__)
#define VW 8
#define MR 6
#else
#define VW 4
#define MR 6
#endif
#define NV 2
typedef float vec __attribute__((vector_size(VW * sizeof(float))));
/* memcpy keeps unaligned rows of c legal; the compiler turns it into one vector move */
static inline vec gk_load(const float *p) { vec v; memcpy(&v, p, sizeof v); return v; }
static inline void gk_store(float *p, vec v) { memcpy(p, &v, sizeof v); }
#define VLOAD(p) gk_load(p)
#define VSTORE(p, v) gk_store(p, v)
#define VBCAST(x) ((vec){0} + (x))
#define VMADD(acc, a, b) ((acc) + (a) * (b))
#include "kernels/cpu/simd_gemm.h"
