/* test_norm.c - LayerNorm and RMSNorm (kernels/cpu/norm.c): forward against naive
 * double-precision references, backward against the closed-form double gradients and
 * central finite differences, the accumulate and NULL-gradient contracts, statistics
 * under a large common offset, where eps enters RMSNorm, and thread-count independence. */
#include "../harness.h"
#include "../../kernels/cpu/cpu.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

typedef struct { int N, C; } Shape;
static const Shape SHAPES[] = {{5, 7}, {17, 33}, {3, 1000}};
#define NSHAPES (int)(sizeof(SHAPES) / sizeof(SHAPES[0]))

static double *dmalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) abort();
    return p;
}

/* ---- double references, written from the definitions ---- */

/* out (N, C), mean (N), rstd (N); bias may be NULL */
static void ref_layernorm(double *out, double *mean, double *rstd, const float *inp,
                          const float *w, const float *b, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        double s = 1.0 / sqrt(v + (double)eps);
        mean[n] = m;
        rstd[n] = s;
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] = (x[c] - m) * s * w[c] + (b ? b[c] : 0.0);
    }
}

/* gradients of sum(dout * layernorm(inp)); dinp (N, C), dw (C), db (C) overwritten */
static void ref_layernorm_backward(double *dinp, double *dw, double *db, const float *dout,
                                   const float *inp, const float *w, int N, int C, float eps) {
    double *out = dmalloc((size_t)N * C), *mean = dmalloc(N), *rstd = dmalloc(N);
    ref_layernorm(out, mean, rstd, inp, w, NULL, N, C, eps);
    for (int c = 0; c < C; c++) dw[c] = db[c] = 0;
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        double a = 0, b = 0;
        for (int c = 0; c < C; c++) {
            double xhat = (x[c] - mean[n]) * rstd[n];
            a += g[c] * w[c];
            b += g[c] * w[c] * xhat;
            dw[c] += g[c] * xhat;
            db[c] += g[c];
        }
        a /= C;
        b /= C;
        for (int c = 0; c < C; c++) {
            double xhat = (x[c] - mean[n]) * rstd[n];
            dinp[(size_t)n * C + c] = (g[c] * w[c] - a - xhat * b) * rstd[n];
        }
    }
    free(out);
    free(mean);
    free(rstd);
}

static void ref_rmsnorm(double *out, double *rstd, const float *inp, const float *w, int N,
                        int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double ms = 0;
        for (int c = 0; c < C; c++) ms += (double)x[c] * x[c];
        double s = 1.0 / sqrt(ms / C + (double)eps);
        rstd[n] = s;
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = x[c] * s * w[c];
    }
}

static void ref_rmsnorm_backward(double *dinp, double *dw, const float *dout, const float *inp,
                                 const float *w, int N, int C, float eps) {
    double *out = dmalloc((size_t)N * C), *rstd = dmalloc(N);
    ref_rmsnorm(out, rstd, inp, w, N, C, eps);
    for (int c = 0; c < C; c++) dw[c] = 0;
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        double b = 0;
        for (int c = 0; c < C; c++) {
            b += g[c] * w[c] * x[c] * rstd[n];
            dw[c] += g[c] * x[c] * rstd[n];
        }
        b /= C;
        for (int c = 0; c < C; c++)
            dinp[(size_t)n * C + c] = (g[c] * w[c] - x[c] * rstd[n] * b) * rstd[n];
    }
    free(out);
    free(rstd);
}

/* ref[i] += prefill[i] */
static void add_prefill(double *ref, const float *prefill, size_t n) {
    for (size_t i = 0; i < n; i++) ref[i] += prefill[i];
}

/* ---- one problem instance: inputs, saved statistics, outputs and gradients ---- */

typedef struct {
    int N, C;
    float eps;
    float *inp, *w, *b, *proj;   /* (N,C) (C) (C) (N,C); proj is dL/dout */
    float *out, *mean, *rstd;    /* (N,C) (N) (N) */
    float *dinp, *dw, *db;       /* (N,C) (C) (C) */
} Norm;

