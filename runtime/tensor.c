/* tensor.c - tensor metadata, bf16 conversion and device memory. */
#include "runtime/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/scalar.h"
#include "runtime/error.h"
#ifdef MMRM_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

size_t dtype_size(DType dt) { return dt == DT_BF16 ? 2 : 4; }
const char *dtype_name(DType dt) { return dt == DT_BF16 ? "bf16" : dt == DT_I32 ? "i32" : "f32"; }
const char *device_name(Device d) { return d == DEV_CUDA ? "cuda" : "cpu"; }

void tensor_set_shape(Tensor *t, const char *name, int ndim, const int *shape) {
    MMRM_CHECK(ndim >= 1 && ndim <= TENSOR_MAX_DIMS, "tensor %s: rank %d is outside 1..%d",
               name ? name : "?", ndim, TENSOR_MAX_DIMS);
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < TENSOR_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
    for (int i = 0; i < ndim; i++) {
        MMRM_CHECK(shape[i] >= 0, "tensor %s: dimension %d is negative (%d)", t->name, i, shape[i]);
        t->numel *= (size_t)shape[i];
    }
}

int tensor_same_shape(const Tensor *a, const Tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *tensor_describe(const Tensor *t, char *buf, size_t len) {
    int o = snprintf(buf, len, "%s (", t->name[0] ? t->name : "<unnamed>");
    for (int i = 0; i < t->ndim && o > 0 && (size_t)o < len; i++)
        o += snprintf(buf + o, len - o, i ? ", %d" : "%d", t->shape[i]);
    if (o > 0 && (size_t)o < len)
        snprintf(buf + o, len - o, ") %s %s", dtype_name(t->dtype), device_name(t->device));
    return buf;
}

uint16_t bf16_from_f32(float f) { return kscalar_bf16_rn(f); }

float f32_from_bf16(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* the host arrays go through the CPU op table's conversions (kernels/cpu/convert.c) */
void bf16_to_f32_array(float *dst, const uint16_t *src, size_t n) {
    kernels_cpu.bf16_to_f32(dst, src, n);
}

void f32_to_bf16_array(uint16_t *dst, const float *src, size_t n) {
    kernels_cpu.f32_to_bf16(dst, src, n);
}

int device_cuda_compiled(void) {
#ifdef MMRM_CUDA
    return 1;
#else
    return 0;
#endif
}

int device_gpu_count(void) {
#ifdef MMRM_CUDA
    return cuda_device_count();
#else
    return 0;
#endif
}

const char *device_describe(Device d) {
#ifdef MMRM_CUDA
    if (d == DEV_CUDA) return cuda_device_description();
#endif
    return device_name(d);
}

int device_set_attention_impl(Device d, const char *impl, int verbose) {
    static const char *const names[] = {"auto", "mmrm", "cudnn"}; /* AttentionImpl order */
    int n = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(impl ? impl : "auto", names[i])) n = i;
    if (n < 0) {
        mmrm_set_error("attention_impl '%s': valid values are auto, mmrm, cudnn", impl);
        return -1;
    }
#ifdef MMRM_CUDA
    if (d == DEV_CUDA) {
        if (n == ATTN_IMPL_CUDNN && !cuda_cudnn_compiled()) {
            mmrm_set_error("attention_impl = cudnn: this build has no cuDNN (%s); rebuild with "
                           "`make cuda` where cudnn.h is found (CUDNN_HOME), or use auto or mmrm",
                           cuda_cudnn_describe());
            return -1;
        }
        cuda_attention_set_impl(n);
        if (verbose)
            mmrm_log("attention: %s (bf16: %s; fp32: mmrm's exact kernels)", names[n],
                     n == ATTN_IMPL_MMRM ? "mmrm's tensor-core kernels"
                     : cuda_cudnn_compiled() ? cuda_cudnn_describe()
                                             : "mmrm's tensor-core kernels, no cuDNN in this build");
        return 0;
    }
#endif
    if (verbose)
        mmrm_log("attention_impl = %s is ignored on the %s (one attention implementation)",
                 names[n], device_name(d));
    return 0;
}

#ifdef MMRM_CUDA
#define ON_CUDA(d, call)   \
    if ((d) == DEV_CUDA) { \
        call;              \
        return;            \
    }
#else
#define ON_CUDA(d, call)
#endif

static void require_cpu(Device d, const char *what) {
    MMRM_CHECK(d == DEV_CPU,
               "%s on device %s: this build has only the CPU backend (rebuild with `make cuda`)",
               what, device_name(d));
}

void *device_alloc(Device d, size_t bytes) {
#ifdef MMRM_CUDA
    if (d == DEV_CUDA) return cuda_malloc((bytes + 255) & ~(size_t)255);
#endif
    require_cpu(d, "device_alloc");
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) MMRM_FATAL("out of memory allocating %.1f MiB on the CPU", bytes / 1048576.0);
    return p;
}

