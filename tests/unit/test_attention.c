/* test_attention.c - attention forward/backward against a naive double-precision reference
 * with an explicit mask and softmax, and against finite differences, over MHA, GQA and MQA
 * head layouts, bidirectional and causal masks, and right-padded batches (including an
 * empty sequence); plus the accumulate / NULL-gradient contracts, exact zeros on padded
 * rows, overflow-prone scores and thread-count independence. The reference, thread-count
 * and expf tests run for every kernel set this CPU can run (generic, avx2, avx512:
 * kernels/cpu/simd.h, switched with MMRM_CPU_ISA), also at a shape past the kernels' query
 * blocks and vector widths (BIG). */
#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"
#include "tests/harness.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int B, T, NH, KV, HD;
    int lengths[3];  /* (B) */
    const int *seg;  /* (B, T) segment ids (kernels/op_list.h) or NULL */
} Shape;

/* MHA, GQA with groups of 2 and 3, MQA; odd head dims; each batch right-padded somewhere. */
static const Shape SHAPES[] = {
    {2, 7, 2, 2, 6, {7, 3}, NULL},
    {3, 13, 4, 2, 10, {13, 1, 9}, NULL},
    {3, 7, 6, 2, 16, {5, 0, 7}, NULL},
    {2, 13, 3, 1, 6, {9, 13}, NULL},
};
enum { NSHAPES = sizeof(SHAPES) / sizeof(SHAPES[0]) };
/* T past two query blocks of 32 and not a multiple of any vector width; GQA; one padded row */
static const Shape BIG = {2, 71, 4, 2, 32, {71, 40}, NULL};

/* Selects the i-th kernel set through MMRM_CPU_ISA; 0 when this CPU cannot run it. */
static int use_isa(int i) {
    if (!cpu_isa_supported((CpuIsa)i)) return 0;
    setenv("MMRM_CPU_ISA", cpu_isa_name((CpuIsa)i), 1);
    return cpu_isa_active() == (CpuIsa)i;
}

#define FOR_EACH_ISA(i) \
    for (int i = 0; i < CPU_ISA_COUNT; i++) \
        if (use_isa(i))

static size_t q_size(const Shape *s) { return (size_t)s->B * s->T * s->NH * s->HD; }
static size_t kv_size(const Shape *s) { return (size_t)s->B * s->T * s->KV * s->HD; }
static size_t lse_size(const Shape *s) { return (size_t)s->B * s->NH * s->T; }

/* Softmax probabilities of query row (b, t, h) over all T keys, masked keys exactly 0.
 * Returns 0 for a padded row (no probabilities), 1 otherwise; *lse gets log sum exp. */
static int ref_probs(double *p, double *lse, const Shape *s, const float *q, const float *k,
                     int b, int t, int h, int causal) {
    int L = s->lengths[b], kvh = h / (s->NH / s->KV);
    if (t >= L) return 0;
    const float *qr = q + (((size_t)b * s->T + t) * s->NH + h) * s->HD;
    double m = -INFINITY;
    for (int j = 0; j < s->T; j++) {
        int allowed = j < L && (!causal || j <= t);
        if (allowed && s->seg) { /* the op_list.h rule, written directly */
            int st = s->seg[(size_t)b * s->T + t], sj = s->seg[(size_t)b * s->T + j];
            allowed = (st >> 16) == (sj >> 16) && ((sj & 0xffff) == 0 || (sj & 0xffff) == (st & 0xffff));
        }
        if (!allowed) { p[j] = -INFINITY; continue; }
        const float *kj = k + (((size_t)b * s->T + j) * s->KV + kvh) * s->HD;
        double dotp = 0;
        for (int d = 0; d < s->HD; d++) dotp += (double)qr[d] * kj[d];
        p[j] = dotp / sqrt((double)s->HD);
        if (p[j] > m) m = p[j];
    }
    double z = 0;
    for (int j = 0; j < s->T; j++) z += p[j] == -INFINITY ? 0 : exp(p[j] - m);
    for (int j = 0; j < s->T; j++) p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - m) / z;
    *lse = m + log(z);
    return 1;
}

