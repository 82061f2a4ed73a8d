/* parity_bf16act.c - the CUDA kernels over bf16-stored activations (the *_x16 entries of
 * kernels/op_list.h: norm.cu, elementwise_bf16.cu, elementwise.cu's channel scale,
 * matmul.cu's bf16 output) and the fused residual add + norm, against the CPU's fp32
 * kernels on the same bf16-rounded inputs.
 *
 * A bf16 output is checked twice: against the CPU's fp32 result (rel <= 4e-3: bf16 keeps 8
 * significant bits, so rounding alone is up to 2^-9 per element) and against that result
 * rounded to bf16 (rel <= 1e-3: a different rounding, e.g. truncation, or an fp32 result off
 * by more than an ulp in many elements fails). fp32 outputs (gradients, statistics) are held
 * to 1e-4 (fp32 row sums against the CPU's double ones). Gradients start from the same
 * random values on both sides (+=). Sizes have odd tails, and some cases start every array
 * one element past a 16-byte boundary, so both the 16-byte vector path and the scalar path
 * of every kernel run. Last, a small network of ops (runtime/ops.c) with bf16 activations
 * runs forward and backward with no fp32 staging at all (Graph.staged_bytes stays 0), and
 * gives the values of the same network staged through fp32 (the table without its *_x16
 * entries but the GEMMs'). Attention over bf16 activations (the native entries) gives the
 * staged path's bits (parity_attn16), and so do the attention rows ops (rows16_ops,
 * rows16_kernels). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_kernels.h" /* cuda_attention_cudnn_covers (parity_attn16) */
#include "kernels/scalar.h"
#include "runtime/ops.h"
#include "tests/gpu/parity.h"

static const double kTol16 = 4e-3, kTolRound = 1e-3, kTol32 = 1e-4;

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "parity_bf16act: out of memory\n");
        exit(1);
    }
    return p;
}

