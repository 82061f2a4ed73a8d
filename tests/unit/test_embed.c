/* test_embed.c - token embedding, im2col and pixel shuffle v2: forwards against index
 * formulas written here independently of the kernels (pixel shuffle also against a
 * step-by-step replay of InternVL's view/permute sequence), backwards against double
 * scatter-add references and finite differences, the accumulate and NULL-gradient
 * contracts, and independence of the thread count. */
#include "kernels/kernels.h"
#include "tests/harness.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

static double *dalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) abort();
    return p;
}

static double *widen(const float *x, size_t n) {
    double *d = dalloc(n);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* ids (N) in [0, V), every row used at least once when N >= V and many used repeatedly */
static int *random_ids(TRng *r, int N, int V) {
    int *ids = malloc((size_t)(N ? N : 1) * sizeof(int));
    if (!ids) abort();
    for (int n = 0; n < N; n++) ids[n] = n < V ? n : (int)(trng_uniform(r) * V);
    for (int n = N - 1; n > 0; n--) { /* shuffle so repeats are not in id order */
        int j = (int)(trng_uniform(r) * (n + 1)), t = ids[n];
        ids[n] = ids[j];
        ids[j] = t;
    }
    return ids;
}

/* ---- token embedding ---- */

typedef struct { int N, V, C; } EmbShape;
/* odd sizes; the last has more columns than one thread's column range */
static const EmbShape EMB[] = {{1, 1, 1}, {11, 5, 13}, {37, 9, 150}};
enum { NEMB = sizeof EMB / sizeof EMB[0] };

TEST(test_embedding_forward_copies_the_table_row_of_each_id) {
    for (int s = 0; s < NEMB; s++) {
        int N = EMB[s].N, V = EMB[s].V, C = EMB[s].C;
        TRng r = trng(10 + s);
        int *ids = random_ids(&r, N, V);
        float *table = tmalloc((size_t)V * C), *out = tmalloc((size_t)N * C);
        float *want = tmalloc((size_t)N * C);
        fill_normal(&r, table, (size_t)V * C, 1.0f);
        fill_normal(&r, out, (size_t)N * C, 1.0f);
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) want[n * C + c] = table[ids[n] * C + c];
        kernels_cpu.embedding_forward(out, ids, table, N, C);
        CHECK(EXPECT_SAME("out", out, want, (size_t)N * C), "shape N=%d V=%d C=%d", N, V, C);
        free(ids); free(table); free(out); free(want);
    }
}

TEST(test_embedding_backward_scatter_adds_into_prefilled_table_gradient) {
    for (int s = 0; s < NEMB; s++) {
        int N = EMB[s].N, V = EMB[s].V, C = EMB[s].C;
        TRng r = trng(20 + s);
        int *ids = random_ids(&r, N, V);
        float *dout = tmalloc((size_t)N * C), *dtable = tmalloc((size_t)V * C);
        fill_normal(&r, dout, (size_t)N * C, 1.0f);
        fill_normal(&r, dtable, (size_t)V * C, 1.0f);
        double *ref = widen(dtable, (size_t)V * C);
        float *inorder = tmalloc((size_t)V * C);
        memcpy(inorder, dtable, (size_t)V * C * sizeof(float));
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                ref[ids[n] * C + c] += dout[n * C + c];
                inorder[ids[n] * C + c] += dout[n * C + c];
            }
        kernels_cpu.embedding_backward(dtable, dout, ids, N, C, V);
        CHECK(EXPECT_CLOSE("dtable", dtable, ref, (size_t)V * C, 1e-5, 1e-5),
              "shape N=%d V=%d C=%d", N, V, C);
        /* kernels.h: rows are added in increasing n, so the float sums are reproducible */
        CHECK(EXPECT_SAME("dtable vs float sums in increasing n", dtable, inorder,
                          (size_t)V * C),
              "shape N=%d V=%d C=%d", N, V, C);
        free(inorder);
        kernels_cpu.embedding_backward(NULL, dout, ids, N, C, V); /* nothing requested: a no-op */
        free(ids); free(dout); free(dtable); free(ref);
    }
}

