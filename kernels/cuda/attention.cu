// attention.cu - scaled dot-product attention on the GPU, forward and backward, fp32, with
// grouped-query heads, right-padded sequences and an optional causal mask. Same contract and
// same arithmetic as kernels/cpu/attention.c (see kernels/kernels.h):
//   query head h reads kv head h / (NH/KV); L = lengths[b] (device memory);
//   row t < L sees keys j < L (bidirectional) or j <= t (causal; t < L so j < L too);
//   rows t >= L: out = 0, lse = 0, no gradient; keys j >= L get no gradient;
//   s_j = scale * (q . k_j), scale = 1/sqrt(HD); lse = m + log(sum_j exp(s_j - m)).
//   seg (B, T) or NULL: keys the segment rule (op_list.h) hides from a query are masked
//   inside the tiles (scores -inf, p = 0; a tile hidden entirely is skipped by the forward).
//   This is the exact fp32 path; the bf16 one (attention_fa2.cu) skips whole hidden tiles.
// Like the CPU (and flash attention) nothing of size T x T is stored: the forward keeps a
// running max and rescales, the backward recomputes p = exp(s - lse).
//
// Forward (attn_fwd_kernel): a block of WARPS warps handles WARPS consecutive query rows t of
// one (b, h), one warp per row; grid (ceil(T/WARPS), NH, B). Keys are staged TILE = 32 at a
// time in shared memory (K and V tiles, rows padded to an odd stride so that lane j reading
// row j is bank-conflict free). Per tile lane j computes the score of key j against the
// warp's q (staged in shared memory, read as a broadcast), the warp takes the tile max and
// sum with shuffles, and every lane accumulates the output dims d = lane + 32 i it owns
// (i < NI = ceil(HD/32), registers) with p_j broadcast by __shfl_sync.
//
// Backward, deterministic and without atomics:
//  (a) attn_rowdot_kernel: D[b,h,t] = dout_t . out_t (valid rows; 0 otherwise), scratch slot 1.
//  (b) attn_dq_kernel (when dq): the forward's layout; per key tile lane j computes
//      p_j = exp(scale q.k_j - lse), dp_j = dout.v_j, ds_j = scale p_j (dp_j - D), and
//      dq[d] += sum_j ds_j k_j[d], summed in increasing j in registers, added once at the end.
//  (c) attn_dkdv_kernel (when dk or dv): a block of WARPS warps handles WARPS consecutive keys
//      j of one (b, kv head), one warp per key; grid (ceil(T/WARPS), KV, B). It walks the
//      group's query heads and their query rows t (t < L, t >= j when causal) in tiles of 32
//      staged in shared memory with their lse and D; lane i computes p and ds of query t0+i,
//      and the lanes accumulate dv[d] += p_i dout_i[d], dk[d] += ds_i q_i[d] in increasing
//      (h, t), added once to dk/dv at the end.
// Every gradient element is owned by one lane and summed in a fixed order.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/kernels.h"

