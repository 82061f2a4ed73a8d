/* kernels.h - the op table: every compute op of mmrm, forward and backward.
 *
 * Kernels are leaves: plain functions over pointers and sizes, with no knowledge of
 * tensors, tapes or networks. The runtime picks a table by device (kernels_for in
 * runtime/autograd.h) and calls through it. The ops, their signatures, shapes and
 * conventions are listed once, in kernels/op_list.h; this header turns that list into
 * the KernelOps struct.
 */
#ifndef MMRM_KERNELS_H
#define MMRM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/op_list.h"

#ifdef __cplusplus
extern "C" {
#endif

/* the `precision` argument of the GEMMs */
typedef enum {
    KP_FP32 = 0,              /* exact fp32 (no TF32) */
    KP_BF16 = 1,              /* bf16 operands in memory, fp32 accumulation and output */
    KP_BF16_FP32_OPERANDS = 2 /* fp32 operands rounded to bf16 inside the GEMM (cuBLASLt's
                               * FAST_16BF; for benchmarks and comparisons) */
} KernelPrecision;

/* which attention implementation a GPU runs at bf16 precision (attention_impl): auto is
 * cuDNN's fused attention where it covers the call and the build has cuDNN, else mmrm's
 * tensor-core kernels; fp32 always runs mmrm's exact kernels; the CPU has one. */
typedef enum { ATTN_IMPL_AUTO = 0, ATTN_IMPL_MMRM = 1, ATTN_IMPL_CUDNN = 2 } AttentionImpl;

typedef struct KernelOps {
    const char *name; /* "cpu", "cuda" */
#define KERNEL_OP_POINTER(name, params) void(*name) params;
    KERNEL_OPS(KERNEL_OP_POINTER)
    KERNEL_OPS_OPTIONAL(KERNEL_OP_POINTER)
    KERNEL_OPS_CPU_FIRST(KERNEL_OP_POINTER)
#undef KERNEL_OP_POINTER
} KernelOps;

extern const KernelOps kernels_cpu;
#ifdef MMRM_CUDA
extern const KernelOps kernels_cuda; /* kernels/cuda/, built by `make cuda` */
#endif

#ifdef __cplusplus
}
#endif

#endif
