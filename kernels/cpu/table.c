/* table.c - kernels_cpu: the CPU op table, generated from kernels/op_list.h (the optional
 * ops stay NULL; the CPU-first ones are filled). */
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

const KernelOps kernels_cpu = {
    .name = "cpu",
#define CPU_KERNEL_ENTRY(name, params) .name = cpu_##name,
    KERNEL_OPS(CPU_KERNEL_ENTRY)
    KERNEL_OPS_CPU_FIRST(CPU_KERNEL_ENTRY)
#undef CPU_KERNEL_ENTRY
};