namespace {
using namespace attn;

constexpr int WARPS = 8;      // rows (forward, dq) or keys (dk/dv) per block
constexpr int TILE = 32;      // keys (or queries) per shared-memory tile: one per lane
constexpr int THREADS = WARPS * 32;
constexpr int MAX_HD = 256;   // NI = HD/32 <= 8 accumulators per lane
constexpr unsigned FULL = 0xffffffffu;

// odd row stride >= HD: lane j reading element d of row j hits bank (j*ss + d) % 32, a
// permutation of the lanes when ss is odd
__host__ __device__ __forceinline__ int smem_stride(int HD) { return HD | 1; }


// keys/values j0 .. j0+tn-1 of one (b, kv head) into shared memory rows of stride ss; the
// whole block cooperates (callers put __syncthreads around it)
__device__ __forceinline__ void stage_kv_tile(float *Ks, float *Vs, const float *__restrict__ k,
                                              const float *__restrict__ v, size_t kv0,
                                              size_t kvstride, int j0, int tn, int HD, int ss) {
    for (int idx = threadIdx.x; idx < tn * HD; idx += THREADS) {
        int jj = idx / HD, d = idx - jj * HD;
        size_t g = kv0 + (size_t)(j0 + jj) * kvstride + d;
        Ks[jj * ss + d] = k[g];
        Vs[jj * ss + d] = v[g];
    }
}

// ---------------------------------------------------------------------------------------
// forward
// ---------------------------------------------------------------------------------------

template <int NI>
__global__ void __launch_bounds__(THREADS)
attn_fwd_kernel(float *__restrict__ out, float *__restrict__ lse, const float *__restrict__ q,
                const float *__restrict__ k, const float *__restrict__ v,
                const int *__restrict__ lengths, const int *__restrict__ seg, int T, int NH,
                int KV, int HD, int causal, float scale) {
    extern __shared__ float smem[];
    const int ss = smem_stride(HD);
    float *Ks = smem;                // (TILE, ss)
    float *Vs = Ks + TILE * ss;      // (TILE, ss)
    float *Qs = Vs + TILE * ss;      // (WARPS, HD)

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int h = blockIdx.y, b = blockIdx.z;
    const int t0 = blockIdx.x * WARPS, t = t0 + warp;
    const int L = clamp_len(lengths[b], T);
    const int kh = h / (NH / KV);
    const size_t row = ((size_t)b * T + t) * NH + h; // only used when t < T
    const bool row_valid = t < L;                    // implies t < T

    if (t < T && !row_valid) { // padded row: out = 0, lse = 0
        for (int d = lane; d < HD; d += 32) out[row * HD + d] = 0.0f;
        if (lane == 0) lse[((size_t)b * NH + h) * T + t] = 0.0f;
    }
    const int t_last = min(t0 + WARPS, L) - 1; // last valid row of the block
    if (t_last < t0) return;                   // no valid row: the whole block leaves
    const int kend = causal ? t_last + 1 : L;  // keys any row of the block sees
    const int nk = row_valid ? (causal ? t + 1 : L) : 0; // keys this warp's row sees
    const int *segb = seg ? seg + (size_t)b * T : nullptr;
    const int st = segb && row_valid ? segb[t] : 0;

    float *qs = Qs + warp * HD;
    if (row_valid)
        for (int d = lane; d < HD; d += 32) qs[d] = q[row * HD + d];

    const size_t kvstride = (size_t)KV * HD; // from key j to key j+1
    const size_t kv0 = ((size_t)b * T * KV + kh) * HD;
    float acc[NI];
#pragma unroll
    for (int i = 0; i < NI; i++) acc[i] = 0.0f;
    float m = -INFINITY, sum = 0.0f;

    for (int j0 = 0; j0 < kend; j0 += TILE) {
        const int tn = min(TILE, kend - j0);
        __syncthreads(); // the previous tile is consumed (first pass: qs is written)
        stage_kv_tile(Ks, Vs, k, v, kv0, kvstride, j0, tn, HD, ss);
        __syncthreads();
        if (j0 < nk) { // warp-uniform
            const int jn = min(TILE, nk - j0); // keys j0 .. j0+jn-1 pass the causal/length rule
            float s = -INFINITY;
            if (lane < jn && (!segb || seg_visible(st, segb[j0 + lane]))) {
                const float *kr = Ks + lane * ss;
                float dot = 0.0f;
                for (int d = 0; d < HD; d++) dot += qs[d] * kr[d];
                s = scale * dot;
            }
            // without seg key j0 is visible and the tile max finite; a tile the segments
            // hide entirely is skipped (warp-uniform: the max is the warp's)
            const float tmax = warp_max(s);
            if (tmax == -INFINITY) continue;
            const float mnew = fmaxf(m, tmax);
            const float r = expf(m - mnew); // 0 on the first tile (m = -inf)
            const float p = lane < jn ? expf(s - mnew) : 0.0f;
            sum = sum * r + warp_sum(p);
#pragma unroll
            for (int i = 0; i < NI; i++) acc[i] *= r;
            for (int jj = 0; jj < jn; jj++) {
                const float pj = __shfl_sync(FULL, p, jj);
                const float *vr = Vs + jj * ss;
#pragma unroll
                for (int i = 0; i < NI; i++) {
                    int d = lane + 32 * i;
                    if (d < HD) acc[i] += pj * vr[d];
                }
            }
            m = mnew;
        }
    }
    if (row_valid) {
        const float inv = 1.0f / sum;
#pragma unroll
        for (int i = 0; i < NI; i++) {
            int d = lane + 32 * i;
            if (d < HD) out[row * HD + d] = acc[i] * inv;
        }
        if (lane == 0) lse[((size_t)b * NH + h) * T + t] = m + logf(sum);
    }
}

// ---------------------------------------------------------------------------------------
// backward
// ---------------------------------------------------------------------------------------

// D[(b*NH + h)*T + t] = dout_row . out_row for t < L, 0 for padded rows. One warp per row.
__global__ void attn_rowdot_kernel(float *__restrict__ Dbuf, const float *__restrict__ dout,
                                   const float *__restrict__ out,
                                   const int *__restrict__ lengths, int B, int T, int NH,
                                   int HD) {
    const int lane = threadIdx.x % 32;
    const size_t nrows = (size_t)B * T * NH;
    const size_t warps = (size_t)gridDim.x * (blockDim.x / 32);
    for (size_t r = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < nrows;
         r += warps) {
        const int h = (int)(r % NH);
        const size_t bt = r / NH;
        const int t = (int)(bt % T), b = (int)(bt / T);
        float s = 0.0f;
        if (t < clamp_len(lengths[b], T)) {
            for (int d = lane; d < HD; d += 32) s += dout[r * HD + d] * out[r * HD + d];
            s = warp_sum(s);
        }
        if (lane == 0) Dbuf[((size_t)b * NH + h) * T + t] = s;
    }
}

template <int NI>
__global__ void __launch_bounds__(THREADS)
attn_dq_kernel(float *__restrict__ dq, const float *__restrict__ dout,
               const float *__restrict__ lse, const float *__restrict__ Dbuf,
               const float *__restrict__ q, const float *__restrict__ k,
               const float *__restrict__ v, const int *__restrict__ lengths,
               const int *__restrict__ seg, int T, int NH, int KV, int HD, int causal,
               float scale) {
    extern __shared__ float smem[];
    const int ss = smem_stride(HD);
    float *Ks = smem;                // (TILE, ss)
    float *Vs = Ks + TILE * ss;      // (TILE, ss)
    float *Qs = Vs + TILE * ss;      // (WARPS, HD)
    float *Os = Qs + WARPS * HD;     // (WARPS, HD): dout rows

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int h = blockIdx.y, b = blockIdx.z;
    const int t0 = blockIdx.x * WARPS, t = t0 + warp;
    const int L = clamp_len(lengths[b], T);
    const int kh = h / (NH / KV);
    const bool row_valid = t < L;

    const int t_last = min(t0 + WARPS, L) - 1;
    if (t_last < t0) return; // padded rows get no gradient
    const int kend = causal ? t_last + 1 : L;
    const int nk = row_valid ? (causal ? t + 1 : L) : 0;
    const int *segb = seg ? seg + (size_t)b * T : nullptr;
    const int st = segb && row_valid ? segb[t] : 0;

    const size_t row = ((size_t)b * T + t) * NH + h;
    float *qs = Qs + warp * HD, *os = Os + warp * HD;
    float lse_t = 0.0f, D_t = 0.0f;
    if (row_valid) {
        for (int d = lane; d < HD; d += 32) {
            qs[d] = q[row * HD + d];
            os[d] = dout[row * HD + d];
        }
        lse_t = lse[((size_t)b * NH + h) * T + t];
        D_t = Dbuf[((size_t)b * NH + h) * T + t];
    }

    const size_t kvstride = (size_t)KV * HD;
    const size_t kv0 = ((size_t)b * T * KV + kh) * HD;
    float acc[NI];
#pragma unroll
    for (int i = 0; i < NI; i++) acc[i] = 0.0f;

    for (int j0 = 0; j0 < kend; j0 += TILE) {
        const int tn = min(TILE, kend - j0);
        __syncthreads();
        stage_kv_tile(Ks, Vs, k, v, kv0, kvstride, j0, tn, HD, ss);
        __syncthreads();
        if (j0 < nk) {
            const int jn = min(TILE, nk - j0);
            float ds = 0.0f; // 0 for keys the segments hide (p = 0)
            if (lane < jn && (!segb || seg_visible(st, segb[j0 + lane]))) {
                const float *kr = Ks + lane * ss, *vr = Vs + lane * ss;
                float qk = 0.0f, dp = 0.0f;
                for (int d = 0; d < HD; d++) qk += qs[d] * kr[d];
                for (int d = 0; d < HD; d++) dp += os[d] * vr[d];
                const float p = expf(scale * qk - lse_t);
                ds = scale * p * (dp - D_t); // as the CPU: (scale * p) * (dp - D)
            }
            for (int jj = 0; jj < jn; jj++) {
                const float dsj = __shfl_sync(FULL, ds, jj);
                const float *kr = Ks + jj * ss;
#pragma unroll
                for (int i = 0; i < NI; i++) {
                    int d = lane + 32 * i;
                    if (d < HD) acc[i] += dsj * kr[d];
                }
            }
        }
    }
    if (row_valid) {
#pragma unroll
        for (int i = 0; i < NI; i++) {
            int d = lane + 32 * i;
            if (d < HD) dq[row * HD + d] += acc[i];
        }
    }
}

template <int NI>
__global__ void __launch_bounds__(THREADS)
attn_dkdv_kernel(float *__restrict__ dk, float *__restrict__ dv, const float *__restrict__ dout,
                 const float *__restrict__ lse, const float *__restrict__ Dbuf,
                 const float *__restrict__ q, const float *__restrict__ k,
                 const float *__restrict__ v, const int *__restrict__ lengths,
                 const int *__restrict__ seg, int T, int NH, int KV, int HD, int causal,
                 float scale) {
    extern __shared__ float smem[];
    const int ss = smem_stride(HD);
    float *Qt = smem;                // (TILE, ss): q rows of the query tile
    float *Ot = Qt + TILE * ss;      // (TILE, ss): dout rows of the query tile
    float *Lt = Ot + TILE * ss;      // (TILE): lse of the tile
    float *Dt = Lt + TILE;           // (TILE): D of the tile
    float *Kw = Dt + TILE;           // (WARPS, HD): each warp's key row
    float *Vw = Kw + WARPS * HD;     // (WARPS, HD): each warp's value row

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kh = blockIdx.y, b = blockIdx.z;
    const int j0 = blockIdx.x * WARPS, j = j0 + warp;
    const int L = clamp_len(lengths[b], T);
    if (j0 >= L) return; // keys j >= L get no gradient: nothing in this block
    const bool key_valid = j < L;
    const int group = NH / KV;
    const bool want_k = dk != nullptr, want_v = dv != nullptr;

    const int *segb = seg ? seg + (size_t)b * T : nullptr;
    const int sj = segb && key_valid ? segb[j] : 0;
    const size_t krow = ((size_t)b * T + j) * KV + kh; // only used when key_valid
    float *kw = Kw + warp * HD, *vw = Vw + warp * HD;
    if (key_valid)
        for (int d = lane; d < HD; d += 32) {
            kw[d] = k[krow * HD + d];
            vw[d] = v[krow * HD + d];
        }

    float acck[NI], accv[NI];
#pragma unroll
    for (int i = 0; i < NI; i++) acck[i] = accv[i] = 0.0f;

    // queries that see some key of the block: t < L, and t >= j0 when causal
    const int tstart = causal ? j0 : 0;
    for (int h = kh * group; h < (kh + 1) * group; h++) {
        const size_t lrow0 = ((size_t)b * NH + h) * T; // lse / D of (b, h, t = 0)
        for (int tq0 = tstart; tq0 < L; tq0 += TILE) {
            const int tn = min(TILE, L - tq0);
            __syncthreads(); // previous tile consumed (first pass: kw/vw written)
            for (int idx = threadIdx.x; idx < tn * HD; idx += THREADS) {
                int ii = idx / HD, d = idx - ii * HD;
                size_t g = (((size_t)b * T + tq0 + ii) * NH + h) * HD + d;
                Qt[ii * ss + d] = q[g];
                Ot[ii * ss + d] = dout[g];
            }
            for (int ii = threadIdx.x; ii < tn; ii += THREADS) {
                Lt[ii] = lse[lrow0 + tq0 + ii];
                Dt[ii] = Dbuf[lrow0 + tq0 + ii];
            }
            __syncthreads();
            if (!key_valid) continue; // warp-uniform
            // the lanes of queries before j (causal) or past the tile are skipped
            const int i_lo = causal ? max(0, j - tq0) : 0;
            if (i_lo >= tn) continue; // warp-uniform: the whole tile is before key j
            float p = 0.0f, ds = 0.0f; // 0 for queries the segments hide the key from
            if (lane >= i_lo && lane < tn && (!segb || seg_visible(segb[tq0 + lane], sj))) {
                const float *qr = Qt + lane * ss, *orow = Ot + lane * ss;
                float qk = 0.0f;
                for (int d = 0; d < HD; d++) qk += qr[d] * kw[d];
                p = expf(scale * qk - Lt[lane]);
                if (want_k) {
                    float dp = 0.0f;
                    for (int d = 0; d < HD; d++) dp += orow[d] * vw[d];
                    ds = scale * p * (dp - Dt[lane]);
                }
            }
            for (int ii = i_lo; ii < tn; ii++) {
                const float pi = __shfl_sync(FULL, p, ii);
                const float dsi = __shfl_sync(FULL, ds, ii);
                const float *qr = Qt + ii * ss, *orow = Ot + ii * ss;
#pragma unroll
                for (int i = 0; i < NI; i++) {
                    int d = lane + 32 * i;
                    if (d < HD) {
                        accv[i] += pi * orow[d];
                        acck[i] += dsi * qr[d];
                    }
                }
            }
        }
    }
    if (key_valid) {
#pragma unroll
        for (int i = 0; i < NI; i++) {
            int d = lane + 32 * i;
            if (d < HD) {
                if (want_k) dk[krow * HD + d] += acck[i];
                if (want_v) dv[krow * HD + d] += accv[i];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// host side
// ---------------------------------------------------------------------------------------

[[noreturn]] void attn_fatal(const char *what, int B, int T, int NH, int KV, int HD) {
    fflush(stdout);
    fprintf(stderr, "mmrm: cuda attention: %s (B=%d T=%d NH=%d KV=%d HD=%d)\n", what, B, T, NH,
            KV, HD);
    exit(1);
}

void check_shape(int B, int T, int NH, int KV, int HD) {
    if (HD <= 0 || HD > MAX_HD) attn_fatal("head dim must be in 1..256", B, T, NH, KV, HD);
    if (KV <= 0 || NH <= 0 || NH % KV != 0)
        attn_fatal("NH must be a positive multiple of KV", B, T, NH, KV, HD);
    if (B > 65535 || NH > 65535) attn_fatal("B and NH must be at most 65535 (grid limits)", B, T, NH, KV, HD);
}

// dynamic shared memory above 48 KiB needs an opt-in per kernel; done once per kernel
// with the largest size seen so far
template <typename K>
void smem_opt_in(K kernel, size_t bytes, size_t *done) {
    if (bytes > 48 * 1024 && bytes > *done) {
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)bytes));
        *done = bytes;
    }
}

size_t fwd_smem(int HD) { return (size_t)(2 * TILE * smem_stride(HD) + WARPS * HD) * sizeof(float); }
size_t dq_smem(int HD) { return (size_t)(2 * TILE * smem_stride(HD) + 2 * WARPS * HD) * sizeof(float); }
size_t dkdv_smem(int HD) {
    return (size_t)(2 * TILE * smem_stride(HD) + 2 * TILE + 2 * WARPS * HD) * sizeof(float);
}

template <int NI>
void launch_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                const int *lengths, const int *seg, int B, int T, int NH, int KV, int HD,
                int causal, float scale) {
    static size_t opted = 0;
    size_t bytes = fwd_smem(HD);
    smem_opt_in(attn_fwd_kernel<NI>, bytes, &opted);
    dim3 grid((unsigned)((T + WARPS - 1) / WARPS), (unsigned)NH, (unsigned)B);
    attn_fwd_kernel<NI><<<grid, THREADS, bytes, cuda_stream()>>>(out, lse, q, k, v, lengths, seg,
                                                                  T, NH, KV, HD, causal, scale);
    CUDA_LAUNCH_CHECK();
}

template <int NI>
void launch_bwd(float *dq, float *dk, float *dv, const float *dout, const float *lse,
                const float *Dbuf, const float *q, const float *k, const float *v,
                const int *lengths, const int *seg, int B, int T, int NH, int KV, int HD,
                int causal, float scale) {
    const unsigned gx = (unsigned)((T + WARPS - 1) / WARPS);
    if (dq) {
        static size_t opted = 0;
        size_t bytes = dq_smem(HD);
        smem_opt_in(attn_dq_kernel<NI>, bytes, &opted);
        attn_dq_kernel<NI><<<dim3(gx, (unsigned)NH, (unsigned)B), THREADS, bytes, cuda_stream()>>>(
            dq, dout, lse, Dbuf, q, k, v, lengths, seg, T, NH, KV, HD, causal, scale);
        CUDA_LAUNCH_CHECK();
    }
    if (dk || dv) {
        static size_t opted = 0;
        size_t bytes = dkdv_smem(HD);
        smem_opt_in(attn_dkdv_kernel<NI>, bytes, &opted);
        attn_dkdv_kernel<NI><<<dim3(gx, (unsigned)KV, (unsigned)B), THREADS, bytes,
                               cuda_stream()>>>(dk, dv, dout, lse, Dbuf, q, k, v, lengths, seg, T,
                                                NH, KV, HD, causal, scale);
        CUDA_LAUNCH_CHECK();
    }
}

int g_attn_impl = ATTN_IMPL_AUTO; // cuda_attention_set_impl

} // namespace