static void ref_forward(double *out, double *lse, const Shape *s, const float *q,
                        const float *k, const float *v, int causal) {
    double *p = malloc(s->T * sizeof(double));
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->NH; h++)
            for (int t = 0; t < s->T; t++) {
                double *o = out + (((size_t)b * s->T + t) * s->NH + h) * s->HD;
                double *l = lse + ((size_t)b * s->NH + h) * s->T + t;
                for (int d = 0; d < s->HD; d++) o[d] = 0;
                *l = 0;
                if (!ref_probs(p, l, s, q, k, b, t, h, causal)) continue;
                int kvh = h / (s->NH / s->KV);
                for (int j = 0; j < s->T; j++)
                    for (int d = 0; d < s->HD; d++)
                        o[d] += p[j] * v[(((size_t)b * s->T + j) * s->KV + kvh) * s->HD + d];
            }
    free(p);
}

/* Textbook backward with the explicit probability row: dv += P^T dout, dP = dout v^T,
 * dS = P * (dP - rowsum(P * dP)), dq += dS k / sqrt(HD), dk += dS^T q / sqrt(HD). */
static void ref_backward(double *dq, double *dk, double *dv, const Shape *s, const float *dout,
                         const float *q, const float *k, const float *v, int causal) {
    memset(dq, 0, q_size(s) * sizeof(double));
    memset(dk, 0, kv_size(s) * sizeof(double));
    memset(dv, 0, kv_size(s) * sizeof(double));
    double *p = malloc(s->T * sizeof(double)), *dp = malloc(s->T * sizeof(double));
    double scale = 1.0 / sqrt((double)s->HD), lse;
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->NH; h++)
            for (int t = 0; t < s->T; t++) {
                if (!ref_probs(p, &lse, s, q, k, b, t, h, causal)) continue;
                int kvh = h / (s->NH / s->KV);
                size_t row = (((size_t)b * s->T + t) * s->NH + h) * s->HD;
                double rowsum = 0;
                for (int j = 0; j < s->T; j++) {
                    size_t kj = (((size_t)b * s->T + j) * s->KV + kvh) * s->HD;
                    dp[j] = 0;
                    for (int d = 0; d < s->HD; d++) dp[j] += (double)dout[row + d] * v[kj + d];
                    rowsum += p[j] * dp[j];
                }
                for (int j = 0; j < s->T; j++) {
                    size_t kj = (((size_t)b * s->T + j) * s->KV + kvh) * s->HD;
                    double ds = p[j] * (dp[j] - rowsum) * scale;
                    for (int d = 0; d < s->HD; d++) {
                        dq[row + d] += ds * k[kj + d];
                        dk[kj + d] += ds * q[row + d];
                        dv[kj + d] += p[j] * dout[row + d];
                    }
                }
            }
    free(p);
    free(dp);
}

/* Inputs, forward results and an upstream gradient for one shape. */
typedef struct {
    const Shape *s;
    int causal;
    float *q, *k, *v, *out, *lse, *dout;
} Problem;

static Problem problem_new(const Shape *s, int causal, uint64_t seed, float qk_std) {
    Problem P = {s, causal, tmalloc(q_size(s)), tmalloc(kv_size(s)), tmalloc(kv_size(s)),
                 tmalloc(q_size(s)), tmalloc(lse_size(s)), tmalloc(q_size(s))};
    TRng r = trng(seed);
    fill_normal(&r, P.q, q_size(s), qk_std);
    fill_normal(&r, P.k, kv_size(s), qk_std);
    fill_normal(&r, P.v, kv_size(s), 1.0f);
    fill_normal(&r, P.dout, q_size(s), 1.0f);
    kernels_cpu.attention_forward(P.out, P.lse, P.q, P.k, P.v, s->lengths, s->seg, s->B, s->T, s->NH, s->KV,
                          s->HD, causal, KP_FP32);
    return P;
}

static void problem_free(Problem *P) {
    free(P->q); free(P->k); free(P->v); free(P->out); free(P->lse); free(P->dout);
}

static void problem_backward(const Problem *P, float *dq, float *dk, float *dv) {
    const Shape *s = P->s;
    kernels_cpu.attention_backward(dq, dk, dv, P->dout, P->out, P->lse, P->q, P->k, P->v, s->lengths,
                           s->seg, s->B, s->T, s->NH, s->KV, s->HD, P->causal, KP_FP32);
}

static double *dalloc(size_t n) {
    double *p = calloc(n, sizeof(double));
    if (!p) abort();
    return p;
}

