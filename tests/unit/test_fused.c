/* test_fused.c - the decoder's fused GEMMs (models/reward_model.c fused_linear): q/k/v as one
 * GEMM over the adjacent q_proj/k_proj/v_proj rows and gate/up as one GEMM read by
 * swiglu_fused give the rewards and every parameter gradient of the unfused model
 * (RewardModel.unfused) within 1e-6 relative to the largest value, for Qwen2 (biases),
 * Llama and InternLM2, with frozen groups and with LoRA adapters on some of the fused
 * modules (those layers stay unfused); the fused weight is a view whose rows are the HF
 * tensors; swiglu_fused equals swiglu on the two halves; a frozen embedding has no backward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "models/lora.h"
#include "models/reward_model.h"
#include "runtime/ops.h"
#include "tests/harness.h"
#include "tests/unit/tiny_model.h"

enum { B = 4, T = 14 };

/* rows 0-1 show image 0 (one tile), rows 2-3 are text-only; random tokens, lengths 14, 11,
 * 9, 14 */
typedef struct {
    int ids[B * T], lengths[B], tiles[1], image_of[B];
    float *pixels;
} Data;

static void make_data(Data *d, const ModelConfig *cfg, uint64_t seed) {
    TRng r = trng(seed);
    int tpt = config_tokens_per_tile(cfg), S = cfg->image_size, len[B] = {14, 11, 9, 14};
    d->tiles[0] = 1;
    for (int b = 0; b < B; b++) {
        d->image_of[b] = b < 2 ? 0 : -1;
        d->lengths[b] = len[b];
        for (int t = 0; t < T; t++) {
            int id = (int)(trng_uniform(&r) * 256);
            if (b < 2 && t >= 1 && t < 1 + tpt) id = cfg->img_context_id;
            d->ids[b * T + t] = t < len[b] ? id : 269;
        }
    }
    d->pixels = tmalloc((size_t)3 * S * S);
    fill_normal(&r, d->pixels, (size_t)3 * S * S, 1.0f);
}

/* rewards (B) and the gradient of sum_b w_b r_b over the trainable parameters; returns the
 * GEMMs (linear ops) the forward recorded */
static int run(RewardModel *m, const Data *d, int unfused, float *rw, float *grad) {
    Graph g;
    graph_init(&g, DEV_CPU, 1 << 20, 5);
    m->unfused = unfused;
    RmBatch bt = {B, T, d->ids, d->lengths, 1, d->tiles, d->pixels, d->image_of, NULL};
    params_zero_grad(&m->ps);
    Tensor *r = rm_forward(m, &g, &bt);
    int gemms = 0;
    for (int i = 0; i < g.ntape; i++) gemms += !strcmp(g.tape[i].op, "linear");
    float w[B] = {1.0f, -0.7f, 0.4f, -1.3f};
    memcpy(rw, graph_host(&g, r), B * sizeof(float));
    graph_backward_from(&g, r, w);
    memcpy(grad, m->ps.grad, m->ps.n_trainable * sizeof(float));
    graph_free(&g);
    m->unfused = 0;
    return gemms;
}

static double *to_double(const float *x, size_t n, double *maxabs) {
    double *y = malloc((n ? n : 1) * sizeof(double));
    if (!y) abort();
    *maxabs = 0;
    for (size_t i = 0; i < n; i++) y[i] = x[i], *maxabs = fmax(*maxabs, fabs(x[i]));
    return y;
}

