// mma.cuh - the warp-level tensor-core primitives of the bf16 kernels (attention_fa2.cu),
// in one header: inline PTX on the GPU (sm_80+), and on the CUDA emulator (tests/cuda_emu,
// MMRM_CUDA_EMU) an exact implementation of the same per-lane register contents.
//
//   mma_bf16_16816(d, a, b, c)   mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
//   ldmatrix_x1/x2/x4(r, p)      ldmatrix.sync.aligned.m8n8.{x1,x2,x4}.shared.b16
//   ldmatrix_x1/x2/x4_trans      the same with .trans
//   cp_async16(dst, src, valid)  cp.async.cg.shared.global, 16 bytes (zero fill if !valid)
//   cp_async16_ca                cp.async.ca.shared.global, 16 bytes
//   cp_async_commit()            cp.async.commit_group
//   cp_async_wait<N>()           cp.async.wait_group N (all but the newest N groups landed)
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type";
// g = lane / 4 the group id, c = lane % 4 the thread id in the group; a 32-bit register holds
// two bf16, the lower-numbered column (or row, for B) in its low half):
//   A (16 x 16, row major): a[0] = A[g][2c, 2c+1]   a[1] = A[g+8][2c, 2c+1]
//                           a[2] = A[g][2c+8, +9]   a[3] = A[g+8][2c+8, +9]
//   B (16 x 8, K x N):      b[0] = B[2c, 2c+1][g]   b[1] = B[2c+8, 2c+9][g]
//   C, D (16 x 8, fp32):    c[0..1] = C[g][2c, 2c+1]   c[2..3] = C[g+8][2c, 2c+1]
// ldmatrix: matrix i (i < 1, 2, 4) is 8 rows of 8 bf16 whose row r starts at the address given
// by lane 8i + r (16-byte aligned, shared memory); register i of lane l holds row l/4, columns
// 2(l%4), 2(l%4)+1 of matrix i, or with .trans rows 2(l%4), 2(l%4)+1 of column l/4. So
// ldmatrix of a row-major A tile yields the A fragment, ldmatrix of an [n][k] (K^T stored
// row-wise) tile yields the B fragment, and ldmatrix.trans of a [k][n] tile (V) yields the
// B fragment too.
//
// Emulation: every call is warp-wide (.sync.aligned: all 32 lanes, same call). The lanes put
// their operands (registers, row addresses) into a per-warp exchange area, meet at
// __syncwarp (the emulator's rendezvous: a missing or diverged lane stops the program), each
// lane computes its own result registers from the gathered operands, and they meet again
// before the area is reused. mma sums the 16 products of a D element in fp32, in k order,
// onto c (the hardware's order and internal precision differ within fp32 rounding).
// cp.async is deferred: the destination is poisoned with 0xff (NaN as bf16) at the issue and
// written at the cp_async_wait that covers its group, so reading it before the wait, and
// refilling a buffer that other warps still read (a missing __syncthreads before a prefetch),
// both show as NaN; a block that ends with copies not waited for is reported at the next
// cp.async.
#ifndef MMRM_KERNELS_CUDA_MMA_CUH
#define MMRM_KERNELS_CUDA_MMA_CUH

#include <stdint.h>

#if defined(MMRM_CUDA_EMU)
#include <string.h>
#endif

namespace mma {

#if !defined(MMRM_CUDA_EMU)

__device__ __forceinline__ unsigned smem_addr(const void *p) {
    return (unsigned)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2],
                                               const float c[4]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]),
                   "f"(c[1]), "f"(c[2]), "f"(c[3]));
}

__device__ __forceinline__ void ldmatrix_x1(uint32_t r[1], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n"
                 : "=r"(r[0]) : "r"(smem_addr(p)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t r[2], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(smem_addr(p)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t r[1], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
                 : "=r"(r[0]) : "r"(smem_addr(p)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t r[2], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(smem_addr(p)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)) : "memory");
}

// src_size 0 fills the 16 bytes with zeros and reads nothing
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid = true) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
                 :: "r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async16_ca(void *dst, const void *src, bool valid = true) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n"
                 :: "r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
}

#else // the CUDA emulator

