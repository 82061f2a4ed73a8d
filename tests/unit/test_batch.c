/* test_batch.c - the batch pipeline (models/batch.h) on a small data set written at test time:
 * odd-sized PNG and BMP images of random pixels, a JSONL of 23 pairwise records (one with a
 * missing image, three the template rejects, one response long enough to be cut), the byte
 * tokenizer and internlm2-chat. Tiles are 28 px so that decoding stays fast; 64 image tokens
 * per tile and a max_length that ends exactly at a 5-tile image block separate images of up
 * to 4 tiles (kept) from 5-tile ones (image block cut).
 *
 * Expected rows and tiles are computed here with template_encode and image_load +
 * image_preprocess on each pair, independently of the loader. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_image_write.h>

#include "runtime/error.h"
#include "tests/harness.h"
#include "models/batch.h"

#define S 28                      /* tile side */
#define TILE ((size_t)3 * S * S)  /* floats per tile */
#define TPT 64                    /* <IMG_CONTEXT> tokens per tile */
#define NLINES 23
#define USABLE 19                 /* 23 records - 1 missing image - 3 rejected by the template */
#define MAX_PAIRS 64

static const struct {
    const char *name;
    int w, h, tiles; /* tiles at max_num 4 with a thumbnail */
} g_images[] = {{"a.png", 37, 23, 3}, {"b.bmp", 23, 37, 3}, {"c.png", 29, 29, 1},
                {"d.png", 61, 20, 4}, {"e.bmp", 17, 50, 4}, {"f.png", 45, 31, 1},
                {"g.bmp", 31, 44, 3}, {"wide.png", 90, 21, 5}};
#define NORMAL_IMAGES 7 /* the wide one only serves the image-cut record */

/* the special records, by 0-based line */
enum { LINE_LONG = 5, LINE_MISSING = 9, LINE_CUT = 13, LINE_NO_ROOM = 17, LINE_TOKEN_TEXT = 20 };

typedef struct {
    char dir[64];
    char jsonl[128];
    PairSet ps;
    Tokenizer *tok;
    int max_length;
    int im_end, pad, img_context;
} Data;

static Data g_data;
static int g_built;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(void) {
    pairset_free(&g_data.ps);
    tokenizer_free(g_data.tok);
    nftw(g_data.dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *what) {
    fprintf(stderr, "test_batch: %s: %s\n", what, mmrm_last_error());
    exit(2);
}

/* out = dir/name */
static void join(char *out, size_t cap, const char *dir, const char *name) {
    if (snprintf(out, cap, "%s/%s", dir, name) >= (int)cap) die("path too long");
}

static void write_image(const char *dir, const char *name, int w, int h, TRng *r) {
    char path[256];
    join(path, sizeof path, dir, name);
    unsigned char *px = malloc((size_t)w * h * 3);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) px[i] = (unsigned char)(trng_uniform(r) * 256);
    size_t n = strlen(name);
    int ok = strcmp(name + n - 4, ".png") == 0 ? stbi_write_png(path, w, h, 3, px, w * 3)
                                                : stbi_write_bmp(path, w, h, 3, px);
    free(px);
    if (!ok) die(path);
}

/* n random lower-case letters and spaces, starting with a letter */
static char *text(TRng *r, int n, char *buf) {
    for (int i = 0; i < n; i++)
        buf[i] = i && trng_uniform(r) < 0.2 ? ' ' : (char)('a' + (int)(trng_uniform(r) * 26));
    buf[n] = '\0';
    return buf;
}

static int rand_len(TRng *r, int lo, int hi) { return lo + (int)(trng_uniform(r) * (hi - lo + 1)); }

