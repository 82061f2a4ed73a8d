/* cpu.h - the CPU implementations behind kernels_cpu: cpu_NAME for every op of
 * kernels/op_list.h (which documents shapes and semantics; each family lives in
 * kernels/cpu/<family>.c). Only kernels/ and runtime/ include this header. */
#ifndef MMRM_KERNELS_CPU_H
#define MMRM_KERNELS_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/op_list.h"

#define CPU_KERNEL_DECL(name, params) void cpu_##name params;
KERNEL_OPS(CPU_KERNEL_DECL)
KERNEL_OPS_CPU_FIRST(CPU_KERNEL_DECL)
#undef CPU_KERNEL_DECL

#endif
