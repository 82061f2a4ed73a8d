// norm.cu - LayerNorm and RMSNorm over the last dim of (N, C) rows, forward and backward,
// mirroring kernels/cpu/norm.c, over fp32 or bf16-stored activations (the *_x16 entries),
// with the residual add fused in front (add_*norm_forward) or behind (its backward).
//
// One warp per row (8 rows per 256-thread block), one kernel body per direction, templated
// over the storage type T; RowIO<T> says how a row is read and written and in what
// precision its statistics are summed:
// - fp32: lane l owns the 4-float groups l, l+32, ... of a row and, when C % 4 != 0, lane k
//   the k-th of the last C % 4 columns. A group is one float4 load when C % 4 == 0 and every
//   row pointer involved is 16-byte aligned, else four scalar loads. Row statistics are
//   accumulated in double like the CPU, LayerNorm's variance two-pass (squared deviations
//   from the double mean); the saved mean/rstd are float(double statistic) as on the CPU.
// - bf16: lane l owns the 8-element groups l, l+32, ... (the last group may be partial: the
//   columns past C read as 0), one 16-byte load per group when C % 8 == 0 and the row
//   pointers are aligned. Statistics and the backward's row sums are fp32.
// Per-lane sums are combined with xor-butterfly shuffles: IEEE addition is commutative, so
// every lane ends with the same bits. The ownership, and so the order of every per-lane sum,
// depends only on C, never on alignment: the sums are the same on either path. out/dinp use
// the CPU's float formulas with the saved statistics (bf16 outputs rounded once).
//
// dweight/dbias are column sums over rows in double, in a fixed chunked order (see
// norm_param_partial_kernel); no atomics.
#include <stdint.h>
#include <type_traits>

#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace {

constexpr unsigned kThreads = 256;
constexpr unsigned kRowsPerBlock = kThreads / 32; // one warp per row

