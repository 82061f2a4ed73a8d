// context.cu - the CUDA backend context (cuda_backend.h, cuda_common.cuh): device choice,
// the compute stream, the cuBLASLt handle and workspace, scratch, memory and transfers.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

namespace {
int g_ordinal = 0;
int g_ready = 0;
cudaStream_t g_stream;
cudaStream_t g_side = nullptr;
cudaEvent_t g_main_mark, g_side_mark;
cublasLtHandle_t g_lt;
void *g_ws = nullptr;
const size_t g_ws_bytes = 32u << 20; // cuBLASLt's recommendation for Hopper
void *g_scratch[CUDA_SCRATCH_SLOTS];
size_t g_scratch_bytes[CUDA_SCRATCH_SLOTS];
char g_desc[400];
// pinned staging for host-to-device copies: a ring of slots, each with the event of its
// last transfer, so the CPU fills the next batch while the GPU still computes
enum { STAGE_SLOTS = 4 };
const size_t STAGE_MIN = 64u << 10; // smaller copies go straight from pageable memory
void *g_stage[STAGE_SLOTS];
size_t g_stage_bytes[STAGE_SLOTS];
cudaEvent_t g_stage_done[STAGE_SLOTS];
int g_stage_next = 0;
} // namespace

extern "C" void cuda_fail(const char *call, const char *what, const char *file, int line) {
    fflush(stdout);
    fprintf(stderr, "mmrm: %s:%d: %s failed: %s\n", file, line, call, what);
    if (strstr(what, "out of memory"))
        fprintf(stderr, "mmrm: hint: lower per_device_train_batch_size or max_length, or turn on "
                        "grad_checkpoint\n");
    else if (strstr(what, "no CUDA-capable") || strstr(what, "driver"))
        fprintf(stderr, "mmrm: hint: no usable GPU here; run with device = cpu\n");
    exit(1);
}

const char *cublas_status_string(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED (no algorithm for this shape/type)";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
    }
}

extern "C" int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); // clear the sticky "no device" error
        return 0;
    }
    return n;
}

extern "C" void cuda_select_device(int ordinal) {
    if (g_ready && ordinal != g_ordinal) {
        fprintf(stderr, "mmrm: cuda_select_device(%d) after the backend started on GPU %d\n",
                ordinal, g_ordinal);
        exit(1);
    }
    g_ordinal = ordinal;
}

extern "C" int cuda_current_device(void) { return g_ordinal; }

extern "C" void cuda_backend_init(void) {
    if (g_ready) return;
    int n = cuda_device_count();
    if (n == 0) {
        fprintf(stderr, "mmrm: device = cuda but no GPU is visible (check nvidia-smi and "
                        "CUDA_VISIBLE_DEVICES), or run with device = cpu\n");
        exit(1);
    }
    if (g_ordinal < 0 || g_ordinal >= n) {
        fprintf(stderr, "mmrm: GPU %d requested but only %d visible\n", g_ordinal, n);
        exit(1);
    }
    CUDA_CHECK(cudaSetDevice(g_ordinal));
    CUDA_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasLtCreate(&g_lt));
    CUDA_CHECK(cudaMalloc(&g_ws, g_ws_bytes));
    cudaDeviceProp p;
    CUDA_CHECK(cudaGetDeviceProperties(&p, g_ordinal));
    snprintf(g_desc, sizeof g_desc, "%.200s (sm_%d%d, %.1f GiB, GPU %d)", p.name, p.major, p.minor,
             p.totalGlobalMem / 1073741824.0, g_ordinal);
    g_ready = 1;
}

extern "C" const char *cuda_device_description(void) {
    cuda_backend_init();
    return g_desc;
}

cudaStream_t cuda_stream(void) {
    cuda_backend_init();
    return g_stream;
}

cublasLtHandle_t cuda_lt(void) {
    cuda_backend_init();
    return g_lt;
}

void *cuda_lt_workspace(size_t *bytes) {
    cuda_backend_init();
    *bytes = g_ws_bytes;
    return g_ws;
}

void *cuda_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= CUDA_SCRATCH_SLOTS) {
        fprintf(stderr, "mmrm: cuda_scratch: bad slot %d\n", slot);
        exit(1);
    }
    if (bytes > g_scratch_bytes[slot]) {
        cuda_backend_init();
        // cuda_free: the graphs' execs are told, a capture defers the free (the captured
        // kernels still read it), else it waits for the stream (earlier kernels may)
        cuda_free(g_scratch[slot]);
        size_t want = bytes + bytes / 4;
        CUDA_CHECK(cudaMalloc(&g_scratch[slot], want));
        g_scratch_bytes[slot] = want;
    }
    return g_scratch[slot];
}

extern "C" void *cuda_stream_handle(void) { return (void *)cuda_stream(); }

extern "C" void cuda_synchronize(void) {
    if (cuda_graph_capturing()) {
        cuda_graph_fail("a host wait for the GPU");
        return;
    }
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
    if (g_side) CUDA_CHECK(cudaStreamSynchronize(g_side));
}

// the side stream for collectives (runtime/gradsync.c): created on first use with the
// highest priority, so NCCL's kernels are scheduled ahead of the backward's
static cudaStream_t side_stream(void) {
    if (!g_side) {
        cuda_backend_init();
        int lo = 0, hi = 0;
        CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&lo, &hi));
        CUDA_CHECK(cudaStreamCreateWithPriority(&g_side, cudaStreamNonBlocking, hi));
        CUDA_CHECK(cudaEventCreateWithFlags(&g_main_mark, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&g_side_mark, cudaEventDisableTiming));
    }
    return g_side;
}

