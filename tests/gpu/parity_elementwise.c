/* parity_elementwise.c - CUDA vs CPU for the elementwise ops (kernels/cuda/elementwise.cu):
 * embedding, GELU, SwiGLU (and its fused gate/up variant), RoPE, im2col, pixel shuffle, add, channel scale, drop_path.
 *
 * Every op runs on both tables from the same random inputs; gradient buffers start from
 * the same random values on both sides (so the += contract is checked too), and every
 * backward is also called with NULL gradient pointers. */
#include <stdio.h>
#include <stdlib.h>

#include "tests/gpu/parity.h"

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "parity_elementwise: out of memory\n");
        exit(1);
    }
    return p;
}

/* ids in [0, V); every id used when N >= V, repeats otherwise random */
static int *rand_ids(Parity *p, int N, int V) {
    int *ids = xmalloc((size_t)N * sizeof(int));
    for (int n = 0; n < N; n++) ids[n] = n < V ? n : (int)rng_below(&p->rng, (uint64_t)V);
    for (int n = N - 1; n > 0; n--) { /* shuffle so repeated ids are not in order */
        int j = (int)rng_below(&p->rng, (uint64_t)n + 1), t = ids[n];
        ids[n] = ids[j];
        ids[j] = t;
    }
    return ids;
}

/* ---- token embedding ---- */

static void parity_embedding(Parity *p) {
    static const struct { int N, V, C; } S[] = {
        {1, 1, 1},     {7, 5, 3},      {33, 9, 31},    {41, 2, 5}, /* V = 2: long chains */
        {130, 40, 64}, {130, 17, 257}, {64, 100, 1024},
        {3000, 1, 7}, {5000, 3000, 64}, {2000, 5000, 64}}; /* one id for all rows; large tables */
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        int N = S[s].N, V = S[s].V, C = S[s].C;
        size_t nt = (size_t)V * C, no = (size_t)N * C;
        int *ids = rand_ids(p, N, V);
        float *table = h_rand(p, nt, -1, 1);
        float *out = h_rand(p, no, -1, 1);
        int *d_ids = d_upload_i(ids, (size_t)N);
        float *d_table = d_upload(table, nt), *d_out = d_upload(out, no);
        kernels_cpu.embedding_forward(out, ids, table, N, C);
        kernels_cuda.embedding_forward(d_out, d_ids, d_table, N, C);
        parity_check_dev(p, parity_name("embedding fwd N=%d V=%d C=%d out", N, V, C), out, d_out, no);

        float *dout = h_rand(p, no, -1, 1), *dtable = h_rand(p, nt, -1, 1);
        float *d_dout = d_upload(dout, no), *d_dtable = d_upload(dtable, nt);
        kernels_cpu.embedding_backward(dtable, dout, ids, N, C, V);
        kernels_cuda.embedding_backward(d_dtable, d_dout, d_ids, N, C, V);
        parity_check_dev(p, parity_name("embedding bwd N=%d V=%d C=%d dtable", N, V, C), dtable, d_dtable, nt);
        /* rows sum in increasing n on both sides: the same bits */
        float *got = h_zeros(nt);
        d_download(got, d_dtable, nt);
        parity_check(p, parity_name("embedding bwd N=%d V=%d C=%d dtable bitwise", N, V, C), dtable,
                     got, nt, 0.0);
        free(got);
        if (N <= V) { /* distinct ids (rand_ids uses each id once while n < V): the plain scatter */
            kernels_cpu.scatter_rows_add(dtable, dout, ids, N, C);
            kernels_cuda.scatter_rows_add(d_dtable, d_dout, d_ids, N, C);
            parity_check_dev(p, parity_name("scatter_rows_add N=%d V=%d C=%d dtable", N, V, C), dtable,
                             d_dtable, nt);
            kernels_cuda.scatter_rows_add(NULL, d_dout, d_ids, N, C);
        }
        /* NULL: nothing to do, nothing changes */
        kernels_cuda.embedding_backward(NULL, d_dout, d_ids, N, C, V);
        parity_check_dev(p, parity_name("embedding bwd N=%d V=%d C=%d dtable=NULL (dtable kept)", N, V, C),
                  dtable, d_dtable, nt);

        free(ids), free(table), free(out), free(dout), free(dtable);
        d_free(d_ids), d_free(d_table), d_free(d_out), d_free(d_dout), d_free(d_dtable);
    }
}

