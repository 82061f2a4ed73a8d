/* cuda_emu.h - the CUDA device language, runtime API subset and cuBLASLt subset that
 * the kernels/cuda .cu files use, for running those sources unmodified on the CPU (tests/cuda_emu,
 * README.md there). Force-included (g++ -include) when tests/cuda_emu/translate.pl's output
 * of a .cu file is compiled as C++; <cuda_runtime.h> and <cublasLt.h> resolve to the stubs in
 * tests/cuda_emu/include, which include this file.
 *
 * Execution model (cuda_emu.cpp): a launch runs its blocks one at a time; every thread of
 * the block is a fiber with its own stack. A fiber runs until it reaches __syncthreads or a
 * warp collective (__shfl*_sync, __ballot_sync, __syncwarp, ...), then the next fiber runs;
 * a barrier is released when every thread it names has arrived, and everything else
 * (divergent collectives, barriers with exited threads, masks naming lanes that do not
 * exist or do not take part) stops the program with a message naming the kernel, the block
 * and the thread. Threads that never wait run to completion one after another.
 * `__shared__` is `static`: the block's threads are fibers of one OS thread, so a function
 * static is exactly one copy per block (blocks run one at a time); initializers on
 * __shared__ variables are not CUDA and are not supported. EMU_ORDER=forward|reverse|random
 * picks the order in which ready threads (and blocks) run. */
#ifndef MMRM_CUDA_EMU_H
#define MMRM_CUDA_EMU_H

#ifndef __cplusplus
#error "cuda_emu.h is C++ (it stands in for nvcc's device language)"
#endif

#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

/* ---------------------------------------------------------------------------------------
 * execution-space qualifiers and attributes */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...) /* checked at the launch: translate.pl passes the bound */
#define __shared__ static
#define __align__(n) __attribute__((aligned(n))) /* as CUDA: anywhere in a declaration */
#define __CUDACC_EMU__ 1
/* (no __noinline__: libstdc++ and glibc spell __attribute__((__noinline__)) themselves) */

/* ---------------------------------------------------------------------------------------
 * built-in vector types */
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
        : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(8) uint2 { unsigned int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) uint4 { unsigned int x, y, z, w; };
struct alignas(16) double2 { double x, y; };
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return int2{x, y}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
static inline double2 make_double2(double x, double y) { return double2{x, y}; }

/* ---------------------------------------------------------------------------------------
 * the runtime API subset (cuda_emu.cpp) */
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorIllegalState = 401,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorCapturedEvent = 907,
    cudaErrorGraphExecUpdateFailure = 910,
} cudaError_t;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
/* CUDA graphs: stream capture, instantiation, update, launch (cuda_emu.cpp) */
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;
typedef struct CUgraphNode_st *cudaGraphNode_t;
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2,
};
enum cudaGraphExecUpdateResult {
    cudaGraphExecUpdateSuccess = 0,
    cudaGraphExecUpdateError = 1,
    cudaGraphExecUpdateErrorTopologyChanged = 2,
    cudaGraphExecUpdateErrorNodeTypeChanged = 3,
    cudaGraphExecUpdateErrorFunctionChanged = 4,
};
struct cudaGraphExecUpdateResultInfo {
    cudaGraphExecUpdateResult result;
    cudaGraphNode_t errorNode, errorFromNode;
};
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int major, minor;
    int multiProcessorCount;
    int maxThreadsPerMultiProcessor;
};

extern "C" {
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t error);
const char *cudaGetErrorName(cudaError_t error);
cudaError_t cudaMalloc(void **ptr, size_t bytes);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocHost(void **ptr, size_t bytes);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaMemset(void *ptr, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t stream);
cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags);
cudaError_t cudaStreamCreateWithPriority(cudaStream_t *stream, unsigned int flags, int priority);
cudaError_t cudaDeviceGetStreamPriorityRange(int *least, int *greatest);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags = 0);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t exec, cudaGraph_t graph, cudaGraphExecUpdateResultInfo *info);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t *nodes, size_t *count);
}

