/* parity_norm.c - CUDA vs CPU for LayerNorm and RMSNorm (kernels/cuda/norm.cu), forward
 * (out, mean, rstd) and backward (dinp, dweight, dbias).
 *
 * Shapes cover C = 1, odd C (scalar loads with a tail), C % 4 == 0 (float4 loads), rows with
 * a large common offset (the two-pass variance), enough rows to split the dweight/dbias sums
 * into several chunks, and one case with every row pointer off 16-byte alignment (the
 * scalar fallback for C % 4 == 0). Both backwards get the CPU forward's mean/rstd, start
 * from the same random gradients (checking +=) and are run with each gradient NULL. */
#include <stdio.h>
#include <stdlib.h>

#include "tests/gpu/parity.h"

typedef struct {
    int N, C;
    float lo, hi;   /* input range: [999, 1001] is the large-offset case */
    int misalign;   /* device rows start 4 bytes past a 16-byte boundary */
} NormShape;

static const NormShape SHAPES[] = {
    {1, 1, -2, 2, 0},      {7, 3, -2, 2, 0},      {33, 31, -2, 2, 0},  {130, 64, -2, 2, 0},
    {33, 257, 999, 1001, 0}, {130, 1024, -2, 2, 0}, {1000, 256, -2, 2, 0}, {7, 4096, -3, 1, 0},
    {33, 64, -2, 2, 1}};
#define NSHAPES (sizeof SHAPES / sizeof SHAPES[0])

/* A device copy of h (n floats) whose returned pointer is 4 bytes past the allocation when
 * misalign; *base is what d_free takes. */
static float *up(const float *h, size_t n, int misalign, float **base) {
    if (!misalign) return *base = d_upload(h, n);
    float *pad = malloc((n + 1) * sizeof(float));
    if (!pad) {
        fprintf(stderr, "parity_norm: out of memory\n");
        exit(1);
    }
    pad[0] = 0.0f;
    for (size_t i = 0; i < n; i++) pad[i + 1] = h[i];
    *base = d_upload(pad, n + 1);
    free(pad);
    return *base + 1;
}

static const char *ln_tags[] = {"", " (dinp=NULL)", " (dweight=NULL)", " (dbias=NULL)"};

static void parity_layernorm(Parity *p) {
    const float eps = 1e-5f;
    for (size_t s = 0; s < NSHAPES; s++) {
        const NormShape *S = &SHAPES[s];
        int N = S->N, C = S->C, mis = S->misalign;
        size_t n = (size_t)N * C;
        int with_bias = s % 2 == 0;
        float *inp = h_rand(p, n, S->lo, S->hi), *weight = h_rand(p, (size_t)C, 0.5f, 1.5f);
        float *bias = h_rand(p, (size_t)C, -0.5f, 0.5f);
        float *out = h_rand(p, n, -1, 1), *mean = h_rand(p, (size_t)N, -1, 1);
        float *rstd = h_rand(p, (size_t)N, -1, 1);
        float *b_inp, *b_out;
        float *d_inp = up(inp, n, mis, &b_inp), *d_out = up(out, n, mis, &b_out);
        float *d_weight = d_upload(weight, (size_t)C), *d_bias = d_upload(bias, (size_t)C);
        float *d_mean = d_upload(mean, (size_t)N), *d_rstd = d_upload(rstd, (size_t)N);
        kernels_cpu.layernorm_forward(out, mean, rstd, inp, weight, with_bias ? bias : NULL, N,
                                      C, eps);
        kernels_cuda.layernorm_forward(d_out, d_mean, d_rstd, d_inp, d_weight,
                                       with_bias ? d_bias : NULL, N, C, eps);
        const char *bt = with_bias ? "" : " bias=NULL";
        const char *mt = mis ? " misaligned" : "";
        parity_check_dev(p, parity_name("layernorm fwd N=%d C=%d%s%s out", N, C, bt, mt), out, d_out, n);
        parity_check_dev(p, parity_name("layernorm fwd N=%d C=%d%s%s mean", N, C, bt, mt), mean, d_mean,
                  (size_t)N);
        parity_check_dev(p, parity_name("layernorm fwd N=%d C=%d%s%s rstd", N, C, bt, mt), rstd, d_rstd,
                  (size_t)N);

        /* backward from the CPU's statistics, so both sides see the same inputs */
        float *dout = h_rand(p, n, -1, 1), *dinp = h_rand(p, n, -1, 1);
        float *dweight = h_rand(p, (size_t)C, -1, 1), *dbias = h_rand(p, (size_t)C, -1, 1);
        float *b_dout, *b_dinp;
        float *d_dout = up(dout, n, mis, &b_dout), *d_dinp = up(dinp, n, mis, &b_dinp);
        float *d_dweight = d_upload(dweight, (size_t)C), *d_dbias = d_upload(dbias, (size_t)C);
        float *d_cmean = d_upload(mean, (size_t)N), *d_crstd = d_upload(rstd, (size_t)N);
        for (int mode = 0; mode < 4; mode++) {
            float *hx = mode == 1 ? NULL : dinp, *hw = mode == 2 ? NULL : dweight;
            float *hb = mode == 3 ? NULL : dbias;
            float *dx = mode == 1 ? NULL : d_dinp, *dw = mode == 2 ? NULL : d_dweight;
            float *db = mode == 3 ? NULL : d_dbias;
            kernels_cpu.layernorm_backward(hx, hw, hb, dout, inp, weight, mean, rstd, N, C);
            kernels_cuda.layernorm_backward(dx, dw, db, d_dout, d_inp, d_weight, d_cmean, d_crstd,
                                            N, C);
            const char *tag = ln_tags[mode];
            parity_check_dev(p, parity_name("layernorm bwd N=%d C=%d%s dinp%s", N, C, mt, tag), dinp, d_dinp, n);
            parity_check_dev(p, parity_name("layernorm bwd N=%d C=%d%s dweight%s", N, C, mt, tag), dweight,
                      d_dweight, (size_t)C);
            parity_check_dev(p, parity_name("layernorm bwd N=%d C=%d%s dbias%s", N, C, mt, tag), dbias, d_dbias,
                      (size_t)C);
        }
        kernels_cuda.layernorm_backward(NULL, NULL, NULL, d_dout, d_inp, d_weight, d_cmean,
                                        d_crstd, N, C);
        parity_check_dev(p, parity_name("layernorm bwd N=%d C=%d%s all NULL (dinp kept)", N, C, mt), dinp,
                  d_dinp, n);

        free(inp), free(weight), free(bias), free(out), free(mean), free(rstd);
        free(dout), free(dinp), free(dweight), free(dbias);
        d_free(b_inp), d_free(b_out), d_free(d_weight), d_free(d_bias), d_free(d_mean),
            d_free(d_rstd);
        d_free(b_dout), d_free(b_dinp), d_free(d_dweight), d_free(d_dbias), d_free(d_cmean),
            d_free(d_crstd);
    }
}

