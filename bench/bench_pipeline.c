/* bench_pipeline.c - throughput of the training data pipeline (models/batch.h) on generated
 * data: N pairs, each with its own 640x480 JPEG of random content, decoded and tiled at
 * image_size 448 with up to 6 dynamic tiles plus the thumbnail (7 tiles for 4:3), both
 * responses through internlm2-chat with the byte tokenizer (256 tokens per tile, max_length
 * 4096), batched 4 pairs at a time. Reports pairs/s single-threaded (num_workers 0 and one
 * OpenMP thread), synchronous with the image ops' OpenMP on every core, and with worker
 * threads (each runs the image ops on one thread), and the workers' speedup over the
 * single-threaded run; the scan at open is timed on its own.
 *
 * --tokenizer DIR uses DIR's tokenizer (any kind tokenizer_load reads) instead of the byte
 * one, with the template its BOS convention pairs with (add_bos: internlm2-chat, else
 * Hermes-2, as Qwen2's). --vlfeedback makes each record VLFeedback-like: a prompt of 60-150
 * words and two responses of 150-400 words of English-like text (common words, one in
 * five a random letter string, punctuation, newlines) instead of the short random letters.
 * --breakdown also times, single-threaded over the same pairs, the parts of building a batch on
 * their own: tokenisation (template_encode of both responses, as put_row calls it; with a fresh
 * tokenizer, so once with an empty piece cache, then warm as in the batch pass), image decode +
 * preprocess (image_load + image_preprocess, as the batch does) and the rest (the single-threaded
 * batch pass less those two), and the scan at open, which tokenises both responses once more.
 *
 * Build: make build/bench_pipeline
 * Run: build/bench_pipeline [--pairs N (1000)] [--workers W (2)] [--tokenizer DIR]
 *                           [--vlfeedback] [--breakdown]
 */
#include <ftw.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <stb/stb_image_write.h>

#include "runtime/error.h"
#include "runtime/rng.h"
#include "models/batch.h"
#include "models/image.h"
#include "models/template.h"

#define WIDTH 640
#define HEIGHT 480
#define PAIRS_PER_BATCH 4

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Smooth colour fields plus noise: compresses like a photograph (tens of KB), unlike pure
 * noise, so decoding costs what real data costs. */
static void random_image(Rng *r, unsigned char *px) {
    double a[3][4];
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 4; k++) a[c][k] = rng_uniform(r);
    for (int y = 0; y < HEIGHT; y++)
        for (int x = 0; x < WIDTH; x++)
            for (int c = 0; c < 3; c++) {
                int cx = 8 + (int)(32 * a[c][2]), cy = 8 + (int)(32 * a[c][3]); /* check cells */
                double v = 128 + 90 * a[c][0] * ((double)x / WIDTH - 0.5) +
                           90 * a[c][1] * ((double)y / HEIGHT - 0.5) +
                           40 * ((x / cx + y / cy) % 2) + (double)(rng_u64(r) % 24);
                px[((size_t)y * WIDTH + x) * 3 + c] = (unsigned char)(v > 255 ? 255 : v);
            }
}

static void random_text(Rng *r, int lo, int hi, char *buf) {
    int n = lo + (int)rng_below(r, (uint64_t)(hi - lo + 1));
    for (int i = 0; i < n; i++)
        buf[i] = i && rng_below(r, 6) == 0 ? ' ' : (char)('a' + rng_below(r, 26));
    buf[n] = '\0';
}

/* lo..hi words of English-like text: common words, commas and full stops, a capital after
 * each stop, now and then a paragraph break (written as the JSON escape \n) */
