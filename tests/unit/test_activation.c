/* test_activation.c - exact GELU and SwiGLU (kernels/cpu/activation.c): forward and
 * backward against double references over random inputs and hand-picked extremes (huge
 * |x|, the underflowing GELU tail, values next to 0), backward against central finite
 * differences, the accumulate and NULL-gradient contracts, and thread-count independence. */
#include "../harness.h"
#include "../../kernels/cpu/cpu.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

/* Results below the smallest normal float (1.2e-38) are denormal and only carry absolute
 * precision (steps of 1.4e-45), so comparisons get this much absolute slack. */
#define TINY 1e-40

static const float EXTREMES[] = {
    0.0f, 1e-30f, -1e-30f, 1e-8f, -1e-8f, 1e-3f, -1e-3f, 0.5f, -0.5f, 1.0f, -1.0f,
    3.0f, -3.0f, 5.0f, -5.0f, 8.0f, -8.0f, 10.0f, -10.0f, -12.0f, -13.0f, -14.0f, -20.0f,
    20.0f, 40.0f, -40.0f, -87.0f, 88.0f, -90.0f, 100.0f, -100.0f, 1000.0f, -1000.0f,
    1e4f, -1e4f, 1e30f, -1e30f};
#define NEXTREMES (sizeof(EXTREMES) / sizeof(EXTREMES[0]))

static double *dmalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) abort();
    return p;
}

/* n random values with std `std`, followed by the extremes; returns the total count */
static float *inputs_with_extremes(size_t n, float std, uint64_t seed, size_t *total) {
    float *x = tmalloc(n + NEXTREMES);
    TRng r = trng(seed);
    fill_normal(&r, x, n, std);
    for (size_t i = 0; i < NEXTREMES; i++) x[n + i] = EXTREMES[i];
    *total = n + NEXTREMES;
    return x;
}

/* Phi(x), the standard normal CDF: the definition 0.5 (1 + erf(x / sqrt 2)) where it is
 * accurate, the erfc form in the tail where 1 + erf(...) cancels to nothing */
static double ref_phi(double x) {
    return x >= -3 ? 0.5 * (1 + erf(x / sqrt(2.0))) : 0.5 * erfc(-x / sqrt(2.0));
}

static double ref_gelu(double x) { return x * ref_phi(x); }

static double ref_gelu_grad(double x) {
    return ref_phi(x) + x * exp(-0.5 * x * x) / sqrt(2 * M_PI);
}

static double ref_sigmoid(double g) { return 1 / (1 + exp(-g)); }

static double ref_silu(double g) { return g * ref_sigmoid(g); }

static double ref_silu_grad(double g) {
    double s = ref_sigmoid(g);
    return s * (1 + g * (1 - s));
}

static void check_finite(const char *what, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!CHECK(isfinite(x[i]), "%s: element %zu is %g", what, i, x[i])) return;
}

/* ---- GELU ---- */

typedef struct {
    size_t n;
    float *inp, *out, *proj;
} Act;

static double gelu_loss(void *ctx) {
    Act *a = ctx;
    cpu_gelu_forward(a->out, a->inp, a->n);
    return dot_loss(a->out, a->proj, a->n);
}

TEST(test_gelu_forward_matches_double_reference_including_extremes) {
    size_t n;
    float *x = inputs_with_extremes(1001, 3.0f, 1, &n);
    float *out = tmalloc(n);
    double *ref = dmalloc(n);
    cpu_gelu_forward(out, x, n);
    for (size_t i = 0; i < n; i++) ref[i] = ref_gelu(x[i]);
    check_finite("gelu out", out, n);
    EXPECT_CLOSE("gelu out", out, ref, n, 1e-6, TINY);
    /* the negative tail keeps relative precision until it underflows: gelu(-10) ~ -7.6e-23 */
    float x10 = -10.0f, y10;
    cpu_gelu_forward(&y10, &x10, 1);
    CHECK(fabs(y10 / ref_gelu(-10.0) - 1) < 1e-5, "gelu(-10) = %g, want %g", y10, ref_gelu(-10));
    /* next to 0, gelu(x) = x/2 + x^2/sqrt(2 pi) + O(x^4) */
    float xs = 1e-8f, ys;
    cpu_gelu_forward(&ys, &xs, 1);
    CHECK(fabs(ys / (0.5 * xs) - 1) < 1e-6, "gelu(%g) = %.9g, want %.9g", xs, ys, 0.5 * xs);
    free(x);
    free(out);
    free(ref);
}