/* The shared data set, written once; removed at exit. */
static Data *data(void) {
    if (g_built) return &g_data;
    g_built = 1;
    mmrm_set_quiet(1);
    Data *d = &g_data;
    snprintf(d->dir, sizeof d->dir, "/tmp/mmrm_batch_XXXXXX");
    if (!mkdtemp(d->dir)) die("mkdtemp");
    atexit(cleanup);
    TRng r = trng(20240611);
    for (size_t i = 0; i < sizeof g_images / sizeof g_images[0]; i++)
        write_image(d->dir, g_images[i].name, g_images[i].w, g_images[i].h, &r);

    join(d->jsonl, sizeof d->jsonl, d->dir, "data.jsonl");
    FILE *f = fopen(d->jsonl, "w");
    if (!f) die(d->jsonl);
    for (int i = 0; i < NLINES; i++) {
        char prompt[512], chosen[512], rejected[512], margin[32] = "";
        const char *image = g_images[i % NORMAL_IMAGES].name;
        text(&r, rand_len(&r, 5, 15), prompt);
        text(&r, rand_len(&r, 3, 25), chosen);
        text(&r, rand_len(&r, 3, 25), rejected);
        if (i % 4 == 1) snprintf(margin, sizeof margin, ",\"margin\":%.2f", 0.25 * (i % 5));
        if (i == LINE_LONG) text(&r, 300, chosen);
        if (i == LINE_MISSING) image = "missing.png";
        if (i == LINE_CUT) image = "wide.png";
        if (i == LINE_NO_ROOM) text(&r, 400, prompt);
        if (i == LINE_TOKEN_TEXT) snprintf(rejected, sizeof rejected, "see <IMG_CONTEXT> here");
        fprintf(f, "{\"prompt\":\"%s\",\"img_path\":\"%s\",\"chosen\":\"%s\","
                   "\"rejected\":\"%s\"%s}\n", prompt, image, chosen, rejected, margin);
    }
    fclose(f);
    const char *path = d->jsonl;
    if (pairset_load(&d->ps, &path, 1, NULL)) die("pairset_load");
    d->tok = tokenizer_byte_new(1);
    d->im_end = tokenizer_special_id(d->tok, "<|im_end|>");
    d->pad = d->tok->pad_id;
    d->img_context = tokenizer_special_id(d->tok, "<IMG_CONTEXT>");

    /* max_length ends at the last token of a 5-tile image block */
    TemplateInfo info;
    int ids[4096];
    if (template_encode(d->tok, TEMPLATE_INTERNLM2_CHAT, NULL, "p", "r", TPT, 4096, ids, 4096, &info) < 0)
        die("template_encode");
    d->max_length = info.image_start + 5 * TPT + 2;
    return d;
}

static BatchOptions options(const Data *d) {
    return (BatchOptions){
        .pairs = 2, .rank = 0, .world = 1, .seed = 1234, .shuffle = 1, .layout = BATCH_PADDED,
        .epochs = 1, .template_kind = TEMPLATE_INTERNLM2_CHAT, .max_length = d->max_length,
        .tokens_per_tile = TPT, .image = {S, 1, 4, 1, 1}, .on_bad = REC_ON_BAD_SKIP};
}

static BatchLoader *open_or_report(const Data *d, const BatchOptions *o) {
    BatchLoader *L = batch_loader_open(&d->ps, d->tok, o);
    CHECK(L != NULL, "batch_loader_open: %s", mmrm_last_error());
    return L;
}

/* ---- every field of a batch as 32-bit words, to compare batches bitwise ---- */

typedef struct {
    uint32_t *w;
    size_t n, cap;
} Trace;

static void put(Trace *t, const void *p, size_t bytes) {
    size_t words = (bytes + 3) / 4;
    if (t->n + words > t->cap) {
        while (t->n + words > t->cap) t->cap = t->cap ? 2 * t->cap : 1024;
        t->w = realloc(t->w, t->cap * sizeof *t->w);
    }
    t->w[t->n + words - 1] = 0;
    memcpy(t->w + t->n, p, bytes);
    t->n += words;
}

static void put_rows(Trace *t, const BatchRows *r) {
    put(t, &r->B, sizeof r->B);
    put(t, &r->T, sizeof r->T);
    put(t, &r->total, sizeof r->total);
    put(t, r->lengths, (size_t)r->B * sizeof(int));
    if (r->ids) {
        put(t, r->ids, (size_t)r->B * r->T * sizeof(int));
    } else {
        put(t, r->packed, (size_t)r->total * sizeof(int));
        put(t, r->cu_seqlens, (size_t)(r->B + 1) * sizeof(int));
        put(t, r->positions, (size_t)r->total * sizeof(int));
    }
}

static void put_batch(Trace *t, const Batch *b) {
    int ntiles = 0;
    for (int i = 0; i < b->P; i++) ntiles += b->tiles[i];
    put(t, &b->P, sizeof b->P);
    put(t, &b->n_images, sizeof b->n_images);
    put(t, &b->at, sizeof b->at);
    put(t, &b->next, sizeof b->next);
    put(t, b->pair, (size_t)b->P * sizeof *b->pair);
    put(t, b->margin, (size_t)b->P * sizeof *b->margin);
    put(t, b->tiles, (size_t)b->P * sizeof *b->tiles);
    put(t, b->image_of, (size_t)2 * b->P * sizeof *b->image_of);
    put_rows(t, &b->rows);
    put(t, b->pixels, (size_t)ntiles * TILE * sizeof(float));
    if (b->blank_pixels) {
        put_rows(t, &b->blank);
        put(t, b->blank_image_of, (size_t)2 * b->P * sizeof(int));
        put(t, b->blank_pixels, TILE * sizeof(float));
    }
}

/* every batch the loader gives, one trace each; *n_out batches */
static Trace *drain(BatchLoader *L, int *n_out) {
    Trace *all = NULL;
    int n = 0;
    const Batch *b;
    int rc;
    while ((rc = batch_loader_next(L, &b)) == 1) {
        all = realloc(all, (size_t)(n + 1) * sizeof *all);
        all[n] = (Trace){0};
        put_batch(&all[n++], b);
    }
    CHECK(rc == 0, "batch_loader_next: %s", mmrm_last_error());
    *n_out = n;
    return all;
}

