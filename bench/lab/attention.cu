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
//   v4 cuDNN's fused flash attention (kernels/cuda/attention_cudnn.cu, bf16), the op's path
//      with attention_impl = auto | cudnn; skipped in a build without cuDNN (the emulator).
// The timed reference of the checked shapes is the production kernel. Without --check the
// lab then times the issue's model shapes (perf_table): fp32 production, FA2 and cuDNN,
// forward and backward, TFLOP/s, % of cuDNN and % of the device's dense bf16 peak, and checks
// FA2's forward output against cuDNN's.
#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/lab/lab.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

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

// cuDNN directly (not through the op with attention_impl = cudnn, which is fatal when no
// engine takes the graph): a graph cuDNN rejects leaves the NaN outputs, a failed check
void at_cudnn(const At &a) {
    cuda_attention_cudnn_forward(a.out, a.lse, a.q, a.k, a.v, a.len, a.B, a.T, a.NH, a.KV, a.HD,
                                 a.causal, 0);
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
    {"cuDNN fused flash attention, bf16", at_cudnn, 1e-2},
};
constexpr int kCudnnVariant = 4;
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
           L->check_only ? "" : "; reference: production (v0)");
    double flop = 0; // 4 HD flop per visible (query row, key) pair: q.k and p.v
    for (int b = 0; b < B; b++) {
        double Lb = lengths[b];
        flop += 4.0 * NH * HD * (causal ? Lb * (Lb + 1) / 2 : Lb * Lb);
    }
    float ref_ms = L->check_only ? 0.0f : lab_time([&] { at_production(a); });
    for (int v = 0; v < kNV; v++) {
        if (!lab_want(L, v, kNV)) continue;
        if (v == kCudnnVariant && !cuda_cudnn_compiled()) {
            printf("  skip v%d %s: %s\n", v, kVariants[v].name, cuda_cudnn_describe());
            continue;
        }
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

// dense bf16 tensor-core peak of the bound GPU in TFLOP/s (MMRM_BF16_PEAK_TFLOPS overrides;
// 0: unknown). Datasheet numbers without sparsity.
double bf16_peak_tflops() {
    const char *env = getenv("MMRM_BF16_PEAK_TFLOPS");
    if (env && *env) return atof(env);
    const char *d = cuda_device_description();
    if (strstr(d, "H200") || strstr(d, "H100 80GB HBM3") || strstr(d, "H100 SXM")) return 989.4;
    if (strstr(d, "H100 NVL")) return 835.0;
    if (strstr(d, "H100")) return 756.0; // PCIe
    if (strstr(d, "A100")) return 312.0;
    return 0.0;
}

struct Perf {
    float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
    const int *len;
    int B, T, NH, KV, HD, causal;
};

// impl 0: production fp32, 1: FA2 (mmrm bf16), 2: cuDNN (bf16; 0 returned when cuDNN does
// not take the call, so that its column never times another kernel)
int perf_fwd(const Perf &p, int impl) {
    if (impl == 2)
        return cuda_attention_cudnn_forward(p.out, p.lse, p.q, p.k, p.v, p.len, p.B, p.T, p.NH,
                                            p.KV, p.HD, p.causal, 0);
    cuda_attention_set_impl(ATTN_IMPL_MMRM);
    lab_op_attention_forward(&kernels_cuda, p.out, p.lse, p.q, p.k, p.v, p.len, p.B, p.T, p.NH,
                             p.KV, p.HD, p.causal, impl ? KP_BF16 : KP_FP32);
    cuda_attention_set_impl(ATTN_IMPL_AUTO);
    return 1;
}

int perf_bwd(const Perf &p, int impl) {
    if (impl == 2)
        return cuda_attention_cudnn_backward(p.dq, p.dk, p.dv, p.dout, p.out, p.lse, p.q, p.k,
                                             p.v, p.len, p.B, p.T, p.NH, p.KV, p.HD, p.causal, 0);
    cuda_attention_set_impl(ATTN_IMPL_MMRM);
    lab_op_attention_backward(&kernels_cuda, p.dq, p.dk, p.dv, p.dout, p.out, p.lse, p.q, p.k,
                              p.v, p.len, p.B, p.T, p.NH, p.KV, p.HD, p.causal,
                              impl ? KP_BF16 : KP_FP32);
    cuda_attention_set_impl(ATTN_IMPL_AUTO);
    return 1;
}

void perf_shape(Lab *L, const char *model, int B, int T, int NH, int KV, int HD, int causal,
                double peak) {
    const size_t nq = (size_t)B * T * NH * HD, nk = (size_t)B * T * KV * HD;
    const size_t nl = (size_t)B * NH * T;
    float *hq = lab_rand(nq, 401, -1, 1), *hk = lab_rand(nk, 402, -1, 1);
    float *hv = lab_rand(nk, 403, -1, 1), *hd = lab_rand(nq, 404, -1, 1);
    int *hl = (int *)malloc((size_t)B * sizeof(int));
    for (int b = 0; b < B; b++) hl[b] = T;
    Perf p = {lab_upload(hq, nq), lab_upload(hk, nk), lab_upload(hv, nk), lab_nan(nq),
              lab_nan(nl),        lab_upload(hd, nq), lab_nan(nq),        lab_nan(nk),
              lab_nan(nk),        lab_upload_i(hl, B), B, T, NH, KV, HD, causal};
    cuda_memset0(p.dq, nq * 4), cuda_memset0(p.dk, nk * 4), cuda_memset0(p.dv, nk * 4);
    const double flop = 4.0 * B * NH * HD * (causal ? (double)T * (T + 1) / 2 : (double)T * T);
    static const char *const names[3] = {"mmrm fp32 (v0)", "mmrm FA2 bf16 (v3)", "cuDNN bf16 (v4)"};
    float fwd[3] = {0, 0, 0}, bwd[3] = {0, 0, 0};
    float *fa2_out = (float *)malloc(nq * sizeof(float));
    // the fp32 kernels are timed up to T = 1025 only: at ~1% of the tensor-core peak the
    // longer shapes would take most of tests/gpu/attention.sh's time
    const bool fp32_timed = T <= 1025;
    for (int impl = 2; impl >= 0; impl--) { // cuDNN first: the reference of the % columns
        if (impl == 2 && !cuda_cudnn_compiled()) continue;
        if (impl == 0 && !fp32_timed) continue;
        if (!perf_fwd(p, impl)) continue;
        fwd[impl] = lab_time([&] { perf_fwd(p, impl); });
        if (impl == 1) cuda_copy_d2h(fa2_out, p.out, nq * sizeof(float));
        perf_fwd(p, impl); // out and lse of this implementation for its backward
        if (perf_bwd(p, impl)) bwd[impl] = lab_time([&] { perf_bwd(p, impl); });
    }
    printf("%-13s B=%-2d T=%-4d NH=%-2d KV=%-2d HD=%-3d %-6s\n", model, B, T, NH, KV, HD,
           causal ? "causal" : "bidir");
    for (int impl = 0; impl < 3; impl++) {
        char f[64] = "", b[64] = "";
        auto cell = [&](char *o, float ms, float ref, double fl) {
            if (!(ms > 0)) {
                snprintf(o, 64, "%38s", impl == 2 ? "n/a (not run by cuDNN)"
                                        : impl == 0 && !fp32_timed ? "not timed (T > 1025)"
                                                                   : "n/a (no GPU time)");
                return;
            }
            const double tf = fl / ms / 1e9;
            char pc[16] = "    -", pk[16] = "    -";
            if (ref > 0) snprintf(pc, sizeof pc, "%5.0f%%", 100.0 * ref / ms);
            if (peak > 0) snprintf(pk, sizeof pk, "%5.1f%%", 100.0 * tf / peak);
            snprintf(o, 64, "%9.3f ms %7.1f TF/s %s %s", ms, tf, pc, pk);
        };
        cell(f, fwd[impl], fwd[2], flop);
        cell(b, bwd[impl], bwd[2], 2.5 * flop);
        printf("  %-20s fwd %s | bwd %s\n", names[impl], f, b);
    }
    if (fwd[1] > 0 && fwd[2] > 0) { // both bf16 paths on the same inputs
        perf_fwd(p, 2);
        lab_check(L, lab_name("%s T=%d: FA2 out vs cuDNN out", model, T), fa2_out, p.out, nq, 1e-2);
    }
    fflush(stdout);
    free(fa2_out), free(hq), free(hk), free(hv), free(hd), free(hl);
    float *bufs[] = {p.q, p.k, p.v, p.out, p.lse, p.dout, p.dq, p.dk, p.dv};
    for (float *d : bufs) cuda_free(d);
    cuda_free((void *)p.len);
}

// The issue's shapes, 16384 query tokens per call (B = 16384 / T; the ViT: 7 tiles).
void perf_table(Lab *L) {
    const double peak = bf16_peak_tflops();
    printf("\nattention at the model shapes (%s; bf16 peak %s): ms, TFLOP/s, %% of cuDNN, %% of "
           "peak; backward = 2.5x the forward's flop; %s\n",
           cuda_device_description(), peak > 0 ? lab_name("%.0f TFLOP/s", peak) : "unknown",
           cuda_cudnn_describe());
    perf_shape(L, "InternViT-300M", 7, 1025, 16, 16, 64, 0, peak);
    for (int T = 512; T <= 4096; T *= 2) perf_shape(L, "Qwen2-0.5B", 16384 / T, T, 14, 2, 64, 1, peak);
    for (int T = 1024; T <= 4096; T *= 2) perf_shape(L, "InternLM2-7B", 16384 / T, T, 32, 8, 128, 1, peak);
    // InternLM2-7B's head dim without grouped KV heads: the backward's cuDNN reference at
    // HD 128 (attention_cudnn.cu's backward graph has no GQA)
    for (int T = 1024; T <= 4096; T *= 2) perf_shape(L, "MHA-128", 16384 / T, T, 32, 32, 128, 1, peak);
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
    if (L->variant < 0) perf_table(L);
}
