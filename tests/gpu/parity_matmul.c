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
 * (CPU order vs cuBLAS order) alone exceeds 1e-5 relative.
 *
 * bf16 mode (the GEMM operands in bf16, fp32 accumulation): every result is checked twice,
 * against the CPU's fp32 result within 1e-2 (for gradients: the increment the backward
 * added, so a gradient that the random initial value cancels is not judged on what
 * rounding does to that cancellation), and against the CPU's fp32 GEMM over the
 * bf16-rounded operands within 1e-5: the products of bf16 numbers are exact in fp32, so
 * the device may differ only by its summation order. (Where matmul.cu fell back to plain
 * fp32 GEMMs, as cuda_matmul_paths reports, the 1e-5 check is against the fp32 result.) parity_bf16_weights then checks the
 * bf16 weight copies (kernels/cuda/bf16.cu): the fused AdamW kernel keeps them equal, bit
 * for bit, to the rounded fp32 master weights, and the GEMMs read them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.h"
#include "runtime/tensor.h"
#include "tests/gpu/parity.h"

enum { G_DINP = 1, G_DWEIGHT = 2, G_DBIAS = 4, G_ALL = 7 };

typedef struct {
    int N, C, OC;
    int bias;   /* forward with a bias */
    int grads;  /* G_* bits: which gradients the backward asks for */
    int offset; /* floats between each device allocation's start and the operand */
} MatmulCase;

/* a host copy of x with every element rounded to bf16 (and widened back) */
static float *h_round_bf16(const float *x, size_t n) {
    float *r = h_copy(x, n);
    for (size_t i = 0; i < n; i++) r[i] = f32_from_bf16(bf16_from_f32(r[i]));
    return r;
}

/* the GEMM path of the calls between two cuda_matmul_paths snapshots: 1 every operand
 * rounded to bf16 (bf16 in memory or FAST_16BF), 0 plain fp32, -1 mixed, -2 no GEMM */
static int gemm_path(const long a[3], const long b[3]) {
    long r = (b[0] - a[0]) + (b[1] - a[1]), f = b[2] - a[2];
    return r && !f ? 1 : f && !r ? 0 : r && f ? -1 : -2;
}

/* the 1e-5 check of a bf16-mode result: against `rounded` (the CPU over bf16 operands) or
 * `fp32` as the path says */
static void check_exact(Parity *p, const char *name, int path, const float *rounded,
                        const float *fp32, const float *got, size_t n) {
    if (path == -2) return;
    if (path == -1) {
        printf("FAIL %s: the GEMMs of one call took different paths\n", name);
        p->failed++;
        return;
    }
    parity_check(p, name, path ? rounded : fp32, got, n, 1e-5);
}

