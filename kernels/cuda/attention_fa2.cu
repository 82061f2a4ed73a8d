// attention_fa2.cu - FlashAttention-2-style forward on the tensor cores (sm_80+), bf16
// Q/K/V, fp32 accumulation, fp32 log-sum-exp; the attention op's bf16 path (attention.cu
// calls it at a bf16 precision when HD is 64 or 128 and cuDNN does not take the call
// (attention_impl); the contract is attention's,
// kernels/op_list.h and attention.cu, on q, k, v rounded to bf16).
//
// q, k, v are first converted to bf16 (round to nearest even) into scratch slot 5 (the _x16
// forms over bf16 activations read them as they are: attention_forward_x16, whose out is
// stored in bf16 by the epilogue, fa2_fwd_kernel<HD, uint16_t>). A CTA of
// 4 warps owns BM = 64 query rows of one (b, h), 16 rows per warp; grid (ceil(T/64), NH, B).
// K/V tiles of BN = 64 keys stream through shared memory with cp.async, double buffered
// (tile i+1 is in flight while tile i is used). Shared rows are HD + 8 bf16 long (16 bytes of
// padding: the 8 rows of an ldmatrix fall in different banks). Per tile and warp:
//   S (16 x 64) = Q K^T   mma m16n8k16; Q fragments (ldmatrix) stay in registers, K
//                         fragments by ldmatrix of the [key][d] rows (the B layout);
//   online softmax        in the C fragments: each lane holds rows g and g+8 (g = lane/4)
//                         and 2 columns per 8-key block; row max and sum over the 4 lanes
//                         of a row by shuffles; masked scores (key >= L, key > t causal)
//                         are -inf; O and the lane's partial row sum are rescaled;
//   O (16 x HD) += P V    P's C fragments repacked to bf16 A fragments (FA2's register
//                         reuse), V fragments by ldmatrix.trans of the [key][d] rows.
// Causal: only tiles up to the block's last row are loaded (tiles above the diagonal are
// skipped). Segments (seg): only the key tiles of the query tile's docs are loaded (backward:
// the query tiles of the key tile's docs), the doc/branch rule masks inside them. Rows t >= L: out = 0, lse = 0; keys j >= L and rows past T are zero-filled by
// cp.async (never read from memory). Deterministic: fixed order everywhere, no atomics.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/mma.cuh"

