/* cublasLt.h - stands in for the CUDA header when the kernels/cuda .cu files are compiled
 * for the CPU emulator (tests/cuda_emu, README.md there); cuda_emu.h declares everything. */
#include "../cuda_emu.h"
