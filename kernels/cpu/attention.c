/* attention.c - scaled dot-product attention, forward and backward, with grouped-query heads,
 * right-padded sequences and an optional causal mask (kernels/kernels.h is the contract).
 * B batch, T tokens, NH query heads, KV key/value heads (query head h reads kv head
 * h / (NH/KV)), HD head dim; L = lengths[b] valid tokens of sequence b.
 *
 * The work is split here and done by the kernels of the CPU's ISA (kernels/cpu/simd.h,
 * simd_attention.h: keys and values packed transposed, everything vectorised over keys, a
 * polynomial expf). The forward computes a query row's scores, their softmax and its product
 * with the values in one pass over a per-task buffer of L scores; one task is a block of QB
 * query rows of one sequence and head. The backward recomputes each probability from q, k
 * and the saved log-sum-exp (P = exp(S - lse), D_t = dout_t . out_t, dS = P * (dout . v^T -
 * D); dq = scale * dS . k, dk = scale * dS^T . q, dv = P^T . dout); one task owns a
 * (sequence, kv head) pair: the dk/dv rows of that kv head and the dq rows of its query
 * heads, visited in a fixed order. Every output is thus formed by one task in one order:
 * results do not depend on the thread count. */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd.h"
#include "runtime/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { QB = 32 }; /* query rows per forward task */

const AttnKernel *cpu_attn_kernel(CpuIsa isa) {
    switch (isa) {
    case CPU_ISA_AVX512: return cpu_attn_avx512.forward_rows ? &cpu_attn_avx512 : &cpu_attn_generic;
    case CPU_ISA_AVX2: return cpu_attn_avx2.forward_rows ? &cpu_attn_avx2 : &cpu_attn_generic;
    default: return &cpu_attn_generic;
    }
}

static float *scratch_alloc(size_t n) {
    float *p = malloc(n * sizeof(float));
    if (!p) MMRM_FATAL("attention: out of memory for %zu floats of scratch", n);
    return p;
}

void cpu_attention_forward(float *out,         /* (B, T, NH, HD) */
                           float *lse,         /* (B, NH, T) */
                           const float *q,     /* (B, T, NH, HD) */
                           const float *k,     /* (B, T, KV, HD) */
                           const float *v,     /* (B, T, KV, HD) */
                           const int *lengths, /* (B) in [0, T] */
                           int B, int T, int NH, int KV, int HD, int causal,
                           int precision) { /* fp32 at every precision */
    (void)precision;
    const AttnKernel *ak = cpu_attn_kernel(cpu_isa_active());
    int group = NH / KV, nblk = (T + QB - 1) / QB;
    float scale = (float)(1.0 / sqrt((double)HD));
    size_t qs = (size_t)NH * HD, ks = (size_t)KV * HD;
#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int blk = 0; blk < nblk; blk++) {
                int L = lengths[b], t0 = blk * QB, tend = t0 + QB < T ? t0 + QB : T;
                size_t q0 = (size_t)b * T * qs + (size_t)h * HD; /* row 0 of sequence, head */
                float *l0 = lse + ((size_t)b * NH + h) * T;
                for (int t = t0 > L ? t0 : L; t < tend; t++) { /* padded rows: zeros */
                    memset(out + q0 + (size_t)t * qs, 0, (size_t)HD * sizeof(float));
                    l0[t] = 0.0f;
                }
                int t1 = tend < L ? tend : L;
                if (t0 >= t1) continue;
                size_t Tp = (size_t)(L + ak->vw - 1) / ak->vw * ak->vw;
                float *scratch = scratch_alloc((2 * (size_t)HD + 1) * Tp);
                size_t kv0 = (size_t)b * T * ks + (size_t)(h / group) * HD;
                ak->forward_rows(out + q0, l0, q + q0, qs, k + kv0, v + kv0, ks, L, t0, t1, HD,
                                 causal, scale, scratch);
                free(scratch);
            }
}

void cpu_attention_backward(float *dq,          /* (B, T, NH, HD) or NULL */
                            float *dk,          /* (B, T, KV, HD) or NULL */
                            float *dv,          /* (B, T, KV, HD) or NULL */
                            const float *dout,  /* (B, T, NH, HD) */
                            const float *out,   /* (B, T, NH, HD) */
                            const float *lse,   /* (B, NH, T) */
                            const float *q,     /* (B, T, NH, HD) */
                            const float *k,     /* (B, T, KV, HD) */
                            const float *v,     /* (B, T, KV, HD) */
                            const int *lengths, /* (B) in [0, T] */
                            int B, int T, int NH, int KV, int HD, int causal,
                            int precision) {
    (void)precision;
    if (!dq && !dk && !dv) return;
    const AttnKernel *ak = cpu_attn_kernel(cpu_isa_active());
    int group = NH / KV;
    float scale = (float)(1.0 / sqrt((double)HD));
    size_t qs = (size_t)NH * HD, ks = (size_t)KV * HD;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int kvh = 0; kvh < KV; kvh++) {
            int L = lengths[b];
            if (L <= 0) continue;
            size_t Tp = (size_t)(L + ak->vw - 1) / ak->vw * ak->vw;
            float *scratch = scratch_alloc((4 * (size_t)HD + 2) * Tp);
            size_t q0 = (size_t)b * T * qs + (size_t)kvh * group * HD;
            size_t kv0 = (size_t)b * T * ks + (size_t)kvh * HD;
            ak->backward_head(dq ? dq + q0 : NULL, dk ? dk + kv0 : NULL, dv ? dv + kv0 : NULL,
                              dout + q0, out + q0, lse + ((size_t)b * NH + (size_t)kvh * group) * T,
                              q + q0, qs, k + kv0, v + kv0, ks, L, T, group, HD, causal, scale,
                              scratch);
            free(scratch);
        }
}
