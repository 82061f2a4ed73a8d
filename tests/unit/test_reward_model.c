/* test_reward_model.c - the reward model on the runtime: gradients of the full network
 * (ViT, connector, splice, decoder, pooling, score) against finite differences for each
 * LLM layout, recompute equality, image sharing between sequences, splice count errors,
 * and config.json validation. The PyTorch fixtures (test_model_oracle.c) check values. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/reward_model.h"
#include "runtime/error.h"
#include "runtime/ops.h"
#include "tests/harness.h"

static ModelConfig tiny_config(LlmArch arch, int rms_vit, int qk_norm, int select_layer) {
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.vision = (VisionConfig){.hidden = 8, .heads = 2, .intermediate = 12, .layers = 2,
                              .image_size = 8, .patch = 2, .channels = 3, .qkv_bias = !rms_vit,
                              .qk_norm = qk_norm, .rms_norm = rms_vit, .eps = 1e-6f};
    c.llm = (LlmConfig){.arch = arch, .hidden = 12, .heads = 4, .kv_heads = 2, .head_dim = 3,
                        .intermediate = 16, .layers = 2, .vocab = 270, .rope_theta = 10000.0f,
                        .rms_eps = 1e-6f, .max_positions = 4096};
    if (arch == LLM_LLAMA) c.llm.kv_heads = 4;
    c.llm.hidden = 16; c.llm.head_dim = 4; /* even head dim for RoPE */
    c.image_size = 4 * 2;   /* G = 4 -> 4 tokens per tile */
    c.select_layer = select_layer;
    c.downsample_ratio = 0.5f;
    snprintf(c.template_name, sizeof c.template_name, "Hermes-2");
    c.img_context_id = 262;
    return c;
}

enum { TB = 4, TT = 14 };

typedef struct {
    RewardModel m;
    Graph g;
    int ids[TB * TT], lengths[TB], tiles[2], image_of[TB];
    float *pixels;
    RmBatch batch;
} Fixture;

/* two images (1 and 2 tiles) shared by sequence pairs (0,1) and (2,3), like chosen/rejected */
static void fixture_init(Fixture *f, ModelConfig cfg, int freeze_vision) {
    int freeze[PG_COUNT] = {0};
    freeze[PG_VISION] = freeze_vision;
    rm_create(&f->m, &cfg, DEV_CPU, freeze);
    TRng r = trng(1234 + cfg.llm.arch);
    for (int i = 0; i < f->m.ps.n; i++) { /* larger than the HF init so every path matters */
        Tensor *t = params_get(&f->m.ps, i);
        int is_norm = strstr(t->name, "norm") || !strncmp(t->name, "mlp1.0.", 7);
        for (size_t k = 0; k < t->numel; k++)
            tensor_f32(t)[k] = is_norm ? 1.0f + 0.1f * trng_normal(&r) : 0.35f * trng_normal(&r);
    }
    graph_init(&f->g, DEV_CPU, 1 << 20, 77);
    int tpt = config_tokens_per_tile(&cfg), S = cfg.image_size;
    f->tiles[0] = 1;
    f->tiles[1] = 2;
    f->pixels = tmalloc((size_t)3 * 3 * S * S);
    fill_normal(&r, f->pixels, (size_t)3 * 3 * S * S, 1.0f);
    int lens[TB] = {TT, TT - 5, TT, TT - 2};
    for (int b = 0; b < TB; b++) {
        f->image_of[b] = b / 2;
        f->lengths[b] = lens[b];
        int nimg = f->tiles[b / 2] * tpt, t = 0;
        f->ids[b * TT + t++] = 258;
        f->ids[b * TT + t++] = 260;
        for (int k = 0; k < nimg; k++) f->ids[b * TT + t++] = cfg.img_context_id;
        f->ids[b * TT + t++] = 261;
        while (t < lens[b] - 1) f->ids[b * TT + t++] = (int)(trng_uniform(&r) * 256);
        f->ids[b * TT + t++] = 259;
        while (t < TT) f->ids[b * TT + t++] = 269;
    }
    f->batch = (RmBatch){TB, TT, f->ids, f->lengths, 2, f->tiles, f->pixels, f->image_of, NULL};
}