extern "C" void cuda_attention_set_impl(int impl) {
    if (impl != ATTN_IMPL_AUTO && impl != ATTN_IMPL_MMRM && impl != ATTN_IMPL_CUDNN)
        cuda_fail("cuda_attention_set_impl", "unknown attention implementation", __FILE__,
                  __LINE__);
    g_attn_impl = impl;
}

extern "C" void cuda_attention_forward(float *out, float *lse, const float *q, const float *k,
                                       const float *v, const int *lengths, const int *seg, int B,
                                       int T, int NH, int KV, int HD, int causal, int precision) {
    if (B <= 0 || T <= 0) return;
    check_shape(B, T, NH, KV, HD);
    // bf16: cuDNN (auto, cudnn; no segments) where it covers the call, else the tensor-core kernels for
    // HD 64/128, else the exact kernels below
    if (precision != KP_FP32) {
        if (g_attn_impl != ATTN_IMPL_MMRM && !seg &&
            cuda_attention_cudnn_forward(out, lse, q, k, v, lengths, B, T, NH, KV, HD, causal,
                                         g_attn_impl == ATTN_IMPL_CUDNN))
            return;
        if (cuda_attention_fa2_forward(out, lse, q, k, v, lengths, seg, B, T, NH, KV, HD, causal))
            return;
    }
    const float scale = (float)(1.0 / sqrt((double)HD)); // as the CPU
    switch ((HD + 31) / 32) {
    case 1: launch_fwd<1>(out, lse, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    case 2: launch_fwd<2>(out, lse, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    case 3: launch_fwd<3>(out, lse, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    case 4: launch_fwd<4>(out, lse, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    case 5: launch_fwd<5>(out, lse, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    case 6: launch_fwd<6>(out, lse, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    case 7: launch_fwd<7>(out, lse, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    default: launch_fwd<8>(out, lse, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    }
}

extern "C" void cuda_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                        const float *out, const float *lse, const float *q,
                                        const float *k, const float *v, const int *lengths,
                                        const int *seg, int B, int T, int NH, int KV, int HD,
                                        int causal, int precision) {
    if (!dq && !dk && !dv) return;
    if (B <= 0 || T <= 0) return;
    check_shape(B, T, NH, KV, HD);
    // the forward's choice: the same process-wide implementation covers the same shapes
    if (precision != KP_FP32) {
        if (g_attn_impl != ATTN_IMPL_MMRM && !seg &&
            cuda_attention_cudnn_backward(dq, dk, dv, dout, out, lse, q, k, v, lengths, B, T, NH,
                                          KV, HD, causal, g_attn_impl == ATTN_IMPL_CUDNN))
            return;
        if (cuda_attention_fa2_backward(dq, dk, dv, dout, out, lse, q, k, v, lengths, seg, B, T,
                                        NH, KV, HD, causal))
            return;
    }
    const float scale = (float)(1.0 / sqrt((double)HD));

    // (a) D = rowwise dout . out, (B, NH, T), in scratch slot 1 (valid for this call only)
    const size_t nrows = (size_t)B * T * NH;
    float *Dbuf = (float *)cuda_scratch(1, nrows * sizeof(float));
    attn_rowdot_kernel<<<cuda_blocks(nrows * 32, 256), 256, 0, cuda_stream()>>>(
        Dbuf, dout, out, lengths, B, T, NH, HD);
    CUDA_LAUNCH_CHECK();

    // (b) dq and (c) dk/dv
    switch ((HD + 31) / 32) {
    case 1: launch_bwd<1>(dq, dk, dv, dout, lse, Dbuf, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    case 2: launch_bwd<2>(dq, dk, dv, dout, lse, Dbuf, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    case 3: launch_bwd<3>(dq, dk, dv, dout, lse, Dbuf, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    case 4: launch_bwd<4>(dq, dk, dv, dout, lse, Dbuf, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    case 5: launch_bwd<5>(dq, dk, dv, dout, lse, Dbuf, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    case 6: launch_bwd<6>(dq, dk, dv, dout, lse, Dbuf, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    case 7: launch_bwd<7>(dq, dk, dv, dout, lse, Dbuf, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    default: launch_bwd<8>(dq, dk, dv, dout, lse, Dbuf, q, k, v, lengths, seg, B, T, NH, KV, HD, causal, scale); break;
    }
}

// the native bf16 forms: the choice of cuda_attention_forward / backward at a bf16 precision
// (cuDNN with attention_impl auto or cudnn and no segments where it covers the call, else the
// FA2 kernels for HD 64 or 128) made on the bf16 tensors, each run without staging; elsewhere
// (KP_FP32, other head dims, a tensor cuDNN cannot take and FA2 does not cover) *native = 0
// and nothing is done: runtime/ops_attention.c stages through fp32 and calls those
extern "C" void cuda_attention_forward_x16(int *native, uint16_t *out, float *lse,
                                           const uint16_t *q, const uint16_t *k,
                                           const uint16_t *v, const int *lengths, const int *seg,
                                           int B, int T, int NH, int KV, int HD, int causal,
                                           int precision) {
    *native = 0;
    if (B <= 0 || T <= 0) return;
    check_shape(B, T, NH, KV, HD);
    if (precision == KP_FP32) return;
    if (g_attn_impl != ATTN_IMPL_MMRM && !seg &&
        cuda_attention_cudnn_forward_x16(out, lse, q, k, v, lengths, B, T, NH, KV, HD, causal,
                                         g_attn_impl == ATTN_IMPL_CUDNN)) {
        *native = 1;
        return;
    }
    if (HD != 64 && HD != 128) return;
    cuda_attention_fa2_forward_x16(out, lse, q, k, v, lengths, seg, B, T, NH, KV, HD, causal);
    *native = 1;
}

extern "C" void cuda_attention_backward_x16(int *native, float *dq, float *dk, float *dv,
                                            const float *dout, const uint16_t *out,
                                            const float *lse, const uint16_t *q,
                                            const uint16_t *k, const uint16_t *v,
                                            const int *lengths, const int *seg, int B, int T,
                                            int NH, int KV, int HD, int causal, int precision) {
    *native = 0;
    if (B <= 0 || T <= 0) return;
    check_shape(B, T, NH, KV, HD);
    if (precision == KP_FP32) return;
    if (!dq && !dk && !dv) { // nothing to compute on any path
        *native = 1;
        return;
    }
    if (g_attn_impl != ATTN_IMPL_MMRM && !seg &&
        cuda_attention_cudnn_backward_x16(dq, dk, dv, dout, out, lse, q, k, v, lengths, B, T, NH,
                                          KV, HD, causal, g_attn_impl == ATTN_IMPL_CUDNN)) {
        *native = 1;
        return;
    }
    if (HD != 64 && HD != 128) return;
    cuda_attention_fa2_backward_x16(dq, dk, dv, dout, out, lse, q, k, v, lengths, seg, B, T, NH,
                                    KV, HD, causal);
    *native = 1;
}
