/* bench_share_prefix.c - what RewardModel.share_prefix and .packing save, side by side on the
 * same data and model in one run (CPU, random weights, a small model with InternVL2-like
 * proportions: one 448-style tile = 256 image tokens, a ~40-token prompt, responses of 20-200
 * tokens):
 *   - training (forward + backward of the rewards; the ViT frozen as in the reference recipe),
 *     pairs/s, for the standard objective (the main model on the pairs) and the shortcut-aware
 *     one (also a bias model on the blank-image rows), share_prefix + packing vs both off;
 *   - scoring 16 responses per prompt (one prompt per forward, no grad), responses/s;
 *   - padding-heavy training batches (text-only rows whose lengths spread 10x), packing alone
 *     vs off.
 * For each it prints the token rows the decoder computed vs the real tokens in the rows
 * (rm_tokens_counted). Each mode is timed REPS times, alternating, and the best is kept.
 * A measurement, not a test: nothing is asserted.
 *   make build/bench_share_prefix && build/bench_share_prefix [--pairs N (8)] [--reps N (3)]
 * bench/share_prefix.sh runs it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/reward_model.h"
#include "runtime/autograd.h"
#include "runtime/error.h"
#include "runtime/rng.h"

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_s(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

/* ViT: 64 px, patch 2: 32 x 32 patches -> 256 tokens per tile after the pixel shuffle; one
 * narrow layer, so the ViT is cheap here (InternViT-300M costs about a fifth of an unshared
 * InternVL2-1B training step, and sharing does not reduce it). LLM: Qwen2-0.5B's shape
 * ratios (head dim 64, 3 q heads per kv head, MLP 5.3x the width) at 384 wide, 2 layers. */
static ModelConfig bench_config(void) {
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.vision = (VisionConfig){.hidden = 64, .heads = 2, .intermediate = 128, .layers = 1,
                              .image_size = 64, .patch = 2, .channels = 3, .qkv_bias = 1,
                              .qk_norm = 0, .rms_norm = 0, .eps = 1e-6f};
    c.llm = (LlmConfig){.arch = LLM_QWEN2, .hidden = 384, .heads = 6, .kv_heads = 2,
                        .head_dim = 64, .intermediate = 2048, .layers = 2, .vocab = 1024,
                        .rope_theta = 1000000.0f, .rms_eps = 1e-6f, .max_positions = 32768};
    c.image_size = 64;
    c.select_layer = -1;
    c.downsample_ratio = 0.5f;
    snprintf(c.template_name, sizeof c.template_name, "Hermes-2");
    c.img_context_id = 1000;
    return c;
}

typedef struct {
    int B, T, n_images;
    int *ids, *lengths, *tiles, *image_of;
    float *pixels;
} Rows;

static int rnd(uint64_t *s, int lo, int hi) { /* [lo, hi] */
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (int)((*s >> 33) % (uint64_t)(hi - lo + 1));
}

/* G groups of K rows: [system | image block (tpt tokens, or none) | prompt] shared within a
 * group, then a response of rlo..rhi tokens and an end token per row; image_of one image per
 * group, or 0 for every row (blank: the bias model's rows), or -1 (text) */