/* distinct ids (a permutation's prefix): the plain scatter equals the ordered scatter-add,
 * bit for bit, and accumulates */
TEST(test_scatter_rows_add_equals_the_embedding_backward_for_distinct_ids) {
    enum { N = 300, V = 500, C = 130 };
    TRng r = trng(40);
    int *perm = random_ids(&r, V, V); /* every id once, shuffled */
    float *dout = tmalloc((size_t)N * C), *a = tmalloc((size_t)V * C), *b = tmalloc((size_t)V * C);
    fill_normal(&r, dout, (size_t)N * C, 1.0f);
    fill_normal(&r, a, (size_t)V * C, 1.0f);
    memcpy(b, a, (size_t)V * C * sizeof(float));
    kernels_cpu.embedding_backward(a, dout, perm, N, C, V);
    kernels_cpu.scatter_rows_add(b, dout, perm, N, C);
    EXPECT_SAME("scatter_rows_add vs embedding_backward", b, a, (size_t)V * C);
    kernels_cpu.scatter_rows_add(NULL, dout, perm, N, C); /* nothing requested: a no-op */
    free(perm); free(dout); free(a); free(b);
}

typedef struct {
    float *table, *out, *proj;
    const int *ids;
    int N, C;
} EmbCtx;

static double embedding_loss(void *p) {
    EmbCtx *x = p;
    kernels_cpu.embedding_forward(x->out, x->ids, x->table, x->N, x->C);
    return dot_loss(x->out, x->proj, (size_t)x->N * x->C);
}

TEST(test_embedding_backward_matches_finite_differences) {
    int N = 11, V = 5, C = 13;
    TRng r = trng(30);
    int *ids = random_ids(&r, N, V);
    EmbCtx x = {tmalloc((size_t)V * C), tmalloc((size_t)N * C), tmalloc((size_t)N * C), ids, N, C};
    fill_normal(&r, x.table, (size_t)V * C, 1.0f);
    fill_normal(&r, x.proj, (size_t)N * C, 1.0f);
    float *dtable = tmalloc((size_t)V * C);
    kernels_cpu.embedding_backward(dtable, x.proj, ids, N, C, V);
    GRAD_CHECK("dtable", embedding_loss, &x, x.table, dtable, (size_t)V * C, 1e-3);
    free(ids); free(x.table); free(x.out); free(x.proj); free(dtable);
}

/* ---- im2col ---- */

typedef struct { int B, CH, H, W, p; } ImgShape;
/* CH = 3 like RGB, p = 2 and 3, non-square images in both orientations */
static const ImgShape IMG[] = {{2, 3, 6, 10, 2}, {2, 3, 9, 6, 3}, {1, 1, 3, 3, 3}};
enum { NIMG = sizeof IMG / sizeof IMG[0] };

static size_t img_size(ImgShape s) { return (size_t)s.B * s.CH * s.H * s.W; }

/* Where pixel (b, ch, iy, ix) must land in cols: derived pixel-first (the kernel walks
 * patches), from the contract "row (b, y, x), column (ch, ky, kx)". */
static size_t col_index(ImgShape s, int b, int ch, int iy, int ix) {
    int gh = s.H / s.p, gw = s.W / s.p, K = s.CH * s.p * s.p;
    int row = b * gh * gw + (iy / s.p) * gw + ix / s.p;
    int col = ch * s.p * s.p + (iy % s.p) * s.p + ix % s.p;
    return (size_t)row * K + col;
}

