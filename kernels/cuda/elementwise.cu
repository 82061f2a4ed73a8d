// elementwise.cu - the CUDA ops that touch each element once (kernels/cpu/embed.c,
// activation.c, rope.c, residual.c): token embedding, exact GELU, SwiGLU (also over one
// fused [gate | up] tensor), rotate-half RoPE, im2col / col2im, pixel shuffle v2, residual
// add, per-channel scale and drop_path, forward and backward.
//
// Every output element is computed by exactly one thread with the CPU's formula and
// precision (GELU and RoPE in double as on the CPU; the formulas, shared with
// elementwise_bf16.cu, are in elementwise.cuh). In float expressions a product that
// feeds an add is written __fmul_rn, which nvcc never contracts into an FMA, so it rounds
// as on the CPU (built with -std=c11, i.e. without contraction). The two reductions are ordered:
// embedding_backward adds rows in increasing n per column, and channel_scale's dscale
// sums rows in a fixed chunked order (see colsum_plan below). No float atomics anywhere
// (the embedding backward's integer atomics only count and place rows; the sums are ordered).
#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/elementwise.cuh"

namespace {

constexpr unsigned kThreads = 256;

// ---- token embedding ----

__global__ void embedding_forward_kernel(float *out, const int *ids, const float *table,
                                         int N, int C) {
    size_t total = (size_t)N * C;
    for (size_t i = grid_start(); i < total; i += grid_stride()) {
        size_t n = i / (size_t)C, c = i - n * (size_t)C;
        out[i] = table[(size_t)ids[n] * C + c];
    }
}

// The backward groups the rows by id (a stable counting sort, ints only) and sums each id's
// rows in one block, one thread per column, in increasing n: every table element receives
// its rows in the CPU's order, so the sums are bit for bit the CPU's, whatever the launch
// order, and all ids (and all columns) run in parallel. The sort: count the rows of each id
// (integer atomics: the counts do not depend on their order), an exclusive scan gives each
// id its slot range, the rows are scattered into their id's range (in atomic order) and then
// each row's rank among the rows of its id is counted, which puts every range in increasing
// n. Scratch slot 1: cnt (V + 1), fill (V), perm (N), sorted (N) ints.
constexpr unsigned kScanThreads = 1024;

__global__ void emb_count_kernel(int *cnt, const int *ids, int N) {
    for (size_t n = grid_start(); n < (size_t)N; n += grid_stride()) atomicAdd(&cnt[ids[n]], 1);
}

// cnt (V + 1) -> exclusive prefix sums in place (cnt[V] = N), one block: each thread scans a
// contiguous piece, thread 0 scans the piece totals
__global__ void __launch_bounds__(kScanThreads) emb_scan_kernel(int *cnt, int V) {
    __shared__ int part[kScanThreads];
    int per = (V + (int)kScanThreads - 1) / (int)kScanThreads;
    int lo = min((int)threadIdx.x * per, V), hi = min(lo + per, V), s = 0;
    for (int v = lo; v < hi; v++) s += cnt[v];
    part[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        int run = 0;
        for (unsigned t = 0; t < kScanThreads; t++) {
            int x = part[t];
            part[t] = run;
            run += x;
        }
        cnt[V] = run;
    }
    __syncthreads();
    int run = part[threadIdx.x];
    for (int v = lo; v < hi; v++) {
        int x = cnt[v];
        cnt[v] = run;
        run += x;
    }
}

__global__ void emb_scatter_kernel(int *perm, int *fill, const int *off, const int *ids, int N) {
    for (size_t n = grid_start(); n < (size_t)N; n += grid_stride()) {
        int v = ids[n];
        perm[off[v] + atomicAdd(&fill[v], 1)] = (int)n;
    }
}

// sorted[off[v] + rank] = n, rank = rows of id v before n (the ranges are short: an id's rows)
__global__ void emb_rank_kernel(int *sorted, const int *perm, const int *off, const int *ids,
                                int N) {
    for (size_t s = grid_start(); s < (size_t)N; s += grid_stride()) {
        int n = perm[s], v = ids[n], lo = off[v], hi = off[v + 1], rank = 0;
        for (int t = lo; t < hi; t++) rank += perm[t] < n;
        sorted[lo + rank] = n;
    }
}

// one block per id range (blocks whose slot does not start a range return), one thread per
// column: dtable[v] += rows of v in increasing n
__global__ void emb_sum_kernel(float *dtable, const float *__restrict__ dout,
                               const int *__restrict__ sorted, const int *__restrict__ off,
                               const int *__restrict__ ids, int N, int C) {
    for (size_t s = blockIdx.x; s < (size_t)N; s += gridDim.x) {
        int v = ids[sorted[s]];
        if (off[v] != (int)s) continue;
        int hi = off[v + 1];
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float acc = dtable[(size_t)v * C + c];
            for (int t = (int)s; t < hi; t++) acc += dout[(size_t)sorted[t] * C + c];
            dtable[(size_t)v * C + c] = acc;
        }
    }
}