static Rows make_rows(const ModelConfig *cfg, int G, int K, int img, int blank, int plo, int phi,
                      int rlo, int rhi, uint64_t seed) {
    int tpt = config_tokens_per_tile(cfg), S = cfg->image_size;
    Rows r = {G * K, 0, img ? (blank ? 1 : G) : 0, NULL, NULL, NULL, NULL, NULL};
    int cap = 4 + tpt + phi + rhi;
    r.ids = calloc((size_t)r.B * cap, sizeof(int));
    r.lengths = calloc(r.B, sizeof(int));
    r.image_of = calloc(r.B, sizeof(int));
    r.tiles = calloc(G + 1, sizeof(int));
    uint64_t s = seed;
    for (int gi = 0; gi < G; gi++) {
        int pl = rnd(&s, plo, phi), prompt[4096];
        for (int t = 0; t < pl; t++) prompt[t] = rnd(&s, 0, 255);
        for (int k = 0; k < K; k++) {
            int b = gi * K + k, t = 0, *row = r.ids + (size_t)b * cap;
            r.image_of[b] = img ? (blank ? 0 : gi) : -1;
            row[t++] = 258;
            for (int j = 0; img && j < tpt; j++) row[t++] = cfg->img_context_id;
            for (int j = 0; j < pl; j++) row[t++] = prompt[j];
            int rl = rnd(&s, rlo, rhi);
            for (int j = 0; j < rl; j++) row[t++] = rnd(&s, 0, 255);
            row[t++] = 259;
            r.lengths[b] = t;
            r.T = t > r.T ? t : r.T;
        }
    }
    for (int b = 0; b < r.B; b++) /* to stride T */
        memmove(r.ids + (size_t)b * r.T, r.ids + (size_t)b * cap, (size_t)r.T * sizeof(int));
    for (int b = 0; b < r.B; b++)
        for (int t = r.lengths[b]; t < r.T; t++) r.ids[(size_t)b * r.T + t] = 0;
    for (int i = 0; i < r.n_images; i++) r.tiles[i] = 1;
    size_t np = (size_t)(r.n_images ? r.n_images : 1) * 3 * S * S;
    r.pixels = malloc(np * sizeof(float));
    for (size_t i = 0; i < np; i++) r.pixels[i] = (float)rnd(&s, -1000, 1000) / 1000.0f;
    return r;
}

static void rows_free(Rows *r) {
    free(r->ids); free(r->lengths); free(r->tiles); free(r->image_of); free(r->pixels);
}

static long g_computed, g_in_rows; /* token counts of the last timed call */
static double g_cpu;                /* its process CPU seconds (all threads) */

/* one forward (+ backward when grad) of rows on m; seconds. One graph per model and mode,
 * reset between calls as the trainer's is (its arena is warm after the first call). */
static Graph g_graphs[2][2]; /* [main, bias][off, on] */
static int g_graph_ready[2][2];
static const RewardModel *g_owner[2];

static double run(RewardModel *m, const Rows *r, int grad, int share, int pack) {
    int slot = !g_owner[0] || g_owner[0] == m ? 0 : 1, mode = share || pack;
    g_owner[slot] = m;
    Graph *g = &g_graphs[slot][mode];
    if (!g_graph_ready[slot][mode]) {
        graph_init(g, DEV_CPU, (size_t)64 << 20, 7);
        g_graph_ready[slot][mode] = 1;
    }
    graph_reset(g);
    graph_set_grad(g, grad);
    m->share_prefix = share, m->packing = pack;
    RmBatch bt = {r->B, r->T, r->ids, r->lengths, r->n_images, r->tiles, r->pixels, r->image_of, NULL};
    long c0, i0, c1, i1;
    rm_tokens_counted(&c0, &i0);
    double t0 = now_s(), c0s = cpu_s();
    if (grad) params_zero_grad(&m->ps);
    Tensor *rw = rm_forward(m, g, &bt);
    if (grad) {
        float *w = malloc(r->B * sizeof(float));
        for (int b = 0; b < r->B; b++) w[b] = b % 2 ? 0.5f : -0.5f;
        graph_backward_from(g, rw, w);
        free(w);
    } else {
        (void)graph_host(g, rw);
    }
    double dt = now_s() - t0;
    g_cpu = cpu_s() - c0s;
    rm_tokens_counted(&c1, &i1);
    g_computed = c1 - c0, g_in_rows = i1 - i0;
    return dt;
}

/* best of reps for the two modes, alternating, by wall time and by process CPU time (the
 * machine may be shared: CPU time is the steadier measure of the work); prints one line */
