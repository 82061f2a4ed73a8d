/* norm.c - LayerNorm and RMSNorm over the last dim of (N, C) rows, forward and backward
 * (N rows, C channels).
 *
 * Row statistics are accumulated in double, and LayerNorm's variance is two-pass
 * (mean first, then sum of squared deviations): activations with a large common offset
 * (x = 1000 + noise) keep every digit of their variance, and the saved mean/rstd are the
 * correctly rounded values whatever C is, which makes this file a usable reference for the
 * GPU kernels. The cost is a second read of a row that is already in L1, and the norms
 * are O(N*C) next to the O(N*C*OC) matmuls around them. Both norms share one backward:
 * RMSNorm is LayerNorm without the mean (mean = NULL below) and without the bias.
 * dweight/dbias are sums over rows; each thread owns whole blocks of columns and walks the
 * rows in order, so they come out bit for bit the same for any thread count.
 */
#include "kernels/cpu/cpu.h"

#include <math.h>

/* Independent double partial sums per row reduction: the order is fixed by the source,
 * not by the thread count, and the lanes give the compiler vector adds to work with. */
#define LANES 8
/* Columns one thread owns in the dweight/dbias reductions: two cache lines of a row. */
#define COL_BLOCK 32

static double lanes_total(const double *acc) {
    double s = 0;
    for (int k = 0; k < LANES; k++) s += acc[k];
    return s;
}

/* sum_c (x[c] - shift)^2; shift 0 gives the sum of squares */
static double row_sum_sq_dev(const float *x, double shift, int C) {
    double acc[LANES] = {0};
    int c = 0;
    for (; c + LANES <= C; c += LANES)
        for (int k = 0; k < LANES; k++) {
            double d = x[c + k] - shift;
            acc[k] += d * d;
        }
    for (int k = 0; c < C; c++, k++) {
        double d = x[c] - shift;
        acc[k] += d * d;
    }
    return lanes_total(acc);
}

static double row_sum(const float *x, int C) {
    double acc[LANES] = {0};
    int c = 0;
    for (; c + LANES <= C; c += LANES)
        for (int k = 0; k < LANES; k++) acc[k] += x[c + k];
    for (int k = 0; c < C; c++, k++) acc[k] += x[c];
    return lanes_total(acc);
}

/* Row sums of dnorm = dout*weight and of dnorm*xhat, xhat = (x - m) * s as in forward. */
static void row_backward_sums(const float *g, const float *x, const float *w, float m, float s,
                              int C, double *sum_dnorm, double *sum_dnorm_xhat) {
    double a[LANES] = {0}, b[LANES] = {0};
    int c = 0;
    for (; c + LANES <= C; c += LANES)
        for (int k = 0; k < LANES; k++) {
            float dnorm = g[c + k] * w[c + k];
            a[k] += dnorm;
            b[k] += (double)dnorm * ((x[c + k] - m) * s);
        }
    for (int k = 0; c < C; c++, k++) {
        float dnorm = g[c] * w[c];
        a[k] += dnorm;
        b[k] += (double)dnorm * ((x[c] - m) * s);
    }
    *sum_dnorm = lanes_total(a);
    *sum_dnorm_xhat = lanes_total(b);
}

/* dweight[c] += sum_n dout[n,c] * xhat[n,c]; dbias[c] += sum_n dout[n,c] (rows in order) */
static void norm_param_backward(float *dweight,     /* (C) or NULL */
                                float *dbias,       /* (C) or NULL */
                                const float *dout,  /* (N, C) */
                                const float *inp,   /* (N, C) */
                                const float *mean,  /* (N) or NULL for RMSNorm */
                                const float *rstd,  /* (N) */
                                int N, int C) {
    int nblocks = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblocks; blk++) {
        int c0 = blk * COL_BLOCK;
        int nc = C - c0 < COL_BLOCK ? C - c0 : COL_BLOCK;
        double dw[COL_BLOCK] = {0}, db[COL_BLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * C + c0;
            const float *x = inp + (size_t)n * C + c0;
            float m = mean ? mean[n] : 0.0f, s = rstd[n];
            for (int c = 0; c < nc; c++) {
                dw[c] += (double)g[c] * ((x[c] - m) * s);
                db[c] += g[c];
            }
        }
        if (dweight)
            for (int c = 0; c < nc; c++) dweight[c0 + c] += (float)dw[c];
        if (dbias)
            for (int c = 0; c < nc; c++) dbias[c0 + c] += (float)db[c];
    }
}