/* got - init and ref - init (the increments a backward added), checked like parity_check */
static void check_increment(Parity *p, const char *name, const float *ref, const float *got,
                            const float *init, size_t n, double tol) {
    float *dr = h_copy(ref, n), *dg = h_copy(got, n);
    for (size_t i = 0; i < n; i++) {
        dr[i] -= init[i];
        dg[i] -= init[i];
    }
    parity_check(p, name, dr, dg, n, tol);
    free(dr);
    free(dg);
}

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
    long before[3], after[3];
    kernels_cpu.matmul_forward(ref, inp, w, NULL, c->bias ? b : NULL, N, C, OC, KP_FP32);
    cuda_matmul_paths(before);
    kernels_cuda.matmul_forward(d_out, d_inp, d_w, NULL, c->bias ? d_b : NULL, N, C, OC, PREC(p));
    kernels_cuda.matmul_forward(d_out, d_inp, d_w, NULL, c->bias ? d_b : NULL, N, C, OC, PREC(p));
    cuda_matmul_paths(after);
    d_download(got, d_out, nout);
    snprintf(name, sizeof name, "matmul fwd %s: out", tag);
    parity_check(p, name, ref, got, nout, tol);
    float *inp16 = NULL, *w16 = NULL, *dout16 = NULL;
    if (p->bf16) { /* the exact oracle: the CPU's fp32 GEMM over bf16-rounded operands */
        inp16 = h_round_bf16(inp, nin);
        w16 = h_round_bf16(w, nw);
        dout16 = h_round_bf16(dout, nout);
        float *ref16 = h_zeros(nout);
        kernels_cpu.matmul_forward(ref16, inp16, w16, NULL, c->bias ? b : NULL, N, C, OC, KP_FP32);
        int path = gemm_path(before, after);
        snprintf(name, sizeof name, "matmul fwd %s: out (%s)", tag, path ? "bf16 operands" : "fp32");
        check_exact(p, name, path, ref16, ref, got, nout);
        free(ref16);
    }
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
    kernels_cpu.matmul_backward(r_dinp, r_dw, r_db, dout, inp, w, NULL, N, C, OC, KP_FP32);
    long bg0[2], bg1[2];
    cuda_matmul_paths(before);
    cuda_matmul_bgrad_stats(&bg0[0], &bg0[1]);
    kernels_cuda.matmul_backward(d_dinp, d_dw, d_db, d_dout, d_inp, d_w, NULL, N, C, OC, PREC(p));
    cuda_matmul_paths(after);
    cuda_matmul_bgrad_stats(&bg1[0], &bg1[1]);
    const int bpath = gemm_path(before, after);
    /* dbias by the dweight GEMM's BGRADB epilogue sums the B operand that GEMM read: dout
     * rounded to bf16 on the bf16-operand path; else (fp32 operands, the column-sum kernels)
     * the fp32 dout */
    const int bgrad16 = bg1[0] > bg0[0] && bpath == 1;
    /* bf16: the oracle over rounded operands */
    float *e_dinp = NULL, *e_dw = NULL, *e_db = NULL;
    if (p->bf16) {
        e_dinp = r_dinp ? h_copy(dinp0, nin) : NULL;
        e_dw = r_dw ? h_copy(dw0, nw) : NULL;
        e_db = r_db && bgrad16 ? h_copy(db0, (size_t)OC) : NULL;
        kernels_cpu.matmul_backward(e_dinp, e_dw, e_db, dout16, inp16, w16, NULL, N, C, OC, KP_FP32);
    }
    const struct {
        const char *what;
        const float *ref, *dev, *exact, *init;
        size_t n;
    } grads[3] = {{"dinp", r_dinp, d_dinp, e_dinp, dinp0, nin},
                  {"dweight", r_dw, d_dw, e_dw, dw0, nw},
                  {"dbias", r_db, d_db, e_db ? e_db : r_db, db0, (size_t)OC}};
    for (int i = 0; i < 3; i++) {
        if (!grads[i].ref) continue;
        float *h = h_zeros(grads[i].n);
        d_download(h, grads[i].dev, grads[i].n);
        snprintf(name, sizeof name, "matmul bwd %s: %s", tag, grads[i].what);
        if (p->bf16) {
            check_increment(p, name, grads[i].ref, h, grads[i].init, grads[i].n, tol);
            int path = i < 2 ? bpath : e_db ? 1 : 0;
            snprintf(name, sizeof name, "matmul bwd %s: %s (%s)", tag, grads[i].what,
                     path == 1 ? "bf16 operands" : "fp32");
            check_exact(p, name, path, grads[i].exact, grads[i].ref, h, grads[i].n);
        } else {
            parity_check(p, name, grads[i].ref, h, grads[i].n, tol);
        }
        free(h);
    }
    free(inp16);
    free(w16);
    free(dout16);
    free(e_dinp);
    free(e_dw);
    free(e_db);

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

/* The same GEMMs with the input stored in bf16 (activations in bf16: matmul_*_x16). The
 * oracle is the CPU's fp32 GEMM over the widened input: exact fp32 (1e-5) in the fp32 pass;
 * in the bf16 pass over bf16-rounded weights and dout too (or the fp32 one when a fallback
 * ran fp32), within 1e-5. */
