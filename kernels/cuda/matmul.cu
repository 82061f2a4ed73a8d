// matmul.cu - nn.Linear on the GPU through cuBLASLt: out = inp . weight^T + bias, and its
// backward (dinp += dout . weight, dweight += dout^T . inp, dbias += column sums of dout).
//
// Layout. cuBLASLt is column-major; a row-major (R, Cc) matrix X is, byte for byte, the
// column-major (Cc x R) matrix X^T with leading dimension Cc. Every product below is
// therefore written for the transposes (all leading dims are the row lengths):
//
//   forward  out^T (OC x N)   = op_T(W^T  stored C x OC, ld C) . op_N(inp^T stored C x N, ld C)
//            m = OC, n = N, k = C, D ld OC, bias epilogue (bias length OC = rows of D), beta 0
//   dinp     dinp^T (C x N)  += op_N(W^T  stored C x OC, ld C) . op_N(dout^T stored OC x N, ld OC)
//            m = C, n = N, k = OC, D ld C, beta 1
//   dweight  dweight^T (C x OC) += op_N(inp^T stored C x N, ld C) . op_T(dout^T stored OC x N, ld OC)
//            m = C, n = OC, k = N, D ld C, beta 1
//
// (dinp = dout . W  <=>  dinp^T = W^T . dout^T; dweight = dout^T . inp  <=>
//  dweight^T = inp^T . dout.) The accumulating products run in place (C == D, same layout),
// which cuBLASLt supports; with beta = 0 C is not read, so out may hold garbage.
//
// Precision (the `precision` argument, a KernelPrecision): KP_FP32 = CUBLAS_COMPUTE_32F,
// plain fp32 math (nothing here enables TF32); KP_BF16 = bf16 operands, fp32 accumulation
// and fp32 output: A and B are bf16 in memory (CUDA_R_16BF layouts, CUBLAS_COMPUTE_32F, C/D
// CUDA_R_32F): the weight's bf16 copy (`weight16`, the ParamStore's) is read as is when the
// caller passes one; every other operand (the activations, the output gradients, a weight
// without a copy) is converted into scratch slots 2-4 first (round to nearest even, the
// tensor cores' rounding of FAST_16BF). Where cuBLASLt has no algorithm for bf16 storage,
// the fp32 operands go to CUBLAS_COMPUTE_32F_FAST_16BF instead (the same rounding of the
// inputs, inside cuBLASLt); KP_BF16_FP32_OPERANDS asks for that path directly. A bf16
// output (matmul_forward_x16 with out16: a bf16 activation) is a CUDA_R_16BF C/D layout with
// the fp32 bias in the epilogue (CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE), rounded once from the
// fp32 accumulator; without such an algorithm (or with an unaligned bias) the fp32 result
// goes to scratch slot 6 and is rounded from there.
//
// Algorithms. cublasLtMatmulAlgoGetHeuristic assumes 256-byte aligned A/B/C/D unless told
// otherwise (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES, default 256), and it reads the bias
// pointer's value to decide the bias alignment. Our pointers may be views at any 4-byte
// offset, so every call computes the real alignment of each operand (of its pointer and of
// its leading dimension in bytes, capped at 256) and passes it to the heuristic; the
// alignments are part of the cache key, so a cached algorithm is only reused for operands
// aligned exactly like those it was chosen for. A small fixed cache (plan_cache) keeps the
// chosen algorithm together with its descriptor and layouts, so the steady state does no
// heuristic query and creates nothing.
//
// Fallbacks, all decided once per cache key:
// - bias not 16-byte aligned, out not 16-byte aligned, or no algorithm with the bias
//   epilogue: plain matmul (beta 0) then add_bias_kernel; no algorithm with BGRADB: the
//   column-sum kernels;
// - bf16 storage and no algorithm for it: fp32 storage with FAST_16BF (a negative cache
//   entry remembers the shape, so the heuristic is asked once);
// - bf16 mode and no FAST_16BF algorithm for this shape/alignment: plain fp32 (more exact);
// - nothing at all: a fatal error naming m, n, k.
//
// dbias comes from the dweight GEMM's BGRADB epilogue (cuBLASLt sums the columns of its B
// operand, dout, over k = N while it reads dout anyway; stored into scratch slot 0 and added
// to dbias, since the epilogue overwrites) when the heuristic has an algorithm for it (a
// 16-byte aligned vector), else from a deterministic column sum: rows are cut into fixed
// chunks (a function of N only), each chunk is summed in increasing row order by one thread
// per column into scratch slot 0, and one thread per column then adds the chunk sums in
// chunk order. cuda_matmul_bgrad_stats counts both.
//
// Host state (the cache) is not locked: the backend is driven by one host thread.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/kernels.h"

