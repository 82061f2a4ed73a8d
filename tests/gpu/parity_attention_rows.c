/* parity_attention_rows.c - kernels_cuda.attention_rows_forward / backward (the decoder's
 * last layer at the rewarded rows, kernels/cuda/attention_rows.cu) against the CPU rows op
 * and against the CUDA full attention at those rows (tests/gpu/parity.h). Run by the
 * attention group, in both passes.
 *
 * Cases: causal and bidirectional, without segments and with random docs that have a shared
 * prefix and branches (packing and share_prefix), MHA and GQA, head dims 64, 128 and odd ones
 * (33, 80), padded and empty sequences, T past one and several rounds of the kernels' key
 * tiles. The rows are each sequence's last token, every doc's last token (with segments) and
 * a few random tokens. The fp32 pass holds the rows op to 1e-5 against both references; the
 * bf16 pass (HD 64/128 round like the tensor-core full op) compares with the CPU on
 * bf16-rounded inputs (the full op's own bf16 test's tolerances) and with the CUDA full op
 * (attention_impl mmrm: FA2). Gradients start random (the += contract) and some cases pass
 * NULL for some of them; the full op's backward gets an upstream gradient that is zero off
 * the rows. The rows op runs twice: the same bits (no order-dependent reduction). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/scalar.h"
#include "tests/gpu/parity.h"

enum { R_DQ = 1, R_DK = 2, R_DV = 4, R_ALL = 7 };

typedef struct {
    int B, T, NH, KV, HD, causal, grads;
    int lengths[3];
    int seg; /* 0: none; else docs of at most `seg` tokens, half with prefix + branches */
} RowsCase;

/* segment ids (op_list.h): each sequence's valid tokens cut into docs of 1..seg tokens,
 * half of those of 4+ tokens a shared prefix (branch 0) and 2 branches; padding is garbage */
static int *rows_seg(Parity *p, const RowsCase *c) {
    int *seg = malloc((size_t)c->B * c->T * sizeof *seg);
    float *u = h_rand(p, (size_t)3 * c->B * c->T + 3, 0.0f, 1.0f);
    size_t ui = 0;
    if (!seg) abort();
    for (int b = 0; b < c->B; b++) {
        int *row = seg + (size_t)b * c->T, doc = (int)(3 * u[ui++]);
        for (int t = c->lengths[b]; t < c->T; t++) row[t] = (int)(0x7ffe0000u | (unsigned)t);
        for (int t = 0; t < c->lengths[b]; doc++) {
            int len = 1 + (int)(c->seg * u[ui++]);
            if (len > c->lengths[b] - t) len = c->lengths[b] - t;
            const int prefix = len >= 4 && u[ui++] < 0.5f ? len / 2 : len;
            for (int i = 0; i < len; i++)
                row[t + i] = doc << 16 | (i < prefix ? 0 : 1 + (i - prefix) * 2 / (len - prefix));
            t += len;
        }
    }
    free(u);
    return seg;
}

/* the rows (increasing b*T + t): each sequence's last token, the last token of every doc or
 * branch (segments), and each other token with probability 1/16; returns M */
static int pick_rows(Parity *p, const RowsCase *c, const int *seg, int *rows) {
    int M = 0;
    float *u = h_rand(p, (size_t)c->B * c->T, 0.0f, 1.0f);
    for (int b = 0; b < c->B; b++)
        for (int t = 0; t < c->lengths[b]; t++) {
            const int *s = seg ? seg + (size_t)b * c->T : NULL;
            const int last = t == c->lengths[b] - 1 || (s && s[t + 1] != s[t]);
            if (last || u[(size_t)b * c->T + t] < 1.0f / 16) rows[M++] = b * c->T + t;
        }
    free(u);
    return M;
}

static float *rounded(const float *x, size_t n, int bf) {
    float *y = h_copy(x, n);
    for (size_t i = 0; bf && i < n; i++) {
        uint32_t w = (uint32_t)kscalar_bf16_rn(x[i]) << 16;
        memcpy(&y[i], &w, 4);
    }
    return y;
}

static float *download(const float *d, size_t n) {
    float *h = h_zeros(n);
    d_download(h, d, n);
    return h;
}