TEST(test_attention_forward_matches_double_reference) {
    FOR_EACH_ISA(isa)
    for (int c = 0; c <= NSHAPES; c++)
        for (int causal = 0; causal <= 1; causal++) {
            const Shape *s = c < NSHAPES ? &SHAPES[c] : &BIG;
            Problem P = problem_new(s, causal, 100 + c, 1.0f);
            double *out = dalloc(q_size(s)), *lse = dalloc(lse_size(s));
            ref_forward(out, lse, s, P.q, P.k, P.v, causal);
            CHECK(EXPECT_CLOSE("out", P.out, out, q_size(s), 1e-5, 1e-6) &
                  EXPECT_CLOSE("lse", P.lse, lse, lse_size(s), 1e-5, 1e-6),
                  "shape %d causal %d kernel %s", c, causal, cpu_isa_name((CpuIsa)isa));
            free(out); free(lse);
            problem_free(&P);
        }
    unsetenv("MMRM_CPU_ISA");
}

TEST(test_attention_forward_padded_rows_and_empty_sequences_are_exact_zeros) {
    const Shape *s = &SHAPES[2]; /* lengths {5, 0, 7} */
    for (int causal = 0; causal <= 1; causal++) {
        Problem P = problem_new(s, causal, 200, 1.0f);
        TRng r = trng(201); /* garbage in the outputs must be overwritten */
        fill_normal(&r, P.out, q_size(s), 1.0f);
        fill_normal(&r, P.lse, lse_size(s), 1.0f);
        kernels_cpu.attention_forward(P.out, P.lse, P.q, P.k, P.v, s->lengths, s->seg, s->B, s->T, s->NH, s->KV,
                              s->HD, causal, KP_FP32);
        int nonzero = 0, zero_rows = 0;
        for (int b = 0; b < s->B; b++)
            for (int t = s->lengths[b]; t < s->T; t++)
                for (int h = 0; h < s->NH; h++) {
                    zero_rows++;
                    nonzero += P.lse[((size_t)b * s->NH + h) * s->T + t] != 0.0f;
                    for (int d = 0; d < s->HD; d++)
                        nonzero += P.out[(((size_t)b * s->T + t) * s->NH + h) * s->HD + d] != 0.0f;
                }
        CHECK(zero_rows == (2 + 7) * s->NH, "padded rows counted: %d", zero_rows);
        CHECK(nonzero == 0, "causal %d: %d nonzero values on padded rows", causal, nonzero);
        problem_free(&P);
    }
}

TEST(test_attention_stays_finite_when_scores_would_overflow_exp) {
    /* |q.k| / sqrt(HD) reaches ~ 900 * a few; exp(89) already overflows float, so only a
     * max-subtracted softmax survives. Near-ties give p errors ~ |s| * float eps, hence atol. */
    for (int c = 0; c < NSHAPES; c++)
        for (int causal = 0; causal <= 1; causal++) {
            const Shape *s = &SHAPES[c];
            Problem P = problem_new(s, causal, 300 + c, 30.0f);
            double *out = dalloc(q_size(s)), *lse = dalloc(lse_size(s));
            ref_forward(out, lse, s, P.q, P.k, P.v, causal);
            float maxlse = 0;
            for (size_t i = 0; i < lse_size(s); i++) maxlse = fmaxf(maxlse, fabsf(P.lse[i]));
            CHECK(maxlse > 200, "shape %d: scores too small to overflow exp (max lse %g)", c,
                  maxlse);
            CHECK(EXPECT_CLOSE("out", P.out, out, q_size(s), 1e-4, 1e-3) &
                  EXPECT_CLOSE("lse", P.lse, lse, lse_size(s), 1e-6, 1e-4),
                  "shape %d causal %d", c, causal);

            float *g[3] = {tmalloc(q_size(s)), tmalloc(kv_size(s)), tmalloc(kv_size(s))};
            problem_backward(&P, g[0], g[1], g[2]);
            int finite = 1;
            for (size_t i = 0; i < q_size(s); i++) finite &= isfinite(g[0][i]);
            for (size_t i = 0; i < kv_size(s); i++)
                finite &= isfinite(g[1][i]) && isfinite(g[2][i]);
            CHECK(finite, "shape %d causal %d: non-finite gradient", c, causal);
            for (int i = 0; i < 3; i++) free(g[i]);
            free(out); free(lse);
            problem_free(&P);
        }
}

typedef struct {
    Problem *P;
    float *out, *lse, *proj; /* scratch forward outputs, dL/dout */
} LossCtx;

static double attention_loss(void *vctx) {
    LossCtx *c = vctx;
    const Shape *s = c->P->s;
    kernels_cpu.attention_forward(c->out, c->lse, c->P->q, c->P->k, c->P->v, s->lengths, s->seg, s->B, s->T,
                          s->NH, s->KV, s->HD, c->P->causal, KP_FP32);
    return dot_loss(c->out, c->proj, q_size(s));
}

