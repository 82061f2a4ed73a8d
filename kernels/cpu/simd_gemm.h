/* simd_gemm.h - the GEMM block kernel as a template, included once by each
 * kernels/cpu/matmul_<isa>.c after it defines:
 *   GEMM_KERNEL  the GemmKernel constant to define (simd.h)
 *   TGT          a function attribute (target("avx2,fma")) or nothing
 *   VW           floats per vector; MR rows x NV vectors is the register tile
 *   vec, VLOAD(p), VSTORE(p, v), VBCAST(x), VMADD(acc, a, b) (acc + a * b, fused or not)
 * The layout is the Goto/BLIS one: b is packed one k-block (KC rows) at a time into column
 * tiles NR wide (gk_pack_b; matmul.c packs each block once for all threads) and a into row
 * panels MR tall (gk_block), and the micro-kernel holds an MR x NR tile of c in vector
 * registers while it walks k, so every value loaded from the packed panels feeds MR or NR
 * multiply-adds. Each element of c is summed in increasing k from its previous value
 * whatever the block sizes, so the order never depends on how the caller splits c. */
#include "kernels/cpu/simd.h"

#include <string.h>

#define NR (NV * VW)
#define KC 256      /* depth of a packed block: an MR x KC panel of a stays in L1 */
#define NCB (16 * NR) /* columns per task: a packed panel of a feeds NCB / NR micro-tiles */
#define MCB (16 * MR) /* rows per task: each packed panel of b is reused MCB / MR times */

static inline int gk_imin(int a, int b) { return a < b ? a : b; }

#if NV != 2
#error "simd_gemm.h: the micro-kernel is written for NV == 2 vectors per row"
#endif

/* c (MR, NR) with row stride ldc += ap (kc, MR) . bp (kc, NR); both panels are packed. Two
 * accumulator arrays and two named b vectors, not arrays of NV: with [MR][NV] GCC spilled
 * one b vector to the stack and read it back for every multiply-add. */
TGT __attribute__((noinline)) static void gk_micro(float *c, size_t ldc, const float *ap, const float *bp,
                                                 int kc) {
    vec acc0[MR], acc1[MR];
    for (int r = 0; r < MR; r++) {
        acc0[r] = VLOAD(c + r * ldc);
        acc1[r] = VLOAD(c + r * ldc + VW);
    }
    for (int k = 0; k < kc; k++) {
        vec b0 = VLOAD(bp + (size_t)k * NR), b1 = VLOAD(bp + (size_t)k * NR + VW);
        for (int r = 0; r < MR; r++) {
            vec av = VBCAST(ap[k * MR + r]);
            acc0[r] = VMADD(acc0[r], av, b0);
            acc1[r] = VMADD(acc1[r], av, b1);
        }
    }
    for (int r = 0; r < MR; r++) {
        VSTORE(c + r * ldc, acc0[r]);
        VSTORE(c + r * ldc + VW, acc1[r]);
    }
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

/* bp (kc, NR) = b[k0 .. k0+kc, t*NR .. t*NR+NR]: column tile t of one packed k-block;
 * columns past nc are zero. */
TGT static void gk_pack_b(float *bp, const float *b, size_t brs, size_t bcs, int k0, int kc,
                          int nc, int t) {
    int w = gk_imin(NR, nc - t * NR);
    const float *src = b + (size_t)k0 * brs + (size_t)(t * NR) * bcs;
    if (bcs == 1 && w == NR) { /* rows contiguous in j: NV vector copies per k */
        for (int k = 0; k < kc; k++)
            for (int v = 0; v < NV; v++)
                VSTORE(bp + k * NR + v * VW, VLOAD(src + (size_t)k * brs + v * VW));
        return;
    }
    if (bcs == 1) {
        for (int k = 0; k < kc; k++) {
            memcpy(bp + k * NR, src + (size_t)k * brs, (size_t)w * sizeof(float));
            for (int j = w; j < NR; j++) bp[k * NR + j] = 0.0f;
        }
        return;
    }
    if (brs == 1) { /* columns contiguous in k (weight^T): read along k, write strided */
        for (int j = 0; j < w; j++) {
            const float *col = src + (size_t)j * bcs;
            for (int k = 0; k < kc; k++) bp[k * NR + j] = col[k];
        }
        for (int k = 0; k < kc; k++)
            for (int j = w; j < NR; j++) bp[k * NR + j] = 0.0f;
        return;
    }
    for (int k = 0; k < kc; k++)
        for (int j = 0; j < NR; j++) bp[k * NR + j] = j < w ? src[k * brs + j * bcs] : 0.0f;
}

/* c (mc, nc) += a (mc, kc) . the packed k-block bp (its column tiles from c's first column
 * on, gk_pack_b's layout); a is packed here, MR rows at a time. */
TGT static void gk_block(float *c, size_t ldc, const float *a, size_t ars, size_t acs,
                         const float *bp, int mc, int nc, int kc) {
    float ap[KC * MR] __attribute__((aligned(64))); /* 12 KiB at most on the stack */
    for (int ir = 0; ir < mc; ir += MR) {
        int mr = gk_imin(MR, mc - ir);
        gk_pack_a(ap, a, ars, acs, ir, mr, 0, kc);
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

const GemmKernel GEMM_KERNEL = {gk_pack_b, gk_block, MR, NR, KC, MCB, NCB};
