/* bench_step.c - one training step of the reward model as `mmrm train` takes it, at the
 * shape bench/torch_baseline.py runs PyTorch at (default: configs/model/internvl2_1b.json,
 * ViT frozen, 8 pairs per step, each sequence 1 tile of image tokens + 512 text tokens, the
 * chosen and rejected sequence of a pair sharing one image), so that the two print the same
 * metrics: pairs/s, tokens/s, MFU of the trained part and memory, with a per-phase time
 * breakdown (vision forward, decoder forward + loss, backward, optimizer).
 *
 * A step: forward of the main model (ViT, connector, decoder, score head) on the P pairs,
 * with --objective shortcut_aware also the bias model (a second full reward model, as the
 * reference runs it) on the same text with the blank image (its frozen ViT's features of the
 * one blank tile computed once, as train/setup.c does), the loss, backward, then AdamW with
 * gradient-norm clipping over every trainable store (train/optim.h). Phases are separated by
 * a device synchronisation; "vision" is the frozen ViT's no-grad forward of the step's tiles
 * measured on its own (it runs inside the forward, whose time includes it: decoder forward =
 * forward - vision). Times are medians over --steps steps after --warmup steps.
 *
 * FLOPs (as `mmrm info` and build/bench_model count them): per sequence of S tokens the
 * decoder forward is S x rm_llm_flops_per_token + 2 L NH hd S (S + 1) (causal attention);
 * the trained part of a step costs 3x its forward (forward + backward), the bias model's
 * decoder likewise; the frozen ViT's forward is reported but not in MFU. MFU = trained-part
 * FLOPs / step time / --peak-tflops (default 989: H100/H200 SXM dense bf16; printed only on a
 * GPU). Memory: parameters (fp32 masters, bf16 copies), gradients, AdamW moments and the
 * activation arena's high-water mark (+ bf16 staging), i.e. what mmrm allocates.
 *
 * --cuda-graphs off|on|both (default off): on, the step's forward and backward are captured
 * as a CUDA graph and launched (train key cuda_graphs, kernels/cuda/graph.cu: one exec per
 * shape key, each later step captured again and the exec updated; a step that cannot be, such
 * as the first with GEMM plans not yet cached, runs again eagerly); both: each objective
 * measured eagerly, then with graphs, on the same model, one row each. With graphs the forward
 * and backward are one launch: their time is in the backward column ("fwd+bwd"), dec fwd
 * shows "-". --packing / --share-prefix: RewardModel.packing / .share_prefix (the rows here
 * are all full length, so packing makes one stream of 2P x S tokens and share_prefix computes
 * each pair's image block once).
 *
 * Build: `make build/bench_step` (CPU), `make cuda` (with the CUDA backend),
 * `make build/emu_bench_step` (the emulated GPU, for checking that it runs).
 * It is a measurement, not a test: nothing is asserted. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/config.h"
#include "models/image.h"
#include "models/reward_model.h"
#include "runtime/autograd.h"
#include "runtime/error.h"
#include "runtime/ops.h"
#include "runtime/rng.h"
#include "train/optim.h"
#ifdef MMRM_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

#define MIB (1024.0 * 1024.0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_step [--config PATH (configs/model/internvl2_1b.json)] [--device cpu|cuda (cuda when a GPU is visible)]\n"
            "                  [--precision fp32|bf16 (bf16 on cuda, fp32 on cpu)] [--objective standard|shortcut_aware|both (both)]\n"
            "                  [--pairs P (8)] [--text N (512)] [--tiles N (1)] [--steps N (5)] [--warmup N (2)]\n"
            "                  [--peak-tflops X (989)] [--quick (configs/model/small.json, 2 pairs, 32 text tokens, 1 step)]\n"
            "                  [--staged-non-gemm (the non-GEMM ops without their bf16 kernels: widened and rounded\n"
            "                  through fp32 staging, for comparison)]\n"
            "                  [--cuda-graphs off|on|both (off): the forward and backward as one CUDA graph; both: a row each]\n"
            "                  [--packing] [--share-prefix] (the model's compact layouts; default: padded rows)\n"
            "One training step of the reward model at the shape of bench/torch_baseline.py: pairs/s,\n"
            "tokens/s, MFU of the trained part, memory, and the time per phase.\n");
}

static int parse_int(const char *opt, const char *s, int lo) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > 1000000) {
        fprintf(stderr, "bench_step: %s '%s': expected an integer >= %d\n", opt, s, lo);
        exit(2);
    }
    return (int)v;
}

typedef struct {
    Device dev;
    int bf16, shortcut;
    int graphs;           /* the forward and backward captured as a CUDA graph */
    long graph_eager;     /* steps that could not be and ran again eagerly */
    RewardModel main, bias;
    RmBatch batch, blank; /* the pairs' rows with their images; the same rows with the blank tile */
    float *blank_cache;   /* (1, tokens_per_tile, 4C) the bias ViT's features of the blank tile */
    AdamW opt;
    Graph g;
} Bench;

