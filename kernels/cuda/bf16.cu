// bf16.cu - bf16 storage for precision = bf16: fp32 <-> bf16 conversion (weights for the
// GEMMs, activations stored in bf16) and the bf16 weight copies ("shadows") of the flat
// parameter buffers.
//
// A shadow is a bf16 copy of a whole fp32 parameter buffer (runtime/memory.c
// params_enable_bf16). While one is registered:
// - cuda_matmul_* in bf16 mode take a weight that lies inside the buffer from the shadow
//   (the same offset), so the GEMMs read 2-byte weights and no conversion runs;
// - cuda_adamw_update on a slice of the buffer writes the new bf16 weights in the same fused
//   kernel that updates the fp32 master weights and the moments;
// - anything else that writes the fp32 buffer (a ZeRO-1 all-gather, a load) must call
//   cuda_bf16_shadow_refresh.
// Rounding is to nearest even, NaN stays NaN (runtime/tensor.c bf16_from_f32 on the host).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace {

constexpr unsigned kThreads = 256;

__global__ void f32_to_bf16_kernel(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = cuda_bf16_rn(src[i]);
}

// four at a time: one 16-byte load, one 8-byte store (element 0 in the low half)
__global__ void f32_to_bf16_x4_kernel(uint2 *dst, const float4 *src, size_t n4) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4;
         i += (size_t)gridDim.x * blockDim.x) {
        float4 v = src[i];
        dst[i] = make_uint2((unsigned)cuda_bf16_rn(v.x) | (unsigned)cuda_bf16_rn(v.y) << 16,
                            (unsigned)cuda_bf16_rn(v.z) | (unsigned)cuda_bf16_rn(v.w) << 16);
    }
}

__global__ void bf16_to_f32_kernel(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __uint_as_float((unsigned)src[i] << 16);
}

// four at a time: one 8-byte load, one 16-byte store
__global__ void bf16_to_f32_x4_kernel(float4 *dst, const uint2 *src, size_t n4) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4;
         i += (size_t)gridDim.x * blockDim.x) {
        uint2 v = src[i];
        dst[i] = make_float4(__uint_as_float(v.x << 16), __uint_as_float(v.x & 0xffff0000u),
                             __uint_as_float(v.y << 16), __uint_as_float(v.y & 0xffff0000u));
    }
}

struct Shadow {
    const float *base;
    size_t n;
    uint16_t *w16;
};
constexpr int kMaxShadows = 8;
Shadow g_shadows[kMaxShadows];

Shadow *find_base(const float *base) {
    for (int i = 0; i < kMaxShadows; i++)
        if (g_shadows[i].base == base && base) return &g_shadows[i];
    return nullptr;
}

// n conversions: four per thread (k4, vector loads and stores) while both pointers are
// aligned for them, one per thread (k1) for the rest
template <class D, class S, class DV, class SV>
void convert(D *dst, const S *src, size_t n, void (*k4)(DV *, const SV *, size_t),
             void (*k1)(D *, const S *, size_t)) {
    if (n == 0) return;
    size_t done = 0;
    if ((uintptr_t)dst % sizeof(DV) == 0 && (uintptr_t)src % sizeof(SV) == 0 && n >= 4) {
        size_t n4 = n / 4;
        k4<<<cuda_blocks(n4, kThreads), kThreads, 0, cuda_stream()>>>((DV *)dst, (const SV *)src, n4);
        CUDA_LAUNCH_CHECK();
        done = 4 * n4;
    }
    if (done == n) return;
    k1<<<cuda_blocks(n - done, kThreads), kThreads, 0, cuda_stream()>>>(dst + done, src + done,
                                                                        n - done);
    CUDA_LAUNCH_CHECK();
}

} // namespace

extern "C" void cuda_f32_to_bf16(uint16_t *dst, const float *src, size_t n) {
    convert(dst, src, n, f32_to_bf16_x4_kernel, f32_to_bf16_kernel);
}

extern "C" void cuda_bf16_to_f32(float *dst, const uint16_t *src, size_t n) {
    convert(dst, src, n, bf16_to_f32_x4_kernel, bf16_to_f32_kernel);
}

extern "C" uint16_t *cuda_bf16_shadow_register(const float *base, size_t n) {
    if (!base || n == 0) return nullptr;
    Shadow *s = find_base(base);
    if (s && s->n != n) {
        cuda_free(s->w16);
        s->base = nullptr;
        s = nullptr;
    }
    if (!s) {
        for (int i = 0; i < kMaxShadows && !s; i++)
            if (!g_shadows[i].base) s = &g_shadows[i];
        if (!s) {
            fprintf(stderr, "mmrm: cuda_bf16_shadow_register: more than %d bf16 weight buffers\n",
                    kMaxShadows);
            exit(1);
        }
        s->w16 = (uint16_t *)cuda_malloc(n * sizeof(uint16_t));
        s->base = base;
        s->n = n;
    }
    cuda_f32_to_bf16(s->w16, base, n);
    return s->w16;
}

extern "C" void cuda_bf16_shadow_unregister(const float *base) {
    Shadow *s = find_base(base);
    if (!s) return;
    cuda_free(s->w16); // stream-ordered: kernels queued before still see it
    s->base = nullptr;
    s->w16 = nullptr;
    s->n = 0;
}

extern "C" void cuda_bf16_shadow_refresh(const float *base, size_t off, size_t n) {
    Shadow *s = find_base(base);
    if (!s) return;
    if (off > s->n || n > s->n - off) {
        fprintf(stderr, "mmrm: cuda_bf16_shadow_refresh: [%zu, %zu) outside the %zu weights\n",
                off, off + n, s->n);
        exit(1);
    }
    cuda_f32_to_bf16(s->w16 + off, base + off, n);
}

extern "C" uint16_t *cuda_bf16_shadow_find(const float *p, size_t n) {
    if (!p) return nullptr;
    for (int i = 0; i < kMaxShadows; i++) {
        const Shadow &s = g_shadows[i];
        if (!s.base || p < s.base || p >= s.base + s.n) continue;
        size_t off = (size_t)(p - s.base);
        return n <= s.n - off ? s.w16 + off : nullptr;
    }
    return nullptr;
}