/* The loss is formed from float outputs: each output touched by a perturbation carries
 * ~6e-8 rounding, so over the 2e-3 step the difference quotient has ~5e-4 absolute noise
 * (measured: ~4% on a 0.027 dk element). Hence 3e-2; the tight check of the gradient is
 * test_attention_backward_matches_double_reference. */
TEST(test_attention_backward_matches_finite_differences) {
    for (int c = 0; c < NSHAPES; c++)
        for (int causal = 0; causal <= 1; causal++) {
            const Shape *s = &SHAPES[c];
            Problem P = problem_new(s, causal, 400 + c, 1.0f);
            float *dq = tmalloc(q_size(s)), *dk = tmalloc(kv_size(s)), *dv = tmalloc(kv_size(s));
            problem_backward(&P, dq, dk, dv);
            LossCtx ctx = {&P, tmalloc(q_size(s)), tmalloc(lse_size(s)), P.dout};
            CHECK(GRAD_CHECK("dq", attention_loss, &ctx, P.q, dq, q_size(s), 3e-2) &
                  GRAD_CHECK("dk", attention_loss, &ctx, P.k, dk, kv_size(s), 3e-2) &
                  GRAD_CHECK("dv", attention_loss, &ctx, P.v, dv, kv_size(s), 3e-2),
                  "shape %d causal %d", c, causal);
            free(ctx.out); free(ctx.lse);
            free(dq); free(dk); free(dv);
            problem_free(&P);
        }
}

TEST(test_attention_backward_matches_double_reference) {
    FOR_EACH_ISA(isa)
    for (int c = 0; c <= NSHAPES; c++)
        for (int causal = 0; causal <= 1; causal++) {
            const Shape *s = c < NSHAPES ? &SHAPES[c] : &BIG;
            Problem P = problem_new(s, causal, 500 + c, 1.0f);
            float *dq = tmalloc(q_size(s)), *dk = tmalloc(kv_size(s)), *dv = tmalloc(kv_size(s));
            problem_backward(&P, dq, dk, dv);
            double *rq = dalloc(q_size(s)), *rk = dalloc(kv_size(s)), *rv = dalloc(kv_size(s));
            ref_backward(rq, rk, rv, s, P.dout, P.q, P.k, P.v, causal);
            CHECK(EXPECT_CLOSE("dq", dq, rq, q_size(s), 1e-4, 1e-5) &
                  EXPECT_CLOSE("dk", dk, rk, kv_size(s), 1e-4, 1e-5) &
                  EXPECT_CLOSE("dv", dv, rv, kv_size(s), 1e-4, 1e-5),
                  "shape %d causal %d kernel %s", c, causal, cpu_isa_name((CpuIsa)isa));
            free(rq); free(rk); free(rv);
            free(dq); free(dk); free(dv);
            problem_free(&P);
        }
    unsetenv("MMRM_CPU_ISA");
}

TEST(test_attention_backward_accumulates_and_leaves_padding_untouched) {
    for (int c = 0; c < NSHAPES; c++) {
        const Shape *s = &SHAPES[c];
        Problem P = problem_new(s, 1, 600 + c, 1.0f);
        size_t n[3] = {q_size(s), kv_size(s), kv_size(s)}, heads[3] = {s->NH, s->KV, s->KV};
        float *fresh[3], *acc[3];
        TRng r = trng(601);
        for (int i = 0; i < 3; i++) {
            fresh[i] = tmalloc(n[i]);
            acc[i] = tmalloc(n[i]);
            fill_normal(&r, acc[i], n[i], 1.0f);
        }
        float *prefill[3] = {tmalloc(n[0]), tmalloc(n[1]), tmalloc(n[2])};
        for (int i = 0; i < 3; i++) memcpy(prefill[i], acc[i], n[i] * sizeof(float));
        problem_backward(&P, fresh[0], fresh[1], fresh[2]);
        problem_backward(&P, acc[0], acc[1], acc[2]);
        const char *names[3] = {"dq", "dk", "dv"};
        for (int i = 0; i < 3; i++) {
            double *want = dalloc(n[i]);
            for (size_t e = 0; e < n[i]; e++) want[e] = (double)prefill[i][e] + fresh[i][e];
            CHECK(EXPECT_CLOSE(names[i], acc[i], want, n[i], 1e-6, 1e-6), "shape %d", c);
            /* rows t >= L, whether queries (dq) or keys (dk, dv), receive nothing */
            size_t row = (size_t)heads[i] * s->HD, changed = 0;
            for (int b = 0; b < s->B; b++)
                for (int t = s->lengths[b]; t < s->T; t++) {
                    size_t o = ((size_t)b * s->T + t) * row;
                    changed += memcmp(acc[i] + o, prefill[i] + o, row * sizeof(float)) != 0;
                }
            CHECK(changed == 0, "shape %d: %s changed on %zu padded rows", c, names[i], changed);
            free(want);
        }
        for (int i = 0; i < 3; i++) { free(fresh[i]); free(acc[i]); free(prefill[i]); }
        problem_free(&P);
    }
}

