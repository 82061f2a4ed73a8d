/* test_autograd.c - the runtime: tape gradients of composite networks against finite
 * differences, recompute segments, frozen parameters, no-grad mode, the arena, the RNG
 * and bf16 conversion. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/autograd.h"
#include "runtime/ops.h"
#include "runtime/rng.h"
#include "tests/harness.h"

/* ---- a tiny two-layer pre-norm decoder: RMSNorm, q/k/v/o with RoPE and causal GQA
 * attention, residual, RMSNorm, SwiGLU MLP, residual; then a final LayerNorm ---- */
enum { DB = 2, DT = 5, DNH = 4, DKV = 2, DHD = 4, DC = DNH * DHD, DI = 20, DL = 2 };
static const int d_lengths[DB] = {5, 3};

typedef struct {
    ParamStore ps;
    Graph g;
    Tensor *x;      /* (B, T, C) input activation, requires grad */
    float *proj;    /* (B*T*C) projection defining the scalar loss */
    int pos[DB * DT];
    float drop_rate;
    uint64_t dropout_counter0;
} Decoder;

static void add_param(ParamStore *ps, const char *name, ParamGroup gr, int decay, int ndim,
                      int d0, int d1) {
    params_add(ps, name, gr, decay, ndim, (int[]){d0, d1});
}

static void decoder_init(Decoder *d, int freeze_llm) {
    params_init(&d->ps, DEV_CPU);
    char n[96];
    for (int l = 0; l < DL; l++) {
#define P(suffix, gr, decay, nd, a, b) \
        (snprintf(n, sizeof n, "layers.%d." suffix, l), add_param(&d->ps, n, gr, decay, nd, a, b))
        P("norm1", PG_LLM, 0, 1, DC, 1);
        P("q", PG_LLM, 1, 2, DC, DC);
        P("q_bias", PG_LLM, 0, 1, DC, 1);
        P("k", PG_LLM, 1, 2, DKV * DHD, DC);
        P("v", PG_LLM, 1, 2, DKV * DHD, DC);
        P("o", PG_LLM, 1, 2, DC, DC);
        P("norm2", PG_LLM, 0, 1, DC, 1);
        P("gate", PG_LLM, 1, 2, DI, DC);
        P("up", PG_LLM, 1, 2, DI, DC);
        P("down", PG_LLM, 1, 2, DC, DI);
#undef P
    }
    add_param(&d->ps, "final_norm.weight", PG_HEAD, 0, 1, DC, 1);
    add_param(&d->ps, "final_norm.bias", PG_HEAD, 0, 1, DC, 1);
    params_freeze_group(&d->ps, PG_LLM, freeze_llm);
    params_finalize(&d->ps);
    TRng r = trng(7);
    for (int i = 0; i < d->ps.n; i++) {
        Tensor *t = params_get(&d->ps, i);
        int is_norm = strstr(t->name, "norm") != NULL;
        for (size_t k = 0; k < t->numel; k++)
            tensor_f32(t)[k] = is_norm ? 1.0f + 0.1f * trng_normal(&r) : 0.3f * trng_normal(&r);
    }
    graph_init(&d->g, DEV_CPU, 1 << 16, 99); /* small on purpose: the first step overflows */
    d->proj = tmalloc(DB * DT * DC);
    fill_normal(&r, d->proj, DB * DT * DC, 1.0f);
    for (int b = 0; b < DB; b++)
        for (int t = 0; t < DT; t++) d->pos[b * DT + t] = t;
    d->drop_rate = 0;
}

static void decoder_free(Decoder *d) {
    graph_free(&d->g);
    params_free(&d->ps);
    free(d->proj);
}

static Tensor *W(Decoder *d, int l, const char *suffix) {
    char n[96];
    snprintf(n, sizeof n, "layers.%d.%s", l, suffix);
    Tensor *t = params_find(&d->ps, n);
    if (!t) { fprintf(stderr, "no param %s\n", n); exit(2); }
    return t;
}

typedef struct { Decoder *d; int layer; } LayerCtx;

