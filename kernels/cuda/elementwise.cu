// elementwise.cu - the CUDA ops that touch each element once (kernels/cpu/embed.c,
// activation.c, rope.c, residual.c): token embedding, exact GELU, SwiGLU (also over one
// fused [gate | up] tensor), rotate-half RoPE, im2col / col2im, pixel shuffle v2, residual
// add, per-channel scale and drop_path, forward and backward.
//
// Every output element is computed by exactly one thread with the CPU's formula and
// precision (GELU and RoPE in double as on the CPU). In float expressions a product that
// feeds an add is written __fmul_rn, which nvcc never contracts into an FMA, so it rounds
// as on the CPU (built with -std=c11, i.e. without contraction). The two reductions are ordered:
// embedding_backward adds rows in increasing n per column, and channel_scale's dscale
// sums rows in a fixed chunked order (see colsum_plan below). No float atomics anywhere.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace {

constexpr unsigned kThreads = 256;
constexpr double kSqrt1_2 = 0.70710678118654752440;     // M_SQRT1_2, as the CPU uses
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // INV_SQRT_2PI of activation.c

__device__ __forceinline__ size_t grid_start() {
    return (size_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t grid_stride() { return (size_t)gridDim.x * blockDim.x; }

// ---- token embedding ----

__global__ void embedding_forward_kernel(float *out, const int *ids, const float *table,
                                         int N, int C) {
    size_t total = (size_t)N * C;
    for (size_t i = grid_start(); i < total; i += grid_stride()) {
        size_t n = i / (size_t)C, c = i - n * (size_t)C;
        out[i] = table[(size_t)ids[n] * C + c];
    }
}

// One thread per column walks the rows in increasing n, so every table element receives
// its rows in the CPU's order (bit for bit the same sums). Rows go in windows of
// kEmbWindow: the window's table values are loaded together (one memory latency per
// window instead of one per row), each row adds onto the latest earlier value of the same
// id in the window (or the loaded one), and the values are stored back in row order, so a
// repeated id ends with its last, complete sum. The ids are the same for every thread:
// the comparisons never diverge.
constexpr int kEmbWindow = 8;

__global__ void embedding_backward_kernel(float *dtable, const float *__restrict__ dout,
                                          const int *__restrict__ ids, int N, int C) {
    for (size_t c = grid_start(); c < (size_t)C; c += grid_stride()) {
        int n = 0;
        for (; n <= N - kEmbWindow; n += kEmbWindow) {
            int id[kEmbWindow];
            float v[kEmbWindow];
#pragma unroll
            for (int k = 0; k < kEmbWindow; k++) id[k] = ids[n + k];
#pragma unroll
            for (int k = 0; k < kEmbWindow; k++) v[k] = dtable[(size_t)id[k] * C + c];
#pragma unroll
            for (int k = 0; k < kEmbWindow; k++) {
                float base = v[k];
#pragma unroll
                for (int j = 0; j < k; j++)
                    if (id[j] == id[k]) base = v[j]; // latest earlier row of this id
                v[k] = base + dout[(size_t)(n + k) * C + c];
            }
#pragma unroll
            for (int k = 0; k < kEmbWindow; k++) dtable[(size_t)id[k] * C + c] = v[k];
        }
        for (; n < N; n++) dtable[(size_t)ids[n] * C + c] += dout[(size_t)n * C + c];
    }
}

// ---- exact GELU, in double like activation.c: x * Phi(x), Phi(x) = erfc(-x/sqrt2)/2 ----

__global__ void gelu_forward_kernel(float *out, const float *inp, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) {
        double x = inp[i];
        out[i] = (float)(0.5 * x * erfc(-x * kSqrt1_2));
    }
}

__global__ void gelu_backward_kernel(float *dinp, const float *dout, const float *inp,
                                     size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) {
        double x = inp[i];
        double d = 0.5 * erfc(-x * kSqrt1_2) + x * exp(-0.5 * x * x) * kInvSqrt2Pi;
        dinp[i] += (float)(dout[i] * d);
    }
}

// ---- SwiGLU: out = silu(gate) * up, float math as activation.c ----

// sigmoid(g) and 1 - sigmoid(g) from e = exp(-|g|) <= 1 (never overflows)
__device__ __forceinline__ void sigmoid_pair(float g, float *sig, float *one_minus_sig) {
    float e = expf(-fabsf(g));
    float r = 1.0f / (1.0f + e), p = e * r;
    *sig = g >= 0 ? r : p;
    *one_minus_sig = g >= 0 ? p : r;
}

