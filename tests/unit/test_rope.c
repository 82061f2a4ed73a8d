/* test_rope.c - rotate-half RoPE against the spec formula evaluated in double (theta 1e4 and
 * 1e6, scattered positions, head dims from 2 up to one that spans several frequency blocks),
 * against finite differences, and for its properties: every rotated pair keeps its norm,
 * backward inverts forward, in-place equals out-of-place, accumulate / NULL contracts and
 * thread-count independence. */
#include "kernels/kernels.h"
#include "tests/harness.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int N, NH, HD; } Shape;

/* 262 = 2 * (128 + 3): more than one block of the kernel's cos/sin table, the last partial. */
static const Shape SHAPES[] = {{5, 3, 6}, {7, 2, 10}, {4, 1, 16}, {3, 4, 2}, {3, 2, 262}};
enum { NSHAPES = sizeof(SHAPES) / sizeof(SHAPES[0]) };
static const float THETAS[] = {10000.0f, 1000000.0f};

static size_t numel(const Shape *s) { return (size_t)s->N * s->NH * s->HD; }

/* Positions in [0, 5000), not consecutive; row 0 sits at position 0. */
static int *random_positions(int N, uint64_t seed) {
    int *pos = malloc(N * sizeof(int));
    TRng r = trng(seed);
    for (int n = 0; n < N; n++) pos[n] = n == 0 ? 0 : (int)(trng_uniform(&r) * 5000);
    return pos;
}

static void ref_rope(double *out, const float *x, const int *pos, const Shape *s, double theta) {
    int half = s->HD / 2;
    for (int n = 0; n < s->N; n++)
        for (int h = 0; h < s->NH; h++) {
            const float *xr = x + ((size_t)n * s->NH + h) * s->HD;
            double *o = out + ((size_t)n * s->NH + h) * s->HD;
            for (int i = 0; i < half; i++) {
                double inv_freq = 1.0 / pow(theta, (2.0 * i) / s->HD);
                double c = cos(pos[n] * inv_freq), sn = sin(pos[n] * inv_freq);
                o[i] = xr[i] * c - xr[i + half] * sn;
                o[i + half] = xr[i + half] * c + xr[i] * sn;
            }
        }
}

TEST(test_rope_forward_matches_double_reference) {
    for (int c = 0; c < NSHAPES; c++)
        for (int th = 0; th < 2; th++) {
            const Shape *s = &SHAPES[c];
            size_t n = numel(s);
            float *x = tmalloc(n), *out = tmalloc(n);
            double *ref = calloc(n, sizeof(double));
            int *pos = random_positions(s->N, 10 + c);
            TRng r = trng(20 + c);
            fill_normal(&r, x, n, 1.0f);
            kernels_cpu.rope_forward(out, x, pos, s->N, s->NH, s->HD, THETAS[th]);
            ref_rope(ref, x, pos, s, THETAS[th]);
            CHECK(EXPECT_CLOSE("rope", out, ref, n, 1e-6, 1e-7), "shape %d theta %g", c,
                  THETAS[th]);
            /* position 0 is the identity, exactly */
            CHECK(EXPECT_SAME("row at position 0", out, x, (size_t)s->NH * s->HD), "shape %d", c);
            free(x); free(out); free(ref); free(pos);
        }
}

TEST(test_rope_preserves_the_norm_of_every_rotated_pair) {
    for (int c = 0; c < NSHAPES; c++) {
        const Shape *s = &SHAPES[c];
        size_t n = numel(s), npairs = n / 2;
        float *x = tmalloc(n), *out = tmalloc(n), *got = tmalloc(npairs);
        double *want = calloc(npairs, sizeof(double));
        int *pos = random_positions(s->N, 30 + c);
        TRng r = trng(40 + c);
        fill_normal(&r, x, n, 2.0f);
        kernels_cpu.rope_forward(out, x, pos, s->N, s->NH, s->HD, 1e6f);
        int half = s->HD / 2;
        for (size_t row = 0, k = 0; row < (size_t)s->N * s->NH; row++)
            for (int i = 0; i < half; i++, k++) {
                const float *xr = x + row * s->HD, *o = out + row * s->HD;
                got[k] = o[i] * o[i] + o[i + half] * o[i + half];
                want[k] = (double)xr[i] * xr[i] + (double)xr[i + half] * xr[i + half];
            }
        CHECK(EXPECT_CLOSE("pair norm^2", got, want, npairs, 1e-6, 1e-7), "shape %d", c);
        free(x); free(out); free(got); free(want); free(pos);
    }
}