static void decoder_layer(Graph *g, void *ctx, Tensor **in, int nin, Tensor **out, int nout) {
    (void)nin; (void)nout;
    LayerCtx *c = ctx;
    Decoder *d = c->d;
    int l = c->layer;
    Tensor *x = in[0];
    Tensor *h = op_rmsnorm(g, x, W(d, l, "norm1"), 1e-5f);
    Tensor *q = op_linear(g, h, W(d, l, "q"), W(d, l, "q_bias"));
    Tensor *k = op_linear(g, h, W(d, l, "k"), NULL);
    Tensor *v = op_linear(g, h, W(d, l, "v"), NULL);
    q = op_rope(g, op_reshape(g, q, 4, (int[]){DB, DT, DNH, DHD}), d->pos, 10000.0f);
    k = op_rope(g, op_reshape(g, k, 4, (int[]){DB, DT, DKV, DHD}), d->pos, 10000.0f);
    v = op_reshape(g, v, 4, (int[]){DB, DT, DKV, DHD});
    Tensor *a = op_attention(g, q, k, v, d_lengths, NULL, 1);
    a = op_linear(g, op_reshape(g, a, 3, (int[]){DB, DT, DC}), W(d, l, "o"), NULL);
    x = op_add(g, x, op_drop_path(g, a, d->drop_rate));
    h = op_rmsnorm(g, x, W(d, l, "norm2"), 1e-5f);
    Tensor *m = op_swiglu(g, op_linear(g, h, W(d, l, "gate"), NULL), op_linear(g, h, W(d, l, "up"), NULL));
    m = op_linear(g, m, W(d, l, "down"), NULL);
    out[0] = op_add(g, x, op_drop_path(g, m, d->drop_rate));
}

static Tensor *decoder_forward(Decoder *d, const float *input) {
    Graph *g = &d->g;
    graph_reset(g);
    g->dropout.counter = d->dropout_counter0;
    d->x = graph_tensor(g, "x", 3, (int[]){DB, DT, DC});
    memcpy(d->x->data, input, sizeof(float) * DB * DT * DC);
    d->x->requires_grad = 1;
    Tensor *x = d->x;
    for (int l = 0; l < DL; l++) {
        LayerCtx ctx = {d, l};
        Tensor *out;
        graph_checkpoint(g, decoder_layer, &ctx, sizeof ctx, &x, 1, &out, 1);
        x = out;
    }
    return op_layernorm(g, x, params_find(&d->ps, "final_norm.weight"),
                        params_find(&d->ps, "final_norm.bias"), 1e-5f);
}

typedef struct { Decoder *d; float *input; } FdCtx;

static double decoder_loss(void *vc) {
    FdCtx *c = vc;
    int prev = graph_set_grad(&c->d->g, 0);
    Tensor *y = decoder_forward(c->d, c->input);
    graph_set_grad(&c->d->g, prev);
    return dot_loss(tensor_f32(y), c->d->proj, y->numel);
}

/* runs forward + backward; returns the input gradient (copied) */
static float *decoder_backward(Decoder *d, const float *input) {
    params_zero_grad(&d->ps);
    Tensor *y = decoder_forward(d, input);
    graph_backward_from(&d->g, y, d->proj);
    float *gx = tmalloc(DB * DT * DC);
    memcpy(gx, d->x->grad, sizeof(float) * DB * DT * DC);
    return gx;
}

TEST(test_two_layer_transformer_block_gradients_match_finite_differences) {
    Decoder d;
    decoder_init(&d, 0);
    float *input = tmalloc(DB * DT * DC);
    TRng r = trng(3);
    fill_normal(&r, input, DB * DT * DC, 1.0f);
    float *gx = decoder_backward(&d, input);
    float *gp = tmalloc(d.ps.n_trainable);
    memcpy(gp, d.ps.grad, sizeof(float) * d.ps.n_trainable);
    FdCtx c = {&d, input};
    GRAD_CHECK("input", decoder_loss, &c, input, gx, DB * DT * DC, 1e-2);
    GRAD_CHECK("all parameters", decoder_loss, &c, d.ps.data, gp, d.ps.n_trainable, 1e-2);
    /* each parameter tensor on its own, so a small one cannot hide in the sample */
    for (int i = 0; i < d.ps.n; i++) {
        Tensor *t = params_get(&d.ps, i);
        GRAD_CHECK(t->name, decoder_loss, &c, tensor_f32(t), gp + (tensor_f32(t) - d.ps.data),
                   t->numel < 40 ? t->numel : 40, 1e-2);
    }
    free(gx); free(gp); free(input);
    decoder_free(&d);
}