TEST(test_attention_backward_null_gradients_leave_the_others_identical) {
    const Shape *s = &SHAPES[1];
    Problem P = problem_new(s, 1, 700, 1.0f);
    size_t n[3] = {q_size(s), kv_size(s), kv_size(s)};
    float *all[3], *some[3];
    for (int i = 0; i < 3; i++) all[i] = tmalloc(n[i]);
    problem_backward(&P, all[0], all[1], all[2]);
    for (int mask = 0; mask < 8; mask++) { /* bit i set: gradient i requested */
        for (int i = 0; i < 3; i++) some[i] = mask >> i & 1 ? tmalloc(n[i]) : NULL;
        problem_backward(&P, some[0], some[1], some[2]);
        for (int i = 0; i < 3; i++)
            if (some[i])
                CHECK(EXPECT_SAME("gradient", some[i], all[i], n[i]), "mask %d grad %d", mask, i);
        for (int i = 0; i < 3; i++) free(some[i]);
    }
    for (int i = 0; i < 3; i++) free(all[i]);
    problem_free(&P);
}

TEST(test_attention_is_bitwise_independent_of_thread_count) {
    int saved = omp_get_max_threads();
    FOR_EACH_ISA(isa)
    for (int c = 0; c <= NSHAPES; c++) {
        const Shape *s = c < NSHAPES ? &SHAPES[c] : &BIG;
        float *res[2][5];
        for (int run = 0; run < 2; run++) {
            omp_set_num_threads(run ? 3 : 1);
            Problem P = problem_new(s, c % 2, 800 + c, 1.0f);
            float *g[3] = {tmalloc(q_size(s)), tmalloc(kv_size(s)), tmalloc(kv_size(s))};
            problem_backward(&P, g[0], g[1], g[2]);
            res[run][0] = P.out; res[run][1] = P.lse;
            res[run][2] = g[0]; res[run][3] = g[1]; res[run][4] = g[2];
            free(P.q); free(P.k); free(P.v); free(P.dout);
        }
        omp_set_num_threads(saved);
        size_t n[5] = {q_size(s), lse_size(s), q_size(s), kv_size(s), kv_size(s)};
        for (int i = 0; i < 5; i++) {
            CHECK(EXPECT_SAME("1 vs 3 threads", res[0][i], res[1][i], n[i]),
                  "shape %d array %d kernel %s", c, i, cpu_isa_name((CpuIsa)isa));
            free(res[0][i]); free(res[1][i]);
        }
    }
    unsetenv("MMRM_CPU_ISA");
}

/* distance in units in the last place between two finite floats of the same sign */
static long ulp_diff(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    return labs((long)ia - (long)ib);
}

TEST(test_attention_vector_expf_within_2_ulp_of_the_correctly_rounded_result) {
    /* 4M points over [-87.3, 88] (odd count: the tails of the vector loops), each compared
     * with exp in double rounded to float; plus the edges: far below, -inf, +inf, NaN */
    enum { NPTS = 4000001 };
    float *x = tmalloc(NPTS), *y = tmalloc(NPTS);
    TRng r = trng(900);
    for (int i = 0; i < NPTS; i++)
        x[i] = i % 2 ? -87.3f + (float)(175.3 * i / (NPTS - 1))
                     : (float)(175.3 * trng_uniform(&r) - 87.3);
    FOR_EACH_ISA(isa) {
        cpu_attn_kernel((CpuIsa)isa)->exp_array(y, x, NPTS);
        long worst = 0;
        float at = 0;
        for (int i = 0; i < NPTS; i++) {
            long u = ulp_diff(y[i], (float)exp((double)x[i]));
            if (u > worst) worst = u, at = x[i];
        }
        CHECK(worst <= 2, "kernel %s: %ld ulp at x = %.9g", cpu_isa_name((CpuIsa)isa), worst,
              (double)at);
        const float edge[5] = {-100.0f, -INFINITY, INFINITY, NAN, 0.0f};
        float ey[5];
        cpu_attn_kernel((CpuIsa)isa)->exp_array(ey, edge, 5);
        CHECK(ey[0] == 0.0f && ey[1] == 0.0f && isinf(ey[2]) && ey[2] > 0 && isnan(ey[3]) &&
                  ey[4] == 1.0f,
              "kernel %s: exp edges %g %g %g %g %g", cpu_isa_name((CpuIsa)isa), (double)ey[0],
              (double)ey[1], (double)ey[2], (double)ey[3], (double)ey[4]);
    }
    unsetenv("MMRM_CPU_ISA");
    free(x); free(y);
}

