/* test_share_prefix.c - rm_forward's compact layouts (RewardModel.share_prefix, .packing):
 * the rewards and every parameter gradient equal those of the padded rows (within 1e-6
 * relative to the largest value, fp32), for Qwen2 and InternLM2, with images of one tile
 * and of several (tiles + thumbnail), text-only pairs, responses of very different
 * lengths, pairs whose responses share their first tokens or are a prefix of one another,
 * and a bias-model-like batch where every row shows the same (blank) image, also with every
 * layer a recompute segment (the compact rows also compute the last layer past K and V only
 * at the rewarded tokens, so this covers that too); plus the
 * token counts: the shared layouts compute fewer tokens than the rows hold. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/reward_model.h"
#include "runtime/ops.h"
#include "tests/harness.h"
#include "tests/unit/tiny_model.h"

enum { MAXB = 12, MAXT = 64 };

typedef struct {
    int B, T, n_images;
    int ids[MAXB * MAXT], lengths[MAXB], tiles[MAXB], image_of[MAXB];
    float *pixels;
} Data;

/* P pairs (rows 2i, 2i+1): system token, the image block (tiles[i] x tpt IMG_CONTEXT, or
 * none), a random prompt, then two responses of random, very different lengths; pair 1's
 * responses start alike, pair 2's chosen is a prefix of its rejected. blank: every row shows
 * image 0 (one tile), as the bias model's rows. */
static void make_data(Data *d, const ModelConfig *cfg, int P, int blank, uint64_t seed) {
    TRng r = trng(seed);
    int tpt = config_tokens_per_tile(cfg), S = cfg->image_size, ntiles = 0;
    d->B = 2 * P;
    d->n_images = blank ? 1 : 0;
    int prompt[MAXB], resp[MAXB][MAXT], rlen[MAXB];
    for (int i = 0; i < P; i++) {
        int has = blank || i % 3 != 2;           /* every third pair text-only */
        int tiles = blank ? 1 : 1 + (i % 2) * 2; /* 1 tile, or 2 + thumbnail */
        prompt[i] = 2 + (int)(trng_uniform(&r) * 6);
        for (int k = 0; k < 2; k++) {
            int b = 2 * i + k;
            d->image_of[b] = blank ? 0 : has ? d->n_images : -1;
            rlen[b] = 1 + (int)(trng_uniform(&r) * (k ? 20 : 4)); /* short vs long */
            for (int t = 0; t < MAXT; t++) resp[b][t] = (int)(trng_uniform(&r) * 256);
        }
        if (i == 1) memcpy(resp[2 * i + 1], resp[2 * i], 2 * sizeof(int)); /* alike start */
        if (i == 2) { /* chosen a prefix of rejected */
            if (rlen[2 * i] > rlen[2 * i + 1]) rlen[2 * i] = rlen[2 * i + 1];
            memcpy(resp[2 * i], resp[2 * i + 1], rlen[2 * i] * sizeof(int));
        }
        if (!blank && has) d->tiles[d->n_images++] = tiles, ntiles += tiles;
    }
    if (blank) d->tiles[0] = 1, ntiles = 1;
    int T = 0;
    for (int i = 0; i < P; i++) {
        int pr[8];
        for (int t = 0; t < prompt[i]; t++) pr[t] = (int)(trng_uniform(&r) * 256);
        for (int k = 0; k < 2; k++) {
            int b = 2 * i + k, t = 0, *row = d->ids + b * MAXT;
            row[t++] = 258;
            int im = d->image_of[b];
            for (int j = 0; im >= 0 && j < d->tiles[im] * tpt; j++) row[t++] = cfg->img_context_id;
            for (int j = 0; j < prompt[i]; j++) row[t++] = pr[j];
            for (int j = 0; j < rlen[b]; j++) row[t++] = resp[b][j];
            row[t++] = 259; /* the end token */
            d->lengths[b] = t;
            T = t > T ? t : T;
        }
    }
    d->T = T;
    for (int b = 0; b < d->B; b++) /* repack rows to stride T, pad */
        for (int t = 0; t < T; t++)
            d->ids[b * T + t] = t < d->lengths[b] ? d->ids[b * MAXT + t] : 269;
    d->pixels = tmalloc((size_t)ntiles * 3 * S * S);
    fill_normal(&r, d->pixels, (size_t)ntiles * 3 * S * S, 1.0f);
}

/* rewards (B) and the full gradient of sum_b w_b r_b (n_trainable) in one mode, each layer
 * a recompute segment or not */
static void run_rc(RewardModel *m, const Data *d, int share, int pack, int recompute, float *rw,
                   float *grad) {
    Graph g;
    graph_init(&g, DEV_CPU, 1 << 20, 5);
    m->share_prefix = share, m->packing = pack;
    m->grad_checkpoint = g.recompute = recompute;
    RmBatch bt = {d->B, d->T, d->ids, d->lengths, d->n_images, d->tiles, d->pixels, d->image_of, NULL};
    params_zero_grad(&m->ps);
    Tensor *r = rm_forward(m, &g, &bt);
    float w[MAXB];
    for (int b = 0; b < d->B; b++) w[b] = (float)(b % 3) - 0.7f;
    memcpy(rw, graph_host(&g, r), d->B * sizeof(float));
    graph_backward_from(&g, r, w);
    memcpy(grad, m->ps.grad, m->ps.n_trainable * sizeof(float));
    graph_free(&g);
    m->share_prefix = m->packing = m->grad_checkpoint = 0;
}

static void run(RewardModel *m, const Data *d, int share, int pack, float *rw, float *grad) {
    run_rc(m, d, share, pack, 0, rw, grad);
}

