// mma_kernels.cu - test kernels for the tensor-core primitives of kernels/cuda/mma.cuh
// (ldmatrix, mma.sync m16n8k16 bf16, cp.async), launched by tests/gpu/parity_mma.c: on a GPU
// they check the hardware against the documented fragment layouts, on the emulator the
// emulation of those layouts.
#include <stdint.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/mma.cuh"

extern "C" {
void mma_test_ldmatrix(uint32_t *out, const uint16_t *src, const int *perm, int mode);
void mma_test_single(float *D, const uint16_t *A, const uint16_t *B, const float *C);
void mma_test_tiled(float *D, const uint16_t *A, const uint16_t *B, int btrans, int nvalid);
}

namespace {

// one warp: 32 shared rows of 8 bf16; lane l gives the address of row perm[l];
// mode = nmat index (0: x1, 1: x2, 2: x4) + 3 * trans; out[lane * 4 + i] = register i
__global__ void __launch_bounds__(32) ldmatrix_kernel(uint32_t *out, const uint16_t *src,
                                                      const int *perm, int mode) {
    __shared__ __align__(16) uint16_t tile[32 * 8];
    const int lane = threadIdx.x;
    for (int i = lane; i < 32 * 8; i += 32) tile[i] = src[i];
    __syncwarp();
    const void *p = tile + 8 * perm[lane];
    uint32_t r[4] = {0, 0, 0, 0};
    switch (mode) {
    case 0: mma::ldmatrix_x1(r, p); break;
    case 1: mma::ldmatrix_x2(r, p); break;
    case 2: mma::ldmatrix_x4(r, p); break;
    case 3: mma::ldmatrix_x1_trans(r, p); break;
    case 4: mma::ldmatrix_x2_trans(r, p); break;
    default: mma::ldmatrix_x4_trans(r, p); break;
    }
    for (int i = 0; i < 4; i++) out[lane * 4 + i] = r[i];
}

// one warp, fragments read straight from global memory in the documented layout
__global__ void __launch_bounds__(32) mma_single_kernel(float *D, const uint16_t *A,
                                                        const uint16_t *B, const float *C) {
    const int lane = threadIdx.x, g = lane / 4, c = 2 * (lane % 4);
    auto a2 = [&](int row, int col) {
        return (uint32_t)A[row * 16 + col] | (uint32_t)A[row * 16 + col + 1] << 16;
    };
    auto b2 = [&](int k, int n) {
        return (uint32_t)B[k * 8 + n] | (uint32_t)B[(k + 1) * 8 + n] << 16;
    };
    uint32_t a[4] = {a2(g, c), a2(g + 8, c), a2(g, c + 8), a2(g + 8, c + 8)};
    uint32_t b[2] = {b2(c, g), b2(c + 8, g)};
    float acc[4] = {C[g * 8 + c], C[g * 8 + c + 1], C[(g + 8) * 8 + c], C[(g + 8) * 8 + c + 1]};
    mma::mma_bf16_16816(acc, a, b, acc);
    D[g * 8 + c] = acc[0];
    D[g * 8 + c + 1] = acc[1];
    D[(g + 8) * 8 + c] = acc[2];
    D[(g + 8) * 8 + c + 1] = acc[3];
}

constexpr int TN = 64, TS = TN + 8; // 64x64 tiles, shared rows padded by 16 bytes

// four warps: D (64x64) = A (64x64, rows >= nvalid read as zero) . B, B given as [k][n]
// (btrans 0, read with ldmatrix.trans) or as B^T [n][k] (btrans 1, plain ldmatrix); the
// tiles reach shared memory through cp.async (cg for A with zero fill, ca for B)
__global__ void __launch_bounds__(128) mma_tiled_kernel(float *D, const uint16_t *A,
                                                        const uint16_t *B, int btrans,
                                                        int nvalid) {
    __shared__ __align__(16) uint16_t As[TN * TS];
    __shared__ __align__(16) uint16_t Bs[TN * TS];
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    for (int i = tid; i < TN * TN / 8; i += 128) { // 16-byte chunks
        const int row = i / (TN / 8), col = 8 * (i % (TN / 8));
        mma::cp_async16(As + row * TS + col, A + row * TN + col, row < nvalid);
    }
    mma::cp_async_commit();
    for (int i = tid; i < TN * TN / 8; i += 128) {
        const int row = i / (TN / 8), col = 8 * (i % (TN / 8));
        mma::cp_async16_ca(Bs + row * TS + col, B + row * TN + col);
    }
    mma::cp_async_commit();
    mma::cp_async_wait<1>(); // A has landed
    mma::cp_async_wait<0>(); // and B
    __syncthreads();

    float acc[TN / 8][4];
    for (int n = 0; n < TN / 8; n++)
        for (int e = 0; e < 4; e++) acc[n][e] = 0.0f;
    const int r0 = 16 * warp;
    for (int k0 = 0; k0 < TN; k0 += 16) {
        uint32_t a[4];
        mma::ldmatrix_x4(a, As + (r0 + lane % 16) * TS + k0 + 8 * (lane / 16));
        for (int n = 0; n < TN / 8; n++) {
            uint32_t b[2];
            if (!btrans) mma::ldmatrix_x2_trans(b, Bs + (k0 + lane % 16) * TS + 8 * n);
            else mma::ldmatrix_x2(b, Bs + (8 * n + lane % 8) * TS + k0 + 8 * ((lane / 8) % 2));
            mma::mma_bf16_16816(acc[n], a, b, acc[n]);
        }
    }
    const int g = lane / 4, c = 2 * (lane % 4);
    for (int n = 0; n < TN / 8; n++) {
        D[(r0 + g) * TN + 8 * n + c] = acc[n][0];
        D[(r0 + g) * TN + 8 * n + c + 1] = acc[n][1];
        D[(r0 + g + 8) * TN + 8 * n + c] = acc[n][2];
        D[(r0 + g + 8) * TN + 8 * n + c + 1] = acc[n][3];
    }
}

} // namespace

extern "C" void mma_test_ldmatrix(uint32_t *out, const uint16_t *src, const int *perm, int mode) {
    ldmatrix_kernel<<<1, 32, 0, cuda_stream()>>>(out, src, perm, mode);
    CUDA_LAUNCH_CHECK();
}

extern "C" void mma_test_single(float *D, const uint16_t *A, const uint16_t *B, const float *C) {
    mma_single_kernel<<<1, 32, 0, cuda_stream()>>>(D, A, B, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void mma_test_tiled(float *D, const uint16_t *A, const uint16_t *B, int btrans,
                               int nvalid) {
    mma_tiled_kernel<<<1, 128, 0, cuda_stream()>>>(D, A, B, btrans, nvalid);
    CUDA_LAUNCH_CHECK();
}