static void free_traces(Trace *t, int n) {
    for (int i = 0; i < n; i++) free(t[i].w);
    free(t);
}

static int same_trace(const Trace *a, const Trace *b) {
    return a->n == b->n && memcmp(a->w, b->w, a->n * sizeof *a->w) == 0;
}

/* CHECKs that two batch sequences are bitwise equal */
static void check_same_batches(const char *what, const Trace *a, int na, const Trace *b, int nb) {
    CHECK(na == nb, "%s: %d vs %d batches", what, na, nb);
    for (int i = 0; i < na && i < nb; i++)
        CHECK(same_trace(&a[i], &b[i]), "%s: batch %d differs", what, i);
}

/* ---- tests ---- */

TEST(test_scan_keeps_usable_pairs_and_counts_rejected_ones_by_reason) {
    Data *d = data();
    CHECK(d->ps.n == NLINES - 1 && d->ps.load.skipped[REC_MISSING_IMAGE] == 1,
          "the missing image is skipped at load: %zu pairs", d->ps.n);
    for (size_t i = 0; i < sizeof g_images / sizeof g_images[0]; i++) {
        ImageConfig ic = {S, 1, 4, 1, 1};
        CHECK(image_num_tiles(g_images[i].w, g_images[i].h, &ic) == g_images[i].tiles,
              "%s: the data set's design needs %d tiles", g_images[i].name, g_images[i].tiles);
    }
    BatchOptions o = options(d);
    BatchLoader *L = open_or_report(d, &o);
    if (!L) return;
    const BatchStats *st = batch_loader_stats(L);
    CHECK(st->pairs == NLINES - 1 && st->usable == USABLE, "%zu pairs, %zu usable", st->pairs,
          st->usable);
    CHECK(st->skipped[BATCH_SKIP_IMAGE] == 0 && st->skipped[BATCH_SKIP_IMAGE_CUT] == 1 &&
          st->skipped[BATCH_SKIP_NO_ROOM] == 1 && st->skipped[BATCH_SKIP_IMAGE_TOKEN_TEXT] == 1,
          "skips %ld %ld %ld %ld", st->skipped[0], st->skipped[1], st->skipped[2], st->skipped[3]);
    CHECK(st->truncated == 1, "%ld rows cut to max_length", st->truncated);
    CHECK(st->steps_per_epoch == USABLE / 2 && st->tail == USABLE % 2, "%ld steps, tail %zu",
          st->steps_per_epoch, st->tail);
    /* first messages name the record's line (1-based) */
    static const struct { int reason, line; } first[] = {
        {BATCH_SKIP_IMAGE_CUT, LINE_CUT + 1}, {BATCH_SKIP_NO_ROOM, LINE_NO_ROOM + 1},
        {BATCH_SKIP_IMAGE_TOKEN_TEXT, LINE_TOKEN_TEXT + 1}};
    for (int i = 0; i < 3; i++) {
        char where[160];
        snprintf(where, sizeof where, "data.jsonl:%d)", first[i].line);
        CHECK(strstr(st->first_skip[first[i].reason], where) != NULL, "%s: \"%s\"",
              batch_skip_name(first[i].reason), st->first_skip[first[i].reason]);
    }
    CHECK(strstr(st->summary, "19 usable") && strstr(st->summary, "1 image block cut"),
          "summary: %s", st->summary);
    long skipped[BATCH_NSKIP];
    memcpy(skipped, st->skipped, sizeof skipped);
    batch_loader_close(L);

    /* the same with two scanning threads, and under fail: the first rejected pair stops it */
    o.num_workers = 2;
    L = open_or_report(d, &o);
    if (L) {
        CHECK(memcmp(batch_loader_stats(L)->skipped, skipped, sizeof skipped) == 0,
              "thread count changes the scan");
        batch_loader_close(L);
    }
    o.on_bad = REC_ON_BAD_FAIL;
    L = batch_loader_open(&d->ps, d->tok, &o);
    CHECK(L == NULL && strstr(mmrm_last_error(), "data.jsonl:14)") &&
              strstr(mmrm_last_error(), "image block"),
          "fail policy: %s", L ? "opened" : mmrm_last_error());
    batch_loader_close(L);
}