static void random_words(Rng *r, int lo, int hi, char *buf) {
    static const char *const words[] = {
        "the", "image", "shows", "a", "red", "bus", "on", "street", "with", "several", "people",
        "walking", "near", "tall", "buildings", "and", "blue", "sky", "in", "background", "is",
        "there", "of", "to", "which", "left", "right", "side", "picture", "appears", "be",
        "small", "dog", "sitting", "next", "bicycle", "while", "woman", "holds", "an",
        "umbrella", "however", "response", "does", "not", "mention", "trees", "that", "are",
        "clearly", "visible", "answer", "question", "correct", "because", "it", "describes",
        "scene", "accurately", "detail", "colour", "light", "shadow", "window", "car",
        "parked", "front", "store", "sign", "reads", "open", "two", "three", "children",
        "playing", "grass", "field", "behind", "them", "mountains", "covered", "snow"};
    const int nw = (int)(sizeof words / sizeof words[0]);
    int n = lo + (int)rng_below(r, (uint64_t)(hi - lo + 1)), len = 0, cap_next = 1;
    for (int i = 0; i < n; i++) {
        /* one word in five a random letter string: rare words, names, typos, which a
         * tokenizer's piece cache has not seen */
        char rare[12];
        const char *w = words[rng_below(r, (uint64_t)nw)];
        if (rng_below(r, 5) == 0) {
            random_text(r, 3, 9, rare);
            for (char *c = rare; *c; c++)
                if (*c == ' ') *c = 'e';
            w = rare;
        }
        if (i) buf[len++] = ' ';
        len += sprintf(buf + len, "%s", w);
        if (cap_next) buf[len - (int)strlen(w)] = (char)(w[0] - 'a' + 'A');
        cap_next = 0;
        uint64_t p = rng_below(r, 40);
        if (p < 3) {
            buf[len++] = '.';
            cap_next = 1;
            if (p == 0) len += sprintf(buf + len, "\\n");
        } else if (p < 6) {
            buf[len++] = ',';
        }
    }
    buf[len++] = '.';
    buf[len] = '\0';
}

/* writes dir/img%05d.jpg and dir/pairs.jsonl; returns the JSONL's path (static) */
static const char *generate(const char *dir, int n, int vlfeedback) {
    static char jsonl[256];
    snprintf(jsonl, sizeof jsonl, "%s/pairs.jsonl", dir);
    FILE *f = fopen(jsonl, "w");
    MMRM_CHECK(f, "cannot write %s", jsonl);
    unsigned char *px = xmalloc((size_t)WIDTH * HEIGHT * 3);
    Rng r = rng_make(2024, 1);
    static char prompt[4096], chosen[8192], rejected[8192];
    char path[300];
    for (int i = 0; i < n; i++) {
        random_image(&r, px);
        snprintf(path, sizeof path, "%s/img%05d.jpg", dir, i);
        MMRM_CHECK(stbi_write_jpg(path, WIDTH, HEIGHT, 3, px, 90), "cannot write %s", path);
        if (vlfeedback) {
            random_words(&r, 60, 150, prompt);
            random_words(&r, 150, 400, chosen);
            random_words(&r, 150, 400, rejected);
        } else {
            random_text(&r, 20, 120, prompt);
            random_text(&r, 50, 600, chosen);
            random_text(&r, 50, 600, rejected);
        }
        fprintf(f, "{\"prompt\":\"%s\",\"img_path\":\"img%05d.jpg\",\"chosen\":\"%s\","
                   "\"rejected\":\"%s\"}\n", prompt, i, chosen, rejected);
    }
    free(px);
    MMRM_CHECK(fclose(f) == 0, "cannot write %s", jsonl);
    return jsonl;
}

static TemplateKind g_template = TEMPLATE_INTERNLM2_CHAT;
static const ImageConfig g_image = {448, 1, 6, 1, 1};

