// norm.cu - LayerNorm and RMSNorm over the last dim of (N, C) rows, forward and backward,
// mirroring kernels/cpu/norm.c.
//
// One warp per row (8 rows per 256-thread block). Row statistics are accumulated in double
// like the CPU, LayerNorm's variance two-pass (mean, then squared deviations from the
// double mean), and combined with xor-butterfly shuffles: IEEE addition is commutative, so
// every lane ends with the same bits. The saved mean/rstd are float(double statistic) as on
// the CPU, and out/dinp use the CPU's float formulas with those saved values.
//
// Loads: lane l owns the 4-float groups l, l+32, ... of a row (and, when C % 4 != 0, lane k
// the k-th of the last C % 4 columns). A group is one float4 load when C % 4 == 0 and every
// row pointer involved is 16-byte aligned, else four scalar loads. The ownership, and so
// the order of every per-lane double sum, depends only on C, never on alignment: the
// double sums are the same on either path.
//
// dweight/dbias are column sums over rows in double, in a fixed chunked order (see
// norm_param_partial_kernel); no atomics.
#include <stdint.h>

#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace {

constexpr unsigned kThreads = 256;
constexpr unsigned kRowsPerBlock = kThreads / 32; // one warp per row

__device__ __forceinline__ double warp_sum(double v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

bool aligned16(const void *p) { return p == nullptr || ((uintptr_t)p & 15u) == 0; }

struct F4 {
    float v[4];
};

// group j of a row: floats 4j .. 4j+3
template <bool VEC>
__device__ __forceinline__ F4 load4(const float *row, int j) {
    F4 r;
    if (VEC) {
        float4 q = reinterpret_cast<const float4 *>(row)[j];
        r.v[0] = q.x, r.v[1] = q.y, r.v[2] = q.z, r.v[3] = q.w;
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++) r.v[k] = row[4 * j + k];
    }
    return r;
}

template <bool VEC>
__device__ __forceinline__ void store4(float *row, int j, const F4 &r) {
    if (VEC) {
        reinterpret_cast<float4 *>(row)[j] = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++) row[4 * j + k] = r.v[k];
    }
}

// LayerNorm (HAS_MEAN) or RMSNorm forward; one warp per row. ADD: the residual add first
// (sum = inp + addend, stored, then normalised; each lane reads back only what it wrote).
template <bool VEC, bool HAS_MEAN, bool ADD>
__global__ void __launch_bounds__(kThreads)
norm_forward_kernel(float *out, float *mean, float *rstd, float *sum, const float *inp,
                    const float *addend, const float *weight, const float *bias, int N, int C,
                    float eps) {
    int lane = threadIdx.x & 31;
    int groups = C / 4, tail0 = 4 * groups; // columns tail0..C-1: lane c - tail0
    size_t stride = (size_t)gridDim.x * kRowsPerBlock;
    for (size_t row = (size_t)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5); row < (size_t)N;
         row += stride) {
        const float *x = inp + row * C;
        if (ADD) {
            const float *ad = addend + row * C;
            float *y = sum + row * C;
            for (int j = lane; j < groups; j += 32) {
                F4 xv = load4<VEC>(x, j), av = load4<VEC>(ad, j);
#pragma unroll
                for (int k = 0; k < 4; k++) xv.v[k] += av.v[k];
                store4<VEC>(y, j, xv);
            }
            if (tail0 + lane < C) y[tail0 + lane] = x[tail0 + lane] + ad[tail0 + lane];
            x = y;
        }
        float *o = out + row * C;
        double mu = 0.0;
        if (HAS_MEAN) {
            double sum = 0.0;
            for (int j = lane; j < groups; j += 32) {
                F4 xv = load4<VEC>(x, j);
#pragma unroll
                for (int k = 0; k < 4; k++) sum += xv.v[k];
            }
            if (tail0 + lane < C) sum += x[tail0 + lane];
            mu = warp_sum(sum) / C;
        }
        // sum of squared deviations from the double mean (mu = 0: RMSNorm's sum of squares)
        double sq = 0.0;
        for (int j = lane; j < groups; j += 32) {
            F4 xv = load4<VEC>(x, j);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                double d = xv.v[k] - mu;
                sq += d * d;
            }
        }
        if (tail0 + lane < C) {
            double d = x[tail0 + lane] - mu;
            sq += d * d;
        }
        double var = warp_sum(sq) / C;
        // normalise with the saved float statistics so backward sees the same xhat
        float m = HAS_MEAN ? (float)mu : 0.0f;
        float s = (float)(1.0 / sqrt(var + eps));
        if (lane == 0) {
            if (HAS_MEAN) mean[row] = m;
            rstd[row] = s;
        }
        // __fmul_rn where a product feeds an add: no FMA contraction, the CPU's roundings
        auto norm1 = [&](float xc, int c) {
            if (!HAS_MEAN) return xc * s * weight[c];
            return bias ? __fmul_rn((xc - m) * s, weight[c]) + bias[c]
                        : (xc - m) * s * weight[c];
        };
        for (int j = lane; j < groups; j += 32) {
            F4 xv = load4<VEC>(x, j), wv = load4<VEC>(weight, j), r;
            F4 bv = (HAS_MEAN && bias) ? load4<VEC>(bias, j) : F4{};
#pragma unroll
            for (int k = 0; k < 4; k++) {
                if (!HAS_MEAN)
                    r.v[k] = xv.v[k] * s * wv.v[k];
                else if (bias)
                    r.v[k] = __fmul_rn((xv.v[k] - m) * s, wv.v[k]) + bv.v[k];
                else
                    r.v[k] = (xv.v[k] - m) * s * wv.v[k];
            }
            store4<VEC>(o, j, r);
        }
        if (tail0 + lane < C) o[tail0 + lane] = norm1(x[tail0 + lane], tail0 + lane);
    }
}

