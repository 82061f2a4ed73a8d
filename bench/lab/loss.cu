// loss.cu (lab) - the shortcut-aware loss (fused forward + backward, spec/algorithm.md; the
// formulas of kernels/cpu/loss.c in double) and the AdamW update (kernels/cpu/optimizer.c's
// float expressions, products that feed an add as __fmul_rn so nothing contracts into an FMA).
// shortcut loss:
//   v0 production: kernels_cuda.shortcut_loss (one 256-thread block, strided pairs, tree sum)
//   v1 multi-block: one pair per thread over ceil(P/256) blocks, each block's double sum to a
//      partial, then one block adds the partials in a fixed order (deterministic, no atomics)
// AdamW:
//   v0 production: kernels_cuda.adamw_update (grid-stride, one float a step)
//   v1 float4: 16-byte loads and stores of params, grads, m, v when all are 16-byte aligned,
//      the n % 4 tail scalar; a misaligned call runs the scalar loop
// Memory-bound: GB/s counts every read and write (shortcut loss: 4 inputs, 3 outputs, 4
// accumulated gradients = 60 bytes a pair; AdamW: 4 reads, 3 writes = 28 bytes an element);
// the reference is a device-to-device copy of the same bytes.
#include <math.h>
#include <stdint.h>

#include <stdio.h>
#include <stdlib.h>

#include "bench/lab/lab.h"
#include "kernels/cuda/cuda_common.cuh"

