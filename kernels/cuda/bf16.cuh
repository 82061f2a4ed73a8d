// bf16.cuh - element access for the kernels over bf16-stored activations (norm_bf16.cu,
// elementwise_bf16.cu): widening, rounding to nearest even (kernels/scalar.h, as the CPU's
// storage conversion), and groups of 8 elements that are one 16-byte load or store of bf16
// (two of fp32) when the launch found every pointer aligned (VEC) and all 8 exist, else 8
// scalar accesses of those that do. Which path a group takes never changes its values.
#ifndef MMRM_CUDA_BF16_CUH
#define MMRM_CUDA_BF16_CUH

#include <stdint.h>

#include "kernels/cuda/cuda_common.cuh"

__device__ __forceinline__ float bf16_widen(uint16_t h) { return __uint_as_float((unsigned)h << 16); }
__device__ __forceinline__ uint16_t bf16_round(float f) { return kscalar_bf16_rn(f); }

// one element of an fp32 or bf16 array as fp32 (templates over the storage type)
__device__ __forceinline__ float as_f32(float x) { return x; }
__device__ __forceinline__ float as_f32(uint16_t x) { return bf16_widen(x); }

static inline bool bf16_aligned16(const void *p) {
    return p == nullptr || ((uintptr_t)p & 15u) == 0;
}

struct V8 {
    float v[8];
};

// elements [i, i + 8) of p that are < n (the others read as 0)
template <bool VEC>
__device__ __forceinline__ V8 ld8(const uint16_t *p, size_t i, size_t n) {
    V8 r;
    if (VEC && i + 8 <= n) {
        uint4 q = *reinterpret_cast<const uint4 *>(p + i);
        unsigned w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            r.v[2 * k] = __uint_as_float(w[k] << 16);
            r.v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
        }
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) r.v[k] = i + k < n ? bf16_widen(p[i + k]) : 0.0f;
    }
    return r;
}

template <bool VEC>
__device__ __forceinline__ V8 ld8(const float *p, size_t i, size_t n) {
    V8 r;
    if (VEC && i + 8 <= n) {
        float4 a = *reinterpret_cast<const float4 *>(p + i);
        float4 b = *reinterpret_cast<const float4 *>(p + i + 4);
        r.v[0] = a.x, r.v[1] = a.y, r.v[2] = a.z, r.v[3] = a.w;
        r.v[4] = b.x, r.v[5] = b.y, r.v[6] = b.z, r.v[7] = b.w;
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) r.v[k] = i + k < n ? p[i + k] : 0.0f;
    }
    return r;
}

// rounds the elements of r that are < n into p
template <bool VEC>
__device__ __forceinline__ void st8(uint16_t *p, size_t i, size_t n, const V8 &r) {
    if (VEC && i + 8 <= n) {
        unsigned w[4];
#pragma unroll
        for (int k = 0; k < 4; k++)
            w[k] = (unsigned)bf16_round(r.v[2 * k]) | (unsigned)bf16_round(r.v[2 * k + 1]) << 16;
        *reinterpret_cast<uint4 *>(p + i) = make_uint4(w[0], w[1], w[2], w[3]);
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (i + k < n) p[i + k] = bf16_round(r.v[k]);
    }
}

template <bool VEC>
__device__ __forceinline__ void st8(float *p, size_t i, size_t n, const V8 &r) {
    if (VEC && i + 8 <= n) {
        *reinterpret_cast<float4 *>(p + i) = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
        *reinterpret_cast<float4 *>(p + i + 4) = make_float4(r.v[4], r.v[5], r.v[6], r.v[7]);
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (i + k < n) p[i + k] = r.v[k];
    }
}

#endif
