/* op_list.h - THE list of kernel ops: every op's name and signature, written once.
 *
 * KERNEL_OPS(X) expands X(name, (parameters)) for every op both backends implement;
 * KERNEL_OPS_OPTIONAL(X) for ops a backend may leave NULL (callers test the pointer);
 * KERNEL_OPS_CPU_FIRST(X) for ops the CPU table implements and others do not yet (NULL
 * there: callers test the pointer and take a path without them; none at present).
 * From this list come the KernelOps struct (kernels.h), the declarations of both backends
 * (kernels/cpu/cpu.h: cpu_NAME, kernels/cuda/cuda_kernels.h: cuda_NAME) and both tables
 * (kernels/cpu/table.c, kernels/cuda/table.cu). Adding or changing an op: edit its entry
 * here, then the two implementations (and the tests); nothing else lists signatures.
 *
 * Conventions (all tables):
 * - fp32, contiguous, row-major. Shapes are written next to each pointer. Every pointer,
 *   integer arrays included, is memory of the table's device (the CUDA table takes device
 *   pointers and runs on the backend's compute stream), except where a comment says host.
 * - Backward kernels ACCUMULATE (+=) into every gradient they write, and any gradient
 *   pointer may be NULL, meaning "not needed" (a frozen weight, a leaf input).
 * - Losses are roots: they take the upstream scale `dloss` and also accumulate.
 * - Results do not depend on the number of threads: every output element and every
 *   reduction is computed in a fixed order by exactly one thread.
 * - No hidden state changes what an op computes: the GEMM precision and the bf16 weight
 *   copy are arguments (`precision`, a KernelPrecision; `weight16`), so is AdamW's bf16
 *   copy of the parameters (`params16`).
 *
 * Dimension letters: N rows (= product of leading dims, e.g. B*T), C channels in,
 * OC channels out, B batch (sequences or images), T tokens per sequence, NH query
 * heads, KV key/value heads (GQA: NH % KV == 0), HD head dim, P preference pairs,
 * G patch grid side, p patch size.
 */
#ifndef MMRM_KERNELS_OP_LIST_H
#define MMRM_KERNELS_OP_LIST_H