static float widen(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* random values already representable in bf16 (the CPU reads them as fp32) */
static float *r16(Parity *p, size_t n, float lo, float hi) {
    float *x = h_rand(p, n, lo, hi);
    for (size_t i = 0; i < n; i++) x[i] = widen(kscalar_bf16_rn(x[i]));
    return x;
}

/* Device arrays: each allocation holds one spare element in front, so `mis` starts the
 * array one element (2 or 4 bytes) past the 256-byte aligned allocation. */
typedef struct { void *base; void *p; } Dev;

static Dev up16(const float *h, size_t n, int mis) {
    uint16_t *t = xmalloc(n * 2);
    for (size_t i = 0; i < n; i++) t[i] = kscalar_bf16_rn(h[i]);
    Dev d = {cuda_malloc((n + 1) * 2), NULL};
    d.p = (uint16_t *)d.base + (mis ? 1 : 0);
    cuda_copy_h2d(d.p, t, n * 2);
    free(t);
    return d;
}

static Dev up32(const float *h, size_t n, int mis) {
    Dev d = {cuda_malloc((n + 1) * 4), NULL};
    d.p = (float *)d.base + (mis ? 1 : 0);
    cuda_copy_h2d(d.p, h, n * 4);
    return d;
}

static void dfree(Dev d) { d_free(d.base); }

/* a bf16 device result against the CPU's fp32 ref (see the header) */
static void check16(Parity *p, const char *what, const float *ref, const void *d, size_t n) {
    uint16_t *h = xmalloc(n * 2);
    float *got = xmalloc(n * 4), *ref16 = xmalloc(n * 4);
    cuda_copy_d2h(h, d, n * 2);
    for (size_t i = 0; i < n; i++) {
        got[i] = widen(h[i]);
        ref16[i] = widen(kscalar_bf16_rn(ref[i]));
    }
    char name[256];
    snprintf(name, sizeof name, "%s", what);
    parity_check(p, name, ref, got, n, kTol16);
    snprintf(name, sizeof name, "%s = bf16(cpu)", what);
    parity_check(p, name, ref16, got, n, kTolRound);
    free(h);
    free(got);
    free(ref16);
}

static void check32(Parity *p, const char *what, const float *ref, const void *d, size_t n) {
    float *got = xmalloc(n * 4);
    cuda_copy_d2h(got, d, n * 4);
    parity_check(p, what, ref, got, n, kTol32);
    free(got);
}

/* ---- norms and the fused residual add + norm ---- */

static void parity_norms16(Parity *p) {
    static const struct { int N, C, mis; } S[] = {
        {7, 3, 0}, {33, 37, 0}, {130, 64, 0}, {9, 896, 0}, {5, 1024, 0}, {33, 64, 1}, {17, 13, 1}};
    const float eps = 1e-5f;
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        int N = S[s].N, C = S[s].C, mis = S[s].mis;
        size_t n = (size_t)N * C;
        const char *mt = mis ? " misaligned" : "";
        for (int layer = 0; layer < 2; layer++) {
            const char *nm = layer ? "layernorm" : "rmsnorm";
            float *x = r16(p, n, -2, 2), *a = r16(p, n, -1, 1);
            float *w = h_rand(p, C, 0.5f, 1.5f), *b = h_rand(p, C, -0.5f, 0.5f);
            float *out = h_zeros(n), *sum = h_zeros(n), *mean = h_zeros(N), *rstd = h_zeros(N);
            Dev dx = up16(x, n, mis), da = up16(a, n, mis), dw = up32(w, C, mis),
                db = up32(b, C, mis);
            Dev dout = up16(out, n, mis), dsum = up16(sum, n, mis);
            Dev dmean = up32(mean, N, 0), drstd = up32(rstd, N, 0);
            /* plain norm */
            if (layer) {
                kernels_cpu.layernorm_forward(out, mean, rstd, x, w, b, N, C, eps);
                kernels_cuda.layernorm_forward_x16(dout.p, dmean.p, drstd.p, dx.p, dw.p, db.p, N, C,
                                                   eps);
                check32(p, parity_name("%s x16 fwd N=%d C=%d%s mean", nm, N, C, mt), mean, dmean.p, N);
            } else {
                kernels_cpu.rmsnorm_forward(out, rstd, x, w, N, C, eps);
                kernels_cuda.rmsnorm_forward_x16(dout.p, drstd.p, dx.p, dw.p, N, C, eps);
            }
            check16(p, parity_name("%s x16 fwd N=%d C=%d%s out", nm, N, C, mt), out, dout.p, n);
            check32(p, parity_name("%s x16 fwd N=%d C=%d%s rstd", nm, N, C, mt), rstd, drstd.p, N);

            /* backward from the CPU's statistics */
            float *g = h_rand(p, n, -1, 1), *dxh = h_rand(p, n, -1, 1);
            float *dwh = h_rand(p, C, -1, 1), *dbh = h_rand(p, C, -1, 1);
            Dev dg = up32(g, n, mis), ddx = up32(dxh, n, mis), ddw = up32(dwh, C, 0),
                ddb = up32(dbh, C, 0), cm = up32(mean, N, 0), cr = up32(rstd, N, 0);
            if (layer) {
                kernels_cpu.layernorm_backward(dxh, dwh, dbh, g, x, w, mean, rstd, N, C);
                kernels_cuda.layernorm_backward_x16(ddx.p, ddw.p, ddb.p, dg.p, dx.p, dw.p, cm.p,
                                                    cr.p, N, C);
                check32(p, parity_name("%s x16 bwd N=%d C=%d%s dbias", nm, N, C, mt), dbh, ddb.p, C);
            } else {
                kernels_cpu.rmsnorm_backward(dxh, dwh, g, x, w, rstd, N, C);
                kernels_cuda.rmsnorm_backward_x16(ddx.p, ddw.p, dg.p, dx.p, dw.p, cr.p, N, C);
            }
            check32(p, parity_name("%s x16 bwd N=%d C=%d%s dinp", nm, N, C, mt), dxh, ddx.p, n);
            check32(p, parity_name("%s x16 bwd N=%d C=%d%s dweight", nm, N, C, mt), dwh, ddw.p, C);

            /* fused add + norm: the CPU adds in fp32, the sum is rounded to bf16 (what the
             * kernel stores and normalises), then the CPU norm of the rounded sum */
            for (size_t i = 0; i < n; i++) sum[i] = widen(kscalar_bf16_rn(x[i] + a[i]));
            if (layer) {
                kernels_cpu.layernorm_forward(out, mean, rstd, sum, w, b, N, C, eps);
                kernels_cuda.add_layernorm_forward_x16(dsum.p, dout.p, dmean.p, drstd.p, dx.p,
                                                       da.p, dw.p, db.p, N, C, eps);
                check32(p, parity_name("add_%s x16 N=%d C=%d%s mean", nm, N, C, mt), mean, dmean.p, N);
            } else {
                kernels_cpu.rmsnorm_forward(out, rstd, sum, w, N, C, eps);
                kernels_cuda.add_rmsnorm_forward_x16(dsum.p, dout.p, drstd.p, dx.p, da.p, dw.p, N,
                                                     C, eps);
            }
            check16(p, parity_name("add_%s x16 N=%d C=%d%s sum", nm, N, C, mt), sum, dsum.p, n);
            check16(p, parity_name("add_%s x16 N=%d C=%d%s out", nm, N, C, mt), out, dout.p, n);
            check32(p, parity_name("add_%s x16 N=%d C=%d%s rstd", nm, N, C, mt), rstd, drstd.p, N);

            /* the fused backward, fp32 and bf16 sum, with and without the sum's own gradient:
             * the CPU reference is the norm's backward into (a copy of) dsum, then the add's */
            for (int form = 0; form < 4; form++) {
                int x16 = form & 1, with_dsum = form >> 1;
                float *ds = h_rand(p, n, -1, 1), *go = h_rand(p, n, -1, 1);
                float *gx = h_rand(p, n, -1, 1), *ga = h_rand(p, n, -1, 1);
                float *gw = h_rand(p, C, -1, 1), *gb = h_rand(p, C, -1, 1);
                Dev Dds = up32(ds, n, mis), Dgo = up32(go, n, mis), Dgx = up32(gx, n, mis),
                    Dga = up32(ga, n, mis), Dgw = up32(gw, C, 0), Dgb = up32(gb, C, 0);
                Dev Ds = x16 ? up16(sum, n, mis) : up32(sum, n, mis), Dm = up32(mean, N, 0),
                    Dr = up32(rstd, N, 0);
                float *ref = with_dsum ? h_copy(ds, n) : h_zeros(n);
                const float *dsp = with_dsum ? Dds.p : NULL;
                if (layer) {
                    kernels_cpu.layernorm_backward(ref, gw, gb, go, sum, w, mean, rstd, N, C);
                    if (x16)
                        kernels_cuda.add_layernorm_backward_x16(Dgx.p, Dga.p, Dgw.p, Dgb.p, dsp, Dgo.p,
                                                                Ds.p, dw.p, Dm.p, Dr.p, N, C);
                    else
                        kernels_cuda.add_layernorm_backward(Dgx.p, Dga.p, Dgw.p, Dgb.p, dsp, Dgo.p,
                                                            Ds.p, dw.p, Dm.p, Dr.p, N, C);
                } else {
                    kernels_cpu.rmsnorm_backward(ref, gw, go, sum, w, rstd, N, C);
                    if (x16)
                        kernels_cuda.add_rmsnorm_backward_x16(Dgx.p, Dga.p, Dgw.p, dsp, Dgo.p, Ds.p,
                                                              dw.p, Dr.p, N, C);
                    else
                        kernels_cuda.add_rmsnorm_backward(Dgx.p, Dga.p, Dgw.p, dsp, Dgo.p, Ds.p,
                                                          dw.p, Dr.p, N, C);
                }
                kernels_cpu.add_backward(gx, ga, ref, n);
                const char *ft = parity_name("add_%s bwd%s N=%d C=%d%s%s", nm, x16 ? " x16" : "",
                                             N, C, mt, with_dsum ? "" : " dsum=NULL");
                char tag[200];
                snprintf(tag, sizeof tag, "%s", ft);
                check32(p, parity_name("%s dx", tag), gx, Dgx.p, n);
                check32(p, parity_name("%s da", tag), ga, Dga.p, n);
                check32(p, parity_name("%s dweight", tag), gw, Dgw.p, C);
                if (layer) check32(p, parity_name("%s dbias", tag), gb, Dgb.p, C);
                Dev dv[] = {Dds, Dgo, Dgx, Dga, Dgw, Dgb, Ds, Dm, Dr};
                for (size_t k = 0; k < sizeof dv / sizeof dv[0]; k++) dfree(dv[k]);
                float *hv[] = {ds, go, gx, ga, gw, gb, ref};
                for (size_t k = 0; k < sizeof hv / sizeof hv[0]; k++) free(hv[k]);
            }

            /* the fp32 fused kernels (both tables) */
            float *s32 = h_zeros(n), *o32 = h_zeros(n);
            Dev fx = up32(x, n, mis), fa = up32(a, n, mis), fs = up32(s32, n, mis),
                fo = up32(o32, n, mis);
            if (layer) {
                kernels_cpu.add_layernorm_forward(s32, o32, mean, rstd, x, a, w, b, N, C, eps);
                kernels_cuda.add_layernorm_forward(fs.p, fo.p, dmean.p, drstd.p, fx.p, fa.p, dw.p,
                                                   db.p, N, C, eps);
            } else {
                kernels_cpu.add_rmsnorm_forward(s32, o32, rstd, x, a, w, N, C, eps);
                kernels_cuda.add_rmsnorm_forward(fs.p, fo.p, drstd.p, fx.p, fa.p, dw.p, N, C, eps);
            }
            parity_check_dev(p, parity_name("add_%s fp32 N=%d C=%d%s sum", nm, N, C, mt), s32, fs.p, n);
            parity_check_dev(p, parity_name("add_%s fp32 N=%d C=%d%s out", nm, N, C, mt), o32, fo.p, n);
            parity_check_dev(p, parity_name("add_%s fp32 N=%d C=%d%s rstd", nm, N, C, mt), rstd, drstd.p, N);

            Dev all[] = {dx, da, dw, db, dout, dsum, dmean, drstd, dg, ddx, ddw, ddb, cm, cr, fx, fa, fs, fo};
            for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) dfree(all[k]);
            float *hs[] = {x, a, w, b, out, sum, mean, rstd, g, dxh, dwh, dbh, s32, o32};
            for (size_t k = 0; k < sizeof hs / sizeof hs[0]; k++) free(hs[k]);
        }
    }
}