static Norm norm_new(int N, int C, float eps, float offset, uint64_t seed) {
    Norm p = {N, C, eps, tmalloc((size_t)N * C), tmalloc(C), tmalloc(C), tmalloc((size_t)N * C),
              tmalloc((size_t)N * C), tmalloc(N), tmalloc(N),
              tmalloc((size_t)N * C), tmalloc(C), tmalloc(C)};
    TRng r = trng(seed);
    fill_normal(&r, p.inp, (size_t)N * C, 1.0f);
    for (size_t i = 0; i < (size_t)N * C; i++) p.inp[i] += offset;
    fill_uniform(&r, p.w, C, 0.5f, 1.5f);
    fill_normal(&r, p.b, C, 0.5f);
    fill_normal(&r, p.proj, (size_t)N * C, 1.0f);
    return p;
}

static void norm_free(Norm *p) {
    float *bufs[] = {p->inp, p->w, p->b, p->proj, p->out, p->mean, p->rstd, p->dinp, p->dw, p->db};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
}

/* random prefill of the gradient buffers, copied to the pre_* arrays */
static void prefill_grads(Norm *p, float *pre_dinp, float *pre_dw, float *pre_db, uint64_t seed) {
    TRng r = trng(seed);
    size_t nc = (size_t)p->N * p->C;
    fill_normal(&r, p->dinp, nc, 1.0f);
    fill_normal(&r, p->dw, p->C, 1.0f);
    fill_normal(&r, p->db, p->C, 1.0f);
    for (size_t i = 0; i < nc; i++) pre_dinp[i] = p->dinp[i];
    for (int c = 0; c < p->C; c++) pre_dw[c] = p->dw[c], pre_db[c] = p->db[c];
}

static double layernorm_loss(void *ctx) {
    Norm *p = ctx;
    cpu_layernorm_forward(p->out, p->mean, p->rstd, p->inp, p->w, p->b, p->N, p->C, p->eps);
    return dot_loss(p->out, p->proj, (size_t)p->N * p->C);
}

static double rmsnorm_loss(void *ctx) {
    Norm *p = ctx;
    cpu_rmsnorm_forward(p->out, p->rstd, p->inp, p->w, p->N, p->C, p->eps);
    return dot_loss(p->out, p->proj, (size_t)p->N * p->C);
}

/* ---- LayerNorm ---- */

TEST(test_layernorm_forward_matches_double_reference_with_and_without_bias) {
    for (int s = 0; s < NSHAPES; s++)
        for (int with_bias = 0; with_bias <= 1; with_bias++) {
            int N = SHAPES[s].N, C = SHAPES[s].C;
            Norm p = norm_new(N, C, 1e-5f, 0.0f, 10 + s);
            const float *b = with_bias ? p.b : NULL;
            cpu_layernorm_forward(p.out, p.mean, p.rstd, p.inp, p.w, b, N, C, p.eps);
            double *out = dmalloc((size_t)N * C), *mean = dmalloc(N), *rstd = dmalloc(N);
            ref_layernorm(out, mean, rstd, p.inp, p.w, b, N, C, p.eps);
            EXPECT_CLOSE("layernorm out", p.out, out, (size_t)N * C, 1e-5, 1e-6);
            EXPECT_CLOSE("layernorm mean", p.mean, mean, N, 1e-6, 1e-7);
            EXPECT_CLOSE("layernorm rstd", p.rstd, rstd, N, 1e-6, 0);
            free(out);
            free(mean);
            free(rstd);
            norm_free(&p);
        }
}

/* x = 1000 + N(0, 1): a one-pass float E[x^2] - E[x]^2 loses the variance entirely and a
 * float running sum of x is off in the mean by ~1e-3 std; the saved statistics must still
 * be the correctly rounded ones, and the outputs and gradients follow from them. */
