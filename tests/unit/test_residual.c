/* test_residual.c - residual add, per-channel layer scale and drop_path
 * (kernels/cpu/residual.c): forward against double references, backward against the
 * closed-form gradients and central finite differences, the accumulate and NULL-gradient
 * contracts, dropped samples giving exact zeros, and thread-count independence. */
#include "../harness.h"
#include "../../kernels/cpu/cpu.h"

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

static float *random_floats(size_t n, float std, uint64_t seed) {
    float *x = tmalloc(n);
    TRng r = trng(seed);
    fill_normal(&r, x, n, std);
    return x;
}

static float *copy_floats(const float *x, size_t n) {
    float *y = tmalloc(n);
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

/* ---- add ---- */

typedef struct {
    size_t n;
    float *a, *b, *out, *proj;
} Add;

static double add_loss(void *ctx) {
    Add *p = ctx;
    cpu_add_forward(p->out, p->a, p->b, p->n);
    return dot_loss(p->out, p->proj, p->n);
}

TEST(test_add_forward_matches_double_reference_also_in_place) {
    const size_t sizes[] = {7, 1001};
    for (int s = 0; s < 2; s++) {
        size_t n = sizes[s];
        float *a = random_floats(n, 1.0f, 1 + s), *b = random_floats(n, 3.0f, 3 + s);
        float *out = tmalloc(n);
        double *ref = dmalloc(n);
        for (size_t i = 0; i < n; i++) ref[i] = (double)a[i] + b[i];
        cpu_add_forward(out, a, b, n);
        EXPECT_CLOSE("a + b", out, ref, n, 1e-7, 1e-30);
        cpu_add_forward(a, a, b, n); /* the residual stream updated in place */
        EXPECT_SAME("a += b in place", a, out, n);
        free(a);
        free(b);
        free(out);
        free(ref);
    }
}

TEST(test_add_backward_matches_finite_differences) {
    size_t n = 301;
    Add p = {n, random_floats(n, 1.0f, 10), random_floats(n, 1.0f, 11), tmalloc(n),
             random_floats(n, 1.0f, 12)};
    float *da = tmalloc(n), *db = tmalloc(n);
    cpu_add_backward(da, db, p.proj, n);
    GRAD_CHECK("add da", add_loss, &p, p.a, da, n, 1e-2);
    GRAD_CHECK("add db", add_loss, &p, p.b, db, n, 1e-2);
    float *bufs[] = {p.a, p.b, p.out, p.proj, da, db};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
}

TEST(test_add_backward_accumulates_skips_null_gradients_and_allows_da_equal_db) {
    size_t n = 1001;
    float *dout = random_floats(n, 1.0f, 20);
    float *da = random_floats(n, 1.0f, 21), *db = random_floats(n, 1.0f, 22);
    double *ref_a = dmalloc(n), *ref_b = dmalloc(n);
    for (size_t i = 0; i < n; i++) {
        ref_a[i] = (double)da[i] + 2.0 * dout[i];
        ref_b[i] = (double)db[i] + 2.0 * dout[i];
    }
    cpu_add_backward(da, db, dout, n);
    cpu_add_backward(da, NULL, dout, n);
    cpu_add_backward(NULL, db, dout, n);
    cpu_add_backward(NULL, NULL, dout, n);
    EXPECT_CLOSE("prefill + 2 dout into da", da, ref_a, n, 1e-6, 1e-7);
    EXPECT_CLOSE("prefill + 2 dout into db", db, ref_b, n, 1e-6, 1e-7);
    /* add(x, x): both gradients are the same buffer and it gets dout twice */
    for (size_t i = 0; i < n; i++) ref_a[i] += 2.0 * dout[i];
    cpu_add_backward(da, da, dout, n);
    EXPECT_CLOSE("x + x: prefill + 2 dout", da, ref_a, n, 1e-6, 1e-7);
    free(dout);
    free(da);
    free(db);
    free(ref_a);
    free(ref_b);
}

/* ---- channel scale ---- */

typedef struct {
    int N, C;
    float *inp, *scale, *out, *proj; /* (N,C) (C) (N,C) (N,C) */
} Scale;

static Scale scale_new(int N, int C, uint64_t seed) {
    size_t nc = (size_t)N * C;
    Scale p = {N, C, random_floats(nc, 1.0f, seed), random_floats(C, 0.1f, seed + 1),
               tmalloc(nc), random_floats(nc, 1.0f, seed + 2)};
    return p;
}

static void scale_free(Scale *p) {
    free(p->inp);
    free(p->scale);
    free(p->out);
    free(p->proj);
}

static double channel_scale_loss(void *ctx) {
    Scale *p = ctx;
    cpu_channel_scale_forward(p->out, p->inp, p->scale, p->N, p->C);
    return dot_loss(p->out, p->proj, (size_t)p->N * p->C);
}

TEST(test_channel_scale_forward_matches_double_reference) {
    for (int s = 0; s < NSHAPES; s++) {
        int N = SHAPES[s].N, C = SHAPES[s].C;
        Scale p = scale_new(N, C, 30 + 3 * s);
        double *ref = dmalloc((size_t)N * C);
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                ref[(size_t)n * C + c] = (double)p.inp[(size_t)n * C + c] * p.scale[c];
        cpu_channel_scale_forward(p.out, p.inp, p.scale, N, C);
        EXPECT_CLOSE("channel scale out", p.out, ref, (size_t)N * C, 1e-7, 1e-30);
        free(ref);
        scale_free(&p);
    }
}

TEST(test_channel_scale_backward_matches_finite_differences) {
    for (int s = 0; s < NSHAPES; s++) {
        int N = SHAPES[s].N, C = SHAPES[s].C;
        Scale p = scale_new(N, C, 40 + 3 * s);
        float *dinp = tmalloc((size_t)N * C), *dscale = tmalloc(C);
        cpu_channel_scale_backward(dinp, dscale, p.proj, p.inp, p.scale, N, C);
        GRAD_CHECK("channel scale dinp", channel_scale_loss, &p, p.inp, dinp, (size_t)N * C,
                   1e-2);
        GRAD_CHECK("channel scale dscale", channel_scale_loss, &p, p.scale, dscale, C, 1e-2);
        free(dinp);
        free(dscale);
        scale_free(&p);
    }
}

TEST(test_channel_scale_backward_matches_double_reference_accumulates_and_skips_null) {
    for (int s = 0; s < NSHAPES; s++) {
        int N = SHAPES[s].N, C = SHAPES[s].C;
        size_t nc = (size_t)N * C;
        Scale p = scale_new(N, C, 50 + 3 * s);
        float *dinp = random_floats(nc, 1.0f, 60 + s), *dscale = random_floats(C, 1.0f, 70 + s);
        double *ref_dinp = dmalloc(nc), *ref_dscale = dmalloc(C);
        for (int c = 0; c < C; c++) ref_dscale[c] = dscale[c];
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                size_t i = (size_t)n * C + c;
                ref_dinp[i] = dinp[i] + (double)p.proj[i] * p.scale[c];
                ref_dscale[c] += (double)p.proj[i] * p.inp[i];
            }
        cpu_channel_scale_backward(dinp, dscale, p.proj, p.inp, p.scale, N, C);
        EXPECT_CLOSE("prefill + channel scale dinp", dinp, ref_dinp, nc, 1e-6, 1e-7);
        EXPECT_CLOSE("prefill + channel scale dscale", dscale, ref_dscale, C, 1e-6, 1e-6);
        /* once more with each gradient alone */
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                size_t i = (size_t)n * C + c;
                ref_dinp[i] += (double)p.proj[i] * p.scale[c];
                ref_dscale[c] += (double)p.proj[i] * p.inp[i];
            }
        cpu_channel_scale_backward(dinp, NULL, p.proj, p.inp, p.scale, N, C);
        cpu_channel_scale_backward(NULL, dscale, p.proj, p.inp, p.scale, N, C);
        cpu_channel_scale_backward(NULL, NULL, p.proj, p.inp, p.scale, N, C);
        EXPECT_CLOSE("channel scale dinp alone", dinp, ref_dinp, nc, 1e-6, 1e-6);
        EXPECT_CLOSE("channel scale dscale alone", dscale, ref_dscale, C, 1e-6, 1e-6);
        free(dinp);
        free(dscale);
        free(ref_dinp);
        free(ref_dscale);
        scale_free(&p);
    }
}

