// elementwise.cu (lab) - exact GELU, SwiGLU and the residual add, forward, with the production
// arithmetic (GELU in double via erfc, SwiGLU's overflow-free sigmoid in float: elementwise.cu).
//   v0 production: kernels_cuda.{gelu,swiglu,add}_forward (grid-stride loop, one float a step)
//   v1 scalar: one thread per element, no loop (a grid of n threads)
//   v2 float4: one thread per 4 elements with 16-byte loads and stores when every pointer is
//      16-byte aligned (grid-stride), the last n % 4 elements scalar; a misaligned call falls
//      back to v1
// Memory-bound: GB/s counts the inputs read and the output written; the reference is a
// device-to-device copy of the same bytes.
#include <stdint.h>

#include <stdio.h>
#include <stdlib.h>

#include "bench/lab/lab.h"
#include "kernels/cuda/cuda_common.cuh"

namespace {

constexpr unsigned kThreads = 256;
constexpr double kSqrt1_2 = 0.70710678118654752440;

struct Gelu {
    static constexpr int kIn = 1;
    __device__ float operator()(float xf, float) const {
        double x = xf;
        return (float)(0.5 * x * erfc(-x * kSqrt1_2));
    }
};

struct Swiglu {
    static constexpr int kIn = 2;
    __device__ float operator()(float g, float u) const {
        float e = expf(-fabsf(g));
        float r = 1.0f / (1.0f + e), p = e * r;
        return g * (g >= 0 ? r : p) * u;
    }
};

struct Add {
    static constexpr int kIn = 2;
    __device__ float operator()(float a, float b) const { return a + b; }
};

// b is unused (nullptr) by the one-input ops
template <class F>
__global__ void map_scalar_kernel(float *out, const float *a, const float *b, size_t n, F f) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = f(a[i], F::kIn > 1 ? b[i] : 0.0f);
}

template <class F>
__global__ void map_vec4_kernel(float *out, const float *a, const float *b, size_t n, F f) {
    const size_t n4 = n / 4, stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (size_t j = i; j < n4; j += stride) {
        float4 x = reinterpret_cast<const float4 *>(a)[j], y = {0, 0, 0, 0};
        if (F::kIn > 1) y = reinterpret_cast<const float4 *>(b)[j];
        reinterpret_cast<float4 *>(out)[j] = make_float4(f(x.x, y.x), f(x.y, y.y), f(x.z, y.z), f(x.w, y.w));
    }
    size_t tail = 4 * n4 + i; // the last n % 4 elements: threads 0..2 of the grid
    if (tail < n) out[tail] = f(a[tail], F::kIn > 1 ? b[tail] : 0.0f);
}

bool aligned16(const void *p) { return p == nullptr || ((uintptr_t)p & 15u) == 0; }

struct Ew {
    float *out;
    const float *a, *b;
    size_t n;
};

template <class F> void ew_scalar(const Ew &e) {
    unsigned grid = (unsigned)((e.n + kThreads - 1) / kThreads);
    map_scalar_kernel<F><<<grid ? grid : 1, kThreads, 0, cuda_stream()>>>(e.out, e.a, e.b, e.n, F{});
    CUDA_LAUNCH_CHECK();
}

template <class F> void ew_vec4(const Ew &e) {
    if (!aligned16(e.out) || !aligned16(e.a) || !aligned16(e.b)) return ew_scalar<F>(e);
    map_vec4_kernel<F><<<cuda_blocks(e.n / 4, kThreads), kThreads, 0, cuda_stream()>>>(e.out, e.a, e.b, e.n, F{});
    CUDA_LAUNCH_CHECK();
}

void gelu_production(const Ew &e) { lab_op_gelu_forward(&kernels_cuda, e.out, e.a, e.n); }
void swiglu_production(const Ew &e) { lab_op_swiglu_forward(&kernels_cuda, e.out, e.a, e.b, e.n); }
void add_production(const Ew &e) { lab_op_add_forward(&kernels_cuda, e.out, e.a, e.b, e.n); }

struct Op {
    const char *name;
    int inputs;
    void (*cpu)(float *out, const float *a, const float *b, size_t n);
    void (*fn[3])(const Ew &); // v0 production, v1 scalar, v2 float4
};
const Op kOps[] = {
    {"gelu", 1, [](float *o, const float *a, const float *, size_t n) { lab_op_gelu_forward(&kernels_cpu, o, a, n); },
     {gelu_production, ew_scalar<Gelu>, ew_vec4<Gelu>}},
    {"swiglu", 2, [](float *o, const float *a, const float *b, size_t n) { lab_op_swiglu_forward(&kernels_cpu, o, a, b, n); },
     {swiglu_production, ew_scalar<Swiglu>, ew_vec4<Swiglu>}},
    {"add", 2, [](float *o, const float *a, const float *b, size_t n) { lab_op_add_forward(&kernels_cpu, o, a, b, n); },
     {add_production, ew_scalar<Add>, ew_vec4<Add>}},
};
const char *const kNames[] = {"production: kernels_cuda (grid-stride)", "scalar: one thread per element",
                              "float4: 16-byte loads/stores"};
constexpr int kNV = 3;

// off: the arrays start `off` floats into their allocations (off % 4 != 0: misaligned)
void run_size(Lab *L, size_t n, size_t off, uint64_t seed) {
    const double tol = 1e-6;
    size_t na = n + off;
    float *ha = lab_rand(na, seed, -4, 4), *hb = lab_rand(na, seed + 1, -4, 4), *ref = lab_rand(n, 1, 0, 1);
    float *da = lab_upload(ha, na), *db = lab_upload(hb, na), *dout = lab_nan(na);
    Ew e = {dout + off, da + off, db + off, n};
    for (const Op &op : kOps) {
        op.cpu(ref, ha + off, op.inputs > 1 ? hb + off : nullptr, n);
        Ew eo = e;
        if (op.inputs < 2) eo.b = nullptr;
        double bytes = (op.inputs + 1.0) * n * sizeof(float);
        float copy_ms = L->check_only ? 0.0f : lab_copy_ms(bytes);
        printf("%s forward n=%zu%s; tol %.0e", op.name, n, off % 4 ? " (pointers not 16-byte aligned)" : "", tol);
        if (!L->check_only) printf("; reference: device-to-device copy of the same bytes (%.4f ms)", copy_ms);
        printf("\n");
        for (int v = 0; v < kNV; v++) {
            if (!lab_want(L, v, kNV)) continue;
            lab_fill_nan(dout, na);
            op.fn[v](eo);
            lab_check(L, lab_name("v%d %s: %s", v, kNames[v], op.name), ref, eo.out, n, tol);
            if (!L->check_only) lab_row(v, kNames[v], lab_time([&] { op.fn[v](eo); }), 0, bytes, copy_ms);
        }
        fflush(stdout);
    }
    cuda_free(da);
    cuda_free(db);
    cuda_free(dout);
    free(ha);
    free(hb);
    free(ref);
}

} // namespace

extern "C" void lab_elementwise(Lab *L) {
    if (L->check_only) {
        run_size(L, 4099, 0, 401); // a tail of 3 after the float4 groups
        run_size(L, 2053, 1, 411); // misaligned: float4 falls back, production is unaffected
        return;
    }
    run_size(L, (size_t)1 << 25, 0, 401); // 128 MiB per array
}