typedef struct {
    const Shape *s;
    float *x, *out, *proj;
    const int *pos;
    float theta;
} LossCtx;

static double rope_loss(void *vctx) {
    LossCtx *c = vctx;
    kernels_cpu.rope_forward(c->out, c->x, c->pos, c->s->N, c->s->NH, c->s->HD, c->theta);
    return dot_loss(c->out, c->proj, numel(c->s));
}

TEST(test_rope_backward_matches_finite_differences) {
    for (int c = 0; c < NSHAPES; c++)
        for (int th = 0; th < 2; th++) {
            const Shape *s = &SHAPES[c];
            size_t n = numel(s);
            LossCtx ctx = {s, tmalloc(n), tmalloc(n), tmalloc(n), random_positions(s->N, 50 + c),
                           THETAS[th]};
            float *dx = tmalloc(n);
            TRng r = trng(60 + c);
            fill_normal(&r, ctx.x, n, 1.0f);
            fill_normal(&r, ctx.proj, n, 1.0f);
            kernels_cpu.rope_backward(dx, ctx.proj, ctx.pos, s->N, s->NH, s->HD, THETAS[th]);
            CHECK(GRAD_CHECK("dinp", rope_loss, &ctx, ctx.x, dx, n, 1e-2), "shape %d theta %g",
                  c, THETAS[th]);
            free(ctx.x); free(ctx.out); free(ctx.proj); free((int *)ctx.pos); free(dx);
        }
}

TEST(test_rope_backward_inverts_forward) {
    for (int c = 0; c < NSHAPES; c++) {
        const Shape *s = &SHAPES[c];
        size_t n = numel(s);
        float *x = tmalloc(n), *y = tmalloc(n), *back = tmalloc(n);
        double *want = calloc(n, sizeof(double));
        int *pos = random_positions(s->N, 70 + c);
        TRng r = trng(80 + c);
        fill_normal(&r, x, n, 1.0f);
        for (size_t i = 0; i < n; i++) want[i] = x[i];
        kernels_cpu.rope_forward(y, x, pos, s->N, s->NH, s->HD, 1e4f);
        kernels_cpu.rope_backward(back, y, pos, s->N, s->NH, s->HD, 1e4f);
        CHECK(EXPECT_CLOSE("R^T R x", back, want, n, 1e-6, 1e-6), "shape %d", c);
        free(x); free(y); free(back); free(want); free(pos);
    }
}

TEST(test_rope_forward_in_place_matches_out_of_place) {
    const Shape *s = &SHAPES[4];
    size_t n = numel(s);
    float *x = tmalloc(n), *out = tmalloc(n);
    int *pos = random_positions(s->N, 90);
    TRng r = trng(91);
    fill_normal(&r, x, n, 1.0f);
    kernels_cpu.rope_forward(out, x, pos, s->N, s->NH, s->HD, 1e6f);
    kernels_cpu.rope_forward(x, x, pos, s->N, s->NH, s->HD, 1e6f);
    EXPECT_SAME("in place", x, out, n);
    free(x); free(out); free(pos);
}