/* clang-format off */
#define KERNEL_OPS(X) \
    /* ---- matmul: out = inp . weight^T + bias (nn.Linear). precision: KP_FP32 exact fp32;   \
     * KP_BF16 bf16 operands in memory, fp32 accumulation and output (weight16, the bf16     \
     * copy of weight, is read when not NULL, else the weight is converted per call);        \
     * KP_BF16_FP32_OPERANDS the same rounding applied inside the GEMM to fp32 operands.     \
     * The CPU table computes in fp32 at every precision and ignores weight16. ---- */       \
    X(matmul_forward, (float *out,                /* (N, OC) */                              \
                       const float *inp,          /* (N, C) */                               \
                       const float *weight,       /* (OC, C) */                              \
                       const uint16_t *weight16,  /* (OC, C) bf16 copy of weight, or NULL */ \
                       const float *bias,         /* (OC) or NULL */                         \
                       int N, int C, int OC, int precision))                                 \
    X(matmul_backward, (float *dinp,              /* (N, C) or NULL */                       \
                        float *dweight,           /* (OC, C) or NULL */                      \
                        float *dbias,             /* (OC) or NULL */                         \
                        const float *dout,        /* (N, OC) */                              \
                        const float *inp,         /* (N, C) */                               \
                        const float *weight,      /* (OC, C) */                              \
                        const uint16_t *weight16, /* (OC, C) or NULL */                      \
                        int N, int C, int OC, int precision))                                \
                                                                                             \
    /* ---- token embedding: out[n] = table[ids[n]]; ids are checked by the caller ---- */   \
    X(embedding_forward, (float *out,             /* (N, C) */                               \
                          const int *ids,         /* (N) in [0, V) */                        \
                          const float *table,     /* (V, C) */                               \
                          int N, int C))                                                     \
    /* scatter-add; deterministic (rows are added in increasing n for every column) */       \
    X(embedding_backward, (float *dtable,         /* (V, C) */                               \
                           const float *dout,     /* (N, C) */                               \
                           const int *ids,        /* (N) in [0, V) */                        \
                           int N, int C, int V))                                             \
    /* the same when the ids are distinct (a row gather that picks each row at most once: the \
     * q/k/v head split): no two rows meet, so every element is one add, in any order */     \
    X(scatter_rows_add, (float *dtable,           /* (V, C) */                               \
                         const float *dout,       /* (N, C) */                               \
                         const int *ids,          /* (N) distinct, in [0, V) */              \
                         int N, int C))                                                      \
                                                                                             \
    /* ---- LayerNorm over the last dim; mean/rstd saved for backward ---- */                \
    X(layernorm_forward, (float *out,             /* (N, C) */                               \
                          float *mean,            /* (N) */                                  \
                          float *rstd,            /* (N) */                                  \
                          const float *inp,       /* (N, C) */                               \
                          const float *weight,    /* (C) */                                  \
                          const float *bias,      /* (C) or NULL */                          \
                          int N, int C, float eps))                                          \
    X(layernorm_backward, (float *dinp, float *dweight, float *dbias, /* (N,C) (C) (C) */    \
                           const float *dout, const float *inp, const float *weight,         \
                           const float *mean, const float *rstd, int N, int C))              \
                                                                                             \
    /* ---- residual add + norm in one pass: sum = x + a, out = layernorm(sum) (as          \
     * add_forward then layernorm_forward, bit for bit on the CPU); backward is               \
     * layernorm_backward into sum's gradient, then add_backward ---- */                     \
    X(add_layernorm_forward, (float *sum,         /* (N, C) x + a */                         \
                              float *out,         /* (N, C) */                               \
                              float *mean, float *rstd, /* (N) each */                       \
                              const float *x, const float *a, /* (N, C) each */              \
                              const float *weight, const float *bias, /* (C), (C) or NULL */ \
                              int N, int C, float eps))                                      \
                                                                                             \
    /* ---- RMSNorm: out = x * rsqrt(mean(x^2) + eps) * weight ---- */                       \
    X(rmsnorm_forward, (float *out,               /* (N, C) */                               \
                        float *rstd,              /* (N) */                                  \
                        const float *inp,         /* (N, C) */                               \
                        const float *weight,      /* (C) */                                  \
                        int N, int C, float eps))                                            \
    X(rmsnorm_backward, (float *dinp, float *dweight, /* (N,C) (C) */                        \
                         const float *dout, const float *inp, const float *weight,           \
                         const float *rstd, int N, int C))                                   \
                                                                                             \
    /* residual add + RMSNorm: sum = x + a, out = rmsnorm(sum), as add_layernorm_forward */ \
    X(add_rmsnorm_forward, (float *sum,           /* (N, C) x + a */                         \
                            float *out,           /* (N, C) */                               \
                            float *rstd,          /* (N) */                                  \
                            const float *x, const float *a, /* (N, C) each */                \
                            const float *weight,  /* (C) */                                  \
                            int N, int C, float eps))                                        \
                                                                                             \
    /* ---- exact GELU: 0.5 x (1 + erf(x / sqrt 2)) ---- */                                  \
    X(gelu_forward, (float *out, const float *inp, size_t n))                                \
    X(gelu_backward, (float *dinp, const float *dout, const float *inp, size_t n))           \
                                                                                             \
    /* ---- SwiGLU gate product: out = silu(gate) * up ---- */                               \
    X(swiglu_forward, (float *out, const float *gate, const float *up, size_t n))            \
    X(swiglu_backward, (float *dgate, float *dup, const float *dout,                         \
                        const float *gate, const float *up, size_t n))                       \
    /* the same over one fused gate/up GEMM output: row n of gu is [gate (I) | up (I)] */     \
    X(swiglu_fused_forward, (float *out,          /* (N, I) */                               \
                             const float *gu,     /* (N, 2I) */                              \
                             int N, int I))                                                  \
    X(swiglu_fused_backward, (float *dgu,         /* (N, 2I) */                              \
                              const float *dout,  /* (N, I) */                               \
                              const float *gu,    /* (N, 2I) */                              \
                              int N, int I))                                                 \
                                                                                             \
    /* ---- rotate-half RoPE; row n of every head rotates by pos[n] * theta^(-2i/HD) ---- */  \
    X(rope_forward, (float *out,                  /* (N, NH, HD) */                          \
                     const float *inp,            /* (N, NH, HD) */                          \
                     const int *pos,              /* (N) */                                  \
                     int N, int NH, int HD, float theta))                                    \
    X(rope_backward, (float *dinp, const float *dout, const int *pos,                        \
                      int N, int NH, int HD, float theta))                                   \
                                                                                             \
    /* ---- attention: softmax(Q K^T / sqrt(HD)) V per head, GQA (query head h uses kv head  \
     * h / (NH/KV)), right-padded sequences: only keys j < lengths[b] are attended, rows     \
     * t >= lengths[b] produce out = 0 and lse = 0 and get no gradient. causal: keys j <= t. \
     * lse is the log-sum-exp of the scaled scores per query row, saved for backward.        \
     * seg: NULL (no further mask) or (B, T) segment ids, doc = seg >> 16, branch =          \
     * seg & 0xffff: key j is visible to query t (both < lengths[b]) iff the causal rule     \
     * holds AND doc(j) == doc(t) AND (branch(j) == 0 OR branch(j) == branch(t)). Callers    \
     * keep (and kernels rely on, e.g. to skip key blocks): along a row's valid tokens, docs  \
     * are contiguous and non-decreasing; within a doc the branch-0 tokens (a shared prefix) \
     * come first, then each branch's tokens contiguously (a branch never reappears). A      \
     * packed stream is B = 1 with doc = packed row; a shared-prefix pair is prefix = branch \
     * 0, chosen = 1, rejected = 2 (N responses: branches 1..N). The CPU table checks the    \
     * convention and fails naming the token.                                                \
     * precision (a KernelPrecision): KP_FP32 exact fp32; KP_BF16 and KP_BF16_FP32_OPERANDS   \
     * q, k, v (and dout) rounded to bf16, fp32 accumulation and softmax (the CUDA table's     \
     * tensor-core kernels for HD 64/128; the CPU table computes in fp32 at every precision). */ \
    X(attention_forward, (float *out,             /* (B, T, NH, HD) */                       \
                          float *lse,             /* (B, NH, T) */                           \
                          const float *q,         /* (B, T, NH, HD) */                       \
                          const float *k,         /* (B, T, KV, HD) */                       \
                          const float *v,         /* (B, T, KV, HD) */                       \
                          const int *lengths,     /* (B) in [0, T] */                        \
                          const int *seg,         /* (B, T) segment ids, or NULL */          \
                          int B, int T, int NH, int KV, int HD, int causal, int precision))  \
    X(attention_backward, (float *dq, float *dk, float *dv, /* shapes of q, k, v */          \
                           const float *dout, const float *out, const float *lse,            \
                           const float *q, const float *k, const float *v,                   \
                           const int *lengths, const int *seg, /* (B) (B, T) or NULL */      \
                           int B, int T, int NH, int KV, int HD, int causal, int precision)) \
                                                                                             \
    /* ---- patch embedding = im2col + matmul. cols row (b, y, x) = b*G*G + y*G + x holds    \
     * the patch in conv-weight order (ch, ky, kx), so weight (C, CH, p, p) is (C, CH*p*p). */ \
    X(im2col_forward, (float *cols,               /* (B*(H/p)*(W/p), CH*p*p) */              \
                       const float *img,          /* (B, CH, H, W) */                        \
                       int B, int CH, int H, int W, int p))                                  \
    X(im2col_backward, (float *dimg, const float *dcols, int B, int CH, int H, int W, int p)) \
                                                                                             \
    /* ---- pixel shuffle v2 (spec/model.md s2): token a*(G/2)+b gets the channels of        \
     * [P(2a,2b), P(2a,2b+1), P(2a+1,2b), P(2a+1,2b+1)]; G even ---- */                      \
    X(pixel_shuffle_forward, (float *out,         /* (B, (G/2)*(G/2), 4C) */                 \
                              const float *inp,   /* (B, G*G, C) */                          \
                              int B, int G, int C))                                          \
    X(pixel_shuffle_backward, (float *dinp, const float *dout, int B, int G, int C))         \
                                                                                             \
    /* ---- residual add and per-channel scale (layer scale) ---- */                         \
    X(add_forward, (float *out, const float *a, const float *b, size_t n))                   \
    X(add_backward, (float *da, float *db, const float *dout, size_t n))                     \
    X(channel_scale_forward, (float *out,         /* (N, C) */                               \
                              const float *inp,   /* (N, C) */                               \
                              const float *scale, /* (C) */                                  \
                              int N, int C))                                                 \
    X(channel_scale_backward, (float *dinp, float *dscale, const float *dout,                \
                               const float *inp, const float *scale, int N, int C))          \
                                                                                             \
    /* ---- stochastic depth: out = inp * keep_scale[b] per sample; keep_scale is 0          \
     * (dropped) or 1/(1-rate) (kept), drawn by the runtime's RNG ---- */                    \
    X(drop_path_forward, (float *out, const float *inp, const float *keep_scale, /* (B) */   \
                          int B, size_t per_sample))                                         \
    X(drop_path_backward, (float *dinp, const float *dout, const float *keep_scale,          \
                           int B, size_t per_sample))                                        \
                                                                                             \
    /* ---- Bradley-Terry: losses[i] = softplus(-(rc - rr - margin)); loss = mean.           \
     * Gradients of dloss * mean(...) are accumulated into dchosen / drejected. ---- */      \
    X(bt_loss, (float *loss,                      /* (1) */                                  \
                float *losses,                    /* (P) */                                  \
                float *dchosen, float *drejected, /* (P) each, or NULL */                    \
                const float *rc, const float *rr, /* (P) */                                  \
                const float *margin,              /* (P) or NULL */                          \
                int P, float dloss))                                                         \
                                                                                             \
    /* ---- fused shortcut-aware loss (spec/algorithm.md), one pass:                         \
     * dm = mc - mr, db = bc - br, Lm = softplus(-dm), Lb = softplus(-db),                   \
     * w = eps/2 + Lb / (eps + Lb + Lm) (a constant for the gradient),                       \
     * loss = mean(w * Lm + Lb); gradients of dloss * loss accumulated into the four         \
     * d-vectors; w, Lm, Lb written for logging. Both backends compute a pair with           \
     * kernels/scalar.h. ---- */                                                      \
    X(shortcut_loss, (float *loss,                /* (1) */                                  \
                      float *w, float *lm, float *lb, /* (P) each */                         \
                      float *dmc, float *dmr, float *dbc, float *dbr, /* (P) or NULL */      \
                      const float *mc, const float *mr, /* main rewards (P) */               \
                      const float *bc, const float *br, /* bias rewards (P) */               \
                      int P, float eps, float dloss))                                        \
                                                                                             \
    /* ---- AdamW as torch.optim.AdamW: p *= 1 - lr*wd; m,v moments of g = grad*grad_scale;  \
     * p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). t >= 1. params16, when not       \
     * NULL, is a bf16 copy of params that the update rewrites (round to nearest even). */   \
    X(adamw_update, (float *params, uint16_t *params16, const float *grads, float *m,        \
                     float *v, size_t n, float lr, float beta1, float beta2, float eps,      \
                     float weight_decay, int t, float grad_scale))                           \
                                                                                             \
    /* ---- global gradient norm: out[0] = sum(g^2) (accumulated in double, fixed order).    \
     * out is a HOST pointer on every table (the CUDA one waits for the result). ---- */     \
    X(sum_squares, (float *out, const float *g, size_t n))                                   \
    /* clipping and gradient-accumulation scaling: x *= s */                                 \
    X(scale_inplace, (float *x, float s, size_t n))                                          \
    /* ---- clipping without a host round trip (train/optim.c), all in device memory:        \
     * sq[0] += sum(g^2) rounded to float as sum_squares writes it (so the norm is the same); \
     * coef[0] = torch's clip_grad_norm_ coefficient min(1, max_norm / (sqrt(sq) + 1e-6))     \
     * in double (1 when max_norm <= 0), NaN when sqrt(sq) is not finite; adamw_update with   \
     * grad_scale read from coef, updating nothing when it is not finite (a skipped step). */ \
    X(sum_squares_acc, (double *sq,               /* (1) */                                  \
                        const float *g, size_t n))                                           \
    X(clip_coef, (float *coef,                    /* (1) */                                  \
                  const double *sq,               /* (1) */                                  \
                  double max_norm))                                                          \
    X(adamw_update_scaled, (float *params, uint16_t *params16, const float *grads, float *m, \
                            float *v, size_t n, float lr, float beta1, float beta2,          \
                            float eps, float weight_decay, int t,                            \
                            const float *grad_scale /* (1) */))                              \
                                                                                             \
    /* ---- bf16 storage (activations staged through fp32 by runtime/ops.c where an op has \
     * no *_x16 entry, the weight copies of runtime/memory.c): round to nearest even (NaN    \
     * stays NaN), exact widening */                                                         \
    X(f32_to_bf16, (uint16_t *dst, const float *src, size_t n))                              \
    X(bf16_to_f32, (float *dst, const uint16_t *src, size_t n))                             \
                                                                                             \
    /* ---- attention_forward/backward for a subset of the query rows: q, out, dout, dq      \
     * hold the M rows rows[m] = b*T + t (increasing, each t < lengths[b]) of the (B, T)     \
     * token grid; k, v, dk, dv, lengths, seg, causal, precision as there, so row m sees the \
     * keys token (b, t) sees there (the decoder's last layer at the rewarded rows): the CPU \
     * gives the full op's bits at those rows, CUDA its values up to the summation order     \
     * (kernels/cuda/attention_rows.cu) ---- */                                              \
    X(attention_rows_forward, (float *out,        /* (M, NH, HD) */                          \
                               float *lse,        /* (NH, M) */                              \
                               const float *q,    /* (M, NH, HD) */                          \
                               const float *k,    /* (B, T, KV, HD) */                       \
                               const float *v,    /* (B, T, KV, HD) */                       \
                               const int *rows,   /* (M) */                                  \
                               const int *lengths, const int *seg, /* (B) (B, T) or NULL */  \
                               int M, int B, int T, int NH, int KV, int HD, int causal,      \
                               int precision))                                               \
    X(attention_rows_backward, (float *dq, float *dk, float *dv, /* shapes of q, k, v */     \
                                const float *dout, const float *out, const float *lse,       \
                                const float *q, const float *k, const float *v,              \
                                const int *rows, const int *lengths, const int *seg,         \
                                int M, int B, int T, int NH, int KV, int HD, int causal,     \
                                int precision))

