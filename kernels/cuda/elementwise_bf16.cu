// elementwise_bf16.cu - the element-wise ops of elementwise.cu over bf16-stored activations
// (the table's *_x16 entries, kernels/op_list.h): embedding and row gathers, pixel shuffle,
// im2col, GELU, SwiGLU, RoPE, residual add, channel scale, drop_path. Inputs are widened
// exactly, every element is computed with the fp32 kernel's formula (elementwise.cuh:
// GELU and RoPE in double, products that feed an add as __fmul_rn), and outputs are rounded
// once to nearest even; gradients stay fp32. So each result equals the fp32 kernel's on the
// widened inputs, rounded as runtime/ops.c's staging would have rounded it.
//
// A thread handles groups of 8 consecutive elements (bf16.cuh; the flat maps through
// elementwise.cuh's map8): one 16-byte load or store per bf16 group (two per fp32 group)
// when every pointer of the launch is 16-byte aligned (and the rows hold whole groups where
// rows matter), scalar accesses for the rest.
#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/elementwise.cuh"

namespace {

constexpr unsigned kThreads = 256;

bool al(const void *p) { return bf16_aligned16(p); }

// ---- flat maps: element i of every array belongs to element i of the output ----

// op(i, n) handles the group [i, i + 8) of n elements
template <class Op, bool VEC>
__global__ void map_kernel(Op op, size_t n) {
    size_t groups = (n + 7) / 8;
    for (size_t j = grid_start(); j < groups; j += grid_stride()) op.template apply<VEC>(8 * j, n);
}

template <class Op>
void launch_map(const Op &op, size_t n, bool vec) {
    if (n == 0) return;
    unsigned grid = cuda_blocks((n + 7) / 8, kThreads);
    if (vec)
        map_kernel<Op, true><<<grid, kThreads, 0, cuda_stream()>>>(op, n);
    else
        map_kernel<Op, false><<<grid, kThreads, 0, cuda_stream()>>>(op, n);
    CUDA_LAUNCH_CHECK();
}

struct GeluForward {
    uint16_t *out;
    const uint16_t *inp;
    template <bool VEC>
    __device__ void apply(size_t i, size_t n) const {
        map8<VEC>(out, i, n, [](size_t, float x) { return gelu1(x); }, inp);
    }
};

struct GeluBackward {
    float *dinp;
    const float *dout;
    const uint16_t *inp;
    template <bool VEC>
    __device__ void apply(size_t i, size_t n) const {
        map8<VEC>(dinp, i, n, [](size_t, float x, float g, float d) { return d + gelu_grad1(g, x); },
                  inp, dout, dinp);
    }
};

struct SwigluForward {
    uint16_t *out;
    const uint16_t *gate, *up;
    template <bool VEC>
    __device__ void apply(size_t i, size_t n) const {
        map8<VEC>(out, i, n, [](size_t, float g, float u) { return swiglu1(g, u); }, gate, up);
    }
};

struct SwigluBackward {
    float *dgate, *dup;
    const float *dout;
    const uint16_t *gate, *up;
    template <bool VEC>
    __device__ void apply(size_t i, size_t n) const {
        V8 g = ld8<VEC>(gate, i, n), u = ld8<VEC>(up, i, n), go = ld8<VEC>(dout, i, n);
        V8 dg = dgate ? ld8<VEC>(dgate, i, n) : V8{}, du = dup ? ld8<VEC>(dup, i, n) : V8{};
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float tg, tu;
            swiglu_grad1(go.v[k], g.v[k], u.v[k], &tg, &tu);
            dg.v[k] += tg;
            du.v[k] += tu;
        }
        if (dgate) st8<VEC>(dgate, i, n, dg);
        if (dup) st8<VEC>(dup, i, n, du);
    }
};

struct AddForward {
    uint16_t *out;
    const uint16_t *a, *b;
    template <bool VEC>
    __device__ void apply(size_t i, size_t n) const {
        map8<VEC>(out, i, n, [](size_t, float x, float y) { return x + y; }, a, b);
    }
};

// out = inp * scale[column]; the scale group is one load when C % 8 == 0 (vec is then
// asked only with that)
struct ChannelScaleForward {
    uint16_t *out;
    const uint16_t *inp;
    const float *scale;
    int C;
    template <bool VEC>
    __device__ void apply(size_t i, size_t n) const {
        size_t c0 = i % (size_t)C;
        V8 s;
        if (VEC) {
            s = ld8<VEC>(scale, c0, (size_t)C);
        } else {
#pragma unroll
            for (int k = 0; k < 8; k++) s.v[k] = scale[(i + k) % (size_t)C];
        }
        map8<VEC>(out, i, n, [&](size_t e, float x) { return x * s.v[e - i]; }, inp);
    }
};

