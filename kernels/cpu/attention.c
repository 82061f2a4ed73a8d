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
 * results do not depend on the thread count.
 * Segments (seg, kernels/op_list.h): each sequence's valid tokens are cut into pieces, one
 * per doc, that attend only among themselves (a packed stream costs the sum of its docs'
 * squares, not its total's square); within a doc a row sees two key ranges, the branch-0
 * prefix and its own branch (kr, kernels/cpu/simd.h), and the kernels visit only the vector
 * blocks those ranges touch. Forward tasks are (piece, head, query block), backward tasks
 * (piece, kv head). Without seg a sequence is one piece and the bits are those of the plain
 * causal/padding mask. The rows ops run the same kernels on a subset of the query rows (their
 * tokens passed as ts: simd.h), per (piece, head) / (piece, kv head) holding any of them, so
 * each row gets the bits of the full op. Scratch is allocated once per thread. */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd.h"
#include "runtime/error.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { QB = 128 }; /* query rows per forward task (each packs the keys its rows see) */

const AttnKernel *cpu_attn_kernel(CpuIsa isa) {
    switch (isa) {
    case CPU_ISA_AVX512: return cpu_attn_avx512.forward_rows ? &cpu_attn_avx512 : &cpu_attn_generic;
    case CPU_ISA_AVX2: return cpu_attn_avx2.forward_rows ? &cpu_attn_avx2 : &cpu_attn_generic;
    default: return &cpu_attn_generic;
    }
}

static void *xalloc(size_t n, const char *what) {
    void *p = malloc(n ? n : 1);
    if (!p) MMRM_FATAL("attention: out of memory for %zu bytes of %s", n, what);
    return p;
}
static float *scratch_alloc(size_t n) { return xalloc(n * sizeof(float), "scratch"); }
/* the kernels' Tp for a piece of L tokens (simd_attention.h) */
static size_t attn_tp(const AttnKernel *ak, int L) {
    return (size_t)(L + ak->vw - 1) / ak->vw * ak->vw + ak->vw;
}

/* One piece: the tokens s0 .. s0+len-1 of sequence b that attend among themselves only (a
 * whole sequence without seg, one doc with it). */
typedef struct { int b, s0, len; } Piece;

/* The pieces of every sequence's valid tokens and, with seg, each token's key ranges (kr,
 * 3 ints per token (b, t), relative to its piece's first token: simd.h). Checks seg's
 * convention (kernels/op_list.h) and fails naming the token. Returns the number of pieces. */
static int attn_pieces(const int *lengths, const int *seg, int B, int T, int causal,
                       Piece **pieces, int **krp) {
    int n = 0, cap = B > 0 ? B : 1;
    Piece *pc = xalloc(cap * sizeof *pc, "pieces");
    int *kr = NULL;
    uint64_t *seen = NULL;
    if (seg) {
        kr = xalloc((size_t)3 * B * T * sizeof *kr, "key ranges");
        seen = xalloc(1024 * sizeof *seen, "branch set");
        memset(seen, 0, 1024 * sizeof *seen);
    }
    for (int b = 0; b < B; b++) {
        int L = lengths[b];
        const int *sg = seg ? seg + (size_t)b * T : NULL;
        int *k3 = kr ? kr + (size_t)3 * b * T : NULL;
        for (int t = 0; t < L;) {
            int e = L;
            if (sg) {
                int doc = sg[t] >> 16;
                if (t > 0 && doc < (sg[t - 1] >> 16))
                    MMRM_FATAL("attention: seg of sequence %d token %d: doc %d after doc %d (docs "
                               "must be contiguous and non-decreasing)", b, t, doc, sg[t - 1] >> 16);
                for (e = t + 1; e < L && (sg[e] >> 16) == doc; e++) {}
                int pe = t;
                while (pe < e && (sg[pe] & 0xffff) == 0) pe++;
                for (int r = t; r < pe; r++) {
                    k3[3 * r] = (causal ? r + 1 : pe) - t;
                    k3[3 * r + 1] = k3[3 * r + 2] = k3[3 * r];
                }
                for (int rs = pe, re; rs < e; rs = re) {
                    int br = sg[rs] & 0xffff;
                    if (br == 0 || (seen[br >> 6] >> (br & 63) & 1))
                        MMRM_FATAL("attention: seg of sequence %d token %d: branch %d of doc %d "
                                   "%s (the branch-0 prefix comes first, then each branch "
                                   "contiguously)", b, rs, br, doc,
                                   br == 0 ? "after a branch" : "reappears");
                    seen[br >> 6] |= (uint64_t)1 << (br & 63);
                    for (re = rs + 1; re < e && (sg[re] & 0xffff) == br; re++) {}
                    for (int r = rs; r < re; r++) {
                        k3[3 * r] = pe - t;
                        k3[3 * r + 1] = rs - t;
                        k3[3 * r + 2] = (causal ? r + 1 : re) - t;
                    }
                }
                for (int r = pe; r < e; r++) seen[(sg[r] & 0xffff) >> 6] = 0;
            }
            if (n == cap) {
                cap *= 2;
                Piece *np = realloc(pc, cap * sizeof *pc);
                if (!np) MMRM_FATAL("attention: out of memory for %d pieces", cap);
                pc = np;
            }
            pc[n++] = (Piece){b, t, e - t};
            t = e;
        }
    }
    free(seen);
    *pieces = pc;
    *krp = kr;
    return n;
}

void cpu_attention_forward(float *out,         /* (B, T, NH, HD) */
                           float *lse,         /* (B, NH, T) */
                           const float *q,     /* (B, T, NH, HD) */
                           const float *k,     /* (B, T, KV, HD) */
                           const float *v,     /* (B, T, KV, HD) */
                           const int *lengths, /* (B) in [0, T] */
                           const int *seg,     /* (B, T) or NULL */
                           int B, int T, int NH, int KV, int HD, int causal,
                           int precision) { /* fp32 at every precision */
    (void)precision;
    const AttnKernel *ak = cpu_attn_kernel(cpu_isa_active());
    int group = NH / KV;
    float scale = (float)(1.0 / sqrt((double)HD));
    size_t qs = (size_t)NH * HD, ks = (size_t)KV * HD;
    for (int b = 0; b < B; b++) /* padded rows: zeros */
        for (int t = lengths[b]; t < T; t++) {
            memset(out + ((size_t)b * T + t) * qs, 0, qs * sizeof(float));
            for (int h = 0; h < NH; h++) lse[((size_t)b * NH + h) * T + t] = 0.0f;
        }
    Piece *pc;
    int *kr;
    int np = attn_pieces(lengths, seg, B, T, causal, &pc, &kr), nb = 0;
    for (int i = 0; i < np; i++) nb += (pc[i].len + QB - 1) / QB;
    int(*blk)[2] = xalloc((size_t)(nb ? nb : 1) * sizeof *blk, "blocks"); /* piece, first row */
    for (int i = 0, m = 0; i < np; i++)
        for (int t0 = 0; t0 < pc[i].len; t0 += QB) blk[m][0] = i, blk[m++][1] = t0;
    int maxL = 0;
    for (int i = 0; i < np; i++) maxL = pc[i].len > maxL ? pc[i].len : maxL;
#pragma omp parallel
    {
        float *scratch = scratch_alloc((2 * (size_t)HD + 2 * AK_TILE) * attn_tp(ak, maxL)); /* per thread */
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int x = 0; x < nb; x++)
            for (int h = 0; h < NH; h++) {
                const Piece *p = &pc[blk[x][0]];
                int L = p->len, t0 = blk[x][1], t1 = t0 + QB < L ? t0 + QB : L;
                size_t r0 = (size_t)p->b * T + p->s0;   /* the piece's first token */
                size_t q0 = r0 * qs + (size_t)h * HD;   /* its row of head h */
                size_t kv0 = r0 * ks + (size_t)(h / group) * HD;
                float *l0 = lse + ((size_t)p->b * NH + h) * T + p->s0;
                ak->forward_rows(out + q0, l0, q + q0, qs, k + kv0, v + kv0, ks,
                                 kr ? kr + 3 * r0 : NULL, NULL, L, t0, t1, HD, causal, scale,
                                 scratch);
            }
        free(scratch);
    }
    free(blk);
    free(pc);
    free(kr);
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
                            const int *seg,     /* (B, T) or NULL */
                            int B, int T, int NH, int KV, int HD, int causal,
                            int precision) { /* fp32 at every precision */
    (void)precision;
    if (!dq && !dk && !dv) return;
    const AttnKernel *ak = cpu_attn_kernel(cpu_isa_active());
    int group = NH / KV;
    float scale = (float)(1.0 / sqrt((double)HD));
    size_t qs = (size_t)NH * HD, ks = (size_t)KV * HD;
    Piece *pc;
    int *kr;
    int np = attn_pieces(lengths, seg, B, T, causal, &pc, &kr);
    int maxL = 0;
    for (int i = 0; i < np; i++) maxL = pc[i].len > maxL ? pc[i].len : maxL;
#pragma omp parallel
    {
        float *scratch = scratch_alloc((4 * (size_t)HD + 4 * AK_TILE) * attn_tp(ak, maxL)); /* per thread */
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int i = 0; i < np; i++)
            for (int kvh = 0; kvh < KV; kvh++) {
                const Piece *p = &pc[i];
                size_t r0 = (size_t)p->b * T + p->s0;
                size_t q0 = r0 * qs + (size_t)kvh * group * HD;
                size_t kv0 = r0 * ks + (size_t)kvh * HD;
                ak->backward_head(dq ? dq + q0 : NULL, dk ? dk + kv0 : NULL, dv ? dv + kv0 : NULL,
                                  dout + q0, out + q0,
                                  lse + ((size_t)p->b * NH + (size_t)kvh * group) * T + p->s0,
                                  q + q0, qs, k + kv0, v + kv0, ks, kr ? kr + 3 * r0 : NULL, NULL,
                                  p->len, p->len, T, group, HD, causal, scale, scratch);
            }
        free(scratch);
    }
    free(pc);
    free(kr);
}

