// attention.cu (lab) - attention forward (kernels/kernels.h: softmax(q k^T / sqrt(HD)) v per
// head, GQA, right-padded sequences, optional causal mask), out and lse, fp32.
//   v0 production: kernels_cuda.attention_forward (warp per query row, K/V tiles of 32 keys in
//      shared memory, online softmax)
//   v1 naive: one 128-thread block per query row; the row's scores are materialised in shared
//      memory (T floats), then max, exp and sum, then each thread a few output dims
//   v2 one thread per query row: the CPU's online-softmax loop (kernels/cpu/attention.c),
//      accumulating in the output row in global memory
//   v3 FlashAttention-2 on the tensor cores (kernels/cuda/attention_fa2.cu: bf16 Q/K/V, fp32
//      accumulation, mma.sync, cp.async double buffering), the op's bf16 path
//      (precision KP_BF16, attention_impl mmrm); HD 64 and 128 only, else the production kernel. Checked
//      against the fp32 CPU reference at 1e-2 (bf16 input rounding).
// The reference is the production kernel: cuDNN's fused attention is not linked yet.
#include <math.h>

#include <stdio.h>
#include <stdlib.h>

#include "bench/lab/lab.h"
#include "kernels/cuda/cuda_common.cuh"

namespace {

__device__ __forceinline__ int clamp_len(int L, int T) { return L < 0 ? 0 : (L > T ? T : L); }

constexpr int kNaiveThreads = 128; // a power of two (tree)

__device__ float block_max(float v, float *red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int s = kNaiveThreads / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
        __syncthreads();
    }
    float r = red[0];
    __syncthreads();
    return r;
}

__device__ float block_sum(float v, float *red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int s = kNaiveThreads / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    float r = red[0];
    __syncthreads();
    return r;
}

// grid (T, NH, B), one block per query row
__global__ void __launch_bounds__(kNaiveThreads)
attn_naive_kernel(float *out, float *lse, const float *q, const float *k, const float *v,
                  const int *lengths, int T, int NH, int KV, int HD, int causal, float scale) {
    extern __shared__ float sc[]; // (T): scores, then probabilities, of this row
    __shared__ float red[kNaiveThreads];
    const int t = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    const int L = clamp_len(lengths[b], T);
    const size_t row = ((size_t)b * T + t) * NH + h;
    float *o = out + row * HD;
    float *l = lse + ((size_t)b * NH + h) * T + t;
    if (t >= L) { // padded row (the whole block leaves, before any barrier)
        for (int d = tid; d < HD; d += kNaiveThreads) o[d] = 0.0f;
        if (tid == 0) *l = 0.0f;
        return;
    }
    const int nk = causal ? t + 1 : L;
    const float *qr = q + row * HD;
    const size_t kvs = (size_t)KV * HD, kv0 = ((size_t)b * T * KV + h / (NH / KV)) * HD;
    float mx = -INFINITY;
    for (int j = tid; j < nk; j += kNaiveThreads) {
        const float *kr = k + kv0 + j * kvs;
        float dot = 0.0f;
        for (int d = 0; d < HD; d++) dot += qr[d] * kr[d];
        sc[j] = scale * dot;
        mx = fmaxf(mx, sc[j]);
    }
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int j = tid; j < nk; j += kNaiveThreads) {
        float p = expf(sc[j] - mx);
        sc[j] = p;
        sum += p;
    }
    sum = block_sum(sum, red); // its barriers also publish every sc[j]
    const float inv = 1.0f / sum;
    for (int d = tid; d < HD; d += kNaiveThreads) {
        float acc = 0.0f;
        for (int j = 0; j < nk; j++) acc += sc[j] * v[kv0 + j * kvs + d];
        o[d] = acc * inv;
    }
    if (tid == 0) *l = mx + logf(sum);
}