/* ---- flat element-wise ops ---- */

static void parity_flat16(Parity *p) {
    static const struct { size_t n; int mis; } S[] = {{1, 0}, {7, 0}, {8, 0}, {1000, 0}, {4099, 0},
                                                      {1000, 1}, {77, 1}};
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        size_t n = S[s].n;
        int mis = S[s].mis;
        const char *mt = mis ? " misaligned" : "";
        float *x = r16(p, n, -4, 4), *u = r16(p, n, -2, 2), *out = h_zeros(n);
        Dev dx = up16(x, n, mis), du = up16(u, n, mis), dout = up16(out, n, mis);
        kernels_cpu.gelu_forward(out, x, n);
        kernels_cuda.gelu_forward_x16(dout.p, dx.p, n);
        check16(p, parity_name("gelu x16 fwd n=%zu%s", n, mt), out, dout.p, n);
        kernels_cpu.swiglu_forward(out, x, u, n);
        kernels_cuda.swiglu_forward_x16(dout.p, dx.p, du.p, n);
        check16(p, parity_name("swiglu x16 fwd n=%zu%s", n, mt), out, dout.p, n);
        kernels_cpu.add_forward(out, x, u, n);
        kernels_cuda.add_forward_x16(dout.p, dx.p, du.p, n);
        check16(p, parity_name("add x16 fwd n=%zu%s", n, mt), out, dout.p, n);

        float *g = h_rand(p, n, -1, 1), *d1 = h_rand(p, n, -1, 1), *d2 = h_rand(p, n, -1, 1);
        Dev dg = up32(g, n, mis), dd1 = up32(d1, n, mis), dd2 = up32(d2, n, mis);
        kernels_cpu.gelu_backward(d1, g, x, n);
        kernels_cuda.gelu_backward_x16(dd1.p, dg.p, dx.p, n);
        check32(p, parity_name("gelu x16 bwd n=%zu%s dinp", n, mt), d1, dd1.p, n);
        kernels_cpu.swiglu_backward(d1, d2, g, x, u, n);
        kernels_cuda.swiglu_backward_x16(dd1.p, dd2.p, dg.p, dx.p, du.p, n);
        check32(p, parity_name("swiglu x16 bwd n=%zu%s dgate", n, mt), d1, dd1.p, n);
        check32(p, parity_name("swiglu x16 bwd n=%zu%s dup", n, mt), d2, dd2.p, n);
        kernels_cpu.swiglu_backward(NULL, d2, g, x, u, n);
        kernels_cuda.swiglu_backward_x16(NULL, dd2.p, dg.p, dx.p, du.p, n);
        check32(p, parity_name("swiglu x16 bwd n=%zu%s dup (dgate=NULL)", n, mt), d2, dd2.p, n);

        /* drop_path over B samples and channel scale over C columns */
        int B = n % 3 == 0 ? 3 : 1;
        float keep[3] = {0.0f, 1.25f, 1.25f};
        Dev dk = up32(keep, 3, 0);
        kernels_cpu.drop_path_forward(out, x, keep, B, n / B);
        kernels_cuda.drop_path_forward_x16(dout.p, dx.p, dk.p, B, n / B);
        check16(p, parity_name("drop_path x16 fwd n=%zu B=%d%s", n, B, mt), out, dout.p, n);
        int C = n % 8 == 0 ? 8 : (int)(n % 7 == 0 ? 7 : 1);
        int N = (int)(n / C);
        float *sc = h_rand(p, C, 0.5f, 1.5f), *dsc = h_rand(p, C, -1, 1);
        Dev dsch = up32(sc, C, mis), ddsc = up32(dsc, C, 0);
        kernels_cpu.channel_scale_forward(out, x, sc, N, C);
        kernels_cuda.channel_scale_forward_x16(dout.p, dx.p, dsch.p, N, C);
        check16(p, parity_name("channel_scale x16 fwd N=%d C=%d%s", N, C, mt), out, dout.p, n);
        kernels_cpu.channel_scale_backward(d1, dsc, g, x, sc, N, C);
        kernels_cuda.channel_scale_backward_x16(dd1.p, ddsc.p, dg.p, dx.p, dsch.p, N, C);
        check32(p, parity_name("channel_scale x16 bwd N=%d C=%d%s dinp", N, C, mt), d1, dd1.p, n);
        check32(p, parity_name("channel_scale x16 bwd N=%d C=%d%s dscale", N, C, mt), dsc, ddsc.p, C);

        Dev all[] = {dx, du, dout, dg, dd1, dd2, dk, dsch, ddsc};
        for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) dfree(all[k]);
        float *hs[] = {x, u, out, g, d1, d2, sc, dsc};
        for (size_t k = 0; k < sizeof hs / sizeof hs[0]; k++) free(hs[k]);
    }
}

/* ---- RoPE, gathers, pixel shuffle, im2col ---- */