/* saved: the GEMMs per decoder layer that fusion saves (all layers fused) */
static void check_fused(LlmArch arch, int freeze_llm, const char *lora_targets, int saved,
                        uint64_t seed) {
    ModelConfig cfg = test_tiny_config(arch);
    RewardModel m;
    int freeze[PG_COUNT] = {0};
    freeze[PG_LLM] = freeze_llm;
    LoraConfig lc = {.r = lora_targets ? 2 : 0, .alpha = 4.0};
    for (const char *p = lora_targets; p && *p;) {
        size_t k = strcspn(p, ",");
        snprintf(lc.targets[lc.n_targets++], LORA_NAME_LEN, "%.*s", (int)k, p);
        p += k + (p[k] == ',');
    }
    rm_create_lora(&m, &cfg, DEV_CPU, freeze, &lc);
    rm_init_random(&m, seed);
    TRng r = trng(seed + 1); /* large random weights (adapters' B included), so errors show */
    for (int i = 0; i < m.ps.n; i++) {
        Tensor *t = params_get(&m.ps, i);
        if (!strstr(t->name, "norm")) fill_normal(&r, tensor_f32(t), t->numel, 0.2f);
    }
    Data d;
    make_data(&d, &cfg, seed + 2);
    size_t n = m.ps.n_trainable;
    float ref_r[B], got_r[B], *ref_g = tmalloc(n), *got_g = tmalloc(n);
    int g_unfused = run(&m, &d, 1, ref_r, ref_g), g_fused = run(&m, &d, 0, got_r, got_g);
    if (saved >= 0)
        CHECK(g_unfused - g_fused == saved * cfg.llm.layers,
              "arch %d: %d GEMMs unfused, %d fused (want %d fewer per layer)", arch, g_unfused,
              g_fused, saved);
    double rmax, gmax, *rr = to_double(ref_r, B, &rmax), *rg = to_double(ref_g, n, &gmax);
    CHECK(gmax > 0, "no gradient at all");
    CHECK(EXPECT_CLOSE("rewards", got_r, rr, B, 1e-6, 1e-6 * rmax) &
              EXPECT_CLOSE("gradients", got_g, rg, n, 1e-6, 1e-6 * gmax),
          "arch %d freeze_llm %d lora %s", arch, freeze_llm, lora_targets ? lora_targets : "none");
    free(rr); free(rg); free(ref_g); free(got_g); free(d.pixels);
    rm_free(&m);
}

TEST(test_fused_qkv_and_gate_up_give_the_unfused_rewards_and_gradients) {
    /* per decoder layer: q, k, v, o, gate, up, down -> qkv, o, gate_up, down; InternLM2's
     * wqkv is one GEMM already: wqkv, wo, w1, w3, w2 -> wqkv, wo, w1_w3, w2 */
    check_fused(LLM_QWEN2, 0, NULL, 3, 2000);
    check_fused(LLM_LLAMA, 0, NULL, 3, 2010);
    check_fused(LLM_INTERNLM2, 0, NULL, 1, 2020);
    check_fused(LLM_QWEN2, 1, NULL, -1, 2030); /* frozen decoder: only the head and the ViT learn */
}

TEST(test_fused_gemms_with_lora_adapters_give_the_unfused_rewards_and_gradients) {
    check_fused(LLM_QWEN2, 1, "q_proj,up_proj", -1, 2100); /* adapted layers stay unfused */
    check_fused(LLM_QWEN2, 0, "o_proj,down_proj", -1, 2110); /* all fused, adapters elsewhere */
    check_fused(LLM_INTERNLM2, 1, "w1,wqkv", -1, 2120);
}

/* the fused weight and bias are views whose row ranges are the HF tensors the checkpoint
 * reads and writes (no copy: data, gradient), and parts that are not adjacent are refused */
TEST(test_fused_weight_rows_are_the_hf_tensors) {
    ModelConfig cfg = test_tiny_config(LLM_QWEN2);
    RewardModel m;
    int freeze[PG_COUNT] = {0};
    rm_create(&m, &cfg, DEV_CPU, freeze);
    rm_init_random(&m, 2200);
    Graph g;
    graph_init(&g, DEV_CPU, 1 << 16, 1);
    LlmLayer *L = &m.llm[1];
    Tensor *w = op_param_rows(&g, (Tensor *[]){L->q_w, L->k_w, L->v_w}, 3, "qkv");
    Tensor *b = op_param_rows(&g, (Tensor *[]){L->q_b, L->k_b, L->v_b}, 3, "qkv.bias");
    Tensor *gu = op_param_rows(&g, (Tensor *[]){L->gate_w, L->up_w}, 2, "gate_up");
    int H = cfg.llm.hidden, qd = cfg.llm.heads * cfg.llm.head_dim, kd = cfg.llm.kv_heads * cfg.llm.head_dim;
    CHECK(w && b && gu, "the store keeps q/k/v and gate/up adjacent");
    if (w && b && gu) {
        CHECK(w->shape[0] == qd + 2 * kd && w->shape[1] == H && b->numel == (size_t)(qd + 2 * kd),
              "qkv view (%d, %d), bias %zu", w->shape[0], w->shape[1], b->numel);
        const float *W = tensor_f32(w);
        EXPECT_SAME("q rows", W, tensor_f32(L->q_w), (size_t)qd * H);
        EXPECT_SAME("k rows", W + (size_t)qd * H, tensor_f32(L->k_w), (size_t)kd * H);
        EXPECT_SAME("v rows", W + (size_t)(qd + kd) * H, tensor_f32(L->v_w), (size_t)kd * H);
        EXPECT_SAME("v bias", tensor_f32(b) + qd + kd, tensor_f32(L->v_b), (size_t)kd);
        CHECK(w->grad == L->q_w->grad && w->grad + (size_t)(qd + kd) * H == L->v_w->grad,
              "the view's gradient rows are the parts' gradients");
        CHECK(gu->shape[0] == 2 * cfg.llm.intermediate &&
                  tensor_f32(gu) + L->gate_w->numel == tensor_f32(L->up_w),
              "gate/up view");
    }
    CHECK(!op_param_rows(&g, (Tensor *[]){L->q_w, L->v_w}, 2, "qv"), "q and v are not adjacent");
    CHECK(!op_param_rows(&g, (Tensor *[]){L->up_w, L->gate_w}, 2, "ug"), "order matters");
    graph_free(&g);
    rm_free(&m);
}

