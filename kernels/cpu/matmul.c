/* matmul.c - nn.Linear on the CPU: out = inp . weight^T + bias, and its backward.
 *
 * The forward and both gradient products run through one blocked GEMM,
 * c (M, Nc) += a (M, K) . b (K, Nc), whose operands are given by row and column strides so
 * that a transposed operand (weight^T in the forward, dout^T for dweight) needs no copy of
 * the whole matrix. The layout is the Goto/BLIS one: per task, b is packed block by block
 * (KC x NC) into column tiles NR wide and a into row panels MR tall, and a register-tiled
 * micro-kernel holds an MR x NR tile of c in vector registers while it walks k, so every
 * value loaded from the packed panels feeds MR or NR multiply-adds. Every element of c
 * belongs to exactly one task and is summed in increasing k starting from its previous
 * value: results do not depend on the thread count, the schedule or the vector width
 * (the ISA only picks the tile sizes). Products are a multiply then an add (-std=c11
 * turns off FMA contraction), so each output equals the textbook loop
 * `s = bias; for c: s += inp * w` in float, bit for bit, in every build.
 */
#include "kernels/cpu/cpu.h"

#include <string.h>

/* VW floats per vector register, MR x (NV * VW) micro-tile: the accumulators plus NV
 * operand vectors and one broadcast fit in the register file (16 xmm/ymm, 32 zmm). */
#if defined(__AVX512F__)
#define VW 16
#define MR 12
#elif defined(__AVX__)
#define VW 8
#define MR 6
#else
#define VW 4
#define MR 6
#endif
#define NV 2
#define NR (NV * VW)
#define KC 256      /* depth of a packed block: an MR x KC panel of a stays in L1 */
#define NC 128      /* columns of a packed block: KC x NC of b (128 KiB) stays in L2 */
#define MC (16 * MR) /* rows of c per task: the packed b block is reused this many times */

typedef float vf __attribute__((vector_size(VW * sizeof(float))));

static inline int imin(int a, int b) { return a < b ? a : b; }

/* c (MR, NR) with row stride ldc += ap (kc, MR) . bp (kc, NR); both panels are packed. */
static inline void micro_kernel(float *c, size_t ldc, const float *ap, const float *bp, int kc) {
    vf acc[MR][NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) memcpy(&acc[r][v], c + r * ldc + v * VW, sizeof(vf));
    for (int k = 0; k < kc; k++) {
        vf b[NV];
        memcpy(b, bp + (size_t)k * NR, sizeof b);
        for (int r = 0; r < MR; r++)
            for (int v = 0; v < NV; v++) acc[r][v] += ap[k * MR + r] * b[v];
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) memcpy(c + r * ldc + v * VW, &acc[r][v], sizeof(vf));
}

/* A tile on the right or bottom edge (mr < MR or nr < NR) goes through a full-size copy;
 * the zero padding of the packed panels keeps the copy's extra lanes harmless. */
static void edge_tile(float *c, size_t ldc, const float *ap, const float *bp, int kc, int mr,
                      int nr) {
    float t[MR * NR];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) t[r * NR + j] = r < mr && j < nr ? c[r * ldc + j] : 0.0f;
    micro_kernel(t, NR, ap, bp, kc);
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) c[r * ldc + j] = t[r * NR + j];
}

/* ap (kc, MR) = a[i0 .. i0+mr, k0 .. k0+kc], transposed so that one k is one MR-run;
 * rows past mr are zero. */
static void pack_a(float *ap, const float *a, size_t ars, size_t acs, int i0, int mr, int k0,
                   int kc) {
    for (int k = 0; k < kc; k++) {
        const float *col = a + (size_t)(k0 + k) * acs + (size_t)i0 * ars;
        for (int r = 0; r < MR; r++) ap[k * MR + r] = r < mr ? col[r * ars] : 0.0f;
    }
}

/* bp: for each column tile t of NR columns, a (kc, NR) panel at bp + t * kc * NR holding
 * b[k0 .. k0+kc, j0 + t*NR ..]; columns past nc are zero. */
