/* parity_loss_optim.c - CUDA vs CPU for the losses and optimizer ops (kernels/cuda/loss.cu,
 * optimizer.cu): bt_loss, shortcut_loss, adamw_update (three steps), sum_squares (host
 * result; also repeated to check it is bitwise reproducible) and scale_inplace.
 * Gradients start from the same random values on both sides (checking +=) and each is
 * also left NULL. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/gpu/parity.h"

/* pairs per batch: one, a few, around the 256-thread block, a few thousand */
static const int PAIRS[] = {1, 7, 256, 257, 3000};
#define NPAIRS (sizeof PAIRS / sizeof PAIRS[0])

static void parity_bt_loss(Parity *p) {
    for (size_t s = 0; s < NPAIRS; s++) {
        int P = PAIRS[s];
        size_t n = (size_t)P;
        int with_margin = s % 2 == 1;
        /* the last shape has reward gaps far into both tails */
        float span = s + 1 == NPAIRS ? 40.0f : 4.0f, dloss = s % 2 ? 0.5f : 1.0f;
        float *rc = h_rand(p, n, -span, span), *rr = h_rand(p, n, -span, span);
        float *margin = h_rand(p, n, 0, 1);
        float *d_rc = d_upload(rc, n), *d_rr = d_upload(rr, n), *d_margin = d_upload(margin, n);
        float *dch = h_rand(p, n, -1, 1), *drj = h_rand(p, n, -1, 1);
        float *d_dch = d_upload(dch, n), *d_drj = d_upload(drj, n);
        float loss = 0, *losses = h_rand(p, n, -1, 1);
        float *d_loss = d_zeros(1), *d_losses = d_upload(losses, n);
        const char *mt = with_margin ? " margin" : "";
        for (int mode = 0; mode < 4; mode++) {
            float *hc = mode == 1 || mode == 3 ? NULL : dch, *hr = mode >= 2 ? NULL : drj;
            float *dc = mode == 1 || mode == 3 ? NULL : d_dch, *dr = mode >= 2 ? NULL : d_drj;
            kernels_cpu.bt_loss(&loss, losses, hc, hr, rc, rr, with_margin ? margin : NULL, P,
                                dloss);
            kernels_cuda.bt_loss(d_loss, d_losses, dc, dr, d_rc, d_rr,
                                 with_margin ? d_margin : NULL, P, dloss);
            static const char *tags[] = {"", " (dchosen=NULL)", " (drejected=NULL)",
                                         " (both NULL)"};
            const char *tag = tags[mode];
            parity_check_dev(p, parity_name("bt_loss P=%d%s loss%s", P, mt, tag), &loss, d_loss, 1);
            parity_check_dev(p, parity_name("bt_loss P=%d%s losses%s", P, mt, tag), losses, d_losses, n);
            parity_check_dev(p, parity_name("bt_loss P=%d%s dchosen%s", P, mt, tag), dch, d_dch, n);
            parity_check_dev(p, parity_name("bt_loss P=%d%s drejected%s", P, mt, tag), drj, d_drj, n);
        }
        free(rc), free(rr), free(margin), free(dch), free(drj), free(losses);
        d_free(d_rc), d_free(d_rr), d_free(d_margin), d_free(d_dch), d_free(d_drj),
            d_free(d_loss), d_free(d_losses);
    }
}