namespace {

constexpr int BM = 64, BN = 64, FA_THREADS = 128;

__host__ __device__ constexpr int fa_stride(int HD) { return HD + 8; }
size_t fa_smem_bytes(int HD) { return (size_t)(BM + 4 * BN) * fa_stride(HD) * sizeof(uint16_t); }

// rows r0 .. r0+63 of a (row stride `stride` elements) into dst; rows >= nvalid become zeros
template <int HD>
__device__ __forceinline__ void fa_load_rows(uint16_t *dst, const uint16_t *base, size_t stride,
                                             int r0, int nvalid) {
    constexpr int CH = HD / 8, S = fa_stride(HD);
    for (int i = threadIdx.x; i < 64 * CH; i += FA_THREADS) {
        const int r = i / CH, cc = (i % CH) * 8;
        const bool ok = r0 + r < nvalid;
        mma::cp_async16(dst + r * S + cc, ok ? base + (size_t)(r0 + r) * stride + cc : base, ok);
    }
}

// [*lo, *hi): the tokens of the docs of rows r0 .. r1-1 (0 <= r0 < r1 <= L), the only ones
// they can see or be seen by: whole tiles outside it are skipped
__device__ __forceinline__ void fa_doc_range(const int *segb, int L, int r0, int r1, int *lo,
                                             int *hi) {
    *lo = attn::doc_lower(segb, L, segb[r0] >> 16);
    *hi = attn::doc_lower(segb, L, (segb[r1 - 1] >> 16) + 1);
}

// the forward epilogue's store: fp32 as is, or bf16 rounded to nearest even (the bits of
// cuda_f32_to_bf16 of the fp32 value, NaN included)
__device__ __forceinline__ void fa_store(float *p, float x) { *p = x; }
__device__ __forceinline__ void fa_store(uint16_t *p, float x) { *p = kscalar_bf16_rn(x); }
// two adjacent columns (the accumulator's pair): one 8-byte or 4-byte store where aligned
__device__ __forceinline__ void fa_store2(float *p, float x, float y) {
    if (((uintptr_t)p & 7) == 0) *(float2 *)p = make_float2(x, y);
    else p[0] = x, p[1] = y;
}
__device__ __forceinline__ void fa_store2(uint16_t *p, float x, float y) {
    if (((uintptr_t)p & 3) == 0)
        *(uint32_t *)p = (uint32_t)kscalar_bf16_rn(x) | (uint32_t)kscalar_bf16_rn(y) << 16;
    else p[0] = kscalar_bf16_rn(x), p[1] = kscalar_bf16_rn(y);
}

template <int HD, typename O>
__global__ void __launch_bounds__(FA_THREADS)
fa2_fwd_kernel(O *__restrict__ out, float *__restrict__ lse, const uint16_t *__restrict__ q,
               const uint16_t *__restrict__ k, const uint16_t *__restrict__ v,
               const int *__restrict__ lengths, const int *__restrict__ seg, int T, int NH,
               int KV, int causal, float scale) {
    extern __shared__ uint4 fa_smem[];
    constexpr int S = fa_stride(HD), ND = HD / 8, NK = HD / 16;
    uint16_t *Qs = reinterpret_cast<uint16_t *>(fa_smem); // (BM, S)
    uint16_t *Ks = Qs + BM * S;                            // 2 x (BN, S)
    uint16_t *Vs = Ks + 2 * BN * S;                        // 2 x (BN, S)

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int h = blockIdx.y, b = blockIdx.z, q0 = blockIdx.x * BM;
    const int len = lengths[b], L = len < 0 ? 0 : (len > T ? T : len);
    const int kh = h / (NH / KV);
    const size_t qstride = (size_t)NH * HD, kvstride = (size_t)KV * HD;

    if (q0 >= L) { // every row of the block is padding (or past T)
        for (int i = tid; i < BM * HD; i += FA_THREADS) {
            const int t = q0 + i / HD;
            if (t < T) fa_store(out + ((size_t)b * T + t) * qstride + (size_t)h * HD + i % HD, 0.0f);
        }
        for (int r = tid; r < BM; r += FA_THREADS)
            if (q0 + r < T) lse[((size_t)b * NH + h) * T + q0 + r] = 0.0f;
        return;
    }
    const uint16_t *qb = q + ((size_t)b * T * NH + h) * HD;
    const uint16_t *kb = k + ((size_t)b * T * KV + kh) * HD;
    const uint16_t *vb = v + ((size_t)b * T * KV + kh) * HD;
    const int kend = causal ? min(L, q0 + BM) : L; // keys any row of the block sees
    const int *segb = seg ? seg + (size_t)b * T : nullptr;
    int jlo = 0, jhi = kend; // with segments: the block's docs only
    if (segb) {
        fa_doc_range(segb, L, q0, min(q0 + BM, L), &jlo, &jhi);
        jhi = min(jhi, kend);
    }
    const int it0 = jlo / BN, ntiles = (jhi + BN - 1) / BN;

    fa_load_rows<HD>(Qs, qb, qstride, q0, L);
    fa_load_rows<HD>(Ks, kb, kvstride, it0 * BN, L);
    fa_load_rows<HD>(Vs, vb, kvstride, it0 * BN, L);
    mma::cp_async_commit();

    const int g = lane / 4, c2 = 2 * (lane % 4);
    const int trow[2] = {q0 + 16 * warp + g, q0 + 16 * warp + g + 8}; // this lane's rows
    const int tseg[2] = {segb && trow[0] < L ? segb[trow[0]] : 0,
                         segb && trow[1] < L ? segb[trow[1]] : 0};
    float o[ND][4];
#pragma unroll
    for (int n = 0; n < ND; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; // l: this lane's partial sum
    uint32_t qf[NK][4];

    for (int it = it0; it < ntiles; it++) {
        const int buf = (it - it0) & 1;
        if (it + 1 < ntiles) { // prefetch the next tile into the other buffer
            fa_load_rows<HD>(Ks + (buf ^ 1) * BN * S, kb, kvstride, (it + 1) * BN, L);
            fa_load_rows<HD>(Vs + (buf ^ 1) * BN * S, vb, kvstride, (it + 1) * BN, L);
            mma::cp_async_commit();
            mma::cp_async_wait<1>(); // everything but the prefetch has landed
        } else {
            mma::cp_async_wait<0>();
        }
        __syncthreads(); // every thread's copies of tile it (and Q) are visible
        if (it == it0) {
#pragma unroll
            for (int kk = 0; kk < NK; kk++)
                mma::ldmatrix_x4(qf[kk], Qs + (16 * warp + lane % 16) * S + 16 * kk + 8 * (lane / 16));
        }
        const uint16_t *Kt = Ks + buf * BN * S, *Vt = Vs + buf * BN * S;
        const int j0 = it * BN;

        // S = Q K^T: 8 key blocks of 8, HD/16 k-steps (two per ldmatrix.x4)
        float s[BN / 8][4];
#pragma unroll
        for (int n = 0; n < BN / 8; n++) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < NK; kk += 2) {
                uint32_t bb[4];
                mma::ldmatrix_x4(bb, Kt + (8 * n + lane % 8) * S + 16 * kk + 8 * (lane / 8));
                const uint32_t b0[2] = {bb[0], bb[1]}, b1[2] = {bb[2], bb[3]};
                mma::mma_bf16_16816(s[n], qf[kk], b0, s[n]);
                mma::mma_bf16_16816(s[n], qf[kk + 1], b1, s[n]);
            }
        }

        // online softmax on rows trow[i] (C fragment elements 2i, 2i+1)
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int t = trow[i];
            float mx = m[i];
#pragma unroll
            for (int n = 0; n < BN / 8; n++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int j = j0 + 8 * n + c2 + e;
                    const bool vis = t < L && j < L && (!causal || j <= t) &&
                                     (!segb || attn::seg_visible(tseg[i], segb[j]));
                    const float x = vis ? scale * s[n][2 * i + e] : -INFINITY;
                    s[n][2 * i + e] = x;
                    mx = fmaxf(mx, x);
                }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float ms = mx == -INFINITY ? 0.0f : mx; // a row with nothing visible yet
            const float r = expf(m[i] - ms);              // 0 while m is -inf
            float sum = 0.0f;
#pragma unroll
            for (int n = 0; n < BN / 8; n++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const float p = expf(s[n][2 * i + e] - ms); // exp(-inf) = 0
                    s[n][2 * i + e] = p;
                    sum += p;
                }
            l[i] = l[i] * r + sum;
#pragma unroll
            for (int n = 0; n < ND; n++) {
                o[n][2 * i] *= r;
                o[n][2 * i + 1] *= r;
            }
            m[i] = mx;
        }