typedef struct {
    double vision, forward, backward, optim, total; /* seconds */
} Phases;

static void make_model(Bench *b, RewardModel *m, const ModelConfig *cfg, uint64_t seed) {
    int freeze[PG_COUNT] = {0};
    freeze[PG_VISION] = 1;
    rm_create(m, cfg, DEV_CPU, freeze);
    rm_init_random(m, seed);
    rm_to_device(m, b->dev);
    if (b->bf16) params_enable_bf16(&m->ps);
}

static void blank_features(Bench *b, const ModelConfig *cfg) {
    int S = cfg->image_size;
    Image blank;
    image_blank(IMAGE_BLANK_SIZE, IMAGE_BLANK_SIZE, &blank);
    ImageConfig ic = {S, 1, 1, 0, 0};
    float *tile = xmalloc((size_t)3 * S * S * sizeof(float));
    image_preprocess(&blank, &ic, tile, 1);
    image_free(&blank);
    int prev = graph_set_grad(&b->g, 0);
    graph_reset(&b->g);
    Tensor *f = rm_vit_features(&b->bias, &b->g, tile, 1);
    b->blank_cache = xmalloc(f->numel * sizeof(float));
    memcpy(b->blank_cache, graph_host(&b->g, f), f->numel * sizeof(float));
    graph_reset(&b->g);
    graph_set_grad(&b->g, prev);
    free(tile);
}

static Tensor *pick(Graph *g, Tensor *rewards, int P, int which) {
    int *idx = graph_scratch(g, P * sizeof(int));
    for (int i = 0; i < P; i++) idx[i] = 2 * i + which;
    return op_gather_rows(g, op_reshape(g, rewards, 2, (int[]){2 * P, 1}), idx, P);
}

/* the forward (the loss) queued */
static Tensor *forward(Bench *b) {
    int P = b->batch.B / 2;
    graph_reset(&b->g);
    Tensor *r = rm_forward(&b->main, &b->g, &b->batch);
    Tensor *rc = pick(&b->g, r, P, 0), *rr = pick(&b->g, r, P, 1), *loss;
    if (b->shortcut) {
        Tensor *q = rm_forward(&b->bias, &b->g, &b->blank);
        loss = op_shortcut_loss(&b->g, rc, rr, pick(&b->g, q, P, 0), pick(&b->g, q, P, 1), 1e-7f).loss;
    } else {
        loss = op_bt_loss(&b->g, rc, rr, NULL, NULL);
    }
    return loss;
}

/* the graph's shape key, as train/step.c's: tape length and arena use (the shapes are fixed) */
static uint64_t graph_key(const Graph *g) {
    const long v[] = {g->ntape, (long)(g->act.used + g->act.overflow_used), (long)g->inputs.used,
                      (long)g->stage.used};
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        for (int k = 0; k < 8; k++) h = (h ^ (uint64_t)((unsigned long)v[i] >> (8 * k) & 0xff)) * 1099511628211ull;
    return h;
}