// Shared backward for dinp, one warp per row. With xhat = (x - m) * s, dnorm = dout * w:
// dinp += s * (dnorm - mean_c(dnorm) - xhat * mean_c(dnorm * xhat)); RMSNorm (no mean)
// drops the mean_c(dnorm) term and uses m = 0. ADD (the fused residual add + norm, inp its
// sum): g = dsum + that (dsum NULL: 0), dinp += g, dadd += g (either may be NULL), the values
// of the norm's backward into the sum's gradient followed by add_backward.
template <bool VEC, bool HAS_MEAN, bool ADD>
__global__ void __launch_bounds__(kThreads)
norm_backward_dinp_kernel(float *dinp, float *dadd, const float *dsum, const float *dout,
                          const float *inp, const float *weight, const float *mean,
                          const float *rstd, int N, int C) {
    int lane = threadIdx.x & 31;
    int groups = C / 4, tail0 = 4 * groups;
    size_t stride = (size_t)gridDim.x * kRowsPerBlock;
    for (size_t row = (size_t)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5); row < (size_t)N;
         row += stride) {
        const float *g = dout + row * C, *x = inp + row * C;
        float *dx = dinp ? dinp + row * C : nullptr, *da = dadd ? dadd + row * C : nullptr;
        const float *ds = dsum ? dsum + row * C : nullptr;
        float m = HAS_MEAN ? mean[row] : 0.0f, s = rstd[row];
        double a = 0.0, b = 0.0; // sum dnorm, sum dnorm * xhat
        auto sums1 = [&](float gc, float xc, float wc) {
            float dnorm = __fmul_rn(gc, wc);
            a += dnorm;
            b += (double)dnorm * ((xc - m) * s);
        };
        for (int j = lane; j < groups; j += 32) {
            F4 gv = load4<VEC>(g, j), xv = load4<VEC>(x, j), wv = load4<VEC>(weight, j);
#pragma unroll
            for (int k = 0; k < 4; k++) sums1(gv.v[k], xv.v[k], wv.v[k]);
        }
        if (tail0 + lane < C) sums1(g[tail0 + lane], x[tail0 + lane], weight[tail0 + lane]);
        a = warp_sum(a);
        b = warp_sum(b);
        float mean_dnorm = HAS_MEAN ? (float)(a / C) : 0.0f;
        float mean_dnorm_xhat = (float)(b / C);
        // The CPU's float expression with every product rounded on its own (__fmul_rn is
        // never contracted into an FMA): dnorm - mean - xhat * mean_xhat cancels almost
        // completely for tiny C (RMSNorm with C = 1 leaves eps / x^2 of dnorm), where an
        // FMA's different rounding would show up relative to the result.
        auto grad1 = [&](float gc, float xc, float wc) {
            float xhat = (xc - m) * s;
            float t = __fmul_rn(gc, wc) - mean_dnorm - __fmul_rn(xhat, mean_dnorm_xhat);
            return __fmul_rn(t, s);
        };
        for (int j = lane; j < groups; j += 32) {
            F4 gv = load4<VEC>(g, j), xv = load4<VEC>(x, j), wv = load4<VEC>(weight, j);
            if (!ADD) {
                F4 dv = load4<VEC>(dx, j);
#pragma unroll
                for (int k = 0; k < 4; k++) dv.v[k] += grad1(gv.v[k], xv.v[k], wv.v[k]);
                store4<VEC>(dx, j, dv);
                continue;
            }
            F4 sv = ds ? load4<VEC>(ds, j) : F4{};
#pragma unroll
            for (int k = 0; k < 4; k++) sv.v[k] += grad1(gv.v[k], xv.v[k], wv.v[k]);
            if (dx) {
                F4 dv = load4<VEC>(dx, j);
#pragma unroll
                for (int k = 0; k < 4; k++) dv.v[k] += sv.v[k];
                store4<VEC>(dx, j, dv);
            }
            if (da) {
                F4 av = load4<VEC>(da, j);
#pragma unroll
                for (int k = 0; k < 4; k++) av.v[k] += sv.v[k];
                store4<VEC>(da, j, av);
            }
        }
        if (tail0 + lane < C) {
            int c = tail0 + lane;
            float t = grad1(g[c], x[c], weight[c]);
            if (!ADD) {
                dx[c] += t;
            } else {
                t = (ds ? ds[c] : 0.0f) + t;
                if (dx) dx[c] += t;
                if (da) da[c] += t;
            }
        }
    }
}