static void run_case_x16(Parity *p, const MatmulCase *c) {
    const int N = c->N, C = c->C, OC = c->OC, off = c->offset;
    const size_t nin = (size_t)N * C, nw = (size_t)OC * C, nout = (size_t)N * OC;
    char tag[96];
    snprintf(tag, sizeof tag, "N=%d C=%d OC=%d%s%s", N, C, OC, c->bias ? " bias" : "",
             off == 1 ? " +4B" : off == 4 ? " +16B" : "");
    float *inp = h_rand(p, nin, -1.0f, 1.0f), *w = h_rand(p, nw, -1.0f, 1.0f);
    float *b = h_rand(p, (size_t)OC, -1.0f, 1.0f), *dout = h_rand(p, nout, -1.0f, 1.0f);
    float *dinp0 = h_rand(p, nin, -1.0f, 1.0f), *dw0 = h_rand(p, nw, -1.0f, 1.0f);
    float *inpr = h_round_bf16(inp, nin), *w16 = h_round_bf16(w, nw), *dout16 = h_round_bf16(dout, nout);
    uint16_t *h16 = calloc(nin + 2 * (size_t)off + 1, sizeof *h16);
    if (!h16) abort();
    for (size_t i = 0; i < nin; i++) h16[2 * off + i] = bf16_from_f32(inp[i]);
    uint16_t *d16 = cuda_malloc((nin + 2 * (size_t)off + 1) * sizeof *h16);
    cuda_copy_h2d(d16, h16, (nin + 2 * (size_t)off + 1) * sizeof *h16);
    const uint16_t *d_x = d16 + 2 * off; /* `off` floats' worth of bytes in */
    float *d_w_base, *d_b_base, *d_dout_base, *d_out_base, *d_dinp_base, *d_dw_base;
    float *d_w = upload_at(w, nw, off, &d_w_base), *d_b = upload_at(b, (size_t)OC, off, &d_b_base);
    float *d_dout = upload_at(dout, nout, off, &d_dout_base);
    float *d_out = upload_at(dout, nout, off, &d_out_base); /* garbage: overwritten */
    float *d_dinp = upload_at(dinp0, nin, off, &d_dinp_base), *d_dw = upload_at(dw0, nw, off, &d_dw_base);

    float *ref = h_zeros(nout), *ref16 = h_zeros(nout), *got = h_zeros(nout);
    kernels_cpu.matmul_forward(ref, inpr, w, NULL, c->bias ? b : NULL, N, C, OC, KP_FP32);
    kernels_cpu.matmul_forward(ref16, inpr, w16, NULL, c->bias ? b : NULL, N, C, OC, KP_FP32);
    long before[3], after[3];
    cuda_matmul_paths(before);
    kernels_cuda.matmul_forward_x16(d_out, NULL, d_x, d_w, NULL, c->bias ? d_b : NULL, N, C, OC, PREC(p));
    cuda_matmul_paths(after);
    d_download(got, d_out, nout);
    int path = p->bf16 ? gemm_path(before, after) : 0;
    check_exact(p, parity_name("matmul x16 fwd %s: out (%s)", tag, path == 1 ? "bf16 operands" : "fp32"),
                path, ref16, ref, got, nout);

    float *r_dinp = h_copy(dinp0, nin), *r_dw = h_copy(dw0, nw);
    float *e_dinp = h_copy(dinp0, nin), *e_dw = h_copy(dw0, nw);
    kernels_cpu.matmul_backward(r_dinp, r_dw, NULL, dout, inpr, w, NULL, N, C, OC, KP_FP32);
    kernels_cpu.matmul_backward(e_dinp, e_dw, NULL, dout16, inpr, w16, NULL, N, C, OC, KP_FP32);
    cuda_matmul_paths(before);
    kernels_cuda.matmul_backward_x16(d_dinp, d_dw, NULL, d_dout, d_x, d_w, NULL, N, C, OC, PREC(p));
    cuda_matmul_paths(after);
    path = p->bf16 ? gemm_path(before, after) : 0;
    float *h = h_zeros(nin);
    d_download(h, d_dinp, nin);
    check_exact(p, parity_name("matmul x16 bwd %s: dinp (%s)", tag, path == 1 ? "bf16 operands" : "fp32"),
                path, e_dinp, r_dinp, h, nin);
    free(h);
    h = h_zeros(nw);
    d_download(h, d_dw, nw);
    check_exact(p, parity_name("matmul x16 bwd %s: dweight (%s)", tag, path == 1 ? "bf16 operands" : "fp32"),
                path, e_dw, r_dw, h, nw);
    free(h);

    cuda_free(d16);
    d_free(d_w_base); d_free(d_b_base); d_free(d_dout_base); d_free(d_out_base);
    d_free(d_dinp_base); d_free(d_dw_base);
    free(inp); free(w); free(b); free(dout); free(dinp0); free(dw0); free(inpr); free(w16);
    free(dout16); free(h16); free(ref); free(ref16); free(got); free(r_dinp); free(r_dw);
    free(e_dinp); free(e_dw);
}