static void check_padded_batches(int t_bucket) {
    Data *d = data();
    BatchOptions o = options(d);
    o.pairs = 3;
    o.t_bucket = t_bucket;
    BatchLoader *L = open_or_report(d, &o);
    if (!L) return;
    int seen[MAX_PAIRS] = {0}, nb = 0, expect[4096];
    const Batch *b;
    while (batch_loader_next(L, &b) == 1) {
        nb++;
        CHECK(b->P == 3 && b->n_images == 3 && b->rows.B == 6, "batch %d: P %d, B %d", nb, b->P,
              b->rows.B);
        int T = 0;
        for (int s = 0; s < b->rows.B; s++) T = b->rows.lengths[s] > T ? b->rows.lengths[s] : T;
        if (t_bucket > 1) T = (T + t_bucket - 1) / t_bucket * t_bucket;
        if (T > o.max_length) T = o.max_length;
        CHECK(b->rows.T == T, "T %d, longest row rounded up to %d (t_bucket %d)", b->rows.T, T,
              t_bucket);
        size_t tile0 = 0;
        for (int i = 0; i < b->P; i++) {
            const Pair *p = &d->ps.pairs[b->pair[i]];
            seen[b->pair[i]]++;
            Image img;
            if (!CHECK(image_load(p->image, &img) == 0, "%s", mmrm_last_error())) continue;
            int nt = image_num_tiles(img.w, img.h, &o.image);
            float *ref = tmalloc((size_t)nt * TILE);
            CHECK(image_preprocess(&img, &o.image, ref, nt) == nt, "%s", mmrm_last_error());
            CHECK(b->tiles[i] == nt, "pair %zu: %d tiles, expected %d", b->pair[i], b->tiles[i],
                  nt);
            EXPECT_SAME("the pair's tiles", b->pixels + tile0 * TILE, ref, (size_t)nt * TILE);
            tile0 += (size_t)nt;
            free(ref);
            image_free(&img);
            CHECK(b->margin[i] == p->margin, "margin %g vs %g", b->margin[i], p->margin);
            for (int k = 0; k < 2; k++) {
                int s = 2 * i + k;
                int n = template_encode(d->tok, o.template_kind, NULL, p->prompt,
                                        k ? p->rejected : p->chosen, TPT * nt, o.max_length,
                                        expect, 4096, NULL);
                const int *row = b->rows.ids + (size_t)s * b->rows.T;
                CHECK(b->image_of[s] == i, "image_of[%d] = %d", s, b->image_of[s]);
                CHECK(b->rows.lengths[s] == n && n > 0 &&
                          memcmp(row, expect, (size_t)n * sizeof *row) == 0,
                      "sequence %d is not the %s row of pair %zu", s, k ? "rejected" : "chosen",
                      b->pair[i]);
                CHECK(row[b->rows.lengths[s] - 1] == d->im_end, "row %d ends on %d", s,
                      row[b->rows.lengths[s] - 1]);
                int pads = 0;
                for (int t = b->rows.lengths[s]; t < b->rows.T; t++) pads += row[t] == d->pad;
                CHECK(pads == b->rows.T - b->rows.lengths[s], "row %d: padding is not the pad id",
                      s);
            }
        }
    }
    int distinct = 0;
    for (int i = 0; i < MAX_PAIRS; i++) {
        CHECK(seen[i] <= 1, "pair %d seen %d times in one epoch", i, seen[i]);
        distinct += seen[i] > 0;
    }
    CHECK(nb == USABLE / 3 && distinct == USABLE / 3 * 3, "%d batches, %d pairs", nb, distinct);
    batch_loader_close(L);
}

TEST(test_padded_batches_hold_each_pairs_rows_padding_tiles_and_pixels) {
    check_padded_batches(0);
}

/* 7 does not divide max_length: the last bucket stops at max_length */
TEST(test_t_bucket_rounds_the_padded_length_up_with_pad_ids_capped_at_max_length) {
    check_padded_batches(7);
}

TEST(test_packed_layout_is_the_padded_rows_back_to_back_with_restarting_positions) {
    Data *d = data();
    BatchOptions o = options(d);
    o.pairs = 4;
    o.blank_rows = 1;
    BatchLoader *Lp = open_or_report(d, &o);
    o.layout = BATCH_PACKED;
    BatchLoader *Lk = open_or_report(d, &o);
    if (!Lp || !Lk) goto done;
    const Batch *a, *b;
    int nb = 0;
    while (batch_loader_next(Lp, &a) == 1) {
        if (!CHECK(batch_loader_next(Lk, &b) == 1, "packed loader ended early")) break;
        nb++;
        CHECK(a->P == b->P && memcmp(a->pair, b->pair, a->P * sizeof *a->pair) == 0,
              "batch %d: other pairs", nb);
        CHECK(b->rows.ids == NULL && a->rows.packed == NULL, "each layout fills its own arrays");
        for (int set = 0; set < 2; set++) {
            const BatchRows *pr = set ? &a->blank : &a->rows, *kr = set ? &b->blank : &b->rows;
            int off = 0, ok = pr->B == kr->B && pr->T == kr->T;
            for (int s = 0; ok && s < kr->B; s++) {
                ok = kr->lengths[s] == pr->lengths[s] && kr->cu_seqlens[s] == off &&
                     memcmp(kr->packed + off, pr->ids + (size_t)s * pr->T,
                            (size_t)pr->lengths[s] * sizeof(int)) == 0;
                for (int t = 0; ok && t < kr->lengths[s]; t++) ok = kr->positions[off + t] == t;
                off += pr->lengths[s];
            }
            CHECK(ok && kr->cu_seqlens[kr->B] == off && kr->total == off && pr->total == off,
                  "batch %d %s rows: packed != padded rows concatenated", nb,
                  set ? "blank" : "main");
        }
        int ntiles = 0;
        for (int i = 0; i < a->P; i++) ntiles += a->tiles[i];
        EXPECT_SAME("pixels", a->pixels, b->pixels, (size_t)ntiles * TILE);
        CHECK(batch_check(b, &d->ps, d->img_context, TPT) == 0, "%s", mmrm_last_error());
    }
    CHECK(nb == USABLE / 4, "%d batches", nb);
done:
    batch_loader_close(Lp);
    batch_loader_close(Lk);
}