// dweight[c] += sum_n dout[n,c] * xhat[n,c]; dbias[c] += sum_n dout[n,c], in double.
// Rows are cut into chunks of `rows` (a function of N and C only, never of the device);
// thread (chunk, c) sums its chunk in increasing n. With one chunk it adds straight into
// dweight/dbias, the CPU's exact order; otherwise the chunk sums go to the partial arrays
// (pw, pb: (nchunks, C) each) and norm_param_finish adds them in chunk order.
template <class T> // inp fp32 or bf16
__global__ void norm_param_partial_kernel(float *dweight, float *dbias, double *pw, double *pb,
                                          const float *dout, const T *inp,
                                          const float *mean, const float *rstd, int N, int C,
                                          int rows, int nchunks) {
    size_t total = (size_t)nchunks * C;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t k = i / (size_t)C, c = i - k * (size_t)C;
        size_t n0 = k * rows, n1 = n0 + rows < (size_t)N ? n0 + rows : (size_t)N;
        double dw = 0.0, db = 0.0;
        for (size_t n = n0; n < n1; n++) {
            float g = dout[n * C + c], x = as_f32(inp[n * C + c]);
            float m = mean ? mean[n] : 0.0f, s = rstd[n];
            dw += (double)g * ((x - m) * s);
            db += g;
        }
        if (nchunks == 1) {
            if (dweight) dweight[c] += (float)dw;
            if (dbias) dbias[c] += (float)db;
        } else {
            pw[i] = dw;
            pb[i] = db;
        }
    }
}

__global__ void norm_param_finish_kernel(float *dweight, float *dbias, const double *pw,
                                         const double *pb, int C, int nchunks) {
    for (size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x; c < (size_t)C;
         c += (size_t)gridDim.x * blockDim.x) {
        double dw = 0.0, db = 0.0;
        for (int k = 0; k < nchunks; k++) {
            dw += pw[(size_t)k * C + c];
            db += pb[(size_t)k * C + c];
        }
        if (dweight) dweight[c] += (float)dw;
        if (dbias) dbias[c] += (float)db;
    }
}