/* The bf16 weight copy of a flat buffer (runtime/memory.c's ParamStore w16, passed to the
 * kernels as an argument): a weight (OC, C) lives at an odd offset inside a buffer of n
 * floats that has a bf16 copy. Three fused AdamW steps over the whole buffer with the copy
 * must leave it equal, bit for bit, to bf16(fp32 master); the forward GEMM given the copy as
 * weight16 must then equal the CPU's GEMM over the rounded master weights. Then the fp32
 * buffer is overwritten behind the copy's back: the GEMM given the copy must still see the
 * copy (it reads the bf16 weights, not a fresh conversion) until the copy is refreshed with
 * the table's f32_to_bf16, after which it sees the new weights; given no copy (NULL) it
 * converts the fp32 weights it is passed. */
static void parity_bf16_weights(Parity *p) {
    const int N = 37, C = 96, OC = 65, at = 129;
    const size_t n = (size_t)at + (size_t)OC * C + 77, nw = (size_t)OC * C, nin = (size_t)N * C;
    float *params = h_rand(p, n, -1.0f, 1.0f), *grads = h_rand(p, n, -1.0f, 1.0f);
    float *mv = h_zeros(n);
    float *d_params = d_upload(params, n), *d_grads = d_upload(grads, n);
    float *d_m = d_upload(mv, n), *d_v = d_upload(mv, n);
    uint16_t *copy = cuda_malloc(n * sizeof *copy);
    kernels_cuda.f32_to_bf16(copy, d_params, n);
    for (int t = 1; t <= 3; t++)
        kernels_cuda.adamw_update(d_params, copy, d_grads, d_m, d_v, n, 1e-2f, 0.9f, 0.95f, 1e-8f,
                                  0.1f, t, 1.0f);
    float *master = h_zeros(n);
    uint16_t *h16 = malloc(n * sizeof *h16);
    if (!h16) abort();
    d_download(master, d_params, n);
    cuda_copy_d2h(h16, copy, n * sizeof *h16);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += h16[i] != bf16_from_f32(master[i]);
    int ok = bad == 0 && memcmp(master, params, n * sizeof *master) != 0;
    printf("%s bf16 weights: copy == bf16(master) after 3 fused AdamW steps (%zu of %zu differ)\n",
           ok ? "ok  " : "FAIL", bad, n);
    if (ok) p->passed++;
    else p->failed++;

    float *inp = h_rand(p, nin, -1.0f, 1.0f), *d_inp = d_upload(inp, nin);
    float *inp16 = h_round_bf16(inp, nin), *ref = h_zeros((size_t)N * OC), *got = h_zeros((size_t)N * OC);
    float *w_old = h_round_bf16(master + at, nw);
    float *d_out = d_zeros((size_t)N * OC);
    float *w_new = NULL, *w_new16 = NULL;
    kernels_cpu.matmul_forward(ref, inp16, w_old, NULL, NULL, N, C, OC, KP_FP32);
    long before[3], after[3];
    cuda_matmul_paths(before);
    kernels_cuda.matmul_forward(d_out, d_inp, d_params + at, copy + at, NULL, N, C, OC, KP_BF16);
    cuda_matmul_paths(after);
    d_download(got, d_out, (size_t)N * OC);
    if (after[0] == before[0]) { /* a fallback ran (EMU_LT_REJECT=bf16io): no copy was read */
        printf("skip bf16 weights: the GEMMs with the copy (cuBLASLt has no bf16-operand algorithm)\n");
        goto done;
    }
    parity_check(p, "bf16 weights: GEMM over the copy == CPU GEMM over rounded master", ref, got,
                 (size_t)N * OC, 1e-5);

    w_new = h_rand(p, nw, -1.0f, 1.0f); /* written behind the copy's back */
    cuda_copy_h2d(d_params + at, w_new, nw * sizeof *w_new);
    kernels_cuda.matmul_forward(d_out, d_inp, d_params + at, copy + at, NULL, N, C, OC, KP_BF16);
    d_download(got, d_out, (size_t)N * OC);
    parity_check(p, "bf16 weights: a stale copy is what the GEMM reads", ref, got, (size_t)N * OC, 1e-5);
    w_new16 = h_round_bf16(w_new, nw);
    kernels_cpu.matmul_forward(ref, inp16, w_new16, NULL, NULL, N, C, OC, KP_FP32);
    kernels_cuda.matmul_forward(d_out, d_inp, d_params + at, NULL, NULL, N, C, OC, KP_BF16);
    d_download(got, d_out, (size_t)N * OC);
    parity_check(p, "bf16 weights: without a copy the GEMM converts the fp32 weights", ref, got,
                 (size_t)N * OC, 1e-5);
    kernels_cuda.f32_to_bf16(copy + at, d_params + at, nw);
    kernels_cuda.matmul_forward(d_out, d_inp, d_params + at, copy + at, NULL, N, C, OC, KP_BF16);
    d_download(got, d_out, (size_t)N * OC);
    parity_check(p, "bf16 weights: after refresh the GEMM reads the new weights", ref, got,
                 (size_t)N * OC, 1e-5);

done:
    cuda_free(copy);
    d_free(d_params);
    d_free(d_grads);
    d_free(d_m);
    d_free(d_v);
    d_free(d_inp);
    d_free(d_out);
    free(params);
    free(grads);
    free(mv);
    free(master);
    free(h16);
    free(inp);
    free(inp16);
    free(ref);
    free(got);
    free(w_old);
    free(w_new);
    free(w_new16);
}