TEST(test_recompute_segments_give_bitwise_identical_gradients_and_save_memory) {
    Decoder a, b;
    decoder_init(&a, 0);
    decoder_init(&b, 0);
    a.g.training = b.g.training = 1;
    a.drop_rate = b.drop_rate = 0.4f; /* masks must be replayed identically */
    b.g.recompute = 1;
    float *input = tmalloc(DB * DT * DC);
    TRng r = trng(4);
    fill_normal(&r, input, DB * DT * DC, 1.0f);
    /* a few steps: the first ones also grow the arenas */
    for (int step = 0; step < 3; step++) {
        a.dropout_counter0 = b.dropout_counter0 = 1000 * step;
        float *ga = decoder_backward(&a, input);
        float *gb = decoder_backward(&b, input);
        EXPECT_SAME("input gradient", ga, gb, DB * DT * DC);
        EXPECT_SAME("parameter gradients", a.ps.grad, b.ps.grad, a.ps.n_trainable);
        CHECK(b.g.dropout.counter == a.g.dropout.counter, "dropout counters diverged");
        free(ga); free(gb);
    }
    /* steady state: with recompute the step's peak activation memory is lower */
    a.g.act.peak = b.g.act.peak = 0;
    float *ga = decoder_backward(&a, input), *gb = decoder_backward(&b, input);
    CHECK(a.g.act.overflow == NULL && b.g.act.overflow == NULL, "arena still overflowing");
    printf("    activation arena peak: %zu bytes without recompute, %zu with\n", a.g.act.peak,
           b.g.act.peak);
    CHECK(b.g.act.peak < a.g.act.peak, "recompute did not lower the peak (%zu vs %zu)",
          b.g.act.peak, a.g.act.peak);
    free(ga); free(gb); free(input);
    decoder_free(&a);
    decoder_free(&b);
}

TEST(test_frozen_parameters_get_no_gradient_buffer_and_stay_untouched) {
    Decoder d;
    decoder_init(&d, 1); /* LLM group frozen: only the final norm trains */
    size_t head = params_count_group(&d.ps, PG_HEAD);
    CHECK(d.ps.n_trainable == head, "trainable %zu, want %zu (head only)", d.ps.n_trainable, head);
    for (int i = 0; i < d.ps.n; i++) {
        Tensor *t = params_get(&d.ps, i);
        int frozen = strncmp(t->name, "layers.", 7) == 0;
        CHECK(frozen == (t->grad == NULL) && frozen == !t->requires_grad,
              "%s: grad buffer %p, requires_grad %d", t->name, (void *)t->grad, t->requires_grad);
    }
    size_t nf = d.ps.numel - d.ps.n_trainable;
    float *before = tmalloc(nf);
    memcpy(before, d.ps.data + d.ps.n_trainable, nf * sizeof(float));
    float *input = tmalloc(DB * DT * DC);
    TRng r = trng(5);
    fill_normal(&r, input, DB * DT * DC, 1.0f);
    float *gx = decoder_backward(&d, input);
    params_alloc_optimizer(&d.ps);
    for (int t = 1; t <= 3; t++)
        kernels_cpu.adamw_update(d.ps.data, NULL, d.ps.grad, d.ps.m, d.ps.v, d.ps.n_trainable, 1e-2f,
                                 0.9f, 0.999f, 1e-8f, 0.1f, t, 1.0f);
    EXPECT_SAME("frozen parameters", before, d.ps.data + d.ps.n_trainable, nf);
    double gn = 0;
    for (size_t i = 0; i < d.ps.n_trainable; i++) gn += d.ps.grad[i] * d.ps.grad[i];
    CHECK(gn > 0, "the trainable head got no gradient");
    free(gx); free(before); free(input);
    decoder_free(&d);
}

TEST(test_no_grad_mode_records_nothing_and_gives_the_same_output) {
    Decoder d;
    decoder_init(&d, 0);
    float *input = tmalloc(DB * DT * DC);
    TRng r = trng(6);
    fill_normal(&r, input, DB * DT * DC, 1.0f);
    Tensor *y = decoder_forward(&d, input);
    CHECK(d.g.ntape > 0, "grad mode recorded nothing");
    float *ref = tmalloc(y->numel);
    memcpy(ref, y->data, y->numel * sizeof(float));
    graph_set_grad(&d.g, 0);
    y = decoder_forward(&d, input);
    CHECK(d.g.ntape == 0, "no-grad mode recorded %d entries", d.g.ntape);
    CHECK(!y->requires_grad, "no-grad output requires grad");
    EXPECT_SAME("output", ref, tensor_f32(y), y->numel);
    free(ref); free(input);
    decoder_free(&d);
}

