// matmul.cu (lab) - out (N, OC) = inp (N, C) . weight (OC, C)^T + bias (OC), fp32.
//   v0 production: kernels_cuda.matmul_forward (cuBLASLt, CUBLAS_COMPUTE_32F), the reference
//   v1 naive: one thread per output, the dot product straight from global memory
//   v2 tiled: 32x32 output tile per 1024-thread block, 32-wide K slabs of inp and weight staged
//      in shared memory (weight tile padded to stride 33: no bank conflicts)
//   v3 register-blocked: 64x64 output tile per 256-thread block, 4x4 outputs per thread in
//      registers, 16-wide K slabs staged k-major in shared memory
// Every variant starts from the bias and adds the products in increasing k, in fp32.
#include <stdio.h>
#include <stdlib.h>

#include "bench/lab/lab.h"
#include "kernels/cuda/cuda_common.cuh"

namespace {

__global__ void mm_naive_kernel(float *out, const float *inp, const float *weight,
                                const float *bias, int N, int C, int OC) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    int n = blockIdx.y * blockDim.y + threadIdx.y;
    if (n >= N || o >= OC) return;
    const float *x = inp + (size_t)n * C, *w = weight + (size_t)o * C;
    float acc = bias ? bias[o] : 0.0f;
    for (int c = 0; c < C; c++) acc += x[c] * w[c];
    out[(size_t)n * OC + o] = acc;
}

constexpr int T2 = 32; // v2 tile

__global__ void __launch_bounds__(T2 *T2)
mm_tiled_kernel(float *out, const float *inp, const float *weight, const float *bias, int N,
                int C, int OC) {
    __shared__ float xs[T2][T2];     // xs[r][k] = inp[n0 + r][k0 + k]
    __shared__ float ws[T2][T2 + 1]; // ws[r][k] = weight[o0 + r][k0 + k]
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int n0 = blockIdx.y * T2, o0 = blockIdx.x * T2;
    const int n = n0 + ty, o = o0 + tx;
    float acc = (bias && o < OC) ? bias[o] : 0.0f;
    for (int k0 = 0; k0 < C; k0 += T2) {
        // coalesced: consecutive tx read consecutive k of one row
        xs[ty][tx] = (n < N && k0 + tx < C) ? inp[(size_t)n * C + k0 + tx] : 0.0f;
        ws[ty][tx] = (o0 + ty < OC && k0 + tx < C) ? weight[(size_t)(o0 + ty) * C + k0 + tx] : 0.0f;
        __syncthreads();
        const int kn = min(T2, C - k0);
        for (int k = 0; k < kn; k++) acc += xs[ty][k] * ws[tx][k];
        __syncthreads();
    }
    if (n < N && o < OC) out[(size_t)n * OC + o] = acc;
}

constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4; // v3
constexpr int T3 = (BM / TM) * (BN / TN);                // 256 threads

__global__ void __launch_bounds__(T3)
mm_regtile_kernel(float *out, const float *inp, const float *weight, const float *bias, int N,
                  int C, int OC) {
    __shared__ float xs[BK][BM + 4]; // k-major: xs[k][r] = inp[n0 + r][k0 + k]
    __shared__ float ws[BK][BN + 4]; //           ws[k][r] = weight[o0 + r][k0 + k]
    const int tid = threadIdx.x;
    const int tn = tid % (BN / TN), tm = tid / (BN / TN); // this thread's 4x4 sub-tile
    const int n0 = blockIdx.y * BM, o0 = blockIdx.x * BN;
    float acc[TM][TN];
#pragma unroll
    for (int j = 0; j < TN; j++) {
        int o = o0 + tn * TN + j;
        float b = (bias && o < OC) ? bias[o] : 0.0f;
#pragma unroll
        for (int i = 0; i < TM; i++) acc[i][j] = b;
    }
    for (int k0 = 0; k0 < C; k0 += BK) {
        // 64 rows x 16 k of each operand: 4 loads per thread, consecutive threads along k
        for (int idx = tid; idx < BM * BK; idx += T3) {
            int r = idx / BK, k = idx % BK;
            int n = n0 + r, o = o0 + r, kk = k0 + k;
            xs[k][r] = (n < N && kk < C) ? inp[(size_t)n * C + kk] : 0.0f;
            ws[k][r] = (o < OC && kk < C) ? weight[(size_t)o * C + kk] : 0.0f;
        }
        __syncthreads();
        const int kn = min(BK, C - k0);
        for (int k = 0; k < kn; k++) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; i++) a[i] = xs[k][tm * TM + i];
#pragma unroll
            for (int j = 0; j < TN; j++) b[j] = ws[k][tn * TN + j];
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; i++) {
        int n = n0 + tm * TM + i;
        if (n >= N) continue;
#pragma unroll
        for (int j = 0; j < TN; j++) {
            int o = o0 + tn * TN + j;
            if (o < OC) out[(size_t)n * OC + o] = acc[i][j];
        }
    }
}