// distinct ids: one thread per element, one add each
__global__ void scatter_rows_add_kernel(float *dtable, const float *__restrict__ dout,
                                        const int *__restrict__ ids, int N, int C) {
    size_t total = (size_t)N * C;
    for (size_t i = grid_start(); i < total; i += grid_stride()) {
        size_t n = i / (size_t)C, c = i - n * (size_t)C;
        dtable[(size_t)ids[n] * C + c] += dout[i];
    }
}

// ---- exact GELU, in double like activation.c: x * Phi(x), Phi(x) = erfc(-x/sqrt2)/2 ----

__global__ void gelu_forward_kernel(float *out, const float *inp, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) out[i] = gelu1(inp[i]);
}

__global__ void gelu_backward_kernel(float *dinp, const float *dout, const float *inp,
                                     size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) dinp[i] += gelu_grad1(dout[i], inp[i]);
}

// ---- SwiGLU: out = silu(gate) * up, float math as activation.c ----

__global__ void swiglu_forward_kernel(float *out, const float *gate, const float *up,
                                      size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) out[i] = swiglu1(gate[i], up[i]);
}

__global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dout,
                                       const float *gate, const float *up, size_t n) {
    for (size_t i = grid_start(); i < n; i += grid_stride()) {
        float dg, du;
        swiglu_grad1(dout[i], gate[i], up[i], &dg, &du);
        if (dgate) dgate[i] += dg;
        if (dup) dup[i] += du;
    }
}

// The same over the fused gate/up GEMM output gu (N, 2I): one thread per output element
// (n, i) reads gate gu[n, i] and up gu[n, I + i] and, backward, writes both gradients.
__global__ void swiglu_fused_forward_kernel(float *out, const float *gu, int N, int I) {
    size_t total = (size_t)N * I;
    for (size_t j = grid_start(); j < total; j += grid_stride()) {
        size_t n = j / (size_t)I, g = j + n * (size_t)I; // gu offset of gate (n, i)
        out[j] = swiglu1(gu[g], gu[g + I]);
    }
}