TEST(test_layernorm_statistics_are_stable_under_a_large_common_offset) {
    const Shape shapes[] = {{3, 1000}, {17, 33}};
    for (int s = 0; s < 2; s++) {
        int N = shapes[s].N, C = shapes[s].C;
        Norm p = norm_new(N, C, 1e-5f, 1000.0f, 20 + s);
        cpu_layernorm_forward(p.out, p.mean, p.rstd, p.inp, p.w, p.b, N, C, p.eps);
        double *out = dmalloc((size_t)N * C), *mean = dmalloc(N), *rstd = dmalloc(N);
        ref_layernorm(out, mean, rstd, p.inp, p.w, p.b, N, C, p.eps);
        /* mean to float rounding (ulp(1000) = 6e-5); out inherits that much absolute error */
        EXPECT_CLOSE("offset layernorm mean", p.mean, mean, N, 1e-7, 0);
        EXPECT_CLOSE("offset layernorm rstd", p.rstd, rstd, N, 1e-6, 0);
        EXPECT_CLOSE("offset layernorm out", p.out, out, (size_t)N * C, 1e-5, 1e-4);

        double *dinp = dmalloc((size_t)N * C), *dw = dmalloc(C), *db = dmalloc(C);
        ref_layernorm_backward(dinp, dw, db, p.proj, p.inp, p.w, N, C, p.eps);
        cpu_layernorm_backward(p.dinp, p.dw, p.db, p.proj, p.inp, p.w, p.mean, p.rstd, N, C);
        EXPECT_CLOSE("offset layernorm dinp", p.dinp, dinp, (size_t)N * C, 1e-4, 1e-4);
        EXPECT_CLOSE("offset layernorm dweight", p.dw, dw, C, 1e-4, 1e-4);
        EXPECT_CLOSE("offset layernorm dbias", p.db, db, C, 1e-5, 1e-5);
        free(out);
        free(mean);
        free(rstd);
        free(dinp);
        free(dw);
        free(db);
        norm_free(&p);
    }
}

TEST(test_layernorm_backward_matches_double_reference_and_accumulates) {
    for (int s = 0; s < NSHAPES; s++) {
        int N = SHAPES[s].N, C = SHAPES[s].C;
        size_t nc = (size_t)N * C;
        Norm p = norm_new(N, C, 1e-5f, 0.0f, 30 + s);
        float *pre_dinp = tmalloc(nc), *pre_dw = tmalloc(C), *pre_db = tmalloc(C);
        prefill_grads(&p, pre_dinp, pre_dw, pre_db, 40 + s);
        cpu_layernorm_forward(p.out, p.mean, p.rstd, p.inp, p.w, p.b, N, C, p.eps);
        cpu_layernorm_backward(p.dinp, p.dw, p.db, p.proj, p.inp, p.w, p.mean, p.rstd, N, C);
        double *dinp = dmalloc(nc), *dw = dmalloc(C), *db = dmalloc(C);
        ref_layernorm_backward(dinp, dw, db, p.proj, p.inp, p.w, N, C, p.eps);
        add_prefill(dinp, pre_dinp, nc);
        add_prefill(dw, pre_dw, C);
        add_prefill(db, pre_db, C);
        EXPECT_CLOSE("prefill + layernorm dinp", p.dinp, dinp, nc, 1e-4, 1e-5);
        EXPECT_CLOSE("prefill + layernorm dweight", p.dw, dw, C, 1e-5, 1e-5);
        EXPECT_CLOSE("prefill + layernorm dbias", p.db, db, C, 1e-5, 1e-5);
        free(pre_dinp);
        free(pre_dw);
        free(pre_db);
        free(dinp);
        free(dw);
        free(db);
        norm_free(&p);
    }
}

TEST(test_layernorm_backward_matches_finite_differences) {
    for (int s = 0; s < NSHAPES; s++) {
        int N = SHAPES[s].N, C = SHAPES[s].C;
        Norm p = norm_new(N, C, 1e-5f, 0.0f, 50 + s);
        layernorm_loss(&p);
        cpu_layernorm_backward(p.dinp, p.dw, p.db, p.proj, p.inp, p.w, p.mean, p.rstd, N, C);
        GRAD_CHECK("layernorm dinp", layernorm_loss, &p, p.inp, p.dinp, (size_t)N * C, 1e-2);
        GRAD_CHECK("layernorm dweight", layernorm_loss, &p, p.w, p.dw, C, 1e-2);
        GRAD_CHECK("layernorm dbias", layernorm_loss, &p, p.b, p.db, C, 1e-2);
        norm_free(&p);
    }
}