/* ---------------------------------------------------------------- segments (seg) */

/* Random segment ids for s (fixed seed): each sequence's valid tokens split into docs of
 * random lengths (doc ids increasing, with gaps), each doc a branch-0 prefix of random length
 * (possibly empty) then 0..3 branches (ids increasing, not necessarily consecutive; possibly
 * none); padded tokens get garbage the kernels must ignore. */
static int *make_seg(const Shape *s, uint64_t seed) {
    TRng r = trng(seed);
    int *seg = malloc((size_t)s->B * s->T * sizeof(int));
    if (!seg) abort();
    for (int b = 0; b < s->B; b++) {
        int *sg = seg + (size_t)b * s->T, L = s->lengths[b], doc = (int)(trng_uniform(&r) * 5);
        for (int t = 0; t < L;) {
            int dl = 1 + (int)(trng_uniform(&r) * (L / 2 + 2)); /* doc length */
            if (t + dl > L) dl = L - t;
            int pl = (int)(trng_uniform(&r) * (dl + 1)), br = 0, e = t + dl;
            int u = t;
            for (; u < t + pl; u++) sg[u] = doc << 16;
            while (u < e) {
                br += 1 + (int)(trng_uniform(&r) * 3);
                int bl = 1 + (int)(trng_uniform(&r) * (e - u));
                if (u + bl > e || trng_uniform(&r) < 0.3) bl = e - u;
                for (int i = 0; i < bl; i++) sg[u++] = doc << 16 | br;
            }
            t = e;
            doc += 1 + (int)(trng_uniform(&r) * 3);
        }
        for (int t = L; t < s->T; t++) sg[t] = (int)(trng_uniform(&r) * 1e9);
    }
    return seg;
}

/* odd T, GQA, MQA, padding and an empty sequence; one shape past two query blocks and the
 * vector widths with long docs */
static const Shape SEG_SHAPES[] = {
    {3, 45, 4, 2, 8, {45, 30, 0}, NULL},
    {2, 97, 2, 1, 32, {97, 61}, NULL},
    {1, 23, 3, 3, 6, {23}, NULL},
};
enum { NSEG = sizeof(SEG_SHAPES) / sizeof(SEG_SHAPES[0]) };

static Shape seg_shape(int c, int variant) {
    Shape s = SEG_SHAPES[c];
    s.seg = make_seg(&s, 1000 + 10 * c + variant);
    return s;
}

TEST(test_attention_seg_forward_and_backward_match_double_reference) {
    FOR_EACH_ISA(isa)
    for (int c = 0; c < NSEG; c++)
        for (int variant = 0; variant < 3; variant++)
            for (int causal = 0; causal <= 1; causal++) {
                Shape sh = seg_shape(c, variant);
                const Shape *s = &sh;
                Problem P = problem_new(s, causal, 1100 + c, 1.0f);
                double *out = dalloc(q_size(s)), *lse = dalloc(lse_size(s));
                ref_forward(out, lse, s, P.q, P.k, P.v, causal);
                float *dq = tmalloc(q_size(s)), *dk = tmalloc(kv_size(s)), *dv = tmalloc(kv_size(s));
                memset(dq, 0, q_size(s) * sizeof(float));
                memset(dk, 0, kv_size(s) * sizeof(float));
                memset(dv, 0, kv_size(s) * sizeof(float));
                problem_backward(&P, dq, dk, dv);
                double *rq = dalloc(q_size(s)), *rk = dalloc(kv_size(s)), *rv = dalloc(kv_size(s));
                ref_backward(rq, rk, rv, s, P.dout, P.q, P.k, P.v, causal);
                CHECK(EXPECT_CLOSE("out", P.out, out, q_size(s), 1e-5, 1e-6) &
                          EXPECT_CLOSE("lse", P.lse, lse, lse_size(s), 1e-5, 1e-6) &
                          EXPECT_CLOSE("dq", dq, rq, q_size(s), 1e-4, 1e-5) &
                          EXPECT_CLOSE("dk", dk, rk, kv_size(s), 1e-4, 1e-5) &
                          EXPECT_CLOSE("dv", dv, rv, kv_size(s), 1e-4, 1e-5),
                      "seg shape %d variant %d causal %d kernel %s", c, variant, causal,
                      cpu_isa_name((CpuIsa)isa));
                free(out); free(lse); free(rq); free(rk); free(rv);
                free(dq); free(dk); free(dv);
                problem_free(&P);
                free((int *)sh.seg);
            }
    unsetenv("MMRM_CPU_ISA");
}