/* ---------------------------------------------------------------------------------------
 * cuBLASLt subset (cuda_emu.cpp: the exact column-major product, see cublasLtMatmul there) */
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
    CUBLAS_STATUS_LICENSE_ERROR = 16,
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;
typedef enum cudaDataType_t {
    CUDA_R_32F = 0,
    CUDA_R_64F = 1,
    CUDA_R_16F = 2,
    CUDA_R_16BF = 14,
} cudaDataType;
typedef enum {
    CUBLAS_COMPUTE_16F = 64,
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_COMPUTE_64F = 70,
    CUBLAS_COMPUTE_32F_FAST_16F = 74,
    CUBLAS_COMPUTE_32F_FAST_16BF = 75,
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
} cublasComputeType_t;
typedef enum {
    CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,
    CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1,
    CUBLASLT_MATMUL_DESC_POINTER_MODE = 2,
    CUBLASLT_MATMUL_DESC_TRANSA = 3,
    CUBLASLT_MATMUL_DESC_TRANSB = 4,
    CUBLASLT_MATMUL_DESC_TRANSC = 5,
    CUBLASLT_MATMUL_DESC_FILL_MODE = 6,
    CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
    CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,
} cublasLtMatmulDescAttributes_t;
typedef enum {
    CUBLASLT_EPILOGUE_DEFAULT = 1,
    CUBLASLT_EPILOGUE_RELU = 2,
    CUBLASLT_EPILOGUE_BIAS = 4,
    CUBLASLT_EPILOGUE_RELU_BIAS = 6,
    CUBLASLT_EPILOGUE_BGRADB = 512,
} cublasLtEpilogue_t;
typedef enum {
    CUBLASLT_MATMUL_PREF_SEARCH_MODE = 0,
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
} cublasLtMatmulPreferenceAttributes_t;
typedef struct cublasLtContext *cublasLtHandle_t;
typedef struct cublasLtMatmulDescOpaque_t *cublasLtMatmulDesc_t;
typedef struct cublasLtMatrixLayoutOpaque_t *cublasLtMatrixLayout_t;
typedef struct cublasLtMatmulPreferenceOpaque_t *cublasLtMatmulPreference_t;
typedef struct {
    uint64_t data[8];
} cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

extern "C" {
cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle);
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t compute,
                                        cudaDataType_t scale_type);
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc);
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t bytes);
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout);
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref);
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t bytes);
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int *returned);
cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                              const void *alpha, const void *A, cublasLtMatrixLayout_t Adesc,
                              const void *B, cublasLtMatrixLayout_t Bdesc, const void *beta,
                              const void *C, cublasLtMatrixLayout_t Cdesc, void *D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo,
                              void *workspace, size_t workspace_bytes, cudaStream_t stream);
}

/* ---------------------------------------------------------------------------------------
 * the emulator's interface (cuda_emu.cpp) */
