/* ops.h - differentiable ops: the network code calls these, never the kernels.
 *
 * Each op checks shapes (fatal with both shapes named), allocates its output from the
 * graph's arena, calls the device's kernel and, when grad is enabled and an input
 * requires grad, records its backward on the tape. Integer inputs (ids, positions,
 * lengths) are host arrays; the op copies what it keeps.
 * Shapes: B batch, T tokens, C channels, NH/KV heads, HD head dim, P pairs.
 */
#ifndef MMRM_OPS_H
#define MMRM_OPS_H

#include "runtime/autograd.h"

/* y = x . w^T + b; x (..., C), w (OC, ...) with numel OC*C (a conv weight works), b (OC) */
Tensor *op_linear(Graph *g, Tensor *x, Tensor *w, Tensor *b);
/* the same with an f32 output whatever the graph's activation storage (reward heads) */
Tensor *op_linear_f32(Graph *g, Tensor *x, Tensor *w, Tensor *b);
/* (B, T, C) rows of table (V, C); every id is checked against V */
Tensor *op_embedding(Graph *g, Tensor *table, const int *ids, int B, int T);
Tensor *op_layernorm(Graph *g, Tensor *x, Tensor *w, Tensor *b, float eps); /* over last dim */
Tensor *op_rmsnorm(Graph *g, Tensor *x, Tensor *w, float eps);
/* residual add + norm as one op (one kernel): *sum = x + a (the residual stream, same shape
 * as x), returns norm(*sum); the same values as op_add then op_layernorm / op_rmsnorm */
Tensor *op_add_layernorm(Graph *g, Tensor *x, Tensor *a, Tensor *w, Tensor *b, float eps,
                         Tensor **sum);
Tensor *op_add_rmsnorm(Graph *g, Tensor *x, Tensor *a, Tensor *w, float eps, Tensor **sum);
Tensor *op_gelu(Graph *g, Tensor *x);
Tensor *op_swiglu(Graph *g, Tensor *gate, Tensor *up); /* silu(gate) * up */
/* gu (..., 2I), the fused gate/up GEMM's output: [gate | up] per row -> (..., I) */
Tensor *op_swiglu_fused(Graph *g, Tensor *gu);
/* x (B, T, NH, HD); pos (B*T) */
Tensor *op_rope(Graph *g, Tensor *x, const int *pos, float theta);
/* q (B, T, NH, HD), k/v (B, T, KV, HD), lengths (B), seg (B, T) segment ids or NULL (host
 * memory; the mask of kernels/op_list.h) -> (B, T, NH, HD) */
Tensor *op_attention(Graph *g, Tensor *q, Tensor *k, Tensor *v, const int *lengths,
                     const int *seg, int causal);
/* op_attention at the query rows rows[m] = b*T + t only (M of them, increasing): q (M, NH,
 * HD), k/v (B, T, KV, HD) -> (M, NH, HD), each row what op_attention gives token (b, t).
 * Only where op_attention_rows_supported (the CPU and CUDA kernels; elsewhere run
 * op_attention). */
Tensor *op_attention_rows(Graph *g, Tensor *q, Tensor *k, Tensor *v, const int *lengths,
                          const int *seg, int causal, const int *rows);
int op_attention_rows_supported(const Graph *g);
/* img (B, CH, H, W), w (C, CH, p, p), b (C) -> (B, (H/p)*(W/p), C); patches row-major */
Tensor *op_patch_embed(Graph *g, Tensor *img, Tensor *w, Tensor *b);
/* (B, G*G, C) -> (B, (G/2)^2, 4C), pixel shuffle v2 */
Tensor *op_pixel_shuffle(Graph *g, Tensor *x);
Tensor *op_add(Graph *g, Tensor *a, Tensor *b);
Tensor *op_channel_scale(Graph *g, Tensor *x, Tensor *scale); /* x (..., C) * scale (C) */
/* x (B, ...): whole samples dropped with probability rate while training; identity
 * (the same tensor) when not training or rate == 0 */
Tensor *op_drop_path(Graph *g, Tensor *x, float rate);
/* same numel; a view: shares x's data and (when grad flows) x's gradient buffer */
Tensor *op_reshape(Graph *g, Tensor *x, int ndim, const int *shape);
/* parameters parts[0..n) (same row size, dtype, requires_grad) that lie back to back in
 * their store (data, gradient and bf16 copy) seen as one tensor of their rows stacked, named
 * name: the fused q/k/v and gate/up weights, whose parts keep their HF names for checkpoints.
 * Gradients written into the view land in the parts'. NULL when they are not adjacent. */
Tensor *op_param_rows(Graph *g, Tensor *const *parts, int n, const char *name);
/* rows of x viewed as (N, C), C = x's last dim: out (M, C) with out[m] = x[idx[m]].
 * idx (M) host array, each in [0, N), duplicates allowed (gradients add up). Used for head
 * selection, CLS/position broadcast, dropping rows, image splicing and last-token pooling.
 * Its backward is a plain scatter when idx picks each row at most once (checked here), else
 * the embedding backward's ordered sums. */
Tensor *op_gather_rows(Graph *g, Tensor *x, const int *idx, int M);
/* (Na, C) and (Nb, C) (leading dims flattened) -> (Na + Nb, C) */
Tensor *op_concat_rows(Graph *g, Tensor *a, Tensor *b);

/* mean(softplus(-(rc - rr - margin))); margin (P) host array or NULL. losses_out, if not
 * NULL, receives the per-pair losses (P). Returns the scalar loss (1). */
Tensor *op_bt_loss(Graph *g, Tensor *rc, Tensor *rr, const float *margin, Tensor **losses_out);

typedef struct ShortcutLoss {
    Tensor *loss;           /* (1) mean(w*Lm + Lb) */
    Tensor *w, *lm, *lb;    /* (P) for logging */
} ShortcutLoss;
/* the shortcut-aware objective of spec/algorithm.md on main (mc, mr) and bias (bc, br)
 * rewards, each (P) */
ShortcutLoss op_shortcut_loss(Graph *g, Tensor *mc, Tensor *mr, Tensor *bc, Tensor *br,
                              float eps);

#endif
