/* embed.c - the ops that only move values into place, and their scatter-add backwards:
 * token embedding lookup, im2col for the ViT patch embedding (a stride-p, kernel-p
 * convolution done as im2col + matmul) and InternVL's pixel shuffle v2 between the ViT and
 * the connector. Apart from the embedding backward, every output element has exactly one
 * source element, so any split over threads gives the same results; the embedding
 * backward splits over columns (and ids) and adds rows in increasing n. Gradient pointers may be
 * NULL (nothing to do), as everywhere in kernels.h.
 */
#include "kernels/cpu/cpu.h"

#include <string.h>

/* below this many floats moved, waking the thread team costs more than the copy */
#define PARALLEL_MIN 32768

static inline int imin(int a, int b) { return a < b ? a : b; }

void cpu_embedding_forward(float *out, const int *ids, const float *table, int N, int C) {
    /* out (N, C), ids (N) in [0, V), table (V, C) */
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PARALLEL_MIN)
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * C, table + (size_t)ids[n] * C, (size_t)C * sizeof(float));
}

void cpu_embedding_backward(float *dtable, const float *dout, const int *ids, int N, int C,
                            int V) {
    /* dtable (V, C) += scatter of dout (N, C) by ids (N). Repeated ids make rows collide,
     * so each unit of work owns a column range (64 floats: false sharing only at range
     * edges) of the ids in one of nb classes (id mod nb), and every element sums its rows
     * in increasing n. Narrow tables (the head rows of the q/k/v split, hd <= 64 columns)
     * get 8 id classes, so they spread over threads too. */
    if (!dtable) return;
    int ncr = (C + 63) / 64, nb = ncr >= 8 || V < 8 ? 1 : 8;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)N * C >= PARALLEL_MIN)
    for (int cr = 0; cr < ncr; cr++)
        for (int b = 0; b < nb; b++) {
            int c0 = cr * 64, c1 = imin(c0 + 64, C);
            for (int n = 0; n < N; n++) {
                if (nb > 1 && ids[n] % nb != b) continue;
                float *dst = dtable + (size_t)ids[n] * C;
                const float *src = dout + (size_t)n * C;
                for (int c = c0; c < c1; c++) dst[c] += src[c];
            }
        }
}

void cpu_scatter_rows_add(float *dtable, const float *dout, const int *ids, int N, int C) {
    if (!dtable) return;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        float *dst = dtable + (size_t)ids[n] * C;
        const float *src = dout + (size_t)n * C;
        for (int c = 0; c < C; c++) dst[c] += src[c];
    }
}

/* cols (B*Gh*Gw, CH*p*p) with Gh = H/p, Gw = W/p; row (b*Gh + y)*Gw + x holds the patch
 * at grid cell (y, x) in conv-weight order (ch, ky, kx); img (B, CH, H, W). The caller
 * guarantees p divides H and W, so patches tile the image without overlap. */
void cpu_im2col_forward(float *cols, const float *img, int B, int CH, int H, int W, int p) {
    int Gh = H / p, Gw = W / p, K = CH * p * p;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * CH * H * W >= PARALLEL_MIN)
    for (int b = 0; b < B; b++)
        for (int y = 0; y < Gh; y++)
            for (int x = 0; x < Gw; x++) {
                float *row = cols + (((size_t)b * Gh + y) * Gw + x) * K;
                for (int ch = 0; ch < CH; ch++)
                    for (int ky = 0; ky < p; ky++)
                        memcpy(row + (ch * p + ky) * p,
                               img + (((size_t)b * CH + ch) * H + y * p + ky) * W + x * p,
                               (size_t)p * sizeof(float));
            }
}

/* col2im: dimg (B, CH, H, W) += dcols scattered back; patches do not overlap, so each
 * pixel receives exactly one value. */
void cpu_im2col_backward(float *dimg, const float *dcols, int B, int CH, int H, int W, int p) {
    if (!dimg) return;
    int Gh = H / p, Gw = W / p, K = CH * p * p;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * CH * H * W >= PARALLEL_MIN)
    for (int b = 0; b < B; b++)
        for (int y = 0; y < Gh; y++)
            for (int x = 0; x < Gw; x++) {
                const float *row = dcols + (((size_t)b * Gh + y) * Gw + x) * K;
                for (int ch = 0; ch < CH; ch++)
                    for (int ky = 0; ky < p; ky++) {
                        float *dst = dimg + (((size_t)b * CH + ch) * H + y * p + ky) * W + x * p;
                        const float *src = row + (ch * p + ky) * p;
                        for (int kx = 0; kx < p; kx++) dst[kx] += src[kx];
                    }
            }
}

/* out (B, (G/2)^2, 4C): token a*(G/2) + c2 is the concatenation of the grid cells
 * (2a, 2c2), (2a, 2c2+1), (2a+1, 2c2), (2a+1, 2c2+1) of inp (B, G*G, C), i.e. quarter
 * q = 2*dy + dx holds cell (2a+dy, 2c2+dx). This is InternVL's pixel_shuffle with
 * scale 0.5 followed by the v2 transpose (spec/model.md section 2). */
void cpu_pixel_shuffle_forward(float *out, const float *inp, int B, int G, int C) {
    int h = G / 2;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * G * G * C >= PARALLEL_MIN)
    for (int b = 0; b < B; b++)
        for (int a = 0; a < h; a++)
            for (int c2 = 0; c2 < h; c2++)
                for (int q = 0; q < 4; q++) {
                    int cell = (2 * a + q / 2) * G + 2 * c2 + q % 2;
                    memcpy(out + ((((size_t)b * h + a) * h + c2) * 4 + q) * C,
                           inp + ((size_t)b * G * G + cell) * C, (size_t)C * sizeof(float));
                }
}

/* dinp (B, G*G, C) += dout (B, (G/2)^2, 4C) sent back to its cells (a permutation) */
void cpu_pixel_shuffle_backward(float *dinp, const float *dout, int B, int G, int C) {
    if (!dinp) return;
    int h = G / 2;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * G * G * C >= PARALLEL_MIN)
    for (int b = 0; b < B; b++)
        for (int a = 0; a < h; a++)
            for (int c2 = 0; c2 < h; c2++)
                for (int q = 0; q < 4; q++) {
                    int cell = (2 * a + q / 2) * G + 2 * c2 + q % 2;
                    float *dst = dinp + ((size_t)b * G * G + cell) * C;
                    const float *src = dout + ((((size_t)b * h + a) * h + c2) * 4 + q) * C;
                    for (int c = 0; c < C; c++) dst[c] += src[c];
                }
}