static void parity_rmsnorm(Parity *p) {
    const float eps = 1e-6f;
    for (size_t s = 0; s < NSHAPES; s++) {
        const NormShape *S = &SHAPES[s];
        int N = S->N, C = S->C, mis = S->misalign;
        size_t n = (size_t)N * C;
        float *inp = h_rand(p, n, S->lo, S->hi), *weight = h_rand(p, (size_t)C, 0.5f, 1.5f);
        float *out = h_rand(p, n, -1, 1), *rstd = h_rand(p, (size_t)N, -1, 1);
        float *b_inp, *b_out;
        float *d_inp = up(inp, n, mis, &b_inp), *d_out = up(out, n, mis, &b_out);
        float *d_weight = d_upload(weight, (size_t)C), *d_rstd = d_upload(rstd, (size_t)N);
        kernels_cpu.rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
        kernels_cuda.rmsnorm_forward(d_out, d_rstd, d_inp, d_weight, N, C, eps);
        const char *mt = mis ? " misaligned" : "";
        parity_check_dev(p, parity_name("rmsnorm fwd N=%d C=%d%s out", N, C, mt), out, d_out, n);
        parity_check_dev(p, parity_name("rmsnorm fwd N=%d C=%d%s rstd", N, C, mt), rstd, d_rstd, (size_t)N);

        float *dout = h_rand(p, n, -1, 1), *dinp = h_rand(p, n, -1, 1);
        float *dweight = h_rand(p, (size_t)C, -1, 1);
        float *b_dout, *b_dinp;
        float *d_dout = up(dout, n, mis, &b_dout), *d_dinp = up(dinp, n, mis, &b_dinp);
        float *d_dweight = d_upload(dweight, (size_t)C), *d_crstd = d_upload(rstd, (size_t)N);
        for (int mode = 0; mode < 3; mode++) {
            float *hx = mode == 1 ? NULL : dinp, *hw = mode == 2 ? NULL : dweight;
            float *dx = mode == 1 ? NULL : d_dinp, *dw = mode == 2 ? NULL : d_dweight;
            kernels_cpu.rmsnorm_backward(hx, hw, dout, inp, weight, rstd, N, C);
            kernels_cuda.rmsnorm_backward(dx, dw, d_dout, d_inp, d_weight, d_crstd, N, C);
            const char *tag = ln_tags[mode];
            parity_check_dev(p, parity_name("rmsnorm bwd N=%d C=%d%s dinp%s", N, C, mt, tag), dinp, d_dinp, n);
            parity_check_dev(p, parity_name("rmsnorm bwd N=%d C=%d%s dweight%s", N, C, mt, tag), dweight,
                      d_dweight, (size_t)C);
        }
        kernels_cuda.rmsnorm_backward(NULL, NULL, d_dout, d_inp, d_weight, d_crstd, N, C);
        parity_check_dev(p, parity_name("rmsnorm bwd N=%d C=%d%s all NULL (dinp kept)", N, C, mt), dinp, d_dinp,
                  n);

        free(inp), free(weight), free(out), free(rstd), free(dout), free(dinp), free(dweight);
        d_free(b_inp), d_free(b_out), d_free(d_weight), d_free(d_rstd);
        d_free(b_dout), d_free(b_dinp), d_free(d_dweight), d_free(d_crstd);
    }
}

void parity_norm(Parity *p) {
    parity_layernorm(p);
    parity_rmsnorm(p);
}
