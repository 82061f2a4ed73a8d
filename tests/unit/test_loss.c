/* test_loss.c - Bradley-Terry and fused shortcut-aware losses (kernels/cpu/loss.c) against
 * double-precision formulas written out here, at extreme margins, against finite
 * differences (with the shortcut weight w held constant, as the spec detaches it), and for
 * the dloss-scale, accumulate and NULL-gradient contracts. */
#include <fenv.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "tests/harness.h"

#define SFC_EPS 1e-7f

/* -log sigmoid(x) in double, split by sign so that exp never overflows and the tail for
 * large x keeps its value (log(1 + exp(-40)) would round to 0) */
static double ref_nls(double x) { return x > 0 ? log1p(exp(-x)) : -x + log1p(exp(x)); }

/* d/dx of -log sigmoid(x) = -1 / (1 + exp(x)) */
static double ref_dnls(double x) { return x > 0 ? -exp(-x) / (1.0 + exp(-x)) : -1.0 / (1.0 + exp(x)); }

/* overflow, invalid and divide-by-zero flags raised since the last feclearexcept; underflow
 * (exp(-1e4) = 0) is expected and harmless */
static int fp_trouble(void) { return fetestexcept(FE_OVERFLOW | FE_INVALID | FE_DIVBYZERO); }