struct Mm {
    float *out;
    const float *inp, *weight, *bias;
    int N, C, OC;
};

void mm_production(const Mm &m) {
    lab_op_matmul_forward(&kernels_cuda, m.out, m.inp, m.weight, m.bias, m.N, m.C, m.OC);
}

void mm_naive(const Mm &m) {
    dim3 block(32, 8), grid((unsigned)((m.OC + 31) / 32), (unsigned)((m.N + 7) / 8));
    mm_naive_kernel<<<grid, block, 0, cuda_stream()>>>(m.out, m.inp, m.weight, m.bias, m.N, m.C, m.OC);
    CUDA_LAUNCH_CHECK();
}

void mm_tiled(const Mm &m) {
    dim3 block(T2, T2), grid((unsigned)((m.OC + T2 - 1) / T2), (unsigned)((m.N + T2 - 1) / T2));
    mm_tiled_kernel<<<grid, block, 0, cuda_stream()>>>(m.out, m.inp, m.weight, m.bias, m.N, m.C, m.OC);
    CUDA_LAUNCH_CHECK();
}

void mm_regtile(const Mm &m) {
    dim3 grid((unsigned)((m.OC + BN - 1) / BN), (unsigned)((m.N + BM - 1) / BM));
    mm_regtile_kernel<<<grid, T3, 0, cuda_stream()>>>(m.out, m.inp, m.weight, m.bias, m.N, m.C, m.OC);
    CUDA_LAUNCH_CHECK();
}

const struct {
    const char *name;
    void (*fn)(const Mm &);
} kVariants[] = {
    {"production: kernels_cuda (cuBLASLt)", mm_production},
    {"naive: one thread per output", mm_naive},
    {"tiled: 32x32 smem tiles", mm_tiled},
    {"register-blocked: 64x64 tile, 4x4/thread", mm_regtile},
};
constexpr int kNV = sizeof kVariants / sizeof *kVariants;

void run_shape(Lab *L, int N, int C, int OC, int with_bias, uint64_t seed) {
    const double tol = 1e-5;
    size_t nx = (size_t)N * C, nw = (size_t)OC * C, ny = (size_t)N * OC;
    float *hx = lab_rand(nx, seed, -1, 1), *hw = lab_rand(nw, seed + 1, -1, 1);
    float *hb = lab_rand(OC, seed + 2, -1, 1), *ref = lab_rand(ny, seed + 3, -1, 1);
    lab_op_matmul_forward(&kernels_cpu, ref, hx, hw, with_bias ? hb : nullptr, N, C, OC);
    Mm m = {lab_nan(ny), lab_upload(hx, nx), lab_upload(hw, nw), with_bias ? lab_upload(hb, OC) : nullptr,
            N, C, OC};
    printf("matmul forward N=%d C=%d OC=%d %s bias; tol %.0e%s\n", N, C, OC, with_bias ? "with" : "no",
           tol, L->check_only ? "" : "; reference: cuBLASLt (v0)");
    double flop = 2.0 * N * C * OC;
    float ref_ms = L->check_only ? 0.0f : lab_time([&] { mm_production(m); });
    for (int v = 0; v < kNV; v++) {
        if (!lab_want(L, v, kNV)) continue;
        lab_fill_nan(m.out, ny);
        kVariants[v].fn(m);
        lab_check(L, lab_name("v%d %s", v, kVariants[v].name), ref, m.out, ny, tol);
        if (!L->check_only) lab_row(v, kVariants[v].name, lab_time([&] { kVariants[v].fn(m); }), flop, 0, ref_ms);
    }
    fflush(stdout);
    cuda_free(m.out);
    cuda_free((void *)m.inp);
    cuda_free((void *)m.weight);
    if (m.bias) cuda_free((void *)m.bias);
    free(hx);
    free(hw);
    free(hb);
    free(ref);
}

} // namespace

extern "C" void lab_matmul(Lab *L) {
    if (L->check_only) {
        run_shape(L, 37, 29, 45, 1, 101); // odd everything: partial tiles on every side
        run_shape(L, 70, 67, 33, 0, 111); // several tiles of each kind, no bias
        return;
    }
    // Qwen2-0.5B / InternViT-300M-like linear layers (4096 tokens)
    run_shape(L, 4096, 896, 4864, 1, 101);
    run_shape(L, 4096, 1024, 4096, 1, 111);
}