// Rows per chunk of the column sums: enough chunks that nchunks * C threads fill the GPU
// (about 256k), at least 32 rows each so a chunk is worth a thread.
int colsum_rows(int N, int C) {
    long max_chunks = 262144L / C > 1 ? 262144L / C : 1;
    long rows = ((long)N + max_chunks - 1) / max_chunks;
    return (int)(rows > 32 ? rows : 32);
}

template <class T>
void norm_param_backward(float *dweight, float *dbias, const float *dout, const T *inp,
                         const float *mean, const float *rstd, int N, int C) {
    cudaStream_t st = cuda_stream();
    int rows = colsum_rows(N, C);
    int nchunks = (int)(((long)N + rows - 1) / rows);
    double *pw = nullptr, *pb = nullptr;
    if (nchunks > 1) {
        size_t per = (size_t)nchunks * C;
        pw = (double *)cuda_scratch(0, 2 * per * sizeof(double));
        pb = pw + per;
    }
    size_t threads = (size_t)nchunks * C;
    norm_param_partial_kernel<T><<<cuda_blocks(threads, kThreads), kThreads, 0, st>>>(
        dweight, dbias, pw, pb, dout, inp, mean, rstd, N, C, rows, nchunks);
    CUDA_LAUNCH_CHECK();
    if (nchunks > 1) {
        norm_param_finish_kernel<<<cuda_blocks((size_t)C, kThreads), kThreads, 0, st>>>(
            dweight, dbias, pw, pb, C, nchunks);
        CUDA_LAUNCH_CHECK();
    }
}

// sum/addend NULL: the plain norm; else the fused residual add + norm
template <bool HAS_MEAN>
void launch_forward(float *out, float *mean, float *rstd, float *sum, const float *inp,
                    const float *addend, const float *weight, const float *bias, int N, int C,
                    float eps) {
    unsigned grid = cuda_blocks((size_t)N, kRowsPerBlock);
    bool vec = C % 4 == 0 && aligned16(out) && aligned16(inp) && aligned16(weight) &&
               aligned16(bias) && aligned16(sum) && aligned16(addend);
    cudaStream_t st = cuda_stream();
    if (sum && vec)
        norm_forward_kernel<true, HAS_MEAN, true><<<grid, kThreads, 0, st>>>(
            out, mean, rstd, sum, inp, addend, weight, bias, N, C, eps);
    else if (sum)
        norm_forward_kernel<false, HAS_MEAN, true><<<grid, kThreads, 0, st>>>(
            out, mean, rstd, sum, inp, addend, weight, bias, N, C, eps);
    else if (vec)
        norm_forward_kernel<true, HAS_MEAN, false><<<grid, kThreads, 0, st>>>(
            out, mean, rstd, sum, inp, addend, weight, bias, N, C, eps);
    else
        norm_forward_kernel<false, HAS_MEAN, false><<<grid, kThreads, 0, st>>>(
            out, mean, rstd, sum, inp, addend, weight, bias, N, C, eps);
    CUDA_LAUNCH_CHECK();
}

// add: the fused residual add + norm's backward (dinp/dadd the gradients of its two inputs,
// dsum the sum's own gradient or NULL)
template <bool HAS_MEAN>
void launch_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, const float *mean,
                     const float *rstd, int N, int C, bool add = false, float *dadd = nullptr,
                     const float *dsum = nullptr) {
    if (dinp || dadd) { // first, as on the CPU
        unsigned grid = cuda_blocks((size_t)N, kRowsPerBlock);
        bool vec = C % 4 == 0 && aligned16(dinp) && aligned16(dout) && aligned16(inp) &&
                   aligned16(weight) && aligned16(dadd) && aligned16(dsum);
        cudaStream_t st = cuda_stream();
        if (add && vec)
            norm_backward_dinp_kernel<true, HAS_MEAN, true><<<grid, kThreads, 0, st>>>(
                dinp, dadd, dsum, dout, inp, weight, mean, rstd, N, C);
        else if (add)
            norm_backward_dinp_kernel<false, HAS_MEAN, true><<<grid, kThreads, 0, st>>>(
                dinp, dadd, dsum, dout, inp, weight, mean, rstd, N, C);
        else if (vec)
            norm_backward_dinp_kernel<true, HAS_MEAN, false><<<grid, kThreads, 0, st>>>(
                dinp, dadd, dsum, dout, inp, weight, mean, rstd, N, C);
        else
            norm_backward_dinp_kernel<false, HAS_MEAN, false><<<grid, kThreads, 0, st>>>(
                dinp, dadd, dsum, dout, inp, weight, mean, rstd, N, C);
        CUDA_LAUNCH_CHECK();
    }
    if ((dweight || dbias) && C > 0)
        norm_param_backward(dweight, dbias, dout, inp, HAS_MEAN ? mean : nullptr, rstd, N, C);
}