__global__ void swiglu_forward_kernel(float *out, const float *gate, const float *up,
                                      size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) {
        float s, oms;
        sigmoid_pair(gate[i], &s, &oms);
        out[i] = gate[i] * s * up[i];
    }
}

__global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dout,
                                       const float *gate, const float *up, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) {
        float g = gate[i], s, oms;
        sigmoid_pair(g, &s, &oms);
        if (dgate) dgate[i] += __fmul_rn(dout[i] * up[i], s * (1.0f + __fmul_rn(g, oms)));
        if (dup) dup[i] += __fmul_rn(dout[i], g * s);
    }
}

// The same over the fused gate/up GEMM output gu (N, 2I): one thread per output element
// (n, i) reads gate gu[n, i] and up gu[n, I + i] and, backward, writes both gradients.
__global__ void swiglu_fused_forward_kernel(float *out, const float *gu, int N, int I) {
    size_t total = (size_t)N * I;
    for (size_t j = grid_start(); j < total; j += grid_stride()) {
        size_t n = j / (size_t)I, g = j + n * (size_t)I; // gu offset of gate (n, i)
        float s, oms;
        sigmoid_pair(gu[g], &s, &oms);
        out[j] = gu[g] * s * gu[g + I];
    }
}

__global__ void swiglu_fused_backward_kernel(float *dgu, const float *dout, const float *gu,
                                             int N, int I) {
    size_t total = (size_t)N * I;
    for (size_t j = grid_start(); j < total; j += grid_stride()) {
        size_t n = j / (size_t)I, gi = j + n * (size_t)I;
        float g = gu[gi], u = gu[gi + I], s, oms;
        sigmoid_pair(g, &s, &oms);
        dgu[gi] += __fmul_rn(dout[j] * u, s * (1.0f + __fmul_rn(g, oms)));
        dgu[gi + I] += __fmul_rn(dout[j], g * s);
    }
}

// ---- rotate-half RoPE, in double like rope.c ----

// One thread per (row n, pair i < HD/2): the angle, its cos and sin are computed once and
// applied to pair i of every head. Both elements of a pair are read before either is
// written, so y == x (in-place forward) is fine. dir = -1 is the transposed rotation.
template <bool ACCUMULATE>
__global__ void rope_kernel(float *y, const float *x, const int *pos, int N, int NH, int HD,
                            float theta, double dir) {
    int half = HD / 2;
    size_t total = (size_t)N * half;
    for (size_t idx = grid_start(); idx < total; idx += grid_stride()) {
        size_t n = idx / (size_t)half;
        int i = (int)(idx - n * (size_t)half);
        double inv_freq = pow((double)theta, -2.0 * i / HD);
        double s, c;
        sincos((double)pos[n] * inv_freq, &s, &c);
        s *= dir;
        for (int h = 0; h < NH; h++) {
            size_t base = ((size_t)n * NH + h) * HD + i;
            double a = x[base], b = x[base + half];
            double ya = a * c - b * s, yb = b * c + a * s;
            if (ACCUMULATE) {
                y[base] = (float)(y[base] + ya);
                y[base + half] = (float)(y[base + half] + yb);
            } else {
                y[base] = (float)ya;
                y[base + half] = (float)yb;
            }
        }
    }
}

// ---- im2col / col2im (patches tile the image: every element has one source) ----

// one thread per cols element: row (b*Gh + y)*Gw + x, column (ch*p + ky)*p + kx
__global__ void im2col_forward_kernel(float *cols, const float *img, int B, int CH, int H,
                                      int W, int p) {
    size_t Gh = H / p, Gw = W / p, pp = (size_t)p * p, K = CH * pp;
    size_t total = (size_t)B * Gh * Gw * K;
    for (size_t i = grid_start(); i < total; i += grid_stride()) {
        size_t row = i / K, k = i - row * K;
        size_t ch = k / pp, r = k - ch * pp, ky = r / p, kx = r - ky * p;
        size_t x = row % Gw, y = (row / Gw) % Gh, b = row / (Gw * Gh);
        cols[i] = img[((b * CH + ch) * H + y * p + ky) * W + x * p + kx];
    }
}