/* The query rows of the rows ops (kernels/op_list.h) by piece: ts (M) each row's token in
 * its piece, first (np + 1) the rows of piece i are first[i] .. first[i+1]-1. Fails naming
 * a row that is out of order or not a valid token. */
static void rows_by_piece(const int *rows, int M, const Piece *pc, int np, int T, int *ts,
                          int *first) {
    int i = 0;
    for (int m = 0; m < M; m++) {
        if (m > 0 && rows[m] <= rows[m - 1])
            MMRM_FATAL("attention rows: row %d (%d) after %d: the rows must increase", m, rows[m],
                       rows[m - 1]);
        int b = rows[m] / T, t = rows[m] % T;
        while (i < np && (pc[i].b < b || (pc[i].b == b && pc[i].s0 + pc[i].len <= t)))
            first[++i] = m;
        if (rows[m] < 0 || i == np || pc[i].b != b || t < pc[i].s0)
            MMRM_FATAL("attention rows: row %d (%d) is not a valid token (sequence %d token %d)",
                       m, rows[m], b, t);
        ts[m] = t - pc[i].s0;
    }
    while (i < np) first[++i] = M;
}

void cpu_attention_rows_forward(float *out,         /* (M, NH, HD) */
                                float *lse,         /* (NH, M) */
                                const float *q,     /* (M, NH, HD) */
                                const float *k,     /* (B, T, KV, HD) */
                                const float *v,     /* (B, T, KV, HD) */
                                const int *rows,    /* (M) */
                                const int *lengths, /* (B) in [0, T] */
                                const int *seg,     /* (B, T) or NULL */
                                int M, int B, int T, int NH, int KV, int HD, int causal,
                                int precision) { /* fp32 at every precision */
    (void)precision;
    const AttnKernel *ak = cpu_attn_kernel(cpu_isa_active());
    int group = NH / KV;
    float scale = (float)(1.0 / sqrt((double)HD));
    size_t qs = (size_t)NH * HD, ks = (size_t)KV * HD;
    Piece *pc;
    int *kr;
    int np = attn_pieces(lengths, seg, B, T, causal, &pc, &kr), maxL = 0;
    int *ts = xalloc((size_t)(M ? M : 1) * sizeof *ts, "rows"), *first = xalloc((np + 1) * sizeof *first, "rows");
    first[0] = 0;
    rows_by_piece(rows, M, pc, np, T, ts, first);
    for (int i = 0; i < np; i++) maxL = pc[i].len > maxL ? pc[i].len : maxL;
#pragma omp parallel
    {
        float *scratch = scratch_alloc((2 * (size_t)HD + 2 * AK_TILE) * attn_tp(ak, maxL));
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int i = 0; i < np; i++)
            for (int h = 0; h < NH; h++) {
                const Piece *p = &pc[i];
                int m0 = first[i], n = first[i + 1] - m0;
                if (n == 0) continue;
                size_t r0 = (size_t)p->b * T + p->s0, kv0 = r0 * ks + (size_t)(h / group) * HD;
                size_t q0 = (size_t)m0 * qs + (size_t)h * HD;
                ak->forward_rows(out + q0, lse + (size_t)h * M + m0, q + q0, qs, k + kv0, v + kv0,
                                 ks, kr ? kr + 3 * r0 : NULL, ts + m0, p->len, 0, n, HD, causal,
                                 scale, scratch);
            }
        free(scratch);
    }
    free(ts);
    free(first);
    free(pc);
    free(kr);
}