namespace {

// ---------------------------------------------------------------------------------------
// small kernels
// ---------------------------------------------------------------------------------------

// out (N, OC) += bias (OC), or out = bias / 0 when init (the k = 0 forward)
__global__ void add_bias_kernel(float *out, const float *bias, size_t N, int OC, int init) {
    size_t total = N * (size_t)OC;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float b = bias ? bias[i % (size_t)OC] : 0.0f;
        out[i] = init ? b : out[i] + b;
    }
}

// partial[chunk][o] = sum of dout[n][o] over the chunk's rows, in increasing n
// (grid.x covers columns, grid.y = chunks; consecutive threads read consecutive columns)
__global__ void colsum_partial_kernel(float *partial, const float *dout, int N, int OC,
                                      int rows_per_chunk) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= OC) return;
    int n0 = blockIdx.y * rows_per_chunk;
    int n1 = min(n0 + rows_per_chunk, N);
    float s = 0.0f;
    for (int n = n0; n < n1; n++) s += dout[(size_t)n * OC + o];
    partial[(size_t)blockIdx.y * OC + o] = s;
}

// dbias[o] += sum over chunks of partial[c][o], in increasing c
__global__ void colsum_final_kernel(float *dbias, const float *partial, int nchunks, int OC) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= OC) return;
    float s = 0.0f;
    for (int c = 0; c < nchunks; c++) s += partial[(size_t)c * OC + o];
    dbias[o] += s;
}

// dbias[o] += v[o] (the BGRADB epilogue's column sums)
__global__ void add_kernel(float *dbias, const float *v, int OC) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o < OC) dbias[o] += v[o];
}

// single-pass version when one chunk covers all rows: dbias[o] += sum_n dout[n][o]
__global__ void colsum_direct_kernel(float *dbias, const float *dout, int N, int OC) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= OC) return;
    float s = 0.0f;
    for (int n = 0; n < N; n++) s += dout[(size_t)n * OC + o];
    dbias[o] += s;
}

// ---------------------------------------------------------------------------------------
// cuBLASLt plans
// ---------------------------------------------------------------------------------------

struct PlanKey {
    int64_t m, n, k;
    int transa, transb; // 0 = N, 1 = T
    int beta1;          // beta != 0 (accumulate)
    int bias;           // bias epilogue requested
    int bgrad;          // bias gradient epilogue (BGRADB) requested
    int prec;           // 1: bf16 rounding of the inputs requested (KP_BF16*), 0: fp32
    int ab16;           // A and B are bf16 in memory (CUDA_R_16BF layouts)
    int d16;            // C and D are bf16 (a bf16 activation written by the GEMM)
    int align_a, align_b, align_c, align_d, align_bias; // bytes, 4..256 (align_bias 0: none)
};

struct Plan {
    PlanKey key;
    int used;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, cd; // C and D share one layout (in place)
    cublasLtMatmulAlgo_t algo;
    uint32_t epilogue; // in the descriptor: DEFAULT (then add_bias_kernel / the column sum
                       // after, when asked for), BIAS or BGRADB
    int none;          // negative entry: no algorithm for this key (nothing was created)
    int fast16;        // the compute type is CUBLAS_COMPUTE_32F_FAST_16BF
};

// GEMMs run per path since the start (cuda_matmul_paths): 0 bf16 operands in memory,
// 1 fp32 operands under FAST_16BF, 2 fp32
long g_paths[3];

// of those, GEMMs that wrote a bf16 D (cuda_matmul_out16)
long g_out16;
// bias gradients since the start (cuda_matmul_bgrad_stats): [0] by the BGRADB epilogue,
// [1] by the column-sum kernels
long g_bgrad[2];

// plan cache lookups since the start (cuda_matmul_plan_stats): [0] hits, [1] misses (a
// heuristic query); a miss per batch means the shapes change every batch (t_bucket)
long g_plan_lookups[2];

const int kPlanCacheSize = 256;
Plan g_plans[kPlanCacheSize];
int g_plans_next = 0; // round-robin victim once the cache is full