/* ---- drop_path ---- */

/* rate 0.25: kept samples are scaled by 1 / (1 - 0.25), dropped ones by 0 */
static const float KEEP_SCALE[] = {1.0f / 0.75f, 0.0f, 1.0f / 0.75f, 0.0f, 1.0f / 0.75f};
#define DP_B 5

typedef struct {
    size_t per_sample;
    float *inp, *out, *proj; /* (DP_B, per_sample) each */
} DropPath;

static double drop_path_loss(void *ctx) {
    DropPath *p = ctx;
    cpu_drop_path_forward(p->out, p->inp, KEEP_SCALE, DP_B, p->per_sample);
    return dot_loss(p->out, p->proj, DP_B * p->per_sample);
}

/* 37 values per sample, and 5000, which is more than one parallel chunk of a sample */
static const size_t PER_SAMPLE[] = {37, 5000};

TEST(test_drop_path_forward_zeroes_dropped_samples_and_rescales_kept_ones) {
    for (int s = 0; s < 2; s++) {
        size_t ps = PER_SAMPLE[s], n = DP_B * ps;
        float *inp = random_floats(n, 1.0f, 80 + s), *out = tmalloc(n);
        double *ref = dmalloc(n);
        for (int b = 0; b < DP_B; b++)
            for (size_t i = 0; i < ps; i++)
                ref[b * ps + i] = KEEP_SCALE[b] ? inp[b * ps + i] / 0.75 : 0.0;
        cpu_drop_path_forward(out, inp, KEEP_SCALE, DP_B, ps);
        EXPECT_CLOSE("drop_path out", out, ref, n, 1e-6, 1e-30);
        for (int b = 0; b < DP_B; b++)
            if (KEEP_SCALE[b] == 0)
                for (size_t i = 0; i < ps; i++)
                    if (!CHECK(out[b * ps + i] == 0.0f, "dropped sample %d, value %zu is %g", b, i,
                               out[b * ps + i]))
                        break;
        free(inp);
        free(out);
        free(ref);
    }
}

