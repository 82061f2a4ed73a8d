// attention_rows.cu - attention for M query rows against the (B, T) keys, forward and
// backward (kernels/op_list.h: attention_rows_forward/backward): the decoder's last layer at
// the rewarded rows. Row m is token (b, t) = (rows[m] / T, rows[m] % T) and sees what that
// token sees in attention.cu (lengths, causal, the segment rule); lse is (NH, M).
//
// Precision as the full op's CUDA path: at a bf16 precision with HD 64 or 128 the full op
// runs the tensor-core kernels (attention_fa2.cu, or cuDNN), so these kernels then round q,
// k, v and dout to bf16 and the P (forward, dV) and dS (dQ, dK) operands of the products as
// FA2 does, accumulating in fp32; elsewhere they are exact fp32 like attention.cu's kernels.
// The summation order differs from the full op's (a few ulps; parity_attention_rows.c).
//
// Every kernel is one body over the storage type E of q, k, v and out: float, or uint16_t
// for the native bf16 entries (attention_rows_forward_x16/backward_x16), which read the
// bf16 activations where they are (widened exactly, as the staging would) and store the
// forward's out rounded once to nearest even (as the staging's f32_to_bf16): the staged
// path's bits at every head dim and precision, without the fp32 copies of K and V.
//
// M is a few rows per sequence and T long, so the work is split over keys:
//  forward (rows_fwd_kernel): one CTA per (row, head), grid (M, NH), NW warps; warp w takes
//    the 32-key tiles w, w + NW, ... of the keys the row sees (the row's doc only, with
//    segments: docs are contiguous), each with its own running max and sum (lane j scores key
//    j from a per-warp shared K tile, V rows are read coalesced by the output lanes); the NW
//    partial (max, sum, acc) are merged by warp 0 in increasing w: deterministic.
//  backward: (a) rows_rowdot_kernel: D = dout . out per (head, row) into scratch slot 1;
//    (b) rows_dq_kernel, the forward's layout: per key ds_j = scale p_j (dout . v_j - D),
//    dq += sum_j ds_j k_j, per warp then merged in increasing w, added once;
//    (c) rows_dkdv_kernel: one warp per key j of one (b, kv head), grid (ceil(T/8), KV, B); it
//    walks the group's heads and the rows of sequence b that can see j (rows are
//    increasing, so they are a range) in tiles of 32 staged in shared memory, and
//    accumulates dv += p dout, dk += ds q in increasing (head, row), added once.
// No atomics; every output element is owned by one lane and summed in a fixed order.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/kernels.h"