static void parity_layout16(Parity *p) {
    static const struct { int N, NH, HD, mis; } R[] = {
        {5, 3, 8, 0}, {7, 2, 64, 0}, {3, 4, 128, 0}, {4, 2, 6, 0}, {6, 2, 64, 1}};
    for (size_t s = 0; s < sizeof R / sizeof R[0]; s++) {
        int N = R[s].N, NH = R[s].NH, HD = R[s].HD, mis = R[s].mis;
        size_t n = (size_t)N * NH * HD;
        int *pos = xmalloc(N * sizeof(int));
        for (int i = 0; i < N; i++) pos[i] = (int)rng_below(&p->rng, 4096);
        int *dpos = d_upload_i(pos, N);
        float *x = r16(p, n, -2, 2), *out = h_zeros(n);
        Dev dx = up16(x, n, mis), dout = up16(out, n, mis);
        kernels_cpu.rope_forward(out, x, pos, N, NH, HD, 1e6f);
        kernels_cuda.rope_forward_x16(dout.p, dx.p, dpos, N, NH, HD, 1e6f);
        check16(p, parity_name("rope x16 fwd N=%d NH=%d HD=%d%s", N, NH, HD, mis ? " misaligned" : ""),
                out, dout.p, n);
        dfree(dx);
        dfree(dout);
        d_free(dpos);
        free(pos);
        free(x);
        free(out);
    }
    static const struct { int N, V, C, mis; } G[] = {{7, 5, 3, 0}, {33, 9, 64, 0}, {20, 40, 37, 0}, {16, 8, 64, 1}};
    for (size_t s = 0; s < sizeof G / sizeof G[0]; s++) {
        int N = G[s].N, V = G[s].V, C = G[s].C, mis = G[s].mis;
        int *ids = xmalloc(N * sizeof(int));
        for (int i = 0; i < N; i++) ids[i] = (int)rng_below(&p->rng, (uint64_t)V);
        int *dids = d_upload_i(ids, N);
        float *table = r16(p, (size_t)V * C, -1, 1), *out = h_zeros((size_t)N * C);
        Dev dt16 = up16(table, (size_t)V * C, mis), dt32 = up32(table, (size_t)V * C, mis);
        Dev dout = up16(out, (size_t)N * C, mis);
        kernels_cpu.embedding_forward(out, ids, table, N, C);
        kernels_cuda.gather_rows_x16(dout.p, dids, dt16.p, N, C);
        check16(p, parity_name("gather_rows x16 N=%d V=%d C=%d%s", N, V, C, mis ? " misaligned" : ""),
                out, dout.p, (size_t)N * C);
        kernels_cuda.embedding_forward_x16(dout.p, dids, dt32.p, N, C);
        check16(p, parity_name("embedding x16 N=%d V=%d C=%d%s", N, V, C, mis ? " misaligned" : ""),
                out, dout.p, (size_t)N * C);
        dfree(dt16);
        dfree(dt32);
        dfree(dout);
        d_free(dids);
        free(ids);
        free(table);
        free(out);
    }
    static const struct { int B, G, C, mis; } P[] = {{2, 4, 3, 0}, {1, 6, 16, 0}, {2, 4, 8, 1}};
    for (size_t s = 0; s < sizeof P / sizeof P[0]; s++) {
        int B = P[s].B, Gd = P[s].G, C = P[s].C, mis = P[s].mis;
        size_t n = (size_t)B * Gd * Gd * C;
        float *x = r16(p, n, -1, 1), *out = h_zeros(n);
        Dev dx = up16(x, n, mis), dout = up16(out, n, mis);
        kernels_cpu.pixel_shuffle_forward(out, x, B, Gd, C);
        kernels_cuda.pixel_shuffle_forward_x16(dout.p, dx.p, B, Gd, C);
        check16(p, parity_name("pixel_shuffle x16 B=%d G=%d C=%d%s", B, Gd, C, mis ? " misaligned" : ""),
                out, dout.p, n);
        dfree(dx);
        dfree(dout);
        free(x);
        free(out);
    }
    static const struct { int B, CH, H, W, pp; } I[] = {{2, 3, 8, 8, 4}, {1, 3, 12, 9, 3}};
    for (size_t s = 0; s < sizeof I / sizeof I[0]; s++) {
        int B = I[s].B, CH = I[s].CH, H = I[s].H, W = I[s].W, pp = I[s].pp;
        size_t ni = (size_t)B * CH * H * W, nc = (size_t)B * (H / pp) * (W / pp) * CH * pp * pp;
        float *img = h_rand(p, ni, -1, 1), *cols = h_zeros(nc);
        Dev dimg = up32(img, ni, 0), dcols = up16(cols, nc, s % 2);
        kernels_cpu.im2col_forward(cols, img, B, CH, H, W, pp);
        kernels_cuda.im2col_forward_x16(dcols.p, dimg.p, B, CH, H, W, pp);
        check16(p, parity_name("im2col x16 B=%d CH=%d H=%d W=%d p=%d", B, CH, H, W, pp), cols, dcols.p, nc);
        dfree(dimg);
        dfree(dcols);
        free(img);
        free(cols);
    }
}

/* ---- GEMMs writing bf16 (matmul_forward_x16 with out16) ---- */

static void parity_matmul_out16(Parity *p) {
    static const struct { int N, C, OC, bias; } S[] = {{7, 33, 17, 1}, {64, 64, 96, 1}, {16, 32, 24, 0}};
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        int N = S[s].N, C = S[s].C, OC = S[s].OC;
        for (int prec = 0; prec < 2; prec++) {
            int kp = prec ? KP_BF16 : KP_FP32;
            /* KP_BF16 rounds the weight too: give the CPU the rounded weight */
            float *x = r16(p, (size_t)N * C, -1, 1), *w = r16(p, (size_t)OC * C, -0.5f, 0.5f);
            float *b = h_rand(p, OC, -0.5f, 0.5f), *out = h_zeros((size_t)N * OC);
            Dev dx = up16(x, (size_t)N * C, 0), dw = up32(w, (size_t)OC * C, 0), db = up32(b, OC, 0);
            Dev dout = up16(out, (size_t)N * OC, 0);
            long before = cuda_matmul_out16();
            kernels_cpu.matmul_forward(out, x, w, NULL, S[s].bias ? b : NULL, N, C, OC, KP_FP32);
            kernels_cuda.matmul_forward_x16(NULL, dout.p, dx.p, dw.p, NULL, S[s].bias ? db.p : NULL,
                                            N, C, OC, kp);
            long direct = cuda_matmul_out16() - before;
            check16(p, parity_name("matmul x16 out16 N=%d C=%d OC=%d%s %s (%s)", N, C, OC,
                                   S[s].bias ? " bias" : "", prec ? "bf16" : "fp32",
                                   direct ? "bf16 D" : "fp32 D, rounded"),
                    out, dout.p, (size_t)N * OC);
#ifdef MMRM_CUDA_EMU
            /* the emulated cuBLASLt has the bf16 D algorithm (unless EMU_LT_REJECT says not) */
            if (prec && !getenv("EMU_LT_REJECT")) {
                if (direct) p->passed++;
                else p->failed++;
                printf("%s matmul x16 out16 N=%d C=%d OC=%d: the bf16 GEMM wrote D in bf16\n",
                       direct ? "ok  " : "FAIL", N, C, OC);
            }
#endif
            dfree(dx);
            dfree(dw);
            dfree(db);
            dfree(dout);
            free(x);
            free(w);
            free(b);
            free(out);
        }
    }
}