extern "C" void *cuda_side_stream_handle(void) { return (void *)side_stream(); }

// waiter waits for the work queued on producer so far (mark: producer's reusable event)
static void stream_wait(cudaStream_t waiter, cudaStream_t producer, cudaEvent_t mark) {
    if (cuda_graph_capturing()) {
        cuda_graph_fail("a wait between the compute stream and the collectives' side stream");
        return;
    }
    CUDA_CHECK(cudaEventRecord(mark, producer));
    CUDA_CHECK(cudaStreamWaitEvent(waiter, mark, 0));
}

// side_stream() first: it creates the events on first use
extern "C" void cuda_side_wait_main(void) {
    cudaStream_t side = side_stream();
    stream_wait(side, g_stream, g_main_mark);
}

extern "C" void cuda_main_wait_side(void) {
    cudaStream_t side = side_stream();
    stream_wait(g_stream, side, g_side_mark);
}


extern "C" void *cuda_malloc(size_t bytes) {
    cuda_backend_init();
    void *p = nullptr;
    cudaError_t rc = cudaMalloc(&p, bytes ? bytes : 256);
    if (rc != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        (void)cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        fprintf(stderr, "mmrm: out of GPU memory allocating %.1f MiB on %s (%.1f MiB free of %.1f): "
                        "lower per_device_train_batch_size or max_length, or turn on grad_checkpoint\n",
                bytes / 1048576.0, g_desc, free_b / 1048576.0, total_b / 1048576.0);
        exit(1);
    }
    return p;
}

extern "C" void cuda_free(void *p) {
    if (!p) return;
    cuda_graph_memory_freed();
    if (cuda_graph_capturing()) {
        cuda_graph_defer_free(p);
        return;
    }
    if (g_ready) CUDA_CHECK(cudaStreamSynchronize(g_stream));
    CUDA_CHECK(cudaFree(p));
}

extern "C" void cuda_memset0(void *p, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda_stream()));
}

extern "C" void cuda_copy_d2d(void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return;
    char *d = (char *)dst;
    const char *s = (const char *)src;
    size_t gap = d < s ? (size_t)(s - d) : (size_t)(d - s);
    if (gap >= bytes) {
        CUDA_CHECK(cudaMemcpyAsync(d, s, bytes, cudaMemcpyDeviceToDevice, cuda_stream()));
        return;
    }
    // overlapping (arena compaction moves live data down): copy in chunks of `gap` bytes,
    // in the order that never overwrites unread source bytes
    if (d < s) {
        for (size_t off = 0; off < bytes; off += gap) {
            size_t n = bytes - off < gap ? bytes - off : gap;
            CUDA_CHECK(cudaMemcpyAsync(d + off, s + off, n, cudaMemcpyDeviceToDevice, cuda_stream()));
        }
    } else {
        for (size_t end = bytes; end > 0;) {
            size_t n = end < gap ? end : gap;
            end -= n;
            CUDA_CHECK(cudaMemcpyAsync(d + end, s + end, n, cudaMemcpyDeviceToDevice, cuda_stream()));
        }
    }
}

extern "C" void cuda_copy_h2d(void *dst, const void *src, size_t bytes) {
    // The caller may reuse src as soon as this returns. Small copies go from pageable memory
    // (the driver stages them at once). Large ones (batches of pixels) are copied into a
    // pinned slot and transferred asynchronously: the call does not wait for the kernels
    // queued before it, so the host prepares the next batch while the GPU computes. A slot
    // is reused only after its previous transfer has finished (its event).
    if (!bytes) return;
    cuda_backend_init();
    if (cuda_graph_capturing()) { // the graph copies from a buffer filled before each launch
        void *staged = cuda_graph_stage_upload(src, bytes);
        CUDA_CHECK(cudaMemcpyAsync(dst, staged, bytes, cudaMemcpyDeviceToDevice, cuda_stream()));
        return;
    }
    if (bytes < STAGE_MIN) {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_stream()));
        return;
    }
    int k = g_stage_next;
    g_stage_next = (g_stage_next + 1) % STAGE_SLOTS;
    if (!g_stage_done[k]) CUDA_CHECK(cudaEventCreateWithFlags(&g_stage_done[k], cudaEventDisableTiming));
    CUDA_CHECK(cudaEventSynchronize(g_stage_done[k]));
    if (bytes > g_stage_bytes[k]) {
        if (g_stage[k]) CUDA_CHECK(cudaFreeHost(g_stage[k]));
        CUDA_CHECK(cudaMallocHost(&g_stage[k], bytes));
        g_stage_bytes[k] = bytes;
    }
    memcpy(g_stage[k], src, bytes);
    CUDA_CHECK(cudaMemcpyAsync(dst, g_stage[k], bytes, cudaMemcpyHostToDevice, cuda_stream()));
    CUDA_CHECK(cudaEventRecord(g_stage_done[k], cuda_stream()));
}

extern "C" void cuda_copy_d2h(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    if (cuda_graph_capturing()) { // the captured work has not run: nothing to read yet
        cuda_graph_fail("a read of device memory by the host");
        memset(dst, 0, bytes);
        return;
    }
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
}

extern "C" void *cuda_host_alloc(size_t bytes) {
    cuda_backend_init();
    void *p = nullptr;
    CUDA_CHECK(cudaMallocHost(&p, bytes ? bytes : 64));
    return p;
}

extern "C" void cuda_host_free(void *p) {
    if (p) CUDA_CHECK(cudaFreeHost(p));
}
