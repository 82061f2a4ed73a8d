/* attention_generic.c - the portable attention kernels (simd_attention.h), 4 floats per
 * vector (SSE2 on x86-64). */
#define ATTN_KERNEL cpu_attn_generic
#define TGT
#define VW 4
#define AK_MADD(acc, a, b) ((acc) + (a) * (b))
#include "kernels/cpu/simd_attention.h"
