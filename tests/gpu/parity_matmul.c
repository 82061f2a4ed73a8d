/* parity_matmul.c - kernels_cuda.matmul_forward / matmul_backward against kernels_cpu on
 * random inputs (tests/gpu/parity.h).
 *
 * Shapes mix 1, odd sizes and larger ones so that every leading dimension alignment
 * (4, 8, 16 ... bytes) reaches cuBLASLt's heuristic; some cases shift every device operand
 * 1 float (4-byte aligned: the add-bias fallback and the low-alignment algorithms) or
 * 4 floats (16-byte aligned, not 256) into its allocation, as parameter views in an arena
 * can be. Gradient buffers start from the same random values on both sides, so the +=
 * accumulation is checked, and some cases pass NULL gradients. The forward runs twice on
 * the device (the second call takes the cached plan) into an output prefilled with
 * garbage (beta = 0 must not read it). Outputs that are a long sum (K ~ 1000) always have
 * several elements: a single such element can cancel to a small value whose float rounding
 * (CPU order vs cuBLAS order) alone exceeds 1e-5 relative. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/gpu/parity.h"

enum { G_DINP = 1, G_DWEIGHT = 2, G_DBIAS = 4, G_ALL = 7 };

typedef struct {
    int N, C, OC;
    int bias;   /* forward with a bias */
    int grads;  /* G_* bits: which gradients the backward asks for */
    int offset; /* floats between each device allocation's start and the operand */
} MatmulCase;

/* device copy of h (n floats) placed `off` floats into a fresh allocation (*base, to free) */
static float *upload_at(const float *h, size_t n, int off, float **base) {
    float *tmp = malloc((n + off + 1) * sizeof *tmp);
    if (!tmp) abort();
    for (int i = 0; i < off; i++) tmp[i] = 0.0f;
    memcpy(tmp + off, h, n * sizeof *tmp);
    *base = d_upload(tmp, n + off);
    free(tmp);
    return *base + off;
}

static void run_case(Parity *p, const MatmulCase *c) {
    const int N = c->N, C = c->C, OC = c->OC, off = c->offset;
    const size_t nin = (size_t)N * C, nw = (size_t)OC * C, nout = (size_t)N * OC;
    const double tol = parity_tol(p);
    char name[160], tag[96];
    snprintf(tag, sizeof tag, "N=%d C=%d OC=%d%s%s", N, C, OC, c->bias ? " bias" : "",
             off == 1 ? " +4B" : off == 4 ? " +16B" : "");

    float *inp = h_rand(p, nin, -1.0f, 1.0f);
    float *w = h_rand(p, nw, -1.0f, 1.0f);
    float *b = h_rand(p, (size_t)OC, -1.0f, 1.0f);
    float *dout = h_rand(p, nout, -1.0f, 1.0f);
    float *garbage = h_rand(p, nout, -100.0f, 100.0f);
    float *dinp0 = h_rand(p, nin, -1.0f, 1.0f);
    float *dw0 = h_rand(p, nw, -1.0f, 1.0f);
    float *db0 = h_rand(p, (size_t)OC, -1.0f, 1.0f);

    float *d_inp_base, *d_w_base, *d_b_base, *d_dout_base, *d_out_base;
    float *d_inp = upload_at(inp, nin, off, &d_inp_base);
    float *d_w = upload_at(w, nw, off, &d_w_base);
    float *d_b = upload_at(b, (size_t)OC, off, &d_b_base);
    float *d_dout = upload_at(dout, nout, off, &d_dout_base);
    float *d_out = upload_at(garbage, nout, off, &d_out_base);

    /* forward */
    float *ref = h_zeros(nout), *got = h_zeros(nout);
    kernels_cpu.matmul_forward(ref, inp, w, c->bias ? b : NULL, N, C, OC);
    kernels_cuda.matmul_forward(d_out, d_inp, d_w, c->bias ? d_b : NULL, N, C, OC);
    kernels_cuda.matmul_forward(d_out, d_inp, d_w, c->bias ? d_b : NULL, N, C, OC);
    d_download(got, d_out, nout);
    snprintf(name, sizeof name, "matmul fwd %s: out", tag);
    parity_check(p, name, ref, got, nout, tol);
    free(ref);
    free(got);

    /* backward */
    float *r_dinp = c->grads & G_DINP ? h_copy(dinp0, nin) : NULL;
    float *r_dw = c->grads & G_DWEIGHT ? h_copy(dw0, nw) : NULL;
    float *r_db = c->grads & G_DBIAS ? h_copy(db0, (size_t)OC) : NULL;
    float *d_dinp_base = NULL, *d_dw_base = NULL, *d_db_base = NULL;
    float *d_dinp = r_dinp ? upload_at(dinp0, nin, off, &d_dinp_base) : NULL;
    float *d_dw = r_dw ? upload_at(dw0, nw, off, &d_dw_base) : NULL;
    float *d_db = r_db ? upload_at(db0, (size_t)OC, off, &d_db_base) : NULL;
    kernels_cpu.matmul_backward(r_dinp, r_dw, r_db, dout, inp, w, N, C, OC);
    kernels_cuda.matmul_backward(d_dinp, d_dw, d_db, d_dout, d_inp, d_w, N, C, OC);
    const struct {
        const char *what;
        const float *ref, *dev;
        size_t n;
    } grads[3] = {{"dinp", r_dinp, d_dinp, nin}, {"dweight", r_dw, d_dw, nw},
                  {"dbias", r_db, d_db, (size_t)OC}};
    for (int i = 0; i < 3; i++) {
        if (!grads[i].ref) continue;
        float *h = h_zeros(grads[i].n);
        d_download(h, grads[i].dev, grads[i].n);
        snprintf(name, sizeof name, "matmul bwd %s: %s", tag, grads[i].what);
        parity_check(p, name, grads[i].ref, h, grads[i].n, tol);
        free(h);
    }

    d_free(d_inp_base);
    d_free(d_w_base);
    d_free(d_b_base);
    d_free(d_dout_base);
    d_free(d_out_base);
    d_free(d_dinp_base);
    d_free(d_dw_base);
    d_free(d_db_base);
    free(r_dinp);
    free(r_dw);
    free(r_db);
    free(inp);
    free(w);
    free(b);
    free(dout);
    free(garbage);
    free(dinp0);
    free(dw0);
    free(db0);
}

void parity_matmul(Parity *p) {
    static const MatmulCase cases[] = {
        {1, 1, 1, 1, G_ALL, 0},
        {3, 17, 64, 1, G_ALL, 0},
        {17, 129, 3, 0, G_ALL, 0},
        {64, 64, 64, 1, G_ALL, 0},
        {129, 1000, 17, 1, G_DINP | G_DWEIGHT, 0},
        {1000, 64, 129, 1, G_ALL, 0},
        {1000, 3, 5, 1, G_ALL, 0},
        {1000, 64, 1, 1, G_DINP | G_DWEIGHT, 0},
        {33, 1, 1000, 1, G_ALL, 0},
        {300, 256, 768, 1, G_ALL, 0},
        {200, 1000, 1000, 0, G_DWEIGHT | G_DBIAS, 0},
        {17, 64, 129, 1, G_ALL, 1},
        {129, 17, 3, 1, G_DWEIGHT | G_DBIAS, 1},
        {64, 128, 96, 1, G_DINP | G_DBIAS, 4},
        {1000, 129, 64, 1, G_DINP, 4},
        {7, 1000, 1, 0, G_ALL, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(p, &cases[i]);
}
