/* test_lora.c - LoRA adapters (models/lora.h): gradients of A, B and the head against finite
 * differences with the base frozen (Qwen2 with ViT and connector targets, InternLM2's packed
 * wqkv), fresh adapters leave the rewards bitwise unchanged, AdamW steps leave the base
 * bitwise unchanged, dropout masks replay under recompute, merged weights score as base +
 * adapter, adapter files round-trip, target names are checked, and adapters written by peft
 * (tests/fixtures/lora, tests/oracle/lora_peft_oracle.py) give the rewards peft computed,
 * also under the names peft gives the language model alone. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "models/checkpoint.h"
#include "models/lora.h"
#include "models/reward_model.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/ops.h"
#include "runtime/safetensors.h"
#include "tests/harness.h"
#include "tests/unit/tiny_model.h"
#include "train/optim.h"

static LoraConfig lora_cfg(int r, double alpha, double dropout, const char *targets) {
    LoraConfig lc = {.r = r, .alpha = alpha, .dropout = dropout};
    char buf[256];
    snprintf(buf, sizeof buf, "%s", targets);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ","))
        snprintf(lc.targets[lc.n_targets++], LORA_NAME_LEN, "%s", t);
    return lc;
}

enum { TB = 4, TT = 14 };

typedef struct {
    RewardModel m;
    Graph g;
    int ids[TB * TT], lengths[TB], tiles[2], image_of[TB];
    float *pixels;
    RmBatch batch;
} Fixture;

/* base frozen like a LoRA run; every parameter random (B too, so A's gradient is not 0) */
static void fixture_init(Fixture *f, ModelConfig cfg, const LoraConfig *lc, int random_b) {
    int freeze[PG_COUNT] = {0};
    freeze[PG_VISION] = freeze[PG_CONNECTOR] = freeze[PG_LLM] = 1;
    rm_create_lora(&f->m, &cfg, DEV_CPU, freeze, lc);
    TRng r = trng(4321 + cfg.llm.arch);
    for (int i = 0; i < f->m.ps.n; i++) {
        Tensor *t = params_get(&f->m.ps, i);
        int is_norm = strstr(t->name, "norm") || !strncmp(t->name, "mlp1.0.", 7);
        for (size_t k = 0; k < t->numel; k++)
            tensor_f32(t)[k] = is_norm ? 1.0f + 0.1f * trng_normal(&r) : 0.35f * trng_normal(&r);
    }
    lora_init(&f->m, 9);
    if (random_b)
        for (int i = 0; i < f->m.ps.n; i++)
            if (f->m.lora_of[i] >= 0) {
                Tensor *b = params_get(&f->m.ps, f->m.lora_of[i] + 1);
                fill_normal(&r, tensor_f32(b), b->numel, 0.3f);
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
        for (int k = 0; k < nimg; k++) f->ids[b * TT + t++] = cfg.img_context_id;
        while (t < lens[b]) f->ids[b * TT + t++] = (int)(trng_uniform(&r) * 256);
        while (t < TT) f->ids[b * TT + t++] = 269;
    }
    f->batch = (RmBatch){TB, TT, f->ids, f->lengths, 2, f->tiles, f->pixels, f->image_of, NULL};
}

static void fixture_free(Fixture *f) {
    graph_free(&f->g);
    rm_free(&f->m);
    free(f->pixels);
}

static void rewards(Fixture *f, float out[TB]) {
    graph_reset(&f->g);
    int prev = graph_set_grad(&f->g, 0);
    Tensor *r = rm_forward(&f->m, &f->g, &f->batch);
    memcpy(out, graph_host(&f->g, r), TB * sizeof(float));
    graph_set_grad(&f->g, prev);
}