namespace {
using namespace attn;

constexpr int TILE = 32;     // keys (or query rows) per tile: one per lane
constexpr int KWARPS = 8;    // keys per dk/dv block
constexpr int MAX_HD = 256;  // NI = HD/32 <= 8 accumulators per lane
constexpr unsigned FULL = 0xffffffffu;

// warps per (row, head) CTA: two per-warp (32, HD|1) fp32 tiles stay under 67 KiB
int rows_warps(int HD) { return HD <= 64 ? 4 : (HD <= 128 ? 2 : 1); }

__host__ __device__ __forceinline__ int rstride(int HD) { return HD | 1; } // conflict-free rows

// x as the tensor-core path sees it: rounded to bf16 (BF) or as it is
template <bool BF> __device__ __forceinline__ float rd(float x) {
    return BF ? bf16_widen(bf16_round(x)) : x;
}

// element i of an fp32 or bf16 array as the products see it
template <bool BF, class E> __device__ __forceinline__ float ld(const E *p, size_t i) {
    return rd<BF>(as_f32(p[i]));
}


// first index in [0, n) with a[i] >= x (a non-decreasing)
__device__ __forceinline__ int lower_bound(const int *a, int n, int x) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (a[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}


// The keys [*lo, *hi) row t of sequence b (t < L) can see: causal/length, and its doc.
__device__ __forceinline__ void row_keys(const int *segb, int L, int t, int causal, int *lo,
                                         int *hi) {
    *lo = 0;
    *hi = causal ? t + 1 : L;
    if (segb) {
        const int d = segb[t] >> 16;
        *lo = doc_lower(segb, L, d);
        *hi = min(*hi, doc_lower(segb, L, d + 1));
    }
}

// rows of (row, head) CTAs: m = blockIdx.x, h = blockIdx.y; qs (HD) the row's query
struct RowInfo {
    int b, t, L, lo, hi, st;
    bool valid;
};

__device__ __forceinline__ RowInfo row_info(const int *rows, const int *lengths, const int *seg,
                                            int m, int T, int causal) {
    RowInfo r;
    const int rr = rows[m];
    r.b = rr / T, r.t = rr % T;
    r.L = clamp_len(lengths[r.b], T);
    r.valid = rr >= 0 && r.t < r.L;
    r.lo = r.hi = 0, r.st = 0;
    if (r.valid) {
        const int *segb = seg ? seg + (size_t)r.b * T : nullptr;
        row_keys(segb, r.L, r.t, causal, &r.lo, &r.hi);
        if (segb) r.st = segb[r.t];
    }
    return r;
}

// keys j0 .. j0+tn-1 of one (b, kv head) into a warp's shared rows (stride ss), rounded
template <bool BF, class E>
__device__ __forceinline__ void warp_stage(float *dst, const E *__restrict__ src, size_t kv0,
                                           size_t kvstride, int j0, int tn, int HD, int ss,
                                           int lane) {
    for (int jj = 0; jj < tn; jj++) {
        const E *s = src + kv0 + (size_t)(j0 + jj) * kvstride;
        for (int d = lane; d < HD; d += 32) dst[jj * ss + d] = ld<BF>(s, d);
    }
    __syncwarp();
}

// ---------------------------------------------------------------------------------------
// forward
// ---------------------------------------------------------------------------------------

template <int NI, bool BF, class E>
__global__ void __launch_bounds__(128)
rows_fwd_kernel(E *__restrict__ out, float *__restrict__ lse, const E *__restrict__ q,
                const E *__restrict__ k, const E *__restrict__ v,
                const int *__restrict__ rows, const int *__restrict__ lengths,
                const int *__restrict__ seg, int M, int T, int NH, int KV, int HD, int causal,
                float scale) {
    extern __shared__ float smem[];
    const int NW = blockDim.x / 32, ss = rstride(HD);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int m = blockIdx.x, h = blockIdx.y;
    float *qs = smem;                       // (HD)
    float *Ms = qs + HD, *Ss = Ms + NW;     // (NW) each: the warps' max and sum
    float *As = Ss + NW;                    // (NW, HD): the warps' unnormalized outputs
    float *Ks = As + NW * HD + warp * TILE * ss; // (TILE, ss) of this warp

    const RowInfo r = row_info(rows, lengths, seg, m, T, causal);
    const size_t orow = ((size_t)m * NH + h) * HD;
    if (!r.valid) { // not a valid token: out = 0, lse = 0 (as a padded row of the full op)
        for (int d = threadIdx.x; d < HD; d += blockDim.x) st1(out + orow + d, 0.0f);
        if (threadIdx.x == 0) lse[(size_t)h * M + m] = 0.0f;
        return;
    }
    for (int d = threadIdx.x; d < HD; d += blockDim.x) qs[d] = ld<BF>(q, orow + d);
    __syncthreads();

    const int *segb = seg ? seg + (size_t)r.b * T : nullptr;
    const size_t kvstride = (size_t)KV * HD;
    const size_t kv0 = ((size_t)r.b * T * KV + h / (NH / KV)) * HD;
    float acc[NI];
#pragma unroll
    for (int i = 0; i < NI; i++) acc[i] = 0.0f;
    float mx = -INFINITY, sum = 0.0f;
    for (int j0 = r.lo + warp * TILE; j0 < r.hi; j0 += NW * TILE) {
        const int jn = min(TILE, r.hi - j0);
        __syncwarp(); // the previous tile is consumed
        warp_stage<BF>(Ks, k, kv0, kvstride, j0, jn, HD, ss, lane);
        float s = -INFINITY;
        if (lane < jn && (!segb || seg_visible(r.st, segb[j0 + lane]))) {
            const float *kr = Ks + lane * ss;
            float dot = 0.0f;
            for (int d = 0; d < HD; d++) dot += qs[d] * kr[d];
            s = scale * dot;
        }
        const float tmax = warp_max(s);
        if (tmax == -INFINITY) continue; // the segments hide the whole tile
        const float mnew = fmaxf(mx, tmax);
        const float c = expf(mx - mnew); // 0 on the first tile (mx = -inf)
        const float p = expf(s - mnew);  // 0 for hidden keys
        sum = sum * c + warp_sum(p);
        const float pv = rd<BF>(p); // the P operand of P V
#pragma unroll
        for (int i = 0; i < NI; i++) acc[i] *= c;
        for (int jj = 0; jj < jn; jj++) {
            const float pj = __shfl_sync(FULL, pv, jj);
            const E *vr = v + kv0 + (size_t)(j0 + jj) * kvstride;
#pragma unroll
            for (int i = 0; i < NI; i++) {
                const int d = lane + 32 * i;
                if (d < HD) acc[i] += pj * ld<BF>(vr, d);
            }
        }
        mx = mnew;
    }
    if (lane == 0) Ms[warp] = mx, Ss[warp] = sum;
#pragma unroll
    for (int i = 0; i < NI; i++) {
        const int d = lane + 32 * i;
        if (d < HD) As[warp * HD + d] = acc[i];
    }
    __syncthreads();
    if (warp != 0) return;
    float m_all = -INFINITY;
    for (int w = 0; w < NW; w++) m_all = fmaxf(m_all, Ms[w]);
    float tot = 0.0f, o[NI];
#pragma unroll
    for (int i = 0; i < NI; i++) o[i] = 0.0f;
    for (int w = 0; w < NW; w++) { // increasing w: a fixed order
        if (Ms[w] == -INFINITY) continue; // the warp saw no key
        const float c = expf(Ms[w] - m_all);
        tot += Ss[w] * c;
#pragma unroll
        for (int i = 0; i < NI; i++) {
            const int d = lane + 32 * i;
            if (d < HD) o[i] += As[w * HD + d] * c;
        }
    }
    const float inv = 1.0f / tot; // the row sees itself (causal) or key 0: tot > 0
#pragma unroll
    for (int i = 0; i < NI; i++) {
        const int d = lane + 32 * i;
        if (d < HD) st1(out + orow + d, o[i] * inv); // bf16: rounded once
    }
    if (lane == 0) lse[(size_t)h * M + m] = m_all + logf(tot);
}

// ---------------------------------------------------------------------------------------
// backward
// ---------------------------------------------------------------------------------------

// D[h*M + m] = dout . out of (row m, head h), dout as the products see it; 0 for invalid rows.
// out is fp32 (out) or bf16 (out16), the other NULL (the launch's name keeps only BF, which
// tests/integration/cuda_emu_rows.sh reads from the emulator's kernel counts)
template <bool BF>
__global__ void rows_rowdot_kernel(float *__restrict__ Dbuf, const float *__restrict__ dout,
                                   const float *__restrict__ out,
                                   const uint16_t *__restrict__ out16,
                                   const int *__restrict__ rows, const int *__restrict__ lengths,
                                   int M, int T, int NH, int HD) {
    const int lane = threadIdx.x % 32;
    const size_t n = (size_t)M * NH, warps = (size_t)gridDim.x * (blockDim.x / 32);
    for (size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; w < n; w += warps) {
        const int m = (int)(w / NH), h = (int)(w % NH);
        const int rr = rows[m], b = rr / T, t = rr % T;
        float s = 0.0f;
        if (rr >= 0 && t < clamp_len(lengths[b], T)) {
            for (int d = lane; d < HD; d += 32) {
                const size_t i = w * HD + d;
                s += rd<BF>(dout[i]) * (out16 ? bf16_widen(out16[i]) : out[i]);
            }
            s = warp_sum(s);
        }
        if (lane == 0) Dbuf[(size_t)h * M + m] = s;
    }
}

template <int NI, bool BF, class E>
__global__ void __launch_bounds__(128)
rows_dq_kernel(float *__restrict__ dq, const float *__restrict__ dout,
               const float *__restrict__ lse, const float *__restrict__ Dbuf,
               const E *__restrict__ q, const E *__restrict__ k, const E *__restrict__ v,
               const int *__restrict__ rows, const int *__restrict__ lengths,
               const int *__restrict__ seg, int M, int T, int NH, int KV, int HD, int causal,
               float scale) {
    extern __shared__ float smem[];
    const int NW = blockDim.x / 32, ss = rstride(HD);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int m = blockIdx.x, h = blockIdx.y;
    float *qs = smem, *os = qs + HD;          // (HD) each: q and dout of the row
    float *As = os + HD;                      // (NW, HD): the warps' partial dq
    float *Ks = As + NW * HD + 2 * warp * TILE * ss, *Vs = Ks + TILE * ss; // this warp's

    const RowInfo r = row_info(rows, lengths, seg, m, T, causal);
    if (!r.valid) return; // no gradient
    const size_t orow = ((size_t)m * NH + h) * HD;
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        qs[d] = ld<BF>(q, orow + d);
        os[d] = rd<BF>(dout[orow + d]);
    }
    __syncthreads();
    const float lse_r = lse[(size_t)h * M + m], D_r = Dbuf[(size_t)h * M + m];
    const int *segb = seg ? seg + (size_t)r.b * T : nullptr;
    const size_t kvstride = (size_t)KV * HD;
    const size_t kv0 = ((size_t)r.b * T * KV + h / (NH / KV)) * HD;
    float acc[NI];
#pragma unroll
    for (int i = 0; i < NI; i++) acc[i] = 0.0f;
    for (int j0 = r.lo + warp * TILE; j0 < r.hi; j0 += NW * TILE) {
        const int jn = min(TILE, r.hi - j0);
        __syncwarp();
        warp_stage<BF>(Ks, k, kv0, kvstride, j0, jn, HD, ss, lane);
        warp_stage<BF>(Vs, v, kv0, kvstride, j0, jn, HD, ss, lane);
        float ds = 0.0f; // 0 for hidden keys
        if (lane < jn && (!segb || seg_visible(r.st, segb[j0 + lane]))) {
            const float *kr = Ks + lane * ss, *vr = Vs + lane * ss;
            float qk = 0.0f, dp = 0.0f;
            for (int d = 0; d < HD; d++) qk += qs[d] * kr[d];
            for (int d = 0; d < HD; d++) dp += os[d] * vr[d];
            const float p = expf(scale * qk - lse_r);
            ds = rd<BF>(scale * p * (dp - D_r)); // as attention.cu: (scale * p) * (dp - D)
        }
        for (int jj = 0; jj < jn; jj++) {
            const float dsj = __shfl_sync(FULL, ds, jj);
            const float *kr = Ks + jj * ss;
#pragma unroll
            for (int i = 0; i < NI; i++) {
                const int d = lane + 32 * i;
                if (d < HD) acc[i] += dsj * kr[d];
            }
        }
    }
#pragma unroll
    for (int i = 0; i < NI; i++) {
        const int d = lane + 32 * i;
        if (d < HD) As[warp * HD + d] = acc[i];
    }
    __syncthreads();
    if (warp != 0) return;
#pragma unroll
    for (int i = 0; i < NI; i++) {
        const int d = lane + 32 * i;
        if (d >= HD) continue;
        float s = 0.0f;
        for (int w = 0; w < NW; w++) s += As[w * HD + d]; // increasing w
        dq[orow + d] += s;
    }
}

template <int NI, bool BF, class E>
__global__ void __launch_bounds__(KWARPS * 32)
rows_dkdv_kernel(float *__restrict__ dk, float *__restrict__ dv, const float *__restrict__ dout,
                 const float *__restrict__ lse, const float *__restrict__ Dbuf,
                 const E *__restrict__ q, const E *__restrict__ k, const E *__restrict__ v,
                 const int *__restrict__ rows, const int *__restrict__ lengths,
                 const int *__restrict__ seg, int M, int T, int NH, int KV, int HD, int causal,
                 float scale) {
    extern __shared__ float smem[];
    const int ss = rstride(HD);
    float *Qt = smem;            // (TILE, ss): q rows of the tile
    float *Ot = Qt + TILE * ss;  // (TILE, ss): dout rows of the tile
    float *Lt = Ot + TILE * ss;  // (TILE): lse
    float *Dt = Lt + TILE;       // (TILE): D
    int *Tt = (int *)(Dt + TILE); // (TILE): the token t of each row of the tile
    float *Kw = (float *)(Tt + TILE); // (KWARPS, HD): each warp's key row
    float *Vw = Kw + KWARPS * HD;     // (KWARPS, HD): each warp's value row

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kh = blockIdx.y, b = blockIdx.z;
    const int j0 = blockIdx.x * KWARPS, j = j0 + warp;
    const int L = clamp_len(lengths[b], T);
    // the rows of sequence b: a range, as rows increase
    const int mlo = lower_bound(rows, M, b * T), mhi = lower_bound(rows, M, (b + 1) * T);
    if (j0 >= L || mlo == mhi) return; // no row sees a key of this block
    if (causal && j0 > rows[mhi - 1] - b * T) return; // every key after the last row
    const bool key_valid = j < L;
    const int group = NH / KV;
    const bool want_k = dk != nullptr, want_v = dv != nullptr;
    const int *segb = seg ? seg + (size_t)b * T : nullptr;
    const int sj = segb && key_valid ? segb[j] : 0;
    const size_t krow = ((size_t)b * T + j) * KV + kh; // only used when key_valid
    float *kw = Kw + warp * HD, *vw = Vw + warp * HD;
    if (key_valid)
        for (int d = lane; d < HD; d += 32) {
            kw[d] = ld<BF>(k, krow * HD + d);
            vw[d] = ld<BF>(v, krow * HD + d);
        }
    // causal: the rows before j0 see no key of the block
    const int mstart = causal ? lower_bound(rows, M, b * T + j0) : mlo;
    float acck[NI], accv[NI];
#pragma unroll
    for (int i = 0; i < NI; i++) acck[i] = accv[i] = 0.0f;
    for (int h = kh * group; h < (kh + 1) * group; h++) {
        for (int m0 = mstart; m0 < mhi; m0 += TILE) {
            const int tn = min(TILE, mhi - m0);
            __syncthreads(); // previous tile consumed (first pass: kw/vw written)
            for (int idx = threadIdx.x; idx < tn * HD; idx += KWARPS * 32) {
                const int ii = idx / HD, d = idx - ii * HD;
                const size_t g = ((size_t)(m0 + ii) * NH + h) * HD + d;
                Qt[ii * ss + d] = ld<BF>(q, g);
                Ot[ii * ss + d] = rd<BF>(dout[g]);
            }
            for (int ii = threadIdx.x; ii < tn; ii += KWARPS * 32) {
                Lt[ii] = lse[(size_t)h * M + m0 + ii];
                Dt[ii] = Dbuf[(size_t)h * M + m0 + ii];
                Tt[ii] = rows[m0 + ii] - b * T;
            }
            __syncthreads();
            if (!key_valid) continue; // warp-uniform
            float p = 0.0f, ds = 0.0f; // 0 for rows that do not see key j
            if (lane < tn) {
                const int t = Tt[lane];
                if (t < L && (!causal || j <= t) && (!segb || seg_visible(segb[t], sj))) {
                    const float *qr = Qt + lane * ss, *orow = Ot + lane * ss;
                    float qk = 0.0f;
                    for (int d = 0; d < HD; d++) qk += qr[d] * kw[d];
                    p = expf(scale * qk - Lt[lane]);
                    if (want_k) {
                        float dp = 0.0f;
                        for (int d = 0; d < HD; d++) dp += orow[d] * vw[d];
                        ds = rd<BF>(scale * p * (dp - Dt[lane]));
                    }
                    p = rd<BF>(p);
                }
            }
            for (int ii = 0; ii < tn; ii++) {
                const float pi = __shfl_sync(FULL, p, ii);
                const float dsi = __shfl_sync(FULL, ds, ii);
                const float *qr = Qt + ii * ss, *orow = Ot + ii * ss;
#pragma unroll
                for (int i = 0; i < NI; i++) {
                    const int d = lane + 32 * i;
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
            const int d = lane + 32 * i;
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

void rows_check_shape(int M, int B, int T, int NH, int KV, int HD) {
    const char *what = HD <= 0 || HD > MAX_HD                ? "head dim must be in 1..256"
                       : KV <= 0 || NH <= 0 || NH % KV != 0  ? "NH must be a positive multiple of KV"
                       : B > 65535 || NH > 65535             ? "B and NH must be at most 65535 (grid limits)"
                                                             : nullptr;
    if (!what) return;
    fflush(stdout);
    fprintf(stderr, "mmrm: cuda attention rows: %s (M=%d B=%d T=%d NH=%d KV=%d HD=%d)\n", what, M,
            B, T, NH, KV, HD);
    exit(1);
}

// the full op's choice (attention.cu): the tensor-core kernels at a bf16 precision for HD 64
// and 128, the exact fp32 kernels elsewhere
bool rows_bf16(int HD, int precision) { return precision != KP_FP32 && (HD == 64 || HD == 128); }

// dynamic shared memory above 48 KiB needs an opt-in per kernel; done once per kernel with
// the largest size seen so far (*done)
template <typename K> void opt_in(K kernel, size_t bytes, size_t *done) {
    if (bytes > 48 * 1024 && bytes > *done) {
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)bytes));
        *done = bytes;
    }
}

size_t fwd_bytes(int HD, int NW) {
    return (size_t)(HD + 2 * NW + NW * HD + NW * TILE * rstride(HD)) * sizeof(float);
}
size_t dq_bytes(int HD, int NW) {
    return (size_t)(2 * HD + NW * HD + 2 * NW * TILE * rstride(HD)) * sizeof(float);
}
size_t dkdv_bytes(int HD) {
    return (size_t)(2 * TILE * rstride(HD) + 3 * TILE + 2 * KWARPS * HD) * sizeof(float);
}

// one call's arguments; E the storage type of q, k, v and out (float or bf16)
template <class E> struct RowsArgs {
    E *out;
    const E *q, *k, *v;
    float *lse_out, *dq, *dk, *dv;
    const float *dout, *lse, *Dbuf;
    const int *rows, *lengths, *seg;
    int M, B, T, NH, KV, HD, causal;
    float scale;
};

template <int NI, bool BF, class E> void launch_fwd(const RowsArgs<E> &a) {
    const int NW = rows_warps(a.HD);
    const size_t bytes = fwd_bytes(a.HD, NW);
    static size_t opted = 0;
    opt_in(rows_fwd_kernel<NI, BF, E>, bytes, &opted);
    rows_fwd_kernel<NI, BF, E><<<dim3((unsigned)a.M, (unsigned)a.NH), NW * 32, bytes,
                                 cuda_stream()>>>(a.out, a.lse_out, a.q, a.k, a.v, a.rows,
                                                  a.lengths, a.seg, a.M, a.T, a.NH, a.KV, a.HD,
                                                  a.causal, a.scale);
    CUDA_LAUNCH_CHECK();
}

template <int NI, bool BF, class E> void launch_bwd(const RowsArgs<E> &a) {
    if (a.dq) {
        const int NW = rows_warps(a.HD);
        const size_t bytes = dq_bytes(a.HD, NW);
        static size_t opted = 0;
        opt_in(rows_dq_kernel<NI, BF, E>, bytes, &opted);
        rows_dq_kernel<NI, BF, E><<<dim3((unsigned)a.M, (unsigned)a.NH), NW * 32, bytes,
                                    cuda_stream()>>>(a.dq, a.dout, a.lse, a.Dbuf, a.q, a.k, a.v,
                                                     a.rows, a.lengths, a.seg, a.M, a.T, a.NH,
                                                     a.KV, a.HD, a.causal, a.scale);
        CUDA_LAUNCH_CHECK();
    }
    if (a.dk || a.dv) {
        const size_t bytes = dkdv_bytes(a.HD);
        static size_t opted = 0;
        opt_in(rows_dkdv_kernel<NI, BF, E>, bytes, &opted);
        const dim3 grid((unsigned)((a.T + KWARPS - 1) / KWARPS), (unsigned)a.KV, (unsigned)a.B);
        rows_dkdv_kernel<NI, BF, E><<<grid, KWARPS * 32, bytes, cuda_stream()>>>(
            a.dk, a.dv, a.dout, a.lse, a.Dbuf, a.q, a.k, a.v, a.rows, a.lengths, a.seg, a.M, a.T,
            a.NH, a.KV, a.HD, a.causal, a.scale);
        CUDA_LAUNCH_CHECK();
    }
}

// launcher L<NI, BF, E> for NI = ceil(HD / 32) and the precision's BF
template <template <int, bool, class> class L, class E>
void dispatch(const RowsArgs<E> &a, bool bf) {
    if (bf) { // HD 64 or 128 only
        if (a.HD == 64) L<2, true, E>::run(a);
        else L<4, true, E>::run(a);
        return;
    }
    switch ((a.HD + 31) / 32) {
    case 1: L<1, false, E>::run(a); break;
    case 2: L<2, false, E>::run(a); break;
    case 3: L<3, false, E>::run(a); break;
    case 4: L<4, false, E>::run(a); break;
    case 5: L<5, false, E>::run(a); break;
    case 6: L<6, false, E>::run(a); break;
    case 7: L<7, false, E>::run(a); break;
    default: L<8, false, E>::run(a); break;
    }
}

template <int NI, bool BF, class E> struct Fwd {
    static void run(const RowsArgs<E> &a) { launch_fwd<NI, BF, E>(a); }
};
template <int NI, bool BF, class E> struct Bwd {
    static void run(const RowsArgs<E> &a) { launch_bwd<NI, BF, E>(a); }
};

template <class E>
void rows_forward(E *out, float *lse, const E *q, const E *k, const E *v, const int *rows,
                  const int *lengths, const int *seg, int M, int B, int T, int NH, int KV, int HD,
                  int causal, int precision) {
    if (M <= 0 || B <= 0 || T <= 0) return;
    rows_check_shape(M, B, T, NH, KV, HD);
    RowsArgs<E> a = {};
    a.out = out, a.lse_out = lse, a.q = q, a.k = k, a.v = v;
    a.rows = rows, a.lengths = lengths, a.seg = seg;
    a.M = M, a.B = B, a.T = T, a.NH = NH, a.KV = KV, a.HD = HD, a.causal = causal;
    a.scale = (float)(1.0 / sqrt((double)HD)); // as the CPU
    dispatch<Fwd>(a, rows_bf16(HD, precision));
}

// out as the row-dot kernel's (out, out16) pair
void split_out(const float *out, const float **o32, const uint16_t **) { *o32 = out; }
void split_out(const uint16_t *out, const float **, const uint16_t **o16) { *o16 = out; }

template <class E>
void rows_backward(float *dq, float *dk, float *dv, const float *dout, const E *out,
                   const float *lse, const E *q, const E *k, const E *v, const int *rows,
                   const int *lengths, const int *seg, int M, int B, int T, int NH, int KV,
                   int HD, int causal, int precision) {
    if (!dq && !dk && !dv) return;
    if (M <= 0 || B <= 0 || T <= 0) return;
    rows_check_shape(M, B, T, NH, KV, HD);
    const bool bf = rows_bf16(HD, precision);
    const size_t n = (size_t)M * NH;
    float *Dbuf = (float *)cuda_scratch(1, n * sizeof(float));
    const float *o32 = nullptr;
    const uint16_t *o16 = nullptr;
    split_out(out, &o32, &o16);
    if (bf)
        rows_rowdot_kernel<true><<<cuda_blocks(n * 32, 256), 256, 0, cuda_stream()>>>(
            Dbuf, dout, o32, o16, rows, lengths, M, T, NH, HD);
    else
        rows_rowdot_kernel<false><<<cuda_blocks(n * 32, 256), 256, 0, cuda_stream()>>>(
            Dbuf, dout, o32, o16, rows, lengths, M, T, NH, HD);
    CUDA_LAUNCH_CHECK();
    RowsArgs<E> a = {};
    a.dq = dq, a.dk = dk, a.dv = dv, a.dout = dout, a.Dbuf = Dbuf, a.lse = lse;
    a.q = q, a.k = k, a.v = v, a.rows = rows, a.lengths = lengths, a.seg = seg;
    a.M = M, a.B = B, a.T = T, a.NH = NH, a.KV = KV, a.HD = HD, a.causal = causal;
    a.scale = (float)(1.0 / sqrt((double)HD));
    dispatch<Bwd>(a, bf);
}

} // namespace

extern "C" void cuda_attention_rows_forward(float *out, float *lse, const float *q, const float *k,
                                            const float *v, const int *rows, const int *lengths,
                                            const int *seg, int M, int B, int T, int NH, int KV,
                                            int HD, int causal, int precision) {
    rows_forward(out, lse, q, k, v, rows, lengths, seg, M, B, T, NH, KV, HD, causal, precision);
}

extern "C" void cuda_attention_rows_backward(float *dq, float *dk, float *dv, const float *dout,
                                             const float *out, const float *lse, const float *q,
                                             const float *k, const float *v, const int *rows,
                                             const int *lengths, const int *seg, int M, int B,
                                             int T, int NH, int KV, int HD, int causal,
                                             int precision) {
    rows_backward(dq, dk, dv, dout, out, lse, q, k, v, rows, lengths, seg, M, B, T, NH, KV, HD,
                  causal, precision);
}

// The native bf16 forms take every call: the kernels read bf16 where they are (exact
// widening) and round out once, so they give the staged path's bits at every head dim,
// precision and alignment (scalar loads), and *native is always 1.
extern "C" void cuda_attention_rows_forward_x16(int *native, uint16_t *out, float *lse,
                                                const uint16_t *q, const uint16_t *k,
                                                const uint16_t *v, const int *rows,
                                                const int *lengths, const int *seg, int M, int B,
                                                int T, int NH, int KV, int HD, int causal,
                                                int precision) {
    rows_forward(out, lse, q, k, v, rows, lengths, seg, M, B, T, NH, KV, HD, causal, precision);
    *native = 1;
}

extern "C" void cuda_attention_rows_backward_x16(int *native, float *dq, float *dk, float *dv,
                                                 const float *dout, const uint16_t *out,
                                                 const float *lse, const uint16_t *q,
                                                 const uint16_t *k, const uint16_t *v,
                                                 const int *rows, const int *lengths,
                                                 const int *seg, int M, int B, int T, int NH,
                                                 int KV, int HD, int causal, int precision) {
    rows_backward(dq, dk, dv, dout, out, lse, q, k, v, rows, lengths, seg, M, B, T, NH, KV, HD,
                  causal, precision);
    *native = 1;
}
