/* bench_model.c - memory and CPU time of the reward model at one shape (default the
 * InternVL2-1B shape, configs/model/internvl2_1b.json, random weights). For one preference
 * pair - chosen and rejected sequences of tiles x tokens_per_tile image tokens + TEXT text
 * tokens that share one image, so the ViT runs once - it reports:
 *   - parameter memory: fp32 weights, + gradients, + AdamW moments (the ViT is frozen as in
 *     the reference recipe, so it owns neither gradients nor moments);
 *   - activation memory: the graph arena's high-water mark (Graph.act.peak) for a no-grad
 *     forward, a forward+backward, and a forward+backward with every ViT and decoder layer
 *     a recompute segment (RewardModel.grad_checkpoint + Graph.recompute);
 *   - CPU time of each, with model GFLOP/s from the FLOP estimate of `mmrm info` (the
 *     backward counted as 2x the decoder's forward: the frozen ViT has none and the
 *     connector's is negligible; recomputation is overhead, not model FLOPs).
 * Each measurement uses a fresh graph. The recompute and no-grad graphs start with an arena
 * of the no-recompute peak, because recompute segments only release memory once the arena
 * stops overflowing (runtime/memory.h); the peak is then what a steady-state step uses.
 * It is a measurement, not a test: nothing is asserted. OMP_NUM_THREADS as usual.
 *
 * Build and run from the repository root:
 *   make build/bench_model && build/bench_model [--config PATH] [--text N] [--tiles N] [--quick]
 * --quick: configs/model/small.json (unless --config is given) and 32 text tokens (unless
 * --text is given), for CI.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/config.h"
#include "models/reward_model.h"
#include "runtime/autograd.h"
#include "runtime/error.h"
#include "runtime/rng.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void usage(FILE *f) {
    fprintf(f, "usage: build/bench_model [--config PATH (configs/model/internvl2_1b.json)]\n"
               "                         [--text N (256)] [--tiles N (1)] [--quick]\n");
}

static int parse_pos(const char *opt, const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 1 || v > 1000000) {
        fprintf(stderr, "bench_model: %s '%s': expected a positive integer\n", opt, s);
        exit(2);
    }
    return (int)v;
}

typedef struct {
    RewardModel *m;
    RmBatch batch;
    double flops_vit, flops_llm; /* forward FLOPs of the pair: image part, decoder part */
} Bench;

typedef struct {
    double seconds;
    size_t peak;  /* arena bytes */
} Measure;

/* One step on a fresh graph: forward, then backward unless grad is 0. The gradient of the
 * rewards is the Bradley-Terry loss's at equal rewards (-1/2 chosen, +1/2 rejected); the
 * backward's cost does not depend on its values. */
static Measure run(Bench *b, int grad, int recompute, size_t arena_bytes) {
    Graph g;
    graph_init(&g, DEV_CPU, arena_bytes, 7);
    g.training = grad;
    g.recompute = recompute;
    b->m->grad_checkpoint = recompute;
    graph_set_grad(&g, grad);
    params_zero_grad(&b->m->ps);
    double t0 = now_s();
    Tensor *r = rm_forward(b->m, &g, &b->batch);
    if (grad) graph_backward_from(&g, r, (const float[]){-0.5f, 0.5f});
    Measure out = {now_s() - t0, g.act.peak};
    graph_free(&g);
    return out;
}

/* as `mmrm info`: causal attention costs 2 * NH * hd * S * (S + 1) per layer and sequence */
static void pair_flops(Bench *b, int tiles, int S) {
    const ModelConfig *cfg = &b->m->cfg;
    const LlmConfig *l = &cfg->llm;
    double attn = 2.0 * l->layers * (double)l->heads * l->head_dim * S * ((double)S + 1);
    b->flops_vit = tiles * rm_vit_flops_per_tile(cfg);
    b->flops_llm = 2.0 * ((double)S * rm_llm_flops_per_token(cfg) + attn);
}

static const char *human_bytes(size_t bytes, char *buf, size_t cap) {
    if (bytes < (size_t)1 << 30) snprintf(buf, cap, "%.1f MiB", bytes / (1024.0 * 1024.0));
    else snprintf(buf, cap, "%.2f GiB", bytes / GIB);
    return buf;
}

static void print_bytes(const char *what, size_t bytes, size_t cumulative) {
    char h[32];
    printf("  %-34s %14zu B %12s", what, bytes, human_bytes(bytes, h, sizeof h));
    if (cumulative) printf("   total %s", human_bytes(cumulative, h, sizeof h));
    printf("\n");
}

