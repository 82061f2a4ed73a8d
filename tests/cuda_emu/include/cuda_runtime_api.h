/* cuda_runtime_api.h - stands in for the CUDA runtime header in the emulated build
 * (tests/cuda_emu, README.md there). C++ gets everything from cuda_emu.h; C code (runtime/comm.c
 * with MMRM_NCCL, bench/bench_cuda.c) gets the few declarations it uses, with the same ABI as
 * cuda_emu.h's. */
#ifndef MMRM_CUDA_EMU_RUNTIME_API_H
#define MMRM_CUDA_EMU_RUNTIME_API_H
#ifdef __cplusplus
#include "../cuda_emu.h"
#else
#include <stddef.h>
typedef enum cudaError { cudaSuccess = 0 } cudaError_t; /* other values exist; C only compares */
typedef struct CUstream_st *cudaStream_t;
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
const char *cudaGetErrorString(cudaError_t error);
typedef struct CUevent_st *cudaEvent_t;
typedef enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
} cudaMemcpyKind;
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
#endif
#endif
