/* test_token_budget.c - max_tokens_per_batch's pieces (train/chunks.c): rm_forward_tokens is
 * the number of token rows rm_forward then computes, for every layout (padded, shared prefix,
 * packed, both) and for any run of pairs cut out of a batch by chunk_view; and a batch run
 * as chunks of pairs, each Bradley-Terry loss weighted by its share of the pairs, gives the
 * rewards and every parameter gradient of the whole batch (within 1e-6 relative, fp32), with
 * images of one tile and of several, and with every row showing one (blank) image as the
 * bias model's rows do. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/reward_model.h"
#include "runtime/ops.h"
#include "tests/harness.h"
#include "tests/unit/tiny_model.h"
#include "train/run.h"

enum { NP = 6, MAXB = 2 * NP, MAXT = 96 };

typedef struct {
    int B, T, n_images;
    int ids[MAXB * MAXT], lengths[MAXB], tiles[MAXB], image_of[MAXB];
    float margin[NP];
    float *pixels;
} Pairs;

/* NP pairs as the batch loader lays them out: pair i shows image i (1 tile, or 2 + thumbnail)
 * in both rows, or with blank every row shows image 0 (one tile); a system token, the image
 * block, a random prompt, two responses of random lengths (pair 1's start alike) */
static void make_pairs(Pairs *d, const ModelConfig *cfg, int blank, uint64_t seed) {
    TRng r = trng(seed);
    int tpt = config_tokens_per_tile(cfg), S = cfg->image_size, ntiles = 0, T = 0;
    d->B = MAXB;
    d->n_images = blank ? 1 : NP;
    for (int i = 0; i < d->n_images; i++) ntiles += d->tiles[i] = blank ? 1 : 1 + (i % 2) * 2;
    for (int i = 0; i < NP; i++) {
        int np = 2 + (int)(trng_uniform(&r) * 6), prompt[8];
        for (int t = 0; t < np; t++) prompt[t] = (int)(trng_uniform(&r) * 256);
        d->margin[i] = (float)trng_uniform(&r) - 0.5f;
        for (int k = 0; k < 2; k++) {
            int b = 2 * i + k, t = 0, *row = d->ids + b * MAXT, im = blank ? 0 : i;
            d->image_of[b] = im;
            row[t++] = 258;
            for (int j = 0; j < d->tiles[im] * tpt; j++) row[t++] = cfg->img_context_id;
            for (int j = 0; j < np; j++) row[t++] = prompt[j];
            int rl = 1 + (int)(trng_uniform(&r) * (k ? 24 : 6));
            for (int j = 0; j < rl; j++) {
                int alike = i == 1 && k == 1 && j < 2 && t < d->lengths[b - 1] - 1; /* as the chosen */
                row[t] = alike ? d->ids[(b - 1) * MAXT + t] : (int)(trng_uniform(&r) * 256);
                t++;
            }
            row[t++] = 259;
            d->lengths[b] = t;
            T = t > T ? t : T;
        }
    }
    d->T = T;
    for (int b = 0; b < d->B; b++)
        for (int t = 0; t < T; t++) d->ids[b * T + t] = t < d->lengths[b] ? d->ids[b * MAXT + t] : 269;
    d->pixels = tmalloc((size_t)ntiles * 3 * S * S);
    fill_normal(&r, d->pixels, (size_t)ntiles * 3 * S * S, 1.0f);
}

static void make_model(RewardModel *m, uint64_t seed) {
    ModelConfig cfg = test_tiny_config(LLM_QWEN2);
    int freeze[PG_COUNT] = {0};
    rm_create(m, &cfg, DEV_CPU, freeze);
    rm_init_random(m, seed);
    TRng r = trng(seed + 1); /* 10x the init's weights, so that errors would show */
    for (int i = 0; i < m->ps.n; i++) {
        Tensor *t = params_get(&m->ps, i);
        if (!strstr(t->name, "norm")) fill_normal(&r, tensor_f32(t), t->numel, 0.2f);
    }
}

