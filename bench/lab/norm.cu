// norm.cu (lab) - LayerNorm and RMSNorm forward over (N, C) rows: out, mean (LayerNorm) and
// rstd, with the CPU's arithmetic (statistics in double, LayerNorm's variance two-pass, the
// float formulas of kernels/cpu/norm.c for out with the saved float statistics).
//   v0 production: kernels_cuda.{layernorm,rmsnorm}_forward (one warp per row, float4 loads)
//   v1 one thread per row: the whole row's sums in one thread (serial, uncoalesced)
//   v2 one block per row: 256 threads, the row kept in shared memory after one global read (the
//      production kernel reads x three times), the sums combined by a fixed shared-memory tree
// Memory-bound: GB/s counts reading x and writing out; the reference is a device-to-device
// copy of the same bytes.
#include <stdio.h>
#include <stdlib.h>

#include "bench/lab/lab.h"
#include "kernels/cuda/cuda_common.cuh"

namespace {

// the production formulas: __fmul_rn where a product feeds an add (no FMA contraction)
template <bool LN>
__device__ __forceinline__ float norm1(float x, float m, float s, const float *w,
                                       const float *b, int c) {
    if (!LN) return x * s * w[c];
    return b ? __fmul_rn((x - m) * s, w[c]) + b[c] : (x - m) * s * w[c];
}

template <bool LN>
__global__ void norm_thread_kernel(float *out, float *mean, float *rstd, const float *inp,
                                   const float *w, const float *b, int N, int C, float eps) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C;
    double mu = 0.0;
    if (LN) {
        double sum = 0.0;
        for (int c = 0; c < C; c++) sum += x[c];
        mu = sum / C;
    }
    double sq = 0.0;
    for (int c = 0; c < C; c++) {
        double d = x[c] - mu;
        sq += d * d;
    }
    float m = LN ? (float)mu : 0.0f;
    float s = (float)(1.0 / sqrt(sq / C + eps));
    if (LN) mean[row] = m;
    rstd[row] = s;
    float *o = out + (size_t)row * C;
    for (int c = 0; c < C; c++) o[c] = norm1<LN>(x[c], m, s, w, b, c);
}

constexpr int kRowThreads = 256; // v2, a power of two (tree)

// sum over the block in a fixed tree; the result in every thread
__device__ double block_sum(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = kRowThreads / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads(); // sh is reused by the next reduction
    return r;
}

template <bool LN>
__global__ void __launch_bounds__(kRowThreads)
norm_block_kernel(float *out, float *mean, float *rstd, const float *inp, const float *w,
                  const float *b, int N, int C, float eps) {
    extern __shared__ float xs[]; // the row (C floats); each thread reads back only its columns
    __shared__ double sh[kRowThreads];
    const int row = blockIdx.x, tid = threadIdx.x;
    (void)N;
    const float *x = inp + (size_t)row * C;
    double sum = 0.0;
    for (int c = tid; c < C; c += kRowThreads) {
        float v = x[c];
        xs[c] = v;
        sum += v;
    }
    double mu = 0.0;
    if (LN) mu = block_sum(sum, sh) / C;
    double sq = 0.0;
    for (int c = tid; c < C; c += kRowThreads) {
        double d = xs[c] - mu;
        sq += d * d;
    }
    double var = block_sum(sq, sh) / C;
    float m = LN ? (float)mu : 0.0f;
    float s = (float)(1.0 / sqrt(var + eps));
    if (tid == 0) {
        if (LN) mean[row] = m;
        rstd[row] = s;
    }
    float *o = out + (size_t)row * C;
    for (int c = tid; c < C; c += kRowThreads) o[c] = norm1<LN>(xs[c], m, s, w, b, c);
}

struct Nm {
    float *out, *mean, *rstd;
    const float *inp, *w, *b;
    int N, C;
};
constexpr float kEps = 1e-5f;

template <bool LN> void nm_production(const Nm &a) {
    if (LN) lab_op_layernorm_forward(&kernels_cuda, a.out, a.mean, a.rstd, a.inp, a.w, a.b, a.N, a.C, kEps);
    else lab_op_rmsnorm_forward(&kernels_cuda, a.out, a.rstd, a.inp, a.w, a.N, a.C, kEps);
}

template <bool LN> void nm_thread(const Nm &a) {
    norm_thread_kernel<LN><<<(unsigned)((a.N + 127) / 128), 128, 0, cuda_stream()>>>(
        a.out, a.mean, a.rstd, a.inp, a.w, a.b, a.N, a.C, kEps);
    CUDA_LAUNCH_CHECK();
}