/* Shared backward. With xhat = (x - mean) * rstd and dnorm = dout * weight:
 * dinp += rstd * (dnorm - mean_c(dnorm) - xhat * mean_c(dnorm * xhat)); the mean_c(dnorm)
 * term comes from the subtracted mean, so RMSNorm (mean == NULL) drops it. */
static void norm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, const float *mean,
                          const float *rstd, int N, int C) {
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * C, *x = inp + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            float m = mean ? mean[n] : 0.0f, s = rstd[n];
            double sum_dnorm, sum_dnorm_xhat;
            row_backward_sums(g, x, weight, m, s, C, &sum_dnorm, &sum_dnorm_xhat);
            float mean_dnorm = mean ? (float)(sum_dnorm / C) : 0.0f;
            float mean_dnorm_xhat = (float)(sum_dnorm_xhat / C);
            for (int c = 0; c < C; c++) {
                float xhat = (x[c] - m) * s;
                dx[c] += (g[c] * weight[c] - mean_dnorm - xhat * mean_dnorm_xhat) * s;
            }
        }
    }
    if (dweight || dbias) norm_param_backward(dweight, dbias, dout, inp, mean, rstd, N, C);
}

void cpu_layernorm_forward(float *out,          /* (N, C) */
                           float *mean,         /* (N) */
                           float *rstd,         /* (N) */
                           const float *inp,    /* (N, C) */
                           const float *weight, /* (C) */
                           const float *bias,   /* (C) or NULL */
                           int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double mu = row_sum(x, C) / C;
        double var = row_sum_sq_dev(x, mu, C) / C;
        /* normalise with the saved float statistics so backward sees the same xhat */
        float m = (float)mu, s = (float)(1.0 / sqrt(var + eps));
        mean[n] = m;
        rstd[n] = s;
        if (bias)
            for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * weight[c] + bias[c];
        else
            for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * weight[c];
    }
}

void cpu_layernorm_backward(float *dinp,         /* (N, C) or NULL */
                            float *dweight,      /* (C) or NULL */
                            float *dbias,        /* (C) or NULL */
                            const float *dout,   /* (N, C) */
                            const float *inp,    /* (N, C) */
                            const float *weight, /* (C) */
                            const float *mean,   /* (N) from forward */
                            const float *rstd,   /* (N) from forward */
                            int N, int C) {
    norm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

void cpu_rmsnorm_forward(float *out,          /* (N, C) */
                         float *rstd,         /* (N) */
                         const float *inp,    /* (N, C) */
                         const float *weight, /* (C) */
                         int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float s = (float)(1.0 / sqrt(row_sum_sq_dev(x, 0.0, C) / C + eps));
        rstd[n] = s;
        for (int c = 0; c < C; c++) o[c] = x[c] * s * weight[c];
    }
}

void cpu_rmsnorm_backward(float *dinp,         /* (N, C) or NULL */
                          float *dweight,      /* (C) or NULL */
                          const float *dout,   /* (N, C) */
                          const float *inp,    /* (N, C) */
                          const float *weight, /* (C) */
                          const float *rstd,   /* (N) from forward */
                          int N, int C) {
    norm_backward(dinp, dweight, NULL, dout, inp, weight, NULL, rstd, N, C);
}

/* Residual add + norm: the add, then the norm of the sum, exactly as add_forward followed
 * by the norm (the fused form exists for the GPU, where it saves a pass over the sum). */
void cpu_add_layernorm_forward(float *sum, float *out, float *mean, float *rstd,
                               const float *x, const float *a, const float *weight,
                               const float *bias, int N, int C, float eps) {
    cpu_add_forward(sum, x, a, (size_t)N * C);
    cpu_layernorm_forward(out, mean, rstd, sum, weight, bias, N, C, eps);
}

void cpu_add_rmsnorm_forward(float *sum, float *out, float *rstd, const float *x,
                             const float *a, const float *weight, int N, int C, float eps) {
    cpu_add_forward(sum, x, a, (size_t)N * C);
    cpu_rmsnorm_forward(out, rstd, sum, weight, N, C, eps);
}
