/* cuda_common.cuh - what every CUDA kernel file shares: check macros that name the file,
 * line, call and the library's error string; the backend context (one compute stream,
 * one cuBLASLt handle with its workspace, grow-only scratch).
 *
 * All kernels of kernels_cuda are launched on cuda_stream() and return without waiting,
 * except where kernels.h says a result lands in host memory. */
#ifndef MMRM_CUDA_COMMON_CUH
#define MMRM_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/scalar.h"

#define CUDA_CHECK(call)                                                                  \
    do {                                                                                  \
        cudaError_t cuda_rc_ = (call);                                                    \
        if (cuda_rc_ != cudaSuccess)                                                      \
            cuda_fail(#call, cudaGetErrorString(cuda_rc_), __FILE__, __LINE__);           \
    } while (0)

#define CUBLAS_CHECK(call)                                                                \
    do {                                                                                  \
        cublasStatus_t cublas_rc_ = (call);                                               \
        if (cublas_rc_ != CUBLAS_STATUS_SUCCESS)                                          \
            cuda_fail(#call, cublas_status_string(cublas_rc_), __FILE__, __LINE__);       \
    } while (0)

/* after every launch: a bad configuration is reported at the launch, not later */
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

const char *cublas_status_string(cublasStatus_t s);

cudaStream_t cuda_stream(void);
cublasLtHandle_t cuda_lt(void);
void *cuda_lt_workspace(size_t *bytes);
/* grow-only device scratch, one per slot (0..CUDA_SCRATCH_SLOTS-1): valid until the next
 * call for the same slot; allocation happens only when a larger size is first asked for
 * (so not in a steady-state step loop). Stream-ordered: callers use it on cuda_stream(). */
#define CUDA_SCRATCH_SLOTS 8
void *cuda_scratch(int slot, size_t bytes);
/* graph.cu's side of a capture (cuda_graph_begin), for context.cu: while capturing, a
 * host-to-device copy goes through a staging buffer filled after the capture
 * (cuda_graph_stage_upload returns it, holding src's bytes by the time the graph runs), a
 * free waits until the graph has run, and what a graph cannot replay marks the capture
 * unusable with a reason (cuda_graph_fail) */
int cuda_graph_capturing(void);
void *cuda_graph_stage_upload(const void *src, size_t bytes);
void cuda_graph_defer_free(void *p);
void cuda_graph_fail(const char *why);
/* device memory was freed (a scratch slot or the arena grew): the execs kept per key may
 * hold its address, so cuda_graph_end drops them all before the next launch (each key is
 * instantiated again): within a key an exec's arguments then never change */
void cuda_graph_memory_freed(void);
/* slots: 0 reductions' partial sums (any family; matmul.cu's BGRADB bias gradient), 1
 * attention's D rows, 2-4 matmul.cu's bf16
 * copies of the GEMM operands (weight, input, output gradient), 5 attention_fa2.cu's and
 * attention_cudnn.cu's bf16 copies of q, k, v (and dout; cuDNN's outputs and workspace), 6
 * matmul.cu's fp32 output of a bf16-output GEMM that cuBLASLt cannot write in bf16, 7 the
 * embedding backward's row sort (its own slot: sharing attention's made that slot grow
 * between the steps of one cuda_graphs shape key) */

/* the sum of v over a block of N threads (N a power of two; sh: N doubles of shared memory)
 * by a fixed tree, valid in every thread: the order depends on N only, so it is
 * deterministic (the losses, sum_squares, the lab) */
template <unsigned N>
__device__ double cuda_block_sum(double v, double *sh) {
    static_assert(N && (N & (N - 1)) == 0, "cuda_block_sum: N must be a power of two");
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = N / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    return sh[0];
}

static inline unsigned cuda_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 1048576 ? 1048576 : (b ? b : 1)); /* grid-stride loops cover the rest */
}

/* rows per chunk of an ordered column sum over (N, C) rows (norm.cu's dweight/dbias,
 * elementwise.cu's dscale): enough chunks that nchunks * C threads fill the GPU (about
 * 256k), at least 32 rows each so a chunk is worth a thread; a function of N and C only */
static inline int cuda_colsum_rows(int N, int C) {
    long max_chunks = 262144L / C > 1 ? 262144L / C : 1;
    long rows = ((long)N + max_chunks - 1) / max_chunks;
    return (int)(rows > 32 ? rows : 32);
}

#endif
