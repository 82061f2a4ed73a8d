/* test_add_norm.c - the fused residual add + norm (op_add_rmsnorm / op_add_layernorm,
 * kernels add_rmsnorm_forward / add_layernorm_forward): forward bit for bit the add then
 * the norm, gradients of both outputs (the residual sum and the normalised value) against
 * central finite differences, and with bf16 activations the same values as the unfused ops. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "runtime/autograd.h"
#include "runtime/ops.h"
#include "tests/harness.h"

enum { AN_N = 6, AN_C = 37 }; /* odd C: no row is a multiple of any vector width */

TEST(test_fused_add_norm_kernels_equal_add_then_norm_bitwise) {
    TRng r = trng(11);
    size_t n = (size_t)AN_N * AN_C;
    float *x = tmalloc(n), *a = tmalloc(n), *w = tmalloc(AN_C), *b = tmalloc(AN_C);
    fill_normal(&r, x, n, 2.0f);
    fill_normal(&r, a, n, 1.0f);
    fill_uniform(&r, w, AN_C, 0.5f, 1.5f);
    fill_normal(&r, b, AN_C, 0.3f);
    float *s1 = tmalloc(n), *y1 = tmalloc(n), *s2 = tmalloc(n), *y2 = tmalloc(n);
    float *m1 = tmalloc(AN_N), *r1 = tmalloc(AN_N), *m2 = tmalloc(AN_N), *r2 = tmalloc(AN_N);
    for (int layer = 0; layer < 2; layer++) {
        cpu_add_forward(s1, x, a, n);
        if (layer) {
            cpu_layernorm_forward(y1, m1, r1, s1, w, b, AN_N, AN_C, 1e-5f);
            cpu_add_layernorm_forward(s2, y2, m2, r2, x, a, w, b, AN_N, AN_C, 1e-5f);
            EXPECT_SAME("add_layernorm mean", m1, m2, AN_N);
        } else {
            cpu_rmsnorm_forward(y1, r1, s1, w, AN_N, AN_C, 1e-6f);
            cpu_add_rmsnorm_forward(s2, y2, r2, x, a, w, AN_N, AN_C, 1e-6f);
        }
        EXPECT_SAME(layer ? "add_layernorm sum" : "add_rmsnorm sum", s1, s2, n);
        EXPECT_SAME(layer ? "add_layernorm out" : "add_rmsnorm out", y1, y2, n);
        EXPECT_SAME(layer ? "add_layernorm rstd" : "add_rmsnorm rstd", r1, r2, AN_N);
    }
    free(x); free(a); free(w); free(b); free(s1); free(y1); free(s2); free(y2);
    free(m1); free(r1); free(m2); free(r2);
}

/* loss = <h, p1> + use_sum * <sum, p2> over (sum, h) = add_norm(x, a) */
typedef struct {
    Graph g;
    ParamStore ps;
    Tensor *w, *b;
    float *x, *a, *p1, *p2;
    int layer, use_sum;
    Tensor *tx, *ta;
} AddNormCase;

static double add_norm_run(AddNormCase *c, int backward) {
    Graph *g = &c->g;
    graph_reset(g);
    int prev = graph_set_grad(g, backward);
    size_t n = (size_t)AN_N * AN_C;
    c->tx = graph_tensor(g, "x", 2, (int[]){AN_N, AN_C});
    c->ta = graph_tensor(g, "a", 2, (int[]){AN_N, AN_C});
    memcpy(c->tx->data, c->x, n * sizeof(float));
    memcpy(c->ta->data, c->a, n * sizeof(float));
    c->tx->requires_grad = c->ta->requires_grad = 1;
    Tensor *sum, *h = c->layer ? op_add_layernorm(g, c->tx, c->ta, c->w, c->b, 1e-5f, &sum)
                               : op_add_rmsnorm(g, c->tx, c->ta, c->w, 1e-5f, &sum);
    double loss = dot_loss(tensor_f32(h), c->p1, n);
    if (c->use_sum) loss += dot_loss(tensor_f32(sum), c->p2, n);
    if (backward) {
        /* seeds both outputs: dL/dh = p1, dL/dsum = p2 (or nothing) */
        if (c->use_sum) memcpy(graph_grad(g, sum), c->p2, n * sizeof(float));
        graph_backward_from(g, h, c->p1);
    }
    graph_set_grad(g, prev);
    return loss;
}

static double add_norm_loss(void *ctx) { return add_norm_run(ctx, 0); }