namespace cuda_emu {

/* the running thread's coordinates; switched with the fibers */
extern uint3 g_threadIdx, g_blockIdx;
extern dim3 g_blockDim, g_gridDim;

enum WarpOp { W_SHFL, W_SHFL_UP, W_SHFL_DOWN, W_SHFL_XOR, W_BALLOT, W_ANY, W_ALL, W_SYNCWARP };
enum BarOp { B_SYNC, B_COUNT, B_AND, B_OR };

/* out of line on purpose: a call the compiler cannot see into, so every global (threadIdx,
 * shared memory) is re-read after it */
unsigned long long warp_op(WarpOp op, unsigned mask, unsigned long long bits, int arg, int width);
int block_barrier(BarOp op, int pred);
void *dynamic_smem(void);
/* a number identifying the running block among all blocks run so far (kernels/cuda/mma.cuh
 * ties its deferred cp.async copies to their block) */
unsigned long long block_serial(void);
[[noreturn]] void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct LaunchConfig {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    unsigned max_threads; /* __launch_bounds__, 0: none */
};
inline LaunchConfig cfg(dim3 grid, dim3 block, size_t smem = 0, cudaStream_t stream = nullptr) {
    return LaunchConfig{grid, block, smem, stream, 0};
}
inline LaunchConfig bounds(LaunchConfig c, unsigned max_threads, unsigned = 0, unsigned = 0) {
    c.max_threads = max_threads;
    return c;
}

typedef void (*ThreadBody)(void *ctx);
/* runs (or refuses, recording the launch error for cudaGetLastError) one launch; ptrs are
 * the kernel's pointer arguments, each checked to be NULL or device memory */
void launch(const LaunchConfig &c, const char *name, const void *kernel, ThreadBody body,
            void *ctx, const void *const *ptrs, int nptrs);
cudaError_t func_set_attribute(const void *kernel, cudaFuncAttribute attr, int value);

template <class T> inline void collect_pointer(const void **ptrs, int &n, const T &x) {
    if constexpr (std::is_pointer_v<T>) ptrs[n++] = (const void *)x;
}

/* stream capture: true while work queued on s is recorded into a graph instead of run */
bool capturing(cudaStream_t s);
/* a launch on a capturing stream: checked like a launch, then recorded with its converted
 * arguments (ctx, kept alive by the graph) and their bytes (args: what cudaGraphExecUpdate
 * compares, and what EMU_GRAPH_STRICT=1 requires to be unchanged) */
void record_launch(const LaunchConfig &c, const char *name, const void *kernel, ThreadBody body,
                   std::shared_ptr<void> ctx, const void *const *ptrs, int nptrs,
                   const unsigned char *args, size_t args_bytes);
template <class T> inline void append_bytes(unsigned char *&out, const T &x) {
    static_assert(std::is_trivially_copyable_v<T>, "cuda_emu: a kernel argument that is not trivially copyable");
    std::memcpy(out, &x, sizeof x);
    out += sizeof x;
}

/* kernel<<<cfg>>>(args) after translate.pl: the arguments are converted to the kernel's
 * parameter types once, at the launch (as CUDA does), and every thread gets its own copy */
template <class... P, class... A>
void launch_kernel(const LaunchConfig &c, const char *name, void (*kernel)(P...), A &&...args) {
    static_assert(sizeof...(P) == sizeof...(A), "cuda_emu: kernel launched with the wrong number of arguments");
    struct Ctx {
        void (*k)(P...);
        std::tuple<std::decay_t<P>...> a;
    } ctx{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
    const void *ptrs[sizeof...(P) + 1];
    int n = 0;
    std::apply([&](const auto &...x) { (collect_pointer(ptrs, n, x), ...); }, ctx.a);
    ThreadBody body = [](void *p) {
        Ctx *x = static_cast<Ctx *>(p);
        std::apply(x->k, x->a);
    };
    if (capturing(c.stream)) {
        unsigned char bytes[(0 + ... + sizeof(std::decay_t<P>)) + 1], *end = bytes;
        std::apply([&](const auto &...x) { (append_bytes(end, x), ...); }, ctx.a);
        std::shared_ptr<void> own(new Ctx(ctx), [](void *p) { delete static_cast<Ctx *>(p); });
        record_launch(c, name, reinterpret_cast<const void *>(kernel), body, own, ptrs, n, bytes,
                      (size_t)(end - bytes));
        return;
    }
    launch(c, name, reinterpret_cast<const void *>(kernel), body, &ctx, ptrs, n);
}

} // namespace cuda_emu

template <class T> inline cudaError_t cudaFuncSetAttribute(T *entry, cudaFuncAttribute attr, int value) {
    return cuda_emu::func_set_attribute(reinterpret_cast<const void *>(entry), attr, value);
}

/* ---------------------------------------------------------------------------------------
 * built-in variables: read-only views of the running thread's coordinates */
#define threadIdx (static_cast<const uint3 &>(::cuda_emu::g_threadIdx))
#define blockIdx (static_cast<const uint3 &>(::cuda_emu::g_blockIdx))
#define blockDim (static_cast<const dim3 &>(::cuda_emu::g_blockDim))
#define gridDim (static_cast<const dim3 &>(::cuda_emu::g_gridDim))
constexpr int warpSize = 32;

/* ---------------------------------------------------------------------------------------
 * synchronisation and warp collectives */
static inline void __syncthreads(void) { (void)cuda_emu::block_barrier(cuda_emu::B_SYNC, 0); }
static inline int __syncthreads_count(int pred) { return cuda_emu::block_barrier(cuda_emu::B_COUNT, pred); }
static inline int __syncthreads_and(int pred) { return cuda_emu::block_barrier(cuda_emu::B_AND, pred); }
static inline int __syncthreads_or(int pred) { return cuda_emu::block_barrier(cuda_emu::B_OR, pred); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)cuda_emu::warp_op(cuda_emu::W_SYNCWARP, mask, 0, 0, 32);
}
static inline unsigned __ballot_sync(unsigned mask, int pred) {
    return (unsigned)cuda_emu::warp_op(cuda_emu::W_BALLOT, mask, pred != 0, 0, 32);
}
static inline int __any_sync(unsigned mask, int pred) {
    return (int)cuda_emu::warp_op(cuda_emu::W_ANY, mask, pred != 0, 0, 32);
}
static inline int __all_sync(unsigned mask, int pred) {
    return (int)cuda_emu::warp_op(cuda_emu::W_ALL, mask, pred != 0, 0, 32);
}
static inline void __threadfence(void) {}       /* one OS thread: sequentially consistent */
static inline void __threadfence_block(void) {}

/* the overload set of CUDA's shuffles (int, unsigned, long, long long and their unsigned,
 * float, double), so that argument conversions pick the same type as nvcc */