TEST(test_attention_seg_backward_matches_finite_differences) {
    for (int c = 0; c < NSEG; c += 2) /* the small shapes */
        for (int causal = 0; causal <= 1; causal++) {
            Shape sh = seg_shape(c, 5);
            const Shape *s = &sh;
            Problem P = problem_new(s, causal, 1200 + c, 1.0f);
            float *dq = tmalloc(q_size(s)), *dk = tmalloc(kv_size(s)), *dv = tmalloc(kv_size(s));
            memset(dq, 0, q_size(s) * sizeof(float));
            memset(dk, 0, kv_size(s) * sizeof(float));
            memset(dv, 0, kv_size(s) * sizeof(float));
            problem_backward(&P, dq, dk, dv);
            LossCtx ctx = {&P, tmalloc(q_size(s)), tmalloc(lse_size(s)), P.dout};
            CHECK(GRAD_CHECK("dq", attention_loss, &ctx, P.q, dq, q_size(s), 3e-2) &
                      GRAD_CHECK("dk", attention_loss, &ctx, P.k, dk, kv_size(s), 3e-2) &
                      GRAD_CHECK("dv", attention_loss, &ctx, P.v, dv, kv_size(s), 3e-2),
                  "seg shape %d causal %d", c, causal);
            free(ctx.out); free(ctx.lse);
            free(dq); free(dk); free(dv);
            problem_free(&P);
            free((int *)sh.seg);
        }
}

/* Runs forward + backward of s into res[0..4] (out, lse, dq, dk, dv), fresh memory. */
static void run_all(float *res[5], const Shape *s, int causal, uint64_t seed) {
    Problem P = problem_new(s, causal, seed, 1.0f);
    float *g[3] = {tmalloc(q_size(s)), tmalloc(kv_size(s)), tmalloc(kv_size(s))};
    memset(g[0], 0, q_size(s) * sizeof(float));
    memset(g[1], 0, kv_size(s) * sizeof(float));
    memset(g[2], 0, kv_size(s) * sizeof(float));
    problem_backward(&P, g[0], g[1], g[2]);
    res[0] = P.out; res[1] = P.lse; res[2] = g[0]; res[3] = g[1]; res[4] = g[2];
    free(P.q); free(P.k); free(P.v); free(P.dout);
}

TEST(test_attention_seg_is_bitwise_independent_of_thread_count) {
    int saved = omp_get_max_threads();
    FOR_EACH_ISA(isa)
    for (int c = 0; c < NSEG; c++) {
        Shape sh = seg_shape(c, 7);
        float *res[2][5];
        for (int run = 0; run < 2; run++) {
            omp_set_num_threads(run ? 3 : 1);
            run_all(res[run], &sh, c % 2, 1300 + c);
        }
        omp_set_num_threads(saved);
        size_t n[5] = {q_size(&sh), lse_size(&sh), q_size(&sh), kv_size(&sh), kv_size(&sh)};
        for (int i = 0; i < 5; i++) {
            CHECK(EXPECT_SAME("1 vs 3 threads", res[0][i], res[1][i], n[i]),
                  "seg shape %d array %d kernel %s", c, i, cpu_isa_name((CpuIsa)isa));
            free(res[0][i]); free(res[1][i]);
        }
        free((int *)sh.seg);
    }
    unsetenv("MMRM_CPU_ISA");
}

/* One doc of branch 0 per sequence is no mask at all: the same bits as seg = NULL; and a
 * packed stream (B = 1, doc = row) gives every row the bits of the padded batch. */