TEST(test_im2col_forward_places_each_pixel_by_the_patch_formula) {
    for (int s = 0; s < NIMG; s++) {
        ImgShape S = IMG[s];
        size_t n = img_size(S); /* cols holds every pixel exactly once */
        TRng r = trng(40 + s);
        float *img = tmalloc(n), *cols = tmalloc(n), *want = tmalloc(n);
        fill_normal(&r, img, n, 1.0f);
        fill_normal(&r, cols, n, 1.0f);
        for (int b = 0; b < S.B; b++)
            for (int ch = 0; ch < S.CH; ch++)
                for (int iy = 0; iy < S.H; iy++)
                    for (int ix = 0; ix < S.W; ix++)
                        want[col_index(S, b, ch, iy, ix)] =
                            img[((b * S.CH + ch) * S.H + iy) * S.W + ix];
        kernels_cpu.im2col_forward(cols, img, S.B, S.CH, S.H, S.W, S.p);
        CHECK(EXPECT_SAME("cols", cols, want, n), "B=%d CH=%d H=%d W=%d p=%d", S.B, S.CH, S.H,
              S.W, S.p);
        free(img); free(cols); free(want);
    }
}

TEST(test_im2col_backward_scatters_back_into_prefilled_image_gradient) {
    for (int s = 0; s < NIMG; s++) {
        ImgShape S = IMG[s];
        size_t n = img_size(S);
        TRng r = trng(50 + s);
        float *dcols = tmalloc(n), *dimg = tmalloc(n);
        fill_normal(&r, dcols, n, 1.0f);
        fill_normal(&r, dimg, n, 1.0f);
        double *ref = widen(dimg, n);
        for (int b = 0; b < S.B; b++)
            for (int ch = 0; ch < S.CH; ch++)
                for (int iy = 0; iy < S.H; iy++)
                    for (int ix = 0; ix < S.W; ix++)
                        ref[((b * S.CH + ch) * S.H + iy) * S.W + ix] +=
                            dcols[col_index(S, b, ch, iy, ix)];
        kernels_cpu.im2col_backward(dimg, dcols, S.B, S.CH, S.H, S.W, S.p);
        CHECK(EXPECT_CLOSE("dimg", dimg, ref, n, 1e-6, 1e-6), "B=%d CH=%d H=%d W=%d p=%d", S.B,
              S.CH, S.H, S.W, S.p);
        kernels_cpu.im2col_backward(NULL, dcols, S.B, S.CH, S.H, S.W, S.p); /* a no-op */
        free(dcols); free(dimg); free(ref);
    }
}

typedef struct {
    float *img, *cols, *proj;
    ImgShape s;
} Im2colCtx;

static double im2col_loss(void *p) {
    Im2colCtx *x = p;
    kernels_cpu.im2col_forward(x->cols, x->img, x->s.B, x->s.CH, x->s.H, x->s.W, x->s.p);
    return dot_loss(x->cols, x->proj, img_size(x->s));
}

TEST(test_im2col_backward_matches_finite_differences) {
    for (int s = 0; s < 2; s++) {
        ImgShape S = IMG[s];
        size_t n = img_size(S);
        TRng r = trng(60 + s);
        Im2colCtx x = {tmalloc(n), tmalloc(n), tmalloc(n), S};
        fill_normal(&r, x.img, n, 1.0f);
        fill_normal(&r, x.proj, n, 1.0f);
        float *dimg = tmalloc(n);
        kernels_cpu.im2col_backward(dimg, x.proj, S.B, S.CH, S.H, S.W, S.p);
        GRAD_CHECK("dimg", im2col_loss, &x, x.img, dimg, n, 1e-3);
        free(x.img); free(x.cols); free(x.proj); free(dimg);
    }
}

/* ---- pixel shuffle v2 ---- */

typedef struct { int B, G, C; } PsShape;
static const PsShape PS[] = {{2, 4, 3}, {2, 6, 5}, {1, 2, 1}};
enum { NPS = sizeof PS / sizeof PS[0] };

static size_t ps_size(PsShape s) { return (size_t)s.B * s.G * s.G * s.C; }

/* InternVL's pixel_shuffle(x, 0.5) then the v2 permute, replayed one tensor op at a time
 * on explicit 4-D indices: x (B, G, G, C) -> view (B, G, G/2, 2C) -> permute(0,2,1,3)
 * -> view (B, G/2, G/2, 4C) -> permute(0,2,1,3) -> flatten the two grid dims. */