static void fixture_free(Fixture *f) {
    graph_free(&f->g);
    rm_free(&f->m);
    free(f->pixels);
}

static double sum_rewards(void *vf) {
    Fixture *f = vf;
    graph_reset(&f->g);
    int prev = graph_set_grad(&f->g, 0);
    Tensor *r = rm_forward(&f->m, &f->g, &f->batch);
    graph_set_grad(&f->g, prev);
    double s = 0;
    for (int b = 0; b < TB; b++) s += (double)(b + 1) * tensor_f32(r)[b]; /* distinct weights */
    return s;
}

static float *backward(Fixture *f) {
    graph_reset(&f->g);
    params_zero_grad(&f->m.ps);
    Tensor *r = rm_forward(&f->m, &f->g, &f->batch);
    float w[TB];
    for (int b = 0; b < TB; b++) w[b] = (float)(b + 1);
    graph_backward_from(&f->g, r, w);
    float *gp = tmalloc(f->m.ps.n_trainable);
    memcpy(gp, f->m.ps.grad, f->m.ps.n_trainable * sizeof(float));
    return gp;
}

/* Finite differences through the whole network carry float noise of a few percent on the
 * smallest gradients (the CLS embedding reaches the score only through attention), hence
 * 5e-2 here; the PyTorch fixtures check every gradient to 1e-3. One thread: the thousands
 * of tiny forwards are dominated by thread wake-ups otherwise. */
static void check_layout(LlmArch arch, int rms_vit, int qk_norm, int select_layer) {
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    Fixture f;
    fixture_init(&f, tiny_config(arch, rms_vit, qk_norm, select_layer), 0);
    float *gp = backward(&f);
    for (int i = 0; i < f.m.ps.n; i++) {
        Tensor *t = params_get(&f.m.ps, i);
        float *a = gp + (tensor_f32(t) - f.m.ps.data);
        GRAD_CHECK(t->name, sum_rewards, &f, tensor_f32(t), a, t->numel < 24 ? t->numel : 24, 5e-2);
    }
    free(gp);
    fixture_free(&f);
    omp_set_num_threads(threads);
}

TEST(test_reward_model_qwen2_gradients_match_finite_differences) {
    check_layout(LLM_QWEN2, 0, 0, -1);
}

TEST(test_reward_model_internlm2_packed_wqkv_with_qknorm_vit_gradients_match_finite_differences) {
    check_layout(LLM_INTERNLM2, 1, 1, -1);
}

TEST(test_reward_model_llama_with_select_layer_gradients_match_finite_differences) {
    check_layout(LLM_LLAMA, 0, 0, 1); /* hidden state 1: the first layer's output */
}

TEST(test_reward_model_recompute_gives_bitwise_identical_gradients) {
    Fixture a, b;
    ModelConfig cfg = tiny_config(LLM_QWEN2, 0, 0, -1);
    cfg.vision.drop_path_rate = 0.5f;
    fixture_init(&a, cfg, 0);
    fixture_init(&b, cfg, 0);
    a.g.training = b.g.training = 1;
    b.m.grad_checkpoint = b.g.recompute = 1;
    float *ga = backward(&a), *gb = backward(&b);
    EXPECT_SAME("parameter gradients", ga, gb, a.m.ps.n_trainable);
    free(ga); free(gb);
    fixture_free(&a);
    fixture_free(&b);
}

TEST(test_sequences_sharing_an_image_equal_separate_copies_of_it) {
    Fixture f;
    fixture_init(&f, tiny_config(LLM_QWEN2, 0, 0, -1), 1);
    graph_set_grad(&f.g, 0);
    Tensor *r = rm_forward(&f.m, &f.g, &f.batch);
    float shared[TB];
    memcpy(shared, r->data, sizeof shared);
    /* the same batch with each sequence owning a copy of its image */
    int S = f.m.cfg.image_size, per = 3 * S * S;
    float *px = tmalloc((size_t)6 * per);
    int tiles[TB] = {1, 1, 2, 2}, image_of[TB] = {0, 1, 2, 3};
    memcpy(px, f.pixels, per * sizeof(float));
    memcpy(px + per, f.pixels, per * sizeof(float));
    memcpy(px + 2 * per, f.pixels + per, 2 * per * sizeof(float));
    memcpy(px + 4 * per, f.pixels + per, 2 * per * sizeof(float));
    RmBatch sep = {TB, TT, f.ids, f.lengths, 4, tiles, px, image_of, NULL};
    graph_reset(&f.g);
    r = rm_forward(&f.m, &f.g, &sep);
    double ref[TB];
    for (int b = 0; b < TB; b++) ref[b] = shared[b];
    EXPECT_CLOSE("rewards", tensor_f32(r), ref, TB, 1e-6, 1e-7);
    /* padding does not change a reward: the same sequences in a longer padded batch */
    free(px);
    fixture_free(&f);
}