TEST(test_attention_seg_single_doc_and_packed_stream_equal_the_padded_batch_bitwise) {
    FOR_EACH_ISA(isa)
    for (int c = 0; c <= NSHAPES; c++)
        for (int causal = 0; causal <= 1; causal++) {
            const Shape *s = c < NSHAPES ? &SHAPES[c] : &BIG;
            float *ref[5], *one[5], *pk[5];
            run_all(ref, s, causal, 1400 + c);
            Shape z = *s;
            int *zero = calloc((size_t)s->B * s->T, sizeof(int));
            z.seg = zero;
            run_all(one, &z, causal, 1400 + c);
            size_t n[5] = {q_size(s), lse_size(s), q_size(s), kv_size(s), kv_size(s)};
            for (int i = 0; i < 5; i++)
                CHECK(EXPECT_SAME("all-zero seg vs NULL", one[i], ref[i], n[i]),
                      "shape %d causal %d array %d kernel %s", c, causal, i,
                      cpu_isa_name((CpuIsa)isa));
            /* the packed stream: rows' valid tokens back to back, inputs copied from the
             * padded batch (same seed gives the same q, k, v, dout per position) */
            int tot = 0;
            for (int b = 0; b < s->B; b++) tot += s->lengths[b];
            Shape p = {1, tot > 0 ? tot : 1, s->NH, s->KV, s->HD, {tot}, NULL};
            int *pseg = calloc((size_t)p.T, sizeof(int));
            Problem Pp = problem_new(&p, causal, 1, 1.0f), Pb = problem_new(s, causal, 1400 + c, 1.0f);
            size_t qs = (size_t)s->NH * s->HD, ks = (size_t)s->KV * s->HD;
            for (int b = 0, o = 0; b < s->B; b++)
                for (int t = 0; t < s->lengths[b]; t++, o++) {
                    size_t src = (size_t)b * s->T + t;
                    memcpy(Pp.q + o * qs, Pb.q + src * qs, qs * sizeof(float));
                    memcpy(Pp.dout + o * qs, Pb.dout + src * qs, qs * sizeof(float));
                    memcpy(Pp.k + o * ks, Pb.k + src * ks, ks * sizeof(float));
                    memcpy(Pp.v + o * ks, Pb.v + src * ks, ks * sizeof(float));
                    pseg[o] = (b + 3) << 16;
                }
            p.seg = pseg;
            Pp.s = &p;
            kernels_cpu.attention_forward(Pp.out, Pp.lse, Pp.q, Pp.k, Pp.v, p.lengths, p.seg, 1,
                                          p.T, p.NH, p.KV, p.HD, causal, KP_FP32);
            pk[0] = Pp.out; pk[1] = Pp.lse;
            for (int i = 2; i < 5; i++) {
                pk[i] = tmalloc(i == 2 ? q_size(&p) : kv_size(&p));
                memset(pk[i], 0, (i == 2 ? q_size(&p) : kv_size(&p)) * sizeof(float));
            }
            problem_backward(&Pp, pk[2], pk[3], pk[4]);
            size_t diff = 0;
            for (int b = 0, o = 0; b < s->B; b++)
                for (int t = 0; t < s->lengths[b]; t++, o++) {
                    size_t src = (size_t)b * s->T + t;
                    diff += memcmp(pk[0] + o * qs, ref[0] + src * qs, qs * sizeof(float)) != 0;
                    diff += memcmp(pk[2] + o * qs, ref[2] + src * qs, qs * sizeof(float)) != 0;
                    diff += memcmp(pk[3] + o * ks, ref[3] + src * ks, ks * sizeof(float)) != 0;
                    diff += memcmp(pk[4] + o * ks, ref[4] + src * ks, ks * sizeof(float)) != 0;
                    for (int h = 0; h < s->NH; h++)
                        diff += pk[1][(size_t)h * p.T + o] !=
                                ref[1][((size_t)b * s->NH + h) * s->T + t];
                }
            CHECK(diff == 0, "shape %d causal %d kernel %s: %zu packed rows differ", c, causal,
                  cpu_isa_name((CpuIsa)isa), diff);
            for (int i = 0; i < 5; i++) { free(ref[i]); free(one[i]); free(pk[i]); }
            free(Pp.q); free(Pp.k); free(Pp.v); free(Pp.dout);
            problem_free(&Pb);
            free(zero); free(pseg);
        }
    unsetenv("MMRM_CPU_ISA");
}
