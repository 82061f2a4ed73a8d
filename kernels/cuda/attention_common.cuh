// attention_common.cuh - device helpers the attention kernels share (attention.cu,
// attention_fa2.cu, attention_rows.cu): warp reductions, the length clamp and the segment
// rule of kernels/op_list.h.
#pragma once

namespace attn {

// butterfly: every lane ends with the same value (IEEE addition is commutative)
__device__ __forceinline__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

__device__ __forceinline__ int clamp_len(int L, int T) { return L < 0 ? 0 : (L > T ? T : L); }

// the segment rule: key (seg sj) is visible to query (seg st) iff same doc (seg >> 16) and the
// key's branch (seg & 0xffff) is 0 (the shared prefix) or the query's
__host__ __device__ __forceinline__ bool seg_visible(int st, int sj) {
    return (st >> 16) == (sj >> 16) && ((sj & 0xffff) == 0 || (sj & 0xffff) == (st & 0xffff));
}

// first token in [0, L) whose doc is >= d (docs are non-decreasing along the valid tokens)
__device__ __forceinline__ int doc_lower(const int *segb, int L, int d) {
    int lo = 0, hi = L;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if ((segb[mid] >> 16) < d) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

} // namespace attn
