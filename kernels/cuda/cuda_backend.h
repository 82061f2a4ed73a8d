/* cuda_backend.h - the CUDA backend's context seen from C: device choice, streams, device
 * memory and transfers. Only runtime/ (tensor.c, gradsync.c, comm.c), the GPU tests and
 * bench_cuda include it; product code reaches the device through runtime/tensor.h. Only
 * meaningful in a build with MMRM_CUDA (`make cuda`). */
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

/* GEMMs run so far by path: [0] bf16 operands in memory, [1] fp32 operands rounded by
 * cuBLASLt (CUBLAS_COMPUTE_32F_FAST_16BF), [2] plain fp32 (also a fallback of KP_BF16).
 * A diagnostic for the parity tests and benchmarks. */
void cuda_matmul_paths(long counts[3]);
/* cuBLASLt plan cache lookups so far: hits, and misses (each a heuristic query) */
void cuda_matmul_plan_stats(long *hits, long *misses);
/* GEMMs since the start that wrote their bf16 output directly (a bf16 D in cuBLASLt) */
long cuda_matmul_out16(void);
/* bias gradients since the start: by the dweight GEMM's BGRADB epilogue, by the column-sum
 * kernels (no algorithm with the epilogue) */
void cuda_matmul_bgrad_stats(long *epilogue, long *colsum);

/* The implementation of attention_forward/backward at bf16 precision (an AttentionImpl of
 * kernels/kernels.h; ATTN_IMPL_AUTO by default): mmrm's tensor-core kernels
 * (attention_fa2.cu, head dims 64 and 128; other head dims keep the fp32 kernels) or cuDNN's
 * fused flash attention (attention_cudnn.cu). A process-wide choice of library, like the
 * GEMMs' cuBLASLt: set once at start-up, before the first attention. */
void cuda_attention_set_impl(int impl);
/* 1 when this build links cuDNN (make cuda found it: MMRM_CUDNN) */
int cuda_cudnn_compiled(void);
/* "cuDNN 9.19.0 (compiled against 9.19.0)", or why there is none */
const char *cuda_cudnn_describe(void);

/* CUDA graphs (train key cuda_graphs, kernels/cuda/graph.cu). cuda_graph_begin starts
 * capturing the compute stream: until cuda_graph_end the kernels, device copies and memsets
 * queued there are recorded, not run; host-to-device copies are staged and issued after the
 * capture. cuda_graph_end returns NULL when the capture became a graph: the exec kept under
 * key was updated to it (or one instantiated), the staged copies queued and the exec
 * launched. Otherwise it returns why the capture cannot be replayed (a host read of device
 * memory, a host wait, a cuBLASLt heuristic query, ...) and nothing of it ran. */
void cuda_graph_begin(void);
const char *cuda_graph_end(uint64_t key);
/* execs instantiated, and launches of an exec updated to a new capture of its key */
void cuda_graph_counts(long *captured, long *replayed);

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