// ---------------------------------------------------------------------------------------
// bf16-stored activations (the *_x16 entries): the same one-warp-per-row layout over groups
// of 8 columns (lane l owns groups l, l+32, ...; the last group may be partial), one
// 16-byte load per group when C % 8 == 0 and the row pointers are aligned. Statistics and
// the backward's row sums are fp32 (per lane in column order, then the butterfly); the
// outputs are the fp32 kernels' float formulas on the widened inputs, rounded once.

__device__ __forceinline__ float warp_sumf(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

template <bool VEC, bool HAS_MEAN, bool ADD>
__global__ void __launch_bounds__(kThreads)
norm_forward_x16_kernel(uint16_t *out, float *mean, float *rstd, uint16_t *sum,
                        const uint16_t *inp, const uint16_t *addend, const float *weight,
                        const float *bias, int N, int C, float eps) {
    int lane = threadIdx.x & 31;
    int groups = (C + 7) / 8;
    size_t stride = (size_t)gridDim.x * kRowsPerBlock;
    for (size_t row = (size_t)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5); row < (size_t)N;
         row += stride) {
        const uint16_t *x = inp + row * C;
        float s1 = 0.0f;
        if (ADD) { // the rounded sum is stored and normalised, as add then norm would see it
            const uint16_t *ad = addend + row * C;
            uint16_t *y = sum + row * C;
            for (int j = lane; j < groups; j += 32) {
                V8 xv = ld8<VEC>(x, 8 * j, C), av = ld8<VEC>(ad, 8 * j, C);
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    xv.v[k] = bf16_widen(bf16_round(xv.v[k] + av.v[k]));
                    s1 += xv.v[k]; // 0 past C
                }
                st8<VEC>(y, 8 * j, C, xv);
            }
            x = y;
        } else if (HAS_MEAN) {
            for (int j = lane; j < groups; j += 32) {
                V8 xv = ld8<VEC>(x, 8 * j, C);
#pragma unroll
                for (int k = 0; k < 8; k++) s1 += xv.v[k];
            }
        }
        float m = HAS_MEAN ? warp_sumf(s1) / C : 0.0f;
        float sq = 0.0f; // squared deviations from the mean (RMSNorm: m = 0)
        for (int j = lane; j < groups; j += 32) {
            V8 xv = ld8<VEC>(x, 8 * j, C);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float d = 8 * j + k < C ? xv.v[k] - m : 0.0f;
                sq += __fmul_rn(d, d);
            }
        }
        float s = 1.0f / sqrtf(warp_sumf(sq) / C + eps);
        if (lane == 0) {
            if (HAS_MEAN) mean[row] = m;
            rstd[row] = s;
        }
        uint16_t *o = out + row * C;
        for (int j = lane; j < groups; j += 32) {
            V8 xv = ld8<VEC>(x, 8 * j, C), wv = ld8<VEC>(weight, 8 * j, C), r;
            V8 bv = (HAS_MEAN && bias) ? ld8<VEC>(bias, 8 * j, C) : V8{};
#pragma unroll
            for (int k = 0; k < 8; k++) {
                if (!HAS_MEAN)
                    r.v[k] = xv.v[k] * s * wv.v[k];
                else if (bias)
                    r.v[k] = __fmul_rn((xv.v[k] - m) * s, wv.v[k]) + bv.v[k];
                else
                    r.v[k] = (xv.v[k] - m) * s * wv.v[k];
            }
            st8<VEC>(o, 8 * j, C, r);
        }
    }
}

