/* test_optimizer.c - AdamW (kernels/cpu/optimizer.c) against a double-precision
 * re-implementation of torch.optim.AdamW over several steps, its properties (zero lr,
 * decoupled weight decay, sign-like first step), the sum of squares behind gradient clipping
 * against a double sum, and in-place scaling; all bitwise independent of the thread count. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "tests/harness.h"

typedef struct {
    float lr, beta1, beta2, eps, wd, grad_scale;
} AdamCfg;

/* torch.optim.AdamW (single-tensor, maximize=False, amsgrad=False) in double */
static void ref_adamw(double *p, double *m, double *v, const float *grads, size_t n,
                      AdamCfg c, int t) {
    double b1 = c.beta1, b2 = c.beta2;
    double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
    for (size_t i = 0; i < n; i++) {
        double g = (double)grads[i] * c.grad_scale;
        p[i] *= 1.0 - (double)c.lr * c.wd;
        m[i] = b1 * m[i] + (1.0 - b1) * g;
        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
        double denom = sqrt(v[i]) / sqrt(bc2) + c.eps;
        p[i] -= (double)c.lr / bc1 * m[i] / denom;
    }
}

static void adamw(float *p, const float *g, float *m, float *v, size_t n, AdamCfg c, int t) {
    kernels_cpu.adamw_update(p, NULL, g, m, v, n, c.lr, c.beta1, c.beta2, c.eps, c.wd, t, c.grad_scale);
}