TEST(test_img_context_count_mismatch_is_an_error_naming_the_pair) {
    Data *d = data();
    BatchOptions o = options(d);
    BatchLoader *L = open_or_report(d, &o);
    const Batch *b;
    if (!L || !CHECK(batch_loader_next(L, &b) == 1, "%s", mmrm_last_error())) goto done;
    CHECK(batch_check(b, &d->ps, d->img_context, TPT) == 0, "%s", mmrm_last_error());

    /* one <IMG_CONTEXT> of pair 1's rejected row turned into a letter */
    size_t n = (size_t)b->rows.B * b->rows.T;
    int *ids = malloc(n * sizeof *ids);
    memcpy(ids, b->rows.ids, n * sizeof *ids);
    int *row = ids + (size_t)3 * b->rows.T;
    for (int t = 0; t < b->rows.lengths[3]; t++)
        if (row[t] == d->img_context) {
            row[t] = 'x';
            break;
        }
    Batch bad = *b;
    bad.rows.ids = ids;
    const Pair *p = &d->ps.pairs[b->pair[1]];
    char where[64];
    snprintf(where, sizeof where, "data.jsonl:%d)", p->line);
    CHECK(batch_check(&bad, &d->ps, d->img_context, TPT) == -1 &&
              strstr(mmrm_last_error(), where) && strstr(mmrm_last_error(), "rejected row"),
          "a missing <IMG_CONTEXT> goes unnoticed or unnamed: %s", mmrm_last_error());

    /* one tile more for pair 0 than its rows show */
    int tiles[2] = {b->tiles[0] + 1, b->tiles[1]};
    bad = *b;
    bad.tiles = tiles;
    CHECK(batch_check(&bad, &d->ps, d->img_context, TPT) == -1 &&
              strstr(mmrm_last_error(), "chosen row"),
          "a tile count mismatch goes unnoticed: %s", mmrm_last_error());
    CHECK(batch_check(b, &d->ps, d->img_context, TPT + 1) == -1, "wrong tokens_per_tile passes");
    free(ids);
done:
    batch_loader_close(L);
}

TEST(test_shuffle_is_a_seeded_permutation_that_changes_every_epoch) {
    enum { N = 1000 };
    size_t *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b), *c = malloc(N * sizeof *c);
    unsigned char seen[N] = {0};
    batch_shuffle(7, 0, N, a);
    int perm = 1, identity = 1;
    for (size_t i = 0; i < N; i++) {
        perm &= a[i] < N && !seen[a[i]];
        if (a[i] < N) seen[a[i]] = 1;
        identity &= a[i] == i;
    }
    CHECK(perm && !identity, "not a shuffled permutation");
    batch_shuffle(7, 0, N, b);
    CHECK(memcmp(a, b, N * sizeof *a) == 0, "same seed and epoch, other order");
    batch_shuffle(7, 1, N, b);
    batch_shuffle(8, 0, N, c);
    CHECK(memcmp(a, b, N * sizeof *a) != 0, "epochs 0 and 1 have the same order");
    CHECK(memcmp(a, c, N * sizeof *a) != 0, "seeds 7 and 8 give the same order");

    /* the loader visits the usable pairs (the unshuffled order) in batch_shuffle's order */
    Data *d = data();
    BatchOptions o = options(d);
    o.pairs = 1;
    o.epochs = 2;
    o.shuffle = 0;
    size_t usable[USABLE], got[2 * USABLE];
    int n = 0;
    const Batch *bt;
    BatchLoader *L = open_or_report(d, &o);
    while (L && n < USABLE && batch_loader_next(L, &bt) == 1) usable[n++] = bt->pair[0];
    batch_loader_close(L);
    CHECK(n == USABLE, "%d pairs unshuffled", n);
    for (int i = 1; i < n; i++) CHECK(usable[i] > usable[i - 1], "unshuffled order not the set's");
    o.shuffle = 1;
    n = 0;
    L = open_or_report(d, &o);
    while (L && batch_loader_next(L, &bt) == 1) got[n++] = bt->pair[0];
    batch_loader_close(L);
    CHECK(n == 2 * USABLE, "%d pairs in two epochs", n);
    for (int e = 0; e < 2 && n == 2 * USABLE; e++) {
        batch_shuffle(o.seed, e, USABLE, a);
        int ok = 1;
        for (int i = 0; i < USABLE; i++) ok &= got[e * USABLE + i] == usable[a[i]];
        CHECK(ok, "epoch %d is not batch_shuffle(seed, %d) of the usable pairs", e, e);
    }
    CHECK(n == 2 * USABLE && memcmp(got, got + USABLE, USABLE * sizeof *got) != 0,
          "both epochs in the same order");
    free(a);
    free(b);
    free(c);
}

