/* parity_mma.c - the tensor-core primitives of kernels/cuda/mma.cuh (through the test
 * kernels of mma_kernels.cu) against the PTX ISA's documented layouts and a plain product:
 *   - ldmatrix x1/x2/x4, plain and .trans: every register of every lane against the
 *     documented mapping (register i of lane l: row l/4, columns 2(l%4), 2(l%4)+1 of matrix
 *     i, whose row r comes from lane 8i+r's address; .trans: rows 2(l%4), 2(l%4)+1 of column
 *     l/4), from rows scattered by a permutation, compared exactly;
 *   - one mma.sync m16n8k16 (fragments built from the documented layout) and a 64x64x64
 *     product through cp.async + ldmatrix + mma (B given both ways), against the product
 *     of the same bf16 values summed in double, within fp32 accumulation (rel 2e-6). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/scalar.h"
#include "tests/gpu/parity.h"

void mma_test_ldmatrix(uint32_t *out, const uint16_t *src, const int *perm, int mode);
void mma_test_single(float *D, const uint16_t *A, const uint16_t *B, const float *C);
void mma_test_tiled(float *D, const uint16_t *A, const uint16_t *B, int btrans, int nvalid);

static float bf16_value(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* n random bf16 values in [-1, 1] (bits into h, values into f) */
static void rand_bf16(Parity *p, uint16_t *h, float *f, size_t n) {
    float *x = h_rand(p, n, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        h[i] = kscalar_bf16_rn(x[i]);
        f[i] = bf16_value(h[i]);
    }
    free(x);
}

static void *dev_copy(const void *h, size_t bytes) {
    void *d = cuda_malloc(bytes);
    cuda_copy_h2d(d, h, bytes);
    return d;
}

static void check_ldmatrix(Parity *p) {
    uint16_t src[32 * 8];
    int perm[32];
    for (int i = 0; i < 32 * 8; i++) src[i] = (uint16_t)(i * 97 + 13); /* distinct */
    for (int l = 0; l < 32; l++) perm[l] = (l * 13 + 5) % 32;
    uint16_t *d_src = dev_copy(src, sizeof src);
    int *d_perm = dev_copy(perm, sizeof perm);
    uint32_t *d_out = cuda_malloc(32 * 4 * sizeof(uint32_t));
    for (int mode = 0; mode < 6; mode++) {
        const int nmat = 1 << (mode % 3), trans = mode >= 3;
        uint32_t out[32 * 4];
        mma_test_ldmatrix(d_out, d_src, d_perm, mode);
        cuda_copy_d2h(out, d_out, sizeof out);
        float ref[32 * 4 * 2], got[32 * 4 * 2];
        size_t n = 0;
        for (int l = 0; l < 32; l++)
            for (int i = 0; i < nmat; i++)
                for (int half = 0; half < 2; half++) {
                    int row, col; /* within matrix i */
                    if (!trans) row = l / 4, col = 2 * (l % 4) + half;
                    else row = 2 * (l % 4) + half, col = l / 4;
                    ref[n] = src[8 * perm[8 * i + row] + col];
                    got[n] = (float)((out[l * 4 + i] >> (16 * half)) & 0xffffu);
                    n++;
                }
        parity_check(p, parity_name("ldmatrix x%d%s: registers vs the PTX layout", nmat,
                                    trans ? ".trans" : ""),
                     ref, got, n, 0.0);
    }
    d_free(d_src);
    d_free(d_perm);
    d_free(d_out);
}

static void check_single(Parity *p) {
    uint16_t A[16 * 16], B[16 * 8];
    float Af[16 * 16], Bf[16 * 8];
    rand_bf16(p, A, Af, 16 * 16);
    rand_bf16(p, B, Bf, 16 * 8);
    float *C = h_rand(p, 16 * 8, -1.0f, 1.0f), ref[16 * 8], got[16 * 8];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 8; j++) {
            double s = C[i * 8 + j];
            for (int k = 0; k < 16; k++) s += (double)Af[i * 16 + k] * Bf[k * 8 + j];
            ref[i * 8 + j] = (float)s;
        }
    uint16_t *dA = dev_copy(A, sizeof A), *dB = dev_copy(B, sizeof B);
    float *dC = d_upload(C, 16 * 8), *dD = cuda_malloc(sizeof got);
    mma_test_single(dD, dA, dB, dC);
    d_download(got, dD, 16 * 8);
    parity_check(p, "mma m16n8k16 bf16: D = A.B + C, fragments per the PTX layout", ref, got,
                 16 * 8, 2e-6);
    d_free(dA);
    d_free(dB);
    d_free(dC);
    d_free(dD);
    free(C);
}

static void check_tiled(Parity *p) {
    enum { N = 64 };
    const int nvalid = 61; /* A rows 61..63 are zero-filled by cp.async */
    uint16_t *A = malloc(N * N * 2), *B = malloc(N * N * 2), *Bt = malloc(N * N * 2);
    float *Af = malloc(N * N * 4), *Bf = malloc(N * N * 4), *ref = malloc(N * N * 4);
    float *got = malloc(N * N * 4);
    if (!A || !B || !Bt || !Af || !Bf || !ref || !got) abort();
    rand_bf16(p, A, Af, N * N);
    rand_bf16(p, B, Bf, N * N);
    for (int k = 0; k < N; k++)
        for (int n = 0; n < N; n++) Bt[n * N + k] = B[k * N + n];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < N && i < nvalid; k++) s += (double)Af[i * N + k] * Bf[k * N + j];
            ref[i * N + j] = (float)s;
        }
    uint16_t *dA = dev_copy(A, N * N * 2), *dB = dev_copy(B, N * N * 2), *dBt = dev_copy(Bt, N * N * 2);
    float *dD = cuda_malloc(N * N * 4);
    for (int bt = 0; bt < 2; bt++) {
        mma_test_tiled(dD, dA, bt ? dBt : dB, bt, nvalid);
        d_download(got, dD, N * N);
        parity_check(p, parity_name("mma 64x64x64 via cp.async+ldmatrix%s", bt ? "" : ".trans (B)"),
                     ref, got, N * N, 2e-6);
    }
    d_free(dA);
    d_free(dB);
    d_free(dBt);
    d_free(dD);
    free(A), free(B), free(Bt), free(Af), free(Bf), free(ref), free(got);
}

void parity_mma(Parity *p) {
    check_ldmatrix(p);
    check_single(p);
    check_tiled(p);
}