struct DropPathForward {
    uint16_t *out;
    const uint16_t *inp;
    const float *keep_scale;
    size_t per_sample;
    template <bool VEC>
    __device__ void apply(size_t i, size_t n) const {
        map8<VEC>(out, i, n,
                  [&](size_t e, float x) { return e < n ? x * keep_scale[e / per_sample] : 0.0f; },
                  inp);
    }
};

// cols (B*Gh*Gw, CH*p*p) from the fp32 image: scalar gathers, one group store
struct Im2colForward {
    uint16_t *cols;
    const float *img;
    int CH, H, W, p;
    template <bool VEC>
    __device__ void apply(size_t i0, size_t n) const {
        size_t Gh = H / p, Gw = W / p, pp = (size_t)p * p, K = CH * pp;
        map8<VEC>(cols, i0, n, [&](size_t i) {
            if (i >= n) return 0.0f;
            size_t row = i / K, k = i - row * K;
            size_t ch = k / pp, rr = k - ch * pp, ky = rr / p, kx = rr - ky * p;
            size_t x = row % Gw, y = (row / Gw) % Gh, b = row / (Gw * Gh);
            return img[((b * CH + ch) * H + y * p + ky) * W + x * p + kx];
        });
    }
};

// ---- row gathers: out row r (C elements) is row src(r) of the table ----

// source row of out row r of the pixel shuffle viewed as ((B*(G/2)^2*4), C): token t
// = a*(G/2) + c2 of image b, quarter q = 2*dy + dx <- cell (2a + dy, 2c2 + dx)
__device__ __forceinline__ size_t pixel_shuffle_row(size_t r, size_t G) {
    size_t h = G / 2, q = r % 4, t = r / 4;
    size_t c2 = t % h, a = (t / h) % h, b = t / (h * h);
    return b * G * G + (2 * a + q / 2) * G + 2 * c2 + q % 2;
}

// ids != NULL: source row ids[r]; else the pixel shuffle's row for grid G
template <class T, bool VEC>
__global__ void gather_rows_kernel(uint16_t *out, const int *ids, const T *table, size_t rows,
                                   int C, int G) {
    size_t gpr = ((size_t)C + 7) / 8, total = rows * gpr;
    for (size_t i = grid_start(); i < total; i += grid_stride()) {
        size_t r = i / gpr, j = i - r * gpr;
        size_t src = ids ? (size_t)ids[r] : pixel_shuffle_row(r, (size_t)G);
        V8 v = ld8<VEC>(table + src * C, 8 * j, (size_t)C);
        st8<VEC>(out + r * C, 8 * j, (size_t)C, v);
    }
}

template <class T>
void launch_gather(uint16_t *out, const int *ids, const T *table, size_t rows, int C, int G) {
    if (rows == 0 || C <= 0) return;
    size_t total = rows * (((size_t)C + 7) / 8);
    unsigned grid = cuda_blocks(total, kThreads);
    // whole rows of 8-element groups: C % 8 == 0 keeps every row 16-byte aligned for bf16
    // and 32-byte for fp32
    if (C % 8 == 0 && al(out) && al(table))
        gather_rows_kernel<T, true><<<grid, kThreads, 0, cuda_stream()>>>(out, ids, table, rows,
                                                                          C, G);
    else
        gather_rows_kernel<T, false><<<grid, kThreads, 0, cuda_stream()>>>(out, ids, table,
                                                                           rows, C, G);
    CUDA_LAUNCH_CHECK();
}

// ---- RoPE: thread (row n, pairs i0 .. i0+7 of the half) rotates those pairs of every head ----

template <bool VEC>
__global__ void rope_x16_kernel(uint16_t *y, const uint16_t *x, const int *pos, int N, int NH,
                                int HD, float theta) {
    size_t half = (size_t)HD / 2, gph = (half + 7) / 8, total = (size_t)N * gph;
    for (size_t idx = grid_start(); idx < total; idx += grid_stride()) {
        size_t n = idx / gph, i0 = 8 * (idx - n * gph);
        double c[8], s[8];
#pragma unroll
        for (int k = 0; k < 8; k++) rope_angle(theta, (double)(i0 + k), HD, pos[n], &s[k], &c[k]);
        for (int h = 0; h < NH; h++) {
            size_t base = ((size_t)n * NH + h) * HD;
            V8 a = ld8<VEC>(x + base, i0, half), b = ld8<VEC>(x + base + half, i0, half), ya, yb;
#pragma unroll
            for (int k = 0; k < 8; k++) {
                double ra, rb;
                rope_rotate(a.v[k], b.v[k], c[k], s[k], &ra, &rb);
                ya.v[k] = (float)ra, yb.v[k] = (float)rb;
            }
            st8<VEC>(y + base, i0, half, ya);
            st8<VEC>(y + base + half, i0, half, yb);
        }
    }
}

} // namespace