namespace emu {

inline unsigned lin_tid() {
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

// one exchange area per warp of the running block (blocks run one at a time, and a block has
// at most 32 warps); every use is bracketed by two rendezvous of the whole warp
struct Exchange {
    uint32_t a[32][4], b[32][2];
    const unsigned char *addr[32];
};
inline Exchange &exchange() {
    static Exchange x[32];
    return x[lin_tid() / 32];
}

inline float bf16_to_float(uint32_t h) {
    uint32_t u = h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline float lo(uint32_t r) { return bf16_to_float(r & 0xffffu); }
inline float hi(uint32_t r) { return bf16_to_float(r >> 16); }

// element (row, col) of the 16x16 A tile from the gathered fragments
inline float a_elem(const Exchange &x, int row, int col) {
    int g = row % 8, c = (col % 8) / 2;
    uint32_t r = x.a[4 * g + c][(row >= 8 ? 1 : 0) + (col >= 8 ? 2 : 0)];
    return col % 2 ? hi(r) : lo(r);
}
// element (k, n) of the 16x8 B tile
inline float b_elem(const Exchange &x, int k, int n) {
    int c = (k % 8) / 2;
    uint32_t r = x.b[4 * n + c][k >= 8 ? 1 : 0];
    return k % 2 ? hi(r) : lo(r);
}

inline void ldmatrix(uint32_t *r, const void *p, int nmat, bool trans) {
    Exchange &x = exchange();
    const unsigned lane = lin_tid() % 32;
    if ((uintptr_t)p % 16 != 0 && lane < 8u * (unsigned)nmat)
        ::cuda_emu::fatal("ldmatrix: lane %u row address %p is not 16-byte aligned", lane, p);
    x.addr[lane] = static_cast<const unsigned char *>(p);
    __syncwarp();
    const int row = lane / 4, col = 2 * (lane % 4);
    for (int i = 0; i < nmat; i++) {
        uint16_t e0, e1;
        if (!trans) {
            const unsigned char *rp = x.addr[8 * i + row];
            memcpy(&e0, rp + 2 * col, 2);
            memcpy(&e1, rp + 2 * (col + 1), 2);
        } else { // rows col, col+1 of column `row`
            memcpy(&e0, x.addr[8 * i + col] + 2 * row, 2);
            memcpy(&e1, x.addr[8 * i + col + 1] + 2 * row, 2);
        }
        r[i] = (uint32_t)e0 | (uint32_t)e1 << 16;
    }
    __syncwarp();
}

// the copies a thread has issued and not yet waited for; tagged with the block they belong to
struct Pending {
    void *dst;
    unsigned char data[16];
    unsigned group;
};
struct AsyncState {
    Pending q[256];
    int n;
    unsigned committed; // groups committed so far
    unsigned long long block;
};
inline unsigned long long block_tag() {
    return ((unsigned long long)::cuda_emu::block_serial());
}
inline AsyncState &async_state() {
    static AsyncState s[1024];
    AsyncState &st = s[lin_tid()];
    const unsigned long long tag = block_tag();
    if (st.block != tag) {
        if (st.n > 0)
            ::cuda_emu::fatal("cp.async: thread %u of an earlier block ended with %d copies not "
                              "waited for (cp.async.wait_group)", lin_tid(), st.n);
        st.n = 0;
        st.committed = 0;
        st.block = tag;
    }
    return st;
}
inline void cp_async(void *dst, const void *src, bool valid) {
    if ((uintptr_t)dst % 16 || (valid && (uintptr_t)src % 16))
        ::cuda_emu::fatal("cp.async: 16-byte copy with a misaligned address (dst %p, src %p)",
                          dst, src);
    AsyncState &st = async_state();
    if (st.n == (int)(sizeof st.q / sizeof *st.q))
        ::cuda_emu::fatal("cp.async: more than %d copies in flight in one thread (emulator limit)",
                          st.n);
    Pending &p = st.q[st.n++];
    p.dst = dst;
    p.group = st.committed;
    // the source is read at the issue (global memory does not change under a kernel's
    // own reads); the shared destination is written only at the wait
    if (valid) memcpy(p.data, src, 16);
    else memset(p.data, 0, 16);
    // in flight the destination is undefined: poisoned with 0xff (bf16 NaN) now, written at
    // the wait, so reading it too early and refilling a buffer still being read both show
    memset(dst, 0xff, 16);
}

} // namespace emu

__device__ __forceinline__ void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2],
                                               const float c[4]) {
    emu::Exchange &x = emu::exchange();
    const unsigned lane = emu::lin_tid() % 32;
    for (int i = 0; i < 4; i++) x.a[lane][i] = a[i];
    x.b[lane][0] = b[0];
    x.b[lane][1] = b[1];
    const float c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3]; // d may alias c
    __syncwarp();
    const int g = lane / 4, col = 2 * (lane % 4);
    const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {col, col + 1, col, col + 1};
    const float cin[4] = {c0, c1, c2, c3};
    float out[4];
    for (int e = 0; e < 4; e++) {
        float s = cin[e];
        for (int k = 0; k < 16; k++) s += emu::a_elem(x, rows[e], k) * emu::b_elem(x, k, cols[e]);
        out[e] = s;
    }
    __syncwarp();
    for (int e = 0; e < 4; e++) d[e] = out[e];
}

__device__ __forceinline__ void ldmatrix_x1(uint32_t r[1], const void *p) { emu::ldmatrix(r, p, 1, false); }
__device__ __forceinline__ void ldmatrix_x2(uint32_t r[2], const void *p) { emu::ldmatrix(r, p, 2, false); }
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *p) { emu::ldmatrix(r, p, 4, false); }
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t r[1], const void *p) { emu::ldmatrix(r, p, 1, true); }
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t r[2], const void *p) { emu::ldmatrix(r, p, 2, true); }
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *p) { emu::ldmatrix(r, p, 4, true); }

__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid = true) {
    emu::cp_async(dst, src, valid);
}
__device__ __forceinline__ void cp_async16_ca(void *dst, const void *src, bool valid = true) {
    emu::cp_async(dst, src, valid);
}
__device__ __forceinline__ void cp_async_commit() { emu::async_state().committed++; }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    emu::AsyncState &st = emu::async_state();
    // groups older than the newest N committed ones land, in issue order
    const unsigned done = st.committed >= (unsigned)N ? st.committed - N : 0;
    int keep = 0;
    for (int i = 0; i < st.n; i++) {
        emu::Pending &p = st.q[i];
        if (p.group < done) memcpy(p.dst, p.data, 16);
        else st.q[keep++] = p;
    }
    st.n = keep;
}

#endif

// bf16 pair (lo = x, hi = y), round to nearest even, for building A fragments in registers
__device__ __forceinline__ uint32_t pack_bf16(float x, float y) {
    uint32_t ux = __float_as_uint(x), uy = __float_as_uint(y);
    ux += 0x7fffu + ((ux >> 16) & 1u);
    uy += 0x7fffu + ((uy >> 16) & 1u);
    return (ux >> 16) | (uy & 0xffff0000u);
}

} // namespace mma

#endif