namespace {

constexpr int kThreads = 256; // a power of two (tree)

// ---- shortcut loss ----

__global__ void __launch_bounds__(kThreads)
sc_partial_kernel(double *partial, float *w, float *lm, float *lb, float *dmc, float *dmr,
                  float *dbc, float *dbr, const float *mc, const float *mr, const float *bc,
                  const float *br, int P, float eps, float dloss) {
    __shared__ double sh[kThreads];
    const int i = blockIdx.x * kThreads + threadIdx.x;
    double contrib = 0.0;
    if (i < P) // the per-pair arithmetic both backends share (kernels/scalar.h)
        contrib = kscalar_shortcut_pair_store(i, mc, mr, bc, br, eps, (double)dloss / P, w, lm,
                                              lb, dmc, dmr, dbc, dbr);
    double total = cuda_block_sum<kThreads>(contrib, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

__global__ void __launch_bounds__(kThreads)
sc_final_kernel(float *loss, const double *partial, int nblocks, int P) {
    __shared__ double sh[kThreads];
    double acc = 0.0;
    for (int b = threadIdx.x; b < nblocks; b += kThreads) acc += partial[b];
    double total = cuda_block_sum<kThreads>(acc, sh);
    if (threadIdx.x == 0) loss[0] = (float)(total / P);
}

struct Sc {
    float *loss, *w, *lm, *lb, *dmc, *dmr, *dbc, *dbr;
    const float *mc, *mr, *bc, *br;
    int P;
};
constexpr float kScEps = 0.1f, kDloss = 1.25f;

void sc_production(const Sc &s) {
    lab_op_shortcut_loss(&kernels_cuda, s.loss, s.w, s.lm, s.lb, s.dmc, s.dmr, s.dbc, s.dbr, s.mc, s.mr, s.bc,
                         s.br, s.P, kScEps, kDloss);
}

void sc_multiblock(const Sc &s) {
    static double *partial = nullptr;
    static int cap = 0;
    int nb = (s.P + kThreads - 1) / kThreads;
    if (nb > cap) { // grow-only, kept for the process (a steady state allocates nothing)
        if (partial) cuda_free(partial);
        partial = (double *)cuda_malloc((size_t)nb * sizeof(double));
        cap = nb;
    }
    sc_partial_kernel<<<nb, kThreads, 0, cuda_stream()>>>(partial, s.w, s.lm, s.lb, s.dmc, s.dmr, s.dbc, s.dbr,
                                                          s.mc, s.mr, s.bc, s.br, s.P, kScEps, kDloss);
    CUDA_LAUNCH_CHECK();
    sc_final_kernel<<<1, kThreads, 0, cuda_stream()>>>(s.loss, partial, nb, s.P);
    CUDA_LAUNCH_CHECK();
}

const struct {
    const char *name;
    void (*fn)(const Sc &);
} kScVariants[] = {
    {"production: kernels_cuda (one block)", sc_production},
    {"multi-block: partials + final block", sc_multiblock},
};
constexpr int kScNV = sizeof kScVariants / sizeof *kScVariants;

void run_shortcut(Lab *L, int P, uint64_t seed) {
    const double tol = 1e-5;
    // inputs: mc, mr, bc, br; gradients start random (the kernels accumulate)
    float *h[4], *g0[4], *ref[4];
    for (int k = 0; k < 4; k++) {
        h[k] = lab_rand(P, seed + k, -3, 3);
        g0[k] = lab_rand(P, seed + 4 + k, -0.5f, 0.5f);
        ref[k] = lab_rand(P, 1, 0, 1);
        for (int i = 0; i < P; i++) ref[k][i] = g0[k][i];
    }
    float rloss[1], *rw = lab_rand(P, 1, 0, 1), *rlm = lab_rand(P, 1, 0, 1), *rlb = lab_rand(P, 1, 0, 1);
    lab_op_shortcut_loss(&kernels_cpu, rloss, rw, rlm, rlb, ref[0], ref[1], ref[2], ref[3], h[0], h[1], h[2],
                         h[3], P, kScEps, kDloss);
    Sc s = {lab_nan(1), lab_nan(P), lab_nan(P), lab_nan(P), lab_upload(g0[0], P), lab_upload(g0[1], P),
            lab_upload(g0[2], P), lab_upload(g0[3], P), lab_upload(h[0], P), lab_upload(h[1], P),
            lab_upload(h[2], P), lab_upload(h[3], P), P};
    float *grads[4] = {s.dmc, s.dmr, s.dbc, s.dbr};
    const char *gname[4] = {"dmc", "dmr", "dbc", "dbr"};
    double bytes = 60.0 * P;
    float copy_ms = L->check_only ? 0.0f : lab_copy_ms(bytes);
    printf("shortcut loss P=%d eps=%g dloss=%g; tol %.0e", P, kScEps, kDloss, tol);
    if (!L->check_only) printf("; reference: device-to-device copy of the same bytes (%.4f ms)", copy_ms);
    printf("\n");
    for (int v = 0; v < kScNV; v++) {
        if (!lab_want(L, v, kScNV)) continue;
        lab_fill_nan(s.loss, 1);
        lab_fill_nan(s.w, P);
        lab_fill_nan(s.lm, P);
        lab_fill_nan(s.lb, P);
        for (int k = 0; k < 4; k++) lab_reset(grads[k], g0[k], P);
        kScVariants[v].fn(s);
        const char *nm = kScVariants[v].name;
        lab_check(L, lab_name("v%d %s: loss", v, nm), rloss, s.loss, 1, tol);
        lab_check(L, lab_name("v%d %s: w", v, nm), rw, s.w, P, tol);
        lab_check(L, lab_name("v%d %s: lm", v, nm), rlm, s.lm, P, tol);
        lab_check(L, lab_name("v%d %s: lb", v, nm), rlb, s.lb, P, tol);
        for (int k = 0; k < 4; k++) lab_check(L, lab_name("v%d %s: %s", v, nm, gname[k]), ref[k], grads[k], P, tol);
        if (!L->check_only) lab_row(v, nm, lab_time([&] { kScVariants[v].fn(s); }), 0, bytes, copy_ms);
    }
    fflush(stdout);
    float *dev[] = {s.loss, s.w, s.lm, s.lb, s.dmc, s.dmr, s.dbc, s.dbr};
    for (float *d : dev) cuda_free(d);
    for (const float *d : {s.mc, s.mr, s.bc, s.br}) cuda_free((void *)d);
    for (int k = 0; k < 4; k++) free(h[k]), free(g0[k]), free(ref[k]);
    free(rw);
    free(rlm);
    free(rlb);
}

// ---- AdamW ----

struct AdamConst {
    float beta1, beta2, eps, decay, step_size, bc2_sqrt, one_minus_b1, one_minus_b2, grad_scale;
};

__device__ __forceinline__ void adam1(float &p, float &m, float &v, float g, const AdamConst &c) {
    g = g * c.grad_scale;
    float pd = __fmul_rn(p, c.decay);
    float mi = __fmul_rn(c.beta1, m) + __fmul_rn(c.one_minus_b1, g);
    float vi = __fmul_rn(c.beta2, v) + __fmul_rn(__fmul_rn(c.one_minus_b2, g), g);
    float denom = sqrtf(vi) / c.bc2_sqrt + c.eps;
    p = pd - __fmul_rn(c.step_size, mi / denom);
    m = mi;
    v = vi;
}

template <bool VEC>
__global__ void adamw_lab_kernel(float *params, const float *grads, float *m, float *v, size_t n,
                                 AdamConst c) {
    const size_t stride = (size_t)gridDim.x * blockDim.x, i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t done = 0;
    if (VEC) {
        const size_t n4 = n / 4;
        for (size_t j = i0; j < n4; j += stride) {
            float4 p = reinterpret_cast<float4 *>(params)[j], g = reinterpret_cast<const float4 *>(grads)[j];
            float4 mm = reinterpret_cast<float4 *>(m)[j], vv = reinterpret_cast<float4 *>(v)[j];
            adam1(p.x, mm.x, vv.x, g.x, c);
            adam1(p.y, mm.y, vv.y, g.y, c);
            adam1(p.z, mm.z, vv.z, g.z, c);
            adam1(p.w, mm.w, vv.w, g.w, c);
            reinterpret_cast<float4 *>(params)[j] = p;
            reinterpret_cast<float4 *>(m)[j] = mm;
            reinterpret_cast<float4 *>(v)[j] = vv;
        }
        done = 4 * n4;
    }
    for (size_t i = done + i0; i < n; i += stride) adam1(params[i], m[i], v[i], grads[i], c);
}

struct Ad {
    float *p, *m, *v;
    const float *g;
    size_t n;
};
constexpr float kLr = 1e-3f, kB1 = 0.9f, kB2 = 0.999f, kAdEps = 1e-8f, kWd = 0.05f, kGradScale = 0.5f;
constexpr int kStep = 3;

void ad_production(const Ad &a) {
    lab_op_adamw_update(&kernels_cuda, a.p, a.g, a.m, a.v, a.n, kLr, kB1, kB2, kAdEps, kWd, kStep, kGradScale);
}

void ad_vec4(const Ad &a) {
    // the step scalars exactly as cpu_adamw_update computes them (double, rounded to float)
    AdamConst c;
    c.beta1 = kB1;
    c.beta2 = kB2;
    c.eps = kAdEps;
    c.decay = (float)(1.0 - (double)kLr * kWd);
    c.step_size = (float)(kLr / (1.0 - pow((double)kB1, (double)kStep)));
    c.bc2_sqrt = (float)sqrt(1.0 - pow((double)kB2, (double)kStep));
    c.one_minus_b1 = 1.0f - kB1;
    c.one_minus_b2 = 1.0f - kB2;
    c.grad_scale = kGradScale;
    auto al = [](const void *p) { return ((uintptr_t)p & 15u) == 0; };
    unsigned grid = cuda_blocks(a.n / 4 ? a.n / 4 : a.n, kThreads);
    if (al(a.p) && al(a.g) && al(a.m) && al(a.v))
        adamw_lab_kernel<true><<<grid, kThreads, 0, cuda_stream()>>>(a.p, a.g, a.m, a.v, a.n, c);
    else
        adamw_lab_kernel<false><<<grid, kThreads, 0, cuda_stream()>>>(a.p, a.g, a.m, a.v, a.n, c);
    CUDA_LAUNCH_CHECK();
}

const struct {
    const char *name;
    void (*fn)(const Ad &);
} kAdVariants[] = {
    {"production: kernels_cuda (grid-stride)", ad_production},
    {"float4: 16-byte loads/stores", ad_vec4},
};
constexpr int kAdNV = sizeof kAdVariants / sizeof *kAdVariants;

void run_adamw(Lab *L, size_t n, size_t off, uint64_t seed) {
    const double tol = 1e-6;
    size_t na = n + off;
    float *hp = lab_rand(na, seed, -1, 1), *hg = lab_rand(na, seed + 1, -1, 1);
    float *hm = lab_rand(na, seed + 2, -0.1f, 0.1f), *hv = lab_rand(na, seed + 3, 0, 0.01f);
    float *rp = lab_rand(n, 1, 0, 1), *rm = lab_rand(n, 1, 0, 1), *rv = lab_rand(n, 1, 0, 1);
    for (size_t i = 0; i < n; i++) rp[i] = hp[off + i], rm[i] = hm[off + i], rv[i] = hv[off + i];
    lab_op_adamw_update(&kernels_cpu, rp, hg + off, rm, rv, n, kLr, kB1, kB2, kAdEps, kWd, kStep, kGradScale);
    float *dp = lab_upload(hp, na), *dg = lab_upload(hg, na), *dm = lab_upload(hm, na), *dv = lab_upload(hv, na);
    Ad a = {dp + off, dm + off, dv + off, dg + off, n};
    double bytes = 28.0 * n;
    float copy_ms = L->check_only ? 0.0f : lab_copy_ms(bytes);
    printf("adamw n=%zu%s lr=%g wd=%g t=%d grad_scale=%g; tol %.0e", n, off % 4 ? " (not 16-byte aligned)" : "",
           kLr, kWd, kStep, kGradScale, tol);
    if (!L->check_only) printf("; reference: device-to-device copy of the same bytes (%.4f ms)", copy_ms);
    printf("\n");
    for (int v = 0; v < kAdNV; v++) {
        if (!lab_want(L, v, kAdNV)) continue;
        lab_reset(dp, hp, na);
        lab_reset(dm, hm, na);
        lab_reset(dv, hv, na);
        kAdVariants[v].fn(a);
        const char *nm = kAdVariants[v].name;
        lab_check(L, lab_name("v%d %s: params", v, nm), rp, a.p, n, tol);
        lab_check(L, lab_name("v%d %s: m", v, nm), rm, a.m, n, tol);
        lab_check(L, lab_name("v%d %s: v", v, nm), rv, a.v, n, tol);
        // timing repeats the update in place (the state drifts; the traffic does not change)
        if (!L->check_only) lab_row(v, nm, lab_time([&] { kAdVariants[v].fn(a); }), 0, bytes, copy_ms);
    }
    fflush(stdout);
    cuda_free(dp);
    cuda_free(dg);
    cuda_free(dm);
    cuda_free(dv);
    free(hp);
    free(hg);
    free(hm);
    free(hv);
    free(rp);
    free(rm);
    free(rv);
}

} // namespace

extern "C" void lab_loss(Lab *L) {
    if (L->check_only) {
        run_shortcut(L, 5, 501);    // a handful of pairs: one block either way
        run_shortcut(L, 1001, 511); // v1: four blocks, the last one partial
        run_adamw(L, 4099, 0, 521);  // a tail of 3 after the float4 groups
        run_adamw(L, 2053, 1, 531);  // misaligned: the scalar loop
        return;
    }
    run_shortcut(L, 64, 501);         // a training batch: launch-bound
    run_shortcut(L, 1 << 20, 511);    // a large batch: bandwidth
    run_adamw(L, (size_t)1 << 26, 0, 521); // 64M parameters (256 MiB per array)
}