TEST(test_rank_shares_are_disjoint_equal_and_cover_the_epoch_but_the_tail) {
    Data *d = data();
    const int P = 2;
    for (int R = 1; R <= 3; R++) {
        int count[MAX_PAIRS] = {0}, steps[3] = {0};
        size_t share[3][USABLE];
        size_t tail = 0;
        for (int r = 0; r < R; r++) {
            BatchOptions o = options(d);
            o.world = R;
            o.rank = r;
            o.pairs = P;
            BatchLoader *L = open_or_report(d, &o);
            if (!L) return;
            tail = batch_loader_stats(L)->tail;
            const Batch *b;
            while (batch_loader_next(L, &b) == 1) {
                CHECK(b->P == P, "R %d rank %d: a batch of %d pairs", R, r, b->P);
                for (int i = 0; i < b->P; i++) {
                    count[b->pair[i]]++;
                    share[r][steps[r] * P + i] = b->pair[i];
                }
                steps[r]++;
            }
            batch_loader_close(L);
        }
        int covered = 0, twice = 0;
        for (int i = 0; i < MAX_PAIRS; i++) covered += count[i] == 1, twice += count[i] > 1;
        CHECK(tail == (size_t)(USABLE % (P * R)) && covered == USABLE - (int)tail && !twice,
              "R %d: %d pairs covered, %d more than once, tail %zu", R, covered, twice, tail);
        for (int r = 0; r < R; r++)
            CHECK(steps[r] == USABLE / (P * R), "R %d rank %d: %d steps", R, r, steps[r]);

        /* rank r's block is [r*P, (r+1)*P) of the step's slice: one rank of P x R pairs per
         * step sees the ranks' batches back to back */
        BatchOptions o = options(d);
        o.pairs = P * R;
        BatchLoader *L = open_or_report(d, &o);
        const Batch *b;
        int step = 0, ok = 1;
        while (L && batch_loader_next(L, &b) == 1) {
            for (int i = 0; i < b->P; i++) ok &= b->pair[i] == share[i / P][step * P + i % P];
            step++;
        }
        CHECK(ok && step == steps[0], "R %d: ranks do not take contiguous blocks of a step", R);
        batch_loader_close(L);
    }
}

TEST(test_cursor_restored_mid_epoch_gives_the_same_remaining_batches) {
    Data *d = data();
    BatchOptions o = options(d);
    o.epochs = 3;
    BatchLoader *L = open_or_report(d, &o);
    if (!L) return;
    enum { NB = 3 * (USABLE / 2) };
    Trace all[NB];
    BatchCursor after[NB];
    int n = 0;
    const Batch *b;
    while (n < NB && batch_loader_next(L, &b) == 1) {
        all[n] = (Trace){0};
        put_batch(&all[n], b);
        after[n] = b->next;
        BatchCursor c = batch_loader_cursor(L);
        CHECK(c.epoch == b->next.epoch && c.pos == b->next.pos, "cursor is not the batch's next");
        n++;
    }
    CHECK(n == NB && batch_loader_next(L, &b) == 0, "%d batches in 3 epochs", n);
    batch_loader_close(L);
    CHECK(after[USABLE / 2 - 1].epoch == 1 && after[USABLE / 2 - 1].pos == 0,
          "the last step of epoch 0 leads to (1, 0), not (%ld, %ld)",
          after[USABLE / 2 - 1].epoch, after[USABLE / 2 - 1].pos);
    CHECK(after[3].epoch == 0 && after[3].pos == 8, "after 4 steps: (%ld, %ld)", after[3].epoch,
          after[3].pos);

    static const int resume_after[] = {3, USABLE / 2 - 1, USABLE / 2 + 4, NB - 1};
    for (size_t k = 0; k < sizeof resume_after / sizeof *resume_after; k++) {
        int at = resume_after[k];
        o.start = after[at];
        o.num_workers = k % 2 ? 2 : 0;
        L = open_or_report(d, &o);
        if (!L) continue;
        int m = 0;
        Trace *rest = drain(L, &m);
        batch_loader_close(L);
        char what[64];
        snprintf(what, sizeof what, "resumed after batch %d", at);
        check_same_batches(what, all + at + 1, NB - at - 1, rest, m);
        free_traces(rest, m);
    }
    for (int i = 0; i < n; i++) free(all[i].w);
}