static double sum_rewards(void *vf) {
    float r[TB];
    rewards(vf, r);
    double s = 0;
    for (int b = 0; b < TB; b++) s += (double)(b + 1) * r[b];
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

static void check_gradients(LlmArch arch, const char *targets) {
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    Fixture f;
    LoraConfig lc = lora_cfg(3, 6.0, 0, targets);
    fixture_init(&f, test_tiny_config(arch), &lc, 1);
    CHECK(lora_count(&f.m) > 0, "no adapters for %s", targets);
    size_t n_lora = params_count_group(&f.m.ps, PG_LORA);
    CHECK(f.m.ps.n_trainable == n_lora + (size_t)f.m.cfg.llm.hidden,
          "trainable %zu: the adapters (%zu) and the head alone must train", f.m.ps.n_trainable, n_lora);
    float *gp = backward(&f);
    int checked = 0;
    for (int i = 0; i < f.m.ps.n; i++) {
        Tensor *t = params_get(&f.m.ps, i);
        if (!t->requires_grad) continue;
        float *a = gp + (tensor_f32(t) - f.m.ps.data);
        GRAD_CHECK(t->name, sum_rewards, &f, tensor_f32(t), a, t->numel < 24 ? t->numel : 24, 5e-2);
        checked++;
    }
    CHECK(checked == 2 * lora_count(&f.m) + 1, "%d tensors checked", checked);
    free(gp);
    fixture_free(&f);
    omp_set_num_threads(threads);
}

TEST(test_lora_qwen2_llm_vit_connector_adapter_gradients_match_finite_differences) {
    check_gradients(LLM_QWEN2, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,qkv,proj,fc1,fc2,mlp1.1,mlp1.3");
}

TEST(test_lora_internlm2_packed_wqkv_adapter_gradients_match_finite_differences) {
    check_gradients(LLM_INTERNLM2, "wqkv,wo,w1,w2,w3");
}

TEST(test_lora_fresh_adapters_leave_the_rewards_bitwise_unchanged) {
    Fixture f;
    LoraConfig lc = lora_cfg(4, 8.0, 0, "");
    ModelConfig cfg = test_tiny_config(LLM_QWEN2);
    fixture_init(&f, cfg, &lc, 0);
    CHECK(lora_count(&f.m) == 7 * cfg.llm.layers, "%d adapters: every LLM linear by default", lora_count(&f.m));
    RewardModel plain, with = f.m;
    rm_create(&plain, &cfg, DEV_CPU, NULL);
    for (int i = 0; i < plain.ps.n; i++) {
        Tensor *t = params_get(&plain.ps, i);
        memcpy(t->data, params_find(&with.ps, t->name)->data, t->numel * sizeof(float));
    }
    float ra[TB], rb[TB];
    rewards(&f, rb);
    f.m = plain;
    rewards(&f, ra);
    f.m = with;
    EXPECT_SAME("rewards", ra, rb, TB);
    rm_free(&plain);
    fixture_free(&f);
}

TEST(test_lora_adamw_steps_change_adapters_and_head_but_not_the_base) {
    Fixture f;
    LoraConfig lc = lora_cfg(2, 4.0, 0.2, "q_proj,v_proj,down_proj,fc1");
    fixture_init(&f, test_tiny_config(LLM_QWEN2), &lc, 0);
    f.g.training = 1;
    params_alloc_optimizer(&f.m.ps);
    size_t nt = f.m.ps.n_trainable, nall = f.m.ps.numel;
    float *before = tmalloc(nall);
    memcpy(before, f.m.ps.data, nall * sizeof(float));
    AdamW o = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1,
               .max_grad_norm = 1.0, .sched = SCHED_CONSTANT, .total_steps = 3};
    ParamStore *ps = &f.m.ps;
    for (long s = 0; s < 3; s++) {
        free(backward(&f));
        StepResult st = adamw_step(&o, kernels_for(DEV_CPU), &ps, 1, s);
        CHECK(!st.skipped, "step %ld skipped", s);
    }
    adamw_free(&o);
    EXPECT_SAME("frozen base", before + nt, f.m.ps.data + nt, nall - nt);
    int moved = 0;
    for (size_t i = 0; i < nt; i++) moved += before[i] != f.m.ps.data[i];
    CHECK(moved > (int)nt / 2, "only %d of %zu trainable values moved", moved, nt);
    free(before);
    fixture_free(&f);
}

TEST(test_lora_dropout_masks_replay_bitwise_under_recompute) {
    Fixture a, b;
    LoraConfig lc = lora_cfg(3, 6.0, 0.3, "q_proj,up_proj,qkv,fc2");
    ModelConfig cfg = test_tiny_config(LLM_QWEN2);
    fixture_init(&a, cfg, &lc, 1);
    fixture_init(&b, cfg, &lc, 1);
    a.g.training = b.g.training = 1;
    b.m.grad_checkpoint = b.g.recompute = 1;
    float *ga = backward(&a), *gb = backward(&b);
    EXPECT_SAME("adapter gradients", ga, gb, a.m.ps.n_trainable);
    /* and the masks do something: the training forward differs from the eval forward */
    float rt[TB], re[TB];
    graph_reset(&a.g);
    Tensor *r = rm_forward(&a.m, &a.g, &a.batch);
    memcpy(rt, graph_host(&a.g, r), sizeof rt);
    a.g.training = 0;
    rewards(&a, re);
    CHECK(memcmp(rt, re, sizeof rt) != 0, "dropout changed nothing");
    free(ga);
    free(gb);
    fixture_free(&a);
    fixture_free(&b);
}

TEST(test_lora_merged_weights_score_as_base_plus_adapter) {
    Fixture f;
    LoraConfig lc = lora_cfg(4, 8.0, 0, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,qkv,proj,fc1,fc2,mlp1.1,mlp1.3");
    fixture_init(&f, test_tiny_config(LLM_QWEN2), &lc, 1);
    float ra[TB], rm[TB], r0[TB];
    rewards(&f, ra);
    float *keep = tmalloc(f.m.ps.numel);
    memcpy(keep, f.m.ps.data, f.m.ps.numel * sizeof(float));
    for (int i = 0; i < f.m.ps.n; i++)
        if (f.m.lora_of[i] >= 0) {
            Tensor *b = params_get(&f.m.ps, f.m.lora_of[i] + 1);
            memset(b->data, 0, b->numel * sizeof(float));
        }
    rewards(&f, r0);
    CHECK(memcmp(r0, ra, sizeof r0) != 0, "the adapters do not change the rewards");
    memcpy(f.m.ps.data, keep, f.m.ps.numel * sizeof(float));
    free(keep);
    lora_merge(&f.m);
    rewards(&f, rm);
    double ref[TB];
    for (int b = 0; b < TB; b++) ref[b] = ra[b];
    EXPECT_CLOSE("merged rewards", rm, ref, TB, 0, 1e-5);
    fixture_free(&f);
}

TEST(test_lora_adapter_files_round_trip_bitwise_in_peft_names) {
    char dir[128], base[160], ad[160];
    snprintf(dir, sizeof dir, "/tmp/mmrm_test_lora_%d", (int)getpid());
    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(ad, sizeof ad, "%s/adapter", dir);
    Fixture f;
    LoraConfig lc = lora_cfg(2, 5.0, 0.05, "q_proj,v_proj,fc1,mlp1.3");
    fixture_init(&f, test_tiny_config(LLM_QWEN2), &lc, 1);
    float ra[TB], rb[TB];
    rewards(&f, ra);
    CHECK(rm_save(&f.m, base, "F32") == 0 && lora_save(&f.m, ad, base) == 0, "save: %s", mmrm_last_error());
    char p[256];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", ad);
    SafeTensors *st = st_open(p);
    if (CHECK(st != NULL, "%s", mmrm_last_error())) {
        CHECK(st_count(st) == 2 * lora_count(&f.m) + 1, "%d tensors", st_count(st));
        CHECK(st_find(st, "base_model.model.language_model.model.layers.1.self_attn.q_proj.lora_A.weight") &&
                  st_find(st, "base_model.model.mlp1.3.lora_B.weight") &&
                  st_find(st, "base_model.model.vision_model.encoder.layers.0.mlp.fc1.lora_A.weight") &&
                  st_find(st, "base_model.model.score.weight"),
              "PEFT's names are missing");
        st_close(st);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", base);
    st = st_open(p);
    if (CHECK(st != NULL, "%s", mmrm_last_error())) {
        for (int i = 0; i < st_count(st); i++)
            CHECK(!strstr(st_get(st, i)->name, "lora_"), "the base file holds %s", st_get(st, i)->name);
        st_close(st);
    }
    RewardModel m2;
    if (CHECK(rm_load_ex(&m2, base, DEV_CPU, NULL, 1, 0, -1, NULL, ad, NULL) == 0, "load: %s", mmrm_last_error())) {
        CHECK(m2.lora.r == 2 && m2.lora.alpha == 5.0 && m2.lora.dropout == 0.05 && m2.lora.n_targets == 4,
              "adapter_config.json did not round-trip");
        RewardModel keep = f.m;
        f.m = m2;
        rewards(&f, rb);
        f.m = keep;
        EXPECT_SAME("rewards after reload", ra, rb, TB);
        rm_free(&m2);
    }
    fixture_free(&f);
    fs_remove_tree(dir);
}

TEST(test_lora_target_names_are_checked_per_model_family) {
    ModelConfig q = test_tiny_config(LLM_QWEN2), i = test_tiny_config(LLM_INTERNLM2);
    LoraConfig lq = lora_cfg(4, 8, 0, "q_proj,fc1"), li = lora_cfg(4, 8, 0, "wqkv,w2");
    CHECK(lora_check(&lq, &q, "t") == 0, "%s", mmrm_last_error());
    CHECK(lora_check(&li, &i, "t") == 0, "%s", mmrm_last_error());
    CHECK(lora_check(&lq, &i, "t") != 0 && strstr(mmrm_last_error(), "lora_target_modules") &&
              strstr(mmrm_last_error(), "\"q_proj\""),
          "q_proj on InternLM2: %s", mmrm_last_error());
    CHECK(lora_known_target("gate_proj") && lora_known_target("mlp1.1") && !lora_known_target("mlp1.0") &&
              !lora_known_target("embed_tokens") && !lora_known_target("score"),
          "known target names");
    LoraConfig bad = lora_cfg(0, 8, 0, "q_proj");
    CHECK(lora_check(&bad, &q, "t") != 0 && strstr(mmrm_last_error(), "lora_r"), "r = 0 accepted");
    bad = lora_cfg(4, 8, 1.0, "q_proj");
    CHECK(lora_check(&bad, &q, "t") != 0 && strstr(mmrm_last_error(), "lora_dropout"), "dropout 1 accepted");
}

/* ---- peft (tests/oracle/lora_peft_oracle.py, tests/fixtures/lora/peft_qwen2) ---- */

#define PEFT_FIXTURE "tests/fixtures/lora/peft_qwen2"

static void *fixture_tensor(SafeTensors *st, const char *name, int i32, size_t *n) {
    const StEntry *e = st_find(st, name);
    if (!CHECK(e != NULL, "fixture lacks %s", name)) return NULL;
    void *v = xmalloc(e->numel * 4);
    int rc = i32 ? st_read_i32(st, e, v, e->numel) : st_read_f32(st, e, v, e->numel);
    if (!CHECK(rc == 0, "%s", mmrm_last_error())) { free(v); return NULL; }
    *n = e->numel;
    return v;
}

static double rel_err(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        den += (double)want[i] * want[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

/* rewards of the fixture's token ids, text only */
static void text_rewards(RewardModel *m, const int *ids, const int *lengths, int B, int T, float *out) {
    int *image_of = xmalloc(B * sizeof(int));
    for (int b = 0; b < B; b++) image_of[b] = -1;
    RmBatch bt = {B, T, ids, lengths, 0, NULL, NULL, image_of, NULL};
    Graph g;
    graph_init(&g, DEV_CPU, 1 << 20, 0);
    graph_set_grad(&g, 0);
    memcpy(out, tensor_f32(rm_forward(m, &g, &bt)), B * sizeof(float));
    graph_free(&g);
    free(image_of);
}

/* both ways: mmrm reproduces peft's rewards with peft's adapter, and the adapter mmrm writes
 * back holds peft's tensors under peft's names (what PeftModel.from_pretrained reads; the
 * oracle's --check runs peft on it) and loads to the same rewards */
TEST(test_lora_peft_written_adapter_gives_peft_rewards_and_mmrm_writes_it_back_alike) {
    RewardModel m;
    LoadReport rep;
    if (!CHECK(rm_load_ex(&m, "tests/fixtures/hf_decoder/qwen2_1b", DEV_CPU, NULL, 1, 0, -1, NULL,
                          PEFT_FIXTURE, &rep) == 0, "load: %s", mmrm_last_error()))
        return;
    CHECK(m.lora.r == 4 && m.lora.alpha == 8 && lora_count(&m) == 7 * m.cfg.llm.layers,
          "r %d alpha %g, %d adapters", m.lora.r, m.lora.alpha, lora_count(&m));
    SafeTensors *st = st_open(PEFT_FIXTURE "/expected.safetensors");
    if (!CHECK(st != NULL, "%s", mmrm_last_error())) { rm_free(&m); return; }
    size_t n_ids, n_len, n_r;
    int *ids = fixture_tensor(st, "input_ids", 1, &n_ids), *lengths = fixture_tensor(st, "lengths", 1, &n_len);
    float *want = fixture_tensor(st, "rewards", 0, &n_r);
    st_close(st);
    int B = (int)n_len, T = B ? (int)(n_ids / n_len) : 0;
    if (ids && lengths && want && CHECK(n_r == (size_t)B, "fixture shapes")) {
        float *got = tmalloc(B), *again = tmalloc(B);
        text_rewards(&m, ids, lengths, B, T, got);
        double e = rel_err(got, want, B);
        printf("    peft adapter: rewards rel. error %.2e\n", e);
        CHECK(e <= 1e-5, "rewards relative error %.3g > 1e-5", e);

        char dir[128];
        const char *keep = getenv("MMRM_LORA_SAVE_TO");
        snprintf(dir, sizeof dir, "%s", keep ? keep : "");
        if (!keep) snprintf(dir, sizeof dir, "/tmp/mmrm_test_lora_peft_%d", (int)getpid());
        if (CHECK(lora_save(&m, dir, "tests/fixtures/hf_decoder/qwen2_1b") == 0, "%s", mmrm_last_error())) {
            char p[256];
            snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
            SafeTensors *a = st_open(PEFT_FIXTURE "/adapter_model.safetensors"), *b = st_open(p);
            if (CHECK(a && b, "%s", mmrm_last_error())) {
                CHECK(st_count(a) == st_count(b), "%d vs %d tensors", st_count(a), st_count(b));
                for (int i = 0; i < st_count(a) && i < st_count(b); i++) {
                    const StEntry *ea = st_get(a, i), *eb = st_get(b, i);
                    CHECK(!strcmp(ea->name, eb->name) && ea->ndim == eb->ndim && ea->numel == eb->numel &&
                              ea->dtype == eb->dtype && !memcmp(ea->data, eb->data, ea->nbytes),
                          "%s differs from peft's %s", eb->name, ea->name);
                }
            }
            if (a) st_close(a);
            if (b) st_close(b);
            LoraConfig lc;
            CHECK(lora_read_config(dir, &lc) == 0 && lc.r == 4 && lc.alpha == 8 && lc.n_targets == 7,
                  "mmrm's adapter_config.json: %s", mmrm_last_error());
            RewardModel m2;
            if (CHECK(rm_load_ex(&m2, "tests/fixtures/hf_decoder/qwen2_1b", DEV_CPU, NULL, 1, 0, -1, NULL,
                                 dir, NULL) == 0, "%s", mmrm_last_error())) {
                text_rewards(&m2, ids, lengths, B, T, again);
                EXPECT_SAME("rewards through mmrm's adapter files", got, again, B);
                rm_free(&m2);
            }
            if (!keep) fs_remove_tree(dir);
        }
        free(got);
        free(again);
    }
    free(ids);
    free(lengths);
    free(want);
    rm_free(&m);
}

/* peft on the bare LLM (Qwen2ForSequenceClassification names its decoder model.*): the
 * fixture's tensors renamed so, with the same rewards */
TEST(test_lora_adapter_of_the_language_model_alone_loads_with_the_same_rewards) {
    char dir[128], path[200];
    snprintf(dir, sizeof dir, "/tmp/mmrm_test_lora_llm_%d", (int)getpid());
    CHECK(fs_mkdir_p(dir) == 0, "%s", mmrm_last_error());
    SafeTensors *st = st_open(PEFT_FIXTURE "/adapter_model.safetensors");
    if (!CHECK(st != NULL, "%s", mmrm_last_error())) return;
    int n = st_count(st);
    StTensorOut *t = xcalloc(n, sizeof *t);
    char (*names)[160] = xcalloc(n, sizeof *names);
    float **data = xcalloc(n, sizeof *data);
    for (int i = 0; i < n; i++) {
        const StEntry *e = st_get(st, i);
        const char *from = "base_model.model.language_model.";
        snprintf(names[i], sizeof names[i], "base_model.model.%s",
                 strncmp(e->name, from, strlen(from)) ? e->name + strlen("base_model.model.") : e->name + strlen(from));
        data[i] = xmalloc(e->numel * sizeof(float));
        st_read_f32(st, e, data[i], e->numel);
        t[i] = (StTensorOut){.name = names[i], .src = DT_F32, .dtype = ST_F32, .ndim = e->ndim, .data = data[i]};
        for (int k = 0; k < e->ndim; k++) t[i].shape[k] = e->shape[k];
    }
    st_close(st);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    CHECK(st_save(path, t, n, NULL, 0) == 0, "%s", mmrm_last_error());
    CHECK(!strcmp(names[0], "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"), "renamed %s", names[0]);
    size_t len;
    char *cfg = fs_read_file(PEFT_FIXTURE "/adapter_config.json", &len);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    CHECK(cfg && fs_write_atomic(path, cfg, len) == 0, "%s", mmrm_last_error());
    free(cfg);
    RewardModel a, b;
    int ok = CHECK(rm_load_ex(&a, "tests/fixtures/hf_decoder/qwen2_1b", DEV_CPU, NULL, 1, 0, -1, NULL, PEFT_FIXTURE, NULL) == 0,
                   "%s", mmrm_last_error());
    ok &= CHECK(rm_load_ex(&b, "tests/fixtures/hf_decoder/qwen2_1b", DEV_CPU, NULL, 1, 0, -1, NULL, dir, NULL) == 0,
                "%s", mmrm_last_error());
    if (ok) {
        EXPECT_SAME("parameters", a.ps.data, b.ps.data, a.ps.numel);
        rm_free(&a);
        rm_free(&b);
    }
    for (int i = 0; i < n; i++) free(data[i]);
    free(data);
    free(names);
    free(t);
    fs_remove_tree(dir);
}

/* what mmrm does not implement is refused with the file and field named, not misread */
TEST(test_lora_adapter_configs_it_cannot_honour_are_refused_naming_the_field) {
    char dir[128], path[200];
    snprintf(dir, sizeof dir, "/tmp/mmrm_test_lora_cfg_%d", (int)getpid());
    CHECK(fs_mkdir_p(dir) == 0, "%s", mmrm_last_error());
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    static const char *const cases[][2] = {
        {"\"bias\": \"all\"", "\"bias\""},
        {"\"use_dora\": true", "use_dora"},
        {"\"layers_to_transform\": [0]", "layers_to_transform"},
        {"\"rank_pattern\": {\"q_proj\": 8}", "rank_pattern"},
        {"\"peft_type\": \"IA3\"", "peft_type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        int n = snprintf(text, sizeof text, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, "
                         "\"target_modules\": [\"q_proj\"], %s}", cases[i][0]);
        /* a later duplicate key would be ignored by cJSON: put the case first for peft_type */
        if (!strncmp(cases[i][0], "\"peft_type\"", 11))
            n = snprintf(text, sizeof text, "{%s, \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"]}", cases[i][0]);
        CHECK(fs_write_atomic(path, text, (size_t)n) == 0, "%s", mmrm_last_error());
        LoraConfig lc;
        CHECK(lora_read_config(dir, &lc) != 0 && strstr(mmrm_last_error(), "adapter_config.json") &&
                  strstr(mmrm_last_error(), cases[i][1]),
              "%s: %s", cases[i][0], mmrm_last_error());
    }
    const char *regex = "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": \".*proj\"}";
    CHECK(fs_write_atomic(path, regex, strlen(regex)) == 0, "%s", mmrm_last_error());
    LoraConfig lc;
    CHECK(lora_read_config(dir, &lc) != 0 && strstr(mmrm_last_error(), "target_modules"), "regex: %s", mmrm_last_error());
    fs_remove_tree(dir);
}
