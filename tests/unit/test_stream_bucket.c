/* test_stream_bucket.c - RewardModel.t_bucket on the compact rows (packing, share_prefix):
 * the packed stream's length (or the groups' longest row) is rounded up to the bucket with a
 * tail that changes no result. On the CPU, for Qwen2 and InternLM2, images of one tile and of
 * several and text-only pairs, a bias-model-like batch (every row the one blank image), with
 * and without recompute segments, and buckets that leave tails of 1 token to a whole bucket:
 * the rewards, the Bradley-Terry loss and every parameter gradient (embeddings, norms, biases,
 * ViT, connector, head) equal the unbucketed run's bitwise; and the computed layout is the
 * rounded one (rm_tokens_counted: B x T of the compact rows). */
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
    float margin[MAXB];
    float *pixels;
} Data;

/* P pairs (rows 2i, 2i+1): a system token, the image block (none for every third pair),
 * a random prompt shared by the pair, two responses of random lengths, the end token;
 * blank: every row shows image 0 (one tile), as the bias model's rows */
static void make_data(Data *d, const ModelConfig *cfg, int P, int blank, uint64_t seed) {
    TRng r = trng(seed);
    int tpt = config_tokens_per_tile(cfg), S = cfg->image_size, ntiles = 0, T = 0;
    d->B = 2 * P;
    d->n_images = blank ? 1 : 0;
    if (blank) d->tiles[0] = 1, ntiles = 1;
    for (int i = 0; i < P; i++) {
        int has = blank || i % 3 != 2, tiles = blank ? 1 : 1 + (i % 2) * 2;
        int im = blank ? 0 : has ? d->n_images : -1;
        if (!blank && has) d->tiles[d->n_images++] = tiles, ntiles += tiles;
        int prompt[8], np = 2 + (int)(trng_uniform(&r) * 6);
        for (int t = 0; t < np; t++) prompt[t] = (int)(trng_uniform(&r) * 256);
        d->margin[i] = (float)(i % 2);
        for (int k = 0; k < 2; k++) {
            int b = 2 * i + k, t = 0, *row = d->ids + b * MAXT;
            d->image_of[b] = im;
            row[t++] = 258;
            for (int j = 0; im >= 0 && j < d->tiles[im] * tpt; j++) row[t++] = cfg->img_context_id;
            for (int j = 0; j < np; j++) row[t++] = prompt[j];
            int rl = 1 + (int)(trng_uniform(&r) * (k ? 20 : 6));
            for (int j = 0; j < rl; j++) row[t++] = (int)(trng_uniform(&r) * 256);
            row[t++] = 259;
            d->lengths[b] = t;
            T = t > T ? t : T;
        }
    }
    d->T = T;
    for (int b = 0; b < d->B; b++) /* rows to stride T, padded */
        for (int t = 0; t < T; t++)
            d->ids[b * T + t] = t < d->lengths[b] ? d->ids[b * MAXT + t] : 269;
    d->pixels = tmalloc((size_t)ntiles * 3 * S * S);
    fill_normal(&r, d->pixels, (size_t)ntiles * 3 * S * S, 1.0f);
}

/* rewards (B), the loss and the full gradient of the loss (n_trainable); *computed: the
 * tokens the layout computed (B x T of the compact rows) */
static float run(RewardModel *m, const Data *d, int share, int pack, int recompute, int bucket,
                 float *rw, float *grad, long *computed) {
    Graph g;
    graph_init(&g, DEV_CPU, 1 << 20, 5);
    m->share_prefix = share, m->packing = pack, m->t_bucket = bucket;
    m->grad_checkpoint = g.recompute = recompute;
    RmBatch bt = {d->B, d->T, d->ids, d->lengths, d->n_images, d->tiles, d->pixels, d->image_of, NULL};
    params_zero_grad(&m->ps);
    long c0, r0, c1, r1;
    rm_tokens_counted(&c0, &r0);
    Tensor *r = op_reshape(&g, rm_forward(m, &g, &bt), 2, (int[]){d->B, 1});
    rm_tokens_counted(&c1, &r1);
    *computed = c1 - c0;
    int P = d->B / 2, ic[MAXB], ir[MAXB];
    for (int i = 0; i < P; i++) ic[i] = 2 * i, ir[i] = 2 * i + 1;
    Tensor *loss = op_bt_loss(&g, op_gather_rows(&g, r, ic, P), op_gather_rows(&g, r, ir, P),
                              d->margin, NULL);
    float one = 1.0f, lv = graph_host(&g, loss)[0];
    memcpy(rw, graph_host(&g, r), d->B * sizeof(float));
    graph_backward_from(&g, loss, &one);
    memcpy(grad, m->ps.grad, m->ps.n_trainable * sizeof(float));
    graph_free(&g);
    m->share_prefix = m->packing = m->grad_checkpoint = m->t_bucket = 0;
    return lv;
}

