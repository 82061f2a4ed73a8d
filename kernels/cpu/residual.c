/* residual.c - the residual-branch ops, forward and backward: elementwise add, per-channel
 * layer scale over (N, C) rows (N rows, C channels), and stochastic depth (drop_path) over
 * B samples of per_sample values each.
 *
 * Everything is elementwise except dscale, a sum over rows: each thread owns whole blocks
 * of columns and walks the rows in order in double, so it is bit for bit the same for any
 * thread count. No pointer is restrict: in-place use (out == a, out == inp) is fine, and
 * add_backward(g, g, ...) for add(x, x) gives g += 2 dout.
 */
#include "kernels/cpu/cpu.h"

/* Columns one thread owns in the dscale reduction: two cache lines of a row. */
#define COL_BLOCK 32
/* drop_path splits each sample into chunks so that small B still spreads over threads. */
#define SAMPLE_CHUNK 4096

void cpu_add_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_add_backward(float *da, float *db, const float *dout, size_t n) {
    if (da) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) da[i] += dout[i];
    }
    if (db) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) db[i] += dout[i];
    }
}

void cpu_channel_scale_forward(float *out,         /* (N, C) */
                               const float *inp,   /* (N, C) */
                               const float *scale, /* (C) */
                               int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = x[c] * scale[c];
    }
}

void cpu_channel_scale_backward(float *dinp,        /* (N, C) or NULL */
                                float *dscale,      /* (C) or NULL */
                                const float *dout,  /* (N, C) */
                                const float *inp,   /* (N, C) */
                                const float *scale, /* (C) */
                                int N, int C) {
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            for (int c = 0; c < C; c++) dx[c] += g[c] * scale[c];
        }
    }
    if (dscale) {
        int nblocks = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
        for (int blk = 0; blk < nblocks; blk++) {
            int c0 = blk * COL_BLOCK;
            int nc = C - c0 < COL_BLOCK ? C - c0 : COL_BLOCK;
            double acc[COL_BLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const float *g = dout + (size_t)n * C + c0, *x = inp + (size_t)n * C + c0;
                for (int c = 0; c < nc; c++) acc[c] += (double)g[c] * x[c];
            }
            for (int c = 0; c < nc; c++) dscale[c0 + c] += (float)acc[c];
        }
    }
}

/* out[b, i] = inp[b, i] * keep_scale[b] (dinp accumulates dout[b, i] * keep_scale[b]) */
static void scale_samples(float *out, const float *inp, const float *keep_scale, int B,
                          size_t per_sample, int accumulate) {
    size_t chunks = (per_sample + SAMPLE_CHUNK - 1) / SAMPLE_CHUNK;
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < (size_t)B * chunks; k++) {
        size_t b = k / chunks, i0 = (k % chunks) * SAMPLE_CHUNK;
        size_t i1 = i0 + SAMPLE_CHUNK < per_sample ? i0 + SAMPLE_CHUNK : per_sample;
        float s = keep_scale[b];
        float *o = out + b * per_sample;
        const float *x = inp + b * per_sample;
        if (accumulate)
            for (size_t i = i0; i < i1; i++) o[i] += x[i] * s;
        else
            for (size_t i = i0; i < i1; i++) o[i] = x[i] * s;
    }
}

void cpu_drop_path_forward(float *out,              /* (B, per_sample) */
                           const float *inp,        /* (B, per_sample) */
                           const float *keep_scale, /* (B) */
                           int B, size_t per_sample) {
    scale_samples(out, inp, keep_scale, B, per_sample, 0);
}

void cpu_drop_path_backward(float *dinp,             /* (B, per_sample) or NULL */
                            const float *dout,       /* (B, per_sample) */
                            const float *keep_scale, /* (B) */
                            int B, size_t per_sample) {
    if (dinp) scale_samples(dinp, dout, keep_scale, B, per_sample, 1);
}