template <bool LN> void nm_block(const Nm &a) {
    size_t smem = (size_t)a.C * sizeof(float);
    static size_t opted = 48 << 10;
    if (smem > opted) {
        CUDA_CHECK(cudaFuncSetAttribute(norm_block_kernel<LN>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        opted = smem;
    }
    norm_block_kernel<LN><<<(unsigned)a.N, kRowThreads, smem, cuda_stream()>>>(
        a.out, a.mean, a.rstd, a.inp, a.w, a.b, a.N, a.C, kEps);
    CUDA_LAUNCH_CHECK();
}

struct Variant {
    const char *name;
    void (*fn[2])(const Nm &); // [0] rmsnorm, [1] layernorm
};
const Variant kVariants[] = {
    {"production: kernels_cuda (warp per row)", {nm_production<false>, nm_production<true>}},
    {"one thread per row", {nm_thread<false>, nm_thread<true>}},
    {"one block per row, row in smem", {nm_block<false>, nm_block<true>}},
};
constexpr int kNV = sizeof kVariants / sizeof *kVariants;

void run_shape(Lab *L, int N, int C, int with_bias, uint64_t seed) {
    const double tol = 1e-5;
    size_t e = (size_t)N * C;
    // an offset of 3 on x: the two-pass variance is what keeps it exact
    float *hx = lab_rand(e, seed, 2, 4), *hw = lab_rand(C, seed + 1, 0.5f, 1.5f);
    float *hb = lab_rand(C, seed + 2, -1, 1);
    float *ref = lab_rand(e, 1, 0, 1), *rmean = lab_rand(N, 1, 0, 1), *rrstd = lab_rand(N, 1, 0, 1);
    Nm a = {lab_nan(e), lab_nan(N), lab_nan(N), lab_upload(hx, e), lab_upload(hw, C),
            with_bias ? lab_upload(hb, C) : nullptr, N, C};
    double bytes = 2.0 * e * sizeof(float);
    float copy_ms = L->check_only ? 0.0f : lab_copy_ms(bytes);
    for (int ln = 1; ln >= 0; ln--) {
        const char *op = ln ? "layernorm" : "rmsnorm";
        if (ln) lab_op_layernorm_forward(&kernels_cpu, ref, rmean, rrstd, hx, hw, with_bias ? hb : nullptr, N, C, kEps);
        else lab_op_rmsnorm_forward(&kernels_cpu, ref, rrstd, hx, hw, N, C, kEps);
        printf("%s forward N=%d C=%d%s; tol %.0e", op, N, C, ln ? (with_bias ? " with bias" : " no bias") : "", tol);
        if (!L->check_only) printf("; reference: device-to-device copy of the same bytes (%.4f ms)", copy_ms);
        printf("\n");
        for (int v = 0; v < kNV; v++) {
            if (!lab_want(L, v, kNV)) continue;
            lab_fill_nan(a.out, e);
            lab_fill_nan(a.mean, N);
            lab_fill_nan(a.rstd, N);
            kVariants[v].fn[ln](a);
            lab_check(L, lab_name("v%d %s: out", v, kVariants[v].name), ref, a.out, e, tol);
            if (ln) lab_check(L, lab_name("v%d %s: mean", v, kVariants[v].name), rmean, a.mean, N, tol);
            lab_check(L, lab_name("v%d %s: rstd", v, kVariants[v].name), rrstd, a.rstd, N, tol);
            if (!L->check_only)
                lab_row(v, kVariants[v].name, lab_time([&] { kVariants[v].fn[ln](a); }), 0, bytes, copy_ms);
        }
        fflush(stdout);
    }
    cuda_free(a.out);
    cuda_free(a.mean);
    cuda_free(a.rstd);
    cuda_free((void *)a.inp);
    cuda_free((void *)a.w);
    if (a.b) cuda_free((void *)a.b);
    free(hx);
    free(hw);
    free(hb);
    free(ref);
    free(rmean);
    free(rrstd);
}

} // namespace

extern "C" void lab_norm(Lab *L) {
    if (L->check_only) {
        run_shape(L, 37, 83, 1, 201); // C % 4 != 0: production's scalar path and its tail lanes
        run_shape(L, 19, 264, 0, 211); // C % 4 == 0: production's float4 path, no bias
        return;
    }
    run_shape(L, 8192, 1024, 1, 201);
    run_shape(L, 8192, 4096, 1, 211);
}