        // O += P V: P's accumulators become the A fragments of 4 key steps of 16
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            const uint32_t a[4] = {mma::pack_bf16(s[2 * kk][0], s[2 * kk][1]),
                                   mma::pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                   mma::pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   mma::pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int n = 0; n < ND; n += 2) {
                uint32_t bb[4];
                mma::ldmatrix_x4_trans(bb, Vt + (16 * kk + lane % 8 + 8 * ((lane / 8) % 2)) * S +
                                               8 * n + 8 * (lane / 16));
                const uint32_t b0[2] = {bb[0], bb[1]}, b1[2] = {bb[2], bb[3]};
                mma::mma_bf16_16816(o[n], a, b0, o[n]);
                mma::mma_bf16_16816(o[n + 1], a, b1, o[n + 1]);
            }
        }
        __syncthreads(); // buffer buf is consumed before the next prefetch refills it
    }

#pragma unroll
    for (int i = 0; i < 2; i++) {
        float sum = l[i] + __shfl_xor_sync(0xffffffffu, l[i], 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int t = trow[i];
        if (t >= T) continue;
        const bool valid = t < L;
        const float inv = valid ? 1.0f / sum : 0.0f;
        O *orow = out + ((size_t)b * T + t) * qstride + (size_t)h * HD;
#pragma unroll
        for (int n = 0; n < ND; n++) {
            fa_store2(orow + 8 * n + c2, valid ? o[n][2 * i] * inv : 0.0f,
                      valid ? o[n][2 * i + 1] * inv : 0.0f);
        }
        if (lane % 4 == 0) lse[((size_t)b * NH + h) * T + t] = valid ? m[i] + logf(sum) : 0.0f;
    }
}

// ---------------------------------------------------------------------------------------
// backward (FA2): P recomputed from lse, D = rowsum(dout * out) with dout in bf16
// (fa2_rowdot_kernel, scratch slot 1). Deterministic, no atomics: dK/dV by one CTA per 64-key tile of one
// (b, kv head), which walks the group's query heads and their 64-row query tiles; dQ by a
// separate pass with the forward's layout. Each gradient element is owned by one lane and
// added once (the op's += contract).
// ---------------------------------------------------------------------------------------