bool key_equal(const PlanKey &x, const PlanKey &y) {
    return x.m == y.m && x.n == y.n && x.k == y.k && x.transa == y.transa &&
           x.transb == y.transb && x.beta1 == y.beta1 && x.bias == y.bias &&
           x.bgrad == y.bgrad && x.prec == y.prec && x.ab16 == y.ab16 && x.d16 == y.d16 &&
           x.align_a == y.align_a && x.align_b == y.align_b && x.align_c == y.align_c &&
           x.align_d == y.align_d && x.align_bias == y.align_bias;
}

// largest power of two (elem_bytes..256) dividing both the address and the leading
// dimension in bytes: what cuBLASLt needs to know about an operand
// (ALGO_CAP_MIN_ALIGNMENT_* covers the pointer and the leading dimension)
int operand_alignment(const void *p, int64_t ld_elems, size_t elem_bytes) {
    uintptr_t addr = (uintptr_t)p;
    uint64_t ldb = (uint64_t)ld_elems * elem_bytes;
    int a = 256;
    while (a > (int)elem_bytes && ((addr % (uintptr_t)a) != 0 || (ldb % (uint64_t)a) != 0)) a /= 2;
    return a;
}

int pointer_alignment(const void *p) {
    uintptr_t addr = (uintptr_t)p;
    int a = 256;
    while (a > 4 && (addr % (uintptr_t)a) != 0) a /= 2;
    return a;
}

void destroy_plan(Plan *pl) {
    if (!pl->used) return;
    if (pl->none) {
        pl->used = pl->none = 0;
        return;
    }
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(pl->a));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(pl->b));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(pl->cd));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(pl->desc));
    pl->used = 0;
}

// Builds descriptor + layouts for (key, compute type, epilogue) into pl and asks the
// heuristic for the best algorithm. Returns true when one was found; on false pl holds
// nothing (everything created was destroyed). bias: the bias (BIAS) or the bias gradient
// (BGRADB) vector, whose alignment the heuristic reads.
bool try_plan(Plan *pl, const PlanKey &key, cublasComputeType_t compute, uint32_t epilogue,
              const float *bias) {
    cublasLtMatmulDesc_t desc;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, compute, CUDA_R_32F));
    int32_t ta = key.transa ? CUBLAS_OP_T : CUBLAS_OP_N;
    int32_t tb = key.transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                    &epilogue, sizeof epilogue));
        // the heuristic reads this pointer's value for the bias alignment
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &bias, sizeof bias));
        if (key.d16) { // the bias stays fp32 (a parameter) under a bf16 D
            int32_t bt = CUDA_R_32F;
            CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                        &bt, sizeof bt));
        }
    }
    // stored (pre-op) shapes: A is m x k (op N) or k x m (op T); B is k x n or n x k
    uint64_t a_rows = key.transa ? key.k : key.m, a_cols = key.transa ? key.m : key.k;
    uint64_t b_rows = key.transb ? key.n : key.k, b_cols = key.transb ? key.k : key.n;
    cublasLtMatrixLayout_t la, lb, lcd;
    cudaDataType_t ab_type = key.ab16 ? CUDA_R_16BF : CUDA_R_32F;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, ab_type, a_rows, a_cols, (int64_t)a_rows));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, ab_type, b_rows, b_cols, (int64_t)b_rows));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lcd, key.d16 ? CUDA_R_16BF : CUDA_R_32F,
                                            (uint64_t)key.m, (uint64_t)key.n, key.m));

    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws_bytes = 0;
    (void)cuda_lt_workspace(&ws_bytes);
    uint64_t ws64 = ws_bytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                      &ws64, sizeof ws64));
    uint32_t al[4] = {(uint32_t)key.align_a, (uint32_t)key.align_b, (uint32_t)key.align_c,
                      (uint32_t)key.align_d};
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                      &al[0], sizeof al[0]));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                      &al[1], sizeof al[1]));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                      &al[2], sizeof al[2]));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                      &al[3], sizeof al[3]));

    cublasLtMatmulHeuristicResult_t res;
    memset(&res, 0, sizeof res);
    int found = 0;
    // NOT_SUPPORTED (no heuristic for this configuration) counts as "no algorithm", so the
    // caller can fall back; any other failure is fatal
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(cuda_lt(), desc, la, lb, lcd, lcd, pref, 1,
                                                       &res, &found);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED) CUBLAS_CHECK(st);
    bool ok = st == CUBLAS_STATUS_SUCCESS && found > 0 && res.state == CUBLAS_STATUS_SUCCESS &&
              res.workspaceSize <= ws_bytes;
    if (!ok) {
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(la));
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lb));
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lcd));
        CUBLAS_CHECK(cublasLtMatmulDescDestroy(desc));
        return false;
    }
    pl->key = key;
    pl->desc = desc;
    pl->a = la;
    pl->b = lb;
    pl->cd = lcd;
    pl->algo = res.algo;
    pl->epilogue = epilogue;
    pl->none = 0;
    pl->fast16 = compute == CUBLAS_COMPUTE_32F_FAST_16BF;
    pl->used = 1;
    return true;
}