// dinp += s * (dnorm - mean_c(dnorm) - xhat * mean_c(dnorm * xhat)), fp32 row sums; ADD as
// norm_backward_dinp_kernel
template <bool VEC, bool HAS_MEAN, bool ADD>
__global__ void __launch_bounds__(kThreads)
norm_backward_dinp_x16_kernel(float *dinp, float *dadd, const float *dsum, const float *dout,
                              const uint16_t *inp, const float *weight, const float *mean,
                              const float *rstd, int N, int C) {
    int lane = threadIdx.x & 31;
    int groups = (C + 7) / 8;
    size_t stride = (size_t)gridDim.x * kRowsPerBlock;
    for (size_t row = (size_t)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5); row < (size_t)N;
         row += stride) {
        const float *g = dout + row * C;
        const uint16_t *x = inp + row * C;
        float *dx = dinp ? dinp + row * C : nullptr, *da = dadd ? dadd + row * C : nullptr;
        const float *ds = dsum ? dsum + row * C : nullptr;
        float m = HAS_MEAN ? mean[row] : 0.0f, s = rstd[row];
        float a = 0.0f, b = 0.0f; // sum dnorm, sum dnorm * xhat (0 past C: g and w read 0)
        for (int j = lane; j < groups; j += 32) {
            V8 gv = ld8<VEC>(g, 8 * j, C), xv = ld8<VEC>(x, 8 * j, C);
            V8 wv = ld8<VEC>(weight, 8 * j, C);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float dnorm = __fmul_rn(gv.v[k], wv.v[k]);
                a += dnorm;
                b += __fmul_rn(dnorm, (xv.v[k] - m) * s);
            }
        }
        float mean_dnorm = HAS_MEAN ? warp_sumf(a) / C : 0.0f;
        float mean_dnorm_xhat = warp_sumf(b) / C;
        for (int j = lane; j < groups; j += 32) {
            V8 gv = ld8<VEC>(g, 8 * j, C), xv = ld8<VEC>(x, 8 * j, C);
            V8 wv = ld8<VEC>(weight, 8 * j, C), r;
            V8 sv = ADD && ds ? ld8<VEC>(ds, 8 * j, C) : V8{};
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float xhat = (xv.v[k] - m) * s;
                float t = __fmul_rn(gv.v[k], wv.v[k]) - mean_dnorm -
                          __fmul_rn(xhat, mean_dnorm_xhat);
                r.v[k] = ADD ? sv.v[k] + __fmul_rn(t, s) : __fmul_rn(t, s);
            }
            if (dx) {
                V8 dv = ld8<VEC>(dx, 8 * j, C);
#pragma unroll
                for (int k = 0; k < 8; k++) dv.v[k] += r.v[k];
                st8<VEC>(dx, 8 * j, C, dv);
            }
            if (ADD && da) {
                V8 av = ld8<VEC>(da, 8 * j, C);
#pragma unroll
                for (int k = 0; k < 8; k++) av.v[k] += r.v[k];
                st8<VEC>(da, 8 * j, C, av);
            }
        }
    }
}

template <bool HAS_MEAN>
void launch_forward_x16(uint16_t *out, float *mean, float *rstd, uint16_t *sum,
                        const uint16_t *inp, const uint16_t *addend, const float *weight,
                        const float *bias, int N, int C, float eps) {
    unsigned grid = cuda_blocks((size_t)N, kRowsPerBlock);
    bool vec = C % 8 == 0 && aligned16(out) && aligned16(inp) && aligned16(weight) &&
               aligned16(bias) && aligned16(sum) && aligned16(addend);
    cudaStream_t st = cuda_stream();
    if (sum && vec)
        norm_forward_x16_kernel<true, HAS_MEAN, true><<<grid, kThreads, 0, st>>>(
            out, mean, rstd, sum, inp, addend, weight, bias, N, C, eps);
    else if (sum)
        norm_forward_x16_kernel<false, HAS_MEAN, true><<<grid, kThreads, 0, st>>>(
            out, mean, rstd, sum, inp, addend, weight, bias, N, C, eps);
    else if (vec)
        norm_forward_x16_kernel<true, HAS_MEAN, false><<<grid, kThreads, 0, st>>>(
            out, mean, rstd, sum, inp, addend, weight, bias, N, C, eps);
    else
        norm_forward_x16_kernel<false, HAS_MEAN, false><<<grid, kThreads, 0, st>>>(
            out, mean, rstd, sum, inp, addend, weight, bias, N, C, eps);
    CUDA_LAUNCH_CHECK();
}