size_t fa_bwd_smem_bytes(int HD) {
    return (size_t)4 * 64 * fa_stride(HD) * sizeof(uint16_t) + 2 * BM * sizeof(float);
}

// the A fragments (16 rows x HD) of rows 16*warp.. of a shared tile
template <int HD>
__device__ __forceinline__ void fa_frags(uint32_t f[HD / 16][4], const uint16_t *tile, int warp,
                                         int lane) {
    constexpr int S = fa_stride(HD);
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
        mma::ldmatrix_x4(f[kk], tile + (16 * warp + lane % 16) * S + 16 * kk + 8 * (lane / 16));
}

// acc[n] (16 x 8 blocks n of 64 columns) = A (16 x HD fragments) . rows^T, rows = a shared
// tile [64][HD] read as the B operand ([n][k])
template <int HD>
__device__ __forceinline__ void fa_mma_abt(float acc[8][4], const uint32_t a[HD / 16][4],
                                           const uint16_t *rows, int lane) {
    constexpr int S = fa_stride(HD);
#pragma unroll
    for (int n = 0; n < 8; n++) {
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk += 2) {
            uint32_t bb[4];
            mma::ldmatrix_x4(bb, rows + (8 * n + lane % 8) * S + 16 * kk + 8 * (lane / 8));
            const uint32_t b0[2] = {bb[0], bb[1]}, b1[2] = {bb[2], bb[3]};
            mma::mma_bf16_16816(acc[n], a[kk], b0, acc[n]);
            mma::mma_bf16_16816(acc[n], a[kk + 1], b1, acc[n]);
        }
    }
}

// acc (16 x HD) += X (16 x 64, C fragments x[8][4], rounded to bf16) . tile (shared [64][HD])
template <int HD>
__device__ __forceinline__ void fa_mma_xv(float acc[HD / 8][4], const float x[8][4],
                                          const uint16_t *tile, int lane) {
    constexpr int S = fa_stride(HD);
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        const uint32_t a[4] = {mma::pack_bf16(x[2 * kk][0], x[2 * kk][1]),
                               mma::pack_bf16(x[2 * kk][2], x[2 * kk][3]),
                               mma::pack_bf16(x[2 * kk + 1][0], x[2 * kk + 1][1]),
                               mma::pack_bf16(x[2 * kk + 1][2], x[2 * kk + 1][3])};
#pragma unroll
        for (int n = 0; n < HD / 8; n += 2) {
            uint32_t bb[4];
            mma::ldmatrix_x4_trans(bb, tile + (16 * kk + lane % 8 + 8 * ((lane / 8) % 2)) * S +
                                           8 * n + 8 * (lane / 16));
            const uint32_t b0[2] = {bb[0], bb[1]}, b1[2] = {bb[2], bb[3]};
            mma::mma_bf16_16816(acc[n], a, b0, acc[n]);
            mma::mma_bf16_16816(acc[n + 1], a, b1, acc[n + 1]);
        }
    }
}