// one thread per image pixel: adds its single patch value; pixels outside the Gh*p x Gw*p
// area covered by patches (none when p divides H and W) are left alone like on the CPU
__global__ void im2col_backward_kernel(float *dimg, const float *dcols, int B, int CH, int H,
                                       int W, int p) {
    size_t Gh = H / p, Gw = W / p, K = (size_t)CH * p * p;
    size_t total = (size_t)B * CH * H * W;
    for (size_t i = grid_start(); i < total; i += grid_stride()) {
        size_t xx = i % W, t = i / W, yy = t % H;
        t /= H;
        size_t ch = t % CH, b = t / CH;
        size_t y = yy / p, ky = yy % p, x = xx / p, kx = xx % p;
        if (y >= Gh || x >= Gw) continue;
        dimg[i] += dcols[((b * Gh + y) * Gw + x) * K + (ch * p + ky) * p + kx];
    }
}

// ---- pixel shuffle v2: out token a*(G/2)+c2, quarter q = 2*dy+dx <- cell (2a+dy, 2c2+dx) ----

// index in inp (B, G*G, C) of element i of out (B, (G/2)^2, 4C)
__device__ __forceinline__ size_t pixel_shuffle_src(size_t i, size_t G, size_t C) {
    size_t h = G / 2;
    size_t c = i % C, t = i / C;
    size_t q = t % 4;
    t /= 4;
    size_t c2 = t % h;
    t /= h;
    size_t a = t % h, b = t / h;
    size_t cell = (2 * a + q / 2) * G + 2 * c2 + q % 2;
    return (b * G * G + cell) * C + c;
}

// one thread per out element; backward is the inverse permutation (no collisions)
__global__ void pixel_shuffle_forward_kernel(float *out, const float *inp, size_t total,
                                             int G, int C) {
    for (size_t i = grid_start(); i < total; i += grid_stride())
        out[i] = inp[pixel_shuffle_src(i, G, C)];
}

__global__ void pixel_shuffle_backward_kernel(float *dinp, const float *dout, size_t total,
                                              int G, int C) {
    for (size_t i = grid_start(); i < total; i += grid_stride())
        dinp[pixel_shuffle_src(i, G, C)] += dout[i];
}

// ---- residual add, channel scale, drop_path ----

__global__ void add_forward_kernel(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) out[i] = a[i] + b[i];
}

// da and db may be the same buffer (add(x, x)): each element then gets dout twice, in the
// CPU's order (da first)
__global__ void add_backward_kernel(float *da, float *db, const float *dout, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) {
        if (da) da[i] += dout[i];
        if (db) db[i] += dout[i];
    }
}

template <bool ACCUMULATE>
__global__ void channel_scale_kernel(float *out, const float *inp, const float *scale, int N,
                                     int C) {
    size_t total = (size_t)N * C;
    for (size_t i = grid_start(); i < total; i += grid_stride()) {
        size_t c = i % (size_t)C;
        if (ACCUMULATE)
            out[i] += __fmul_rn(inp[i], scale[c]);
        else
            out[i] = inp[i] * scale[c];
    }
}

// dscale[c] += sum_n dout[n,c] * inp[n,c], in double. Rows are cut into chunks of
// `rows` (a function of N and C only, never of the device): thread (chunk, c) sums its
// chunk in increasing n. With one chunk it adds straight into dscale, which is the CPU's
// exact order; otherwise the chunk sums go to `partial` and colsum_finish adds them in
// chunk order.
__global__ void dscale_partial_kernel(float *dscale, double *partial, const float *dout,
                                      const float *inp, int N, int C, int rows, int nchunks) {
    size_t total = (size_t)nchunks * C;
    for (size_t i = grid_start(); i < total; i += grid_stride()) {
        size_t k = i / (size_t)C, c = i - k * (size_t)C;
        size_t n0 = k * rows, n1 = n0 + rows < (size_t)N ? n0 + rows : (size_t)N;
        double acc = 0.0;
        for (size_t n = n0; n < n1; n++) acc += (double)dout[n * C + c] * inp[n * C + c];
        if (nchunks == 1)
            dscale[c] += (float)acc;
        else
            partial[i] = acc;
    }
}

__global__ void colsum_finish_kernel(float *dst, const double *partial, int C, int nchunks) {
    for (size_t c = grid_start(); c < (size_t)C; c += grid_stride()) {
        double acc = 0.0;
        for (int k = 0; k < nchunks; k++) acc += partial[(size_t)k * C + c];
        dst[c] += (float)acc;
    }
}