TEST(test_prefetch_workers_give_bitwise_the_synchronous_batches_in_order) {
    Data *d = data();
    BatchOptions o = options(d);
    o.epochs = 2;
    o.blank_rows = 1;
    static const struct { int workers, prefetch; BatchLayout layout; } runs[] = {
        {3, 2, BATCH_PADDED}, {2, 1, BATCH_PADDED}, {1, 0, BATCH_PADDED}, {3, 0, BATCH_PACKED}};
    for (size_t k = 0; k < sizeof runs / sizeof *runs; k++) {
        o.layout = runs[k].layout;
        o.num_workers = 0;
        o.prefetch = 0;
        BatchLoader *L = open_or_report(d, &o);
        if (!L) return;
        int n0 = 0, n1 = 0;
        Trace *t0 = drain(L, &n0);
        batch_loader_close(L);
        o.num_workers = runs[k].workers;
        o.prefetch = runs[k].prefetch;
        L = open_or_report(d, &o);
        if (!L) return;
        Trace *t1 = drain(L, &n1);
        batch_loader_close(L);
        char what[64];
        snprintf(what, sizeof what, "%d workers, prefetch %d", runs[k].workers, runs[k].prefetch);
        CHECK(n0 == 2 * (USABLE / 2), "%d batches", n0);
        check_same_batches(what, t0, n0, t1, n1);
        free_traces(t0, n0);
        free_traces(t1, n1);
    }
    /* closing while workers build and the caller holds a batch, and an endless loader */
    o.num_workers = 3;
    o.epochs = 0;
    BatchLoader *L = open_or_report(d, &o);
    const Batch *b;
    for (int i = 0; L && i < 2 * USABLE; i++)
        if (!CHECK(batch_loader_next(L, &b) == 1, "endless loader stopped at %d", i)) break;
    batch_loader_close(L);
}

/* a second data set: pairs 0, 1, 3 show a good PNG, pair 2 a PNG cut after its header */
static void late_set(PairSet *ps, char *dir) {
    TRng r = trng(99);
    write_image(dir, "ok.png", 37, 23, &r);
    write_image(dir, "cut.png", 40, 30, &r);
    char path[256];
    join(path, sizeof path, dir, "cut.png");
    if (truncate(path, 60)) die("truncate");
    join(path, sizeof path, dir, "late.jsonl");
    FILE *f = fopen(path, "w");
    if (!f) die(path);
    for (int i = 0; i < 4; i++)
        fprintf(f, "{\"prompt\":\"q%d\",\"img_path\":\"%s\",\"chosen\":\"yes\","
                   "\"rejected\":\"no\"}\n", i, i == 2 ? "cut.png" : "ok.png");
    fclose(f);
    const char *p = path;
    if (pairset_load(ps, &p, 1, NULL)) die("pairset_load");
}

TEST(test_image_failing_to_decode_late_is_counted_under_skip_and_fails_its_batch_under_fail) {
    Data *d = data();
    char dir[128];
    join(dir, sizeof dir, d->dir, "late");
    mkdir(dir, 0700);
    PairSet ps;
    late_set(&ps, dir);
    CHECK(ps.n == 4, "the cut PNG's header passes the load: %zu pairs", ps.n);
    BatchOptions o = options(d);
    o.shuffle = 0;
    BatchLoader *L = batch_loader_open(&ps, d->tok, &o);
    const Batch *b;
    if (CHECK(L != NULL, "%s", mmrm_last_error())) {
        CHECK(batch_loader_stats(L)->usable == 4, "the scan reads headers only");
        CHECK(batch_loader_next(L, &b) == 1 && b->P == 2, "first batch");
        CHECK(batch_loader_stats(L)->skipped[BATCH_SKIP_IMAGE] == 0, "counted too early");
        if (CHECK(batch_loader_next(L, &b) == 1, "%s", mmrm_last_error())) {
            CHECK(b->P == 1 && b->n_images == 1 && b->rows.B == 2 && b->pair[0] == 3 &&
                      b->image_of[0] == 0 && b->image_of[1] == 0,
                  "the batch keeps pair 3 alone: P %d, pair %zu", b->P, b->pair[0]);
            CHECK(batch_check(b, &ps, d->img_context, TPT) == 0, "%s", mmrm_last_error());
        }
        const BatchStats *st = batch_loader_stats(L);
        const char *msg = st->first_skip[BATCH_SKIP_IMAGE];
        CHECK(st->skipped[BATCH_SKIP_IMAGE] == 1 && strstr(msg, "cut.png"),
              "late skip: %ld, \"%s\"", st->skipped[BATCH_SKIP_IMAGE], msg);
        CHECK(batch_loader_next(L, &b) == 0, "one epoch of 2 batches");
        batch_loader_close(L);
    }
    o.on_bad = REC_ON_BAD_FAIL;
    for (int workers = 0; workers <= 2; workers += 2) {
        o.num_workers = workers;
        L = batch_loader_open(&ps, d->tok, &o);
        if (!CHECK(L != NULL, "%s", mmrm_last_error())) continue;
        CHECK(batch_loader_next(L, &b) == 1, "%d workers: the batch before the failure", workers);
        CHECK(batch_loader_next(L, &b) == -1 && strstr(mmrm_last_error(), "cut.png") &&
                  strstr(mmrm_last_error(), "late.jsonl:3)"),
              "%d workers: %s", workers, mmrm_last_error());
        CHECK(batch_loader_next(L, &b) == -1, "%d workers: the failure does not stick", workers);
        batch_loader_close(L);
    }
    pairset_free(&ps);
}