static long round_up(long n, int k) { return k > 1 ? (n + k - 1) / k * k : n; }

static void check(LlmArch arch, int blank, uint64_t seed) {
    ModelConfig cfg = test_tiny_config(arch);
    RewardModel m;
    int freeze[PG_COUNT] = {0};
    rm_create(&m, &cfg, DEV_CPU, freeze);
    rm_init_random(&m, seed);
    TRng r = trng(seed + 1); /* larger weights (norms and biases too), so that a leak would show */
    for (int i = 0; i < m.ps.n; i++) {
        Tensor *t = params_get(&m.ps, i);
        fill_normal(&r, tensor_f32(t), t->numel, strstr(t->name, "norm") ? 0.5f : 0.2f);
        if (strstr(t->name, "norm"))
            for (size_t k = 0; k < (size_t)t->numel; k++) tensor_f32(t)[k] += 1.0f;
    }
    Data d;
    make_data(&d, &cfg, 5, blank, seed + 2);
    size_t n = m.ps.n_trainable;
    float ref_r[MAXB], got_r[MAXB], *ref_g = tmalloc(n), *got_g = tmalloc(n);
    const int buckets[] = {7, 16, 64, 128};
    long tails = 0, groups = 1; /* share_prefix's groups: runs of rows showing one image */
    for (int b = 1; b < d.B; b++) groups += d.image_of[b] != d.image_of[b - 1];
    for (int mode = 0; mode < 4; mode++) { /* packed; packed + shared; shared; packed + shared, recomputed */
        int pack = mode != 2, share = mode != 0, rc = mode == 3;
        long base;
        float ref_l = run(&m, &d, share, pack, rc, 0, ref_r, ref_g, &base);
        double gmax = 0;
        for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(ref_g[i]));
        CHECK(gmax > 0 && isfinite(ref_l), "no gradient or no loss");
        for (int k = 0; k < 4; k++) {
            int bk = buckets[k];
            long got;
            float got_l = run(&m, &d, share, pack, rc, bk, got_r, got_g, &got);
            /* the layout: the stream rounded up (packed), or every group padded to the
             * longest group rounded up (B = groups) */
            long want = pack ? round_up(base, bk) : groups * round_up(base / groups, bk);
            CHECK(got == want, "arch %d blank %d mode %d bucket %d: %ld tokens computed, want %ld "
                  "(%ld unbucketed)", arch, blank, mode, bk, got, want, base);
            tails += got - base;
            CHECK(EXPECT_SAME("rewards", got_r, ref_r, d.B) & EXPECT_SAME("loss", &got_l, &ref_l, 1) &
                      EXPECT_SAME("gradient", got_g, ref_g, n),
                  "arch %d blank %d share_prefix %d packing %d recompute %d t_bucket %d", arch,
                  blank, share, pack, rc, bk);
        }
    }
    CHECK(tails > 0, "no bucket left a tail");
    free(ref_g); free(got_g); free(d.pixels);
    rm_free(&m);
}

TEST(test_stream_bucket_tail_changes_no_reward_loss_or_gradient_qwen2) {
    check(LLM_QWEN2, 0, 2000);
    check(LLM_QWEN2, 1, 2010);
}

TEST(test_stream_bucket_tail_changes_no_reward_loss_or_gradient_internlm2) {
    check(LLM_INTERNLM2, 0, 2020);
    check(LLM_INTERNLM2, 1, 2030);
}