TEST(test_drop_path_backward_matches_finite_differences) {
    for (int s = 0; s < 2; s++) {
        size_t ps = PER_SAMPLE[s], n = DP_B * ps;
        DropPath p = {ps, random_floats(n, 1.0f, 90 + s), tmalloc(n),
                      random_floats(n, 1.0f, 92 + s)};
        float *dinp = tmalloc(n);
        cpu_drop_path_backward(dinp, p.proj, KEEP_SCALE, DP_B, ps);
        GRAD_CHECK("drop_path dinp", drop_path_loss, &p, p.inp, dinp, n, 1e-2);
        free(p.inp);
        free(p.out);
        free(p.proj);
        free(dinp);
    }
}

TEST(test_drop_path_backward_accumulates_and_skips_null_gradient) {
    for (int s = 0; s < 2; s++) {
        size_t ps = PER_SAMPLE[s], n = DP_B * ps;
        float *dout = random_floats(n, 1.0f, 100 + s), *dinp = random_floats(n, 1.0f, 102 + s);
        double *ref = dmalloc(n);
        for (int b = 0; b < DP_B; b++)
            for (size_t i = 0; i < ps; i++)
                ref[b * ps + i] = dinp[b * ps + i] + (double)dout[b * ps + i] * KEEP_SCALE[b];
        cpu_drop_path_backward(dinp, dout, KEEP_SCALE, DP_B, ps);
        cpu_drop_path_backward(NULL, dout, KEEP_SCALE, DP_B, ps);
        EXPECT_CLOSE("prefill + drop_path dinp", dinp, ref, n, 1e-6, 1e-7);
        free(dout);
        free(dinp);
        free(ref);
    }
}