// Rows per chunk of the dscale reduction: enough chunks that nchunks * C threads fill the
// GPU (about 256k), at least 32 rows each so a chunk is worth a thread.
int colsum_rows(int N, int C) {
    long max_chunks = 262144L / C > 1 ? 262144L / C : 1;
    long rows = ((long)N + max_chunks - 1) / max_chunks;
    return (int)(rows > 32 ? rows : 32);
}

template <bool ACCUMULATE>
__global__ void drop_path_kernel(float *out, const float *inp, const float *keep_scale,
                                 size_t total, size_t per_sample) {
    for (size_t i = grid_start(); i < total; i += grid_stride()) {
        float s = keep_scale[i / per_sample];
        if (ACCUMULATE)
            out[i] += __fmul_rn(inp[i], s);
        else
            out[i] = inp[i] * s;
    }
}

} // namespace

// ---------------------------------------------------------------------------------------
// launchers (kernels/kernels.h semantics; device pointers; cuda_stream())

extern "C" void cuda_embedding_forward(float *out, const int *ids, const float *table, int N,
                                       int C) {
    size_t total = (size_t)N * C;
    if (N <= 0 || C <= 0) return;
    embedding_forward_kernel<<<cuda_blocks(total, kThreads), kThreads, 0, cuda_stream()>>>(
        out, ids, table, N, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_embedding_backward(float *dtable, const float *dout, const int *ids,
                                        int N, int C) {
    if (!dtable || N <= 0 || C <= 0) return;
    embedding_backward_kernel<<<cuda_blocks((size_t)C, kThreads), kThreads, 0,
                                cuda_stream()>>>(dtable, dout, ids, N, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_gelu_forward(float *out, const float *inp, size_t n) {
    if (n == 0) return;
    gelu_forward_kernel<<<cuda_blocks(n, kThreads), kThreads, 0, cuda_stream()>>>(out, inp, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_gelu_backward(float *dinp, const float *dout, const float *inp,
                                   size_t n) {
    if (!dinp || n == 0) return;
    gelu_backward_kernel<<<cuda_blocks(n, kThreads), kThreads, 0, cuda_stream()>>>(dinp, dout,
                                                                                    inp, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_swiglu_forward(float *out, const float *gate, const float *up,
                                    size_t n) {
    if (n == 0) return;
    swiglu_forward_kernel<<<cuda_blocks(n, kThreads), kThreads, 0, cuda_stream()>>>(out, gate,
                                                                                     up, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_swiglu_backward(float *dgate, float *dup, const float *dout,
                                     const float *gate, const float *up, size_t n) {
    if ((!dgate && !dup) || n == 0) return;
    swiglu_backward_kernel<<<cuda_blocks(n, kThreads), kThreads, 0, cuda_stream()>>>(
        dgate, dup, dout, gate, up, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_swiglu_fused_forward(float *out, const float *gu, int N, int I) {
    size_t total = (size_t)N * I;
    if (N <= 0 || I <= 0) return;
    swiglu_fused_forward_kernel<<<cuda_blocks(total, kThreads), kThreads, 0, cuda_stream()>>>(
        out, gu, N, I);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_swiglu_fused_backward(float *dgu, const float *dout, const float *gu, int N,
                                           int I) {
    size_t total = (size_t)N * I;
    if (!dgu || N <= 0 || I <= 0) return;
    swiglu_fused_backward_kernel<<<cuda_blocks(total, kThreads), kThreads, 0, cuda_stream()>>>(
        dgu, dout, gu, N, I);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_rope_forward(float *out, const float *inp, const int *pos, int N, int NH,
                                  int HD, float theta) {
    if (N <= 0 || NH <= 0 || HD < 2) return;
    size_t total = (size_t)N * (HD / 2);
    rope_kernel<false><<<cuda_blocks(total, kThreads), kThreads, 0, cuda_stream()>>>(
        out, inp, pos, N, NH, HD, theta, 1.0);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_rope_backward(float *dinp, const float *dout, const int *pos, int N,
                                   int NH, int HD, float theta) {
    if (!dinp || N <= 0 || NH <= 0 || HD < 2) return;
    size_t total = (size_t)N * (HD / 2);
    rope_kernel<true><<<cuda_blocks(total, kThreads), kThreads, 0, cuda_stream()>>>(
        dinp, dout, pos, N, NH, HD, theta, -1.0);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_im2col_forward(float *cols, const float *img, int B, int CH, int H, int W,
                                    int p) {
    if (B <= 0 || CH <= 0 || p <= 0 || H < p || W < p) return;
    size_t total = (size_t)B * (H / p) * (W / p) * CH * p * p;
    im2col_forward_kernel<<<cuda_blocks(total, kThreads), kThreads, 0, cuda_stream()>>>(
        cols, img, B, CH, H, W, p);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_im2col_backward(float *dimg, const float *dcols, int B, int CH, int H,
                                     int W, int p) {
    if (!dimg || B <= 0 || CH <= 0 || p <= 0 || H < p || W < p) return;
    size_t total = (size_t)B * CH * H * W;
    im2col_backward_kernel<<<cuda_blocks(total, kThreads), kThreads, 0, cuda_stream()>>>(
        dimg, dcols, B, CH, H, W, p);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_pixel_shuffle_forward(float *out, const float *inp, int B, int G, int C) {
    if (B <= 0 || G < 2 || C <= 0) return;
    size_t total = (size_t)B * (G / 2) * (G / 2) * 4 * C;
    pixel_shuffle_forward_kernel<<<cuda_blocks(total, kThreads), kThreads, 0, cuda_stream()>>>(
        out, inp, total, G, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_pixel_shuffle_backward(float *dinp, const float *dout, int B, int G,
                                            int C) {
    if (!dinp || B <= 0 || G < 2 || C <= 0) return;
    size_t total = (size_t)B * (G / 2) * (G / 2) * 4 * C;
    pixel_shuffle_backward_kernel<<<cuda_blocks(total, kThreads), kThreads, 0,
                                    cuda_stream()>>>(dinp, dout, total, G, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_add_forward(float *out, const float *a, const float *b, size_t n) {
    if (n == 0) return;
    add_forward_kernel<<<cuda_blocks(n, kThreads), kThreads, 0, cuda_stream()>>>(out, a, b, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_add_backward(float *da, float *db, const float *dout, size_t n) {
    if ((!da && !db) || n == 0) return;
    add_backward_kernel<<<cuda_blocks(n, kThreads), kThreads, 0, cuda_stream()>>>(da, db, dout,
                                                                                   n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_channel_scale_forward(float *out, const float *inp, const float *scale,
                                           int N, int C) {
    if (N <= 0 || C <= 0) return;
    size_t total = (size_t)N * C;
    channel_scale_kernel<false><<<cuda_blocks(total, kThreads), kThreads, 0, cuda_stream()>>>(
        out, inp, scale, N, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_channel_scale_backward(float *dinp, float *dscale, const float *dout,
                                            const float *inp, const float *scale, int N,
                                            int C) {
    if (N <= 0 || C <= 0) return;
    cudaStream_t st = cuda_stream();
    if (dinp) { // first, as on the CPU
        size_t total = (size_t)N * C;
        channel_scale_kernel<true><<<cuda_blocks(total, kThreads), kThreads, 0, st>>>(
            dinp, dout, scale, N, C);
        CUDA_LAUNCH_CHECK();
    }
    if (dscale) {
        int rows = colsum_rows(N, C);
        int nchunks = (int)(((long)N + rows - 1) / rows);
        double *partial = nullptr;
        if (nchunks > 1)
            partial = (double *)cuda_scratch(0, (size_t)nchunks * C * sizeof(double));
        size_t threads = (size_t)nchunks * C;
        dscale_partial_kernel<<<cuda_blocks(threads, kThreads), kThreads, 0, st>>>(
            dscale, partial, dout, inp, N, C, rows, nchunks);
        CUDA_LAUNCH_CHECK();
        if (nchunks > 1) {
            colsum_finish_kernel<<<cuda_blocks((size_t)C, kThreads), kThreads, 0, st>>>(
                dscale, partial, C, nchunks);
            CUDA_LAUNCH_CHECK();
        }
    }
}

extern "C" void cuda_drop_path_forward(float *out, const float *inp, const float *keep_scale,
                                       int B, size_t per_sample) {
    if (B <= 0 || per_sample == 0) return;
    size_t total = (size_t)B * per_sample;
    drop_path_kernel<false><<<cuda_blocks(total, kThreads), kThreads, 0, cuda_stream()>>>(
        out, inp, keep_scale, total, per_sample);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_drop_path_backward(float *dinp, const float *dout, const float *keep_scale,
                                        int B, size_t per_sample) {
    if (!dinp || B <= 0 || per_sample == 0) return;
    size_t total = (size_t)B * per_sample;
    drop_path_kernel<true><<<cuda_blocks(total, kThreads), kThreads, 0, cuda_stream()>>>(
        dinp, dout, keep_scale, total, per_sample);
    CUDA_LAUNCH_CHECK();
}
