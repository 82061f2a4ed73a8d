/* activation.c - elementwise activations over n values, forward and backward: exact
 * (erf) GELU and the SwiGLU gate product silu(gate) * up (also over one fused [gate | up]
 * tensor, the output of the decoder's gate/up GEMM).
 *
 * GELU is evaluated as x * Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2, the same function
 * as 0.5 x (1 + erf(x / sqrt 2)) but without the cancellation of 1 + erf for x << 0, and
 * in double: glibc's erfc costs the same as erfcf here, and the float rounding of
 * x / sqrt 2 alone would be amplified about x^2 times in the tail. The sigmoid in SiLU
 * only ever exponentiates -|g|, so no intermediate overflows and 1 - sigmoid keeps its
 * relative precision for large g. SwiGLU works in chunks of ACT_CHUNK values: exp(-|g|) for a
 * whole chunk through the vectorised expf of the attention kernels (kernels/cpu/simd.h,
 * within 2 ulp; libm's past |g| = 87, where the result is subnormal), then the formula
 * in loops the compiler vectorises. Every value is computed alone, so nothing depends on the
 * thread count.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define INV_SQRT_2PI 0.39894228040143267794

void cpu_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        out[i] = (float)(0.5 * x * erfc(-x * M_SQRT1_2));
    }
}

/* d/dx x Phi(x) = Phi(x) + x phi(x) */
void cpu_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    if (!dinp) return;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        double d = 0.5 * erfc(-x * M_SQRT1_2) + x * exp(-0.5 * x * x) * INV_SQRT_2PI;
        dinp[i] += (float)(dout[i] * d);
    }
}

enum { ACT_CHUNK = 1024 };

/* a where g's sign bit is set, else b (g >= 0 ? b : a but for -0, where SiLU's two forms
 * agree): bit operations, because gcc keeps a ?: on floats as a branch under the default
 * -ftrapping-math and then does not vectorise the loop */
static inline float neg_sel(float g, float a, float b) {
    uint32_t gi, ai, bi;
    memcpy(&gi, &g, sizeof gi);
    memcpy(&ai, &a, sizeof ai);
    memcpy(&bi, &b, sizeof bi);
    uint32_t m = 0u - (gi >> 31), ri = (ai & m) | (bi & ~m);
    float r;
    memcpy(&r, &ri, sizeof r);
    return r;
}

/* e[j] = exp(-|g[j]|) for j < m (m <= ACT_CHUNK); libm's expf past |g| = 87, where the
 * result is subnormal and the vectorised one flushes it to 0. Not inlined: gcc then cannot
 * tell that the first loop fills e before exp_array reads it (-Wmaybe-uninitialized). */
__attribute__((noinline)) static void exp_neg_abs(float *e, const float *g, size_t m, const AttnKernel *ak) {
    for (size_t j = 0; j < m; j++) e[j] = -fabsf(g[j]);
    ak->exp_array(e, e, m);
    for (size_t j = 0; j < m; j++)
        if (fabsf(g[j]) > 87.0f) e[j] = expf(-fabsf(g[j]));
}

/* one chunk of m <= ACT_CHUNK values: o = silu(g) * u */
static void swiglu_chunk(float *o, const float *g, const float *u, size_t m, const AttnKernel *ak) {
    float e[ACT_CHUNK];
    exp_neg_abs(e, g, m, ak);
    /* sigmoid(g) = 1 / (1 + e) for g >= 0, e / (1 + e) below */
    for (size_t j = 0; j < m; j++) {
        float r = 1.0f / (1.0f + e[j]), p = e[j] * r;
        o[j] = g[j] * neg_sel(g[j], p, r) * u[j];
    }
}

/* silu'(g) = s + g s (1 - s); dg or du may be NULL */
static void swiglu_chunk_bw(float *dg, float *du, const float *d, const float *g, const float *u,
                            size_t m, const AttnKernel *ak) {
    float e[ACT_CHUNK];
    exp_neg_abs(e, g, m, ak);
    if (dg)
        for (size_t j = 0; j < m; j++) {
            float r = 1.0f / (1.0f + e[j]), p = e[j] * r;
            float s = neg_sel(g[j], p, r), oms = neg_sel(g[j], r, p);
            dg[j] += d[j] * u[j] * (s * (1.0f + g[j] * oms));
        }
    if (du)
        for (size_t j = 0; j < m; j++) {
            float r = 1.0f / (1.0f + e[j]), p = e[j] * r;
            du[j] += d[j] * (g[j] * neg_sel(g[j], p, r));
        }
}

void cpu_swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
    const AttnKernel *ak = cpu_attn_kernel(cpu_isa_active());
    size_t nchunks = (n + ACT_CHUNK - 1) / ACT_CHUNK;
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * ACT_CHUNK, m = n - i0 < ACT_CHUNK ? n - i0 : ACT_CHUNK;
        swiglu_chunk(out + i0, gate + i0, up + i0, m, ak);
    }
}

void cpu_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, size_t n) {
    if (!dgate && !dup) return;
    const AttnKernel *ak = cpu_attn_kernel(cpu_isa_active());
    size_t nchunks = (n + ACT_CHUNK - 1) / ACT_CHUNK;
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * ACT_CHUNK, m = n - i0 < ACT_CHUNK ? n - i0 : ACT_CHUNK;
        swiglu_chunk_bw(dgate ? dgate + i0 : NULL, dup ? dup + i0 : NULL, dout + i0, gate + i0,
                        up + i0, m, ak);
    }
}

/* gu (N, 2I): row n is [gate | up], the output of the fused gate/up GEMM; chunks never
 * cross a row */
void cpu_swiglu_fused_forward(float *out, const float *gu, int N, int I) {
    const AttnKernel *ak = cpu_attn_kernel(cpu_isa_active());
    size_t per_row = ((size_t)I + ACT_CHUNK - 1) / ACT_CHUNK, nchunks = (size_t)N * per_row;
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (size_t c = 0; c < nchunks; c++) {
        size_t n = c / per_row, i0 = (c - n * per_row) * ACT_CHUNK;
        size_t m = (size_t)I - i0 < ACT_CHUNK ? (size_t)I - i0 : ACT_CHUNK;
        const float *g = gu + n * 2 * I + i0;
        swiglu_chunk(out + n * I + i0, g, g + I, m, ak);
    }
}

void cpu_swiglu_fused_backward(float *dgu, const float *dout, const float *gu, int N, int I) {
    if (!dgu) return;
    const AttnKernel *ak = cpu_attn_kernel(cpu_isa_active());
    size_t per_row = ((size_t)I + ACT_CHUNK - 1) / ACT_CHUNK, nchunks = (size_t)N * per_row;
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (size_t c = 0; c < nchunks; c++) {
        size_t n = c / per_row, i0 = (c - n * per_row) * ACT_CHUNK;
        size_t m = (size_t)I - i0 < ACT_CHUNK ? (size_t)I - i0 : ACT_CHUNK, o = n * 2 * I + i0;
        swiglu_chunk_bw(dgu + o, dgu + o + I, dout + n * I + i0, gu + o, gu + o + I, m, ak);
    }
}
