// elementwise.cuh - what elementwise.cu (fp32 activations) and elementwise_bf16.cu (bf16
// activations) share: the grid-stride loop, the per-element formulas of GELU, SwiGLU and
// RoPE (one definition, so a bf16 kernel's element is the fp32 kernel's on the widened
// inputs, rounded once), and map8, the flat maps' load / widen / compute / round / store of
// one group of 8 elements (bf16.cuh's ld8/st8).
//
// Formulas: GELU and RoPE in double as the CPU (kernels/cpu/activation.c, rope.c); in float
// expressions a product that feeds an add is __fmul_rn, which nvcc never contracts into an
// FMA, so it rounds as on the CPU (built without contraction).
#ifndef MMRM_CUDA_ELEMENTWISE_CUH
#define MMRM_CUDA_ELEMENTWISE_CUH

#include "kernels/cuda/bf16.cuh"

constexpr double kSqrt1_2 = 0.70710678118654752440;    // M_SQRT1_2, as the CPU uses
constexpr double kInvSqrt2Pi = 0.39894228040143267794; // INV_SQRT_2PI of activation.c

__device__ __forceinline__ size_t grid_start() {
    return (size_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t grid_stride() { return (size_t)gridDim.x * blockDim.x; }

// exact GELU: x * Phi(x), Phi(x) = erfc(-x/sqrt2)/2
__device__ __forceinline__ float gelu1(double x) { return (float)(0.5 * x * erfc(-x * kSqrt1_2)); }

// dout * GELU'(x), the term gelu_backward adds to dinp
__device__ __forceinline__ float gelu_grad1(float dout, double x) {
    double d = 0.5 * erfc(-x * kSqrt1_2) + x * exp(-0.5 * x * x) * kInvSqrt2Pi;
    return (float)(dout * d);
}

// sigmoid(g) and 1 - sigmoid(g) from e = exp(-|g|) <= 1 (never overflows)
__device__ __forceinline__ void sigmoid_pair(float g, float *sig, float *one_minus_sig) {
    float e = expf(-fabsf(g));
    float r = 1.0f / (1.0f + e), p = e * r;
    *sig = g >= 0 ? r : p;
    *one_minus_sig = g >= 0 ? p : r;
}

// SwiGLU: silu(gate) * up
__device__ __forceinline__ float swiglu1(float g, float u) {
    float s, oms;
    sigmoid_pair(g, &s, &oms);
    return g * s * u;
}

// the terms swiglu_backward adds to dgate and dup for gate g, up u, output gradient go
__device__ __forceinline__ void swiglu_grad1(float go, float g, float u, float *dg, float *du) {
    float s, oms;
    sigmoid_pair(g, &s, &oms);
    *dg = __fmul_rn(go * u, s * (1.0f + __fmul_rn(g, oms)));
    *du = __fmul_rn(go, g * s);
}

// rotate-half RoPE: sin and cos of the angle of pair i (of HD / 2) at position pos
__device__ __forceinline__ void rope_angle(float theta, double i, int HD, int pos, double *s,
                                           double *c) {
    double inv_freq = pow((double)theta, -2.0 * i / HD);
    sincos((double)pos * inv_freq, s, c);
}

// (a, b) rotated by the angle of cos c, sin s
__device__ __forceinline__ void rope_rotate(double a, double b, double c, double s, double *ya,
                                            double *yb) {
    *ya = a * c - b * s;
    *yb = b * c + a * s;
}

// group [i, i + 8) of a flat map over n elements: out[e] = f(e, in[e]...) for each input
// array (bf16 or fp32, widened; 0 past n), rounded once into out (bf16) or stored (fp32);
// VEC: one 16-byte access per bf16 group, two per fp32 group, where the group is whole
template <bool VEC, class Out, class F, class... In>
__device__ __forceinline__ void map8(Out *out, size_t i, size_t n, F f, const In *...in) {
    V8 r;
    [&](auto... x) {
#pragma unroll
        for (int k = 0; k < 8; k++) r.v[k] = f(i + k, x.v[k]...);
    }(ld8<VEC>(in, i, n)...);
    st8<VEC>(out, i, n, r);
}

#endif