static void print_row(const char *what, Measure x, double flops, int tokens) {
    char h[32];
    printf("  %-30s %14zu B %10s %8.2f s %13.1f %10.1f\n", what, x.peak,
           human_bytes(x.peak, h, sizeof h), x.seconds, flops / x.seconds / 1e9, tokens / x.seconds);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *cfg_path = NULL;
    int text = 0, tiles = 1, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if (i + 1 < argc && !strcmp(argv[i], "--config")) {
            cfg_path = argv[++i];
        } else if (i + 1 < argc && !strcmp(argv[i], "--text")) {
            text = parse_pos("--text", argv[++i]);
        } else if (i + 1 < argc && !strcmp(argv[i], "--tiles")) {
            tiles = parse_pos("--tiles", argv[++i]);
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!cfg_path) cfg_path = quick ? "configs/model/small.json" : "configs/model/internvl2_1b.json";
    if (!text) text = quick ? 32 : 256;

    ModelConfig cfg;
    if (config_load(cfg_path, &cfg) != 0) {
        fprintf(stderr, "bench_model: %s\n", mmrm_last_error());
        return 1;
    }
    int freeze[PG_COUNT] = {0};
    freeze[PG_VISION] = 1;
    RewardModel m;
    double t0 = now_s();
    rm_create(&m, &cfg, DEV_CPU, freeze);
    rm_init_random(&m, 1);
    double t_init = now_s() - t0;

    /* the pair: image tokens first, then random byte-valued text, both sequences full length */
    int tpt = config_tokens_per_tile(&cfg), S = tiles * tpt + text, B = 2;
    int *ids = xmalloc((size_t)B * S * sizeof(int));
    Rng r = rng_make(11, 0);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < S; t++)
            ids[b * S + t] = t < tiles * tpt ? cfg.img_context_id : (int)rng_below(&r, 256);
    size_t npx = (size_t)tiles * cfg.vision.channels * cfg.image_size * cfg.image_size;
    float *pixels = xmalloc(npx * sizeof(float));
    rng_fill_normal(&r, pixels, npx, 0.0f, 1.0f);
    int lengths[2] = {S, S}, image_of[2] = {0, 0};
    Bench bench = {.m = &m,
                   .batch = {.B = B, .T = S, .ids = ids, .lengths = lengths, .n_images = 1,
                             .tiles = &tiles, .pixels = pixels, .image_of = image_of}};
    pair_flops(&bench, tiles, S);

    const VisionConfig *v = &cfg.vision;
    const LlmConfig *l = &cfg.llm;
    printf("bench_model: %s, %d OpenMP threads\n", cfg_path, omp_get_max_threads());
    printf("model: InternViT (C %d, %d layers) + mlp1 + %s (H %d, %d layers, vocab %d); "
           "random init %.1f s\n", v->hidden, v->layers, llm_arch_name(l->arch), l->hidden,
           l->layers, l->vocab, t_init);
    printf("pair: 2 sequences x (%d image + %d text tokens) sharing one %d-tile %dpx image; "
           "ViT frozen\n\n", tiles * tpt, text, tiles, cfg.image_size);

    const ParamStore *ps = &m.ps;
    size_t w = ps->numel * sizeof(float), gr = ps->n_trainable * sizeof(float);
    printf("parameters: %zu total (%.1fM), %zu trainable (%.1fM; vision frozen: %.1fM)\n",
           ps->numel, ps->numel / 1e6, ps->n_trainable, ps->n_trainable / 1e6,
           params_count_group(ps, PG_VISION) / 1e6);
    printf("parameter memory (fp32)\n");
    print_bytes("weights", w, 0);
    print_bytes("+ gradients (trainable)", gr, w + gr);
    print_bytes("+ AdamW moments m, v (trainable)", 2 * gr, w + 3 * gr);
    fflush(stdout);

    double f_fwd = bench.flops_vit + bench.flops_llm, f_train = bench.flops_vit + 3 * bench.flops_llm;
    printf("\none pair on the CPU (model FLOPs: forward %.1f GFLOP, forward+backward %.1f GFLOP)\n",
           f_fwd / 1e9, f_train / 1e9);
    printf("  %-30s %27s %10s %13s %10s\n", "", "activation arena peak", "time", "model GFLOP/s",
           "tokens/s");
    /* rows print as they finish: at the InternVL2-1B shape each takes minutes */
    Measure fb = run(&bench, 1, 0, (size_t)64 << 20);
    print_row("forward + backward", fb, f_train, 2 * S);
    print_row("forward, no grad", run(&bench, 0, 0, fb.peak), f_fwd, 2 * S);
    print_row("forward + backward, recompute", run(&bench, 1, 1, fb.peak), f_train, 2 * S);

    free(ids);
    free(pixels);
    rm_free(&m);
    return 0;
}