// one thread per row r = (b*T + t)*NH + h
__global__ void attn_thread_kernel(float *out, float *lse, const float *q, const float *k,
                                   const float *v, const int *lengths, int B, int T, int NH,
                                   int KV, int HD, int causal, float scale) {
    size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= (size_t)B * T * NH) return;
    const int h = (int)(r % NH), t = (int)(r / NH % T), b = (int)(r / NH / T);
    const int L = clamp_len(lengths[b], T);
    float *o = out + r * HD;
    float *l = lse + ((size_t)b * NH + h) * T + t;
    for (int d = 0; d < HD; d++) o[d] = 0.0f;
    if (t >= L) {
        *l = 0.0f;
        return;
    }
    const int nk = causal ? t + 1 : L;
    const float *qr = q + r * HD;
    const size_t kvs = (size_t)KV * HD, kv0 = ((size_t)b * T * KV + h / (NH / KV)) * HD;
    float m = -INFINITY, sum = 0.0f;
    for (int j = 0; j < nk; j++) {
        const float *kr = k + kv0 + j * kvs, *vr = v + kv0 + j * kvs;
        float dot = 0.0f;
        for (int d = 0; d < HD; d++) dot += qr[d] * kr[d];
        float s = scale * dot;
        if (s > m) {
            float c = expf(m - s); // 0 on the first key
            sum *= c;
            for (int d = 0; d < HD; d++) o[d] *= c;
            m = s;
        }
        float p = expf(s - m);
        sum += p;
        for (int d = 0; d < HD; d++) o[d] += p * vr[d];
    }
    float inv = 1.0f / sum;
    for (int d = 0; d < HD; d++) o[d] *= inv;
    *l = m + logf(sum);
}

struct At {
    float *out, *lse;
    const float *q, *k, *v;
    const int *len;
    int B, T, NH, KV, HD, causal;
};

float scale_of(int HD) { return (float)(1.0 / sqrt((double)HD)); } // as the CPU

void at_production(const At &a) {
    lab_op_attention_forward(&kernels_cuda, a.out, a.lse, a.q, a.k, a.v, a.len, a.B, a.T, a.NH, a.KV, a.HD,
                             a.causal, KP_FP32);
}

void at_fa2(const At &a) {
    cuda_attention_set_impl(ATTN_IMPL_MMRM);
    lab_op_attention_forward(&kernels_cuda, a.out, a.lse, a.q, a.k, a.v, a.len, a.B, a.T, a.NH, a.KV, a.HD,
                             a.causal, KP_BF16);
    cuda_attention_set_impl(ATTN_IMPL_AUTO);
}

void at_naive(const At &a) {
    size_t smem = (size_t)a.T * sizeof(float);
    static size_t opted = 48 << 10;
    if (smem > opted) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_naive_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        opted = smem;
    }
    dim3 grid((unsigned)a.T, (unsigned)a.NH, (unsigned)a.B);
    attn_naive_kernel<<<grid, kNaiveThreads, smem, cuda_stream()>>>(a.out, a.lse, a.q, a.k, a.v, a.len, a.T,
                                                                      a.NH, a.KV, a.HD, a.causal, scale_of(a.HD));
    CUDA_LAUNCH_CHECK();
}

void at_thread(const At &a) {
    size_t rows = (size_t)a.B * a.T * a.NH;
    attn_thread_kernel<<<(unsigned)((rows + 127) / 128), 128, 0, cuda_stream()>>>(
        a.out, a.lse, a.q, a.k, a.v, a.len, a.B, a.T, a.NH, a.KV, a.HD, a.causal, scale_of(a.HD));
    CUDA_LAUNCH_CHECK();
}

const struct {
    const char *name;
    void (*fn)(const At &);
    double tol; // against the fp32 CPU reference
} kVariants[] = {
    {"production: kernels_cuda (warp per row, tiles)", at_production, 1e-5},
    {"naive: block per row, score row in smem", at_naive, 1e-5},
    {"one thread per row, online softmax", at_thread, 1e-5},
    {"FA2: bf16 mma.sync, cp.async (HD 64/128)", at_fa2, 1e-2},
};
constexpr int kNV = sizeof kVariants / sizeof *kVariants;