// The cached plan for key; NULL (remembered) when a bf16-storage key has no algorithm.
const Plan *get_plan(const PlanKey &key, const float *bias) {
    for (int i = 0; i < kPlanCacheSize; i++)
        if (g_plans[i].used && key_equal(g_plans[i].key, key)) {
            g_plan_lookups[0]++;
            return g_plans[i].none ? nullptr : &g_plans[i];
        }
    g_plan_lookups[1]++;

    // pick a slot: the first free one, else round-robin
    Plan *pl = nullptr;
    for (int i = 0; i < kPlanCacheSize && !pl; i++)
        if (!g_plans[i].used) pl = &g_plans[i];
    if (!pl) {
        pl = &g_plans[g_plans_next];
        g_plans_next = (g_plans_next + 1) % kPlanCacheSize;
        destroy_plan(pl);
    }

    // the epilogue asked for (bias or bias gradient), tried before none
    uint32_t epi = key.bias ? CUBLASLT_EPILOGUE_BIAS
                   : key.bgrad ? CUBLASLT_EPILOGUE_BGRADB
                               : CUBLASLT_EPILOGUE_DEFAULT;
    if (key.ab16) { // bf16 storage: CUBLAS_COMPUTE_32F over CUDA_R_16BF operands, or nothing
        if (epi != CUBLASLT_EPILOGUE_DEFAULT && try_plan(pl, key, CUBLAS_COMPUTE_32F, epi, bias))
            return pl;
        // a bf16 D takes its bias in the epilogue or not at all (add_bias_kernel is fp32)
        if ((!key.d16 || !key.bias) &&
            try_plan(pl, key, CUBLAS_COMPUTE_32F, CUBLASLT_EPILOGUE_DEFAULT, nullptr))
            return pl;
        pl->key = key;
        pl->none = 1;
        pl->used = 1;
        return nullptr;
    }
    // candidates in order of preference: requested precision, then fp32; with the bias
    // epilogue (when requested and allowed) before without
    cublasComputeType_t want = key.prec ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
    cublasComputeType_t computes[2] = {want, CUBLAS_COMPUTE_32F};
    int ncompute = key.prec ? 2 : 1;
    for (int c = 0; c < ncompute; c++) {
        if (epi != CUBLASLT_EPILOGUE_DEFAULT && try_plan(pl, key, computes[c], epi, bias))
            return pl;
        if (try_plan(pl, key, computes[c], CUBLASLT_EPILOGUE_DEFAULT, nullptr)) return pl;
    }
    char what[256];
    snprintf(what, sizeof what,
             "no cuBLASLt algorithm for m=%lld n=%lld k=%lld transa=%d transb=%d beta=%d "
             "(alignments A %d B %d C %d D %d bytes, precision %s)",
             (long long)key.m, (long long)key.n, (long long)key.k, key.transa, key.transb,
             key.beta1, key.align_a, key.align_b, key.align_c, key.align_d,
             key.prec ? "bf16" : "fp32");
    cuda_fail("cublasLtMatmulAlgoGetHeuristic", what, __FILE__, __LINE__);
}