/* ---- GELU and SwiGLU ---- */

static const size_t SIZES[] = {1, 7, 1000, 4099, 100003};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])

static void parity_gelu(Parity *p) {
    for (size_t s = 0; s < NSIZES; s++) {
        size_t n = SIZES[s];
        float *inp = h_rand(p, n, -8, 8), *out = h_rand(p, n, -1, 1);
        float *d_inp = d_upload(inp, n), *d_out = d_upload(out, n);
        kernels_cpu.gelu_forward(out, inp, n);
        kernels_cuda.gelu_forward(d_out, d_inp, n);
        parity_check_dev(p, parity_name("gelu fwd n=%zu out", n), out, d_out, n);

        float *dout = h_rand(p, n, -1, 1), *dinp = h_rand(p, n, -1, 1);
        float *d_dout = d_upload(dout, n), *d_dinp = d_upload(dinp, n);
        kernels_cpu.gelu_backward(dinp, dout, inp, n);
        kernels_cuda.gelu_backward(d_dinp, d_dout, d_inp, n);
        parity_check_dev(p, parity_name("gelu bwd n=%zu dinp", n), dinp, d_dinp, n);
        kernels_cuda.gelu_backward(NULL, d_dout, d_inp, n);
        parity_check_dev(p, parity_name("gelu bwd n=%zu dinp=NULL (dinp kept)", n), dinp, d_dinp, n);

        free(inp), free(out), free(dout), free(dinp);
        d_free(d_inp), d_free(d_out), d_free(d_dout), d_free(d_dinp);
    }
}

static void parity_swiglu(Parity *p) {
    for (size_t s = 0; s < NSIZES; s++) {
        size_t n = SIZES[s];
        float *gate = h_rand(p, n, -8, 8), *up = h_rand(p, n, -2, 2);
        float *out = h_rand(p, n, -1, 1);
        float *d_gate = d_upload(gate, n), *d_up = d_upload(up, n), *d_out = d_upload(out, n);
        kernels_cpu.swiglu_forward(out, gate, up, n);
        kernels_cuda.swiglu_forward(d_out, d_gate, d_up, n);
        parity_check_dev(p, parity_name("swiglu fwd n=%zu out", n), out, d_out, n);

        /* both gradients, then each one alone (the other NULL) */
        float *dout = h_rand(p, n, -1, 1);
        float *dgate = h_rand(p, n, -1, 1), *dup = h_rand(p, n, -1, 1);
        float *d_dout = d_upload(dout, n), *d_dgate = d_upload(dgate, n), *d_dup = d_upload(dup, n);
        for (int mode = 0; mode < 3; mode++) {
            int want_g = mode != 2, want_u = mode != 1;
            kernels_cpu.swiglu_backward(want_g ? dgate : NULL, want_u ? dup : NULL, dout, gate,
                                        up, n);
            kernels_cuda.swiglu_backward(want_g ? d_dgate : NULL, want_u ? d_dup : NULL, d_dout,
                                         d_gate, d_up, n);
            const char *tag = mode == 0 ? "" : mode == 1 ? " (dup=NULL)" : " (dgate=NULL)";
            parity_check_dev(p, parity_name("swiglu bwd n=%zu dgate%s", n, tag), dgate, d_dgate, n);
            parity_check_dev(p, parity_name("swiglu bwd n=%zu dup%s", n, tag), dup, d_dup, n);
        }
        kernels_cuda.swiglu_backward(NULL, NULL, d_dout, d_gate, d_up, n);
        parity_check_dev(p, parity_name("swiglu bwd n=%zu both NULL (dgate kept)", n), dgate, d_dgate, n);

        free(gate), free(up), free(out), free(dout), free(dgate), free(dup);
        d_free(d_gate), d_free(d_up), d_free(d_out), d_free(d_dout), d_free(d_dgate),
            d_free(d_dup);
    }
}