static int all_finite(const float *x, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* ---------------------------------------------------------------- Bradley-Terry ---- */

TEST(test_bt_loss_matches_double_formula_with_and_without_margin) {
    const int sizes[] = {1, 7, 33};
    TRng r = trng(11);
    for (int s = 0; s < 3; s++) {
        int P = sizes[s];
        float *rc = tmalloc(P), *rr = tmalloc(P), *mg = tmalloc(P), *losses = tmalloc(P);
        float *dc = tmalloc(P), *dr = tmalloc(P), loss;
        double *ref = malloc(P * sizeof(double)), *rdc = malloc(P * sizeof(double)),
               *rdr = malloc(P * sizeof(double));
        fill_normal(&r, rc, P, 2.0f);
        fill_normal(&r, rr, P, 2.0f);
        fill_uniform(&r, mg, P, 0.1f, 1.5f);
        for (int use_margin = 0; use_margin < 2; use_margin++) {
            const float dloss = 0.75f;
            memset(dc, 0, P * sizeof(float));
            memset(dr, 0, P * sizeof(float));
            kernels_cpu.bt_loss(&loss, losses, dc, dr, rc, rr, use_margin ? mg : NULL, P, dloss);
            double sum = 0;
            for (int i = 0; i < P; i++) {
                double x = (double)rc[i] - rr[i] - (use_margin ? mg[i] : 0.0);
                ref[i] = -log(1.0 / (1.0 + exp(-x)));
                sum += ref[i];
                rdc[i] = dloss * ref_dnls(x) / P;
                rdr[i] = -rdc[i];
            }
            double rloss = sum / P;
            EXPECT_CLOSE("bt losses", losses, ref, P, 1e-5, 1e-6);
            EXPECT_CLOSE("bt loss", &loss, &rloss, 1, 1e-5, 1e-6);
            EXPECT_CLOSE("bt dchosen", dc, rdc, P, 1e-5, 1e-7);
            EXPECT_CLOSE("bt drejected", dr, rdr, P, 1e-5, 1e-7);
        }
        free(rc); free(rr); free(mg); free(losses); free(dc); free(dr);
        free(ref); free(rdc); free(rdr);
    }
}

TEST(test_bt_loss_is_finite_and_exact_at_extreme_margins) {
    /* rc - rr = +-1e4 and +-80, plus a margin pushing a pair over the edge */
    const float rc[] = {5000.0f, -5000.0f, 40.0f, -40.0f, 1e4f, 0.0f};
    const float rr[] = {-5000.0f, 5000.0f, -40.0f, 40.0f, 0.0f, 1e4f};
    const float mg[] = {0.0f, 0.0f, 0.0f, 0.0f, 2e4f, -2e4f};
    enum { P = 6 };
    float losses[P], dc[P] = {0}, dr[P] = {0}, loss;
    feclearexcept(FE_ALL_EXCEPT);
    kernels_cpu.bt_loss(&loss, losses, dc, dr, rc, rr, mg, P, 1.0f);
    CHECK(!fp_trouble(), "floating-point overflow/invalid/divide-by-zero raised");
    CHECK(all_finite(losses, P) && all_finite(dc, P) && all_finite(dr, P) && isfinite(loss),
          "non-finite output at extreme margins");
    /* large positive d: loss ~ exp(-d); large negative d: loss ~ |d| and gradient -1/P */
    double ref[P] = {0.0, 1e4, exp(-80.0), 80.0, 1e4, 0.0};
    double rdc[P] = {0.0, -1.0 / P, -exp(-80.0) / P, -1.0 / P, -1.0 / P, 0.0};
    double rloss = (1e4 + exp(-80.0) + 80.0 + 1e4) / P;
    EXPECT_CLOSE("bt losses at extreme margins", losses, ref, P, 1e-6, 1e-30);
    EXPECT_CLOSE("bt loss at extreme margins", &loss, &rloss, 1, 1e-6, 0);
    EXPECT_CLOSE("bt dchosen at extreme margins", dc, rdc, P, 1e-6, 1e-30);
    for (int i = 0; i < P; i++) CHECK(dr[i] == -dc[i], "drejected[%d] != -dchosen[%d]", i, i);
}

typedef struct {
    float *rc, *rr, *mg, *losses;
    int P;
    float dloss;
} BtCtx;

/* dloss * mean(losses) from the kernel's forward */
static double bt_fd_loss(void *p) {
    BtCtx *c = p;
    float loss;
    kernels_cpu.bt_loss(&loss, c->losses, NULL, NULL, c->rc, c->rr, c->mg, c->P, c->dloss);
    double s = 0;
    for (int i = 0; i < c->P; i++) s += c->losses[i];
    return c->dloss * s / c->P;
}

TEST(test_bt_loss_gradients_match_finite_differences) {
    const int sizes[] = {1, 5, 19};
    TRng r = trng(12);
    for (int s = 0; s < 3; s++) {
        int P = sizes[s];
        BtCtx c = {tmalloc(P), tmalloc(P), tmalloc(P), tmalloc(P), P, -1.3f};
        float *dc = tmalloc(P), *dr = tmalloc(P), loss;
        fill_normal(&r, c.rc, P, 1.5f);
        fill_normal(&r, c.rr, P, 1.5f);
        fill_uniform(&r, c.mg, P, -0.5f, 0.5f);
        kernels_cpu.bt_loss(&loss, c.losses, dc, dr, c.rc, c.rr, c.mg, P, c.dloss);
        GRAD_CHECK("bt d/rc", bt_fd_loss, &c, c.rc, dc, P, 1e-2);
        GRAD_CHECK("bt d/rr", bt_fd_loss, &c, c.rr, dr, P, 1e-2);
        free(c.rc); free(c.rr); free(c.mg); free(c.losses); free(dc); free(dr);
    }
}

TEST(test_bt_loss_scales_by_dloss_accumulates_and_accepts_null_gradients) {
    enum { P = 9 };
    TRng r = trng(13);
    float rc[P], rr[P], losses[P], loss, loss2;
    fill_normal(&r, rc, P, 1.0f);
    fill_normal(&r, rr, P, 1.0f);
    float dc1[P] = {0}, dr1[P] = {0};
    kernels_cpu.bt_loss(&loss, losses, dc1, dr1, rc, rr, NULL, P, 1.0f);

    /* dloss scales the gradients, not the reported loss */
    float dc[P] = {0}, dr[P] = {0};
    double rdc[P], rdr[P];
    kernels_cpu.bt_loss(&loss2, losses, dc, dr, rc, rr, NULL, P, 2.5f);
    for (int i = 0; i < P; i++) { rdc[i] = 2.5 * dc1[i]; rdr[i] = 2.5 * dr1[i]; }
    EXPECT_CLOSE("dchosen scaled by dloss", dc, rdc, P, 1e-6, 0);
    EXPECT_CLOSE("drejected scaled by dloss", dr, rdr, P, 1e-6, 0);
    EXPECT_SAME("loss independent of dloss", &loss, &loss2, 1);

    /* accumulate: prefilled buffers receive prefill + gradient */
    float pc[P], pr[P];
    fill_normal(&r, pc, P, 1.0f);
    fill_normal(&r, pr, P, 1.0f);
    memcpy(dc, pc, sizeof dc);
    memcpy(dr, pr, sizeof dr);
    kernels_cpu.bt_loss(&loss2, losses, dc, dr, rc, rr, NULL, P, 1.0f);
    for (int i = 0; i < P; i++) { rdc[i] = (double)pc[i] + dc1[i]; rdr[i] = (double)pr[i] + dr1[i]; }
    EXPECT_CLOSE("dchosen accumulates", dc, rdc, P, 1e-6, 1e-7);
    EXPECT_CLOSE("drejected accumulates", dr, rdr, P, 1e-6, 1e-7);

    /* NULL: the other gradient and the loss are unaffected */
    float only_r[P] = {0}, only_c[P] = {0}, l3[P];
    kernels_cpu.bt_loss(&loss2, l3, NULL, only_r, rc, rr, NULL, P, 1.0f);
    EXPECT_SAME("drejected with dchosen NULL", only_r, dr1, P);
    EXPECT_SAME("losses with dchosen NULL", l3, losses, P);
    kernels_cpu.bt_loss(&loss2, l3, only_c, NULL, rc, rr, NULL, P, 1.0f);
    EXPECT_SAME("dchosen with drejected NULL", only_c, dc1, P);
    kernels_cpu.bt_loss(&loss2, l3, NULL, NULL, rc, rr, NULL, P, 1.0f);
    EXPECT_SAME("loss with both gradients NULL", &loss2, &loss, 1);
}

/* ------------------------------------------------------------ shortcut-aware ---- */

typedef struct {
    double loss, w[64], lm[64], lb[64];
} SfcRef;

/* the spec's formula in double, straight from the definitions */
static SfcRef ref_shortcut(const float *mc, const float *mr, const float *bc, const float *br,
                           int P, float eps) {
    SfcRef R;
    double sum = 0, e = eps;
    for (int i = 0; i < P; i++) {
        R.lm[i] = ref_nls((double)mc[i] - mr[i]);
        R.lb[i] = ref_nls((double)bc[i] - br[i]);
        R.w[i] = e / 2 + R.lb[i] / (e + R.lb[i] + R.lm[i]);
        sum += R.w[i] * R.lm[i] + R.lb[i];
    }
    R.loss = sum / P;
    return R;
}

TEST(test_shortcut_loss_matches_double_formula) {
    const int sizes[] = {1, 5, 17};
    TRng r = trng(21);
    for (int s = 0; s < 3; s++) {
        int P = sizes[s];
        float mc[17], mr[17], bc[17], br[17], w[17], lm[17], lb[17], loss;
        fill_normal(&r, mc, P, 2.0f);
        fill_normal(&r, mr, P, 2.0f);
        fill_normal(&r, bc, P, 2.0f);
        fill_normal(&r, br, P, 2.0f);
        kernels_cpu.shortcut_loss(&loss, w, lm, lb, NULL, NULL, NULL, NULL, mc, mr, bc, br, P, SFC_EPS, 1.0f);
        SfcRef R = ref_shortcut(mc, mr, bc, br, P, SFC_EPS);
        EXPECT_CLOSE("shortcut w", w, R.w, P, 1e-5, 1e-9);
        EXPECT_CLOSE("shortcut Lm", lm, R.lm, P, 1e-5, 1e-9);
        EXPECT_CLOSE("shortcut Lb", lb, R.lb, P, 1e-5, 1e-9);
        EXPECT_CLOSE("shortcut loss", &loss, &R.loss, 1, 1e-5, 1e-9);
    }
}

TEST(test_shortcut_loss_eps_terms_decide_w_when_both_losses_vanish) {
    /* dm = db = +40: Lm = Lb = 4.2e-18, so w = eps/2 + Lb/eps ~ 5.004e-8; dropping eps/2
     * gives 4e-11, dropping eps from the denominator gives 0.5, and rounding Lb to 0 gives
     * exactly eps/2. The other pairs put all the loss on one side. */
    const float mc[] = {20.0f, 20.0f, -20.0f, 0.5f};
    const float mr[] = {-20.0f, -20.0f, 20.0f, -0.5f};
    const float bc[] = {20.0f, -20.0f, 20.0f, 20.0f};
    const float br[] = {-20.0f, 20.0f, -20.0f, -20.0f};
    enum { P = 4 };
    float w[P], lm[P], lb[P], loss;
    float d[4][P] = {{0}};
    kernels_cpu.shortcut_loss(&loss, w, lm, lb, d[0], d[1], d[2], d[3], mc, mr, bc, br, P, SFC_EPS, 1.0f);
    SfcRef R = ref_shortcut(mc, mr, bc, br, P, SFC_EPS);
    CHECK(fabs(w[0] - 5.00425e-8) < 1e-12, "w at dm = db = 40 is %.9g, want 5.00425e-8", w[0]);
    EXPECT_CLOSE("w (all pairs)", w, R.w, P, 1e-6, 0);
    EXPECT_CLOSE("Lm (all pairs)", lm, R.lm, P, 1e-6, 0);
    EXPECT_CLOSE("Lb (all pairs)", lb, R.lb, P, 1e-6, 0);
    EXPECT_CLOSE("loss", &loss, &R.loss, 1, 1e-6, 0);
}

TEST(test_shortcut_loss_is_finite_at_extreme_margins) {
    /* every combination of dm, db in {+1e4, -1e4, +80, -80} */
    const float big[] = {1e4f, -1e4f, 80.0f, -80.0f};
    enum { P = 16 };
    float mc[P], mr[P], bc[P], br[P], w[P], lm[P], lb[P], loss;
    float d[4][P] = {{0}};
    for (int i = 0; i < P; i++) {
        mc[i] = big[i % 4] / 2; mr[i] = -big[i % 4] / 2;
        bc[i] = big[i / 4] / 2; br[i] = -big[i / 4] / 2;
    }
    feclearexcept(FE_ALL_EXCEPT);
    kernels_cpu.shortcut_loss(&loss, w, lm, lb, d[0], d[1], d[2], d[3], mc, mr, bc, br, P, SFC_EPS, 1.0f);
    CHECK(!fp_trouble(), "floating-point overflow/invalid/divide-by-zero raised");
    int finite = isfinite(loss) && all_finite(w, P) && all_finite(lm, P) && all_finite(lb, P);
    for (int k = 0; k < 4; k++) finite &= all_finite(d[k], P);
    CHECK(finite, "non-finite output at extreme margins");
    SfcRef R = ref_shortcut(mc, mr, bc, br, P, SFC_EPS);
    EXPECT_CLOSE("w at extreme margins", w, R.w, P, 1e-6, 0);
    EXPECT_CLOSE("Lm at extreme margins", lm, R.lm, P, 1e-6, 1e-30);
    EXPECT_CLOSE("Lb at extreme margins", lb, R.lb, P, 1e-6, 1e-30);
    EXPECT_CLOSE("loss at extreme margins", &loss, &R.loss, 1, 1e-6, 0);
    double rdmc[P], rdbc[P];
    for (int i = 0; i < P; i++) {
        rdmc[i] = R.w[i] * ref_dnls((double)mc[i] - mr[i]) / P;
        rdbc[i] = ref_dnls((double)bc[i] - br[i]) / P;
    }
    EXPECT_CLOSE("dmc at extreme margins", d[0], rdmc, P, 1e-6, 1e-30);
    EXPECT_CLOSE("dbc at extreme margins", d[2], rdbc, P, 1e-6, 1e-30);
}

typedef struct {
    float *mc, *mr, *bc, *br, *w, *lm, *lb;
    const float *wconst; /* NULL: use the w of the perturbed inputs (not detached) */
    int P;
    float dloss;
} SfcCtx;

/* dloss * mean(w * Lm + Lb) from the kernel's forward Lm, Lb; w either frozen at the
 * unperturbed inputs (the spec's detached weight) or recomputed (the full expression) */
static double sfc_fd_loss(void *p) {
    SfcCtx *c = p;
    float loss;
    kernels_cpu.shortcut_loss(&loss, c->w, c->lm, c->lb, NULL, NULL, NULL, NULL, c->mc, c->mr, c->bc,
                      c->br, c->P, SFC_EPS, c->dloss);
    const float *w = c->wconst ? c->wconst : c->w;
    double s = 0;
    for (int i = 0; i < c->P; i++) s += (double)w[i] * c->lm[i] + c->lb[i];
    return c->dloss * s / c->P;
}

TEST(test_shortcut_loss_gradients_match_finite_differences_with_w_held_constant) {
    const int sizes[] = {1, 6, 23};
    TRng r = trng(22);
    for (int s = 0; s < 3; s++) {
        int P = sizes[s];
        float in[4][23], wc[23], w[23], lm[23], lb[23], d[4][23] = {{0}}, loss;
        for (int k = 0; k < 4; k++) fill_normal(&r, in[k], P, 1.5f);
        SfcCtx c = {in[0], in[1], in[2], in[3], w, lm, lb, wc, P, 0.8f};
        kernels_cpu.shortcut_loss(&loss, wc, lm, lb, d[0], d[1], d[2], d[3], in[0], in[1], in[2], in[3], P,
                          SFC_EPS, c.dloss);
        const char *names[4] = {"d/mc", "d/mr", "d/bc", "d/br"};
        for (int k = 0; k < 4; k++) GRAD_CHECK(names[k], sfc_fd_loss, &c, in[k], d[k], P, 1e-2);
    }
}

TEST(test_shortcut_loss_gradients_have_no_path_through_w) {
    /* moderate margins where dw/dLm and dw/dLb are large: the full (non-detached) expression
     * has visibly different derivatives, and the kernel must match the detached one */
    enum { P = 4 };
    float mc[P] = {0.3f, -0.8f, 1.1f, -0.2f}, mr[P] = {-0.1f, 0.4f, 0.2f, 0.5f};
    float bc[P] = {-0.6f, 0.9f, 0.1f, -0.4f}, br[P] = {0.2f, -0.3f, 0.7f, 0.6f};
    float wc[P], w[P], lm[P], lb[P], d[4][P] = {{0}}, loss;
    kernels_cpu.shortcut_loss(&loss, wc, lm, lb, d[0], d[1], d[2], d[3], mc, mr, bc, br, P, SFC_EPS, 1.0f);
    SfcCtx detached = {mc, mr, bc, br, w, lm, lb, wc, P, 1.0f};
    SfcCtx full = detached;
    full.wconst = NULL;
    float *in[4] = {mc, mr, bc, br};
    for (int k = 0; k < 4; k++) {
        double diff_full = 0, diff_det = 0, norm = 0;
        for (int i = 0; i < P; i++) {
            float x0 = in[k][i], h = 1e-3f;
            double step = (double)(x0 + h) - (double)(x0 - h);
            in[k][i] = x0 + h;
            double fp = sfc_fd_loss(&full), dp = sfc_fd_loss(&detached);
            in[k][i] = x0 - h;
            double fm = sfc_fd_loss(&full), dmn = sfc_fd_loss(&detached);
            in[k][i] = x0;
            double fd_full = (fp - fm) / step, fd_det = (dp - dmn) / step;
            diff_full += (d[k][i] - fd_full) * (d[k][i] - fd_full);
            diff_det += (d[k][i] - fd_det) * (d[k][i] - fd_det);
            norm += fd_det * fd_det;
        }
        double rel_full = sqrt(diff_full / norm), rel_det = sqrt(diff_det / norm);
        CHECK(rel_det < 1e-3, "input %d: gradient off the detached-w derivative by %.3g", k, rel_det);
        CHECK(rel_full > 0.1, "input %d: detached and full derivatives differ by only %.3g; the "
              "case does not separate them", k, rel_full);
    }
}

TEST(test_shortcut_loss_scales_by_dloss_accumulates_and_accepts_null_gradients) {
    enum { P = 7 };
    TRng r = trng(23);
    float in[4][P], w[P], lm[P], lb[P], loss, loss2;
    for (int k = 0; k < 4; k++) fill_normal(&r, in[k], P, 1.0f);
#define SFC(dmc, dmr, dbc, dbr, lossp, dloss) \
    kernels_cpu.shortcut_loss(lossp, w, lm, lb, dmc, dmr, dbc, dbr, in[0], in[1], in[2], in[3], P, SFC_EPS, dloss)
    float g1[4][P] = {{0}};
    SFC(g1[0], g1[1], g1[2], g1[3], &loss, 1.0f);

    float g[4][P] = {{0}};
    double ref[P];
    SFC(g[0], g[1], g[2], g[3], &loss2, -1.5f);
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < P; i++) ref[i] = -1.5 * g1[k][i];
        EXPECT_CLOSE("gradient scaled by dloss", g[k], ref, P, 1e-6, 0);
    }
    EXPECT_SAME("loss independent of dloss", &loss, &loss2, 1);

    float pre[4][P];
    for (int k = 0; k < 4; k++) fill_normal(&r, pre[k], P, 1.0f);
    memcpy(g, pre, sizeof g);
    SFC(g[0], g[1], g[2], g[3], &loss2, 1.0f);
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < P; i++) ref[i] = (double)pre[k][i] + g1[k][i];
        EXPECT_CLOSE("gradient accumulates onto prefill", g[k], ref, P, 1e-6, 1e-7);
    }

    /* any subset may be NULL; the rest are unchanged */
    float h[4][P] = {{0}};
    SFC(NULL, h[1], h[2], NULL, &loss2, 1.0f);
    EXPECT_SAME("dmr with dmc, dbr NULL", h[1], g1[1], P);
    EXPECT_SAME("dbc with dmc, dbr NULL", h[2], g1[2], P);
    SFC(h[0], NULL, NULL, h[3], &loss2, 1.0f);
    EXPECT_SAME("dmc with dmr, dbc NULL", h[0], g1[0], P);
    EXPECT_SAME("dbr with dmr, dbc NULL", h[3], g1[3], P);
    SFC(NULL, NULL, NULL, NULL, &loss2, 1.0f);
    EXPECT_SAME("loss with all gradients NULL", &loss2, &loss, 1);