static void pack_b(float *bp, const float *b, size_t brs, size_t bcs, int k0, int kc, int j0,
                   int nc) {
    for (int t = 0; t * NR < nc; t++) {
        float *panel = bp + (size_t)t * kc * NR;
        int w = imin(NR, nc - t * NR);
        for (int k = 0; k < kc; k++) {
            const float *row = b + (size_t)(k0 + k) * brs + (size_t)(j0 + t * NR) * bcs;
            for (int j = 0; j < NR; j++) panel[k * NR + j] = j < w ? row[j * bcs] : 0.0f;
        }
    }
}

/* c (M, Nc), row stride ldc, += a . b with a[i, k] = a[i*ars + k*acs] (M, K) and
 * b[k, j] = b[k*brs + j*bcs] (K, Nc). With init, c is first set to bias (Nc), or to 0
 * when bias is NULL. */
static void gemm(float *c, size_t ldc, const float *a, size_t ars, size_t acs, const float *b,
                 size_t brs, size_t bcs, int M, int Nc, int K, int init, const float *bias) {
    int mblocks = (M + MC - 1) / MC, nblocks = (Nc + NC - 1) / NC, ntasks = mblocks * nblocks;
#pragma omp parallel for schedule(dynamic) if (ntasks > 1)
    for (int task = 0; task < ntasks; task++) {
        /* packing buffers on the task's stack (KC * (NC + MR) floats, under 150 KiB) */
        float bp[KC * NC] __attribute__((aligned(64)));
        float ap[KC * MR] __attribute__((aligned(64)));
        int i0 = task / nblocks * MC, j0 = task % nblocks * NC;
        int mc = imin(MC, M - i0), nc = imin(NC, Nc - j0);
        if (init)
            for (int i = i0; i < i0 + mc; i++)
                for (int j = j0; j < j0 + nc; j++) c[i * ldc + j] = bias ? bias[j] : 0.0f;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = imin(KC, K - k0);
            pack_b(bp, b, brs, bcs, k0, kc, j0, nc);
            for (int ir = 0; ir < mc; ir += MR) {
                int mr = imin(MR, mc - ir);
                pack_a(ap, a, ars, acs, i0 + ir, mr, k0, kc);
                for (int jr = 0; jr < nc; jr += NR) {
                    int nr = imin(NR, nc - jr);
                    float *ct = c + (i0 + ir) * ldc + j0 + jr;
                    if (mr == MR && nr == NR)
                        micro_kernel(ct, ldc, ap, bp + (size_t)jr * kc, kc);
                    else
                        edge_tile(ct, ldc, ap, bp + (size_t)jr * kc, kc, mr, nr);
                }
            }
        }
    }
}

/* fp32 at every precision: weight16 and precision are the GPU's (op_list.h) */
void cpu_matmul_forward(float *out, const float *inp, const float *weight,
                        const uint16_t *weight16, const float *bias, int N, int C, int OC,
                        int precision) {
    (void)weight16, (void)precision;
    /* out (N, OC) = bias + inp (N, C) . weight^T (C, OC) */
    gemm(out, OC, inp, C, 1, weight, 1, C, N, OC, C, 1, bias);
}

void cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, const uint16_t *weight16, int N,
                         int C, int OC, int precision) {
    (void)weight16, (void)precision;
    if (dinp) /* dinp (N, C) += dout (N, OC) . weight (OC, C) */
        gemm(dinp, C, dout, OC, 1, weight, C, 1, N, C, OC, 0, NULL);
    if (dweight) /* dweight (OC, C) += dout^T (OC, N) . inp (N, C) */
        gemm(dweight, C, dout, 1, OC, inp, C, 1, OC, C, N, 0, NULL);
    if (dbias) {
        /* threads own 64-column ranges (false sharing only at range edges); every column
         * adds its rows in increasing n */
#pragma omp parallel for schedule(static) if (OC > 64)
        for (int o0 = 0; o0 < OC; o0 += 64) {
            int o1 = imin(o0 + 64, OC);
            for (int n = 0; n < N; n++) {
                const float *row = dout + (size_t)n * OC;
                for (int o = o0; o < o1; o++) dbias[o] += row[o];
            }
        }
    }
}
