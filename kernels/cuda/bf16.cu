// bf16.cu - fp32 <-> bf16 conversion on the GPU (the table's f32_to_bf16 / bf16_to_f32):
// activations stored in bf16, the bf16 weight copies of runtime/memory.c
// (params_enable_bf16), the GEMMs' converted operands. Rounding is to nearest even, NaN
// stays NaN (kernels/scalar.h, shared with the CPU).
#include <stdint.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace {

constexpr unsigned kThreads = 256;

__global__ void f32_to_bf16_kernel(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = kscalar_bf16_rn(src[i]);
}

// four at a time: one 16-byte load, one 8-byte store (element 0 in the low half)
__global__ void f32_to_bf16_x4_kernel(uint2 *dst, const float4 *src, size_t n4) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4;
         i += (size_t)gridDim.x * blockDim.x) {
        float4 v = src[i];
        dst[i] = make_uint2((unsigned)kscalar_bf16_rn(v.x) | (unsigned)kscalar_bf16_rn(v.y) << 16,
                            (unsigned)kscalar_bf16_rn(v.z) | (unsigned)kscalar_bf16_rn(v.w) << 16);
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