/* swiglu_fused over [gate | up] rows equals swiglu over the halves, forward and backward
 * (accumulating into a prefilled gradient), including gates past the exp range */
TEST(test_swiglu_fused_equals_swiglu_on_the_gate_and_up_halves) {
    enum { N = 7, I = 1100 }; /* I past one chunk of the CPU kernel */
    TRng r = trng(2300);
    float *gu = tmalloc(N * 2 * I), *gate = tmalloc(N * I), *up = tmalloc(N * I);
    float *dout = tmalloc(N * I), *y1 = tmalloc(N * I), *y2 = tmalloc(N * I);
    float *dgu = tmalloc(N * 2 * I), *dg = tmalloc(N * I), *du = tmalloc(N * I);
    fill_normal(&r, gu, N * 2 * I, 3.0f);
    fill_normal(&r, dout, N * I, 1.0f);
    fill_normal(&r, dgu, N * 2 * I, 1.0f);
    gu[5] = 95.0f, gu[6] = -95.0f, gu[I + 7] = -120.0f; /* |g| > 87: libm's expf */
    for (int n = 0; n < N; n++) {
        memcpy(gate + n * I, gu + n * 2 * I, I * sizeof(float));
        memcpy(up + n * I, gu + n * 2 * I + I, I * sizeof(float));
        memcpy(dg + n * I, dgu + n * 2 * I, I * sizeof(float));
        memcpy(du + n * I, dgu + n * 2 * I + I, I * sizeof(float));
    }
    kernels_cpu.swiglu_forward(y1, gate, up, N * I);
    kernels_cpu.swiglu_fused_forward(y2, gu, N, I);
    double *ref = malloc(N * 2 * I * sizeof(double));
    if (!ref) abort();
    for (int i = 0; i < N * I; i++) ref[i] = y1[i];
    EXPECT_CLOSE("forward", y2, ref, N * I, 1e-6, 1e-30);
    kernels_cpu.swiglu_backward(dg, du, dout, gate, up, N * I);
    kernels_cpu.swiglu_fused_backward(dgu, dout, gu, N, I);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < I; i++) {
            ref[n * 2 * I + i] = dg[n * I + i];
            ref[n * 2 * I + I + i] = du[n * I + i];
        }
    EXPECT_CLOSE("backward", dgu, ref, N * 2 * I, 1e-6, 1e-30);
    kernels_cpu.swiglu_fused_backward(NULL, dout, gu, N, I); /* nothing requested: no-op */
    free(ref); free(gu); free(gate); free(up); free(dout); free(y1); free(y2); free(dgu);
    free(dg); free(du);
}

/* a frozen embedding table gets no backward at all: op_embedding records no tape entry (its
 * only input needs no gradient), so neither the CPU's nor the GPU's scatter-add runs */
TEST(test_frozen_embedding_records_no_backward) {
    ModelConfig cfg = test_tiny_config(LLM_QWEN2);
    Data d;
    make_data(&d, &cfg, 2400);
    for (int frozen = 0; frozen < 2; frozen++) {
        RewardModel m;
        int freeze[PG_COUNT] = {0};
        freeze[PG_VISION] = 1;
        freeze[PG_LLM] = frozen;
        rm_create(&m, &cfg, DEV_CPU, freeze);
        rm_init_random(&m, 2401);
        Graph g;
        graph_init(&g, DEV_CPU, 1 << 20, 5);
        RmBatch bt = {B, T, d.ids, d.lengths, 1, d.tiles, d.pixels, d.image_of, NULL};
        rm_forward(&m, &g, &bt);
        int n = 0;
        for (int i = 0; i < g.ntape; i++) n += !strcmp(g.tape[i].op, "embedding");
        CHECK(n == !frozen, "decoder %s: %d embedding backward entries", frozen ? "frozen" : "trained", n);
        CHECK(g.ntape > 0, "the head still records its backward");
        graph_free(&g);
        rm_free(&m);
    }
    free(d.pixels);
}