TEST(test_frozen_vision_tower_records_no_tape_and_gets_no_gradient) {
    Fixture f;
    fixture_init(&f, tiny_config(LLM_QWEN2, 0, 0, -1), 1);
    size_t vision = params_count_group(&f.m.ps, PG_VISION);
    CHECK(f.m.ps.n_trainable == f.m.ps.numel - vision, "trainable %zu of %zu with %zu vision",
          f.m.ps.n_trainable, f.m.ps.numel, vision);
    graph_reset(&f.g);
    rm_vision(&f.m, &f.g, f.pixels, 1);
    /* the connector trains, so only its ops (after the ViT) are on the tape */
    for (int i = 0; i < f.g.ntape; i++)
        CHECK(strcmp(f.g.tape[i].op, "attention") != 0, "a ViT attention op was recorded");
    CHECK(f.g.ntape > 0 && f.g.ntape <= 6, "%d tape entries for a frozen ViT + connector", f.g.ntape);
    fixture_free(&f);
}

TEST(test_image_token_count_mismatch_is_an_error_naming_the_sequence) {
    Fixture f;
    fixture_init(&f, tiny_config(LLM_QWEN2, 0, 0, -1), 0);
    CHECK(rm_check_batch(&f.m, &f.batch) == 0, "valid batch rejected: %s", mmrm_last_error());
    f.ids[1 * TT + 3] = 65; /* sequence 1 loses one <IMG_CONTEXT> */
    CHECK(rm_check_batch(&f.m, &f.batch) == -1, "mismatch accepted");
    CHECK(strstr(mmrm_last_error(), "sequence 1") && strstr(mmrm_last_error(), "IMG_CONTEXT"),
          "message: %s", mmrm_last_error());
    f.ids[1 * TT + 3] = 262;
    f.ids[2 * TT + TT - 1] = 270; /* outside the vocabulary */
    CHECK(rm_check_batch(&f.m, &f.batch) == -1 && strstr(mmrm_last_error(), "vocabulary"),
          "bad id accepted: %s", mmrm_last_error());
    fixture_free(&f);
}

static const char *write_tmp(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/mmrm_test_%d_%s", (int)getpid(), name);
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
    return path;
}

