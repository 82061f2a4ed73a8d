/* test_bf16_storage.c - activations stored in bf16 (graph_set_act_dtype, runtime/ops.c).
 *
 * - the conversion kernels: round to nearest even by definition (the two neighbouring bf16
 *   values are enumerated, ties go to the even mantissa), NaN and infinities, exact widening;
 * - every op, one at a time: with bf16 inputs, a bf16-storage graph must produce exactly
 *   bf16(the fp32 op over the same values) and, in backward, exactly the fp32 gradients (the
 *   kernels see the same fp32 operands); attention's backward also reads its rounded output,
 *   so its gradients are held to 1e-2 instead;
 * - the whole reward model: rewards and gradients within 5e-2 of fp32 storage (rounding after
 *   every op compounds over the layers), and the
 *   activation arena of a forward less than 0.6x the fp32 one.
 * The CUDA conversions are compared with these on the emulator (tests/gpu/parity_matmul.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "models/reward_model.h"
#include "runtime/error.h"
#include "runtime/ops.h"
#include "tests/harness.h"

TEST(test_bf16_conversion_rounds_to_nearest_even_and_widens_exactly) {
    TRng r = trng(41);
    enum { N = 4099 };
    float *x = tmalloc(N), *back = tmalloc(N);
    uint16_t *b = calloc(N, sizeof *b);
    fill_normal(&r, x, N, 3.0f);
    /* exact ties and specials at the front */
    float ties[] = {1.0f + 1.0f / 256, 1.0f + 3.0f / 256, -(1.0f + 1.0f / 256), INFINITY, -INFINITY,
                    NAN, 0.0f, -0.0f, 3.4e38f /* rounds up to inf */, 1e-40f /* subnormal */};
    memcpy(x, ties, sizeof ties);
    kernels_cpu.f32_to_bf16(b, x, N);
    kernels_cpu.bf16_to_f32(back, b, N);
    int bad = 0;
    for (int i = 0; i < N && bad < 5; i++) {
        if (isnan(x[i])) {
            bad += !CHECK(isnan(back[i]), "NaN at %d became %g", i, back[i]);
            continue;
        }
        /* the two bf16 neighbours of x: truncation and the next value away from zero */
        uint32_t u;
        memcpy(&u, &x[i], 4);
        uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
        /* past the largest finite bf16 the next value is 2^128 as far as rounding goes */
        double vhi = (hi & 0x7fff) == 0x7f80 ? copysign(ldexp(1.0, 128), x[i]) : f32_from_bf16(hi);
        double dl = fabs((double)x[i] - f32_from_bf16(lo)), dh = fabs((double)x[i] - vhi);
        uint16_t want = (u & 0xffff) == 0 ? lo : dl < dh ? lo : dh < dl ? hi : (lo & 1 ? hi : lo);
        bad += !CHECK(b[i] == want, "x[%d] = %.9g -> 0x%04x, nearest-even is 0x%04x", i, x[i],
                      b[i], want);
        bad += !CHECK(back[i] == f32_from_bf16(b[i]), "widening of 0x%04x at %d", b[i], i);
    }
    CHECK(b[0] == 0x3f80 && b[1] == 0x3f82, "ties: 1+1/256 -> 0x%04x (want 0x3f80), 1+3/256 -> "
          "0x%04x (want 0x3f82)", b[0], b[1]);
    CHECK(b[3] == 0x7f80 && b[4] == 0xff80 && b[8] == 0x7f80, "infinities");
    free(x);
    free(back);
    free(b);
}

/* ------------------------------------------------------------------ op by op */

enum { MAXIN = 4 };

typedef struct {
    int n;
    int ndim[MAXIN], shape[MAXIN][4];
    int param[MAXIN]; /* an fp32 parameter-like input (never stored as bf16) */
} Spec;

typedef Tensor *(*OpFn)(Graph *g, Tensor **in, void *ctx);

static Tensor *make_input(Graph *g, const Spec *s, int i, const float *vals) {
    Tensor *t;
    if (s->param[i] || g->act_dtype == DT_F32) {
        t = graph_tensor(g, "in", s->ndim[i], s->shape[i]);
        memcpy(t->data, vals, t->numel * sizeof(float));
    } else {
        t = graph_activation(g, "in", s->ndim[i], s->shape[i]);
        kernels_cpu.f32_to_bf16(t->data, vals, t->numel);
    }
    t->requires_grad = 1;
    return t;
}

/* runs op on an fp32-storage and a bf16-storage graph over the same (bf16-representable)
 * activation values and compares outputs and input gradients */
