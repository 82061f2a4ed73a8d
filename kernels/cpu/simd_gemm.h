/* simd_gemm.h - the GEMM block kernel as a template, included once by each
 * kernels/cpu/matmul_<isa>.c after it defines:
 *   GEMM_KERNEL  the GemmKernel constant to define (simd.h)
 *   TGT          a function attribute (target("avx2,fma")) or nothing
 *   VW           floats per vector; MR rows x NV vectors is the register tile
 *   vec, VLOAD(p), VSTORE(p, v), VBCAST(x), VMADD(acc, a, b) (acc + a * b, fused or not)
 * The layout is the Goto/BLIS one: b is packed block by block (KC x nc) into column tiles
 * NR wide and a into row panels MR tall, and the micro-kernel holds an MR x NR tile of c in
 * vector registers while it walks k, so every value loaded from the packed panels feeds MR
 * or NR multiply-adds. Each element of c is summed in increasing k from its previous value
 * whatever the block sizes, so the order never depends on how the caller splits c. */
#include "kernels/cpu/simd.h"

#include <string.h>

#define NR (NV * VW)
#define KC 256      /* depth of a packed block: an MR x KC panel of a stays in L1 */
#define NCB 128     /* columns of a packed block: KC x NCB of b (128 KiB) stays in L2 */
#define MCB (16 * MR) /* rows per block: the packed b block is reused this many times */

static inline int gk_imin(int a, int b) { return a < b ? a : b; }

/* c (MR, NR) with row stride ldc += ap (kc, MR) . bp (kc, NR); both panels are packed. */
TGT static inline void gk_micro(float *c, size_t ldc, const float *ap, const float *bp, int kc) {
    vec acc[MR][NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = VLOAD(c + r * ldc + v * VW);
    for (int k = 0; k < kc; k++) {
        vec bv[NV];
        for (int v = 0; v < NV; v++) bv[v] = VLOAD(bp + (size_t)k * NR + v * VW);
        for (int r = 0; r < MR; r++) {
            vec av = VBCAST(ap[k * MR + r]);
            for (int v = 0; v < NV; v++) acc[r][v] = VMADD(acc[r][v], av, bv[v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) VSTORE(c + r * ldc + v * VW, acc[r][v]);
}

/* A tile on the right or bottom edge (mr < MR or nr < NR) goes through a full-size copy;
 * the zero padding of the packed panels keeps the copy's extra lanes harmless. */
TGT static void gk_edge(float *c, size_t ldc, const float *ap, const float *bp, int kc, int mr,
                        int nr) {
    float t[MR * NR] __attribute__((aligned(64)));
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) t[r * NR + j] = r < mr && j < nr ? c[r * ldc + j] : 0.0f;
    gk_micro(t, NR, ap, bp, kc);
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) c[r * ldc + j] = t[r * NR + j];
}

/* ap (kc, MR) = a[i0 .. i0+mr, k0 .. k0+kc], transposed so that one k is one MR-run;
 * rows past mr are zero. */
TGT static void gk_pack_a(float *ap, const float *a, size_t ars, size_t acs, int i0, int mr,
                          int k0, int kc) {
    if (acs == 1 && mr == MR) { /* rows contiguous in k: read MR rows side by side */
        const float *row0 = a + (size_t)i0 * ars + k0;
        for (int k = 0; k < kc; k++)
            for (int r = 0; r < MR; r++) ap[k * MR + r] = row0[r * ars + k];
        return;
    }
    for (int k = 0; k < kc; k++) {
        const float *col = a + (size_t)(k0 + k) * acs + (size_t)i0 * ars;
        for (int r = 0; r < MR; r++) ap[k * MR + r] = r < mr ? col[r * ars] : 0.0f;
    }
}

/* bp: for each column tile t of NR columns, a (kc, NR) panel at bp + t * kc * NR holding
 * b[k0 .. k0+kc, t*NR ..]; columns past nc are zero. */
TGT static void gk_pack_b(float *bp, const float *b, size_t brs, size_t bcs, int k0, int kc,
                          int nc) {
    for (int t = 0; t * NR < nc; t++) {
        float *panel = bp + (size_t)t * kc * NR;
        int w = gk_imin(NR, nc - t * NR);
        if (bcs == 1 && w == NR) {
            for (int k = 0; k < kc; k++)
                memcpy(panel + k * NR, b + (size_t)(k0 + k) * brs + (size_t)t * NR,
                       NR * sizeof(float));
            continue;
        }
        for (int k = 0; k < kc; k++) {
            const float *row = b + (size_t)(k0 + k) * brs + (size_t)(t * NR) * bcs;
            for (int j = 0; j < NR; j++) panel[k * NR + j] = j < w ? row[j * bcs] : 0.0f;
        }
    }
}

TGT static void gk_block(float *c, size_t ldc, const float *a, size_t ars, size_t acs,
                         const float *b, size_t brs, size_t bcs, int mc, int nc, int K) {
    /* packing buffers on the caller's stack (KC * (NCB + MR) floats, under 150 KiB) */
    float bp[KC * NCB] __attribute__((aligned(64)));
    float ap[KC * MR] __attribute__((aligned(64)));
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = gk_imin(KC, K - k0);
        gk_pack_b(bp, b, brs, bcs, k0, kc, nc);
        for (int ir = 0; ir < mc; ir += MR) {
            int mr = gk_imin(MR, mc - ir);
            gk_pack_a(ap, a, ars, acs, ir, mr, k0, kc);
            for (int jr = 0; jr < nc; jr += NR) {
                int nr = gk_imin(NR, nc - jr);
                float *ct = c + (size_t)ir * ldc + jr;
                if (mr == MR && nr == NR)
                    gk_micro(ct, ldc, ap, bp + (size_t)jr * kc, kc);
                else
                    gk_edge(ct, ldc, ap, bp + (size_t)jr * kc, kc, mr, nr);
            }
        }
    }
}

const GemmKernel GEMM_KERNEL = {gk_block, MCB, NCB};