/* ---- threads ---- */

/* 37 rows, 203 columns (7 column blocks of dscale) and 3 samples of 9000 (3 chunks each):
 * none of them splits evenly over 3 threads */
TEST(test_residual_ops_are_bitwise_independent_of_thread_count) {
    int N = 37, C = 203, B = 3;
    size_t nc = (size_t)N * C, ps = 9000, nd = B * ps;
    float *inp = random_floats(nc, 1.0f, 110), *b = random_floats(nc, 1.0f, 111);
    float *scale = random_floats(C, 0.1f, 112), *dout = random_floats(nc, 1.0f, 113);
    float *dp_inp = random_floats(nd, 1.0f, 114), *dp_dout = random_floats(nd, 1.0f, 115);
    const float keep[3] = {1.0f / 0.9f, 0.0f, 1.0f / 0.9f};
    float *pre_nc = random_floats(nc, 1.0f, 116), *pre_c = random_floats(C, 1.0f, 117);
    float *pre_nd = random_floats(nd, 1.0f, 118);
    float *add_out[2], *da[2], *db[2], *cs_out[2], *cs_dinp[2], *cs_dscale[2];
    float *dp_out[2], *dp_dinp[2];
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        add_out[k] = tmalloc(nc), cs_out[k] = tmalloc(nc), dp_out[k] = tmalloc(nd);
        da[k] = copy_floats(pre_nc, nc), db[k] = copy_floats(pre_nc, nc);
        cs_dinp[k] = copy_floats(pre_nc, nc), cs_dscale[k] = copy_floats(pre_c, C);
        dp_dinp[k] = copy_floats(pre_nd, nd);
        omp_set_num_threads(k == 0 ? 1 : 3);
        cpu_add_forward(add_out[k], inp, b, nc);
        cpu_add_backward(da[k], db[k], dout, nc);
        cpu_channel_scale_forward(cs_out[k], inp, scale, N, C);
        cpu_channel_scale_backward(cs_dinp[k], cs_dscale[k], dout, inp, scale, N, C);
        cpu_drop_path_forward(dp_out[k], dp_inp, keep, B, ps);
        cpu_drop_path_backward(dp_dinp[k], dp_dout, keep, B, ps);
    }
    omp_set_num_threads(saved);
    EXPECT_SAME("add out", add_out[0], add_out[1], nc);
    EXPECT_SAME("add da", da[0], da[1], nc);
    EXPECT_SAME("add db", db[0], db[1], nc);
    EXPECT_SAME("channel scale out", cs_out[0], cs_out[1], nc);
    EXPECT_SAME("channel scale dinp", cs_dinp[0], cs_dinp[1], nc);
    EXPECT_SAME("channel scale dscale", cs_dscale[0], cs_dscale[1], C);
    EXPECT_SAME("drop_path out", dp_out[0], dp_out[1], nd);
    EXPECT_SAME("drop_path dinp", dp_dinp[0], dp_dinp[1], nd);
    for (int k = 0; k < 2; k++) {
        float *bufs[] = {add_out[k], da[k], db[k], cs_out[k],
                         cs_dinp[k], cs_dscale[k], dp_out[k], dp_dinp[k]};
        for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
    }
    float *bufs[] = {inp, b, scale, dout, dp_inp, dp_dout, pre_nc, pre_c, pre_nd};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
}