static void torch_pixel_shuffle_v2(float *out, const float *x, PsShape s) {
    int B = s.B, G = s.G, C = s.C, h = G / 2;
    size_t n = ps_size(s);
    float *t1 = tmalloc(n), *t2 = tmalloc(n);
    /* the view (B, G, h, 2C) is a reinterpretation, so t1 = permute(0,2,1,3) of it:
     * t1[b][j][i][e] = x_view[b][i][j][e], shape (B, h, G, 2C) */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < G; i++)
            for (int j = 0; j < h; j++)
                for (int e = 0; e < 2 * C; e++)
                    t1[((b * h + j) * G + i) * 2 * C + e] = x[((b * G + i) * h + j) * 2 * C + e];
    /* view (B, h, h, 4C) of the contiguous t1, then permute(0,2,1,3):
     * t2[b][k][j][e] = t1_view[b][j][k][e] */
    for (int b = 0; b < B; b++)
        for (int j = 0; j < h; j++)
            for (int k = 0; k < h; k++)
                for (int e = 0; e < 4 * C; e++)
                    t2[((b * h + k) * h + j) * 4 * C + e] = t1[((b * h + j) * h + k) * 4 * C + e];
    memcpy(out, t2, n * sizeof(float));
    free(t1);
    free(t2);
}

TEST(test_pixel_shuffle_forward_matches_internvl_v2_and_the_spec_formula) {
    for (int s = 0; s < NPS; s++) {
        PsShape S = PS[s];
        int G = S.G, C = S.C, h = G / 2;
        size_t n = ps_size(S);
        TRng r = trng(70 + s);
        float *inp = tmalloc(n), *out = tmalloc(n), *torch = tmalloc(n), *spec = tmalloc(n);
        fill_normal(&r, inp, n, 1.0f);
        fill_normal(&r, out, n, 1.0f);
        torch_pixel_shuffle_v2(torch, inp, S);
        /* spec/model.md s2: token a*(G/2)+b = [P(2a,2b), P(2a,2b+1), P(2a+1,2b), P(2a+1,2b+1)] */
        for (int bt = 0; bt < S.B; bt++)
            for (int a = 0; a < h; a++)
                for (int b = 0; b < h; b++) {
                    const int cells[4][2] = {{2 * a, 2 * b}, {2 * a, 2 * b + 1},
                                             {2 * a + 1, 2 * b}, {2 * a + 1, 2 * b + 1}};
                    for (int q = 0; q < 4; q++)
                        for (int c = 0; c < C; c++)
                            spec[((bt * h * h) + a * h + b) * 4 * C + q * C + c] =
                                inp[(bt * G * G + cells[q][0] * G + cells[q][1]) * C + c];
                }
        kernels_cpu.pixel_shuffle_forward(out, inp, S.B, G, C);
        CHECK(EXPECT_SAME("spec formula vs torch replay", spec, torch, n), "B=%d G=%d C=%d",
              S.B, G, C);
        CHECK(EXPECT_SAME("out vs spec formula", out, spec, n), "B=%d G=%d C=%d", S.B, G, C);
        free(inp); free(out); free(torch); free(spec);
    }
}

TEST(test_pixel_shuffle_backward_is_the_inverse_permutation_and_accumulates) {
    for (int s = 0; s < NPS; s++) {
        PsShape S = PS[s];
        size_t n = ps_size(S);
        TRng r = trng(80 + s);
        float *dout = tmalloc(n), *dinp = tmalloc(n), *perm = tmalloc(n), *pos = tmalloc(n);
        fill_normal(&r, dout, n, 1.0f);
        fill_normal(&r, dinp, n, 1.0f);
        double *ref = widen(dinp, n);
        /* shuffle the positions 0..n-1 to learn where each input element goes */
        for (size_t i = 0; i < n; i++) pos[i] = (float)i;
        kernels_cpu.pixel_shuffle_forward(perm, pos, S.B, S.G, S.C);
        for (size_t i = 0; i < n; i++) ref[(size_t)perm[i]] += dout[i];
        kernels_cpu.pixel_shuffle_backward(dinp, dout, S.B, S.G, S.C);
        CHECK(EXPECT_CLOSE("dinp", dinp, ref, n, 1e-6, 1e-6), "B=%d G=%d C=%d", S.B, S.G, S.C);
        kernels_cpu.pixel_shuffle_backward(NULL, dout, S.B, S.G, S.C); /* a no-op */
        free(dout); free(dinp); free(perm); free(pos); free(ref);
    }
}