void device_free(Device d, void *p) {
    ON_CUDA(d, cuda_free(p));
    require_cpu(d, "device_free");
    free(p);
}

void device_memset0(Device d, void *p, size_t bytes) {
    ON_CUDA(d, cuda_memset0(p, bytes));
    require_cpu(d, "device_memset0");
    memset(p, 0, bytes);
}

void device_memcpy(Device d, void *dst, const void *src, size_t bytes) {
    ON_CUDA(d, cuda_copy_d2d(dst, src, bytes));
    require_cpu(d, "device_memcpy");
    memmove(dst, src, bytes);
}

void device_copy_from_host(Device d, void *dst, const void *host_src, size_t bytes) {
    ON_CUDA(d, cuda_copy_h2d(dst, host_src, bytes));
    require_cpu(d, "device_copy_from_host");
    memmove(dst, host_src, bytes);
}

void device_copy_to_host(Device d, void *host_dst, const void *src, size_t bytes) {
    ON_CUDA(d, cuda_copy_d2h(host_dst, src, bytes));
    require_cpu(d, "device_copy_to_host");
    memmove(host_dst, src, bytes);
}

void device_sync(Device d) {
    ON_CUDA(d, cuda_synchronize());
    (void)d;
}

void device_graph_begin(Device d) {
    ON_CUDA(d, cuda_graph_begin());
    MMRM_FATAL("CUDA graphs need a GPU (device %s)", device_name(d));
}

const char *device_graph_end(Device d, uint64_t key) {
#ifdef MMRM_CUDA
    if (d == DEV_CUDA) return cuda_graph_end(key);
#endif
    (void)key;
    MMRM_FATAL("CUDA graphs need a GPU (device %s)", device_name(d));
}

void device_graph_counts(Device d, long *captured, long *replayed) {
    *captured = *replayed = 0;
    ON_CUDA(d, cuda_graph_counts(captured, replayed));
    (void)d;
}

void device_plan_stats(Device d, long *hits, long *misses) {
    *hits = *misses = 0;
    ON_CUDA(d, cuda_matmul_plan_stats(hits, misses));
    (void)d;
}

void *device_stream(Device d) {
#ifdef MMRM_CUDA
    if (d == DEV_CUDA) return cuda_stream_handle();
#endif
    (void)d;
    return NULL;
}

int device_resolve(const char *setting, int gpu_ordinal, int verbose, Device *out) {
    const char *s = setting && *setting ? setting : "auto";
    int ordinal = gpu_ordinal >= 0 ? gpu_ordinal : 0;
    int want_cuda = 0, is_auto = 0;
    if (!strcmp(s, "cpu")) {
        *out = DEV_CPU;
        if (verbose) mmrm_log("device: cpu");
        return 0;
    } else if (!strcmp(s, "auto")) {
        is_auto = 1;
    } else if (!strncmp(s, "cuda", 4) && (s[4] == 0 || s[4] == ':')) {
        want_cuda = 1;
        if (s[4] == ':') {
            char *end;
            long v = strtol(s + 5, &end, 10);
            if (end == s + 5 || *end || v < 0 || v > 1023) {
                mmrm_set_error("device '%s': expected cuda:N with N a GPU number", s);
                return -1;
            }
            ordinal = (int)v;
        }
    } else {
        mmrm_set_error("device '%s': valid values are auto, cpu, cuda, cuda:N", s);
        return -1;
    }
#ifdef MMRM_CUDA
    int n = cuda_device_count();
    if (n > 0 && ordinal >= n) {
        if (is_auto) ordinal %= n;
        else {
            mmrm_set_error("device '%s': GPU %d requested but %d visible", s, ordinal, n);
            return -1;
        }
    }
    if (n > 0) {
        cuda_select_device(ordinal);
        *out = DEV_CUDA;
        if (verbose) mmrm_log("device: cuda: %s", cuda_device_description());
        return 0;
    }
    if (want_cuda) {
        mmrm_set_error("device '%s': no GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES), "
                       "or use device = cpu", s);
        return -1;
    }
    *out = DEV_CPU;
    if (verbose) mmrm_log("device: cpu (auto: no GPU visible)");
    return 0;
#else
    (void)ordinal;
    if (want_cuda) {
        mmrm_set_error("device '%s': this build has only the CPU backend: rebuild with `make cuda` "
                       "(needs the CUDA toolkit), or use device = cpu", s);
        return -1;
    }
    *out = DEV_CPU;
    if (verbose && is_auto) mmrm_log("device: cpu (auto: this build has no CUDA backend)");
    return 0;
#endif
}