template <bool HAS_MEAN>
void launch_backward_x16(float *dinp, float *dweight, float *dbias, const float *dout,
                         const uint16_t *inp, const float *weight, const float *mean,
                         const float *rstd, int N, int C, bool add = false,
                         float *dadd = nullptr, const float *dsum = nullptr) {
    if (dinp || dadd) {
        unsigned grid = cuda_blocks((size_t)N, kRowsPerBlock);
        bool vec = C % 8 == 0 && aligned16(dinp) && aligned16(dout) && aligned16(inp) &&
                   aligned16(weight) && aligned16(dadd) && aligned16(dsum);
        cudaStream_t st = cuda_stream();
        if (add && vec)
            norm_backward_dinp_x16_kernel<true, HAS_MEAN, true><<<grid, kThreads, 0, st>>>(
                dinp, dadd, dsum, dout, inp, weight, mean, rstd, N, C);
        else if (add)
            norm_backward_dinp_x16_kernel<false, HAS_MEAN, true><<<grid, kThreads, 0, st>>>(
                dinp, dadd, dsum, dout, inp, weight, mean, rstd, N, C);
        else if (vec)
            norm_backward_dinp_x16_kernel<true, HAS_MEAN, false><<<grid, kThreads, 0, st>>>(
                dinp, dadd, dsum, dout, inp, weight, mean, rstd, N, C);
        else
            norm_backward_dinp_x16_kernel<false, HAS_MEAN, false><<<grid, kThreads, 0, st>>>(
                dinp, dadd, dsum, dout, inp, weight, mean, rstd, N, C);
        CUDA_LAUNCH_CHECK();
    }
    if ((dweight || dbias) && C > 0)
        norm_param_backward(dweight, dbias, dout, inp, HAS_MEAN ? mean : nullptr, rstd, N, C);
}

} // namespace

// ---------------------------------------------------------------------------------------
// launchers (kernels/kernels.h semantics; device pointers; cuda_stream())

extern "C" void cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                       const float *weight, const float *bias, int N, int C,
                                       float eps) {
    if (N <= 0) return;
    launch_forward<true>(out, mean, rstd, nullptr, inp, nullptr, weight, bias, N, C, eps);
}