void cpu_attention_rows_backward(float *dq,          /* (M, NH, HD) or NULL */
                                 float *dk,          /* (B, T, KV, HD) or NULL */
                                 float *dv,          /* (B, T, KV, HD) or NULL */
                                 const float *dout,  /* (M, NH, HD) */
                                 const float *out,   /* (M, NH, HD) */
                                 const float *lse,   /* (NH, M) */
                                 const float *q,     /* (M, NH, HD) */
                                 const float *k,     /* (B, T, KV, HD) */
                                 const float *v,     /* (B, T, KV, HD) */
                                 const int *rows,    /* (M) */
                                 const int *lengths, /* (B) in [0, T] */
                                 const int *seg,     /* (B, T) or NULL */
                                 int M, int B, int T, int NH, int KV, int HD, int causal,
                                 int precision) { /* fp32 at every precision */
    (void)precision;
    if (!dq && !dk && !dv) return;
    const AttnKernel *ak = cpu_attn_kernel(cpu_isa_active());
    int group = NH / KV;
    float scale = (float)(1.0 / sqrt((double)HD));
    size_t qs = (size_t)NH * HD, ks = (size_t)KV * HD;
    Piece *pc;
    int *kr;
    int np = attn_pieces(lengths, seg, B, T, causal, &pc, &kr), maxL = 0;
    int *ts = xalloc((size_t)(M ? M : 1) * sizeof *ts, "rows"), *first = xalloc((np + 1) * sizeof *first, "rows");
    first[0] = 0;
    rows_by_piece(rows, M, pc, np, T, ts, first);
    for (int i = 0; i < np; i++) maxL = pc[i].len > maxL ? pc[i].len : maxL;
#pragma omp parallel
    {
        float *scratch = scratch_alloc((4 * (size_t)HD + 4 * AK_TILE) * attn_tp(ak, maxL));
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int i = 0; i < np; i++)
            for (int kvh = 0; kvh < KV; kvh++) {
                const Piece *p = &pc[i];
                int m0 = first[i], n = first[i + 1] - m0;
                if (n == 0) continue;
                size_t r0 = (size_t)p->b * T + p->s0, kv0 = r0 * ks + (size_t)kvh * HD;
                size_t q0 = (size_t)m0 * qs + (size_t)kvh * group * HD;
                ak->backward_head(dq ? dq + q0 : NULL, dk ? dk + kv0 : NULL, dv ? dv + kv0 : NULL,
                                  dout + q0, out + q0, lse + (size_t)kvh * group * M + m0, q + q0,
                                  qs, k + kv0, v + kv0, ks, kr ? kr + 3 * r0 : NULL, ts + m0, n,
                                  p->len, M, group, HD, causal, scale, scratch);
            }
        free(scratch);
    }
    free(ts);
    free(first);
    free(pc);
    free(kr);
}