void run_shape(Lab *L, int B, int T, int NH, int KV, int HD, int causal, const int *lengths,
               uint64_t seed) {
    const double tol = kVariants[0].tol;
    size_t nq = (size_t)B * T * NH * HD, nk = (size_t)B * T * KV * HD, nl = (size_t)B * NH * T;
    float *hq = lab_rand(nq, seed, -1, 1), *hk = lab_rand(nk, seed + 1, -1, 1);
    float *hv = lab_rand(nk, seed + 2, -1, 1);
    float *ref = lab_rand(nq, 1, 0, 1), *rlse = lab_rand(nl, 1, 0, 1);
    lab_op_attention_forward(&kernels_cpu, ref, rlse, hq, hk, hv, lengths, B, T, NH, KV, HD, causal,
                             KP_FP32);
    At a = {lab_nan(nq), lab_nan(nl), lab_upload(hq, nq), lab_upload(hk, nk), lab_upload(hv, nk),
            lab_upload_i(lengths, B), B, T, NH, KV, HD, causal};
    printf("attention forward B=%d T=%d NH=%d KV=%d HD=%d %s, lengths", B, T, NH, KV, HD,
           causal ? "causal" : "full");
    for (int b = 0; b < B; b++) printf("%s%d", b ? "," : " ", lengths[b]);
    printf("; tol %.0e (v3 %.0e)%s\n", tol, kVariants[3].tol,
           L->check_only ? "" : "; reference: production (v0); cuDNN's fused attention is not linked yet");
    double flop = 0; // 4 HD flop per visible (query row, key) pair: q.k and p.v
    for (int b = 0; b < B; b++) {
        double Lb = lengths[b];
        flop += 4.0 * NH * HD * (causal ? Lb * (Lb + 1) / 2 : Lb * Lb);
    }
    float ref_ms = L->check_only ? 0.0f : lab_time([&] { at_production(a); });
    for (int v = 0; v < kNV; v++) {
        if (!lab_want(L, v, kNV)) continue;
        lab_fill_nan(a.out, nq);
        lab_fill_nan(a.lse, nl);
        kVariants[v].fn(a);
        lab_check(L, lab_name("v%d %s: out", v, kVariants[v].name), ref, a.out, nq, kVariants[v].tol);
        lab_check(L, lab_name("v%d %s: lse", v, kVariants[v].name), rlse, a.lse, nl, kVariants[v].tol);
        if (!L->check_only) lab_row(v, kVariants[v].name, lab_time([&] { kVariants[v].fn(a); }), flop, 0, ref_ms);
    }
    fflush(stdout);
    cuda_free(a.out);
    cuda_free(a.lse);
    cuda_free((void *)a.q);
    cuda_free((void *)a.k);
    cuda_free((void *)a.v);
    cuda_free((void *)a.len);
    free(hq);
    free(hk);
    free(hv);
    free(ref);
    free(rlse);
}

} // namespace

extern "C" void lab_attention(Lab *L) {
    if (L->check_only) {
        const int l1[] = {19, 11}, l2[] = {37, 20};
        run_shape(L, 2, 19, 4, 2, 40, 0, l1, 301); // GQA 2:1, odd HD, a padded sequence
        run_shape(L, 2, 37, 3, 1, 64, 1, l2, 311); // causal, MQA, two key tiles
        const int l3[] = {70, 65};
        run_shape(L, 2, 70, 4, 2, 128, 1, l3, 321); // HD 128 (v3), two 64-row tiles
        return;
    }
    const int l1[] = {1024, 1024, 1024, 1024}, l2[] = {2048, 2048};
    run_shape(L, 4, 1024, 16, 16, 64, 0, l1, 301);
    run_shape(L, 2, 2048, 14, 2, 64, 1, l2, 311);
    run_shape(L, 2, 2048, 16, 4, 128, 1, l2, 331);
}