static void parity_shortcut_loss(Parity *p) {
    for (size_t s = 0; s < NPAIRS; s++) {
        int P = PAIRS[s];
        size_t n = (size_t)P;
        float eps = s % 2 ? 1e-4f : 0.1f, dloss = s % 2 ? 0.25f : 1.0f;
        float span = s + 1 == NPAIRS ? 40.0f : 4.0f;
        float *in[4], *d_in[4]; /* mc, mr, bc, br */
        for (int k = 0; k < 4; k++) {
            in[k] = h_rand(p, n, -span, span);
            d_in[k] = d_upload(in[k], n);
        }
        float *out[3], *d_out[3]; /* w, lm, lb */
        for (int k = 0; k < 3; k++) {
            out[k] = h_rand(p, n, -1, 1);
            d_out[k] = d_upload(out[k], n);
        }
        float *g[4], *d_g[4]; /* dmc, dmr, dbc, dbr */
        for (int k = 0; k < 4; k++) {
            g[k] = h_rand(p, n, -1, 1);
            d_g[k] = d_upload(g[k], n);
        }
        float loss = 0, *d_loss = d_zeros(1);
        static const char *gname[4] = {"dmc", "dmr", "dbc", "dbr"};
        static const char *oname[3] = {"w", "lm", "lb"};
        /* mode 0: all gradients; mode 1..4: gradient mode-1 NULL; mode 5: all NULL */
        for (int mode = 0; mode < 6; mode++) {
            float *hg[4], *dg[4];
            for (int k = 0; k < 4; k++) {
                int null = mode == 5 || mode == k + 1;
                hg[k] = null ? NULL : g[k];
                dg[k] = null ? NULL : d_g[k];
            }
            kernels_cpu.shortcut_loss(&loss, out[0], out[1], out[2], hg[0], hg[1], hg[2], hg[3],
                                      in[0], in[1], in[2], in[3], P, eps, dloss);
            kernels_cuda.shortcut_loss(d_loss, d_out[0], d_out[1], d_out[2], dg[0], dg[1], dg[2],
                                       dg[3], d_in[0], d_in[1], d_in[2], d_in[3], P, eps, dloss);
            char tag[32] = "";
            if (mode >= 1 && mode <= 4) snprintf(tag, sizeof tag, " (%s=NULL)", gname[mode - 1]);
            if (mode == 5) snprintf(tag, sizeof tag, " (all NULL)");
            parity_check_dev(p, parity_name("shortcut_loss P=%d eps=%g loss%s", P, eps, tag), &loss, d_loss, 1);
            for (int k = 0; k < 3; k++)
                parity_check_dev(p, parity_name("shortcut_loss P=%d eps=%g %s%s", P, eps, oname[k], tag), out[k],
                          d_out[k], n);
            for (int k = 0; k < 4; k++)
                parity_check_dev(p, parity_name("shortcut_loss P=%d eps=%g %s%s", P, eps, gname[k], tag), g[k],
                          d_g[k], n);
        }
        for (int k = 0; k < 4; k++) free(in[k]), free(g[k]), d_free(d_in[k]), d_free(d_g[k]);
        for (int k = 0; k < 3; k++) free(out[k]), d_free(d_out[k]);
        d_free(d_loss);
    }
}

static const size_t SIZES[] = {1, 7, 1000, 4097, 100003};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])

static void parity_adamw(Parity *p) {
    for (size_t s = 0; s < NSIZES; s++) {
        size_t n = SIZES[s];
        float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
        float wd = s % 2 ? 0.0f : 0.1f, grad_scale = s % 2 ? 1.0f : 0.5f;
        float *params = h_rand(p, n, -1, 1), *m = h_rand(p, n, -0.1f, 0.1f);
        float *v = h_rand(p, n, 0, 0.01f);
        float *d_params = d_upload(params, n), *d_m = d_upload(m, n), *d_v = d_upload(v, n);
        for (int t = 1; t <= 3; t++) {
            float *grads = h_rand(p, n, -1, 1), *d_grads = d_upload(grads, n);
            kernels_cpu.adamw_update(params, NULL, grads, m, v, n, lr, beta1, beta2, eps, wd, t,
                                     grad_scale);
            kernels_cuda.adamw_update(d_params, NULL, d_grads, d_m, d_v, n, lr, beta1, beta2, eps, wd,
                                      t, grad_scale);
            parity_check_dev(p, parity_name("adamw n=%zu wd=%g t=%d params", n, wd, t), params, d_params, n);
            parity_check_dev(p, parity_name("adamw n=%zu wd=%g t=%d m", n, wd, t), m, d_m, n);
            parity_check_dev(p, parity_name("adamw n=%zu wd=%g t=%d v", n, wd, t), v, d_v, n);
            free(grads);
            d_free(d_grads);
        }
        free(params), free(m), free(v);
        d_free(d_params), d_free(d_m), d_free(d_v);
    }
}

static void parity_sum_squares(Parity *p) {
    /* around the CPU's 4096-element chunks and the GPU's 262144-thread grid */
    static const size_t N[] = {0, 1, 7, 4096, 4097, 262145, 1000003};
    for (size_t s = 0; s < sizeof N / sizeof N[0]; s++) {
        size_t n = N[s];
        float *g = h_rand(p, n ? n : 1, -1, 1), *d_g = d_upload(g, n ? n : 1);
        float ref = -1.0f, got = -1.0f, again = -1.0f;
        kernels_cpu.sum_squares(&ref, g, n);
        kernels_cuda.sum_squares(&got, d_g, n);
        parity_check(p, parity_name("sum_squares n=%zu out", n), &ref, &got, 1, parity_tol(p));
        kernels_cuda.sum_squares(&again, d_g, n);
        parity_check(p, parity_name("sum_squares n=%zu repeat (bitwise)", n), &got, &again, 1, 0.0);
        free(g);
        d_free(d_g);
    }
}