/* pairs/s of one full pass over the set with num_workers workers */
static double run(const char *what, const PairSet *ps, const Tokenizer *tok, int workers,
                  double *scan_s) {
    BatchOptions o = {
        .pairs = PAIRS_PER_BATCH, .world = 1, .seed = 1, .shuffle = 1, .layout = BATCH_PADDED,
        .epochs = 1, .template_kind = g_template, .max_length = 4096,
        .tokens_per_tile = 256, .image = g_image, .on_bad = REC_ON_BAD_FAIL,
        .num_workers = workers};
    double t0 = now();
    BatchLoader *L = batch_loader_open(ps, tok, &o);
    MMRM_CHECK(L, "%s", mmrm_last_error());
    double t1 = now();
    const Batch *b;
    long pairs = 0, tiles = 0, tokens = 0;
    int rc;
    while ((rc = batch_loader_next(L, &b)) == 1) {
        pairs += b->P;
        for (int i = 0; i < b->P; i++) tiles += b->tiles[i];
        for (int s = 0; s < b->rows.B; s++) tokens += b->rows.lengths[s];
    }
    MMRM_CHECK(rc == 0, "%s", mmrm_last_error());
    double t2 = now();
    batch_loader_close(L);
    *scan_s = t1 - t0;
    printf("%-30s | scan %.2f s (%.0f pairs/s) | batches %.2f s: %ld pairs, %.1f tiles and "
           "%.0f tokens per pair, %.1f pairs/s\n", what, t1 - t0, ps->n / (t1 - t0), t2 - t1,
           pairs, (double)tiles / pairs, (double)tokens / pairs, pairs / (t2 - t1));
    return pairs / (t2 - t1);
}

/* Single-threaded, every pair once: seconds spent in template_encode of both responses and in
 * image_load + image_preprocess, each on its own; the tokens and tiles per pair. */
static void parts(const PairSet *ps, const char *tok_dir, double *tok_cold_s, double *tok_s,
                  double *img_s, double *tokens, double *tiles) {
    /* a fresh tokenizer: the first pass runs with an empty piece cache, as the scan at open
     * of a real run does; the second as the batches then do */
    Tokenizer *tok = tok_dir ? tokenizer_load(tok_dir) : tokenizer_byte_new(1);
    MMRM_CHECK(tok, "%s", mmrm_last_error());
    int *ids = xmalloc(4096 * sizeof *ids);
    float *pixels = NULL;
    size_t pixels_cap = 0;
    long n_tokens = 0, n_tiles = 0;
    int *nt = xmalloc(ps->n * sizeof *nt);
    double t0 = now();
    for (size_t i = 0; i < ps->n; i++) {
        const Pair *p = &ps->pairs[i];
        Image img;
        MMRM_CHECK(image_load(p->image, &img) == 0, "%s", mmrm_last_error());
        nt[i] = image_num_tiles(img.w, img.h, &g_image);
        size_t need = (size_t)nt[i] * 3 * g_image.image_size * g_image.image_size;
        if (need > pixels_cap) pixels = xrealloc(pixels, (pixels_cap = need) * sizeof *pixels);
        MMRM_CHECK(image_preprocess(&img, &g_image, pixels, nt[i]) == nt[i], "%s",
                   mmrm_last_error());
        image_free(&img);
        n_tiles += nt[i];
    }
    double t[3] = {now()};
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < ps->n; i++) {
            const Pair *p = &ps->pairs[i];
            for (int k = 0; k < 2; k++) {
                int len = template_encode(tok, g_template, NULL, p->prompt,
                                          k ? p->rejected : p->chosen, 256 * nt[i], 4096, ids,
                                          4096, NULL);
                MMRM_CHECK(len > 0, "%s", mmrm_last_error());
                if (pass) n_tokens += len;
            }
        }
        t[pass + 1] = now();
    }
    *img_s = t[0] - t0;
    *tok_cold_s = t[1] - t[0];
    *tok_s = t[2] - t[1];
    tokenizer_free(tok);
    *tokens = (double)n_tokens / ps->n;
    *tiles = (double)n_tiles / ps->n;
    free(nt);
    free(pixels);
    free(ids);
}