__global__ void swiglu_fused_backward_kernel(float *dgu, const float *dout, const float *gu,
                                             int N, int I) {
    size_t total = (size_t)N * I;
    for (size_t j = grid_start(); j < total; j += grid_stride()) {
        size_t n = j / (size_t)I, gi = j + n * (size_t)I;
        float dg, du;
        swiglu_grad1(dout[j], gu[gi], gu[gi + I], &dg, &du);
        dgu[gi] += dg;
        dgu[gi + I] += du;
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
        double s, c;
        rope_angle(theta, i, HD, pos[n], &s, &c);
        s *= dir;
        for (int h = 0; h < NH; h++) {
            size_t base = ((size_t)n * NH + h) * HD + i;
            double ya, yb;
            rope_rotate(x[base], x[base + half], c, s, &ya, &yb);
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
template <class T> // inp fp32 or bf16
__global__ void dscale_partial_kernel(float *dscale, double *partial, const float *dout,
                                      const T *inp, int N, int C, int rows, int nchunks) {
    size_t total = (size_t)nchunks * C;
    for (size_t i = grid_start(); i < total; i += grid_stride()) {
        size_t k = i / (size_t)C, c = i - k * (size_t)C;
        size_t n0 = k * rows, n1 = n0 + rows < (size_t)N ? n0 + rows : (size_t)N;
        double acc = 0.0;
        for (size_t n = n0; n < n1; n++) acc += (double)dout[n * C + c] * as_f32(inp[n * C + c]);
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
                                        int N, int C, int V) {
    if (!dtable || N <= 0 || C <= 0 || V <= 0) return;
    int *cnt = (int *)cuda_scratch(7, (2 * (size_t)V + 1 + 2 * (size_t)N) * sizeof(int));
    int *fill = cnt + V + 1, *perm = fill + V, *sorted = perm + N;
    CUDA_CHECK(cudaMemsetAsync(cnt, 0, (2 * (size_t)V + 1) * sizeof(int), cuda_stream()));
    unsigned blocks = cuda_blocks((size_t)N, kThreads);
    emb_count_kernel<<<blocks, kThreads, 0, cuda_stream()>>>(cnt, ids, N);
    CUDA_LAUNCH_CHECK();
    emb_scan_kernel<<<1, kScanThreads, 0, cuda_stream()>>>(cnt, V);
    CUDA_LAUNCH_CHECK();
    emb_scatter_kernel<<<blocks, kThreads, 0, cuda_stream()>>>(perm, fill, cnt, ids, N);
    CUDA_LAUNCH_CHECK();
    emb_rank_kernel<<<blocks, kThreads, 0, cuda_stream()>>>(sorted, perm, cnt, ids, N);
    CUDA_LAUNCH_CHECK();
    // a warp per 32 columns up to kThreads threads; at most 65535 blocks stride over the slots
    unsigned threads = (unsigned)min((C + 31) / 32 * 32, (int)kThreads);
    emb_sum_kernel<<<(unsigned)min(N, 65535), threads, 0, cuda_stream()>>>(dtable, dout, sorted,
                                                                           cnt, ids, N, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_scatter_rows_add(float *dtable, const float *dout, const int *ids, int N,
                                      int C) {
    size_t total = (size_t)N * C;
    if (!dtable || N <= 0 || C <= 0) return;
    scatter_rows_add_kernel<<<cuda_blocks(total, kThreads), kThreads, 0, cuda_stream()>>>(
        dtable, dout, ids, N, C);
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

// inp fp32 or bf16 (channel_scale_backward_x16): dinp does not read it, dscale sums it
template <class T>
static void channel_scale_backward(float *dinp, float *dscale, const float *dout, const T *inp,
                            const float *scale, int N, int C) {
    if (N <= 0 || C <= 0) return;
    cudaStream_t st = cuda_stream();
    if (dinp) { // first, as on the CPU
        size_t total = (size_t)N * C;
        channel_scale_kernel<true><<<cuda_blocks(total, kThreads), kThreads, 0, st>>>(
            dinp, dout, scale, N, C);
        CUDA_LAUNCH_CHECK();
    }
    if (dscale) {
        int rows = cuda_colsum_rows(N, C);
        int nchunks = (int)(((long)N + rows - 1) / rows);
        double *partial = nullptr;
        if (nchunks > 1)
            partial = (double *)cuda_scratch(0, (size_t)nchunks * C * sizeof(double));
        size_t threads = (size_t)nchunks * C;
        dscale_partial_kernel<T><<<cuda_blocks(threads, kThreads), kThreads, 0, st>>>(
            dscale, partial, dout, inp, N, C, rows, nchunks);
        CUDA_LAUNCH_CHECK();
        if (nchunks > 1) {
            colsum_finish_kernel<<<cuda_blocks((size_t)C, kThreads), kThreads, 0, st>>>(
                dscale, partial, C, nchunks);
            CUDA_LAUNCH_CHECK();
        }
    }
}

extern "C" void cuda_channel_scale_backward(float *dinp, float *dscale, const float *dout,
                                            const float *inp, const float *scale, int N,
                                            int C) {
    channel_scale_backward(dinp, dscale, dout, inp, scale, N, C);
}

extern "C" void cuda_channel_scale_backward_x16(float *dinp, float *dscale, const float *dout,
                                                const uint16_t *inp, const float *scale, int N,
                                                int C) {
    channel_scale_backward(dinp, dscale, dout, inp, scale, N, C);
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