TEST(test_rm_views_map_the_batch_and_its_blank_image_rows_onto_the_model_batch) {
    Data *d = data();
    BatchOptions o = options(d);
    o.pairs = 3;
    o.blank_rows = 1;
    BatchLoader *L = open_or_report(d, &o);
    const Batch *b;
    if (!L || !CHECK(batch_loader_next(L, &b) == 1, "%s", mmrm_last_error())) goto done;
    RmBatch v;
    batch_rm_view(b, &v);
    CHECK(v.B == 6 && v.T == b->rows.T && v.ids == b->rows.ids && v.lengths == b->rows.lengths &&
              v.n_images == 3 && v.tiles == b->tiles && v.pixels == b->pixels &&
              v.image_of == b->image_of,
          "the model view does not show the batch");

    Image blank;
    ImageConfig one = {S, 1, 1, 0, 0};
    float ref[TILE];
    image_blank(IMAGE_BLANK_SIZE, IMAGE_BLANK_SIZE, &blank);
    CHECK(image_preprocess(&blank, &one, ref, 1) == 1, "%s", mmrm_last_error());
    image_free(&blank);
    batch_rm_view_blank(b, &v);
    CHECK(v.B == 6 && v.T == b->blank.T && v.n_images == 1 && v.tiles[0] == 1,
          "blank view: B %d, %d images", v.B, v.n_images);
    EXPECT_SAME("the blank tile", v.pixels, ref, TILE);
    int expect[4096];
    for (int s = 0; s < v.B; s++) {
        const Pair *p = &d->ps.pairs[b->pair[s / 2]];
        int n = template_encode(d->tok, o.template_kind, NULL, p->prompt, s % 2 ? p->rejected : p->chosen,
                                TPT, o.max_length, expect, 4096, NULL);
        CHECK(v.image_of[s] == 0 && v.lengths[s] == n &&
                  memcmp(v.ids + (size_t)s * v.T, expect, (size_t)n * sizeof(int)) == 0,
              "blank row %d is not the conversation with one image tile", s);
    }
done:
    batch_loader_close(L);
}

TEST(test_open_refuses_bad_options_and_impossible_schedules_with_a_reason) {
    Data *d = data();
    static const struct { const char *change, *message; } cases[] = {
        {"pairs 0", "pairs per rank"},
        {"rank = world", "rank 2 of 2"},
        {"global batch > usable", "fewer than one step"},
        {"cursor past the epoch", "past the end"},
        {"no pad id", "pad id"},
        {"template without bos", "add_bos"}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        BatchOptions o = options(d);
        Tokenizer *tok = d->tok, *own = NULL;
        int pad = tok->pad_id;
        switch (k) {
        case 0: o.pairs = 0; break;
        case 1: o.world = 2, o.rank = 2; break;
        case 2: o.world = 2, o.pairs = 10; break;
        case 3: o.start = (BatchCursor){0, USABLE + 1}; break;
        case 4: tok->pad_id = -1; break;
        default: tok = own = tokenizer_byte_new(0); break;
        }
        BatchLoader *L = batch_loader_open(&d->ps, tok, &o);
        CHECK(L == NULL && strstr(mmrm_last_error(), cases[k].message), "%s: %s", cases[k].change,
              L ? "opened" : mmrm_last_error());
        batch_loader_close(L);
        d->tok->pad_id = pad;
        tokenizer_free(own);
    }
    /* a cursor at the end of an epoch starts the next one */
    BatchOptions o = options(d);
    o.start = (BatchCursor){0, USABLE - 1};
    o.epochs = 2;
    BatchLoader *L = open_or_report(d, &o);
    const Batch *b;
    if (L && CHECK(batch_loader_next(L, &b) == 1, "%s", mmrm_last_error()))
        CHECK(b->at.epoch == 1 && b->at.pos == 0, "starts at (%ld, %ld)", b->at.epoch, b->at.pos);
    batch_loader_close(L);
}