template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
fa2_bwd_dkdv_kernel(float *__restrict__ dk, float *__restrict__ dv, const uint16_t *__restrict__ q,
                    const uint16_t *__restrict__ k, const uint16_t *__restrict__ v,
                    const uint16_t *__restrict__ dO, const float *__restrict__ lse,
                    const float *__restrict__ Dbuf, const int *__restrict__ lengths,
                    const int *__restrict__ seg, int T, int NH, int KV, int causal, float scale) {
    extern __shared__ uint4 fa_smem[];
    constexpr int S = fa_stride(HD), ND = HD / 8, NK = HD / 16;
    uint16_t *Ks = reinterpret_cast<uint16_t *>(fa_smem), *Vs = Ks + BN * S;
    uint16_t *Qs = Vs + BN * S, *Os = Qs + BM * S;
    float *Ls = reinterpret_cast<float *>(Os + BM * S), *Ds = Ls + BM;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int j0 = blockIdx.x * BN, kh = blockIdx.y, b = blockIdx.z;
    const int len = lengths[b], L = len < 0 ? 0 : (len > T ? T : len);
    if (j0 >= L) return; // keys j >= L get no gradient
    const size_t qstride = (size_t)NH * HD, kvstride = (size_t)KV * HD;
    const size_t kvoff = ((size_t)b * T * KV + kh) * HD;
    fa_load_rows<HD>(Ks, k + kvoff, kvstride, j0, L);
    fa_load_rows<HD>(Vs, v + kvoff, kvstride, j0, L);
    mma::cp_async_commit();
    mma::cp_async_wait<0>();
    __syncthreads();

    const int g = lane / 4, c2 = 2 * (lane % 4);
    const int jrow[2] = {j0 + 16 * warp + g, j0 + 16 * warp + g + 8};
    const int *segb = seg ? seg + (size_t)b * T : nullptr;
    int tlo = 0, thi = L; // with segments: the queries of the key tile's docs only
    if (segb) fa_doc_range(segb, L, j0, min(j0 + BN, L), &tlo, &thi);
    const int jseg[2] = {segb && jrow[0] < L ? segb[jrow[0]] : 0,
                         segb && jrow[1] < L ? segb[jrow[1]] : 0};
    float adk[ND][4], adv[ND][4];
#pragma unroll
    for (int n = 0; n < ND; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) adk[n][e] = adv[n][e] = 0.0f;

    const int group = NH / KV;
    for (int h = kh * group; h < (kh + 1) * group; h++) {
        const size_t qoff = ((size_t)b * T * NH + h) * HD, loff = ((size_t)b * NH + h) * T;
        for (int tq0 = max(causal ? j0 - j0 % BM : 0, tlo - tlo % BM); tq0 < thi; tq0 += BM) {
            __syncthreads(); // the previous query tile is consumed
            fa_load_rows<HD>(Qs, q + qoff, qstride, tq0, L);
            fa_load_rows<HD>(Os, dO + qoff, qstride, tq0, L);
            mma::cp_async_commit();
            for (int r = tid; r < BM; r += FA_THREADS) {
                const bool ok = tq0 + r < L;
                Ls[r] = ok ? lse[loff + tq0 + r] : 0.0f;
                Ds[r] = ok ? Dbuf[loff + tq0 + r] : 0.0f;
            }
            mma::cp_async_wait<0>();
            __syncthreads();
            float st[8][4], dpt[8][4]; // S^T and dP^T: 16 keys x 64 queries
            { // the warp's K and V fragments, reloaded per tile: registers are scarce
                uint32_t f[NK][4];
                fa_frags<HD>(f, Ks, warp, lane);
                fa_mma_abt<HD>(st, f, Qs, lane);
                fa_frags<HD>(f, Vs, warp, lane);
                fa_mma_abt<HD>(dpt, f, Os, lane);
            }
#pragma unroll
            for (int n = 0; n < 8; n++)
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int tl = 8 * n + c2 + e, t = tq0 + tl, j = jrow[i];
                        const bool vis = t < L && j < L && (!causal || j <= t) &&
                                         (!segb || attn::seg_visible(segb[t], jseg[i]));
                        const float p = vis ? expf(scale * st[n][2 * i + e] - Ls[tl]) : 0.0f;
                        const float ds = vis ? scale * p * (dpt[n][2 * i + e] - Ds[tl]) : 0.0f;
                        st[n][2 * i + e] = p;
                        dpt[n][2 * i + e] = ds;
                    }
            if (dv) fa_mma_xv<HD>(adv, st, Os, lane);  // dV += P^T dO
            if (dk) fa_mma_xv<HD>(adk, dpt, Qs, lane); // dK += dS^T Q
        }
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int j = jrow[i];
        if (j >= L) continue;
        const size_t row = ((size_t)b * T + j) * kvstride + (size_t)kh * HD;
#pragma unroll
        for (int n = 0; n < ND; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                if (dk) dk[row + 8 * n + c2 + e] += adk[n][2 * i + e];
                if (dv) dv[row + 8 * n + c2 + e] += adv[n][2 * i + e];
            }
    }
}