int main(int argc, char **argv) {
    int n = 1000, workers = 2, vlfeedback = 0, breakdown = 0;
    const char *tok_dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pairs") && i + 1 < argc) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc) workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok_dir = argv[++i];
        else if (!strcmp(argv[i], "--vlfeedback")) vlfeedback = 1;
        else if (!strcmp(argv[i], "--breakdown")) breakdown = 1;
        else {
            fprintf(stderr, "usage: %s [--pairs N (1000)] [--workers W (2)] [--tokenizer DIR] "
                    "[--vlfeedback] [--breakdown]\n", argv[0]);
            return 2;
        }
    }
    Tokenizer *tok = tok_dir ? tokenizer_load(tok_dir) : tokenizer_byte_new(1);
    MMRM_CHECK(tok, "%s", mmrm_last_error());
    g_template = tok->add_bos ? TEMPLATE_INTERNLM2_CHAT : TEMPLATE_HERMES_2;
    printf("tokenizer %s (%s), template %s, %s text\n", tok_dir ? tok_dir : "byte",
           tokenizer_kind_name(tok->kind), template_name(g_template),
           vlfeedback ? "VLFeedback-like" : "random-letter");
    if (n < PAIRS_PER_BATCH || workers < 1) {
        fprintf(stderr, "bench_pipeline: need --pairs >= %d and --workers >= 1\n", PAIRS_PER_BATCH);
        return 2;
    }
    char dir[] = "/tmp/mmrm_bench_pipeline_XXXXXX";
    MMRM_CHECK(mkdtemp(dir), "cannot create a folder under /tmp");
    double t0 = now();
    const char *jsonl = generate(dir, n, vlfeedback);
    printf("generated %d pairs with %dx%d JPEGs in %.1f s (%s)\n", n, WIDTH, HEIGHT, now() - t0,
           dir);
    PairSet ps;
    MMRM_CHECK(pairset_load(&ps, &jsonl, 1, NULL) == 0, "%s", mmrm_last_error());
    double scan0, scan1, scan2;
    char what[64];
    int cores = omp_get_max_threads();
    omp_set_num_threads(1);
    double single = run("single-threaded", &ps, tok, 0, &scan0);
    omp_set_num_threads(cores);
    snprintf(what, sizeof what, "synchronous, %d OpenMP threads", cores);
    double omp = run(what, &ps, tok, 0, &scan1);
    snprintf(what, sizeof what, "%d workers", workers);
    double par = run(what, &ps, tok, workers, &scan2);
    printf("pipeline: %.1f pairs/s single-threaded, %.1f with %d workers (%.2fx; scan %.2fx), "
           "%.1f synchronous with %d OpenMP threads\n", single, par, workers, par / single,
           scan0 / scan2, omp, cores);
    if (breakdown) {
        omp_set_num_threads(1);
        double tok_cold_s, tok_s, img_s, tokens, tiles;
        parts(&ps, tok_dir, &tok_cold_s, &tok_s, &img_s, &tokens, &tiles);
        double pass = ps.n / single, rest = pass - tok_s - img_s;
        printf("breakdown, single-threaded, per pair (%.1f tiles, %.0f tokens over both rows): "
               "batch pass %.2f ms = tokenisation %.2f ms (%.0f%%) + image decode+preprocess "
               "%.2f ms (%.0f%%) + rest %.2f ms (%.0f%%); the scan at open %.2f ms more "
               "(it tokenises both rows too); tokenisation with an empty piece cache %.2f ms\n",
               tiles, tokens, 1e3 * pass / ps.n,
               1e3 * tok_s / ps.n, 100 * tok_s / pass, 1e3 * img_s / ps.n, 100 * img_s / pass,
               1e3 * rest / ps.n, 100 * rest / pass, 1e3 * scan0 / ps.n, 1e3 * tok_cold_s / ps.n);
        omp_set_num_threads(cores);
    }
    tokenizer_free(tok);
    pairset_free(&ps);
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