/* ---- a tiny ViT + connector: patch embedding, position add, LayerNorm, bidirectional
 * attention, layer scale, drop_path, GELU MLP, pixel shuffle, LayerNorm + MLP ---- */
enum { VB = 2, VCH = 3, VP = 2, VG = 4, VHW = VG * VP, VC = 6, VH = 2, VI = 10, VO = 5 };

typedef struct { ParamStore ps; Graph g; float *img, *proj; Tensor *img_t; } Vit;

static Tensor *VW(Vit *v, const char *n) { return params_find(&v->ps, n); }

static Tensor *vit_forward(Vit *v) {
    Graph *g = &v->g;
    graph_reset(g);
    g->dropout.counter = 0;
    v->img_t = graph_tensor(g, "img", 4, (int[]){VB, VCH, VHW, VHW});
    memcpy(v->img_t->data, v->img, sizeof(float) * v->img_t->numel);
    v->img_t->requires_grad = 1;
    Tensor *x = op_patch_embed(g, v->img_t, VW(v, "patch.w"), VW(v, "patch.b"));
    Tensor *h = op_layernorm(g, x, VW(v, "ln1.w"), VW(v, "ln1.b"), 1e-6f);
    Tensor *qkv[3];
    const char *names[3] = {"q", "k", "vv"};
    for (int i = 0; i < 3; i++)
        qkv[i] = op_reshape(g, op_linear(g, h, VW(v, names[i]), NULL), 4,
                            (int[]){VB, VG * VG, VH, VC / VH});
    int lengths[VB] = {VG * VG, VG * VG};
    Tensor *a = op_attention(g, qkv[0], qkv[1], qkv[2], lengths, NULL, 0);
    a = op_linear(g, op_reshape(g, a, 3, (int[]){VB, VG * VG, VC}), VW(v, "proj"), VW(v, "proj.b"));
    x = op_add(g, x, op_drop_path(g, op_channel_scale(g, a, VW(v, "ls1")), 0.5f));
    h = op_gelu(g, op_linear(g, op_layernorm(g, x, VW(v, "ln2.w"), NULL, 1e-6f), VW(v, "fc1"), NULL));
    x = op_add(g, x, op_channel_scale(g, op_linear(g, h, VW(v, "fc2"), NULL), VW(v, "ls2")));
    x = op_pixel_shuffle(g, x);
    x = op_layernorm(g, x, VW(v, "mlp.ln.w"), VW(v, "mlp.ln.b"), 1e-5f);
    return op_linear(g, op_gelu(g, op_linear(g, x, VW(v, "mlp.fc"), NULL)), VW(v, "mlp.out"), NULL);
}

static double vit_loss(void *vc) {
    Vit *v = vc;
    int prev = graph_set_grad(&v->g, 0);
    Tensor *y = vit_forward(v);
    graph_set_grad(&v->g, prev);
    return dot_loss(tensor_f32(y), v->proj, y->numel);
}