/* each gradient alone, the others NULL: it still gets prefill + its own gradient */
TEST(test_layernorm_backward_with_null_gradients_computes_the_rest) {
    int N = 17, C = 33;
    size_t nc = (size_t)N * C;
    Norm p = norm_new(N, C, 1e-6f, 0.0f, 60);
    float *pre_dinp = tmalloc(nc), *pre_dw = tmalloc(C), *pre_db = tmalloc(C);
    double *dinp = dmalloc(nc), *dw = dmalloc(C), *db = dmalloc(C);
    ref_layernorm_backward(dinp, dw, db, p.proj, p.inp, p.w, N, C, p.eps);
    cpu_layernorm_forward(p.out, p.mean, p.rstd, p.inp, p.w, p.b, N, C, p.eps);
    prefill_grads(&p, pre_dinp, pre_dw, pre_db, 61);
    add_prefill(dinp, pre_dinp, nc);
    add_prefill(dw, pre_dw, C);
    add_prefill(db, pre_db, C);
    cpu_layernorm_backward(p.dinp, NULL, NULL, p.proj, p.inp, p.w, p.mean, p.rstd, N, C);
    cpu_layernorm_backward(NULL, p.dw, NULL, p.proj, p.inp, p.w, p.mean, p.rstd, N, C);
    cpu_layernorm_backward(NULL, NULL, p.db, p.proj, p.inp, p.w, p.mean, p.rstd, N, C);
    cpu_layernorm_backward(NULL, NULL, NULL, p.proj, p.inp, p.w, p.mean, p.rstd, N, C);
    EXPECT_CLOSE("layernorm dinp alone", p.dinp, dinp, nc, 1e-4, 1e-5);
    EXPECT_CLOSE("layernorm dweight alone", p.dw, dw, C, 1e-5, 1e-5);
    EXPECT_CLOSE("layernorm dbias alone", p.db, db, C, 1e-5, 1e-5);
    free(pre_dinp);
    free(pre_dw);
    free(pre_db);
    free(dinp);
    free(dw);
    free(db);
    norm_free(&p);
}

/* ---- RMSNorm ---- */

TEST(test_rmsnorm_forward_matches_double_reference) {
    for (int s = 0; s < NSHAPES; s++) {
        int N = SHAPES[s].N, C = SHAPES[s].C;
        Norm p = norm_new(N, C, 1e-6f, 0.0f, 70 + s);
        cpu_rmsnorm_forward(p.out, p.rstd, p.inp, p.w, N, C, p.eps);
        double *out = dmalloc((size_t)N * C), *rstd = dmalloc(N);
        ref_rmsnorm(out, rstd, p.inp, p.w, N, C, p.eps);
        EXPECT_CLOSE("rmsnorm out", p.out, out, (size_t)N * C, 1e-5, 1e-6);
        EXPECT_CLOSE("rmsnorm rstd", p.rstd, rstd, N, 1e-6, 0);
        free(out);
        free(rstd);
        norm_free(&p);
    }
}

/* With inputs ~1e-4 and C = 3, mean(x^2) ~ 1e-8 is far below eps = 1e-5, so rsqrt(ms + eps)
 * differs from rsqrt(ms), rsqrt(ms) + eps and 1 / (sqrt(ms) + eps) by large factors. */