static Phases step(Bench *b, long s) {
    Phases ph = {0};
    /* the frozen ViT alone, no grad: the vision share of the forward below */
    double t0 = now_s();
    int prev = graph_set_grad(&b->g, 0);
    graph_reset(&b->g);
    rm_vit_features(&b->main, &b->g, b->batch.pixels, b->batch.n_images);
    device_sync(b->dev);
    graph_set_grad(&b->g, prev);
    ph.vision = now_s() - t0;

    t0 = now_s();
    params_zero_grad(&b->main.ps);
    if (b->shortcut) params_zero_grad(&b->bias.ps);
    if (b->graphs) { /* forward and backward as one graph: timed together */
        device_graph_begin(b->dev);
        graph_backward(&b->g, forward(b));
        if (device_graph_end(b->dev, graph_key(&b->g))) {
            b->graph_eager++;
            graph_backward(&b->g, forward(b));
        }
        device_sync(b->dev);
        double t2 = now_s();
        ParamStore *stores[2] = {&b->main.ps, &b->bias.ps};
        StepResult sr = adamw_step(&b->opt, b->g.K, stores, b->shortcut ? 2 : 1, s);
        device_sync(b->dev);
        MMRM_CHECK(!sr.skipped, "bench_step: non-finite gradient norm at step %ld", s);
        ph.forward = NAN;
        ph.backward = t2 - t0;
        ph.optim = now_s() - t2;
        ph.total = now_s() - t0;
        return ph;
    }
    Tensor *loss = forward(b);
    device_sync(b->dev);
    double t1 = now_s();
    graph_backward(&b->g, loss);
    device_sync(b->dev);
    double t2 = now_s();
    ParamStore *stores[2] = {&b->main.ps, &b->bias.ps};
    StepResult sr = adamw_step(&b->opt, b->g.K, stores, b->shortcut ? 2 : 1, s);
    device_sync(b->dev);
    double t3 = now_s();
    MMRM_CHECK(!sr.skipped, "bench_step: non-finite gradient norm at step %ld", s);
    ph.forward = t1 - t0;
    ph.backward = t2 - t1;
    ph.optim = t3 - t2;
    ph.total = t3 - t0;
    return ph;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static size_t store_bytes(const ParamStore *ps) {
    size_t w = ps->numel * sizeof(float) + (ps->w16 ? ps->numel * sizeof(uint16_t) : 0);
    return w + 3 * ps->n_trainable * sizeof(float); /* gradients, m, v */
}

/* an option taking a, b or both: out[] gets 0 for a and 1 for b, in that order; the count
 * (0: the value is none of them) */
static int pick_both(const char *v, const char *a, const char *b, int out[2]) {
    int n = 0;
    if (!strcmp(v, a) || !strcmp(v, "both")) out[n++] = 0;
    if (!strcmp(v, b) || !strcmp(v, "both")) out[n++] = 1;
    return n;
}

int main(int argc, char **argv) {
    const char *cfg_path = NULL, *device = NULL, *precision = NULL, *objective = "both";
    const char *graphs = "off";
    int pairs = 0, text = 0, tiles = 1, steps = 0, warmup = -1, quick = 0, staged_non_gemm = 0;
    int packing = 0, share_prefix = 0;
    double peak_tflops = 989;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            quick = 1;
        } else if (!strcmp(a, "--staged-non-gemm")) {
            staged_non_gemm = 1;
        } else if (!strcmp(a, "--packing")) {
            packing = 1;
        } else if (!strcmp(a, "--share-prefix")) {
            share_prefix = 1;
        } else if (has && !strcmp(a, "--cuda-graphs")) {
            graphs = argv[++i];
        } else if (has && !strcmp(a, "--config")) {
            cfg_path = argv[++i];
        } else if (has && !strcmp(a, "--device")) {
            device = argv[++i];
        } else if (has && !strcmp(a, "--precision")) {
            precision = argv[++i];
        } else if (has && !strcmp(a, "--objective")) {
            objective = argv[++i];
        } else if (has && !strcmp(a, "--pairs")) {
            pairs = parse_int(a, argv[++i], 1);
        } else if (has && !strcmp(a, "--text")) {
            text = parse_int(a, argv[++i], 1);
        } else if (has && !strcmp(a, "--tiles")) {
            tiles = parse_int(a, argv[++i], 1);
        } else if (has && !strcmp(a, "--steps")) {
            steps = parse_int(a, argv[++i], 1);
        } else if (has && !strcmp(a, "--warmup")) {
            warmup = parse_int(a, argv[++i], 0);
        } else if (has && !strcmp(a, "--peak-tflops")) {
            peak_tflops = atof(argv[++i]);
        } else {
            fprintf(stderr, "bench_step: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!cfg_path) cfg_path = quick ? "configs/model/small.json" : "configs/model/internvl2_1b.json";
    if (!pairs) pairs = quick ? 2 : 8;
    if (!text) text = quick ? 32 : 512;
    if (!steps) steps = quick ? 1 : 5;
    if (warmup < 0) warmup = quick ? 1 : 2;
    Device dev = DEV_CPU;
    if (!device) device = device_gpu_count() > 0 ? "cuda" : "cpu";
    if (device_resolve(device, 0, 0, &dev)) {
        fprintf(stderr, "bench_step: --device %s: %s\n", device, mmrm_last_error());
        return 2;
    }
    if (!precision) precision = dev == DEV_CPU ? "fp32" : "bf16";
    if (strcmp(precision, "fp32") && strcmp(precision, "bf16")) {
        fprintf(stderr, "bench_step: --precision '%s': expected fp32 or bf16\n", precision);
        return 2;
    }
    int objs[2], n_obj = pick_both(objective, "standard", "shortcut_aware", objs);
    if (!n_obj) {
        fprintf(stderr, "bench_step: --objective '%s': expected standard, shortcut_aware or both\n", objective);
        return 2;
    }
    int modes[2], n_modes = pick_both(graphs, "off", "on", modes);
    if (!n_modes) {
        fprintf(stderr, "bench_step: --cuda-graphs '%s': expected off, on or both\n", graphs);
        return 2;
    }
    if (modes[n_modes - 1] && dev == DEV_CPU) {
        fprintf(stderr, "bench_step: --cuda-graphs %s needs --device cuda (CUDA graphs are a GPU feature)\n", graphs);
        return 2;
    }
    ModelConfig cfg;
    if (config_load(cfg_path, &cfg) != 0) {
        fprintf(stderr, "bench_step: %s\n", mmrm_last_error());
        return 1;
    }

    int tpt = config_tokens_per_tile(&cfg), S = tiles * tpt + text, P = pairs, B = 2 * P;
    int *ids = xmalloc((size_t)B * S * sizeof(int)), *lengths = xmalloc(B * sizeof(int));
    int *image_of = xmalloc(B * sizeof(int)), *blank_of = xcalloc(B, sizeof(int));
    int *ntiles = xmalloc(P * sizeof(int)), one = 1;
    Rng rng = rng_make(17, 0);
    /* image tokens first, then random byte-valued text; every row full length */
    for (int b = 0; b < B; b++) {
        lengths[b] = S;
        image_of[b] = b / 2;
        for (int t = 0; t < S; t++)
            ids[(size_t)b * S + t] = t < tiles * tpt ? cfg.img_context_id : 32 + (int)rng_below(&rng, 200);
    }
    for (int i = 0; i < P; i++) ntiles[i] = tiles;
    size_t npx = (size_t)P * tiles * 3 * cfg.image_size * cfg.image_size;
    float *pixels = xmalloc(npx * sizeof(float));
    rng_fill_normal(&rng, pixels, npx, 0.0f, 1.0f);

    const LlmConfig *l = &cfg.llm;
    double attn = 2.0 * l->layers * (double)l->heads * l->head_dim * S * ((double)S + 1);
    double f_llm_seq = (double)S * rm_llm_flops_per_token(&cfg) + attn;
    double f_vit = (double)P * tiles * rm_vit_flops_per_tile(&cfg);

    printf("bench_step: %s on %s, precision %s\n", cfg_path, device_describe(dev), precision);
    printf("shape: %d pairs/step, 2 sequences per pair x (%d image + %d text tokens), %d tile(s) of %dpx per pair, ViT frozen; "
           "median of %d steps after %d warm-up; layout: %s\n",
           P, tiles * tpt, text, tiles, cfg.image_size, steps, warmup,
           packing && share_prefix ? "shared prefix, packed" : packing ? "packed" : share_prefix ? "shared prefix" : "padded rows");
    printf("%-15s %9s %9s %10s %8s %9s %10s %10s %10s %10s %12s  %s\n", "objective", "step ms", "pairs/s", "tokens/s",
           "MFU", "vision", "dec fwd", "backward", "optimizer", "memory", "plan hits",
           "graphs (captured/replayed/eager in the timed steps; with graphs, backward = fwd+bwd)");
    for (int k = 0; k < n_obj; k++) {
        Bench b;
        memset(&b, 0, sizeof b);
        b.dev = dev;
        b.bf16 = !strcmp(precision, "bf16");
        b.shortcut = objs[k];
        graph_init(&b.g, dev, (size_t)64 << 20, 7);
        if (b.bf16) {
            graph_set_act_dtype(&b.g, DT_BF16);
            graph_set_precision(&b.g, KP_BF16);
        }
        b.g.training = 1;
        KernelOps staged = *b.g.K;
        if (staged_non_gemm) { /* the table without the non-GEMM bf16 entries (runtime/ops.c stages) */
#define NO_X16(name, params) staged.name = NULL;
            KERNEL_OPS_OPTIONAL(NO_X16)
#undef NO_X16
            staged.matmul_forward_x16 = b.g.K->matmul_forward_x16;
            staged.matmul_backward_x16 = b.g.K->matmul_backward_x16;
            b.g.K = &staged;
        }
        make_model(&b, &b.main, &cfg, 1);
        b.batch = (RmBatch){B, S, ids, lengths, P, ntiles, pixels, image_of, NULL};
        if (b.shortcut) {
            make_model(&b, &b.bias, &cfg, 2);
            blank_features(&b, &cfg);
            b.blank = (RmBatch){B, S, ids, lengths, 1, &one, NULL, blank_of, b.blank_cache};
        }
        b.opt = (AdamW){.lr = 1e-5, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-8, .weight_decay = 0.05,
                        .max_grad_norm = 1.0, .sched = SCHED_CONSTANT, .total_steps = warmup + steps};
        b.main.packing = b.bias.packing = packing;
        b.main.share_prefix = b.bias.share_prefix = share_prefix;
        for (int gm = 0; gm < n_modes; gm++) {
            b.graphs = modes[gm];
            b.graph_eager = 0;
            long cap0 = 0, rep0 = 0, eag0 = 0;
            double *v = xmalloc(5 * (size_t)steps * sizeof(double));
#ifdef MMRM_CUDA
            long h0 = 0, m0 = 0, h1 = 0, m1 = 0;
#endif
            long up0 = 0, re0 = 0;
            size_t st0 = 0;
            for (int s = 0; s < warmup + steps; s++) {
                if (s == warmup) up0 = b.g.n_uploads, re0 = b.g.n_reused, st0 = b.g.staged_bytes;
                if (s == warmup) device_graph_counts(dev, &cap0, &rep0), eag0 = b.graph_eager;
#ifdef MMRM_CUDA
                if (s == warmup && dev != DEV_CPU) cuda_matmul_plan_stats(&h0, &m0);
#endif
                Phases ph = step(&b, s);
                if (s < warmup) continue;
                int j = s - warmup;
                v[j] = ph.total;
                v[steps + j] = ph.vision;
                v[2 * steps + j] = ph.forward - ph.vision;
                v[3 * steps + j] = ph.backward;
                v[4 * steps + j] = ph.optim;
            }
            char plans[32] = "-";
#ifdef MMRM_CUDA
            if (dev != DEV_CPU) {
                cuda_matmul_plan_stats(&h1, &m1);
                snprintf(plans, sizeof plans, "%ld/%ld", h1 - h0, (h1 - h0) + (m1 - m0));
            }
#endif
            double t = median(v, steps), ms[4];
            for (int q = 0; q < 4; q++) ms[q] = 1e3 * median(v + (q + 1) * steps, steps);
            double trained = 3.0 * B * f_llm_seq * (b.shortcut ? 2 : 1);
            size_t mem = store_bytes(&b.main.ps) + (b.shortcut ? store_bytes(&b.bias.ps) : 0) + b.g.act.peak +
                         b.g.stage.peak;
            char mfu[16] = "-", gr[64] = "off", fwd[16] = "-";
            if (b.graphs) {
                long cap1, rep1;
                device_graph_counts(dev, &cap1, &rep1);
                snprintf(gr, sizeof gr, "on: %ld/%ld/%ld", cap1 - cap0, rep1 - rep0, b.graph_eager - eag0);
            } else {
                snprintf(fwd, sizeof fwd, "%.1f", ms[1]);
            }
            if (dev != DEV_CPU && peak_tflops > 0) snprintf(mfu, sizeof mfu, "%.1f%%", 100.0 * trained / t / (peak_tflops * 1e12));
            printf("%-15s %9.1f %9.2f %10.0f %8s %9.1f %10s %10.1f %10.1f %7.0f MiB %12s  %s\n",
                   b.shortcut ? "shortcut_aware" : "standard", 1e3 * t, P / t, B * (double)S / t, mfu, ms[0], fwd,
                   ms[2], ms[3], mem / MIB, plans, gr);
            printf("  model FLOPs per step: trained part %.3g TFLOP (%.3g TFLOP/s), frozen ViT forward %.3g TFLOP; "
                   "activation arena peak %.0f MiB (+ %.0f MiB bf16 staging); host inputs per step: %.0f uploaded, "
                   "%.0f reused; bf16 staging per step %.2f MiB%s\n",
                   trained / 1e12, trained / t / 1e12, f_vit / 1e12, b.g.act.peak / MIB, b.g.stage.peak / MIB,
                   (double)(b.g.n_uploads - up0) / steps, (double)(b.g.n_reused - re0) / steps,
                   (double)(b.g.staged_bytes - st0) / steps / MIB,
                   staged_non_gemm ? " (--staged-non-gemm)" : "");
            fflush(stdout);
            free(v);
        }
        adamw_free(&b.opt);
        free(b.blank_cache);
        graph_free(&b.g);
        rm_free(&b.main);
        if (b.shortcut) rm_free(&b.bias);
    }
    free(ids);
    free(lengths);
    free(image_of);
    free(blank_of);
    free(ntiles);
    free(pixels);
    return 0;
}