static double *to_double(const float *x, size_t n) {
    double *d = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

TEST(test_adamw_matches_torch_formula_in_double_over_five_steps) {
    /* lr*wd is large enough that coupled or post-step decay shows up; the second config has
     * gradients at the scale of eps, so the placement of eps and of sqrt(bias_correction2)
     * matters */
    const AdamCfg cfgs[] = {
        {0.05f, 0.9f, 0.98f, 1e-8f, 0.0f, 0.25f},
        {0.05f, 0.9f, 0.98f, 1e-8f, 0.5f, 0.25f},
        {0.01f, 0.8f, 0.999f, 1e-3f, 0.1f, 0.5f},
    };
    const float grad_std[] = {1.0f, 1.0f, 2e-3f};
    const size_t sizes[] = {1, 37, 1001};
    TRng r = trng(31);
    for (int ci = 0; ci < 3; ci++) {
        for (int si = 0; si < 3; si++) {
            size_t n = sizes[si];
            AdamCfg c = cfgs[ci];
            float *p = tmalloc(n), *g = tmalloc(n), *m = tmalloc(n), *v = tmalloc(n);
            fill_normal(&r, p, n, 1.0f);
            double *rp = to_double(p, n), *rm = calloc(n, sizeof(double)),
                   *rv = calloc(n, sizeof(double));
            double gs = grad_std[ci] * c.grad_scale; /* scale of the scaled gradient */
            for (int t = 1; t <= 5; t++) {
                fill_normal(&r, g, n, grad_std[ci]);
                adamw(p, g, m, v, n, c, t);
                ref_adamw(rp, rm, rv, g, n, c, t);
                int ok = EXPECT_CLOSE("adamw params", p, rp, n, 1e-5, 1e-6);
                ok &= EXPECT_CLOSE("adamw m", m, rm, n, 1e-5, 1e-6 * gs);
                ok &= EXPECT_CLOSE("adamw v", v, rv, n, 1e-5, 1e-6 * gs * gs);
                if (!ok) {
                    CHECK(0, "config %d, n %zu, step %d", ci, n, t);
                    break;
                }
            }
            free(p); free(g); free(m); free(v); free(rp); free(rm); free(rv);
        }
    }
}

TEST(test_adamw_with_zero_lr_leaves_params_unchanged_and_still_updates_moments) {
    enum { N = 257 };
    TRng r = trng(32);
    float p[N], p0[N], g[N], m[N], v[N];
    fill_normal(&r, p, N, 1.0f);
    fill_normal(&r, m, N, 0.1f);
    fill_uniform(&r, v, N, 0.01f, 0.1f);
    memcpy(p0, p, sizeof p);
    double *rp = to_double(p, N), *rm = to_double(m, N), *rv = to_double(v, N);
    AdamCfg c = {0.0f, 0.9f, 0.98f, 1e-8f, 0.5f, 2.0f};
    for (int t = 3; t <= 5; t++) {
        fill_normal(&r, g, N, 1.0f);
        adamw(p, g, m, v, N, c, t);
        ref_adamw(rp, rm, rv, g, N, c, t);
    }
    EXPECT_SAME("params with lr = 0", p, p0, N);
    EXPECT_CLOSE("m with lr = 0", m, rm, N, 1e-5, 1e-7);
    EXPECT_CLOSE("v with lr = 0", v, rv, N, 1e-5, 1e-9);
    free(rp); free(rm); free(rv);
}

TEST(test_adamw_weight_decay_is_decoupled_from_the_moments) {
    /* same state and gradients with and without decay: the moments are bitwise equal and
     * the parameters differ by exactly lr*wd*p_old (the decay never enters m or v) */
    enum { N = 129 };
    TRng r = trng(33);
    float p0[N], g[N], m0[N], v0[N];
    fill_normal(&r, p0, N, 1.0f);
    fill_normal(&r, g, N, 1.0f);
    fill_normal(&r, m0, N, 0.1f);
    fill_uniform(&r, v0, N, 0.01f, 0.1f);
    float pa[N], ma[N], va[N], pb[N], mb[N], vb[N];
    memcpy(pa, p0, sizeof p0); memcpy(ma, m0, sizeof m0); memcpy(va, v0, sizeof v0);
    memcpy(pb, p0, sizeof p0); memcpy(mb, m0, sizeof m0); memcpy(vb, v0, sizeof v0);
    AdamCfg with = {0.05f, 0.9f, 0.98f, 1e-8f, 0.5f, 1.0f}, without = with;
    without.wd = 0.0f;
    adamw(pa, g, ma, va, N, with, 4);
    adamw(pb, g, mb, vb, N, without, 4);
    EXPECT_SAME("m with and without weight decay", ma, mb, N);
    EXPECT_SAME("v with and without weight decay", va, vb, N);
    float diff[N];
    double ref[N];
    for (int i = 0; i < N; i++) {
        diff[i] = pb[i] - pa[i];
        ref[i] = (double)with.lr * with.wd * p0[i];
    }
    EXPECT_CLOSE("decay = lr * wd * p_old", diff, ref, N, 1e-4, 1e-6);
}

TEST(test_adamw_first_step_moves_each_param_by_lr_against_the_gradient_sign) {
    /* at t = 1 the bias corrections cancel: the step is lr * g / (|g| + eps) */
    enum { N = 77 };
    TRng r = trng(34);
    float p[N], p0[N], g[N], m[N] = {0}, v[N] = {0};
    fill_normal(&r, p, N, 1.0f);
    fill_normal(&r, g, N, 3.0f);
    memcpy(p0, p, sizeof p);
    AdamCfg c = {0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.1f};
    adamw(p, g, m, v, N, c, 1);
    for (int i = 0; i < N; i++) {
        double step = (double)p[i] - p0[i], want = g[i] > 0 ? -c.lr : c.lr;
        CHECK(fabs(step - want) < 1e-6, "param %d moved by %.9g, want %.9g", i, step, want);
    }
}

TEST(test_sum_squares_matches_double_sum) {
    /* sizes around the 4096-element chunk and past one round of 256 chunks */
    const size_t sizes[] = {1, 4095, 4096, 4097, 100003, 1100003};
    TRng r = trng(35);
    float *g = tmalloc(1100003);
    fill_uniform(&r, g, 1100003, -2.0f, 2.0f);
    for (int s = 0; s < 6; s++) {
        size_t n = sizes[s];
        double ref = 0;
        for (size_t i = 0; i < n; i++) ref += (double)g[i] * g[i];
        float out = -1.0f;
        kernels_cpu.sum_squares(&out, g, n);
        if (!EXPECT_CLOSE("sum of squares", &out, &ref, 1, 1e-6, 0)) CHECK(0, "n = %zu", n);
    }
    float out = -1.0f;
    kernels_cpu.sum_squares(&out, g, 0);
    CHECK(out == 0.0f, "sum of squares of nothing is %g", out);
    free(g);
}

/* the device-side clipping ops (train/optim.c's adamw_step): the accumulated sum is the
 * float sum_squares of each buffer added in double, the coefficient is clip_grad_norm_'s,
 * and a non-finite coefficient leaves every parameter and moment untouched */
TEST(test_clipping_ops_accumulate_clip_and_skip_a_non_finite_step) {
    enum { NA = 5000, NB = 333 };
    TRng r = trng(36);
    float *a = tmalloc(NA), *b = tmalloc(NB);
    fill_uniform(&r, a, NA, -1.0f, 1.0f);
    fill_uniform(&r, b, NB, -3.0f, 3.0f);
    float pa, pb;
    kernels_cpu.sum_squares(&pa, a, NA);
    kernels_cpu.sum_squares(&pb, b, NB);
    double sq = 0.0;
    kernels_cpu.sum_squares_acc(&sq, a, NA);
    kernels_cpu.sum_squares_acc(&sq, b, NB);
    kernels_cpu.sum_squares_acc(&sq, b, 0);
    CHECK(sq == (double)pa + (double)pb, "accumulated %.17g, want %.17g", sq, (double)pa + pb);
    float coef;
    double norm = sqrt(sq);
    kernels_cpu.clip_coef(&coef, &sq, 1.0);
    CHECK(coef == (float)(1.0 / (norm + 1e-6)), "coef %.9g for norm %.9g and max 1", coef, norm);
    kernels_cpu.clip_coef(&coef, &sq, 2.0 * norm);
    CHECK(coef == 1.0f, "coef %g below the max norm", coef);
    kernels_cpu.clip_coef(&coef, &sq, 0.0);
    CHECK(coef == 1.0f, "coef %g without clipping", coef);
    const double bad[2] = {INFINITY, NAN};
    for (int k = 0; k < 2; k++) {
        kernels_cpu.clip_coef(&coef, &bad[k], 0.0);
        CHECK(isnan(coef), "coef %g for sum %g", coef, bad[k]);
    }
    /* a finite coefficient: adamw_update with that grad_scale; NaN: nothing moves */
    float *p1 = tmalloc(NB), *m1 = tmalloc(NB), *v1 = tmalloc(NB);
    float *p2 = tmalloc(NB), *m2 = tmalloc(NB), *v2 = tmalloc(NB);
    fill_uniform(&r, p1, NB, -1.0f, 1.0f);
    fill_uniform(&r, m1, NB, -0.1f, 0.1f);
    fill_uniform(&r, v1, NB, 0.0f, 0.01f);
    memcpy(p2, p1, NB * sizeof(float)), memcpy(m2, m1, NB * sizeof(float)), memcpy(v2, v1, NB * sizeof(float));
    float scale = 0.37f, nan = NAN;
    kernels_cpu.adamw_update(p1, NULL, b, m1, v1, NB, 1e-3f, 0.9f, 0.98f, 1e-8f, 0.05f, 3, scale);
    kernels_cpu.adamw_update_scaled(p2, NULL, b, m2, v2, NB, 1e-3f, 0.9f, 0.98f, 1e-8f, 0.05f, 3, &scale);
    EXPECT_SAME("params, scale from memory", p2, p1, NB);
    EXPECT_SAME("m, scale from memory", m2, m1, NB);
    kernels_cpu.adamw_update_scaled(p2, NULL, b, m2, v2, NB, 1e-3f, 0.9f, 0.98f, 1e-8f, 0.05f, 4, &nan);
    EXPECT_SAME("params after a NaN scale", p2, p1, NB);
    EXPECT_SAME("m after a NaN scale", m2, m1, NB);
    EXPECT_SAME("v after a NaN scale", v2, v1, NB);
    free(a), free(b), free(p1), free(m1), free(v1), free(p2), free(m2), free(v2);
}

TEST(test_sum_squares_keeps_small_terms_next_to_large_ones) {
    /* terms of ~1 beside 4096^2 = 2^24 (within a chunk) and beside 16384^2 = 2^28 (across
     * chunks): a float running sum rounds every addition by a similar amount in the same
     * direction, which drifts far beyond the final rounding to float */
    enum { N = 1100003 };
    TRng r = trng(38);
    float *g = tmalloc(N);
    for (size_t i = 0; i < N; i++) g[i] = trng_uniform(&r) < 0.5 ? -1.00195f : 1.00195f;
    for (int c = 0; c < 2; c++) {
        size_t n = c == 0 ? 8 * 4096 + 5 : N;
        for (size_t i = 0; i < n; i += 4096) g[i] = c == 0 ? 4096.0f : (i == 0 ? 16384.0f : g[1]);
        double ref = 0;
        for (size_t i = 0; i < n; i++) ref += (double)g[i] * g[i];
        float out;
        kernels_cpu.sum_squares(&out, g, n);
        if (!EXPECT_CLOSE("sum of squares with large terms", &out, &ref, 1, 1e-6, 0))
            CHECK(0, "n = %zu", n);
    }
    free(g);
}

TEST(test_scale_inplace_multiplies_every_element) {
    const size_t sizes[] = {1, 1000, 4097};
    TRng r = trng(36);
    for (int s = 0; s < 3; s++) {
        size_t n = sizes[s];
        float *x = tmalloc(n), *want = tmalloc(n);
        fill_normal(&r, x, n, 2.0f);
        const float k = 0.37f;
        /* the double product of two floats is exact, so rounding it is the float product */
        for (size_t i = 0; i < n; i++) want[i] = (float)((double)x[i] * k);
        kernels_cpu.scale_inplace(x, k, n);
        EXPECT_SAME("scaled", x, want, n);
        free(x); free(want);
    }
}

TEST(test_optimizer_outputs_are_independent_of_thread_count) {
    /* the sum of squares spans several chunk rounds; AdamW and scaling are elementwise, so a
     * smaller buffer suffices */
    enum { NBIG = 1100003, N = 30011 };
    TRng r = trng(37);
    float *g = tmalloc(NBIG), *p0 = tmalloc(N), *m0 = tmalloc(N), *v0 = tmalloc(N);
    fill_uniform(&r, g, NBIG, -2.0f, 2.0f);
    fill_normal(&r, p0, N, 1.0f);
    fill_normal(&r, m0, N, 0.1f);
    fill_uniform(&r, v0, N, 0.01f, 0.1f);
    float *p[2], *m[2], *v[2], ss[2][2];
    AdamCfg c = {1e-3f, 0.9f, 0.98f, 1e-8f, 0.05f, 0.5f};
    int prev = omp_get_max_threads();
    const int threads[2] = {1, 3};
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(threads[t]);
        p[t] = tmalloc(N); m[t] = tmalloc(N); v[t] = tmalloc(N);
        memcpy(p[t], p0, N * sizeof(float));
        memcpy(m[t], m0, N * sizeof(float));
        memcpy(v[t], v0, N * sizeof(float));
        adamw(p[t], g, m[t], v[t], N, c, 7);
        kernels_cpu.scale_inplace(m[t], 0.3f, N);
        kernels_cpu.sum_squares(&ss[t][0], g, NBIG);
        kernels_cpu.sum_squares(&ss[t][1], g, 100003);
    }
    omp_set_num_threads(prev);
    EXPECT_SAME("adamw params, 1 vs 3 threads", p[0], p[1], N);
    EXPECT_SAME("adamw m then scale_inplace, 1 vs 3 threads", m[0], m[1], N);
    EXPECT_SAME("adamw v, 1 vs 3 threads", v[0], v[1], N);
    EXPECT_SAME("sum of squares, 1 vs 3 threads", ss[0], ss[1], 2);
    for (int t = 0; t < 2; t++) { free(p[t]); free(m[t]); free(v[t]); }
    free(g); free(p0); free(m0); free(v0);
}