template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
fa2_bwd_dq_kernel(float *__restrict__ dq, const uint16_t *__restrict__ q,
                  const uint16_t *__restrict__ k, const uint16_t *__restrict__ v,
                  const uint16_t *__restrict__ dO, const float *__restrict__ lse,
                  const float *__restrict__ Dbuf, const int *__restrict__ lengths,
                  const int *__restrict__ seg, int T, int NH, int KV, int causal, float scale) {
    extern __shared__ uint4 fa_smem[];
    constexpr int S = fa_stride(HD), ND = HD / 8, NK = HD / 16;
    uint16_t *Qs = reinterpret_cast<uint16_t *>(fa_smem), *Os = Qs + BM * S;
    uint16_t *Ks = Os + BM * S, *Vs = Ks + BN * S;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int q0 = blockIdx.x * BM, h = blockIdx.y, b = blockIdx.z;
    const int len = lengths[b], L = len < 0 ? 0 : (len > T ? T : len);
    if (q0 >= L) return; // padded rows get no gradient
    const int kh = h / (NH / KV);
    const size_t qstride = (size_t)NH * HD, kvstride = (size_t)KV * HD;
    const size_t qoff = ((size_t)b * T * NH + h) * HD, kvoff = ((size_t)b * T * KV + kh) * HD;
    const size_t loff = ((size_t)b * NH + h) * T;
    fa_load_rows<HD>(Qs, q + qoff, qstride, q0, L);
    fa_load_rows<HD>(Os, dO + qoff, qstride, q0, L);
    mma::cp_async_commit();
    mma::cp_async_wait<0>();
    __syncthreads();

    const int g = lane / 4, c2 = 2 * (lane % 4);
    const int trow[2] = {q0 + 16 * warp + g, q0 + 16 * warp + g + 8};
    float lse_r[2], D_r[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        lse_r[i] = trow[i] < L ? lse[loff + trow[i]] : 0.0f;
        D_r[i] = trow[i] < L ? Dbuf[loff + trow[i]] : 0.0f;
    }
    float acc[ND][4];
#pragma unroll
    for (int n = 0; n < ND; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    const int kend = causal ? min(L, q0 + BM) : L;
    const int *segb = seg ? seg + (size_t)b * T : nullptr;
    int jlo = 0, jhi = kend; // with segments: the block's docs only
    if (segb) {
        fa_doc_range(segb, L, q0, min(q0 + BM, L), &jlo, &jhi);
        jhi = min(jhi, kend);
    }
    const int tseg[2] = {segb && trow[0] < L ? segb[trow[0]] : 0,
                         segb && trow[1] < L ? segb[trow[1]] : 0};
    for (int j0 = jlo - jlo % BN; j0 < jhi; j0 += BN) {
        __syncthreads(); // the previous key tile is consumed
        fa_load_rows<HD>(Ks, k + kvoff, kvstride, j0, L);
        fa_load_rows<HD>(Vs, v + kvoff, kvstride, j0, L);
        mma::cp_async_commit();
        mma::cp_async_wait<0>();
        __syncthreads();
        float s[8][4], dp[8][4];
        { // the warp's Q and dO fragments, reloaded per tile: registers are scarce
            uint32_t f[NK][4];
            fa_frags<HD>(f, Qs, warp, lane);
            fa_mma_abt<HD>(s, f, Ks, lane); // S = Q K^T
            fa_frags<HD>(f, Os, warp, lane);
            fa_mma_abt<HD>(dp, f, Vs, lane); // dP = dO V^T
        }
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int j = j0 + 8 * n + c2 + e, t = trow[i];
                    const bool vis = t < L && j < L && (!causal || j <= t) &&
                                     (!segb || attn::seg_visible(tseg[i], segb[j]));
                    const float p = vis ? expf(scale * s[n][2 * i + e] - lse_r[i]) : 0.0f;
                    s[n][2 * i + e] = vis ? scale * p * (dp[n][2 * i + e] - D_r[i]) : 0.0f;
                }
        fa_mma_xv<HD>(acc, s, Ks, lane); // dQ += dS K
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        if (trow[i] >= L) continue;
        float *row = dq + ((size_t)b * T + trow[i]) * qstride + (size_t)h * HD;
#pragma unroll
        for (int n = 0; n < ND; n++) {
            row[8 * n + c2] += acc[n][2 * i];
            row[8 * n + c2 + 1] += acc[n][2 * i + 1];
        }
    }
}

// out as stored: fp32 (the staged path) or bf16 (the native one), widened exactly
__device__ __forceinline__ float rd_out(const float *o, size_t i) { return o[i]; }
__device__ __forceinline__ float rd_out(const uint16_t *o, size_t i) {
    return __uint_as_float((uint32_t)o[i] << 16);
}