static void check_op(const char *name, const Spec *s, OpFn fn, void *ctx, double grad_tol) {
    TRng r = trng(1000 + (uint64_t)strlen(name) * 7 + (uint64_t)name[0]);
    float *vals[MAXIN];
    for (int i = 0; i < s->n; i++) {
        size_t n = 1;
        for (int d = 0; d < s->ndim[i]; d++) n *= (size_t)s->shape[i][d];
        vals[i] = tmalloc(n);
        fill_normal(&r, vals[i], n, 1.0f);
        /* representable in bf16, so both graphs see the same numbers (parameters too: an op
         * made of two, patch_embed = im2col + linear, rounds the pixels in between) */
        uint16_t *b = calloc(n, sizeof *b);
        kernels_cpu.f32_to_bf16(b, vals[i], n);
        kernels_cpu.bf16_to_f32(vals[i], b, n);
        free(b);
    }
    Graph g32, g16;
    graph_init(&g32, DEV_CPU, 1 << 20, 5);
    graph_init(&g16, DEV_CPU, 1 << 20, 5);
    graph_set_act_dtype(&g16, DT_BF16);
    Tensor *in32[MAXIN], *in16[MAXIN];
    for (int i = 0; i < s->n; i++) {
        in32[i] = make_input(&g32, s, i, vals[i]);
        in16[i] = make_input(&g16, s, i, vals[i]);
    }
    Tensor *y32 = fn(&g32, in32, ctx), *y16 = fn(&g16, in16, ctx);
    char what[120];
    CHECK(y32->dtype == DT_F32 && y16->dtype == DT_BF16, "%s: output dtypes %s / %s", name,
          dtype_name(y32->dtype), dtype_name(y16->dtype));
    CHECK(g16.stage.used == 0, "%s: %zu bytes left in the staging arena", name, g16.stage.used);
    size_t n = y32->numel;
    float *want = tmalloc(n), *got = tmalloc(n);
    uint16_t *b = calloc(n, sizeof *b);
    kernels_cpu.f32_to_bf16(b, y32->data, n);
    kernels_cpu.bf16_to_f32(want, b, n);
    memcpy(got, graph_host(&g16, y16), n * sizeof(float));
    snprintf(what, sizeof what, "%s forward = bf16(fp32 op)", name);
    expect_same(what, got, want, n, __FILE__, __LINE__);

    float *dout = tmalloc(n);
    fill_normal(&r, dout, n, 1.0f);
    graph_backward_from(&g32, y32, dout);
    graph_backward_from(&g16, y16, dout);
    for (int i = 0; i < s->n; i++) {
        size_t m = in32[i]->numel;
        snprintf(what, sizeof what, "%s d(input %d)", name, i);
        if (grad_tol == 0) {
            expect_same(what, in16[i]->grad, in32[i]->grad, m, __FILE__, __LINE__);
        } else {
            double *ref = calloc(m, sizeof *ref), num = 0, den = 0;
            for (size_t k = 0; k < m; k++) {
                ref[k] = in32[i]->grad[k];
                num += ((double)in16[i]->grad[k] - ref[k]) * ((double)in16[i]->grad[k] - ref[k]);
                den += ref[k] * ref[k];
            }
            CHECK(sqrt(num) <= grad_tol * sqrt(den) + 1e-12, "%s: relative error %.3g > %.0e",
                  what, sqrt(num / (den + 1e-30)), grad_tol);
            free(ref);
        }
    }
    CHECK(g16.stage.used == 0, "%s: staging not emptied after backward", name);
    graph_free(&g32);
    graph_free(&g16);
    for (int i = 0; i < s->n; i++) free(vals[i]);
    free(want);
    free(got);
    free(b);
    free(dout);
}