TEST(test_vit_and_connector_gradients_match_finite_differences) {
    Vit v;
    params_init(&v.ps, DEV_CPU);
    struct { const char *n; int nd, s[4], decay; } spec[] = {
        {"patch.w", 4, {VC, VCH, VP, VP}, 1}, {"patch.b", 1, {VC}, 0},
        {"ln1.w", 1, {VC}, 0}, {"ln1.b", 1, {VC}, 0}, {"q", 2, {VC, VC}, 1}, {"k", 2, {VC, VC}, 1},
        {"vv", 2, {VC, VC}, 1}, {"proj", 2, {VC, VC}, 1}, {"proj.b", 1, {VC}, 0},
        {"ls1", 1, {VC}, 0}, {"ln2.w", 1, {VC}, 0}, {"fc1", 2, {VI, VC}, 1}, {"fc2", 2, {VC, VI}, 1},
        {"ls2", 1, {VC}, 0}, {"mlp.ln.w", 1, {4 * VC}, 0}, {"mlp.ln.b", 1, {4 * VC}, 0},
        {"mlp.fc", 2, {VO, 4 * VC}, 1}, {"mlp.out", 2, {VO, VO}, 1},
    };
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++)
        params_add(&v.ps, spec[i].n, PG_VISION, spec[i].decay, spec[i].nd, spec[i].s);
    params_finalize(&v.ps);
    TRng r = trng(11);
    for (int i = 0; i < v.ps.n; i++) {
        Tensor *t = params_get(&v.ps, i);
        int is_norm = strstr(t->name, "ln") && strstr(t->name, ".w");
        for (size_t k = 0; k < t->numel; k++)
            tensor_f32(t)[k] = is_norm ? 1.0f + 0.1f * trng_normal(&r) : 0.4f * trng_normal(&r);
    }
    graph_init(&v.g, DEV_CPU, 1 << 20, 5);
    v.g.training = 1;
    size_t nimg = (size_t)VB * VCH * VHW * VHW;
    v.img = tmalloc(nimg);
    fill_normal(&r, v.img, nimg, 1.0f);
    v.proj = tmalloc(VB * 4 * VO);
    fill_normal(&r, v.proj, VB * 4 * VO, 1.0f);
    Tensor *y = vit_forward(&v);
    CHECK(y->ndim == 3 && y->shape[1] == 4 && y->shape[2] == VO, "connector output shape");
    graph_backward_from(&v.g, y, v.proj);
    float *gimg = tmalloc(nimg), *gp = tmalloc(v.ps.n_trainable);
    memcpy(gimg, v.img_t->grad, nimg * sizeof(float));
    memcpy(gp, v.ps.grad, v.ps.n_trainable * sizeof(float));
    /* the drop_path draw (one sample of the two kept, say) is replayed in vit_loss */
    GRAD_CHECK("image", vit_loss, &v, v.img, gimg, nimg, 1e-2);
    for (int i = 0; i < v.ps.n; i++) {
        Tensor *t = params_get(&v.ps, i);
        GRAD_CHECK(t->name, vit_loss, &v, tensor_f32(t), gp + (tensor_f32(t) - v.ps.data),
                   t->numel, 1e-2);
    }
    free(gimg); free(gp); free(v.img); free(v.proj);
    graph_free(&v.g);
    params_free(&v.ps);
}

TEST(test_losses_on_the_tape_backpropagate_their_gradients) {
    Graph g;
    graph_init(&g, DEV_CPU, 1 << 16, 1);
    enum { P = 5 };
    TRng r = trng(21);
    Tensor *t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = graph_tensor(&g, "r", 1, (int[]){P});
        fill_normal(&r, tensor_f32(t[i]), P, 2.0f);
        t[i]->requires_grad = 1;
    }
    float margin[P];
    fill_uniform(&r, margin, P, 0.0f, 1.0f);
    Tensor *bt = op_bt_loss(&g, t[0], t[1], margin, NULL);
    ShortcutLoss sl = op_shortcut_loss(&g, t[0], t[1], t[2], t[3], 1e-7f);
    /* Backward from each root in turn. The second walk reaches the bt entry again (its
     * root still holds gradient 1), so rc/rr receive 2 x the bt gradient + the
     * shortcut-aware one. */
    graph_backward(&g, bt);
    graph_backward(&g, sl.loss);
    double want[4][P];
    for (int i = 0; i < P; i++) {
        double rc = tensor_f32(t[0])[i], rr = tensor_f32(t[1])[i];
        double bc = tensor_f32(t[2])[i], br = tensor_f32(t[3])[i];
        double sbt = 1.0 / (1.0 + exp(rc - rr - margin[i])); /* sigmoid(-(d - m)) */
        double dm = rc - rr, db = bc - br;
        double lm = log1p(exp(-dm)), lb = log1p(exp(-db));
        double w = 0.5e-7 + lb / (1e-7 + lb + lm);
        double sm = 1.0 / (1.0 + exp(dm)), sb = 1.0 / (1.0 + exp(db));
        want[0][i] = -2 * sbt / P - w * sm / P;
        want[1][i] = 2 * sbt / P + w * sm / P;
        want[2][i] = -sb / P;
        want[3][i] = sb / P;
    }
    for (int i = 0; i < 4; i++) EXPECT_CLOSE("reward gradient", t[i]->grad, want[i], P, 1e-5, 1e-7);
    graph_free(&g);
}