/* the fused gate/up variant: gu (N, 2I) rows [gate | up] */
static void parity_swiglu_fused(Parity *p) {
    static const struct { int N, I; } S[] = {{1, 1}, {7, 5}, {33, 64}, {3, 1100}};
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        int N = S[s].N, I = S[s].I;
        size_t n = (size_t)N * I;
        float *gu = h_rand(p, 2 * n, -8, 8), *out = h_rand(p, n, -1, 1);
        float *dout = h_rand(p, n, -1, 1), *dgu = h_rand(p, 2 * n, -1, 1);
        float *d_gu = d_upload(gu, 2 * n), *d_out = d_upload(out, n), *d_dout = d_upload(dout, n),
              *d_dgu = d_upload(dgu, 2 * n);
        kernels_cpu.swiglu_fused_forward(out, gu, N, I);
        kernels_cuda.swiglu_fused_forward(d_out, d_gu, N, I);
        parity_check_dev(p, parity_name("swiglu_fused fwd N=%d I=%d out", N, I), out, d_out, n);
        kernels_cpu.swiglu_fused_backward(dgu, dout, gu, N, I);
        kernels_cuda.swiglu_fused_backward(d_dgu, d_dout, d_gu, N, I);
        parity_check_dev(p, parity_name("swiglu_fused bwd N=%d I=%d dgu", N, I), dgu, d_dgu, 2 * n);
        kernels_cuda.swiglu_fused_backward(NULL, d_dout, d_gu, N, I);
        free(gu), free(out), free(dout), free(dgu);
        d_free(d_gu), d_free(d_out), d_free(d_dout), d_free(d_dgu);
    }
}

/* ---- RoPE ---- */

static void parity_rope(Parity *p) {
    /* HD = 258 takes more than one of the CPU's 128-frequency blocks */
    static const struct { int N, NH, HD, maxpos; float theta; } S[] = {
        {1, 1, 2, 16, 10000.0f},   {7, 3, 6, 100, 10000.0f},     {33, 4, 64, 8192, 10000.0f},
        {5, 2, 258, 4096, 1e6f},   {130, 2, 128, 131072, 1e6f}};
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        int N = S[s].N, NH = S[s].NH, HD = S[s].HD;
        float theta = S[s].theta;
        size_t n = (size_t)N * NH * HD;
        int *pos = xmalloc((size_t)N * sizeof(int));
        for (int i = 0; i < N; i++) pos[i] = (int)rng_below(&p->rng, (uint64_t)S[s].maxpos);
        float *inp = h_rand(p, n, -2, 2), *out = h_rand(p, n, -1, 1);
        int *d_pos = d_upload_i(pos, (size_t)N);
        float *d_inp = d_upload(inp, n), *d_out = d_upload(out, n);
        kernels_cpu.rope_forward(out, inp, pos, N, NH, HD, theta);
        kernels_cuda.rope_forward(d_out, d_inp, d_pos, N, NH, HD, theta);
        parity_check_dev(p, parity_name("rope fwd N=%d NH=%d HD=%d out", N, NH, HD), out, d_out, n);
        /* in place: out == inp */
        kernels_cuda.rope_forward(d_inp, d_inp, d_pos, N, NH, HD, theta);
        parity_check_dev(p, parity_name("rope fwd N=%d NH=%d HD=%d in-place out", N, NH, HD), out, d_inp, n);

        float *dout = h_rand(p, n, -1, 1), *dinp = h_rand(p, n, -1, 1);
        float *d_dout = d_upload(dout, n), *d_dinp = d_upload(dinp, n);
        kernels_cpu.rope_backward(dinp, dout, pos, N, NH, HD, theta);
        kernels_cuda.rope_backward(d_dinp, d_dout, d_pos, N, NH, HD, theta);
        parity_check_dev(p, parity_name("rope bwd N=%d NH=%d HD=%d dinp", N, NH, HD), dinp, d_dinp, n);
        kernels_cuda.rope_backward(NULL, d_dout, d_pos, N, NH, HD, theta);
        parity_check_dev(p, parity_name("rope bwd N=%d NH=%d HD=%d dinp=NULL (dinp kept)", N, NH, HD), dinp,
                  d_dinp, n);

        free(pos), free(inp), free(out), free(dout), free(dinp);
        d_free(d_pos), d_free(d_inp), d_free(d_out), d_free(d_dout), d_free(d_dinp);
    }
}