TEST(test_gelu_backward_matches_double_reference_including_extremes_and_accumulates) {
    size_t n;
    float *x = inputs_with_extremes(1001, 3.0f, 2, &n);
    float *dout = tmalloc(n), *dinp = tmalloc(n), *pre = tmalloc(n);
    double *ref = dmalloc(n);
    TRng r = trng(3);
    fill_normal(&r, dout, n, 1.0f);
    fill_normal(&r, pre, n, 1.0f);
    /* from zero first: tiny tail derivatives must keep their relative precision */
    cpu_gelu_backward(dinp, dout, x, n);
    for (size_t i = 0; i < n; i++) ref[i] = (double)dout[i] * ref_gelu_grad(x[i]);
    check_finite("gelu dinp", dinp, n);
    EXPECT_CLOSE("gelu dinp", dinp, ref, n, 1e-6, TINY);
    for (size_t i = 0; i < n; i++) dinp[i] = pre[i], ref[i] += pre[i];
    cpu_gelu_backward(dinp, dout, x, n);
    cpu_gelu_backward(NULL, dout, x, n); /* a NULL gradient is skipped */
    EXPECT_CLOSE("prefill + gelu dinp", dinp, ref, n, 1e-6, 1e-7);
    free(x);
    free(dout);
    free(dinp);
    free(pre);
    free(ref);
}

TEST(test_gelu_backward_matches_finite_differences) {
    const size_t sizes[] = {7, 257};
    for (int s = 0; s < 2; s++) {
        size_t n = sizes[s];
        Act a = {n, tmalloc(n), tmalloc(n), tmalloc(n)};
        float *dinp = tmalloc(n);
        TRng r = trng(10 + s);
        fill_uniform(&r, a.inp, n, -6.0f, 6.0f);
        fill_normal(&r, a.proj, n, 1.0f);
        cpu_gelu_backward(dinp, a.proj, a.inp, n);
        GRAD_CHECK("gelu dinp", gelu_loss, &a, a.inp, dinp, n, 1e-2);
        free(a.inp);
        free(a.out);
        free(a.proj);
        free(dinp);
    }
}

/* ---- SwiGLU ---- */

typedef struct {
    size_t n;
    float *gate, *up, *out, *proj;
} Glu;

static double swiglu_loss(void *ctx) {
    Glu *g = ctx;
    cpu_swiglu_forward(g->out, g->gate, g->up, g->n);
    return dot_loss(g->out, g->proj, g->n);
}

TEST(test_swiglu_forward_matches_double_reference_including_extreme_gates) {
    size_t n;
    float *gate = inputs_with_extremes(1001, 4.0f, 20, &n);
    float *up = tmalloc(n), *out = tmalloc(n);
    double *ref = dmalloc(n);
    TRng r = trng(21);
    fill_normal(&r, up, n, 1.0f);
    cpu_swiglu_forward(out, gate, up, n);
    for (size_t i = 0; i < n; i++) ref[i] = ref_silu(gate[i]) * up[i];
    check_finite("swiglu out", out, n);
    EXPECT_CLOSE("swiglu out", out, ref, n, 1e-6, TINY);
    /* silu(100) = 100 and silu(-100) = -3.7e-42 (a denormal), not NaN from inf/inf */
    float g2[2] = {100.0f, -100.0f}, u2[2] = {1.0f, 1.0f}, o2[2];
    cpu_swiglu_forward(o2, g2, u2, 2);
    CHECK(o2[0] == 100.0f, "silu(100) = %.9g, want 100", o2[0]);
    CHECK(o2[1] <= 0 && o2[1] > -1e-41, "silu(-100) = %g, want -3.7e-42", o2[1]);
    free(gate);
    free(up);
    free(out);
    free(ref);
}