TEST(test_arena_stops_allocating_after_the_first_step) {
    Arena a;
    arena_init(&a, DEV_CPU, 1024);
    for (int step = 0; step < 4; step++) {
        for (int i = 0; i < 10; i++) {
            char *p = arena_alloc(&a, 700);
            CHECK(((uintptr_t)p & 63) == 0, "allocation not 64-byte aligned");
            memset(p, i, 700);
        }
        if (step >= 1) CHECK(a.overflow == NULL, "step %d still overflows", step);
        arena_reset(&a);
    }
    CHECK(a.n_grow == 1, "the arena grew %zu times, want once", a.n_grow);
    size_t m = arena_mark(&a);
    void *p = arena_alloc(&a, 100), *q = arena_alloc(&a, 300);
    memset(q, 7, 300);
    void *ptrs[1] = {q};
    size_t bytes[1] = {300};
    arena_compact(&a, m, ptrs, bytes, 1);
    CHECK(ptrs[0] == p, "compaction did not move the live allocation to the mark");
    CHECK(((unsigned char *)ptrs[0])[299] == 7, "compaction lost data");
    arena_free(&a);
}

TEST(test_rng_streams_are_reproducible_and_thread_count_independent) {
    enum { N = 200003 };
    float *a = tmalloc(N), *b = tmalloc(N);
    int saved = omp_get_max_threads();
    Rng r1 = rng_make(42, 1), r2 = rng_make(42, 1), r3 = rng_make(42, 2);
    omp_set_num_threads(1);
    rng_fill_normal(&r1, a, N, 0.0f, 1.0f);
    omp_set_num_threads(3);
    rng_fill_normal(&r2, b, N, 0.0f, 1.0f);
    omp_set_num_threads(saved);
    EXPECT_SAME("normal fill, 1 vs 3 threads", a, b, N);
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++) s += a[i], s2 += (double)a[i] * a[i];
    CHECK(fabs(s / N) < 0.01 && fabs(s2 / N - 1) < 0.02, "normal moments off: mean %g var %g",
          s / N, s2 / N);
    rng_fill_normal(&r3, b, N, 0.0f, 1.0f);
    int same = 0;
    for (int i = 0; i < N; i++) same += a[i] == b[i];
    CHECK(same < 10, "streams 1 and 2 share %d values", same);
    Rng r4 = rng_make(42, 1);
    uint64_t hits[7] = {0};
    for (int i = 0; i < 70000; i++) hits[rng_below(&r4, 7)]++;
    for (int i = 0; i < 7; i++) CHECK(hits[i] > 9500 && hits[i] < 10500, "rng_below(7) bucket %d: %lu", i, (unsigned long)hits[i]);
    free(a); free(b);
}

TEST(test_bf16_conversion_rounds_to_nearest_even) {
    /* values chosen from the bf16 format: 8 significand bits */
    struct { float f; uint16_t b; } cases[] = {
        {1.0f, 0x3F80}, {-2.0f, 0xC000}, {1.0f + 1.0f / 256, 0x3F80} /* tie -> even */,
        {1.0f + 3.0f / 256, 0x3F82} /* tie -> even (up) */, {1.0f + 1.5f / 256, 0x3F81},
        {65504.0f, 0x4780 /* 65536 */}, {3.0e38f, 0x7F62}, {1e-40f, 0x0001 /* subnormal */},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(bf16_from_f32(cases[i].f) == cases[i].b, "bf16(%g) = 0x%04X, want 0x%04X",
              cases[i].f, bf16_from_f32(cases[i].f), cases[i].b);
    CHECK(isnan(f32_from_bf16(bf16_from_f32(NAN))), "NaN did not survive");
    CHECK(isinf(f32_from_bf16(bf16_from_f32(INFINITY))), "inf did not survive");
    TRng r = trng(8);
    for (int i = 0; i < 10000; i++) {
        float f = trng_normal(&r) * 100;
        float back = f32_from_bf16(bf16_from_f32(f));
        CHECK(fabsf(back - f) <= fabsf(f) / 256.0f, "bf16 round trip of %g gave %g", f, back);
    }
}