TEST(test_rm_forward_tokens_is_what_rm_forward_computes) {
    RewardModel m;
    make_model(&m, 2400);
    for (int blank = 0; blank < 2; blank++) {
        Pairs d;
        make_pairs(&d, &m.cfg, blank, 2410 + blank);
        RmBatch full = {d.B, d.T, d.ids, d.lengths, d.n_images, d.tiles, d.pixels, d.image_of, NULL};
        int cuts[][2] = {{0, NP}, {0, 1}, {1, 2}, {2, 5}, {3, NP}};
        for (int mode = 0; mode < 4; mode++)
            for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
                m.share_prefix = mode & 1, m.packing = mode >> 1;
                int img[MAXB], p0 = cuts[c][0], p1 = cuts[c][1];
                RmBatch v;
                chunk_view(&full, p0, p1, m.cfg.image_size, img, &v);
                long want = rm_forward_tokens(&m, &v), c0, c1, r0, r1, rows = 0;
                Graph g;
                graph_init(&g, DEV_CPU, 1 << 20, 5);
                graph_set_grad(&g, 0);
                rm_tokens_counted(&c0, &r0);
                rm_forward(&m, &g, &v);
                rm_tokens_counted(&c1, &r1);
                graph_free(&g);
                for (int b = 2 * p0; b < 2 * p1; b++) rows += d.lengths[b];
                CHECK(c1 - c0 == want, "blank %d share %d pack %d pairs [%d, %d): rm_forward computed "
                      "%ld tokens, rm_forward_tokens said %ld", blank, mode & 1, mode >> 1, p0, p1,
                      c1 - c0, want);
                CHECK(r1 - r0 == rows, "pairs [%d, %d): %ld tokens in the rows, want %ld", p0, p1, r1 - r0, rows);
                if (mode == 0) CHECK(want == (long)v.B * d.T, "padded: %ld", want);
                if (mode == 2) CHECK(want == rows, "packed: %ld for %ld in the rows", want, rows);
                if (mode == 3 && p1 - p0 > 1) CHECK(want < rows, "shared + packed: %ld for %ld", want, rows);
            }
        free(d.pixels);
    }
    rm_free(&m);
}

/* rewards (B) and the gradient (n_trainable) of the mean Bradley-Terry loss over the pairs,
 * run as the chunks [cut[k], cut[k+1]) (nc of them), each loss weighted by its pairs / NP */
static void chunked(RewardModel *m, const Pairs *d, const int *cut, int nc, float *rw, float *grad) {
    RmBatch full = {d->B, d->T, d->ids, d->lengths, d->n_images, d->tiles, d->pixels, d->image_of, NULL};
    params_zero_grad(&m->ps);
    for (int k = 0; k < nc; k++) {
        Graph g;
        graph_init(&g, DEV_CPU, 1 << 20, 5);
        int P = cut[k + 1] - cut[k], img[MAXB], ic[NP], ir[NP];
        RmBatch v;
        chunk_view(&full, cut[k], cut[k + 1], m->cfg.image_size, img, &v);
        Tensor *r = op_reshape(&g, rm_forward(m, &g, &v), 2, (int[]){2 * P, 1});
        for (int i = 0; i < P; i++) ic[i] = 2 * i, ir[i] = 2 * i + 1;
        Tensor *loss = op_bt_loss(&g, op_gather_rows(&g, r, ic, P), op_gather_rows(&g, r, ir, P),
                                  d->margin + cut[k], NULL);
        memcpy(rw + 2 * cut[k], graph_host(&g, r), 2 * P * sizeof(float));
        float w = (float)P / NP;
        graph_backward_from(&g, loss, &w);
        graph_free(&g);
    }
    memcpy(grad, m->ps.grad, m->ps.n_trainable * sizeof(float));
}

TEST(test_pairs_run_in_chunks_give_the_whole_batch_rewards_and_gradients) {
    RewardModel m;
    make_model(&m, 2500);
    size_t n = m.ps.n_trainable;
    float ref_r[MAXB], got_r[MAXB], *ref_g = tmalloc(n), *got_g = tmalloc(n);
    double *rr = malloc(MAXB * sizeof *rr), *rg = malloc(n * sizeof *rg);
    if (!rr || !rg) abort();
    int whole[] = {0, NP}, cuts[][NP + 1] = {{0, 1, 3, 4, NP}, {0, 1, 2, 3, 4, 5, NP}};
    int ncuts[] = {4, NP};
    for (int blank = 0; blank < 2; blank++)
        for (int mode = 0; mode < 4; mode += 3) { /* padded rows; shared prefix + packing */
            m.share_prefix = m.packing = mode == 3;
            Pairs d;
            make_pairs(&d, &m.cfg, blank, 2510 + blank);
            chunked(&m, &d, whole, 1, ref_r, ref_g);
            double rmax = 0, gmax = 0;
            for (int b = 0; b < MAXB; b++) rr[b] = ref_r[b], rmax = fmax(rmax, fabs(ref_r[b]));
            for (size_t i = 0; i < n; i++) rg[i] = ref_g[i], gmax = fmax(gmax, fabs(ref_g[i]));
            CHECK(gmax > 0, "no gradient at all");
            for (int c = 0; c < 2; c++) {
                chunked(&m, &d, cuts[c], ncuts[c], got_r, got_g);
                CHECK(EXPECT_CLOSE("rewards", got_r, rr, MAXB, 1e-6, 1e-6 * rmax) &
                          EXPECT_CLOSE("gradient", got_g, rg, n, 1e-6, 1e-6 * gmax),
                      "blank %d share_prefix + packing %d, %d chunks", blank, mode == 3, ncuts[c]);
            }
            free(d.pixels);
        }
    free(rr); free(rg); free(ref_g); free(got_g);
    rm_free(&m);
}