/* ---- ops.c's dispatch: a network of every non-attention op over bf16 activations ---- */

enum { GB = 2, GT = 8, GC = 64, GV = 11, GI = 96, GNH = 4 };

typedef struct {
    Graph g;
    Tensor *w[12];  /* table, norm1, q, gate, up, down, norm2, norm3, bias3, scale, head1, head2 */
    float *out;     /* (9) the network's outputs, host */
    float *grads;   /* the parameter gradients, host, concatenated */
    size_t ngrads;
    size_t staged;  /* Graph.staged_bytes after forward + backward */
} Net;

static void net_run(Net *n, const KernelOps *K, uint64_t seed) {
    static const int shapes[12][2] = {{GV, GC}, {GC, 1}, {GC, GC}, {GI, GC}, {GI, GC}, {GC, GI},
                                      {GC, 1},  {GC, 1}, {GC, 1},  {GC, 1},  {1, 4 * GC}, {1, GC}};
    Graph *g = &n->g;
    graph_init(g, DEV_CUDA, 8 << 20, 7);
    g->K = K;
    graph_set_act_dtype(g, DT_BF16);
    graph_set_precision(g, KP_BF16);
    g->training = 1;
    Rng r = rng_make(seed, 3);
    for (int i = 0; i < 12; i++) {
        int nd = shapes[i][1] == 1 ? 1 : 2;
        n->w[i] = graph_tensor(g, "w", nd, (int[]){shapes[i][0], shapes[i][1]});
        size_t ne = n->w[i]->numel;
        float *h = xmalloc(ne * 4);
        int norm = i == 1 || i == 6 || i == 7 || i == 9;
        rng_fill_uniform(&r, h, ne, norm ? 0.5f : -0.3f, norm ? 1.5f : 0.3f);
        device_copy_from_host(DEV_CUDA, n->w[i]->data, h, ne * 4);
        free(h);
        n->w[i]->requires_grad = 1;
    }
    int ids[GB * GT], pos[GB * GT], idx[5] = {0, 3, 3, 9, 15};
    for (int i = 0; i < GB * GT; i++) ids[i] = (int)rng_below(&r, GV), pos[i] = i % GT;
    Tensor **w = n->w;
    Tensor *x = op_embedding(g, w[0], ids, GB, GT); /* (B, T, C) */
    Tensor *h = op_rmsnorm(g, x, w[1], 1e-6f);
    Tensor *q = op_rope(g, op_reshape(g, op_linear(g, h, w[2], NULL), 4, (int[]){GB, GT, GNH, GC / GNH}),
                        pos, 1e4f);
    Tensor *m = op_swiglu(g, op_linear(g, h, w[3], NULL), op_linear(g, h, w[4], NULL));
    Tensor *s, *s2;
    Tensor *h2 = op_add_rmsnorm(g, x, op_linear(g, m, w[5], NULL), w[6], 1e-6f, &s);
    Tensor *h3 = op_add_layernorm(g, op_reshape(g, q, 3, (int[]){GB, GT, GC}), h2, w[7], w[8], 1e-5f, &s2);
    Tensor *d = op_drop_path(g, op_channel_scale(g, op_gelu(g, op_add(g, h3, s)), w[9]), 0.3f);
    Tensor *o1 = op_linear_f32(g, op_pixel_shuffle(g, op_reshape(g, d, 3, (int[]){1, GB * GT, GC})),
                               w[10], NULL);                     /* (1, 4, 1) */
    Tensor *o2 = op_linear_f32(g, op_gather_rows(g, op_add(g, d, s2), idx, 5), w[11], NULL); /* (5, 1) */
    Tensor *out = op_concat_rows(g, o1, o2);                     /* (9, 1), bf16 */
    float proj[9];
    rng_fill_uniform(&r, proj, 9, -1, 1);
    graph_backward_from(g, out, proj);
    n->out = xmalloc(9 * 4);
    memcpy(n->out, graph_host(g, out), 9 * 4);
    n->ngrads = 0;
    for (int i = 0; i < 12; i++) n->ngrads += w[i]->numel;
    n->grads = xmalloc(n->ngrads * 4);
    size_t at = 0;
    for (int i = 0; i < 12; i++) {
        device_copy_to_host(DEV_CUDA, n->grads + at, w[i]->grad, w[i]->numel * 4);
        at += w[i]->numel;
    }
    n->staged = g->staged_bytes;
    graph_free(g);
}

static void parity_graph16(Parity *p) {
    KernelOps staged = kernels_cuda;
#define NO_X16(name, params) staged.name = NULL;
    KERNEL_OPS_OPTIONAL(NO_X16)
#undef NO_X16
    staged.matmul_forward_x16 = kernels_cuda.matmul_forward_x16;
    staged.matmul_backward_x16 = kernels_cuda.matmul_backward_x16;
    Net a, b;
    net_run(&a, &kernels_cuda, 5);
    net_run(&b, &staged, 5);
    int ok = a.staged == 0 && b.staged > 0;
    printf("%s ops over bf16 activations, no attention: %zu bytes staged through fp32 (%zu with "
           "the non-GEMM ops staged)\n", ok ? "ok  " : "FAIL", a.staged, b.staged);
    if (ok) p->passed++;
    else p->failed++;
    parity_check(p, "ops over bf16 activations: outputs (vs staged)", b.out, a.out, 9, 1e-2);
    parity_check(p, "ops over bf16 activations: parameter gradients (vs staged)", b.grads, a.grads,
                 a.ngrads, 1e-2);
    free(a.out);
    free(a.grads);
    free(b.out);
    free(b.grads);
}

/* ---- attention over bf16 q, k, v, out (attention_forward_x16 / backward_x16) against the
 * same op staged through fp32 (the table without those two entries): where the native
 * entry takes the call (bf16 precision, and cuDNN without segments where it covers the
 * call (a cuDNN build, attention_impl auto), else the FA2 kernels for HD 64/128) the math is
 * the same (q, k, v and out widened exactly, out rounded once from the same fp32 values:
 * FA2's epilogue stores bf16, cuDNN writes its bf16 O), so out and the q, k, v gradients
 * must be bit-identical and nothing is staged; elsewhere (HD 32 without cuDNN, fp32
 * precision) the entry declines: the same staged bytes both ways; a forward taken and a
 * backward declined (cuDNN, NH != KV, HD 32) stage less than the staged path. */