template <class A> // double (fp32 rows) or float (bf16 rows)
__device__ __forceinline__ A warp_sum(A v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

bool aligned16(const void *p) { return bf16_aligned16(p); }

struct F4 {
    float v[4];
};

// group j of an fp32 row: floats 4j .. 4j+3
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

// How a row of T is read and written in groups of G (group j of a row of C columns), and
// the sums of the statistics (Acc). kTail: columns G * groups(C) .. C - 1 are outside the
// groups and lane c - G * groups(C) handles column c (fp32); else the last group is partial
// and its columns past C read as 0 (bf16; inside() says which are real).
// sum_sq adds a squared deviation from the mean (RMSNorm: mu = 0); rstd is 1 / sqrt(var +
// eps); sum_dnorm_xhat adds dnorm * xhat to the backward's second row sum.
template <class T>
struct RowIO;

template <>
struct RowIO<float> {
    static constexpr int G = 4;
    static constexpr bool kTail = true;
    using Acc = double;
    using V = F4;
    __device__ static int groups(int C) { return C / 4; }
    __device__ static bool inside(int, int) { return true; }
    template <bool VEC>
    __device__ static F4 load(const float *row, int j, int) { return load4<VEC>(row, j); }
    template <bool VEC>
    __device__ static void store(float *row, int j, int, const F4 &r) { store4<VEC>(row, j, r); }
    // the residual sum as stored
    __device__ static float add(float x, float a) { return x + a; }
    __device__ static void sum_sq(double &sq, float x, double mu, bool) {
        double d = x - mu;
        sq += d * d;
    }
    __device__ static float rstd(double var, float eps) { return (float)(1.0 / sqrt(var + eps)); }
    __device__ static void sum_dnorm_xhat(double &b, float dnorm, float xhat) {
        b += (double)dnorm * xhat;
    }
};

template <>
struct RowIO<uint16_t> {
    static constexpr int G = 8;
    static constexpr bool kTail = false;
    using Acc = float;
    using V = V8;
    __device__ static int groups(int C) { return (C + 7) / 8; }
    __device__ static bool inside(int c, int C) { return c < C; }
    template <bool VEC, class E> // E: uint16_t (the row) or float (weight, gradients)
    __device__ static V8 load(const E *row, int j, int C) { return ld8<VEC>(row, 8 * j, C); }
    template <bool VEC, class E>
    __device__ static void store(E *row, int j, int C, const V8 &r) { st8<VEC>(row, 8 * j, C, r); }
    // the rounded sum is stored and normalised, as add then norm would see it
    __device__ static float add(float x, float a) { return bf16_widen(bf16_round(x + a)); }
    __device__ static void sum_sq(float &sq, float x, float mu, bool inside) {
        float d = inside ? x - mu : 0.0f;
        sq += __fmul_rn(d, d);
    }
    __device__ static float rstd(float var, float eps) { return 1.0f / sqrtf(var + eps); }
    __device__ static void sum_dnorm_xhat(float &b, float dnorm, float xhat) {
        b += __fmul_rn(dnorm, xhat);
    }
};

// LayerNorm (HAS_MEAN) or RMSNorm forward; one warp per row. ADD: the residual add first
// (sum = inp + addend, stored, then normalised; each lane reads back only what it wrote).
template <class T, bool VEC, bool HAS_MEAN, bool ADD>
__global__ void __launch_bounds__(kThreads)
norm_forward_kernel(T *out, float *mean, float *rstd, T *sum, const T *inp, const T *addend,
                    const float *weight, const float *bias, int N, int C, float eps) {
    using S = RowIO<T>;
    using Acc = typename S::Acc;
    using V = typename S::V;
    int lane = threadIdx.x & 31;
    int groups = S::groups(C), tail = S::G * groups + lane; // S::kTail: this lane's column
    size_t stride = (size_t)gridDim.x * kRowsPerBlock;
    for (size_t row = (size_t)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5); row < (size_t)N;
         row += stride) {
        const T *x = inp + row * C;
        Acc s1 = 0; // sum of the row (HAS_MEAN)
        if (ADD) {
            const T *ad = addend + row * C;
            T *y = sum + row * C;
            for (int j = lane; j < groups; j += 32) {
                V xv = S::template load<VEC>(x, j, C), av = S::template load<VEC>(ad, j, C);
#pragma unroll
                for (int k = 0; k < S::G; k++) {
                    xv.v[k] = S::add(xv.v[k], av.v[k]);
                    s1 += xv.v[k]; // 0 past C
                }
                S::template store<VEC>(y, j, C, xv);
            }
            if constexpr (S::kTail) {
                if (tail < C) {
                    y[tail] = S::add(x[tail], ad[tail]);
                    s1 += y[tail];
                }
            }
            x = y;
        } else if (HAS_MEAN) {
            for (int j = lane; j < groups; j += 32) {
                V xv = S::template load<VEC>(x, j, C);
#pragma unroll
                for (int k = 0; k < S::G; k++) s1 += xv.v[k];
            }
            if (S::kTail && tail < C) s1 += as_f32(x[tail]);
        }
        Acc mu = HAS_MEAN ? warp_sum(s1) / C : Acc(0);
        // sum of squared deviations from the mean (mu = 0: RMSNorm's sum of squares)
        Acc sq = 0;
        for (int j = lane; j < groups; j += 32) {
            V xv = S::template load<VEC>(x, j, C);
#pragma unroll
            for (int k = 0; k < S::G; k++) S::sum_sq(sq, xv.v[k], mu, S::inside(S::G * j + k, C));
        }
        if (S::kTail && tail < C) S::sum_sq(sq, as_f32(x[tail]), mu, true);
        // normalise with the saved float statistics so backward sees the same xhat
        float m = (float)mu, s = S::rstd(warp_sum(sq) / C, eps);
        if (lane == 0) {
            if (HAS_MEAN) mean[row] = m;
            rstd[row] = s;
        }
        // __fmul_rn where a product feeds an add: no FMA contraction, the CPU's roundings
        auto norm1 = [&](float xc, float wc, float bc) {
            if (!HAS_MEAN) return xc * s * wc;
            return bias ? __fmul_rn((xc - m) * s, wc) + bc : (xc - m) * s * wc;
        };
        T *o = out + row * C;
        for (int j = lane; j < groups; j += 32) {
            V xv = S::template load<VEC>(x, j, C), wv = S::template load<VEC>(weight, j, C), r;
            V bv = (HAS_MEAN && bias) ? S::template load<VEC>(bias, j, C) : V{};
#pragma unroll
            for (int k = 0; k < S::G; k++) r.v[k] = norm1(xv.v[k], wv.v[k], bv.v[k]);
            S::template store<VEC>(o, j, C, r);
        }
        if constexpr (S::kTail) {
            if (tail < C)
                o[tail] = norm1(x[tail], weight[tail], HAS_MEAN && bias ? bias[tail] : 0.0f);
        }
    }
}

