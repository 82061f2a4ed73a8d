/* bench_pipeline.c - throughput of the training data pipeline (models/batch.h) on generated
 * data: N pairs, each with its own 640x480 JPEG of random content, decoded and tiled at
 * image_size 448 with up to 6 dynamic tiles plus the thumbnail (7 tiles for 4:3), both
 * responses through internlm2-chat with the byte tokenizer (256 tokens per tile, max_length
 * 4096), batched 4 pairs at a time. Reports pairs/s single-threaded (num_workers 0 and one
 * OpenMP thread), synchronous with the image ops' OpenMP on every core, and with worker
 * threads (each runs the image ops on one thread), and the workers' speedup over the
 * single-threaded run; the scan at open is timed on its own.
 *
 * Build (from the repository root):
 *   gcc -std=c11 -D_GNU_SOURCE -O3 -fopenmp -I. bench/bench_pipeline.c models/batch.c \
 *     models/records.c models/image.c models/tokenizer.c models/template.c runtime/jsonl.c \
 *     runtime/rng.c runtime/error.c -lcjson -lstb -lm -lpthread -o build/bench_pipeline
 * Run: build/bench_pipeline [--pairs N (1000)] [--workers W (2)]
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

/* writes dir/img%05d.jpg and dir/pairs.jsonl; returns the JSONL's path (static) */
static const char *generate(const char *dir, int n) {
    static char jsonl[256];
    snprintf(jsonl, sizeof jsonl, "%s/pairs.jsonl", dir);
    FILE *f = fopen(jsonl, "w");
    MMRM_CHECK(f, "cannot write %s", jsonl);
    unsigned char *px = xmalloc((size_t)WIDTH * HEIGHT * 3);
    Rng r = rng_make(2024, 1);
    char prompt[256], chosen[1024], rejected[1024], path[300];
    for (int i = 0; i < n; i++) {
        random_image(&r, px);
        snprintf(path, sizeof path, "%s/img%05d.jpg", dir, i);
        MMRM_CHECK(stbi_write_jpg(path, WIDTH, HEIGHT, 3, px, 90), "cannot write %s", path);
        random_text(&r, 20, 120, prompt);
        random_text(&r, 50, 600, chosen);
        random_text(&r, 50, 600, rejected);
        fprintf(f, "{\"prompt\":\"%s\",\"img_path\":\"img%05d.jpg\",\"chosen\":\"%s\","
                   "\"rejected\":\"%s\"}\n", prompt, i, chosen, rejected);
    }
    free(px);
    MMRM_CHECK(fclose(f) == 0, "cannot write %s", jsonl);
    return jsonl;
}

/* pairs/s of one full pass over the set with num_workers workers */
static double run(const char *what, const PairSet *ps, const Tokenizer *tok, int workers,
                  double *scan_s) {
    BatchOptions o = {
        .pairs = PAIRS_PER_BATCH, .world = 1, .seed = 1, .shuffle = 1, .layout = BATCH_PADDED,
        .epochs = 1, .template_kind = TEMPLATE_INTERNLM2_CHAT, .max_length = 4096,
        .tokens_per_tile = 256, .image = {448, 1, 6, 1, 1}, .on_bad = REC_ON_BAD_FAIL,
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

int main(int argc, char **argv) {
    int n = 1000, workers = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pairs") && i + 1 < argc) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc) workers = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--pairs N (1000)] [--workers W (2)]\n", argv[0]);
            return 2;
        }
    }
    if (n < PAIRS_PER_BATCH || workers < 1) {
        fprintf(stderr, "bench_pipeline: need --pairs >= %d and --workers >= 1\n", PAIRS_PER_BATCH);
        return 2;
    }
    char dir[] = "/tmp/mmrm_bench_pipeline_XXXXXX";
    MMRM_CHECK(mkdtemp(dir), "cannot create a folder under /tmp");
    double t0 = now();
    const char *jsonl = generate(dir, n);
    printf("generated %d pairs with %dx%d JPEGs in %.1f s (%s)\n", n, WIDTH, HEIGHT, now() - t0,
           dir);
    PairSet ps;
    MMRM_CHECK(pairset_load(&ps, &jsonl, 1, NULL) == 0, "%s", mmrm_last_error());
    Tokenizer *tok = tokenizer_byte_new(1);
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
    tokenizer_free(tok);
    pairset_free(&ps);
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