typedef struct {
    float *inp, *out, *proj;
    PsShape s;
} PsCtx;

static double pixel_shuffle_loss(void *p) {
    PsCtx *x = p;
    kernels_cpu.pixel_shuffle_forward(x->out, x->inp, x->s.B, x->s.G, x->s.C);
    return dot_loss(x->out, x->proj, ps_size(x->s));
}

TEST(test_pixel_shuffle_backward_matches_finite_differences) {
    for (int s = 0; s < 2; s++) {
        PsShape S = PS[s];
        size_t n = ps_size(S);
        TRng r = trng(90 + s);
        PsCtx x = {tmalloc(n), tmalloc(n), tmalloc(n), S};
        fill_normal(&r, x.inp, n, 1.0f);
        fill_normal(&r, x.proj, n, 1.0f);
        float *dinp = tmalloc(n);
        kernels_cpu.pixel_shuffle_backward(dinp, x.proj, S.B, S.G, S.C);
        GRAD_CHECK("dinp", pixel_shuffle_loss, &x, x.inp, dinp, n, 1e-3);
        free(x.inp); free(x.out); free(x.proj); free(dinp);
    }
}

/* ---- threads ---- */

TEST(test_embed_kernels_are_bitwise_independent_of_thread_count) {
    /* large enough that every kernel splits its work over threads */
    enum { N = 300, V = 17, C = 200, B = 2, CH = 3, H = 112, W = 84, P = 14, G = 16 };
    const size_t nimg = (size_t)B * CH * H * W, nps = (size_t)B * G * G * C;
    TRng r = trng(99);
    int *ids = random_ids(&r, N, V);
    float *table = tmalloc((size_t)V * C), *dout = tmalloc((size_t)N * C), *img = tmalloc(nimg);
    float *dcols = tmalloc(nimg), *ps = tmalloc(nps), *dps = tmalloc(nps);
    fill_normal(&r, table, (size_t)V * C, 1.0f);
    fill_normal(&r, dout, (size_t)N * C, 1.0f);
    fill_normal(&r, img, nimg, 1.0f);
    fill_normal(&r, dcols, nimg, 1.0f);
    fill_normal(&r, ps, nps, 1.0f);
    fill_normal(&r, dps, nps, 1.0f);
    const size_t len[6] = {(size_t)N * C, (size_t)V * C, nimg, nimg, nps, nps};
    float *res[2][6];
    int saved = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t ? 3 : 1);
        for (int k = 0; k < 6; k++) res[t][k] = tmalloc(len[k]);
        /* gradients start from the same non-zero values in both runs */
        memcpy(res[t][1], table, len[1] * sizeof(float));
        memcpy(res[t][3], img, len[3] * sizeof(float));
        memcpy(res[t][5], ps, len[5] * sizeof(float));
        kernels_cpu.embedding_forward(res[t][0], ids, table, N, C);
        kernels_cpu.embedding_backward(res[t][1], dout, ids, N, C, V);
        kernels_cpu.im2col_forward(res[t][2], img, B, CH, H, W, P);
        kernels_cpu.im2col_backward(res[t][3], dcols, B, CH, H, W, P);
        kernels_cpu.pixel_shuffle_forward(res[t][4], ps, B, G, C);
        kernels_cpu.pixel_shuffle_backward(res[t][5], dps, B, G, C);
    }
    omp_set_num_threads(saved);
    const char *name[6] = {"embedding out", "dtable", "cols", "dimg", "shuffle out", "dinp"};
    for (int k = 0; k < 6; k++) EXPECT_SAME(name[k], res[0][k], res[1][k], len[k]);
    free(ids); free(table); free(dout); free(img); free(dcols); free(ps); free(dps);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 6; k++) free(res[t][k]);
}
