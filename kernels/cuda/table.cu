// table.cu - kernels_cuda: the CUDA op table (same semantics as kernels_cpu), generated
// from kernels/op_list.h, optional ops included; the CPU-first ops (if any) are NULL.
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/kernels.h"

extern "C" const KernelOps kernels_cuda = {
    .name = "cuda",
#define CUDA_KERNEL_ENTRY(name, params) .name = cuda_##name,
    KERNEL_OPS(CUDA_KERNEL_ENTRY)
    KERNEL_OPS_OPTIONAL(CUDA_KERNEL_ENTRY)
#undef CUDA_KERNEL_ENTRY
// not on the GPU yet: callers test the pointer and take a path without them
#define CUDA_KERNEL_NONE(name, params) .name = NULL,
    KERNEL_OPS_CPU_FIRST(CUDA_KERNEL_NONE)
#undef CUDA_KERNEL_NONE
};