static void compare(const char *what, double items, RewardModel *m, RewardModel *bias,
                    const Rows *r, const Rows *rb, int grad, int share_on, int reps) {
    double best[2] = {1e30, 1e30}, bcpu[2] = {1e30, 1e30};
    long comp[2] = {0, 0}, rows = 0;
    const char *only = getenv("BENCH_SHARE_PREFIX_ONLY"); /* "0" or "1": one mode (profiling) */
    for (int i = 0; i < reps; i++)
        for (int on = 0; on < 2; on++) {
            if (only && *only - '0' != on) continue;
            int sh = on && share_on, pk = on;
            double t = run(m, r, grad, sh, pk), c = g_cpu;
            long tok = g_computed;
            rows = g_in_rows;
            if (bias) {
                t += run(bias, rb, grad, sh, pk);
                c += g_cpu;
                tok += g_computed;
                rows += g_in_rows;
            }
            if (t < best[on]) best[on] = t;
            if (c < bcpu[on]) bcpu[on] = c;
            comp[on] = tok;
        }
    printf("| %s | %.2f | %.2f | %.2fx | %.2fx | %ld | %ld | %ld |\n", what, items / best[0],
           items / best[1], best[0] / best[1], bcpu[0] / bcpu[1], rows, comp[0], comp[1]);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int P = 8, reps = 3;
    const char *part = "all"; /* --only train|score|pad */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: build/bench_share_prefix [--pairs N (8)] [--reps N (3)] [--only train|score|pad]\n"
                   "share_prefix + packing vs off on the CPU: training pairs/s (standard and\n"
                   "shortcut-aware), scoring 16 responses per prompt, padding-heavy packing\n");
            return 0;
        }
        if (i + 1 < argc && !strcmp(argv[i], "--pairs")) P = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--only")) part = argv[++i];
        else {
            fprintf(stderr, "bench_share_prefix: unknown argument %s (--help)\n", argv[i]);
            return 2;
        }
    }
    if (P < 1 || reps < 1) {
        fprintf(stderr, "bench_share_prefix: --pairs and --reps must be positive\n");
        return 2;
    }
    mmrm_set_quiet(1);
    ModelConfig cfg = bench_config();
    int freeze[PG_COUNT] = {0};
    freeze[PG_VISION] = 1; /* the reference recipe */
    RewardModel m, bias;
    rm_create(&m, &cfg, DEV_CPU, freeze);
    rm_init_random(&m, 1);
    rm_create(&bias, &cfg, DEV_CPU, freeze);
    rm_init_random(&bias, 2);
    printf("model: ViT %d layers x %d, LLM %d layers x %d (heads %d/%d), %d image tokens per "
           "tile; %d pairs per step; best of %d\n", cfg.vision.layers, cfg.vision.hidden,
           cfg.llm.layers, cfg.llm.hidden, cfg.llm.heads, cfg.llm.kv_heads,
           config_tokens_per_tile(&cfg), P, reps);
    /* pairs: 1 tile + ~40-token prompt, responses 20..200 */
    Rows pairs = make_rows(&cfg, P, 2, 1, 0, 30, 50, 20, 200, 11);
    Rows blank = make_rows(&cfg, P, 2, 1, 1, 30, 50, 20, 200, 11); /* same text, blank image */
    printf("| what (share_prefix + packing vs both off) | off /s | on /s | wall speedup | CPU-time "
           "speedup | tokens in the rows | computed off | computed on |\n|---|---|---|---|---|---|---|---|\n");
#define PART(x) (!strcmp(part, "all") || !strcmp(part, x))
    if (PART("train")) {
        compare("training pairs/s, standard", P, &m, NULL, &pairs, NULL, 1, 1, reps);
        compare("training pairs/s, shortcut-aware", P, &m, &bias, &pairs, &blank, 1, 1, reps);
    }
    /* scoring: 16 responses to one prompt per forward */
    Rows score = make_rows(&cfg, 1, 16, 1, 0, 30, 50, 20, 200, 12);
    if (PART("score")) compare("scoring responses/s, 16 per prompt", 16, &m, NULL, &score, NULL, 0, 1, reps);
    /* padding-heavy: text-only rows of 30..300 tokens, packing alone */
    Rows pad = make_rows(&cfg, P, 2, 0, 0, 10, 20, 20, 290, 13);
    if (PART("pad"))
        compare("training pairs/s, padding-heavy, packing alone", P, &m, NULL, &pad, NULL, 1, 0, reps);
    rows_free(&pairs); rows_free(&blank); rows_free(&score); rows_free(&pad);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            if (g_graph_ready[i][j]) graph_free(&g_graphs[i][j]);
    rm_free(&m);
    rm_free(&bias);
    return 0;
}