TEST(test_swiglu_backward_matches_double_reference_including_extreme_gates_and_accumulates) {
    size_t n;
    float *gate = inputs_with_extremes(1001, 4.0f, 30, &n);
    float *up = tmalloc(n), *dout = tmalloc(n), *dgate = tmalloc(n), *dup = tmalloc(n);
    float *pre_g = tmalloc(n), *pre_u = tmalloc(n);
    double *ref_g = dmalloc(n), *ref_u = dmalloc(n);
    TRng r = trng(31);
    fill_normal(&r, up, n, 1.0f);
    fill_normal(&r, dout, n, 1.0f);
    fill_normal(&r, pre_g, n, 1.0f);
    fill_normal(&r, pre_u, n, 1.0f);
    cpu_swiglu_backward(dgate, dup, dout, gate, up, n);
    for (size_t i = 0; i < n; i++) {
        ref_g[i] = (double)dout[i] * up[i] * ref_silu_grad(gate[i]);
        ref_u[i] = (double)dout[i] * ref_silu(gate[i]);
    }
    check_finite("swiglu dgate", dgate, n);
    check_finite("swiglu dup", dup, n);
    EXPECT_CLOSE("swiglu dgate", dgate, ref_g, n, 1e-5, TINY);
    EXPECT_CLOSE("swiglu dup", dup, ref_u, n, 1e-6, TINY);
    for (size_t i = 0; i < n; i++) {
        dgate[i] = pre_g[i], ref_g[i] += pre_g[i];
        dup[i] = pre_u[i], ref_u[i] += pre_u[i];
    }
    cpu_swiglu_backward(dgate, dup, dout, gate, up, n);
    EXPECT_CLOSE("prefill + swiglu dgate", dgate, ref_g, n, 1e-5, 1e-7);
    EXPECT_CLOSE("prefill + swiglu dup", dup, ref_u, n, 1e-6, 1e-7);
    /* each gradient alone, the other NULL, accumulates the same on top */
    cpu_swiglu_backward(dgate, NULL, dout, gate, up, n);
    cpu_swiglu_backward(NULL, dup, dout, gate, up, n);
    cpu_swiglu_backward(NULL, NULL, dout, gate, up, n);
    for (size_t i = 0; i < n; i++) {
        ref_g[i] += (double)dout[i] * up[i] * ref_silu_grad(gate[i]);
        ref_u[i] += (double)dout[i] * ref_silu(gate[i]);
    }
    EXPECT_CLOSE("swiglu dgate alone", dgate, ref_g, n, 1e-5, 1e-6);
    EXPECT_CLOSE("swiglu dup alone", dup, ref_u, n, 1e-6, 1e-6);
    float *bufs[] = {gate, up, dout, dgate, dup, pre_g, pre_u};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
    free(ref_g);
    free(ref_u);
}

TEST(test_swiglu_backward_matches_finite_differences) {
    const size_t sizes[] = {7, 257};
    for (int s = 0; s < 2; s++) {
        size_t n = sizes[s];
        Glu g = {n, tmalloc(n), tmalloc(n), tmalloc(n), tmalloc(n)};
        float *dgate = tmalloc(n), *dup = tmalloc(n);
        TRng r = trng(40 + s);
        fill_normal(&r, g.gate, n, 3.0f);
        fill_normal(&r, g.up, n, 1.0f);
        fill_normal(&r, g.proj, n, 1.0f);
        cpu_swiglu_backward(dgate, dup, g.proj, g.gate, g.up, n);
        GRAD_CHECK("swiglu dgate", swiglu_loss, &g, g.gate, dgate, n, 1e-2);
        GRAD_CHECK("swiglu dup", swiglu_loss, &g, g.up, dup, n, 1e-2);
        float *bufs[] = {g.gate, g.up, g.out, g.proj, dgate, dup};
        for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
    }
}

/* ---- threads ---- */

TEST(test_activations_are_bitwise_independent_of_thread_count) {
    size_t n = 4099;
    float *x = tmalloc(n), *up = tmalloc(n), *dout = tmalloc(n);
    float *o[2], *dx[2], *so[2], *dg[2], *du[2];
    TRng r = trng(50);
    fill_normal(&r, x, n, 3.0f);
    fill_normal(&r, up, n, 1.0f);
    fill_normal(&r, dout, n, 1.0f);
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        o[k] = tmalloc(n), dx[k] = tmalloc(n), so[k] = tmalloc(n);
        dg[k] = tmalloc(n), du[k] = tmalloc(n);
        omp_set_num_threads(k == 0 ? 1 : 3);
        cpu_gelu_forward(o[k], x, n);
        cpu_gelu_backward(dx[k], dout, x, n);
        cpu_swiglu_forward(so[k], x, up, n);
        cpu_swiglu_backward(dg[k], du[k], dout, x, up, n);
    }
    omp_set_num_threads(saved);
    EXPECT_SAME("gelu out", o[0], o[1], n);
    EXPECT_SAME("gelu dinp", dx[0], dx[1], n);
    EXPECT_SAME("swiglu out", so[0], so[1], n);
    EXPECT_SAME("swiglu dgate", dg[0], dg[1], n);
    EXPECT_SAME("swiglu dup", du[0], du[1], n);
    for (int k = 0; k < 2; k++) {
        free(o[k]);
        free(dx[k]);
        free(so[k]);
        free(dg[k]);
        free(du[k]);
    }
    free(x);
    free(up);
    free(dout);
}