/* ---- im2col and pixel shuffle ---- */

static void parity_im2col(Parity *p) {
    static const struct { int B, CH, H, W, p; } S[] = {
        {1, 1, 1, 1, 1}, {2, 3, 14, 14, 7}, {1, 2, 6, 9, 3}, {3, 3, 16, 8, 4}, {2, 1, 12, 12, 1}};
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        int B = S[s].B, CH = S[s].CH, H = S[s].H, W = S[s].W, P = S[s].p;
        size_t ni = (size_t)B * CH * H * W, nc = (size_t)B * (H / P) * (W / P) * CH * P * P;
        float *img = h_rand(p, ni, -1, 1), *cols = h_rand(p, nc, -1, 1);
        float *d_img = d_upload(img, ni), *d_cols = d_upload(cols, nc);
        kernels_cpu.im2col_forward(cols, img, B, CH, H, W, P);
        kernels_cuda.im2col_forward(d_cols, d_img, B, CH, H, W, P);
        parity_check_dev(p, parity_name("im2col fwd B=%d CH=%d H=%d W=%d p=%d cols", B, CH, H, W, P), cols,
                  d_cols, nc);

        float *dcols = h_rand(p, nc, -1, 1), *dimg = h_rand(p, ni, -1, 1);
        float *d_dcols = d_upload(dcols, nc), *d_dimg = d_upload(dimg, ni);
        kernels_cpu.im2col_backward(dimg, dcols, B, CH, H, W, P);
        kernels_cuda.im2col_backward(d_dimg, d_dcols, B, CH, H, W, P);
        parity_check_dev(p, parity_name("im2col bwd B=%d CH=%d H=%d W=%d p=%d dimg", B, CH, H, W, P), dimg,
                  d_dimg, ni);
        kernels_cuda.im2col_backward(NULL, d_dcols, B, CH, H, W, P);
        parity_check_dev(p, parity_name("im2col bwd B=%d CH=%d H=%d W=%d p=%d dimg=NULL (dimg kept)", B, CH, H,
                        W, P),
                  dimg, d_dimg, ni);

        free(img), free(cols), free(dcols), free(dimg);
        d_free(d_img), d_free(d_cols), d_free(d_dcols), d_free(d_dimg);
    }
}

static void parity_pixel_shuffle(Parity *p) {
    static const struct { int B, G, C; } S[] = {{1, 2, 1}, {2, 4, 3}, {1, 6, 31}, {3, 8, 64}};
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        int B = S[s].B, G = S[s].G, C = S[s].C;
        size_t n = (size_t)B * G * G * C; /* same count on both sides */
        float *inp = h_rand(p, n, -1, 1), *out = h_rand(p, n, -1, 1);
        float *d_inp = d_upload(inp, n), *d_out = d_upload(out, n);
        kernels_cpu.pixel_shuffle_forward(out, inp, B, G, C);
        kernels_cuda.pixel_shuffle_forward(d_out, d_inp, B, G, C);
        parity_check_dev(p, parity_name("pixel_shuffle fwd B=%d G=%d C=%d out", B, G, C), out, d_out, n);

        float *dout = h_rand(p, n, -1, 1), *dinp = h_rand(p, n, -1, 1);
        float *d_dout = d_upload(dout, n), *d_dinp = d_upload(dinp, n);
        kernels_cpu.pixel_shuffle_backward(dinp, dout, B, G, C);
        kernels_cuda.pixel_shuffle_backward(d_dinp, d_dout, B, G, C);
        parity_check_dev(p, parity_name("pixel_shuffle bwd B=%d G=%d C=%d dinp", B, G, C), dinp, d_dinp, n);
        kernels_cuda.pixel_shuffle_backward(NULL, d_dout, B, G, C);
        parity_check_dev(p, parity_name("pixel_shuffle bwd B=%d G=%d C=%d dinp=NULL (dinp kept)", B, G, C),
                  dinp, d_dinp, n);

        free(inp), free(out), free(dout), free(dinp);
        d_free(d_inp), d_free(d_out), d_free(d_dout), d_free(d_dinp);
    }
}