TEST(test_rmsnorm_adds_eps_to_the_mean_square_inside_the_rsqrt) {
    int N = 4, C = 3;
    Norm p = norm_new(N, C, 1e-5f, 0.0f, 80);
    for (int i = 0; i < N * C; i++) p.inp[i] *= 1e-4f;
    cpu_rmsnorm_forward(p.out, p.rstd, p.inp, p.w, N, C, p.eps);
    double *out = dmalloc((size_t)N * C), *rstd = dmalloc(N);
    ref_rmsnorm(out, rstd, p.inp, p.w, N, C, p.eps);
    EXPECT_CLOSE("small-input rmsnorm out", p.out, out, (size_t)N * C, 1e-5, 0);
    EXPECT_CLOSE("small-input rmsnorm rstd", p.rstd, rstd, N, 1e-6, 0);
    for (int n = 0; n < N; n++) {
        double ms = 0;
        for (int c = 0; c < C; c++) ms += (double)p.inp[n * C + c] * p.inp[n * C + c];
        ms /= C;
        CHECK(rstd[n] < 0.5 / sqrt(ms), "row %d: eps should dominate (rstd %g, 1/rms %g)", n,
              rstd[n], 1 / sqrt(ms));
    }
    /* the backward uses the eps-including rstd too */
    double *dinp = dmalloc((size_t)N * C), *dw = dmalloc(C);
    ref_rmsnorm_backward(dinp, dw, p.proj, p.inp, p.w, N, C, p.eps);
    cpu_rmsnorm_backward(p.dinp, p.dw, p.proj, p.inp, p.w, p.rstd, N, C);
    EXPECT_CLOSE("small-input rmsnorm dinp", p.dinp, dinp, (size_t)N * C, 1e-4, 1e-3);
    EXPECT_CLOSE("small-input rmsnorm dweight", p.dw, dw, C, 1e-4, 1e-9);
    free(out);
    free(rstd);
    free(dinp);
    free(dw);
    norm_free(&p);
}

TEST(test_rmsnorm_backward_matches_double_reference_and_accumulates) {
    for (int s = 0; s < NSHAPES; s++) {
        int N = SHAPES[s].N, C = SHAPES[s].C;
        size_t nc = (size_t)N * C;
        Norm p = norm_new(N, C, 1e-6f, 0.0f, 90 + s);
        float *pre_dinp = tmalloc(nc), *pre_dw = tmalloc(C), *pre_db = tmalloc(C);
        prefill_grads(&p, pre_dinp, pre_dw, pre_db, 100 + s);
        cpu_rmsnorm_forward(p.out, p.rstd, p.inp, p.w, N, C, p.eps);
        cpu_rmsnorm_backward(p.dinp, p.dw, p.proj, p.inp, p.w, p.rstd, N, C);
        double *dinp = dmalloc(nc), *dw = dmalloc(C);
        ref_rmsnorm_backward(dinp, dw, p.proj, p.inp, p.w, N, C, p.eps);
        add_prefill(dinp, pre_dinp, nc);
        add_prefill(dw, pre_dw, C);
        EXPECT_CLOSE("prefill + rmsnorm dinp", p.dinp, dinp, nc, 1e-4, 1e-5);
        EXPECT_CLOSE("prefill + rmsnorm dweight", p.dw, dw, C, 1e-5, 1e-5);
        free(pre_dinp);
        free(pre_dw);
        free(pre_db);
        free(dinp);
        free(dw);
        norm_free(&p);
    }
}

TEST(test_rmsnorm_backward_matches_finite_differences) {
    for (int s = 0; s < NSHAPES; s++) {
        int N = SHAPES[s].N, C = SHAPES[s].C;
        Norm p = norm_new(N, C, 1e-6f, 0.0f, 110 + s);
        rmsnorm_loss(&p);
        cpu_rmsnorm_backward(p.dinp, p.dw, p.proj, p.inp, p.w, p.rstd, N, C);
        GRAD_CHECK("rmsnorm dinp", rmsnorm_loss, &p, p.inp, p.dinp, (size_t)N * C, 1e-2);
        GRAD_CHECK("rmsnorm dweight", rmsnorm_loss, &p, p.w, p.dw, C, 1e-2);
        norm_free(&p);
    }
}