static double *to_double(const float *x, size_t n, double *maxabs) {
    double *y = malloc(n * sizeof(double));
    if (!y) abort();
    *maxabs = 0;
    for (size_t i = 0; i < n; i++) y[i] = x[i], *maxabs = fmax(*maxabs, fabs(x[i]));
    return y;
}

static void check_modes(LlmArch arch, int blank, uint64_t seed) {
    ModelConfig cfg = test_tiny_config(arch);
    RewardModel m;
    int freeze[PG_COUNT] = {0};
    rm_create(&m, &cfg, DEV_CPU, freeze);
    rm_init_random(&m, seed);
    TRng r = trng(seed + 1); /* 10x the init's weights, so that errors would show */
    for (int i = 0; i < m.ps.n; i++) {
        Tensor *t = params_get(&m.ps, i);
        if (!strstr(t->name, "norm")) fill_normal(&r, tensor_f32(t), t->numel, 0.2f);
    }
    Data d;
    make_data(&d, &cfg, 5, blank, seed + 2);
    size_t n = m.ps.n_trainable;
    float ref_r[MAXB], got_r[MAXB], *ref_g = tmalloc(n), *got_g = tmalloc(n);
    run(&m, &d, 0, 0, ref_r, ref_g);
    double rmax, gmax, *rr = to_double(ref_r, d.B, &rmax), *rg = to_double(ref_g, n, &gmax);
    CHECK(gmax > 0, "no gradient at all");
    for (int mode = 1; mode < 5; mode++) { /* 4: both on, layers recomputed */
        int share = mode == 4 || mode & 1, pack = mode >= 2;
        long c0, r0, c1, r1;
        rm_tokens_counted(&c0, &r0);
        run_rc(&m, &d, share, pack, mode == 4, got_r, got_g);
        rm_tokens_counted(&c1, &r1);
        CHECK(EXPECT_CLOSE("rewards", got_r, rr, d.B, 1e-6, 1e-6 * rmax) &
                  EXPECT_CLOSE("gradient", got_g, rg, n, 1e-6, 1e-6 * gmax),
              "arch %d blank %d share_prefix %d packing %d recompute %d", arch, blank, share,
              pack, mode == 4);
        long rows = 0, pad = (long)d.B * d.T;
        for (int b = 0; b < d.B; b++) rows += d.lengths[b];
        CHECK(r1 - r0 == rows, "tokens in rows %ld, want %ld", r1 - r0, rows);
        long c = c1 - c0;
        if (pack && !share) CHECK(c == rows, "packed: %ld tokens computed for %ld in rows", c, rows);
        else if (pack) CHECK(c < rows, "packed + shared: %ld tokens computed for %ld in rows", c, rows);
        else CHECK(c < pad, "shared: %ld tokens computed for %ld padded", c, pad);
    }
    free(rr); free(rg); free(ref_g); free(got_g); free(d.pixels);
    rm_free(&m);
}

TEST(test_share_prefix_and_packing_give_the_padded_rewards_and_gradients_qwen2) {
    check_modes(LLM_QWEN2, 0, 1800);
    check_modes(LLM_QWEN2, 1, 1810);
}

TEST(test_share_prefix_and_packing_give_the_padded_rewards_and_gradients_internlm2) {
    check_modes(LLM_INTERNLM2, 0, 1820);
    check_modes(LLM_INTERNLM2, 1, 1830);
}

/* identical responses to one prompt tie exactly (best-of-N's --ties relies on it), wherever
 * they sit among the shared branches and the packed stream */
TEST(test_share_prefix_identical_responses_get_bitwise_identical_rewards) {
    ModelConfig cfg = test_tiny_config(LLM_QWEN2);
    RewardModel m;
    int freeze[PG_COUNT] = {0};
    rm_create(&m, &cfg, DEV_CPU, freeze);
    rm_init_random(&m, 1900);
    TRng r = trng(1901);
    for (int i = 0; i < m.ps.n; i++) {
        Tensor *t = params_get(&m.ps, i);
        if (!strstr(t->name, "norm")) fill_normal(&r, tensor_f32(t), t->numel, 0.2f);
    }
    Data d;
    make_data(&d, &cfg, 3, 0, 1902); /* pair 0 (image), pair 1, pair 2 */
    /* rows 2..5 become four responses to pair 0's prompt: X, Y, X, X (pair 0's rows) */
    int T = d.T, src[4] = {0, 1, 0, 0};
    int ids[MAXB * MAXT], lengths[MAXB], image_of[MAXB];
    memcpy(ids, d.ids, sizeof ids);
    memcpy(lengths, d.lengths, sizeof lengths);
    memcpy(image_of, d.image_of, sizeof image_of);
    for (int k = 0; k < 4; k++) {
        memcpy(ids + (2 + k) * T, d.ids + src[k] * T, T * sizeof(int));
        lengths[2 + k] = d.lengths[src[k]];
        image_of[2 + k] = d.image_of[0];
    }
    memcpy(d.ids, ids, sizeof ids);
    memcpy(d.lengths, lengths, sizeof lengths);
    memcpy(d.image_of, image_of, sizeof image_of);
    float rw[MAXB], *grad = tmalloc(m.ps.n_trainable);
    for (int mode = 0; mode < 4; mode++) {
        run(&m, &d, mode & 1, mode >> 1, rw, grad);
        CHECK(rw[0] == rw[2] && rw[0] == rw[4] && rw[0] == rw[5] && rw[1] == rw[3],
              "share_prefix %d packing %d: %.9g %.9g %.9g %.9g / %.9g %.9g", mode & 1, mode >> 1,
              rw[0], rw[2], rw[4], rw[5], rw[1], rw[3]);
    }
    free(grad);
    free(d.pixels);
    rm_free(&m);
}
