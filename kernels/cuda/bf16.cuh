// bf16.cuh - element access for the kernels over bf16-stored activations (norm.cu,
// elementwise_bf16.cu, elementwise.cuh's map8): widening, rounding to nearest even
// (kernels/scalar.h, as the CPU's storage conversion), and groups of 8 elements that are one
// 16-byte load or store of bf16 (two of fp32) when the launch found every pointer aligned
// (VEC) and all 8 exist, else 8 scalar accesses of those that do (ld8/st8, one template
// over the element type). Which path a group takes never changes its values.
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

// one group as one 16-byte access of 8 bf16 (widened exactly; stored rounded to nearest
// even), or two of 8 fp32; p 16-byte aligned
__device__ __forceinline__ V8 ld8_vec(const uint16_t *p) {
    uint4 q = *reinterpret_cast<const uint4 *>(p);
    unsigned w[4] = {q.x, q.y, q.z, q.w};
    V8 r;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        r.v[2 * k] = __uint_as_float(w[k] << 16);
        r.v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
    return r;
}

__device__ __forceinline__ V8 ld8_vec(const float *p) {
    float4 a = *reinterpret_cast<const float4 *>(p);
    float4 b = *reinterpret_cast<const float4 *>(p + 4);
    V8 r;
    r.v[0] = a.x, r.v[1] = a.y, r.v[2] = a.z, r.v[3] = a.w;
    r.v[4] = b.x, r.v[5] = b.y, r.v[6] = b.z, r.v[7] = b.w;
    return r;
}

__device__ __forceinline__ void st8_vec(uint16_t *p, const V8 &r) {
    unsigned w[4];
#pragma unroll
    for (int k = 0; k < 4; k++)
        w[k] = (unsigned)bf16_round(r.v[2 * k]) | (unsigned)bf16_round(r.v[2 * k + 1]) << 16;
    *reinterpret_cast<uint4 *>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ void st8_vec(float *p, const V8 &r) {
    *reinterpret_cast<float4 *>(p) = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
    *reinterpret_cast<float4 *>(p + 4) = make_float4(r.v[4], r.v[5], r.v[6], r.v[7]);
}

// one element stored: rounded to bf16, or as is
__device__ __forceinline__ void st1(uint16_t *p, float x) { *p = bf16_round(x); }
__device__ __forceinline__ void st1(float *p, float x) { *p = x; }

// elements [i, i + 8) of p (bf16 or fp32) that are < n, widened (the others read as 0)
template <bool VEC, class T>
__device__ __forceinline__ V8 ld8(const T *p, size_t i, size_t n) {
    if (VEC && i + 8 <= n) return ld8_vec(p + i);
    V8 r;
#pragma unroll
    for (int k = 0; k < 8; k++) r.v[k] = i + k < n ? as_f32(p[i + k]) : 0.0f;
    return r;
}

// the elements of r that are < n into p (bf16: rounded)
template <bool VEC, class T>
__device__ __forceinline__ void st8(T *p, size_t i, size_t n, const V8 &r) {
    if (VEC && i + 8 <= n) {
        st8_vec(p + i, r);
        return;
    }
#pragma unroll
    for (int k = 0; k < 8; k++)
        if (i + k < n) st1(p + i + k, r.v[k]);
}

#endif