/* the device-side clipping of train/optim.c: the accumulated sum of squares, the clip
 * coefficient, AdamW reading it (a NaN coefficient: nothing moves) */
static void parity_clipping(Parity *p) {
    static const size_t N[] = {1, 4097, 262145};
    double sq_ref = 0.0, *d_sq = (double *)d_zeros(2);
    for (size_t s = 0; s < sizeof N / sizeof N[0]; s++) {
        float *g = h_rand(p, N[s], -1, 1), *d_g = d_upload(g, N[s]);
        kernels_cpu.sum_squares_acc(&sq_ref, g, N[s]);
        kernels_cuda.sum_squares_acc(d_sq, d_g, N[s]);
        free(g);
        d_free(d_g);
    }
    double sq_got;
    d_download((float *)&sq_got, (const float *)d_sq, 2);
    float ref32 = (float)sq_ref, got32 = (float)sq_got;
    parity_check(p, "sum_squares_acc over 3 buffers", &ref32, &got32, 1, parity_tol(p));
    float *d_coef = d_zeros(1), coef_ref, coef_got;
    const double maxes[2] = {1.0, 0.0};
    for (int k = 0; k < 2; k++) {
        kernels_cpu.clip_coef(&coef_ref, &sq_got, maxes[k]);
        kernels_cuda.clip_coef(d_coef, d_sq, maxes[k]);
        d_download(&coef_got, d_coef, 1);
        parity_check(p, parity_name("clip_coef max_norm %g (same sum: bitwise)", maxes[k]), &coef_ref, &coef_got, 1, 0.0);
    }
    size_t n = 1000;
    float *params = h_rand(p, n, -1, 1), *m = h_rand(p, n, -0.1f, 0.1f), *v = h_rand(p, n, 0, 0.01f);
    float *grads = h_rand(p, n, -1, 1);
    float *d_params = d_upload(params, n), *d_m = d_upload(m, n), *d_v = d_upload(v, n);
    float *d_grads = d_upload(grads, n), nan = NAN, *d_nan = d_upload(&nan, 1);
    kernels_cpu.adamw_update_scaled(params, NULL, grads, m, v, n, 1e-3f, 0.9f, 0.98f, 1e-8f, 0.05f, 2, &coef_got);
    kernels_cuda.adamw_update_scaled(d_params, NULL, d_grads, d_m, d_v, n, 1e-3f, 0.9f, 0.98f, 1e-8f, 0.05f, 2,
                                     d_coef);
    parity_check_dev(p, "adamw_update_scaled params", params, d_params, n);
    parity_check_dev(p, "adamw_update_scaled m", m, d_m, n);
    float *before = malloc(n * sizeof(float));
    d_download(before, d_params, n);
    kernels_cuda.adamw_update_scaled(d_params, NULL, d_grads, d_m, d_v, n, 1e-3f, 0.9f, 0.98f, 1e-8f, 0.05f, 3,
                                     d_nan);
    float *after = malloc(n * sizeof(float));
    d_download(after, d_params, n);
    parity_check(p, "adamw_update_scaled NaN coefficient: params untouched (bitwise)", before, after, n, 0.0);
    free(params), free(m), free(v), free(grads), free(before), free(after);
    d_free(d_params), d_free(d_m), d_free(d_v), d_free(d_grads), d_free(d_nan), d_free(d_coef), d_free(d_sq);
}

static void parity_scale_inplace(Parity *p) {
    for (size_t s = 0; s < NSIZES; s++) {
        size_t n = SIZES[s];
        float *x = h_rand(p, n, -1, 1), *d_x = d_upload(x, n);
        float sc = s % 2 ? 0.37f : 1.0f / 3.0f;
        kernels_cpu.scale_inplace(x, sc, n);
        kernels_cuda.scale_inplace(d_x, sc, n);
        parity_check_dev(p, parity_name("scale_inplace n=%zu s=%g x", n, sc), x, d_x, n);
        free(x);
        d_free(d_x);
    }
}

void parity_loss_optim(Parity *p) {
    parity_bt_loss(p);
    parity_shortcut_loss(p);
    parity_adamw(p);
    parity_sum_squares(p);
    parity_clipping(p);
    parity_scale_inplace(p);
}