/* ---- residual add, channel scale, drop_path ---- */

static void parity_add(Parity *p) {
    for (size_t s = 0; s < NSIZES; s++) {
        size_t n = SIZES[s];
        float *a = h_rand(p, n, -1, 1), *b = h_rand(p, n, -1, 1), *out = h_rand(p, n, -1, 1);
        float *d_a = d_upload(a, n), *d_b = d_upload(b, n), *d_out = d_upload(out, n);
        kernels_cpu.add_forward(out, a, b, n);
        kernels_cuda.add_forward(d_out, d_a, d_b, n);
        parity_check_dev(p, parity_name("add fwd n=%zu out", n), out, d_out, n);

        float *dout = h_rand(p, n, -1, 1), *da = h_rand(p, n, -1, 1), *db = h_rand(p, n, -1, 1);
        float *d_dout = d_upload(dout, n), *d_da = d_upload(da, n), *d_db = d_upload(db, n);
        for (int mode = 0; mode < 3; mode++) {
            int want_a = mode != 2, want_b = mode != 1;
            kernels_cpu.add_backward(want_a ? da : NULL, want_b ? db : NULL, dout, n);
            kernels_cuda.add_backward(want_a ? d_da : NULL, want_b ? d_db : NULL, d_dout, n);
            const char *tag = mode == 0 ? "" : mode == 1 ? " (db=NULL)" : " (da=NULL)";
            parity_check_dev(p, parity_name("add bwd n=%zu da%s", n, tag), da, d_da, n);
            parity_check_dev(p, parity_name("add bwd n=%zu db%s", n, tag), db, d_db, n);
        }
        /* add(x, x): both gradients are the same buffer */
        kernels_cpu.add_backward(da, da, dout, n);
        kernels_cuda.add_backward(d_da, d_da, d_dout, n);
        parity_check_dev(p, parity_name("add bwd n=%zu da=db (same buffer)", n), da, d_da, n);

        free(a), free(b), free(out), free(dout), free(da), free(db);
        d_free(d_a), d_free(d_b), d_free(d_out), d_free(d_dout), d_free(d_da), d_free(d_db);
    }
}