TEST(test_config_json_round_trips_and_bad_fields_are_named) {
    ModelConfig c = tiny_config(LLM_INTERNLM2, 1, 1, -1), d;
    c.init_range = 0.2;
    char path[256];
    snprintf(path, sizeof path, "/tmp/mmrm_test_%d_config.json", (int)getpid());
    CHECK(config_save(&c, path, "float32") == 0, "save: %s", mmrm_last_error());
    CHECK(config_load(path, &d) == 0, "load: %s", mmrm_last_error());
    CHECK(d.llm.arch == LLM_INTERNLM2 && d.llm.kv_heads == 2 && d.vision.qk_norm && d.vision.rms_norm &&
              d.image_size == 8 && d.llm.head_dim == 4 && !strcmp(d.template_name, "Hermes-2") &&
              d.init_range == 0.2 && !d.has_system_message && config_system_message(&d) == NULL,
          "round trip changed the config");
    /* tiling: InternVL2's defaults when absent (c has none recorded), then a recorded one */
    CHECK(d.has_tiling && d.dynamic_image_size == 1 && d.use_thumbnail == 1 && d.min_dynamic_patch == 1 &&
              d.max_dynamic_patch == 6,
          "tiling defaults %d %d %d..%d", d.dynamic_image_size, d.use_thumbnail, d.min_dynamic_patch,
          d.max_dynamic_patch);
    c.has_tiling = 1;
    c.dynamic_image_size = 0;
    c.use_thumbnail = 0;
    c.min_dynamic_patch = 2;
    c.max_dynamic_patch = 9;
    CHECK(config_save(&c, path, "float32") == 0 && config_load(path, &d) == 0, "%s", mmrm_last_error());
    CHECK(d.has_tiling && !d.dynamic_image_size && !d.use_thumbnail && d.min_dynamic_patch == 2 &&
              d.max_dynamic_patch == 9,
          "recorded tiling did not round-trip");
    /* a system message (also an empty one) survives the round trip; absent stays absent */
    const char *msgs[] = {"", "You score answers.\n"};
    for (int k = 0; k < 2; k++) {
        c.has_system_message = 1;
        snprintf(c.system_message, sizeof c.system_message, "%s", msgs[k]);
        CHECK(config_save(&c, path, "float32") == 0 && config_load(path, &d) == 0, "%s", mmrm_last_error());
        CHECK(d.has_system_message && !strcmp(config_system_message(&d), msgs[k]),
              "system_message \"%s\" did not round-trip", msgs[k]);
    }
    unlink(path);
    struct { const char *json, *want; } bad[] = {
        {"{\"vision_config\": {}, \"llm_config\": {}}", "vision_config.hidden_size"},
        {"[1,2]", "not a JSON object"},
        {"{\"vision_config\": {\"hidden_size\": 8, \"num_attention_heads\": 2, \"intermediate_size\": 4,"
         " \"num_hidden_layers\": 1, \"image_size\": 8, \"patch_size\": 2}, \"llm_config\": "
         "{\"architectures\": [\"GPT2LMHeadModel\"]}}", "unknown architecture \"GPT2LMHeadModel\""},
        {"{\"vision_config\": {\"hidden_size\": 8, \"num_attention_heads\": 3, \"intermediate_size\": 4,"
         " \"num_hidden_layers\": 1, \"image_size\": 8, \"patch_size\": 2}, \"llm_config\": "
         "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"num_attention_heads\": 2,"
         " \"intermediate_size\": 4, \"num_hidden_layers\": 1, \"vocab_size\": 300}}", "multiple of num_attention_heads"},
        {"{\"vision_config\": {\"hidden_size\": \"8\"}, \"llm_config\": {}}", "\"vision_config.hidden_size\" must be an integer"},
        {"{\"initializer_range\": -0.1, \"vision_config\": {\"hidden_size\": 8, \"num_attention_heads\": 2, \"intermediate_size\": 4,"
         " \"num_hidden_layers\": 1, \"image_size\": 8, \"patch_size\": 2}, \"llm_config\": "
         "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"num_attention_heads\": 2,"
         " \"intermediate_size\": 4, \"num_hidden_layers\": 1, \"vocab_size\": 300}}", "initializer_range"},
        {"{\"min_dynamic_patch\": 7, \"max_dynamic_patch\": 6, \"vision_config\": {\"hidden_size\": 8, \"num_attention_heads\": 2, \"intermediate_size\": 4,"
         " \"num_hidden_layers\": 1, \"image_size\": 8, \"patch_size\": 2}, \"llm_config\": "
         "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"num_attention_heads\": 2,"
         " \"intermediate_size\": 4, \"num_hidden_layers\": 1, \"vocab_size\": 300}}", "max_dynamic_patch"},
        {"{\"system_message\": 7, \"vision_config\": {\"hidden_size\": 8, \"num_attention_heads\": 2, \"intermediate_size\": 4,"
         " \"num_hidden_layers\": 1, \"image_size\": 8, \"patch_size\": 2}, \"llm_config\": "
         "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"num_attention_heads\": 2,"
         " \"intermediate_size\": 4, \"num_hidden_layers\": 1, \"vocab_size\": 300}}", "\"system_message\" must be a string"},
        {"{\"ps_version\": \"v1\", \"vision_config\": {\"hidden_size\": 8, \"num_attention_heads\": 2, \"intermediate_size\": 4,"
         " \"num_hidden_layers\": 1, \"image_size\": 8, \"patch_size\": 2}, \"llm_config\": "
         "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"num_attention_heads\": 2,"
         " \"intermediate_size\": 4, \"num_hidden_layers\": 1, \"vocab_size\": 300}}", "ps_version"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p = write_tmp("bad.json", bad[i].json);
        CHECK(config_load(p, &d) == -1, "case %zu loaded", i);
        CHECK(strstr(mmrm_last_error(), bad[i].want) && strstr(mmrm_last_error(), p),
              "case %zu: message \"%s\" lacks \"%s\" or the path", i, mmrm_last_error(), bad[i].want);
        unlink(p);
    }
}

/* ---- GraphHooks: a parameter reported final has its final gradient ---- */

typedef struct {
    ParamStore *ps;
    int *first_use;   /* per parameter index: top-level entry of its first use, -1 none */
    float *snap;      /* n_trainable: gradients copied when their parameter was declared final */
    int *final_at;    /* per parameter index: the entry after which it was declared final */
} HookProbe;

static int probe_param(HookProbe *p, const float *grad) {
    for (int i = 0; i < p->ps->n; i++) {
        Tensor *t = params_get(p->ps, i);
        if (t->grad && grad >= t->grad && grad < t->grad + t->numel) return i;
    }
    return -1; /* an activation view */
}

/* t may span several parameters (the decoder's fused q/k/v and gate/up views) */
static void probe_use(void *ctx, const Tensor *t, int tape_index) {
    HookProbe *p = ctx;
    for (size_t k = 0; k < t->numel;) {
        int i = probe_param(p, t->grad + k);
        if (i < 0) return;
        if (p->first_use[i] < 0) p->first_use[i] = tape_index;
        Tensor *q = params_get(p->ps, i);
        k = (size_t)(q->grad + q->numel - t->grad);
    }
}

static void probe_done(void *ctx, int tape_index) {
    HookProbe *p = ctx;
    for (int i = 0; i < p->ps->n; i++) {
        Tensor *t = params_get(p->ps, i);
        if (p->first_use[i] >= tape_index && p->final_at[i] < 0) {
            p->final_at[i] = tape_index;
            memcpy(p->snap + (t->grad - p->ps->grad), t->grad, t->numel * sizeof(float));
        }
    }
}

static void check_hooks(int recompute) {
    Fixture f;
    fixture_init(&f, tiny_config(LLM_QWEN2, 0, 0, -1), 0);
    f.m.grad_checkpoint = f.g.recompute = recompute;
    int n = f.m.ps.n;
    HookProbe p = {&f.m.ps, (int *)tmalloc(n), tmalloc(f.m.ps.n_trainable), (int *)tmalloc(n)};
    for (int i = 0; i < n; i++) p.first_use[i] = p.final_at[i] = -1;
    GraphHooks h = {probe_use, probe_done, &p};
    graph_set_hooks(&f.g, &h);
    float *g = backward(&f);
    graph_set_hooks(&f.g, NULL);
    int early = 0, trainable = 0;
    for (int i = 0; i < n; i++) {
        Tensor *t = params_get(&f.m.ps, i);
        if (!t->grad) continue;
        trainable++;
        CHECK(p.first_use[i] >= 0, "%s: no use seen in the forward", t->name);
        CHECK(p.final_at[i] >= 0, "%s: never declared final", t->name);
        early += p.final_at[i] > 0;
    }
    /* every gradient declared final is untouched by the rest of backward */
    EXPECT_SAME("gradients when declared final vs after backward", p.snap, g, f.m.ps.n_trainable);
    /* and most parameters are final before backward's last entry (the schedule overlaps) */
    CHECK(early >= trainable / 2, "only %d of %d parameters final before the end", early, trainable);
    free(g);
    free(p.first_use);
    free(p.snap);
    free(p.final_at);
    fixture_free(&f);
}

TEST(test_graph_hooks_declare_a_parameter_final_only_after_its_last_gradient_write) {
    check_hooks(0);
}

TEST(test_graph_hooks_see_parameters_used_inside_recompute_segments) {
    check_hooks(1);
}