// Backward for dinp, one warp per row. With xhat = (x - m) * s, dnorm = dout * w:
// dinp += s * (dnorm - mean_c(dnorm) - xhat * mean_c(dnorm * xhat)); RMSNorm (no mean)
// drops the mean_c(dnorm) term and uses m = 0. ADD (the fused residual add + norm, inp its
// sum): g = dsum + that (dsum NULL: 0), dinp += g, dadd += g (either may be NULL), the values
// of the norm's backward into the sum's gradient followed by add_backward.
template <class T, bool VEC, bool HAS_MEAN, bool ADD>
__global__ void __launch_bounds__(kThreads)
norm_backward_dinp_kernel(float *dinp, float *dadd, const float *dsum, const float *dout,
                          const T *inp, const float *weight, const float *mean,
                          const float *rstd, int N, int C) {
    using S = RowIO<T>;
    using Acc = typename S::Acc;
    using V = typename S::V;
    int lane = threadIdx.x & 31;
    int groups = S::groups(C), tail = S::G * groups + lane;
    size_t stride = (size_t)gridDim.x * kRowsPerBlock;
    for (size_t row = (size_t)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5); row < (size_t)N;
         row += stride) {
        const float *g = dout + row * C;
        const T *x = inp + row * C;
        float *dx = dinp ? dinp + row * C : nullptr, *da = dadd ? dadd + row * C : nullptr;
        const float *ds = dsum ? dsum + row * C : nullptr;
        float m = HAS_MEAN ? mean[row] : 0.0f, s = rstd[row];
        Acc a = 0, b = 0; // sum dnorm, sum dnorm * xhat (0 past C: g and w read 0)
        auto sums1 = [&](float gc, float xc, float wc) {
            float dnorm = __fmul_rn(gc, wc);
            a += dnorm;
            S::sum_dnorm_xhat(b, dnorm, (xc - m) * s);
        };
        for (int j = lane; j < groups; j += 32) {
            V gv = S::template load<VEC>(g, j, C), xv = S::template load<VEC>(x, j, C);
            V wv = S::template load<VEC>(weight, j, C);
#pragma unroll
            for (int k = 0; k < S::G; k++) sums1(gv.v[k], xv.v[k], wv.v[k]);
        }
        if (S::kTail && tail < C) sums1(g[tail], as_f32(x[tail]), weight[tail]);
        float mean_dnorm = HAS_MEAN ? (float)(warp_sum(a) / C) : 0.0f;
        float mean_dnorm_xhat = (float)(warp_sum(b) / C);
        // The CPU's float expression with every product rounded on its own (__fmul_rn is
        // never contracted into an FMA): dnorm - mean - xhat * mean_xhat cancels almost
        // completely for tiny C (RMSNorm with C = 1 leaves eps / x^2 of dnorm), where an
        // FMA's different rounding would show up relative to the result. ADD: plus dsum.
        auto grad1 = [&](float gc, float xc, float wc, float dsc) {
            float xhat = (xc - m) * s;
            float t = __fmul_rn(gc, wc) - mean_dnorm - __fmul_rn(xhat, mean_dnorm_xhat);
            return ADD ? dsc + __fmul_rn(t, s) : __fmul_rn(t, s);
        };
        for (int j = lane; j < groups; j += 32) {
            V gv = S::template load<VEC>(g, j, C), xv = S::template load<VEC>(x, j, C);
            V wv = S::template load<VEC>(weight, j, C), r;
            V sv = ADD && ds ? S::template load<VEC>(ds, j, C) : V{};
#pragma unroll
            for (int k = 0; k < S::G; k++) r.v[k] = grad1(gv.v[k], xv.v[k], wv.v[k], sv.v[k]);
            if (dx) {
                V dv = S::template load<VEC>(dx, j, C);
#pragma unroll
                for (int k = 0; k < S::G; k++) dv.v[k] += r.v[k];
                S::template store<VEC>(dx, j, C, dv);
            }
            if (ADD && da) {
                V av = S::template load<VEC>(da, j, C);
#pragma unroll
                for (int k = 0; k < S::G; k++) av.v[k] += r.v[k];
                S::template store<VEC>(da, j, C, av);
            }
        }
        if (S::kTail && tail < C) {
            float t = grad1(g[tail], as_f32(x[tail]), weight[tail], ADD && ds ? ds[tail] : 0.0f);
            if (dx) dx[tail] += t;
            if (ADD && da) da[tail] += t;
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

template <class T>
void norm_param_backward(float *dweight, float *dbias, const float *dout, const T *inp,
                         const float *mean, const float *rstd, int N, int C) {
    cudaStream_t st = cuda_stream();
    int rows = cuda_colsum_rows(N, C);
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

template <class T, bool HAS_MEAN, bool ADD>
void forward_launch(bool vec, T *out, float *mean, float *rstd, T *sum, const T *inp,
                    const T *addend, const float *weight, const float *bias, int N, int C,
                    float eps) {
    unsigned grid = cuda_blocks((size_t)N, kRowsPerBlock);
    cudaStream_t st = cuda_stream();
    if (vec)
        norm_forward_kernel<T, true, HAS_MEAN, ADD><<<grid, kThreads, 0, st>>>(
            out, mean, rstd, sum, inp, addend, weight, bias, N, C, eps);
    else
        norm_forward_kernel<T, false, HAS_MEAN, ADD><<<grid, kThreads, 0, st>>>(
            out, mean, rstd, sum, inp, addend, weight, bias, N, C, eps);
    CUDA_LAUNCH_CHECK();
}

// sum/addend NULL: the plain norm; else the fused residual add + norm (T from out alone)
template <bool HAS_MEAN, class T>
void launch_forward(T *out, float *mean, float *rstd, std::type_identity_t<T> *sum,
                    const T *inp, const std::type_identity_t<T> *addend, const float *weight,
                    const float *bias, int N, int C, float eps) {
    bool vec = C % RowIO<T>::G == 0 && aligned16(out) && aligned16(inp) && aligned16(weight) &&
               aligned16(bias) && aligned16(sum) && aligned16(addend);
    if (sum)
        forward_launch<T, HAS_MEAN, true>(vec, out, mean, rstd, sum, inp, addend, weight, bias,
                                          N, C, eps);
    else
        forward_launch<T, HAS_MEAN, false>(vec, out, mean, rstd, sum, inp, addend, weight, bias,
                                           N, C, eps);
}

template <class T, bool HAS_MEAN, bool ADD>
void backward_launch(bool vec, float *dinp, float *dadd, const float *dsum, const float *dout,
                     const T *inp, const float *weight, const float *mean, const float *rstd,
                     int N, int C) {
    unsigned grid = cuda_blocks((size_t)N, kRowsPerBlock);
    cudaStream_t st = cuda_stream();
    if (vec)
        norm_backward_dinp_kernel<T, true, HAS_MEAN, ADD><<<grid, kThreads, 0, st>>>(
            dinp, dadd, dsum, dout, inp, weight, mean, rstd, N, C);
    else
        norm_backward_dinp_kernel<T, false, HAS_MEAN, ADD><<<grid, kThreads, 0, st>>>(
            dinp, dadd, dsum, dout, inp, weight, mean, rstd, N, C);
    CUDA_LAUNCH_CHECK();
}

// add: the fused residual add + norm's backward (dinp/dadd the gradients of its two inputs,
// dsum the sum's own gradient or NULL)
template <bool HAS_MEAN, class T>
void launch_backward(float *dinp, float *dweight, float *dbias, const float *dout, const T *inp,
                     const float *weight, const float *mean, const float *rstd, int N, int C,
                     bool add = false, float *dadd = nullptr, const float *dsum = nullptr) {
    if (dinp || dadd) { // first, as on the CPU
        bool vec = C % RowIO<T>::G == 0 && aligned16(dinp) && aligned16(dout) &&
                   aligned16(inp) && aligned16(weight) && aligned16(dadd) && aligned16(dsum);
        if (add)
            backward_launch<T, HAS_MEAN, true>(vec, dinp, dadd, dsum, dout, inp, weight, mean,
                                               rstd, N, C);
        else
            backward_launch<T, HAS_MEAN, false>(vec, dinp, dadd, dsum, dout, inp, weight, mean,
                                                rstd, N, C);
    }
    if ((dweight || dbias) && C > 0)
        norm_param_backward(dweight, dbias, dout, inp, HAS_MEAN ? mean : nullptr, rstd, N, C);
}

} // namespace

// ---------------------------------------------------------------------------------------
// launchers (kernels/kernels.h semantics; device pointers; cuda_stream())

// one set per storage type: T the activations (inp, out, the residual sum), SFX the entry
// names' suffix (none for fp32, _x16 for bf16)
#define NORM_ENTRIES(SFX, T)                                                                   \
    extern "C" void cuda_layernorm_forward##SFX(T *out, float *mean, float *rstd, const T *inp,  \
                                                const float *weight, const float *bias, int N, \
                                                int C, float eps) {                             \
        if (N <= 0) return;                                                                    \
        launch_forward<true>(out, mean, rstd, nullptr, inp, nullptr, weight, bias, N, C, eps); \
    }                                                                                          \
    extern "C" void cuda_layernorm_backward##SFX(float *dinp, float *dweight, float *dbias,     \
                                                 const float *dout, const T *inp,              \
                                                 const float *weight, const float *mean,       \
                                                 const float *rstd, int N, int C) {            \
        if (N <= 0) return;                                                                    \
        launch_backward<true>(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);      \
    }                                                                                          \
    extern "C" void cuda_rmsnorm_forward##SFX(T *out, float *rstd, const T *inp,               \
                                              const float *weight, int N, int C, float eps) {  \
        if (N <= 0) return;                                                                    \
        launch_forward<false>(out, nullptr, rstd, nullptr, inp, nullptr, weight, nullptr, N, C, \
                              eps);                                                            \
    }                                                                                          \
    extern "C" void cuda_rmsnorm_backward##SFX(float *dinp, float *dweight, const float *dout, \
                                               const T *inp, const float *weight,              \
                                               const float *rstd, int N, int C) {              \
        if (N <= 0) return;                                                                    \
        launch_backward<false>(dinp, dweight, nullptr, dout, inp, weight, nullptr, rstd, N, C); \
    }                                                                                          \
    extern "C" void cuda_add_layernorm_forward##SFX(T *sum, T *out, float *mean, float *rstd,  \
                                                    const T *x, const T *a,                    \
                                                    const float *weight, const float *bias,    \
                                                    int N, int C, float eps) {                 \
        if (N <= 0) return;                                                                    \
        launch_forward<true>(out, mean, rstd, sum, x, a, weight, bias, N, C, eps);             \
    }                                                                                          \
    extern "C" void cuda_add_rmsnorm_forward##SFX(T *sum, T *out, float *rstd, const T *x,     \
                                                  const T *a, const float *weight, int N,      \
                                                  int C, float eps) {                          \
        if (N <= 0) return;                                                                    \
        launch_forward<false>(out, nullptr, rstd, sum, x, a, weight, nullptr, N, C, eps);      \
    }                                                                                          \
    /* the fused residual add + norm's backward (KERNEL_OPS_OPTIONAL) */                       \
    extern "C" void cuda_add_layernorm_backward##SFX(                                          \
        float *dx, float *da, float *dweight, float *dbias, const float *dsum,                 \
        const float *dout, const T *sum, const float *weight, const float *mean,               \
        const float *rstd, int N, int C) {                                                     \
        if (N <= 0) return;                                                                    \
        launch_backward<true>(dx, dweight, dbias, dout, sum, weight, mean, rstd, N, C, true,   \
                              da, dsum);                                                       \
    }                                                                                          \
    extern "C" void cuda_add_rmsnorm_backward##SFX(float *dx, float *da, float *dweight,       \
                                                   const float *dsum, const float *dout,       \
                                                   const T *sum, const float *weight,          \
                                                   const float *rstd, int N, int C) {          \
        if (N <= 0) return;                                                                    \
        launch_backward<false>(dx, dweight, nullptr, dout, sum, weight, nullptr, rstd, N, C,   \
                               true, da, dsum);                                                \
    }

NORM_ENTRIES(, float)
NORM_ENTRIES(_x16, uint16_t)