static void parity_channel_scale(Parity *p) {
    /* the larger shapes split dscale's rows into several chunks on the GPU */
    static const struct { int N, C; } S[] = {{1, 1},    {7, 3},     {33, 31},
                                             {130, 64}, {1000, 257}, {4100, 1024}};
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        int N = S[s].N, C = S[s].C;
        size_t n = (size_t)N * C;
        float *inp = h_rand(p, n, -1, 1), *scale = h_rand(p, (size_t)C, -1, 1);
        float *out = h_rand(p, n, -1, 1);
        float *d_inp = d_upload(inp, n), *d_scale = d_upload(scale, (size_t)C);
        float *d_out = d_upload(out, n);
        kernels_cpu.channel_scale_forward(out, inp, scale, N, C);
        kernels_cuda.channel_scale_forward(d_out, d_inp, d_scale, N, C);
        parity_check_dev(p, parity_name("channel_scale fwd N=%d C=%d out", N, C), out, d_out, n);

        float *dout = h_rand(p, n, -1, 1), *dinp = h_rand(p, n, -1, 1);
        float *dscale = h_rand(p, (size_t)C, -1, 1);
        float *d_dout = d_upload(dout, n), *d_dinp = d_upload(dinp, n);
        float *d_dscale = d_upload(dscale, (size_t)C);
        for (int mode = 0; mode < 3; mode++) {
            int want_x = mode != 2, want_s = mode != 1;
            kernels_cpu.channel_scale_backward(want_x ? dinp : NULL, want_s ? dscale : NULL,
                                               dout, inp, scale, N, C);
            kernels_cuda.channel_scale_backward(want_x ? d_dinp : NULL, want_s ? d_dscale : NULL,
                                                d_dout, d_inp, d_scale, N, C);
            const char *tag = mode == 0 ? "" : mode == 1 ? " (dscale=NULL)" : " (dinp=NULL)";
            parity_check_dev(p, parity_name("channel_scale bwd N=%d C=%d dinp%s", N, C, tag), dinp, d_dinp, n);
            parity_check_dev(p, parity_name("channel_scale bwd N=%d C=%d dscale%s", N, C, tag), dscale, d_dscale,
                      (size_t)C);
        }

        free(inp), free(scale), free(out), free(dout), free(dinp), free(dscale);
        d_free(d_inp), d_free(d_scale), d_free(d_out), d_free(d_dout), d_free(d_dinp),
            d_free(d_dscale);
    }
}

static void parity_drop_path(Parity *p) {
    static const struct { int B; size_t per; } S[] = {{1, 1}, {3, 7}, {4, 1000}, {2, 100003}};
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        int B = S[s].B;
        size_t per = S[s].per, n = (size_t)B * per;
        /* dropped (0) and kept (1/(1-rate)) samples, as the runtime draws them */
        float *keep = xmalloc((size_t)B * sizeof(float));
        for (int b = 0; b < B; b++) keep[b] = b % 3 == 1 ? 0.0f : 1.0f / (1.0f - 0.1f);
        float *inp = h_rand(p, n, -1, 1), *out = h_rand(p, n, -1, 1);
        float *d_keep = d_upload(keep, (size_t)B), *d_inp = d_upload(inp, n);
        float *d_out = d_upload(out, n);
        kernels_cpu.drop_path_forward(out, inp, keep, B, per);
        kernels_cuda.drop_path_forward(d_out, d_inp, d_keep, B, per);
        parity_check_dev(p, parity_name("drop_path fwd B=%d per_sample=%zu out", B, per), out, d_out, n);

        float *dout = h_rand(p, n, -1, 1), *dinp = h_rand(p, n, -1, 1);
        float *d_dout = d_upload(dout, n), *d_dinp = d_upload(dinp, n);
        kernels_cpu.drop_path_backward(dinp, dout, keep, B, per);
        kernels_cuda.drop_path_backward(d_dinp, d_dout, d_keep, B, per);
        parity_check_dev(p, parity_name("drop_path bwd B=%d per_sample=%zu dinp", B, per), dinp, d_dinp, n);
        kernels_cuda.drop_path_backward(NULL, d_dout, d_keep, B, per);
        parity_check_dev(p, parity_name("drop_path bwd B=%d per_sample=%zu dinp=NULL (dinp kept)", B, per), dinp,
                  d_dinp, n);

        free(keep), free(inp), free(out), free(dout), free(dinp);
        d_free(d_keep), d_free(d_inp), d_free(d_out), d_free(d_dout), d_free(d_dinp);
    }
}

void parity_elementwise(Parity *p) {
    parity_embedding(p);
    parity_gelu(p);
    parity_swiglu(p);
    parity_swiglu_fused(p);
    parity_rope(p);
    parity_im2col(p);
    parity_pixel_shuffle(p);
    parity_add(p);
    parity_channel_scale(p);
    parity_drop_path(p);
}