TEST(test_adamw_bf16_copy_is_the_rounded_update_and_leaves_fp32_bitwise_unchanged) {
    /* params16 (the bf16 weight copy of precision = bf16): the same update, and the copy
     * holds each new parameter rounded to nearest even, checked by an independent rounding */
    const AdamCfg c = {0.05f, 0.9f, 0.98f, 1e-8f, 0.1f, 0.5f};
    const size_t n = 1003;
    TRng r = trng(77);
    float *p0 = tmalloc(n), *g = tmalloc(n);
    fill_normal(&r, p0, n, 1.0f);
    fill_normal(&r, g, n, 1.0f);
    float *pa = tmalloc(n), *pb = tmalloc(n), *ma = tmalloc(n), *va = tmalloc(n),
          *mb = tmalloc(n), *vb = tmalloc(n);
    memcpy(pa, p0, n * sizeof *pa);
    memcpy(pb, p0, n * sizeof *pb);
    uint16_t *w16 = calloc(n, sizeof *w16);
    for (int t = 1; t <= 3; t++) {
        kernels_cpu.adamw_update(pa, NULL, g, ma, va, n, c.lr, c.beta1, c.beta2, c.eps, c.wd, t,
                                 c.grad_scale);
        kernels_cpu.adamw_update(pb, w16, g, mb, vb, n, c.lr, c.beta1, c.beta2, c.eps, c.wd, t,
                                 c.grad_scale);
    }
    EXPECT_SAME("params with and without the copy", pa, pb, n);
    EXPECT_SAME("m", ma, mb, n);
    EXPECT_SAME("v", va, vb, n);
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i++) {
        /* round to nearest even by arithmetic on the value: the two bf16 neighbours of
         * the float, the closer one (ties: the even mantissa) */
        uint32_t u;
        memcpy(&u, &pb[i], 4);
        uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
        float flo, fhi;
        memcpy(&flo, &lo, 4);
        memcpy(&fhi, &hi, 4);
        double dlo = fabs((double)pb[i] - flo), dhi = fabs((double)fhi - pb[i]);
        uint16_t want = (uint16_t)((dlo < dhi || (dlo == dhi && !((lo >> 16) & 1))) ? lo >> 16 : hi >> 16);
        if (w16[i] != want) {
            CHECK(0, "w16[%zu] = 0x%04x, want 0x%04x (param %.9g)", i, w16[i], want, pb[i]);
            bad = 1;
        }
    }
    free(p0), free(g), free(pa), free(pb), free(ma), free(va), free(mb), free(vb), free(w16);
}
