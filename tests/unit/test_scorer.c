/* test_scorer.c - the inference engine (infer/scorer.h) against direct forwards: a tiny
 * random reward model, PNG images of random pixels written here (1 to 4 tiles), groups of 1 to
 * 4 responses, one missing and one corrupt image, a response holding "<IMG_CONTEXT>" and one
 * long enough to be cut. Every expected score is an rm_forward of that one sequence alone
 * (B = 1), its tiles made with image_load + image_preprocess and its row with template_encode
 * here, so batching, padding, packing several groups per forward, splitting a group across
 * forwards and sharing one image between responses must not change a score. Blank mode is
 * checked the same way against the blank image's tile run through the ViT. */
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb/stb_image_write.h>

#include "infer/scorer.h"
#include "runtime/error.h"
#include "tests/harness.h"
#include "tests/unit/tiny_model.h"

#define MAXLEN 400 /* cuts the long response; the prefix with 4 tiles is about 200 tokens */

enum { NGROUPS = 7, MAXRESP = 4 };

typedef struct {
    RewardModel m;
    Tokenizer *tok;
    char dir[64];
    char path[NGROUPS][128];
    char long_response[1000];
    const char *resp[NGROUPS][MAXRESP];
    ScoreGroup groups[NGROUPS];
    int total;
} Fixture;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void write_png(const char *path, int w, int h, TRng *r) {
    unsigned char *px = malloc((size_t)w * h * 3);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) px[i] = (unsigned char)(trng_uniform(r) * 256);
    if (!stbi_write_png(path, w, h, 3, px, w * 3)) {
        fprintf(stderr, "test_scorer: cannot write %s\n", path);
        exit(2);
    }
    free(px);
}

static void fixture_init(Fixture *f) {
    memset(f, 0, sizeof *f);
    ModelConfig cfg = test_tiny_config(LLM_QWEN2);
    int freeze[PG_COUNT] = {1, 1, 1, 1, 1};
    rm_create(&f->m, &cfg, DEV_CPU, freeze);
    TRng r = trng(2024);
    for (int i = 0; i < f->m.ps.n; i++) { /* larger than the HF init so every input matters */
        Tensor *t = params_get(&f->m.ps, i);
        int is_norm = strstr(t->name, "norm") || !strncmp(t->name, "mlp1.0.", 7);
        for (size_t k = 0; k < t->numel; k++)
            tensor_f32(t)[k] = is_norm ? 1.0f + 0.1f * trng_normal(&r) : 0.35f * trng_normal(&r);
    }
    f->tok = tokenizer_byte_new(0); /* Hermes-2: no BOS */
    snprintf(f->dir, sizeof f->dir, "/tmp/mmrm_test_scorer_XXXXXX");
    if (!mkdtemp(f->dir)) {
        perror("mkdtemp");
        exit(2);
    }
    /* group -> image: a (1 tile), b (3x1 grid + thumbnail), missing, c (1x2 + thumbnail),
     * corrupt, d (3x1 + thumbnail), a again */
    const char *names[NGROUPS] = {"a.png", "b.png", "missing.png", "c.png", "corrupt.png",
                                  "d.png", "a.png"};
    for (int g = 0; g < NGROUPS; g++) snprintf(f->path[g], sizeof f->path[g], "%s/%s", f->dir, names[g]);
    write_png(f->path[0], 8, 8, &r);
    write_png(f->path[1], 24, 8, &r);
    write_png(f->path[3], 9, 20, &r);
    write_png(f->path[5], 40, 13, &r);
    FILE *bad = fopen(f->path[4], "wb");
    fputs("\x89PNG\r\n\x1a\n this is not a PNG body", bad);
    fclose(bad);
    memset(f->long_response, 'x', sizeof f->long_response - 1);
    const char *R[NGROUPS][MAXRESP] = {
        {"A cat on a mat."},
        {"Two dogs.", f->long_response, "  spaced  "},
        {"unused", "unused too"},
        {"A tree.", "I see <IMG_CONTEXT> here"},
        {"nothing"},
        {"first", "second answer, longer than the first", "3", "the fourth"},
        {"A cat on a mat, again."},
    };
    int counts[NGROUPS] = {1, 3, 2, 2, 1, 4, 1};
    const char *prompts[NGROUPS] = {"What is shown?", "Count the animals.\n", "?",
                                    "Describe the picture.", "x", "List things.", "What now?"};
    for (int g = 0; g < NGROUPS; g++) {
        for (int j = 0; j < counts[g]; j++) f->resp[g][j] = R[g][j];
        f->groups[g] = (ScoreGroup){prompts[g], f->path[g], f->resp[g], counts[g]};
        f->total += counts[g];
    }
}