#undef SFC
}

TEST(test_loss_outputs_are_independent_of_thread_count) {
    enum { P = 13 };
    TRng r = trng(24);
    float in[4][P], mg[P];
    for (int k = 0; k < 4; k++) fill_normal(&r, in[k], P, 2.0f);
    fill_normal(&r, mg, P, 0.5f);
    /* rows: bt losses, dchosen, drejected; shortcut w, Lm, Lb, dmc, dmr, dbc, dbr; the
     * scalar loss goes in the extra column of rows 0 and 3 */
    float out[2][10][P + 1];
    memset(out, 0, sizeof out);
    int prev = omp_get_max_threads();
    const int threads[2] = {1, 3};
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(threads[t]);
        float (*o)[P + 1] = out[t];
        kernels_cpu.bt_loss(&o[0][P], o[0], o[1], o[2], in[0], in[1], mg, P, 0.9f);
        kernels_cpu.shortcut_loss(&o[3][P], o[3], o[4], o[5], o[6], o[7], o[8], o[9], in[0], in[1],
                          in[2], in[3], P, SFC_EPS, 0.9f);
    }
    omp_set_num_threads(prev);
    EXPECT_SAME("loss outputs, 1 vs 3 threads", &out[0][0][0], &out[1][0][0], 10 * (P + 1));
}