#define CUDA_EMU_SHFL(T)                                                                     \
    static inline T cuda_emu_shfl_(cuda_emu::WarpOp op, unsigned mask, T v, int arg, int w) { \
        unsigned long long bits = 0;                                                         \
        std::memcpy(&bits, &v, sizeof v);                                                    \
        bits = cuda_emu::warp_op(op, mask, bits, arg, w);                                    \
        T r;                                                                                 \
        std::memcpy(&r, &bits, sizeof r);                                                    \
        return r;                                                                            \
    }                                                                                        \
    static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {               \
        return cuda_emu_shfl_(cuda_emu::W_SHFL, mask, v, src, width);                        \
    }                                                                                        \
    static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {     \
        return cuda_emu_shfl_(cuda_emu::W_SHFL_UP, mask, v, (int)delta, width);              \
    }                                                                                        \
    static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {   \
        return cuda_emu_shfl_(cuda_emu::W_SHFL_DOWN, mask, v, (int)delta, width);            \
    }                                                                                        \
    static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {     \
        return cuda_emu_shfl_(cuda_emu::W_SHFL_XOR, mask, v, lane_mask, width);              \
    }
CUDA_EMU_SHFL(int)
CUDA_EMU_SHFL(unsigned int)
CUDA_EMU_SHFL(long)
CUDA_EMU_SHFL(unsigned long)
CUDA_EMU_SHFL(long long)
CUDA_EMU_SHFL(unsigned long long)
CUDA_EMU_SHFL(float)
CUDA_EMU_SHFL(double)
#undef CUDA_EMU_SHFL

/* atomics: fibers never preempt each other, so a plain read-modify-write is atomic */
template <class T> static inline T atomicAdd(T *p, T v) { T old = *p; *p = old + v; return old; }
template <class T> static inline T atomicSub(T *p, T v) { T old = *p; *p = old - v; return old; }
template <class T> static inline T atomicExch(T *p, T v) { T old = *p; *p = v; return old; }
template <class T> static inline T atomicMax(T *p, T v) { T old = *p; if (v > old) *p = v; return old; }
template <class T> static inline T atomicMin(T *p, T v) { T old = *p; if (v < old) *p = v; return old; }
template <class T> static inline T atomicCAS(T *p, T cmp, T v) { T old = *p; if (old == cmp) *p = v; return old; }

/* ---------------------------------------------------------------------------------------
 * device math. The _rn intrinsics round every operation on its own: nvcc never contracts
 * them into an FMA, and neither may g++ (a build with -mfma -ffp-contract=fast imitates nvcc's
 * default contraction of the other a*b+c), hence the empty asm that hides the value. The fast
 * approximations (__expf, ...) are the library functions. min/max are CUDA's overloads. */
#if defined(__x86_64__) || defined(__i386__)
#define CUDA_EMU_OPAQUE(v) __asm__("" : "+x"(v))
#elif defined(__aarch64__)
#define CUDA_EMU_OPAQUE(v) __asm__("" : "+w"(v))
#else
#define CUDA_EMU_OPAQUE(v) __asm__("" : "+m"(v))
#endif
template <class T> static inline T __ldg(const T *p) { return *p; }
static inline float __fmul_rn(float a, float b) { float r = a * b; CUDA_EMU_OPAQUE(r); return r; }
static inline float __fadd_rn(float a, float b) { float r = a + b; CUDA_EMU_OPAQUE(r); return r; }
static inline float __fsub_rn(float a, float b) { float r = a - b; CUDA_EMU_OPAQUE(r); return r; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __dmul_rn(double a, double b) { double r = a * b; CUDA_EMU_OPAQUE(r); return r; }
static inline double __dadd_rn(double a, double b) { double r = a + b; CUDA_EMU_OPAQUE(r); return r; }
static inline double __dsub_rn(double a, double b) { double r = a - b; CUDA_EMU_OPAQUE(r); return r; }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
/* glibc declares __expf etc. itself (its internal names): macros, not definitions */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __powf(x, y) powf(x, y)
static inline float __fdividef(float a, float b) { return a / b; }
/* bit casts */
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
#define rsqrtf(x) (1.0f / sqrtf(x)) /* C23 libms may declare these: macros too */
#define rsqrt(x) (1.0 / sqrt(x))
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __ffs(int x) { return __builtin_ffs(x); }

#define CUDA_EMU_MINMAX(T)                                      \
    static inline T min(T a, T b) { return a < b ? a : b; }     \
    static inline T max(T a, T b) { return a > b ? a : b; }
CUDA_EMU_MINMAX(int)
CUDA_EMU_MINMAX(unsigned int)
CUDA_EMU_MINMAX(long)
CUDA_EMU_MINMAX(unsigned long)
CUDA_EMU_MINMAX(long long)
CUDA_EMU_MINMAX(unsigned long long)
#undef CUDA_EMU_MINMAX
/* CUDA's mixed signed/unsigned overloads compare as unsigned */
static inline unsigned int min(int a, unsigned int b) { return min((unsigned int)a, b); }
static inline unsigned int min(unsigned int a, int b) { return min(a, (unsigned int)b); }
static inline unsigned int max(int a, unsigned int b) { return max((unsigned int)a, b); }
static inline unsigned int max(unsigned int a, int b) { return max(a, (unsigned int)b); }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

#endif