static void fixture_free(Fixture *f) {
    nftw(f->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    tokenizer_free(f->tok);
    rm_free(&f->m);
}

/* The reference: one sequence alone through rm_forward. *status as the scorer reports it. */
static float direct_score(Fixture *f, Graph *g, const ScoreGroup *gr, int j, int blank,
                          ScoreStatus *status, int *truncated) {
    ImageConfig ic = {.image_size = 8, .min_num = 1, .max_num = 6, .dynamic = 1,
                      .use_thumbnail = 1};
    Image img;
    *status = SCORE_OK;
    *truncated = 0;
    if (blank) {
        image_blank(IMAGE_BLANK_SIZE, IMAGE_BLANK_SIZE, &img);
        ic.dynamic = 0;
    } else if (image_load(gr->image, &img)) {
        *status = SCORE_IMAGE_FAILED;
        return NAN;
    }
    int n = image_num_tiles(img.w, img.h, &ic);
    float *px = tmalloc((size_t)n * 3 * 8 * 8);
    CHECK(image_preprocess(&img, &ic, px, n) == n, "preprocess: %s", mmrm_last_error());
    image_free(&img);
    int ids[MAXLEN];
    TemplateInfo info;
    int len = template_encode(f->tok, TEMPLATE_HERMES_2, NULL, gr->prompt, gr->responses[j], 4 * n,
                              MAXLEN, ids, MAXLEN, &info);
    float score = NAN;
    if (len == TEMPLATE_IMAGE_TOKEN_TEXT) {
        *status = SCORE_IMAGE_TOKEN_TEXT;
    } else if (len < 0) {
        CHECK(0, "unexpected template result %d: %s", len, mmrm_last_error());
        *status = SCORE_NO_ROOM;
    } else {
        *truncated = info.truncated > 0;
        int zero = 0;
        RmBatch bt = {1, len, ids, &len, 1, &n, px, &zero, NULL};
        graph_reset(g);
        score = tensor_f32(rm_forward(&f->m, g, &bt))[0];
    }
    free(px);
    return score;
}

/* Scores the fixture with batch size B and compares every response with its direct forward. */
static void check_against_direct(Fixture *f, int B, int blank) {
    ScorerOptions o;
    scorer_default_options(&f->m.cfg, &o);
    CHECK(o.image.max_num == 6 && o.image.use_thumbnail && o.image.dynamic && o.image.min_num == 1,
          "defaults are not InternVL2's 1..6 tiles with a thumbnail");
    /* a config that records its tiling (a trained checkpoint's) sets the defaults instead */
    ModelConfig rec = f->m.cfg;
    rec.has_tiling = 1;
    rec.dynamic_image_size = 0;
    rec.use_thumbnail = 0;
    rec.min_dynamic_patch = 2;
    rec.max_dynamic_patch = 3;
    ScorerOptions ro;
    scorer_default_options(&rec, &ro);
    CHECK(!ro.image.dynamic && !ro.image.use_thumbnail && ro.image.min_num == 2 && ro.image.max_num == 3 &&
              ro.image.image_size == rec.image_size,
          "the config's recorded tiling is not the scoring default");
    o.batch_size = B;
    o.max_length = MAXLEN;
    o.blank = blank;
    Scorer *s = scorer_new(&f->m, f->tok, &o);
    CHECK(s != NULL, "scorer_new: %s", mmrm_last_error());
    if (!s) return;
    ScoreOut out[NGROUPS * MAXRESP];
    char msg[NGROUPS][SCORER_MSG_LEN];
    CHECK(scorer_score(s, f->groups, NGROUPS, out, msg) == 0, "scorer_score: %s",
          mmrm_last_error());
    Graph g;
    graph_init(&g, DEV_CPU, 1 << 20, 0);
    graph_set_grad(&g, 0);
    int k = 0, scored = 0, truncated = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (int gi = 0; gi < NGROUPS; gi++) {
        for (int j = 0; j < f->groups[gi].n; j++, k++) {
            ScoreStatus want;
            int trunc;
            float ref = direct_score(f, &g, &f->groups[gi], j, blank, &want, &trunc);
            CHECK(out[k].status == want, "B=%d blank=%d group %d response %d: status %s, want %s",
                  B, blank, gi, j, score_status_name(out[k].status), score_status_name(want));
            CHECK(out[k].truncated == trunc, "group %d response %d: truncated %d, want %d", gi, j,
                  out[k].truncated, trunc);
            if (want != SCORE_OK) {
                CHECK(isnan(out[k].score), "group %d response %d: a score for a failure", gi, j);
                continue;
            }
            scored++;
            truncated += trunc;
            if (ref < lo) lo = ref;
            if (ref > hi) hi = ref;
            CHECK(fabsf(out[k].score - ref) <= 1e-5f * (1 + fabsf(ref)),
                  "B=%d blank=%d group %d response %d: %.8g, alone %.8g", B, blank, gi, j,
                  out[k].score, ref);
        }
        int failed = !blank && (gi == 2 || gi == 4);
        CHECK(failed == (out[k - 1].status == SCORE_IMAGE_FAILED), "group %d image status", gi);
        if (failed)
            CHECK(strstr(msg[gi], gi == 2 ? "missing.png" : "corrupt.png") != NULL,
                  "group %d message does not name the image: '%s'", gi, msg[gi]);
        if (gi == 3) CHECK(strstr(msg[gi], "response 1") != NULL, "group 3 message: '%s'", msg[gi]);
        if (gi == 0) CHECK(msg[gi][0] == '\0', "group 0 has a message: '%s'", msg[gi]);
    }
    /* the case exercises what it claims: most responses scored, one cut, distinct scores */
    CHECK(scored >= (blank ? 13 : 10) && truncated == 1, "scored %d, truncated %d", scored,
          truncated);
    CHECK(hi - lo > 1e-3f, "scores barely differ (%g..%g): the comparison would be weak", lo, hi);
    const ScorerStats *st = scorer_stats(s);
    CHECK(st->sequences == scored, "stats: %ld sequences, %d scored", st->sequences, scored);
    CHECK(st->images == (blank ? 0 : 5), "B=%d: %ld images decoded, want one per readable group",
          B, st->images);
    CHECK(st->forwards == (scored + B - 1) / B, "B=%d: %ld forwards for %d sequences", B,
          st->forwards, scored);
    graph_free(&g);
    scorer_free(s);
}

TEST(test_scorer_scores_equal_single_sequence_forwards_for_any_batch_size) {
    Fixture f;
    fixture_init(&f);
    check_against_direct(&f, 1, 0);
    check_against_direct(&f, 3, 0); /* group 5 spans two forwards, forwards span groups */
    check_against_direct(&f, 16, 0);
    fixture_free(&f);
}

TEST(test_scorer_blank_mode_equals_forwards_on_the_blank_image_tile) {
    Fixture f;
    fixture_init(&f);
    check_against_direct(&f, 1, 1);
    check_against_direct(&f, 4, 1);
    fixture_free(&f);
}

/* scores with options o (batch 3, MAXLEN) into out; the scorer's stats into st */
static void score_with(Fixture *f, ScorerOptions *o, ScoreOut *out, ScorerStats *st, int *tb) {
    o->batch_size = 3;
    o->max_length = MAXLEN;
    memset(st, 0, sizeof *st);
    *tb = -1;
    Scorer *s = scorer_new(&f->m, f->tok, o);
    CHECK(s != NULL, "scorer_new: %s", mmrm_last_error());
    if (!s) return;
    CHECK(scorer_score(s, f->groups, NGROUPS, out, NULL) == 0, "scorer_score: %s", mmrm_last_error());
    *st = *scorer_stats(s);
    *tb = scorer_options(s)->t_bucket;
    scorer_free(s);
}

TEST(test_scorer_t_bucket_pads_forwards_without_changing_a_score) {
    Fixture f;
    fixture_init(&f);
    static const int layouts[3][2] = {{1, 1}, {1, 0}, {0, 0}}; /* share_prefix, packing */
    int total = 0;
    for (int gi = 0; gi < NGROUPS; gi++) total += f.groups[gi].n;
    for (int l = 0; l < 3; l++) {
        ScoreOut ref[NGROUPS * MAXRESP], out[NGROUPS * MAXRESP];
        ScorerStats st1, st;
        int tb;
        ScorerOptions o;
        scorer_default_options(&f.m.cfg, &o);
        o.share_prefix = layouts[l][0], o.packing = layouts[l][1];
        score_with(&f, &o, ref, &st1, &tb);
        CHECK(tb == 1, "auto t_bucket on the CPU is %d, want 1", tb);
        for (int bucket = 7; bucket <= MAXLEN; bucket += MAXLEN - 7) { /* 7, and MAXLEN */
            o.t_bucket = bucket;
            score_with(&f, &o, out, &st, &tb);
            CHECK(tb == bucket, "t_bucket %d became %d", bucket, tb);
            for (int k = 0; k < total; k++)
                CHECK(out[k].status == ref[k].status &&
                          (ref[k].status != SCORE_OK ||
                           memcmp(&out[k].score, &ref[k].score, sizeof(float)) == 0),
                      "layout %d t_bucket %d: response %d scored %.9g, unbucketed %.9g", l, bucket,
                      k, out[k].score, ref[k].score);
            /* the rounding happened: padded slots grew; MAXLEN pads every row to MAXLEN */
            CHECK(st.padded > st1.padded && st.computed >= st1.computed,
                  "layout %d t_bucket %d: padded %ld computed %ld, unbucketed %ld %ld", l, bucket,
                  st.padded, st.computed, st1.padded, st1.computed);
            if (bucket == MAXLEN)
                CHECK(st.padded == st.sequences * MAXLEN, "t_bucket MAXLEN: %ld padded for %ld rows",
                      st.padded, st.sequences);
        }
    }
    fixture_free(&f);
}

TEST(test_scorer_rejects_options_that_do_not_fit_the_model) {
    Fixture f;
    fixture_init(&f);
    ScorerOptions o;
    scorer_default_options(&f.m.cfg, &o);
    o.image.image_size = 16;
    CHECK(!scorer_new(&f.m, f.tok, &o) && strstr(mmrm_last_error(), "image_size"),
          "image size mismatch accepted (%s)", mmrm_last_error());
    scorer_default_options(&f.m.cfg, &o);
    o.batch_size = 0;
    CHECK(!scorer_new(&f.m, f.tok, &o) && strstr(mmrm_last_error(), "batch size"),
          "batch size 0 accepted (%s)", mmrm_last_error());
    scorer_default_options(&f.m.cfg, &o);
    o.max_length = f.m.cfg.llm.max_positions + 1;
    CHECK(!scorer_new(&f.m, f.tok, &o) && strstr(mmrm_last_error(), "max_length"),
          "max_length past the positions accepted (%s)", mmrm_last_error());
    for (int tb = -1; tb <= MAXLEN + 1; tb += MAXLEN + 2) { /* -1, and past max_length */
        scorer_default_options(&f.m.cfg, &o);
        o.max_length = MAXLEN;
        o.t_bucket = tb;
        CHECK(!scorer_new(&f.m, f.tok, &o) && strstr(mmrm_last_error(), "t_bucket"),
              "t_bucket %d accepted with max_length %d (%s)", tb, MAXLEN, mmrm_last_error());
    }
    Tokenizer *bos = tokenizer_byte_new(1); /* Hermes-2 adds no BOS */
    scorer_default_options(&f.m.cfg, &o);
    CHECK(!scorer_new(&f.m, bos, &o), "a tokenizer contradicting the template was accepted");
    tokenizer_free(bos);
    fixture_free(&f);
}