TEST(test_rmsnorm_backward_with_null_gradients_computes_the_rest) {
    int N = 17, C = 33;
    size_t nc = (size_t)N * C;
    Norm p = norm_new(N, C, 1e-6f, 0.0f, 120);
    float *pre_dinp = tmalloc(nc), *pre_dw = tmalloc(C), *pre_db = tmalloc(C);
    double *dinp = dmalloc(nc), *dw = dmalloc(C);
    ref_rmsnorm_backward(dinp, dw, p.proj, p.inp, p.w, N, C, p.eps);
    cpu_rmsnorm_forward(p.out, p.rstd, p.inp, p.w, N, C, p.eps);
    prefill_grads(&p, pre_dinp, pre_dw, pre_db, 121);
    add_prefill(dinp, pre_dinp, nc);
    add_prefill(dw, pre_dw, C);
    cpu_rmsnorm_backward(p.dinp, NULL, p.proj, p.inp, p.w, p.rstd, N, C);
    cpu_rmsnorm_backward(NULL, p.dw, p.proj, p.inp, p.w, p.rstd, N, C);
    cpu_rmsnorm_backward(NULL, NULL, p.proj, p.inp, p.w, p.rstd, N, C);
    EXPECT_CLOSE("rmsnorm dinp alone", p.dinp, dinp, nc, 1e-4, 1e-5);
    EXPECT_CLOSE("rmsnorm dweight alone", p.dw, dw, C, 1e-5, 1e-5);
    free(pre_dinp);
    free(pre_dw);
    free(pre_db);
    free(dinp);
    free(dw);
    norm_free(&p);
}

/* ---- threads ---- */

static void run_layernorm(Norm *p) {
    cpu_layernorm_forward(p->out, p->mean, p->rstd, p->inp, p->w, p->b, p->N, p->C, p->eps);
    cpu_layernorm_backward(p->dinp, p->dw, p->db, p->proj, p->inp, p->w, p->mean, p->rstd,
                           p->N, p->C);
}

/* 37 rows and 203 columns (7 column blocks): neither splits evenly over 3 threads */
TEST(test_norms_are_bitwise_independent_of_thread_count) {
    int N = 37, C = 203;
    size_t nc = (size_t)N * C;
    Norm p1 = norm_new(N, C, 1e-5f, 0.0f, 130), p3 = norm_new(N, C, 1e-5f, 0.0f, 130);
    float *rms1 = tmalloc(nc), *rms3 = tmalloc(nc), *rr1 = tmalloc(N), *rr3 = tmalloc(N);
    float *rdx1 = tmalloc(nc), *rdx3 = tmalloc(nc), *rdw1 = tmalloc(C), *rdw3 = tmalloc(C);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    run_layernorm(&p1);
    cpu_rmsnorm_forward(rms1, rr1, p1.inp, p1.w, N, C, p1.eps);
    cpu_rmsnorm_backward(rdx1, rdw1, p1.proj, p1.inp, p1.w, rr1, N, C);
    omp_set_num_threads(3);
    run_layernorm(&p3);
    cpu_rmsnorm_forward(rms3, rr3, p3.inp, p3.w, N, C, p3.eps);
    cpu_rmsnorm_backward(rdx3, rdw3, p3.proj, p3.inp, p3.w, rr3, N, C);
    omp_set_num_threads(saved);
    EXPECT_SAME("layernorm out", p1.out, p3.out, nc);
    EXPECT_SAME("layernorm mean", p1.mean, p3.mean, N);
    EXPECT_SAME("layernorm rstd", p1.rstd, p3.rstd, N);
    EXPECT_SAME("layernorm dinp", p1.dinp, p3.dinp, nc);
    EXPECT_SAME("layernorm dweight", p1.dw, p3.dw, C);
    EXPECT_SAME("layernorm dbias", p1.db, p3.db, C);
    EXPECT_SAME("rmsnorm out", rms1, rms3, nc);
    EXPECT_SAME("rmsnorm rstd", rr1, rr3, N);
    EXPECT_SAME("rmsnorm dinp", rdx1, rdx3, nc);
    EXPECT_SAME("rmsnorm dweight", rdw1, rdw3, C);
    float *bufs[] = {rms1, rms3, rr1, rr3, rdx1, rdx3, rdw1, rdw3};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
    norm_free(&p1);
    norm_free(&p3);
}