typedef struct {
    float *out, *grads; /* host: out (widened bf16), then dq | dk | dv */
    size_t nout, ngrads, staged;
} Attn16;

/* what attn16_run and rows16_run share: the bf16 graph on the table K; an input filled with
 * bf16-exact values (ties: q = k = 0, v on the bf16 grid of [1, 2)); the lengths and segments
 * of the B sequences; backward from a random projection, then out, dq | dk | dv and the staged
 * bytes collected and the graph freed */
static void a16_graph(Graph *g, const KernelOps *K, KernelPrecision prec) {
    graph_init(g, DEV_CUDA, 16 << 20, 7);
    g->K = K;
    graph_set_act_dtype(g, DT_BF16);
    graph_set_precision(g, prec);
    g->training = 1;
}

static void a16_fill(Tensor *x, int is_v, int ties, Rng *r) {
    size_t n = x->numel;
    float *h = xmalloc(n * 4);
    uint16_t *h16 = xmalloc(n * 2);
    if (ties) rng_fill_uniform(r, h, n, is_v ? 1.0f : 0.0f, is_v ? 1.99f : 0.0f);
    else rng_fill_uniform(r, h, n, -2, 2);
    for (size_t j = 0; j < n; j++) h16[j] = kscalar_bf16_rn(h[j]);
    device_copy_from_host(DEV_CUDA, x->data, h16, n * 2);
    free(h);
    free(h16);
    x->requires_grad = 1;
}

static void a16_segments(int B, int T, int *lengths, int *seg) {
    for (int b = 0; b < B; b++) lengths[b] = T - 9 * b;
    for (int i = 0; i < B * T; i++) { /* doc 0: prefix, branch 1, branch 2; doc 1 */
        int tt = i % T;
        seg[i] = tt < 24 ? (tt < 12 ? 0 : tt < 18 ? 1 : 2) : 1 << 16;
    }
}

static void a16_collect(Attn16 *a, Graph *g, Tensor *y, Tensor *t[3], Rng *r) {
    a->nout = y->numel;
    float *proj = xmalloc(a->nout * 4);
    rng_fill_uniform(r, proj, a->nout, -1, 1);
    graph_backward_from(g, y, proj);
    free(proj);
    a->out = xmalloc(a->nout * 4);
    memcpy(a->out, graph_host(g, y), a->nout * 4);
    a->ngrads = t[0]->numel + 2 * t[1]->numel;
    a->grads = xmalloc(a->ngrads * 4);
    size_t at = 0;
    for (int i = 0; i < 3; i++) {
        device_copy_to_host(DEV_CUDA, a->grads + at, t[i]->grad, t[i]->numel * 4);
        at += t[i]->numel;
    }
    a->staged = g->staged_bytes;
    graph_free(g);
}

/* ties: q = 0 and v on the bf16 grid of [1, 2) (T = 2, both keys seen): every out element
 * is (v0 + v1) / 2 exactly, half of them halfway between two bf16 values, so an out rounded
 * other than to nearest even (ties away, truncation) differs from the staged path's */
static void attn16_run(Attn16 *a, const KernelOps *K, int B, int T, int NH, int KV, int HD,
                       int causal, int segmented, int ties, KernelPrecision prec, uint64_t seed) {
    Graph g;
    a16_graph(&g, K, prec);
    Rng r = rng_make(seed, 11);
    Tensor *t[3];
    for (int i = 0; i < 3; i++) {
        t[i] = graph_activation(&g, "qkv", 4, (int[]){B, T, i ? KV : NH, HD});
        a16_fill(t[i], i == 2, ties, &r);
    }
    int lengths[4], seg[4 * 80];
    a16_segments(B, T, lengths, seg);
    Tensor *y = op_attention(&g, t[0], t[1], t[2], lengths, segmented ? seg : NULL, causal);
    a16_collect(a, &g, y, t, &r);
}

static void parity_attn16(Parity *p) {
    KernelOps staged = kernels_cuda;
    staged.attention_forward_x16 = NULL;
    staged.attention_backward_x16 = NULL;
    static const struct { int B, T, NH, KV, HD, causal, seg, ties, prec; } cases[] = {
        {2, 40, 4, 2, 64, 1, 1, 0, KP_BF16},  {2, 70, 2, 2, 64, 0, 0, 0, KP_BF16},
        {1, 40, 2, 1, 128, 1, 0, 0, KP_BF16}, {2, 33, 4, 2, 128, 0, 1, 0, KP_BF16},
        {2, 40, 4, 2, 32, 1, 1, 0, KP_BF16},  {2, 40, 2, 1, 64, 1, 0, 0, KP_FP32},
        {2, 40, 2, 2, 32, 1, 0, 0, KP_BF16},  {2, 40, 4, 2, 32, 0, 0, 0, KP_BF16},
        {1, 2, 4, 2, 64, 0, 0, 1, KP_BF16},   {1, 2, 2, 2, 128, 0, 1, 1, KP_BF16},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int B = cases[c].B, T = cases[c].T, NH = cases[c].NH, KV = cases[c].KV, HD = cases[c].HD;
        Attn16 a, b;
        attn16_run(&a, &kernels_cuda, B, T, NH, KV, HD, cases[c].causal, cases[c].seg,
                   cases[c].ties, cases[c].prec, 100 + c);
        attn16_run(&b, &staged, B, T, NH, KV, HD, cases[c].causal, cases[c].seg, cases[c].ties,
                   cases[c].prec, 100 + c);
        /* which directions the native entries take (attention.cu's choice) */
        int fa2 = HD == 64 || HD == 128, bf = cases[c].prec != KP_FP32, nat[2];
        for (int bwd = 0; bwd < 2; bwd++)
            nat[bwd] = bf && (fa2 || (!cases[c].seg && cuda_attention_cudnn_covers(
                                                          B, T, NH, KV, HD, cases[c].causal, bwd)));
        int same = !memcmp(a.out, b.out, a.nout * 4) && !memcmp(a.grads, b.grads, a.ngrads * 4);
        int ok = same && b.staged > 0 &&
                 (nat[0] && nat[1]   ? a.staged == 0
                  : nat[0] || nat[1] ? a.staged > 0 && a.staged < b.staged
                                     : a.staged == b.staged);
        printf("%s attention over bf16 activations, HD %d NH %d KV %d causal %d seg %d%s %s: %s "
               "bits as staged, %zu bytes staged (%zu staged path)\n", ok ? "ok  " : "FAIL", HD,
               NH, KV, cases[c].causal, cases[c].seg, cases[c].ties ? " (rounding ties)" : "",
               nat[0] && nat[1] ? "native" : nat[0] ? "native forward" : "declined",
               same ? "same" : "DIFFERENT", a.staged, b.staged);
        if (ok) p->passed++;
        else p->failed++;
        free(a.out);
        free(a.grads);
        free(b.out);
        free(b.grads);
    }
}