static Tensor *f_linear(Graph *g, Tensor **in, void *c) { (void)c; return op_linear(g, in[0], in[1], in[2]); }
static Tensor *f_layernorm(Graph *g, Tensor **in, void *c) { (void)c; return op_layernorm(g, in[0], in[1], in[2], 1e-6f); }
static Tensor *f_rmsnorm(Graph *g, Tensor **in, void *c) { (void)c; return op_rmsnorm(g, in[0], in[1], 1e-6f); }
static Tensor *f_gelu(Graph *g, Tensor **in, void *c) { (void)c; return op_gelu(g, in[0]); }
static Tensor *f_swiglu(Graph *g, Tensor **in, void *c) { (void)c; return op_swiglu(g, in[0], in[1]); }
static Tensor *f_add(Graph *g, Tensor **in, void *c) { (void)c; return op_add(g, in[0], in[1]); }
static Tensor *f_scale(Graph *g, Tensor **in, void *c) { (void)c; return op_channel_scale(g, in[0], in[1]); }
static Tensor *f_shuffle(Graph *g, Tensor **in, void *c) { (void)c; return op_pixel_shuffle(g, in[0]); }
static Tensor *f_concat(Graph *g, Tensor **in, void *c) { (void)c; return op_concat_rows(g, in[0], in[1]); }
static Tensor *f_patch(Graph *g, Tensor **in, void *c) { (void)c; return op_patch_embed(g, in[0], in[1], in[2]); }
static Tensor *f_gather(Graph *g, Tensor **in, void *c) { return op_gather_rows(g, in[0], c, 9); }
static Tensor *f_embedding(Graph *g, Tensor **in, void *c) { return op_embedding(g, in[0], c, 2, 5); }
static Tensor *f_rope(Graph *g, Tensor **in, void *c) { return op_rope(g, in[0], c, 10000.0f); }
static Tensor *f_attention(Graph *g, Tensor **in, void *c) {
    return op_attention(g, in[0], in[1], in[2], c, NULL, 1);
}
static Tensor *f_drop(Graph *g, Tensor **in, void *c) {
    (void)c;
    g->training = 1;
    return op_drop_path(g, in[0], 0.5f);
}

TEST(test_every_op_with_bf16_storage_equals_the_rounded_fp32_op_and_its_gradients) {
    Spec lin = {3, {2, 2, 1}, {{7, 13}, {5, 13}, {5}}, {0, 1, 1}};
    check_op("linear", &lin, f_linear, NULL, 0);
    Spec ln = {3, {2, 1, 1}, {{6, 37}, {37}, {37}}, {0, 1, 1}};
    check_op("layernorm", &ln, f_layernorm, NULL, 0);
    Spec rms = {2, {2, 1}, {{6, 37}, {37}}, {0, 1}};
    check_op("rmsnorm", &rms, f_rmsnorm, NULL, 0);
    Spec one = {1, {2}, {{5, 33}}, {0}};
    check_op("gelu", &one, f_gelu, NULL, 0);
    Spec two = {2, {2, 2}, {{5, 33}, {5, 33}}, {0, 0}};
    check_op("swiglu", &two, f_swiglu, NULL, 0);
    check_op("add", &two, f_add, NULL, 0);
    Spec mixed = {2, {2, 2}, {{5, 33}, {5, 33}}, {0, 1}}; /* activation + fp32 parameter */
    check_op("add (bf16 + f32)", &mixed, f_add, NULL, 0);
    Spec sc = {2, {2, 1}, {{5, 33}, {33}}, {0, 1}};
    check_op("channel_scale", &sc, f_scale, NULL, 0);
    Spec ps = {1, {3}, {{2, 16, 5}}, {0}};
    check_op("pixel_shuffle", &ps, f_shuffle, NULL, 0);
    Spec cat = {2, {2, 2}, {{4, 6}, {3, 6}}, {0, 1}};
    check_op("concat_rows (bf16 + f32)", &cat, f_concat, NULL, 0);
    Spec pe = {3, {4, 4, 1}, {{2, 3, 8, 8}, {6, 3, 2, 2}, {6}}, {1, 1, 1}}; /* f32 pixels */
    check_op("patch_embed", &pe, f_patch, NULL, 0);
    int idx[9] = {0, 3, 3, 5, 1, 0, 4, 2, 5};
    Spec ga = {1, {2}, {{6, 7}}, {0}};
    check_op("gather_rows", &ga, f_gather, idx, 0);
    int ids[10] = {1, 4, 2, 0, 5, 5, 3, 1, 2, 4};
    Spec emb = {1, {2}, {{6, 7}}, {1}};
    check_op("embedding", &emb, f_embedding, ids, 0);
    int pos[10] = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4};
    Spec ro = {1, {4}, {{2, 5, 3, 8}}, {0}};
    check_op("rope", &ro, f_rope, pos, 0);
    Spec dp = {1, {3}, {{4, 3, 5}}, {0}};
    check_op("drop_path", &dp, f_drop, NULL, 0);
    int lengths[2] = {7, 4};
    Spec at = {3, {4, 4, 4}, {{2, 7, 4, 8}, {2, 7, 2, 8}, {2, 7, 2, 8}}, {0, 0, 0}};
    check_op("attention", &at, f_attention, lengths, 1e-2);
}

/* ------------------------------------------------------------------ the whole model */

enum { MB = 4 };