// D (m x n, ld m) = op(A) . op(B) + beta * D [+ bias (m)], column-major; D and C fp32
// (d16 0) or bf16 (d16 1: ab16 too, beta 0), the bias fp32, A and B fp32 (ab16 0) or bf16
// (ab16 1). A is stored m x k (transa 0) or k x m
// (transa 1) with ld = its row count; likewise B. bias may only be non-NULL when beta == 0.
// bgrad (n floats, 16-byte aligned, or NULL): where the BGRADB epilogue may store the column
// sums of op(B) over k (overwriting); *bgrad_done says whether it did (else nothing was
// written there). Returns false (nothing ran) only for bf16 operands that cuBLASLt has no
// algorithm for, and for a bf16 D whose bias cannot go through the epilogue.
bool lt_gemm(void *d, const void *a, int transa, const void *b, int transb, int64_t m,
             int64_t n, int64_t k, float beta, const float *bias, int ab16, int prec,
             int d16 = 0, float *bgrad = nullptr, bool *bgrad_done = nullptr) {
    PlanKey key;
    memset(&key, 0, sizeof key); // the key is compared field by field, but keep it clean
    key.m = m;
    key.n = n;
    key.k = k;
    key.transa = transa;
    key.transb = transb;
    key.beta1 = beta != 0.0f;
    key.prec = prec;
    key.ab16 = ab16;
    key.d16 = d16;
    size_t ab_bytes = ab16 ? 2 : sizeof(float);
    key.align_a = operand_alignment(a, transa ? k : m, ab_bytes);
    key.align_b = operand_alignment(b, transb ? n : k, ab_bytes);
    key.align_c = key.align_d = operand_alignment(d, m, d16 ? 2 : sizeof(float));
    // the bias epilogue only for a 16-byte aligned bias and output (cuBLASLt's epilogue
    // kernels load the bias vector in 16-byte pieces); otherwise add_bias_kernel
    key.bias = bias && pointer_alignment(bias) >= 16 && pointer_alignment(d) >= 16;
    key.bgrad = bgrad && pointer_alignment(bgrad) >= 16;
    key.align_bias = key.bias ? pointer_alignment(bias) : key.bgrad ? pointer_alignment(bgrad) : 0;
    if (bgrad_done) *bgrad_done = false;
    if (d16 && bias && !key.bias) return false;

    const float *vec = key.bias ? bias : key.bgrad ? bgrad : nullptr;
    const Plan *pl = get_plan(key, vec);
    if (!pl) return false;
    if (pl->epilogue != CUBLASLT_EPILOGUE_DEFAULT)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &vec, sizeof vec));
    if (pl->epilogue == CUBLASLT_EPILOGUE_BGRADB && bgrad_done) *bgrad_done = true;
    size_t ws_bytes = 0;
    void *ws = cuda_lt_workspace(&ws_bytes);
    const float alpha = 1.0f;
    g_paths[ab16 ? 0 : pl->fast16 ? 1 : 2]++;
    if (d16) g_out16++;
    CUBLAS_CHECK(cublasLtMatmul(cuda_lt(), pl->desc, &alpha, a, pl->a, b, pl->b, &beta, d, pl->cd,
                                d, pl->cd, &pl->algo, ws, ws_bytes, cuda_stream()));
    if (bias && pl->epilogue != CUBLASLT_EPILOGUE_BIAS) {
        // D is column-major m x n = row-major (n, m): the bias runs along the rows of length m
        unsigned threads = 256;
        add_bias_kernel<<<cuda_blocks((size_t)m * (size_t)n, threads), threads, 0,
                          cuda_stream()>>>((float *)d, bias, (size_t)n, (int)m, 0);
        CUDA_LAUNCH_CHECK();
    }
    return true;
}

// bf16 copy of the n floats at src, converted into scratch slot
const uint16_t *as_bf16(const float *src, size_t n, int slot) {
    uint16_t *dst = (uint16_t *)cuda_scratch(slot, n * sizeof(uint16_t));
    cuda_f32_to_bf16(dst, src, n);
    return dst;
}

const int kSlotWeight = 2, kSlotInput = 3, kSlotDout = 4, kSlotOut = 6;

// fp32 copy of n bf16 values (a bf16-stored activation) in scratch slot, for the fp32 GEMMs
const float *widen(const uint16_t *src, size_t n, int slot) {
    float *dst = (float *)cuda_scratch(slot, n * sizeof(float));
    cuda_bf16_to_f32(dst, src, n);
    return dst;
}

// One operand of a GEMM: fp32 (f) and/or bf16 (h) storage of ne elements (a weight may
// come with both: its bf16 copy); a missing form is made when needed: bf16 converted into
// scratch slot, fp32 widened into the same slot.
struct Operand {
    const float *f;
    const uint16_t *h;
    size_t ne;
    int slot;
};