// D[(b*NH + h)*T + t] = dout . out of row (b, t, h) with dout in bf16 (as the dP = dO V^T
// products see it), 0 for padded rows; one warp per row, fixed butterfly order
template <typename O>
__global__ void fa2_rowdot_kernel(float *__restrict__ Dbuf, const uint16_t *__restrict__ dO,
                                  const O *__restrict__ out, const int *__restrict__ lengths,
                                  int B, int T, int NH, int HD) {
    const int lane = threadIdx.x % 32;
    const size_t nrows = (size_t)B * T * NH, warps = (size_t)gridDim.x * (blockDim.x / 32);
    for (size_t r = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < nrows;
         r += warps) {
        const int h = (int)(r % NH), t = (int)(r / NH % T), b = (int)(r / NH / T);
        const int len = lengths[b], L = len < 0 ? 0 : (len > T ? T : len);
        float s = 0.0f;
        if (t < L) {
            for (int d = lane; d < HD; d += 32)
                s += __uint_as_float((uint32_t)dO[r * HD + d] << 16) * rd_out(out, r * HD + d);
            for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        }
        if (lane == 0) Dbuf[((size_t)b * NH + h) * T + t] = s;
    }
}

template <int HD>
void fa2_launch_bwd(float *dq, float *dk, float *dv, const uint16_t *q, const uint16_t *k,
                    const uint16_t *v, const uint16_t *dO, const float *lse, const float *Dbuf,
                    const int *lengths, const int *seg, int B, int T, int NH, int KV, int causal,
                    float scale) {
    const size_t bytes = fa_bwd_smem_bytes(HD);
    const unsigned gx = (unsigned)((T + BM - 1) / BM);
    if (dq) {
        static size_t opted = 0;
        if (bytes > 48 * 1024 && bytes > opted) {
            CUDA_CHECK(cudaFuncSetAttribute(fa2_bwd_dq_kernel<HD>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
            opted = bytes;
        }
        fa2_bwd_dq_kernel<HD><<<dim3(gx, (unsigned)NH, (unsigned)B), FA_THREADS, bytes, cuda_stream()>>>(
            dq, q, k, v, dO, lse, Dbuf, lengths, seg, T, NH, KV, causal, scale);
        CUDA_LAUNCH_CHECK();
    }
    if (dk || dv) {
        static size_t opted = 0;
        if (bytes > 48 * 1024 && bytes > opted) {
            CUDA_CHECK(cudaFuncSetAttribute(fa2_bwd_dkdv_kernel<HD>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
            opted = bytes;
        }
        fa2_bwd_dkdv_kernel<HD><<<dim3(gx, (unsigned)KV, (unsigned)B), FA_THREADS, bytes, cuda_stream()>>>(
            dk, dv, q, k, v, dO, lse, Dbuf, lengths, seg, T, NH, KV, causal, scale);
        CUDA_LAUNCH_CHECK();
    }
}

template <int HD, typename O>
void fa2_launch(O *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                const int *lengths, const int *seg, int B, int T, int NH, int KV, int causal,
                float scale) {
    static size_t opted = 0;
    const size_t bytes = fa_smem_bytes(HD);
    if (bytes > 48 * 1024 && bytes > opted) {
        CUDA_CHECK(cudaFuncSetAttribute(fa2_fwd_kernel<HD, O>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
        opted = bytes;
    }
    dim3 grid((unsigned)((T + BM - 1) / BM), (unsigned)NH, (unsigned)B);
    fa2_fwd_kernel<HD, O><<<grid, FA_THREADS, bytes, cuda_stream()>>>(out, lse, q, k, v, lengths, seg,
                                                                    T, NH, KV, causal, scale);
    CUDA_LAUNCH_CHECK();
}

// the forward on bf16 q, k, v into out: fp32, or bf16 rounded by the kernel's epilogue
template <typename O>
void fa2_forward16(O *out, float *lse, const uint16_t *q16, const uint16_t *k16,
                   const uint16_t *v16, const int *lengths, const int *seg, int B, int T, int NH,
                   int KV, int HD, int causal) {
    const float scale = (float)(1.0 / sqrt((double)HD)); // as the CPU
    if (HD == 64) fa2_launch<64, O>(out, lse, q16, k16, v16, lengths, seg, B, T, NH, KV, causal, scale);
    else fa2_launch<128, O>(out, lse, q16, k16, v16, lengths, seg, B, T, NH, KV, causal, scale);
}

// the backward on bf16 q, k, v and out (O: float or uint16_t) with fp32 dout, rounded to bf16
// into o16 (nq elements of scratch slot 5 the caller owns)
template <typename O>
void fa2_backward16(float *dq, float *dk, float *dv, const float *dout, uint16_t *o16,
                    const O *out, const float *lse, const uint16_t *q16, const uint16_t *k16,
                    const uint16_t *v16, const int *lengths, const int *seg, int B, int T, int NH,
                    int KV, int HD, int causal) {
    cuda_f32_to_bf16(o16, dout, (size_t)B * T * NH * HD);
    const size_t nrows = (size_t)B * T * NH;
    float *Dbuf = (float *)cuda_scratch(1, nrows * sizeof(float));
    fa2_rowdot_kernel<O><<<cuda_blocks(nrows * 32, 256), 256, 0, cuda_stream()>>>(
        Dbuf, o16, out, lengths, B, T, NH, HD);
    CUDA_LAUNCH_CHECK();
    const float scale = (float)(1.0 / sqrt((double)HD));
    if (HD == 64)
        fa2_launch_bwd<64>(dq, dk, dv, q16, k16, v16, o16, lse, Dbuf, lengths, seg, B, T, NH, KV, causal, scale);
    else
        fa2_launch_bwd<128>(dq, dk, dv, q16, k16, v16, o16, lse, Dbuf, lengths, seg, B, T, NH, KV, causal, scale);
}

} // namespace

extern "C" int cuda_attention_fa2_forward(float *out, float *lse, const float *q, const float *k,
                                          const float *v, const int *lengths, const int *seg,
                                          int B, int T, int NH, int KV, int HD, int causal) {
    if (HD != 64 && HD != 128) return 0;
    const size_t nq = (size_t)B * T * NH * HD, nkv = (size_t)B * T * KV * HD;
    // one scratch buffer: q | k | v in bf16 (each part a multiple of 16 bytes: HD % 8 == 0)
    uint16_t *q16 = (uint16_t *)cuda_scratch(5, (nq + 2 * nkv) * sizeof(uint16_t));
    uint16_t *k16 = q16 + nq, *v16 = k16 + nkv;
    cuda_f32_to_bf16(q16, q, nq);
    cuda_f32_to_bf16(k16, k, nkv);
    cuda_f32_to_bf16(v16, v, nkv);
    fa2_forward16<float>(out, lse, q16, k16, v16, lengths, seg, B, T, NH, KV, HD, causal);
    return 1;
}

extern "C" int cuda_attention_fa2_backward(float *dq, float *dk, float *dv, const float *dout,
                                           const float *out, const float *lse, const float *q,
                                           const float *k, const float *v, const int *lengths,
                                           const int *seg, int B, int T, int NH, int KV, int HD,
                                           int causal) {
    if (HD != 64 && HD != 128) return 0;
    const size_t nq = (size_t)B * T * NH * HD, nkv = (size_t)B * T * KV * HD;
    uint16_t *q16 = (uint16_t *)cuda_scratch(5, (2 * nq + 2 * nkv) * sizeof(uint16_t));
    uint16_t *k16 = q16 + nq, *v16 = k16 + nkv, *o16 = v16 + nkv;
    cuda_f32_to_bf16(q16, q, nq);
    cuda_f32_to_bf16(k16, k, nkv);
    cuda_f32_to_bf16(v16, v, nkv);
    fa2_backward16<float>(dq, dk, dv, dout, o16, out, lse, q16, k16, v16, lengths, seg, B, T, NH,
                          KV, HD, causal);
    return 1;
}

// the native forms (attention.cu has decided the call goes to these kernels, HD 64 or 128):
// q, k, v read as they are, out stored in bf16 by the forward's epilogue (rounded once from
// the fp32 result: the same bits as the staged path's f32_to_bf16 of out; no scratch)
extern "C" void cuda_attention_fa2_forward_x16(uint16_t *out, float *lse, const uint16_t *q,
                                               const uint16_t *k, const uint16_t *v,
                                               const int *lengths, const int *seg, int B, int T,
                                               int NH, int KV, int HD, int causal) {
    fa2_forward16<uint16_t>(out, lse, q, k, v, lengths, seg, B, T, NH, KV, HD, causal);
}

extern "C" void cuda_attention_fa2_backward_x16(float *dq, float *dk, float *dv,
                                                const float *dout, const uint16_t *out,
                                                const float *lse, const uint16_t *q,
                                                const uint16_t *k, const uint16_t *v,
                                                const int *lengths, const int *seg, int B, int T,
                                                int NH, int KV, int HD, int causal) {
    const size_t nq = (size_t)B * T * NH * HD;
    uint16_t *o16 = (uint16_t *)cuda_scratch(5, nq * sizeof(uint16_t));
    fa2_backward16<uint16_t>(dq, dk, dv, dout, o16, out, lse, q, k, v, lengths, seg, B, T, NH,
                             KV, HD, causal);
}