/* the storage conversions of the op table (bf16 activations): CUDA == CPU bit for bit, at
 * odd sizes and offsets (the x4 kernels need 16/8-byte alignment; the rest takes the scalar
 * path), including ties, infinities and NaN */
static void parity_conversions(Parity *p) {
    const size_t sizes[] = {1, 3, 4, 7, 1000, 4099};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
        for (size_t off = 0; off < 2; off++) {
            size_t n = sizes[k], tot = n + off;
            float *x = h_rand(p, tot, -300.0f, 300.0f), *back_c = h_zeros(tot), *back_g = h_zeros(tot);
            const float special[] = {1.0f + 1.0f / 256, 1.0f + 3.0f / 256, INFINITY, -INFINITY, NAN,
                                     3.4e38f, -0.0f};
            for (size_t i = 0; i < 7 && off + i < tot; i++) x[off + i] = special[i];
            uint16_t *hc = calloc(tot, 2), *hg = calloc(tot, 2);
            float *dx = d_upload(x, tot), *dback = d_zeros(tot);
            uint16_t *d16 = cuda_malloc(tot * 2);
            kernels_cpu.f32_to_bf16(hc + off, x + off, n);
            kernels_cuda.f32_to_bf16(d16 + off, dx + off, n);
            cuda_copy_d2h(hg, d16, tot * 2);
            kernels_cpu.bf16_to_f32(back_c + off, hc + off, n);
            kernels_cuda.bf16_to_f32(dback + off, d16 + off, n);
            d_download(back_g, dback, tot);
            int same = memcmp(hc + off, hg + off, n * 2) == 0 &&
                       memcmp(back_c + off, back_g + off, n * sizeof(float)) == 0;
            printf("%s bf16 storage conversions n=%zu offset=%zu: CUDA == CPU bitwise\n",
                   same ? "ok  " : "FAIL", n, off);
            if (same) p->passed++;
            else p->failed++;
            free(x); free(back_c); free(back_g); free(hc); free(hg);
            d_free(dx); d_free(dback); cuda_free(d16);
        }
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
    long e0, c0, e1, c1;
    cuda_matmul_bgrad_stats(&e0, &c0);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(p, &cases[i]);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if ((double)cases[i].N * cases[i].C * cases[i].OC < 5e7) run_case_x16(p, &cases[i]);
    cuda_matmul_bgrad_stats(&e1, &c1);
    printf("matmul bias gradients: %ld by the BGRADB epilogue, %ld by column sums\n", e1 - e0,
           c1 - c0);
    if (p->bf16) parity_bf16_weights(p);
    else parity_conversions(p);
}