// lt_gemm over bf16 operands for KP_BF16 when cuBLASLt has an algorithm for them;
// otherwise over fp32 operands (FAST_16BF for KP_BF16*, else exact fp32). bgrad, bgrad_done:
// lt_gemm's; returns *bgrad_done.
bool gemm_any(float *d, Operand a, int transa, Operand b, int transb, int64_t m, int64_t n,
              int64_t k, float beta, const float *bias, int precision, float *bgrad = nullptr) {
    bool done = false;
    if (precision == KP_BF16) {
        const uint16_t *a16 = a.h ? a.h : as_bf16(a.f, a.ne, a.slot);
        const uint16_t *b16 = b.h ? b.h : as_bf16(b.f, b.ne, b.slot);
        if (lt_gemm(d, a16, transa, b16, transb, m, n, k, beta, bias, 1, 1, 0, bgrad, &done))
            return done;
    }
    const float *a32 = a.f ? a.f : widen(a.h, a.ne, a.slot);
    const float *b32 = b.f ? b.f : widen(b.h, b.ne, b.slot);
    lt_gemm(d, a32, transa, b32, transb, m, n, k, beta, bias, 0, precision != KP_FP32, 0, bgrad,
            &done);
    return done;
}

} // namespace

extern "C" void cuda_matmul_paths(long counts[3]) {
    for (int i = 0; i < 3; i++) counts[i] = g_paths[i];
}

extern "C" long cuda_matmul_out16(void) { return g_out16; }
extern "C" void cuda_matmul_bgrad_stats(long *epilogue, long *colsum) {
    *epilogue = g_bgrad[0];
    *colsum = g_bgrad[1];
}

extern "C" void cuda_matmul_plan_stats(long *hits, long *misses) {
    *hits = g_plan_lookups[0];
    *misses = g_plan_lookups[1];
}

// inp is fp32 (inp) or bf16 (inp16); weight16 the weight's bf16 copy or NULL; the output
// fp32 (out) or, when out is NULL, bf16 (out16): with KP_BF16 cuBLASLt writes the bf16 D
// from its fp32 accumulator (bias in the epilogue); otherwise, or without an algorithm for
// that, the fp32 result goes to scratch slot 6 and is rounded from there (the same values)
static void matmul_forward(float *out, uint16_t *out16, const float *inp, const uint16_t *inp16,
                           const float *weight, const uint16_t *weight16, const float *bias,
                           int N, int C, int OC, int precision) {
    if (N <= 0 || OC <= 0) return;
    if (!out) {
        if (precision == KP_BF16 && C > 0) {
            const uint16_t *w16 = weight16 ? weight16 : as_bf16(weight, (size_t)OC * C, kSlotWeight);
            const uint16_t *x16 = inp16 ? inp16 : as_bf16(inp, (size_t)N * C, kSlotInput);
            if (lt_gemm(out16, w16, 1, x16, 0, OC, N, C, 0.0f, bias, 1, 1, 1)) return;
        }
        float *tmp = (float *)cuda_scratch(kSlotOut, (size_t)N * OC * sizeof(float));
        matmul_forward(tmp, nullptr, inp, inp16, weight, weight16, bias, N, C, OC, precision);
        cuda_f32_to_bf16(out16, tmp, (size_t)N * OC);
        return;
    }
    if (C <= 0) { // empty product: out = bias (or 0)
        unsigned threads = 256;
        add_bias_kernel<<<cuda_blocks((size_t)N * OC, threads), threads, 0, cuda_stream()>>>(
            out, bias, (size_t)N, OC, 1);
        CUDA_LAUNCH_CHECK();
        return;
    }
    // out^T (OC x N) = op_T(W^T: C x OC, ld C) . op_N(inp^T: C x N, ld C) + bias
    Operand w = {weight, weight16, (size_t)OC * C, kSlotWeight};
    Operand x = {inp, inp16, (size_t)N * C, kSlotInput};
    gemm_any(out, w, 1, x, 0, OC, N, C, 0.0f, bias, precision);
}

