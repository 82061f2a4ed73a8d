/* cuda_backend.h - the CUDA backend seen from C (runtime/, train/, infer/, tests).
 * Only meaningful in a build with MMRM_CUDA (`make cuda`). */
#ifndef MMRM_CUDA_BACKEND_H
#define MMRM_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define MMRM_NORETURN [[noreturn]]
extern "C" {
#else
#define MMRM_NORETURN _Noreturn
#endif

/* prints "mmrm: file:line: CALL failed: WHAT" (+ a hint for the usual causes) and exits */
MMRM_NORETURN void cuda_fail(const char *call, const char *what, const char *file, int line);

/* number of visible GPUs (0 when none or when the driver is missing; never fatal) */
int cuda_device_count(void);
/* Binds this process to GPU `ordinal` and creates the stream, the cuBLASLt handle and its
 * workspace. Idempotent; the first CUDA use calls it with the ordinal from
 * cuda_select_device (default 0). */
void cuda_backend_init(void);
void cuda_select_device(int ordinal);
int cuda_current_device(void);
/* "NVIDIA H200 (sm_90, 139.8 GiB)" */
const char *cuda_device_description(void);
/* the compute stream as a void * (a cudaStream_t), for C callers (NCCL) */
void *cuda_stream_handle(void);
void cuda_synchronize(void);
/* A second stream (highest priority) for collectives overlapped with compute. */
void *cuda_side_stream_handle(void);
/* the side stream waits for the work queued on the compute stream so far */
void cuda_side_wait_main(void);
/* the compute stream waits for the work queued on the side stream so far */
void cuda_main_wait_side(void);

/* precision of the GEMMs: 0 = fp32 (exact fp32 math, no TF32), 1 = bf16 (bf16 tensor-core
 * inputs, fp32 accumulation and storage) */
void cuda_set_precision(int bf16);
int cuda_get_precision(void);
/* GEMMs run so far by path: [0] bf16 operands in memory, [1] fp32 operands rounded by
 * cuBLASLt (CUBLAS_COMPUTE_32F_FAST_16BF), [2] plain fp32 (a fallback in bf16 mode) */
void cuda_matmul_paths(long counts[3]);
/* bf16 mode: 1 (default) bf16 operands in memory; 0 fp32 operands under FAST_16BF (what the
 * bf16 mode did before the weight copies; for benchmarks and comparisons) */
void cuda_set_bf16_operands(int on);

/* bf16 storage (bf16.cu). cuda_f32_to_bf16: device dst/src, round to nearest even.
 * A shadow is a bf16 copy of the fp32 buffer [base, base + n) (a ParamStore's parameters):
 * while it is registered, bf16-mode GEMMs read weights inside the buffer from it and
 * cuda_adamw_update keeps it current; other writers of the buffer call refresh. register
 * (re)converts the whole buffer and returns the copy; find returns the copy of [p, p + n) or
 * NULL when that range is not inside one registered buffer. */
void cuda_f32_to_bf16(uint16_t *dst, const float *src, size_t n);
uint16_t *cuda_bf16_shadow_register(const float *base, size_t n);
void cuda_bf16_shadow_unregister(const float *base);
void cuda_bf16_shadow_refresh(const float *base, size_t off, size_t n);
uint16_t *cuda_bf16_shadow_find(const float *p, size_t n);

/* device memory, stream-ordered with the kernels */
void *cuda_malloc(size_t bytes);
void cuda_free(void *p);
void cuda_memset0(void *p, size_t bytes);
void cuda_copy_d2d(void *dst, const void *src, size_t bytes); /* overlap allowed (memmove) */
void cuda_copy_h2d(void *dst, const void *src, size_t bytes);
void cuda_copy_d2h(void *dst, const void *src, size_t bytes); /* waits for the stream */
/* page-locked host memory for staging transfers */
void *cuda_host_alloc(size_t bytes);
void cuda_host_free(void *p);

#ifdef __cplusplus
}
#endif

#endif