/* ---- attention_rows over bf16 q, k, v, out (attention_rows_forward_x16 / backward_x16):
 * the kernels read the bf16 data where it is (exact widening) and round out once, so at
 * every head dim and precision they give the bits of the same op staged through fp32 (the
 * table without those two entries), nothing staged. An entry that declines (*native = 0,
 * a stand-in here: the CUDA ones take every call) leaves op_attention_rows on the staged
 * path: its bits and bytes. Then the entries themselves on arrays one element past a
 * 16-byte boundary against the fp32 entries on the widened data. */

/* the rows of (B, T) with lengths T - 9b: per sequence 11, 17, 23 (the ends of the prefix
 * and branches of attn16's docs) and its last token, increasing; returns M */
static int rows16_pick(int B, int T, int *rows) {
    int M = 0;
    for (int b = 0; b < B; b++) {
        const int L = T - 9 * b, cand[4] = {11, 17, 23, L - 1};
        for (int i = 0, prev = -1; i < 4; i++)
            if (cand[i] < L && cand[i] > prev) rows[M++] = b * T + cand[i], prev = cand[i];
    }
    return M;
}

static void rows16_decline_fwd(int *native, uint16_t *out, float *lse, const uint16_t *q,
                               const uint16_t *k, const uint16_t *v, const int *rows,
                               const int *lengths, const int *seg, int M, int B, int T, int NH,
                               int KV, int HD, int causal, int precision) {
    (void)out, (void)lse, (void)q, (void)k, (void)v, (void)rows, (void)lengths, (void)seg;
    (void)M, (void)B, (void)T, (void)NH, (void)KV, (void)HD, (void)causal, (void)precision;
    *native = 0;
}

static void rows16_decline_bwd(int *native, float *dq, float *dk, float *dv, const float *dout,
                               const uint16_t *out, const float *lse, const uint16_t *q,
                               const uint16_t *k, const uint16_t *v, const int *rows,
                               const int *lengths, const int *seg, int M, int B, int T, int NH,
                               int KV, int HD, int causal, int precision) {
    (void)dq, (void)dk, (void)dv, (void)dout, (void)out, (void)lse, (void)q, (void)k, (void)v;
    (void)rows, (void)lengths, (void)seg, (void)M, (void)B, (void)T, (void)NH, (void)KV;
    (void)HD, (void)causal, (void)precision;
    *native = 0;
}

/* op_attention_rows forward + backward on the table K; ties as attn16_run (both keys seen) */
static void rows16_run(Attn16 *a, const KernelOps *K, int B, int T, int NH, int KV, int HD,
                       int causal, int segmented, int ties, KernelPrecision prec, uint64_t seed) {
    Graph g;
    a16_graph(&g, K, prec);
    Rng r = rng_make(seed, 13);
    int rows[4 * 4], lengths[4], seg[4 * 80];
    const int M = rows16_pick(B, T, rows);
    Tensor *t[3];
    for (int i = 0; i < 3; i++) {
        t[i] = i ? graph_activation(&g, "kv", 4, (int[]){B, T, KV, HD})
                 : graph_activation(&g, "q", 3, (int[]){M, NH, HD});
        a16_fill(t[i], i == 2, ties, &r);
    }
    a16_segments(B, T, lengths, seg);
    Tensor *y = op_attention_rows(&g, t[0], t[1], t[2], lengths, segmented ? seg : NULL, causal,
                                  rows);
    a16_collect(a, &g, y, t, &r);
}

static int same_bits(const Attn16 *a, const Attn16 *b) {
    return a->nout == b->nout && a->ngrads == b->ngrads &&
           !memcmp(a->out, b->out, a->nout * 4) && !memcmp(a->grads, b->grads, a->ngrads * 4);
}

static void rows16_ops(Parity *p) {
    KernelOps staged = kernels_cuda, declining = kernels_cuda;
    staged.attention_rows_forward_x16 = NULL;
    staged.attention_rows_backward_x16 = NULL;
    declining.attention_rows_forward_x16 = rows16_decline_fwd;
    declining.attention_rows_backward_x16 = rows16_decline_bwd;
    static const struct { int B, T, NH, KV, HD, causal, seg, ties, prec; } cases[] = {
        {2, 40, 4, 2, 64, 1, 1, 0, KP_BF16},  {2, 70, 2, 2, 64, 0, 0, 0, KP_BF16},
        {1, 40, 2, 1, 128, 1, 0, 0, KP_BF16}, {2, 33, 4, 2, 128, 0, 1, 0, KP_BF16},
        {2, 40, 4, 2, 33, 1, 1, 0, KP_BF16},  {2, 40, 2, 1, 64, 1, 0, 0, KP_FP32},
        {2, 45, 6, 3, 80, 0, 0, 0, KP_BF16},  {1, 2, 4, 2, 64, 0, 0, 1, KP_BF16},
        {1, 2, 2, 2, 128, 0, 1, 1, KP_BF16},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int B = cases[c].B, T = cases[c].T, NH = cases[c].NH, KV = cases[c].KV, HD = cases[c].HD;
        Attn16 a, b, d;
        const KernelOps *tables[3] = {&kernels_cuda, &staged, &declining};
        Attn16 *res[3] = {&a, &b, &d};
        for (int i = 0; i < 3; i++)
            rows16_run(res[i], tables[i], B, T, NH, KV, HD, cases[c].causal, cases[c].seg,
                       cases[c].ties, cases[c].prec, 200 + c);
        const int same = same_bits(&a, &b), dsame = same_bits(&d, &b);
        const int ok = same && dsame && a.staged == 0 && b.staged > 0 && d.staged == b.staged;
        printf("%s attention rows over bf16 activations, HD %d NH %d KV %d causal %d seg %d%s "
               "%s: %s bits as staged, %zu bytes staged (%zu staged path; declined: %s bits, "
               "%zu bytes)\n", ok ? "ok  " : "FAIL", HD, NH, KV, cases[c].causal, cases[c].seg,
               cases[c].ties ? " (rounding ties)" : "", cases[c].prec == KP_FP32 ? "fp32" : "bf16",
               same ? "same" : "DIFFERENT", a.staged, b.staged, dsame ? "same" : "DIFFERENT",
               d.staged);
        if (ok) p->passed++;
        else p->failed++;
        for (int i = 0; i < 3; i++) free(res[i]->out), free(res[i]->grads);
    }
}