TEST(test_rope_backward_accumulates_and_accepts_null) {
    for (int c = 0; c < NSHAPES; c++) {
        const Shape *s = &SHAPES[c];
        size_t n = numel(s);
        float *dout = tmalloc(n), *fresh = tmalloc(n), *acc = tmalloc(n);
        double *want = calloc(n, sizeof(double));
        int *pos = random_positions(s->N, 100 + c);
        TRng r = trng(110 + c);
        fill_normal(&r, dout, n, 1.0f);
        fill_normal(&r, acc, n, 1.0f);
        kernels_cpu.rope_backward(fresh, dout, pos, s->N, s->NH, s->HD, 1e6f);
        for (size_t i = 0; i < n; i++) want[i] = (double)acc[i] + fresh[i];
        kernels_cpu.rope_backward(acc, dout, pos, s->N, s->NH, s->HD, 1e6f);
        CHECK(EXPECT_CLOSE("prefill + gradient", acc, want, n, 1e-6, 1e-6), "shape %d", c);
        kernels_cpu.rope_backward(NULL, dout, pos, s->N, s->NH, s->HD, 1e6f); /* must not touch memory */
        free(dout); free(fresh); free(acc); free(want); free(pos);
    }
}

TEST(test_rope_is_bitwise_independent_of_thread_count) {
    int saved = omp_get_max_threads();
    const Shape s = {37, 3, 10}; /* enough rows for every thread to get some */
    size_t n = numel(&s);
    float *x = tmalloc(n), *out[2] = {tmalloc(n), tmalloc(n)}, *dx[2] = {tmalloc(n), tmalloc(n)};
    int *pos = random_positions(s.N, 120);
    TRng r = trng(121);
    fill_normal(&r, x, n, 1.0f);
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(run ? 3 : 1);
        kernels_cpu.rope_forward(out[run], x, pos, s.N, s.NH, s.HD, 1e6f);
        kernels_cpu.rope_backward(dx[run], x, pos, s.N, s.NH, s.HD, 1e6f);
    }
    omp_set_num_threads(saved);
    EXPECT_SAME("forward, 1 vs 3 threads", out[0], out[1], n);
    EXPECT_SAME("backward, 1 vs 3 threads", dx[0], dx[1], n);
    free(x); free(pos);
    for (int i = 0; i < 2; i++) { free(out[i]); free(dx[i]); }
}

TEST(test_rope_batch_of_shared_positions_equals_row_by_row) {
    /* A batch's rows share positions 0 .. L-1 (the kernel then computes each position's
     * cos/sin once per call); one row at a time at scattered positions it computes them per
     * row. Both must give the same bits, forward and backward, over several frequency blocks. */
    const int L = 23, ROWS = 6, NH = 2, HD = 262, N = L * ROWS;
    size_t row = (size_t)NH * HD, n = (size_t)N * row;
    int *pos = malloc(N * sizeof(int));
    TRng r = trng(130);
    for (int i = 0; i < N; i++) pos[i] = (i % L + i / L * 3) % L; /* shuffled within rows */
    float *x = tmalloc(n), *out = tmalloc(n), *one = tmalloc(n), *dx = tmalloc(n), *dx1 = tmalloc(n);
    fill_normal(&r, x, n, 1.0f);
    fill_normal(&r, dx, n, 1.0f);
    memcpy(dx1, dx, n * sizeof(float));
    kernels_cpu.rope_forward(out, x, pos, N, NH, HD, 1e6f);
    kernels_cpu.rope_backward(dx, x, pos, N, NH, HD, 1e6f);
    for (int i = 0; i < N; i++) {
        /* one row: positions from 2 on are past 2 N, the per-row path */
        float *o1 = malloc(row * sizeof(float));
        kernels_cpu.rope_forward(o1, x + i * row, &pos[i], 1, NH, HD, 1e6f);
        memcpy(one + i * row, o1, row * sizeof(float));
        kernels_cpu.rope_backward(dx1 + i * row, x + i * row, &pos[i], 1, NH, HD, 1e6f);
        free(o1);
    }
    EXPECT_SAME("forward, batch vs row by row", out, one, n);
    EXPECT_SAME("backward, batch vs row by row", dx, dx1, n);
    free(pos); free(x); free(out); free(one); free(dx); free(dx1);
}