#define KERNEL_OPS_OPTIONAL(X) \
    /* matmul_forward/backward with a bf16-stored input, which a bf16 GEMM takes as it is;   \
     * forward writes out (fp32) when not NULL, else out16 (bf16, rounded once from the      \
     * fp32 accumulator: a bf16 activation) (NULL, as on the CPU: runtime/ops.c widens the   \
     * input through fp32 instead) */                                                        \
    X(matmul_forward_x16, (float *out, uint16_t *out16, /* (N, OC), one of them */           \
                           const uint16_t *inp, const float *weight,                         \
                           const uint16_t *weight16, const float *bias, int N, int C,        \
                           int OC, int precision))                                           \
    X(matmul_backward_x16, (float *dinp, float *dweight, float *dbias, const float *dout,    \
                            const uint16_t *inp, const float *weight,                        \
                            const uint16_t *weight16, int N, int C, int OC, int precision))  \
                                                                                             \
    /* ---- the non-GEMM ops over bf16-stored activations (runtime/ops.c calls them when     \
     * every activation of the op is bf16; NULL on the CPU, which stages through fp32).      \
     * Same semantics as the op above of the same name on inputs widened exactly from bf16,  \
     * outputs rounded once to nearest even; statistics, reductions and every gradient in   \
     * fp32 (gradients are never bf16). Parameters (weight, bias, scale, the embedding       \
     * table) stay fp32. ---- */                                                             \
    X(embedding_forward_x16, (uint16_t *out, const int *ids, const float *table, int N, int C)) \
    /* out[n] = x[ids[n]] over bf16 rows (op_gather_rows) */                                 \
    X(gather_rows_x16, (uint16_t *out, const int *ids, const uint16_t *x, int N, int C))     \
    X(layernorm_forward_x16, (uint16_t *out, float *mean, float *rstd, const uint16_t *inp,  \
                              const float *weight, const float *bias, int N, int C,          \
                              float eps))                                                    \
    X(layernorm_backward_x16, (float *dinp, float *dweight, float *dbias, const float *dout, \
                               const uint16_t *inp, const float *weight, const float *mean,  \
                               const float *rstd, int N, int C))                             \
    X(add_layernorm_forward_x16, (uint16_t *sum, uint16_t *out, float *mean, float *rstd,    \
                                  const uint16_t *x, const uint16_t *a, const float *weight, \
                                  const float *bias, int N, int C, float eps))               \
    X(rmsnorm_forward_x16, (uint16_t *out, float *rstd, const uint16_t *inp,                 \
                            const float *weight, int N, int C, float eps))                   \
    X(rmsnorm_backward_x16, (float *dinp, float *dweight, const float *dout,                 \
                             const uint16_t *inp, const float *weight, const float *rstd,    \
                             int N, int C))                                                  \
    /* sum is rounded to bf16 before the statistics: the norm sees the stored sum */         \
    X(add_rmsnorm_forward_x16, (uint16_t *sum, uint16_t *out, float *rstd, const uint16_t *x, \
                                const uint16_t *a, const float *weight, int N, int C,        \
                                float eps))                                                  \
    X(gelu_forward_x16, (uint16_t *out, const uint16_t *inp, size_t n))                      \
    X(gelu_backward_x16, (float *dinp, const float *dout, const uint16_t *inp, size_t n))    \
    X(swiglu_forward_x16, (uint16_t *out, const uint16_t *gate, const uint16_t *up,          \
                           size_t n))                                                        \
    X(swiglu_backward_x16, (float *dgate, float *dup, const float *dout,                     \
                            const uint16_t *gate, const uint16_t *up, size_t n))             \
    X(rope_forward_x16, (uint16_t *out, const uint16_t *inp, const int *pos, int N, int NH,  \
                         int HD, float theta))                                               \
    X(im2col_forward_x16, (uint16_t *cols, const float *img, int B, int CH, int H, int W,    \
                           int p))                                                           \
    X(pixel_shuffle_forward_x16, (uint16_t *out, const uint16_t *inp, int B, int G, int C))  \
    X(add_forward_x16, (uint16_t *out, const uint16_t *a, const uint16_t *b, size_t n))      \
    X(channel_scale_forward_x16, (uint16_t *out, const uint16_t *inp, const float *scale,    \
                                  int N, int C))                                             \
    X(channel_scale_backward_x16, (float *dinp, float *dscale, const float *dout,            \
                                   const uint16_t *inp, const float *scale, int N, int C))   \
    X(drop_path_forward_x16, (uint16_t *out, const uint16_t *inp, const float *keep_scale,   \
                              int B, size_t per_sample))                                    \
    /* attention over bf16 q, k, v, out (runtime/ops.c calls these when all four are bf16). \
     * The entry decides whether it takes the call: *native = 1 when it ran it on the bf16  \
     * data (CUDA: a bf16 precision with cuDNN or the FA2 kernels chosen, attention.cu),    \
     * else *native = 0 and nothing is done: the caller stages through fp32 and calls       \
     * attention_forward/backward (CUDA: head dims neither covers, KP_FP32). Where native,  \
     * the same bits as that staged call: out rounded once from fp32, dout fp32. */         \
    X(attention_forward_x16, (int *native, uint16_t *out, float *lse, const uint16_t *q,    \
                              const uint16_t *k, const uint16_t *v, const int *lengths,     \
                              const int *seg, int B, int T, int NH, int KV, int HD,          \
                              int causal, int precision))                                    \
    X(attention_backward_x16, (int *native, float *dq, float *dk, float *dv,                \
                               const float *dout, const uint16_t *out, const float *lse,     \
                               const uint16_t *q, const uint16_t *k, const uint16_t *v,      \
                               const int *lengths, const int *seg, int B, int T, int NH,     \
                               int KV, int HD, int causal, int precision))                   \
    /* attention_rows over bf16 q, k, v, out, the same convention (*native: the entry took   \
     * the call; else the caller stages through fp32): out rounded once from fp32, dout and  \
     * the gradients fp32 (CUDA: takes every call, the staged path's bits) */               \
    X(attention_rows_forward_x16, (int *native, uint16_t *out, float *lse,                  \
                                   const uint16_t *q, const uint16_t *k, const uint16_t *v,  \
                                   const int *rows, const int *lengths, const int *seg,      \
                                   int M, int B, int T, int NH, int KV, int HD, int causal,  \
                                   int precision))                                           \
    X(attention_rows_backward_x16, (int *native, float *dq, float *dk, float *dv,           \
                                    const float *dout, const uint16_t *out, const float *lse, \
                                    const uint16_t *q, const uint16_t *k, const uint16_t *v, \
                                    const int *rows, const int *lengths, const int *seg,     \
                                    int M, int B, int T, int NH, int KV, int HD, int causal, \
                                    int precision))                                          \
                                                                                             \
    /* ---- the fused residual add + norm's backward in one pass: g = dsum + the norm's      \
     * input gradient from dout (dsum NULL: 0), dx += g, da += g (each may be NULL), the     \
     * weight/bias gradients as the norm's backward; the values of layernorm_backward /      \
     * rmsnorm_backward into the sum's gradient followed by add_backward (what runtime/ops.c \
     * does where these are NULL, as on the CPU). sum fp32, or bf16 for the _x16 forms ---- */ \
    X(add_layernorm_backward, (float *dx, float *da, /* (N, C) each, or NULL */              \
                               float *dweight, float *dbias, /* (C) each, or NULL */         \
                               const float *dsum, /* (N, C) or NULL */                       \
                               const float *dout, const float *sum, const float *weight,     \
                               const float *mean, const float *rstd, int N, int C))          \
    X(add_rmsnorm_backward, (float *dx, float *da, float *dweight, const float *dsum,        \
                             const float *dout, const float *sum, const float *weight,       \
                             const float *rstd, int N, int C))                               \
    X(add_layernorm_backward_x16, (float *dx, float *da, float *dweight, float *dbias,       \
                                   const float *dsum, const float *dout, const uint16_t *sum, \
                                   const float *weight, const float *mean, const float *rstd, \
                                   int N, int C))                                            \
    X(add_rmsnorm_backward_x16, (float *dx, float *da, float *dweight, const float *dsum,    \
                                 const float *dout, const uint16_t *sum, const float *weight, \
                                 const float *rstd, int N, int C))

#define KERNEL_OPS_CPU_FIRST(X) /* none at present */
/* clang-format on */

#endif