/* a device array's bits against a host array's */
static void check_bits(Parity *p, const char *what, const void *host, const void *dev,
                       size_t bytes) {
    void *h = xmalloc(bytes);
    cuda_copy_d2h(h, dev, bytes);
    const int ok = !memcmp(h, host, bytes);
    printf("%s %s: %s\n", ok ? "ok  " : "FAIL", what, ok ? "same bits" : "DIFFERENT bits");
    if (ok) p->passed++;
    else p->failed++;
    free(h);
}

static void rows16_kernels(Parity *p) {
    static const struct { int HD, prec, causal, seg; } S[] = {
        {64, KP_BF16, 1, 1}, {128, KP_BF16, 0, 0}, {33, KP_BF16, 1, 0}, {64, KP_FP32, 0, 1}};
    const int B = 2, T = 37, NH = 4, KV = 2;
    int rows[8], lengths[2] = {T, T - 9}, seg[2 * 37];
    const int M = rows16_pick(B, T, rows);
    for (int i = 0; i < B * T; i++) seg[i] = i % T < 24 ? 0 : 1 << 16;
    int *d_rows = d_upload_i(rows, (size_t)M), *d_len = d_upload_i(lengths, 2);
    int *d_seg = d_upload_i(seg, (size_t)B * T);
    for (size_t c = 0; c < sizeof S / sizeof S[0]; c++) {
        const int HD = S[c].HD, prec = S[c].prec, causal = S[c].causal;
        const int *sg = S[c].seg ? d_seg : NULL;
        const size_t nq = (size_t)M * NH * HD, nkv = (size_t)B * T * KV * HD, nl = (size_t)NH * M;
        float *q = r16(p, nq, -2, 2), *k = r16(p, nkv, -2, 2), *v = r16(p, nkv, -2, 2);
        float *dout = h_rand(p, nq, -1, 1), *g0[3] = {h_rand(p, nq, -1, 1),
                                                      h_rand(p, nkv, -1, 1), h_rand(p, nkv, -1, 1)};
        /* the fp32 entries on the widened data, then the output rounded as the staging does */
        Dev q32 = up32(q, nq, 0), k32 = up32(k, nkv, 0), v32 = up32(v, nkv, 0);
        Dev o32 = up32(dout, nq, 0), l32 = up32(dout, nl, 0), do32 = up32(dout, nq, 0);
        kernels_cuda.attention_rows_forward(o32.p, l32.p, q32.p, k32.p, v32.p, d_rows, d_len, sg,
                                            M, B, T, NH, KV, HD, causal, prec);
        float *o = xmalloc(nq * 4), *lse = xmalloc(nl * 4);
        uint16_t *o16 = xmalloc(nq * 2);
        cuda_copy_d2h(o, o32.p, nq * 4);
        cuda_copy_d2h(lse, l32.p, nl * 4);
        for (size_t i = 0; i < nq; i++) o16[i] = kscalar_bf16_rn(o[i]), o[i] = widen(o16[i]);
        cuda_copy_h2d(o32.p, o, nq * 4); /* the backward reads the rounded out */
        Dev gs[3], gn[3];
        const size_t gsz[3] = {nq, nkv, nkv};
        for (int i = 0; i < 3; i++) gs[i] = up32(g0[i], gsz[i], 0), gn[i] = up32(g0[i], gsz[i], 1);
        kernels_cuda.attention_rows_backward(gs[0].p, gs[1].p, gs[2].p, do32.p, o32.p, l32.p,
                                             q32.p, k32.p, v32.p, d_rows, d_len, sg, M, B, T, NH,
                                             KV, HD, causal, prec);
        /* the native entries, every array one element past a 16-byte boundary */
        Dev q16 = up16(q, nq, 1), k16 = up16(k, nkv, 1), v16 = up16(v, nkv, 1);
        Dev on = up16(dout, nq, 1), ln = up32(dout, nl, 1), don = up32(dout, nq, 1);
        int nat[2] = {0, 0};
        kernels_cuda.attention_rows_forward_x16(&nat[0], on.p, ln.p, q16.p, k16.p, v16.p, d_rows,
                                                d_len, sg, M, B, T, NH, KV, HD, causal, prec);
        kernels_cuda.attention_rows_backward_x16(&nat[1], gn[0].p, gn[1].p, gn[2].p, don.p, on.p,
                                                 ln.p, q16.p, k16.p, v16.p, d_rows, d_len, sg, M,
                                                 B, T, NH, KV, HD, causal, prec);
        char what[160];
        snprintf(what, sizeof what, "attention rows x16 entries, HD %d %s causal %d seg %d, "
                 "misaligned: taken (%d, %d)", HD, prec == KP_FP32 ? "fp32" : "bf16", causal,
                 S[c].seg, nat[0], nat[1]);
        const int taken = nat[0] == 1 && nat[1] == 1;
        printf("%s %s\n", taken ? "ok  " : "FAIL", what);
        if (taken) p->passed++;
        else p->failed++;
        static const char *gname[3] = {"dq", "dk", "dv"};
        snprintf(what, sizeof what, "attention rows x16 HD %d %s: out = bf16(staged)", HD,
                 prec == KP_FP32 ? "fp32" : "bf16");
        check_bits(p, what, o16, on.p, nq * 2);
        snprintf(what, sizeof what, "attention rows x16 HD %d %s: lse", HD,
                 prec == KP_FP32 ? "fp32" : "bf16");
        check_bits(p, what, lse, ln.p, nl * 4);
        for (int i = 0; i < 3; i++) {
            float *h = xmalloc(gsz[i] * 4);
            cuda_copy_d2h(h, gs[i].p, gsz[i] * 4);
            snprintf(what, sizeof what, "attention rows x16 HD %d %s: %s", HD,
                     prec == KP_FP32 ? "fp32" : "bf16", gname[i]);
            check_bits(p, what, h, gn[i].p, gsz[i] * 4);
            free(h), free(g0[i]);
            dfree(gs[i]), dfree(gn[i]);
        }
        Dev all[12] = {q32, k32, v32, o32, l32, do32, q16, k16, v16, on, ln, don};
        for (int i = 0; i < 12; i++) dfree(all[i]);
        free(q), free(k), free(v), free(dout), free(o), free(lse), free(o16);
    }
    d_free(d_rows), d_free(d_len), d_free(d_seg);
}

void parity_bf16act(Parity *p) {
    parity_norms16(p);
    parity_flat16(p);
    parity_layout16(p);
    parity_matmul_out16(p);
    parity_graph16(p);
    parity_attn16(p);
    rows16_ops(p);
    rows16_kernels(p);
}