static void run_rows_case(Parity *p, const RowsCase *c) {
    const int B = c->B, T = c->T, NH = c->NH, KV = c->KV, HD = c->HD, prec = PREC(p);
    const int bf = p->bf16 && (HD == 64 || HD == 128); /* the tensor-core path's rounding */
    const size_t nq = (size_t)B * T * NH * HD, nkv = (size_t)B * T * KV * HD;
    const size_t nlse = (size_t)B * NH * T;
    char tag[160];
    int n = snprintf(tag, sizeof tag, "rows B=%d T=%d NH=%d KV=%d HD=%d %s len=", B, T, NH, KV,
                     HD, c->causal ? "causal" : "bidir");
    for (int b = 0; b < B && n > 0 && (size_t)n < sizeof tag; b++)
        n += snprintf(tag + n, sizeof tag - (size_t)n, b ? ",%d" : "%d", c->lengths[b]);
    if (c->seg && n > 0 && (size_t)n < sizeof tag)
        snprintf(tag + n, sizeof tag - (size_t)n, " seg(docs<=%d)", c->seg);
    int *seg = c->seg ? rows_seg(p, c) : NULL;
    int *rows = malloc((size_t)B * T * sizeof *rows);
    if (!rows) abort();
    const int M = pick_rows(p, c, seg, rows);
    const size_t nm = (size_t)M * NH * HD, nml = (size_t)M * NH;

    float *q = h_rand(p, nq, -1.0f, 1.0f), *k = h_rand(p, nkv, -1.0f, 1.0f);
    float *v = h_rand(p, nkv, -1.0f, 1.0f), *doutm = h_rand(p, nm, -1.0f, 1.0f);
    float *qm = h_zeros(nm);
    for (int m = 0; m < M; m++)
        memcpy(qm + (size_t)m * NH * HD, q + (size_t)rows[m] * NH * HD, (size_t)NH * HD * 4);
    /* the CPU reference (fp32 at every precision) on the inputs the device path sees */
    float *qr = rounded(qm, nm, bf), *kr = rounded(k, nkv, bf), *vr = rounded(v, nkv, bf);
    float *dor = rounded(doutm, nm, bf);
    float *out = h_zeros(nm), *lse = h_zeros(nml);
    kernels_cpu.attention_rows_forward(out, lse, qr, kr, vr, rows, c->lengths, seg, M, B, T, NH,
                                       KV, HD, c->causal, KP_FP32);

    int *d_rows = d_upload_i(rows, (size_t)(M ? M : 1)), *d_len = d_upload_i(c->lengths, (size_t)B);
    int *d_seg = seg ? d_upload_i(seg, (size_t)B * T) : NULL;
    float *d_q = d_upload(q, nq), *d_qm = d_upload(qm, nm), *d_k = d_upload(k, nkv);
    float *d_v = d_upload(v, nkv);
    float *junk = h_rand(p, nm, -100.0f, 100.0f); /* every output element must be written */
    float *d_out = d_upload(junk, nm), *d_lse = d_upload(junk, nml);
    kernels_cuda.attention_rows_forward(d_out, d_lse, d_qm, d_k, d_v, d_rows, d_len, d_seg, M, B,
                                        T, NH, KV, HD, c->causal, prec);
    float *got = download(d_out, nm), *got_lse = download(d_lse, nml);
    /* bf16: P is rounded for P V (as FA2); lse from fp32 scores of bf16 inputs */
    const double tol_out = bf ? parity_tol(p) : 1e-5, tol_grad = bf ? parity_tol(p) : 1e-5;
    parity_check(p, parity_name("attn %s: out vs cpu rows", tag), out, got, nm, tol_out);
    parity_check(p, parity_name("attn %s: lse vs cpu rows", tag), lse, got_lse, nml, 1e-5);

    /* the CUDA full op at those rows (FA2 at bf16: attention_impl mmrm) */
    cuda_attention_set_impl(ATTN_IMPL_MMRM);
    float *d_fout = d_zeros(nq), *d_flse = d_zeros(nlse);
    kernels_cuda.attention_forward(d_fout, d_flse, d_q, d_k, d_v, d_len, d_seg, B, T, NH, KV, HD,
                                   c->causal, prec);
    float *fout = download(d_fout, nq), *flse = download(d_flse, nlse);
    float *fo_m = h_zeros(nm), *fl_m = h_zeros(nml);
    for (int m = 0; m < M; m++) {
        const int b = rows[m] / T, t = rows[m] % T;
        memcpy(fo_m + (size_t)m * NH * HD, fout + (size_t)rows[m] * NH * HD, (size_t)NH * HD * 4);
        for (int h = 0; h < NH; h++) fl_m[(size_t)h * M + m] = flse[((size_t)b * NH + h) * T + t];
    }
    parity_check(p, parity_name("attn %s: out vs cuda full", tag), fo_m, got, nm, tol_out);
    parity_check(p, parity_name("attn %s: lse vs cuda full", tag), fl_m, got_lse, nml, 1e-5);

    /* backward from the CPU rows forward's out and lse; gradients start random (+=) */
    float *g0[3] = {h_rand(p, nm, -1.0f, 1.0f), h_rand(p, nkv, -1.0f, 1.0f),
                    h_rand(p, nkv, -1.0f, 1.0f)};
    const size_t gn[3] = {nm, nkv, nkv};
    float *ref[3], *dev[3], *dev2[3];
    for (int i = 0; i < 3; i++) {
        const int want = c->grads >> i & 1;
        ref[i] = want ? h_copy(g0[i], gn[i]) : NULL;
        dev[i] = want ? d_upload(g0[i], gn[i]) : NULL;
        dev2[i] = want ? d_upload(g0[i], gn[i]) : NULL;
    }
    kernels_cpu.attention_rows_backward(ref[0], ref[1], ref[2], dor, out, lse, qr, kr, vr, rows,
                                        c->lengths, seg, M, B, T, NH, KV, HD, c->causal, KP_FP32);
    float *d_dout = d_upload(doutm, nm);
    d_free(d_out), d_free(d_lse);
    d_out = d_upload(out, nm), d_lse = d_upload(lse, nml);
    kernels_cuda.attention_rows_backward(dev[0], dev[1], dev[2], d_dout, d_out, d_lse, d_qm, d_k,
                                         d_v, d_rows, d_len, d_seg, M, B, T, NH, KV, HD, c->causal,
                                         prec);
    kernels_cuda.attention_rows_backward(dev2[0], dev2[1], dev2[2], d_dout, d_out, d_lse, d_qm,
                                         d_k, d_v, d_rows, d_len, d_seg, M, B, T, NH, KV, HD,
                                         c->causal, prec);

    /* the full op's backward with dout zero off the rows, from its own forward */
    float *fdout = h_zeros(nq), *fg[3] = {NULL, NULL, NULL}, *d_fg[3];
    for (int m = 0; m < M; m++)
        memcpy(fdout + (size_t)rows[m] * NH * HD, doutm + (size_t)m * NH * HD, (size_t)NH * HD * 4);
    float *d_fdout = d_upload(fdout, nq);
    const size_t fgn[3] = {nq, nkv, nkv};
    for (int i = 0; i < 3; i++) d_fg[i] = c->grads >> i & 1 ? d_zeros(fgn[i]) : NULL;
    kernels_cuda.attention_backward(d_fg[0], d_fg[1], d_fg[2], d_fdout, d_fout, d_flse, d_q, d_k,
                                    d_v, d_len, d_seg, B, T, NH, KV, HD, c->causal, prec);
    cuda_attention_set_impl(ATTN_IMPL_AUTO);
    for (int i = 0; i < 3; i++) fg[i] = d_fg[i] ? download(d_fg[i], fgn[i]) : NULL;
    if (fg[0]) { /* dq at the rows */
        float *g = h_zeros(nm);
        for (int m = 0; m < M; m++)
            memcpy(g + (size_t)m * NH * HD, fg[0] + (size_t)rows[m] * NH * HD, (size_t)NH * HD * 4);
        free(fg[0]);
        fg[0] = g;
    }
    static const char *gname[3] = {"dq", "dk", "dv"};
    for (int i = 0; i < 3; i++) {
        if (!ref[i]) continue;
        float *h = download(dev[i], gn[i]), *h2 = download(dev2[i], gn[i]);
        parity_check(p, parity_name("attn %s: %s twice, same bits", tag, gname[i]), h, h2, gn[i], 0.0);
        /* the increments over the random start */
        for (size_t j = 0; j < gn[i]; j++) {
            h[j] -= g0[i][j];
            ref[i][j] -= g0[i][j];
        }
        parity_check(p, parity_name("attn %s: %s vs cpu rows", tag, gname[i]), ref[i], h, gn[i],
                     tol_grad);
        parity_check(p, parity_name("attn %s: %s vs cuda full", tag, gname[i]), fg[i], h, gn[i],
                     tol_grad);
        free(h), free(h2), free(ref[i]), free(fg[i]);
        d_free(dev[i]), d_free(dev2[i]), d_free(d_fg[i]);
    }
    for (int i = 0; i < 3; i++) free(g0[i]);
    d_free(d_rows), d_free(d_len), d_free(d_q), d_free(d_qm), d_free(d_k), d_free(d_v);
    d_free(d_out), d_free(d_lse), d_free(d_fout), d_free(d_flse), d_free(d_dout), d_free(d_fdout);
    if (d_seg) d_free(d_seg);
    free(seg), free(rows), free(q), free(k), free(v), free(doutm), free(qm), free(qr), free(kr);
    free(vr), free(dor), free(out), free(lse), free(junk), free(got), free(got_lse), free(fout);
    free(flse), free(fo_m), free(fl_m), free(fdout);
}

void parity_attention_rows(Parity *p) {
    static const RowsCase cases[] = {
        /* B  T    NH KV HD   causal grads          lengths          seg */
        {1, 1, 2, 2, 64, 1, R_DV, {1}, 0}, /* one key: dq = dk = 0 up to rounding */
        {2, 70, 4, 2, 64, 1, R_ALL, {70, 45}, 0},
        {3, 130, 4, 1, 128, 1, R_ALL, {130, 0, 97}, 0},
        {2, 97, 4, 4, 64, 0, R_ALL, {97, 20}, 0},
        {2, 65, 6, 2, 33, 1, R_ALL, {65, 40}, 0},
        {1, 300, 2, 1, 80, 1, R_DK | R_DV, {300}, 0},
        {1, 257, 4, 2, 64, 1, R_ALL, {257}, 60},
        {2, 200, 2, 2, 128, 0, R_ALL, {200, 150}, 70},
        {3, 99, 6, 3, 33, 1, R_ALL, {99, 0, 64}, 30},
        {2, 130, 4, 1, 64, 1, R_DQ, {130, 77}, 40},
        {1, 600, 14, 2, 64, 1, R_ALL, {587}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (!(p->quick && cases[i].T > 512)) run_rows_case(p, &cases[i]);
}