extern "C" void cuda_layernorm_backward(float *dinp, float *dweight, float *dbias,
                                        const float *dout, const float *inp,
                                        const float *weight, const float *mean,
                                        const float *rstd, int N, int C) {
    if (N <= 0) return;
    launch_backward<true>(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

extern "C" void cuda_rmsnorm_forward(float *out, float *rstd, const float *inp,
                                     const float *weight, int N, int C, float eps) {
    if (N <= 0) return;
    launch_forward<false>(out, nullptr, rstd, nullptr, inp, nullptr, weight, nullptr, N, C, eps);
}

extern "C" void cuda_rmsnorm_backward(float *dinp, float *dweight, const float *dout,
                                      const float *inp, const float *weight, const float *rstd,
                                      int N, int C) {
    if (N <= 0) return;
    launch_backward<false>(dinp, dweight, nullptr, dout, inp, weight, nullptr, rstd, N, C);
}

extern "C" void cuda_add_layernorm_forward(float *sum, float *out, float *mean, float *rstd,
                                           const float *x, const float *a, const float *weight,
                                           const float *bias, int N, int C, float eps) {
    if (N <= 0) return;
    launch_forward<true>(out, mean, rstd, sum, x, a, weight, bias, N, C, eps);
}

extern "C" void cuda_add_rmsnorm_forward(float *sum, float *out, float *rstd, const float *x,
                                         const float *a, const float *weight, int N, int C,
                                         float eps) {
    if (N <= 0) return;
    launch_forward<false>(out, nullptr, rstd, sum, x, a, weight, nullptr, N, C, eps);
}

extern "C" void cuda_layernorm_forward_x16(uint16_t *out, float *mean, float *rstd,
                                           const uint16_t *inp, const float *weight,
                                           const float *bias, int N, int C, float eps) {
    if (N <= 0) return;
    launch_forward_x16<true>(out, mean, rstd, nullptr, inp, nullptr, weight, bias, N, C, eps);
}

extern "C" void cuda_layernorm_backward_x16(float *dinp, float *dweight, float *dbias,
                                            const float *dout, const uint16_t *inp,
                                            const float *weight, const float *mean,
                                            const float *rstd, int N, int C) {
    if (N <= 0) return;
    launch_backward_x16<true>(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

extern "C" void cuda_add_layernorm_forward_x16(uint16_t *sum, uint16_t *out, float *mean,
                                               float *rstd, const uint16_t *x,
                                               const uint16_t *a, const float *weight,
                                               const float *bias, int N, int C, float eps) {
    if (N <= 0) return;
    launch_forward_x16<true>(out, mean, rstd, sum, x, a, weight, bias, N, C, eps);
}

extern "C" void cuda_rmsnorm_forward_x16(uint16_t *out, float *rstd, const uint16_t *inp,
                                         const float *weight, int N, int C, float eps) {
    if (N <= 0) return;
    launch_forward_x16<false>(out, nullptr, rstd, nullptr, inp, nullptr, weight, nullptr, N, C,
                              eps);
}

extern "C" void cuda_rmsnorm_backward_x16(float *dinp, float *dweight, const float *dout,
                                          const uint16_t *inp, const float *weight,
                                          const float *rstd, int N, int C) {
    if (N <= 0) return;
    launch_backward_x16<false>(dinp, dweight, nullptr, dout, inp, weight, nullptr, rstd, N, C);
}

extern "C" void cuda_add_rmsnorm_forward_x16(uint16_t *sum, uint16_t *out, float *rstd,
                                             const uint16_t *x, const uint16_t *a,
                                             const float *weight, int N, int C, float eps) {
    if (N <= 0) return;
    launch_forward_x16<false>(out, nullptr, rstd, sum, x, a, weight, nullptr, N, C, eps);
}

// the fused residual add + norm's backward (KERNEL_OPS_OPTIONAL; sum fp32 or bf16)
extern "C" void cuda_add_layernorm_backward(float *dx, float *da, float *dweight, float *dbias,
                                            const float *dsum, const float *dout,
                                            const float *sum, const float *weight,
                                            const float *mean, const float *rstd, int N, int C) {
    if (N <= 0) return;
    launch_backward<true>(dx, dweight, dbias, dout, sum, weight, mean, rstd, N, C, true, da, dsum);
}

extern "C" void cuda_add_rmsnorm_backward(float *dx, float *da, float *dweight, const float *dsum,
                                          const float *dout, const float *sum,
                                          const float *weight, const float *rstd, int N, int C) {
    if (N <= 0) return;
    launch_backward<false>(dx, dweight, nullptr, dout, sum, weight, nullptr, rstd, N, C, true, da,
                           dsum);
}

extern "C" void cuda_add_layernorm_backward_x16(float *dx, float *da, float *dweight,
                                                float *dbias, const float *dsum,
                                                const float *dout, const uint16_t *sum,
                                                const float *weight, const float *mean,
                                                const float *rstd, int N, int C) {
    if (N <= 0) return;
    launch_backward_x16<true>(dx, dweight, dbias, dout, sum, weight, mean, rstd, N, C, true, da,
                              dsum);
}

extern "C" void cuda_add_rmsnorm_backward_x16(float *dx, float *da, float *dweight,
                                              const float *dsum, const float *dout,
                                              const uint16_t *sum, const float *weight,
                                              const float *rstd, int N, int C) {
    if (N <= 0) return;
    launch_backward_x16<false>(dx, dweight, nullptr, dout, sum, weight, nullptr, rstd, N, C, true,
                               da, dsum);
}
