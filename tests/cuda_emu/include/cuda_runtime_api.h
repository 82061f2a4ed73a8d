/* cuda_runtime_api.h - stands in for the CUDA runtime header in the emulated build
 * (tests/cuda_emu, README.md there). C++ gets everything from cuda_emu.h; C code (runtime/comm.c
 * with MMRM_NCCL) gets the few declarations it uses, with the same ABI as cuda_emu.h's. */
#ifndef MMRM_CUDA_EMU_RUNTIME_API_H
#define MMRM_CUDA_EMU_RUNTIME_API_H
#ifdef __cplusplus
#include "../cuda_emu.h"
#else
typedef enum cudaError { cudaSuccess = 0 } cudaError_t; /* other values exist; C only compares */
typedef struct CUstream_st *cudaStream_t;
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
const char *cudaGetErrorString(cudaError_t error);
#endif
#endif