// ---------------------------------------------------------------------------------------
// launchers (kernels/op_list.h semantics; device pointers; cuda_stream())

extern "C" void cuda_embedding_forward_x16(uint16_t *out, const int *ids, const float *table,
                                           int N, int C) {
    if (N > 0) launch_gather(out, ids, table, (size_t)N, C, 0);
}

extern "C" void cuda_gather_rows_x16(uint16_t *out, const int *ids, const uint16_t *x, int N,
                                     int C) {
    if (N > 0) launch_gather(out, ids, x, (size_t)N, C, 0);
}

extern "C" void cuda_pixel_shuffle_forward_x16(uint16_t *out, const uint16_t *inp, int B, int G,
                                               int C) {
    if (B <= 0 || G < 2 || C <= 0) return;
    launch_gather(out, (const int *)nullptr, inp, (size_t)B * (G / 2) * (G / 2) * 4, C, G);
}

extern "C" void cuda_im2col_forward_x16(uint16_t *cols, const float *img, int B, int CH, int H,
                                        int W, int p) {
    if (B <= 0 || CH <= 0 || p <= 0 || H < p || W < p) return;
    size_t total = (size_t)B * (H / p) * (W / p) * CH * p * p;
    launch_map(Im2colForward{cols, img, CH, H, W, p}, total, al(cols));
}

extern "C" void cuda_gelu_forward_x16(uint16_t *out, const uint16_t *inp, size_t n) {
    launch_map(GeluForward{out, inp}, n, al(out) && al(inp));
}

extern "C" void cuda_gelu_backward_x16(float *dinp, const float *dout, const uint16_t *inp,
                                       size_t n) {
    if (!dinp) return;
    launch_map(GeluBackward{dinp, dout, inp}, n, al(dinp) && al(dout) && al(inp));
}

extern "C" void cuda_swiglu_forward_x16(uint16_t *out, const uint16_t *gate, const uint16_t *up,
                                        size_t n) {
    launch_map(SwigluForward{out, gate, up}, n, al(out) && al(gate) && al(up));
}

extern "C" void cuda_swiglu_backward_x16(float *dgate, float *dup, const float *dout,
                                         const uint16_t *gate, const uint16_t *up, size_t n) {
    if (!dgate && !dup) return;
    launch_map(SwigluBackward{dgate, dup, dout, gate, up}, n,
               al(dgate) && al(dup) && al(dout) && al(gate) && al(up));
}

extern "C" void cuda_rope_forward_x16(uint16_t *out, const uint16_t *inp, const int *pos, int N,
                                      int NH, int HD, float theta) {
    if (N <= 0 || NH <= 0 || HD < 2) return;
    size_t total = (size_t)N * (((size_t)HD / 2 + 7) / 8);
    unsigned grid = cuda_blocks(total, kThreads);
    // both halves of every head start 16-byte aligned when HD % 16 == 0
    if (HD % 16 == 0 && al(out) && al(inp))
        rope_x16_kernel<true><<<grid, kThreads, 0, cuda_stream()>>>(out, inp, pos, N, NH, HD,
                                                                    theta);
    else
        rope_x16_kernel<false><<<grid, kThreads, 0, cuda_stream()>>>(out, inp, pos, N, NH, HD,
                                                                     theta);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_add_forward_x16(uint16_t *out, const uint16_t *a, const uint16_t *b,
                                     size_t n) {
    launch_map(AddForward{out, a, b}, n, al(out) && al(a) && al(b));
}

extern "C" void cuda_channel_scale_forward_x16(uint16_t *out, const uint16_t *inp,
                                               const float *scale, int N, int C) {
    if (N <= 0 || C <= 0) return;
    launch_map(ChannelScaleForward{out, inp, scale, C}, (size_t)N * C,
               C % 8 == 0 && al(out) && al(inp) && al(scale));
}

extern "C" void cuda_drop_path_forward_x16(uint16_t *out, const uint16_t *inp,
                                           const float *keep_scale, int B, size_t per_sample) {
    if (B <= 0 || per_sample == 0) return;
    launch_map(DropPathForward{out, inp, keep_scale, per_sample}, (size_t)B * per_sample,
               al(out) && al(inp));
}