static void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const uint16_t *inp16, const float *weight,
                            const uint16_t *weight16, int N, int C, int OC, int precision) {
    if (N <= 0 || OC <= 0) return; // nothing flows (dinp += 0 when OC == 0)
    // bf16 operands: dout is converted once for both products
    Operand g = {dout, nullptr, (size_t)N * OC, kSlotDout};
    if (precision == KP_BF16 && C > 0 && (dinp || dweight))
        g.h = as_bf16(dout, (size_t)N * OC, kSlotDout);
    Operand w = {weight, weight16, (size_t)OC * C, kSlotWeight};
    Operand x = {inp, inp16, (size_t)N * C, kSlotInput};
    if (dinp && C > 0) // dinp^T (C x N) += op_N(W^T: C x OC, ld C) . op_N(dout^T: OC x N, ld OC)
        gemm_any(dinp, w, 0, g, 0, C, N, OC, 1.0f, nullptr, precision);
    // dweight^T (C x OC) += op_N(inp^T: C x N, ld C) . op_T(dout^T: OC x N, ld OC); its
    // B operand is dout (k = N, n = OC), so the BGRADB epilogue sums dout's columns: dbias
    // from the same pass over dout, into scratch (the epilogue overwrites) and added after
    bool bgrad_done = false;
    if (dweight && C > 0) {
        float *bgrad = dbias ? (float *)cuda_scratch(0, (size_t)OC * sizeof(float)) : nullptr;
        bgrad_done = gemm_any(dweight, x, 0, g, 1, C, OC, N, 1.0f, nullptr, precision, bgrad);
        if (bgrad_done) {
            const int threads = 256;
            add_kernel<<<(unsigned)((OC + threads - 1) / threads), threads, 0, cuda_stream()>>>(
                dbias, bgrad, OC);
            CUDA_LAUNCH_CHECK();
            g_bgrad[0]++;
        }
    }
    if (dbias && !bgrad_done) {
        g_bgrad[1]++;
        const int threads = 256;
        const int rows_per_chunk = 256; // fixed: the summation order depends on N only
        int nchunks = (N + rows_per_chunk - 1) / rows_per_chunk;
        unsigned gx = (unsigned)((OC + threads - 1) / threads);
        if (nchunks == 1) {
            colsum_direct_kernel<<<gx, threads, 0, cuda_stream()>>>(dbias, dout, N, OC);
            CUDA_LAUNCH_CHECK();
            return;
        }
        int rpc = rows_per_chunk;
        if (nchunks > 65535) { // grid.y limit: bigger chunks (still a function of N only)
            nchunks = 65535;
            rpc = (N + nchunks - 1) / nchunks;
            nchunks = (N + rpc - 1) / rpc;
        }
        float *partial = (float *)cuda_scratch(0, (size_t)nchunks * OC * sizeof(float));
        colsum_partial_kernel<<<dim3(gx, (unsigned)nchunks), threads, 0, cuda_stream()>>>(
            partial, dout, N, OC, rpc);
        CUDA_LAUNCH_CHECK();
        colsum_final_kernel<<<gx, threads, 0, cuda_stream()>>>(dbias, partial, nchunks, OC);
        CUDA_LAUNCH_CHECK();
    }
}

extern "C" void cuda_matmul_forward(float *out, const float *inp, const float *weight,
                                    const uint16_t *weight16, const float *bias, int N, int C,
                                    int OC, int precision) {
    matmul_forward(out, nullptr, inp, nullptr, weight, weight16, bias, N, C, OC, precision);
}

extern "C" void cuda_matmul_backward(float *dinp, float *dweight, float *dbias,
                                     const float *dout, const float *inp, const float *weight,
                                     const uint16_t *weight16, int N, int C, int OC,
                                     int precision) {
    matmul_backward(dinp, dweight, dbias, dout, inp, nullptr, weight, weight16, N, C, OC,
                    precision);
}

// a bf16-stored input (activations in bf16): with KP_BF16 it is the GEMM operand as it is,
// otherwise (or when cuBLASLt has no bf16 algorithm) it is widened into scratch
extern "C" void cuda_matmul_forward_x16(float *out, uint16_t *out16, const uint16_t *inp,
                                        const float *weight, const uint16_t *weight16,
                                        const float *bias, int N, int C, int OC, int precision) {
    matmul_forward(out, out16, nullptr, inp, weight, weight16, bias, N, C, OC, precision);
}

extern "C" void cuda_matmul_backward_x16(float *dinp, float *dweight, float *dbias,
                                         const float *dout, const uint16_t *inp,
                                         const float *weight, const uint16_t *weight16, int N,
                                         int C, int OC, int precision) {
    matmul_backward(dinp, dweight, dbias, dout, nullptr, inp, weight, weight16, N, C, OC,
                    precision);
}