TEST(test_reward_model_with_bf16_activations_tracks_fp32_and_halves_activation_memory) {
    ModelConfig cfg;
    if (!CHECK(config_load("configs/model/tiny.json", &cfg) == 0, "%s", mmrm_last_error())) return;
    RewardModel m;
    int freeze[PG_COUNT] = {0};
    rm_create(&m, &cfg, DEV_CPU, freeze);
    TRng r = trng(808);
    for (int i = 0; i < m.ps.n; i++) {
        Tensor *t = params_get(&m.ps, i);
        int is_norm = strstr(t->name, "norm") || !strncmp(t->name, "mlp1.0.", 7);
        for (size_t k = 0; k < t->numel; k++)
            tensor_f32(t)[k] = is_norm ? 1.0f + 0.1f * trng_normal(&r) : 0.1f * trng_normal(&r);
    }
    int tpt = config_tokens_per_tile(&cfg), S = cfg.image_size, T = 2 + 2 * tpt + 1 + 20;
    int *ids = calloc((size_t)MB * T, sizeof *ids), lengths[MB], tiles[2] = {1, 2}, image_of[MB];
    float *pixels = tmalloc((size_t)3 * 3 * S * S);
    fill_uniform(&r, pixels, (size_t)3 * 3 * S * S, -2.0f, 2.0f);
    for (int s = 0; s < MB; s++) {
        int nimg = tiles[s / 2] * tpt, t = 0, len = T - 3 * s;
        image_of[s] = s / 2;
        lengths[s] = len;
        ids[s * T + t++] = 258;
        ids[s * T + t++] = 260;
        for (int k = 0; k < nimg; k++) ids[s * T + t++] = cfg.img_context_id;
        ids[s * T + t++] = 261;
        while (t < len - 1) ids[s * T + t++] = (int)(trng_uniform(&r) * 256);
        ids[s * T + t++] = 259;
    }
    RmBatch bt = {MB, T, ids, lengths, 2, tiles, pixels, image_of, NULL};

    float rew[2][MB], *grads[2];
    size_t peak_fwd[2];
    float w[MB] = {1, -2, 3, -4};
    for (int k = 0; k < 2; k++) {
        Graph g;
        graph_init(&g, DEV_CPU, 1 << 16, 3);
        if (k) graph_set_act_dtype(&g, DT_BF16);
        graph_set_grad(&g, 0);
        Tensor *rt = rm_forward(&m, &g, &bt);
        CHECK(rt->dtype == DT_F32, "rewards must be f32 (got %s)", dtype_name(rt->dtype));
        memcpy(rew[k], graph_host(&g, rt), sizeof rew[k]);
        peak_fwd[k] = g.act.used + g.act.overflow_used;
        graph_reset(&g);
        graph_set_grad(&g, 1);
        params_zero_grad(&m.ps);
        graph_backward_from(&g, rm_forward(&m, &g, &bt), w);
        grads[k] = tmalloc(m.ps.n_trainable);
        memcpy(grads[k], m.ps.grad, m.ps.n_trainable * sizeof(float));
        graph_free(&g);
    }
    double num = 0, den = 0;
    for (int b = 0; b < MB; b++) {
        num += ((double)rew[1][b] - rew[0][b]) * ((double)rew[1][b] - rew[0][b]);
        den += (double)rew[0][b] * rew[0][b];
    }
    CHECK(sqrt(num) <= 5e-2 * sqrt(den), "rewards: bf16 storage differs by %.3g (relative)",
          sqrt(num / den));
    CHECK(num > 0, "bf16 storage gave bitwise the fp32 rewards: is it active?");
    double rel_rewards = sqrt(num / den);
    num = den = 0;
    for (size_t i = 0; i < m.ps.n_trainable; i++) {
        num += ((double)grads[1][i] - grads[0][i]) * ((double)grads[1][i] - grads[0][i]);
        den += (double)grads[0][i] * grads[0][i];
    }
    CHECK(sqrt(num) <= 5e-2 * sqrt(den), "gradients: bf16 storage differs by %.3g (relative)",
          sqrt(num / den));
    printf("    forward activation arena: fp32 %zu bytes, bf16 %zu bytes (%.2fx); relative error: "
           "rewards %.2g, gradients %.2g\n", peak_fwd[0], peak_fwd[1],
           (double)peak_fwd[1] / peak_fwd[0], rel_rewards, sqrt(num / den));
    CHECK(peak_fwd[1] < 0.6 * peak_fwd[0], "bf16 activations: arena %zu bytes vs fp32 %zu",
          peak_fwd[1], peak_fwd[0]);
    free(grads[0]);
    free(grads[1]);
    free(ids);
    free(pixels);
    rm_free(&m);
}