TEST(test_fused_add_norm_gradients_match_finite_differences) {
    size_t n = (size_t)AN_N * AN_C;
    for (int layer = 0; layer < 2; layer++)
        for (int use_sum = 0; use_sum < 2; use_sum++) {
            AddNormCase c;
            memset(&c, 0, sizeof c);
            c.layer = layer;
            c.use_sum = use_sum;
            params_init(&c.ps, DEV_CPU);
            params_add(&c.ps, "w", PG_LLM, 0, 1, (int[]){AN_C});
            params_add(&c.ps, "b", PG_LLM, 0, 1, (int[]){AN_C});
            params_finalize(&c.ps);
            c.w = params_find(&c.ps, "w");
            c.b = params_find(&c.ps, "b");
            TRng r = trng(21 + 2 * layer + use_sum);
            fill_uniform(&r, tensor_f32(c.w), AN_C, 0.5f, 1.5f);
            fill_normal(&r, tensor_f32(c.b), AN_C, 0.3f);
            c.x = tmalloc(n), c.a = tmalloc(n), c.p1 = tmalloc(n), c.p2 = tmalloc(n);
            fill_normal(&r, c.x, n, 1.5f);
            fill_normal(&r, c.a, n, 1.0f);
            fill_normal(&r, c.p1, n, 1.0f);
            fill_normal(&r, c.p2, n, 1.0f);
            graph_init(&c.g, DEV_CPU, 1 << 20, 5);
            params_zero_grad(&c.ps);
            add_norm_run(&c, 1);
            float *gx = tmalloc(n), *ga = tmalloc(n), *gp = tmalloc(c.ps.n_trainable);
            memcpy(gx, c.tx->grad, n * sizeof(float));
            memcpy(ga, c.ta->grad, n * sizeof(float));
            memcpy(gp, c.ps.grad, c.ps.n_trainable * sizeof(float));
            const char *what = layer ? "add_layernorm" : "add_rmsnorm";
            GRAD_CHECK(what, add_norm_loss, &c, c.x, gx, n, 1e-2);
            GRAD_CHECK(what, add_norm_loss, &c, c.a, ga, n, 1e-2);
            GRAD_CHECK(what, add_norm_loss, &c, tensor_f32(c.w), gp + (tensor_f32(c.w) - c.ps.data),
                       AN_C, 1e-2);
            if (layer)
                GRAD_CHECK(what, add_norm_loss, &c, tensor_f32(c.b),
                           gp + (tensor_f32(c.b) - c.ps.data), AN_C, 1e-2);
            free(gx); free(ga); free(gp); free(c.x); free(c.a); free(c.p1); free(c.p2);
            graph_free(&c.g);
            params_free(&c.ps);
        }
}

/* bf16 activations on the CPU (no fused bf16 kernel: the add, then the norm of the rounded
 * sum) give the values of op_add then the norm */
TEST(test_fused_add_norm_with_bf16_activations_equals_the_unfused_ops) {
    size_t n = (size_t)AN_N * AN_C;
    TRng r = trng(31);
    float *x = tmalloc(n), *a = tmalloc(n), *w = tmalloc(AN_C);
    fill_normal(&r, x, n, 2.0f);
    fill_normal(&r, a, n, 1.0f);
    fill_uniform(&r, w, AN_C, 0.5f, 1.5f);
    Graph g;
    graph_init(&g, DEV_CPU, 1 << 20, 5);
    graph_set_act_dtype(&g, DT_BF16);
    Tensor *tx = graph_activation(&g, "x", 2, (int[]){AN_N, AN_C});
    Tensor *ta = graph_activation(&g, "a", 2, (int[]){AN_N, AN_C});
    Tensor *tw = graph_tensor(&g, "w", 1, (int[]){AN_C});
    cpu_f32_to_bf16(tx->data, x, n);
    cpu_f32_to_bf16(ta->data, a, n);
    memcpy(tw->data, w, AN_C * sizeof(float));
    Tensor *sum, *h = op_add_rmsnorm(&g, tx, ta, tw, 1e-6f, &sum);
    Tensor *s2 = op_add(&g, tx, ta), *h2 = op_rmsnorm(&g, s2, tw, 1e-6f);
    CHECK(sum->dtype == DT_BF16 && h->dtype == DT_BF16, "outputs stored as %s / %s",
          dtype_name(sum->dtype), dtype_name(h->dtype));
    CHECK(!memcmp(sum->data, s2->data, n * 2) && !memcmp(h->data, h2->data, n * 2),
          "bf16 add_rmsnorm differs from add + rmsnorm");
    free(x); free(a); free(w);
    graph_free(&g);
}
