// attention_cudnn.cu - the attention op's bf16 path through cuDNN's fused flash attention
// (attention_impl = auto | cudnn, kernels/kernels.h AttentionImpl), forward and backward, the
// contract of kernels/op_list.h on q, k, v (and dout) rounded to bf16.
//
// cuDNN v9's backend graph API, in C calls: the SDPA graph is the chain of operations that
// cuDNN's runtime-fusion engines recognise as flash attention (the one cudnn-frontend's
// sdpa node emits), with (B, H, T, D) dims over our (B, T, H, D) memory (strides, no copy):
//   forward   S = Q K^T (fp32) * scale; padding mask: row < seq_q and col < seq_kv (GEN_INDEX,
//             CMP_LT, LOGICAL_AND, BINARY_SELECT with a large negative); causal: row >= col;
//             m = max_j S, E = exp(S - m), l = sum_j E, stats = m + log l (our lse),
//             P = E / l (bf16), O = P V.
//   backward  Dsum = rowsum(dO * O); P = exp(S - stats) (masked as above); dV = P^T dO;
//             dP = dO V^T; dS = P (dP - Dsum) scale; dQ = dS K; dK = dS^T Q (P^T and dS^T by
//             RESHAPE, a transposed view).
// One execution plan per shape (B, T, NH, KV, HD, causal, direction), built on first use by
// heuristics mode A (the first engine config that finalises) and cached for the process.
// Two forms share one path (forward16 / backward16, pointers passed in): the staged entries
// (cuda_attention_cudnn_forward/backward, fp32 tensors) round q, k, v (and out) to bf16 into
// scratch slot 5 and widen O back; the native ones (_x16, bf16 activations,
// attention_forward_x16/backward_x16) hand the bf16 tensors to cuDNN as they are, O written
// straight into the bf16 out. Either way lse is cuDNN's stats written in place, rows t >= L
// of out and lse are then set to 0, dout (an fp32 gradient) is rounded to bf16 in slot 5 and
// the bf16 gradients are added (+=) into the fp32 dq, dk, dv.
// Coverage: HD a multiple of 8 up to 128; the backward with NH == KV (grouped KV heads' dK/dV
// need a head reduction that this graph does not have: attention.cu then runs mmrm's
// backward, which takes cuDNN's lse). A graph no engine takes falls back to mmrm's kernels
// (auto, logged once) or stops with cuDNN's status (attention_impl = cudnn).
// Without MMRM_CUDNN (no cudnn.h at build time, and the CUDA emulator) every entry point
// answers "not covered".
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/kernels.h"

#ifndef MMRM_CUDNN

extern "C" int cuda_cudnn_compiled(void) { return 0; }
extern "C" const char *cuda_cudnn_describe(void) {
    return "no cuDNN in this build (make cuda links it where cudnn.h is found; the CUDA "
           "emulator has none)";
}
extern "C" int cuda_attention_cudnn_forward(float *, float *, const float *, const float *,
                                            const float *, const int *, int, int, int, int, int,
                                            int, int) {
    return 0;
}
extern "C" int cuda_attention_cudnn_backward(float *, float *, float *, const float *,
                                             const float *, const float *, const float *,
                                             const float *, const float *, const int *, int, int,
                                             int, int, int, int, int) {
    return 0;
}
extern "C" int cuda_attention_cudnn_forward_x16(uint16_t *, float *, const uint16_t *,
                                                const uint16_t *, const uint16_t *, const int *,
                                                int, int, int, int, int, int, int) {
    return 0;
}
extern "C" int cuda_attention_cudnn_backward_x16(float *, float *, float *, const float *,
                                                 const uint16_t *, const float *,
                                                 const uint16_t *, const uint16_t *,
                                                 const uint16_t *, const int *, int, int, int,
                                                 int, int, int, int) {
    return 0;
}
extern "C" int cuda_attention_cudnn_covers(int, int, int, int, int, int, int) { return 0; }

#else

#include <cudnn.h>

namespace {

// cuDNN status check: file, line, the call and cuDNN's own string
#define CUDNN_CHECK(call)                                                                       \
    do {                                                                                        \
        cudnnStatus_t st_ = (call);                                                             \
        if (st_ != CUDNN_STATUS_SUCCESS) cuda_fail(#call, cudnnGetErrorString(st_), __FILE__, __LINE__); \
    } while (0)

typedef cudnnBackendDescriptor_t Desc;

// tensor unique ids of the variant packs
enum : int64_t {
    U_Q = 1, U_K, U_V, U_O, U_STATS, U_SCALE, U_SEQ_Q, U_SEQ_KV, U_NEG, U_DO, U_DQ, U_DK, U_DV,
    U_DSUM, U_VIRTUAL = 100
};

cudnnHandle_t g_handle;

cudnnHandle_t handle() {
    if (!g_handle) CUDNN_CHECK(cudnnCreate(&g_handle));
    CUDNN_CHECK(cudnnSetStream(g_handle, cuda_stream()));
    return g_handle;
}

// A graph under construction: descriptors owned (destroyed with the graph), operations in
// order, the next virtual uid. Building stops at the first failing call, whose status and
// name are kept (err, what) for the caller's message.
struct Builder {
    Desc owned[160];
    int n_owned = 0;
    Desc ops[64];
    int n_ops = 0;
    int64_t next_uid = U_VIRTUAL;
    cudnnStatus_t err = CUDNN_STATUS_SUCCESS;
    const char *what = "";

    bool ok(cudnnStatus_t st, const char *call) {
        if (err == CUDNN_STATUS_SUCCESS && st != CUDNN_STATUS_SUCCESS) {
            err = st;
            what = call;
        }
        return err == CUDNN_STATUS_SUCCESS;
    }
    Desc make(cudnnBackendDescriptorType_t t) {
        Desc d = NULL;
        if (n_owned == (int)(sizeof owned / sizeof *owned))
            ok(CUDNN_STATUS_INTERNAL_ERROR, "attention_cudnn.cu: Builder.owned is full");
        if (!ok(cudnnBackendCreateDescriptor(t, &d), "cudnnBackendCreateDescriptor")) return NULL;
        owned[n_owned++] = d;
        return d;
    }
    void set(Desc d, cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t, int64_t n,
             const void *v) {
        if (d) ok(cudnnBackendSetAttribute(d, a, t, n, v), "cudnnBackendSetAttribute");
    }
    void finalize(Desc d) {
        if (d) ok(cudnnBackendFinalize(d), "cudnnBackendFinalize");
    }
    ~Builder() {
        for (int i = 0; i < n_owned; i++) cudnnBackendDestroyDescriptor(owned[i]);
    }

    // a 4-d tensor; uid 0 = a new virtual (intermediate) tensor
    Desc tensor(int64_t uid, cudnnDataType_t dt, const int64_t dims[4], const int64_t strides[4],
                bool by_value = false) {
        Desc d = make(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
        const bool virt = uid == 0;
        if (virt) uid = next_uid++;
        const int64_t align = 16;
        set(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
        set(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
        set(d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
        set(d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
        set(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
        set(d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt);
        set(d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
        finalize(d);
        return d;
    }
    // a virtual tensor shaped like (dims) with packed strides
    Desc virt(cudnnDataType_t dt, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
        const int64_t dims[4] = {d0, d1, d2, d3}, str[4] = {d1 * d2 * d3, d2 * d3, d3, 1};
        return tensor(0, dt, dims, str);
    }
    void add_op(Desc op) {
        finalize(op);
        if (op && n_ops == (int)(sizeof ops / sizeof *ops))
            ok(CUDNN_STATUS_INTERNAL_ERROR, "attention_cudnn.cu: Builder.ops is full");
        else if (op) ops[n_ops++] = op;
    }
    // y = mode(x[, b][, t]); axis for GEN_INDEX
    void pointwise(cudnnPointwiseMode_t mode, Desc x, Desc b, Desc y, Desc t = NULL,
                   int64_t axis = -1) {
        Desc pw = make(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
        const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
        set(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
        set(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
        if (axis >= 0) set(pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
        finalize(pw);
        Desc op = make(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
        set(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw);
        set(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
        if (b) set(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
        if (t) set(op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t);
        set(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
        add_op(op);
    }
    void matmul(Desc a, Desc b, Desc c) {
        Desc mm = make(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
        const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
        set(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
        finalize(mm);
        Desc op = make(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
        set(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a);
        set(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
        set(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c);
        set(op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm);
        add_op(op);
    }
    void reduction(cudnnReduceTensorOp_t red, Desc x, Desc y) {
        Desc rd = make(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
        const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
        set(rd, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &red);
        set(rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
        finalize(rd);
        Desc op = make(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
        set(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
        set(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
        set(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &rd);
        add_op(op);
    }
    void reshape(Desc x, Desc y) {
        Desc op = make(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
        set(op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
        set(op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
        add_op(op);
    }
};

// The shapes of one call, (B, H, T, D) dims over (B, T, H, D) memory.
struct Shape {
    int B, T, NH, KV, HD, causal, bwd;
    bool operator==(const Shape &o) const {
        return B == o.B && T == o.T && NH == o.NH && KV == o.KV && HD == o.HD &&
               causal == o.causal && bwd == o.bwd;
    }
};

void bshd(const Shape &s, int H, int64_t dims[4], int64_t str[4]) {
    dims[0] = s.B, dims[1] = H, dims[2] = s.T, dims[3] = s.HD;
    str[0] = (int64_t)s.T * H * s.HD, str[1] = s.HD, str[2] = (int64_t)H * s.HD, str[3] = 1;
}
// the transposed view (B, H, D, T) of the same memory
void bshd_t(const Shape &s, int H, int64_t dims[4], int64_t str[4]) {
    dims[0] = s.B, dims[1] = H, dims[2] = s.HD, dims[3] = s.T;
    str[0] = (int64_t)s.T * H * s.HD, str[1] = s.HD, str[2] = 1, str[3] = (int64_t)H * s.HD;
}

// S (fp32, virtual) = mask(scale * Q K^T): the scores both directions start from
Desc masked_scores(Builder &g, const Shape &s, Desc Q, Desc Kt) {
    const int64_t one[4] = {1, 1, 1, 1}, seq[4] = {s.B, 1, 1, 1}, seq_str[4] = {1, 1, 1, 1};
    Desc scale = g.tensor(U_SCALE, CUDNN_DATA_FLOAT, one, one, true);
    Desc neg = g.tensor(U_NEG, CUDNN_DATA_FLOAT, one, one, true);
    Desc seq_q = g.tensor(U_SEQ_Q, CUDNN_DATA_INT32, seq, seq_str);
    Desc seq_kv = g.tensor(U_SEQ_KV, CUDNN_DATA_INT32, seq, seq_str);
    auto scores = [&](cudnnDataType_t dt) { return g.virt(dt, s.B, s.NH, s.T, s.T); };
    Desc S = scores(CUDNN_DATA_FLOAT), S1 = scores(CUDNN_DATA_FLOAT);
    g.matmul(Q, Kt, S);
    g.pointwise(CUDNN_POINTWISE_MUL, S, scale, S1);
    Desc row = scores(CUDNN_DATA_INT32), col = scores(CUDNN_DATA_INT32);
    g.pointwise(CUDNN_POINTWISE_GEN_INDEX, S1, NULL, row, NULL, 2);
    g.pointwise(CUDNN_POINTWISE_GEN_INDEX, S1, NULL, col, NULL, 3);
    Desc rin = scores(CUDNN_DATA_BOOLEAN), cin = scores(CUDNN_DATA_BOOLEAN);
    Desc both = scores(CUDNN_DATA_BOOLEAN), S2 = scores(CUDNN_DATA_FLOAT);
    g.pointwise(CUDNN_POINTWISE_CMP_LT, row, seq_q, rin);
    g.pointwise(CUDNN_POINTWISE_CMP_LT, col, seq_kv, cin);
    g.pointwise(CUDNN_POINTWISE_LOGICAL_AND, rin, cin, both);
    g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, S1, neg, S2, both);
    if (!s.causal) return S2;
    Desc crow = scores(CUDNN_DATA_INT32), ccol = scores(CUDNN_DATA_INT32);
    Desc keep = scores(CUDNN_DATA_BOOLEAN), S3 = scores(CUDNN_DATA_FLOAT);
    g.pointwise(CUDNN_POINTWISE_GEN_INDEX, S2, NULL, crow, NULL, 2);
    g.pointwise(CUDNN_POINTWISE_GEN_INDEX, S2, NULL, ccol, NULL, 3);
    g.pointwise(CUDNN_POINTWISE_CMP_GE, crow, ccol, keep);
    g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, S2, neg, S3, keep);
    return S3;
}

void build_forward(Builder &g, const Shape &s) {
    int64_t d[4], st[4];
    bshd(s, s.NH, d, st);
    Desc Q = g.tensor(U_Q, CUDNN_DATA_BFLOAT16, d, st);
    Desc O = g.tensor(U_O, CUDNN_DATA_BFLOAT16, d, st);
    bshd_t(s, s.KV, d, st);
    Desc Kt = g.tensor(U_K, CUDNN_DATA_BFLOAT16, d, st);
    bshd(s, s.KV, d, st);
    Desc V = g.tensor(U_V, CUDNN_DATA_BFLOAT16, d, st);
    const int64_t sd[4] = {s.B, s.NH, s.T, 1}, sst[4] = {(int64_t)s.NH * s.T, s.T, 1, 1};
    Desc stats = g.tensor(U_STATS, CUDNN_DATA_FLOAT, sd, sst);

    Desc S = masked_scores(g, s, Q, Kt);
    auto rowv = [&] { return g.virt(CUDNN_DATA_FLOAT, s.B, s.NH, s.T, 1); };
    auto full = [&](cudnnDataType_t dt) { return g.virt(dt, s.B, s.NH, s.T, s.T); };
    Desc m = rowv(), l = rowv(), logl = rowv();
    Desc sub = full(CUDNN_DATA_FLOAT), E = full(CUDNN_DATA_FLOAT), P = full(CUDNN_DATA_BFLOAT16);
    g.reduction(CUDNN_REDUCE_TENSOR_MAX, S, m);
    g.pointwise(CUDNN_POINTWISE_SUB, S, m, sub);
    g.pointwise(CUDNN_POINTWISE_EXP, sub, NULL, E);
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, E, l);
    g.pointwise(CUDNN_POINTWISE_LOG, l, NULL, logl);
    g.pointwise(CUDNN_POINTWISE_ADD, m, logl, stats);
    g.pointwise(CUDNN_POINTWISE_DIV, E, l, P);
    g.matmul(P, V, O);
}

void build_backward(Builder &g, const Shape &s) { // NH == KV
    int64_t d[4], st[4];
    bshd(s, s.NH, d, st);
    Desc Q = g.tensor(U_Q, CUDNN_DATA_BFLOAT16, d, st);
    Desc K = g.tensor(U_K + 1000, CUDNN_DATA_BFLOAT16, d, st); // K as (B, H, T, D): dQ = dS K
    Desc O = g.tensor(U_O, CUDNN_DATA_BFLOAT16, d, st);
    Desc dO = g.tensor(U_DO, CUDNN_DATA_BFLOAT16, d, st);
    Desc dQ = g.tensor(U_DQ, CUDNN_DATA_BFLOAT16, d, st);
    Desc dK = g.tensor(U_DK, CUDNN_DATA_BFLOAT16, d, st);
    Desc dV = g.tensor(U_DV, CUDNN_DATA_BFLOAT16, d, st);
    bshd_t(s, s.NH, d, st);
    Desc Kt = g.tensor(U_K, CUDNN_DATA_BFLOAT16, d, st);
    Desc Vt = g.tensor(U_V, CUDNN_DATA_BFLOAT16, d, st);
    const int64_t sd[4] = {s.B, s.NH, s.T, 1}, sst[4] = {(int64_t)s.NH * s.T, s.T, 1, 1};
    Desc stats = g.tensor(U_STATS, CUDNN_DATA_FLOAT, sd, sst);
    Desc dsum = g.tensor(U_DSUM, CUDNN_DATA_FLOAT, sd, sst);
    const int64_t one[4] = {1, 1, 1, 1};
    Desc scale = g.tensor(U_SCALE + 1000, CUDNN_DATA_FLOAT, one, one, true);

    auto full = [&](cudnnDataType_t dt) { return g.virt(dt, s.B, s.NH, s.T, s.T); };
    auto transposed = [&](cudnnDataType_t dt) {
        const int64_t td[4] = {s.B, s.NH, s.T, s.T},
                      ts[4] = {(int64_t)s.NH * s.T * s.T, (int64_t)s.T * s.T, 1, s.T};
        return g.tensor(0, dt, td, ts);
    };
    // Dsum = rowsum(dO * O)
    Desc dOO = g.virt(CUDNN_DATA_FLOAT, s.B, s.NH, s.T, s.HD);
    g.pointwise(CUDNN_POINTWISE_MUL, dO, O, dOO);
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, dOO, dsum);
    // P = exp(S - stats); dV = P^T dO
    Desc S = masked_scores(g, s, Q, Kt);
    Desc sub = full(CUDNN_DATA_FLOAT), P = full(CUDNN_DATA_FLOAT), P16 = full(CUDNN_DATA_BFLOAT16);
    Desc Pt = transposed(CUDNN_DATA_BFLOAT16);
    g.pointwise(CUDNN_POINTWISE_SUB, S, stats, sub);
    g.pointwise(CUDNN_POINTWISE_EXP, sub, NULL, P);
    g.pointwise(CUDNN_POINTWISE_IDENTITY, P, NULL, P16);
    g.reshape(P16, Pt);
    g.matmul(Pt, dO, dV);
    // dS = P (dO V^T - Dsum) scale; dQ = dS K; dK = dS^T Q
    Desc dP = full(CUDNN_DATA_FLOAT), dPm = full(CUDNN_DATA_FLOAT), dS = full(CUDNN_DATA_FLOAT);
    Desc dS16 = full(CUDNN_DATA_BFLOAT16), dSt = transposed(CUDNN_DATA_BFLOAT16);
    g.matmul(dO, Vt, dP);
    g.pointwise(CUDNN_POINTWISE_SUB, dP, dsum, dPm);
    g.pointwise(CUDNN_POINTWISE_MUL, P, dPm, dS);
    g.pointwise(CUDNN_POINTWISE_MUL, dS, scale, dS16);
    g.matmul(dS16, K, dQ);
    g.reshape(dS16, dSt);
    g.matmul(dSt, Q, dK);
}

struct Plan {
    Shape s;
    Desc plan;       // NULL: no engine took the graph (not retried)
    int64_t workspace;
};

Plan g_plans[64];
int g_nplans = 0;
bool g_logged_fallback = false;

// The cached plan of shape s, built on first use; NULL when cuDNN cannot run it (required:
// fatal instead, with cuDNN's status and the failing call).
Desc get_plan(const Shape &s, int required, int64_t *workspace) {
    for (int i = 0; i < g_nplans; i++)
        if (g_plans[i].s == s) {
            *workspace = g_plans[i].workspace;
            return g_plans[i].plan;
        }
    Builder g;
    if (s.bwd) build_backward(g, s);
    else build_forward(g, s);
    cudnnHandle_t h = handle();
    Desc graph = g.make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    g.set(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, g.n_ops, g.ops);
    g.set(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
    g.finalize(graph);
    Desc heur = g.make(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    g.set(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
    g.set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    g.finalize(heur);
    Desc plan = NULL;
    int64_t ws = 0;
    if (g.err == CUDNN_STATUS_SUCCESS) {
        Desc cfgs[16];
        int64_t ncfg = 0;
        for (int i = 0; i < 16; i++)
            g.ok(cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfgs[i]),
                 "cudnnBackendCreateDescriptor(ENGINECFG)");
        if (g.ok(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                          CUDNN_TYPE_BACKEND_DESCRIPTOR, 16, &ncfg, cfgs),
                 "cudnnBackendGetAttribute(ENGINEHEUR_RESULTS)")) {
            cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
            for (int64_t i = 0; i < ncfg && !plan; i++) {
                Desc p = NULL;
                if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &p))
                    continue;
                cudnnBackendSetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
                cudnnBackendSetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[i]);
                last = cudnnBackendFinalize(p);
                if (last == CUDNN_STATUS_SUCCESS) {
                    int64_t n = 0;
                    cudnnBackendGetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                             CUDNN_TYPE_INT64, 1, &n, &ws);
                    plan = p;
                } else {
                    cudnnBackendDestroyDescriptor(p);
                }
            }
            if (!plan) g.ok(ncfg ? last : CUDNN_STATUS_NOT_SUPPORTED, "no engine config finalised");
        }
        for (int i = 0; i < 16; i++)
            if (cfgs[i]) cudnnBackendDestroyDescriptor(cfgs[i]);
    }
    if (!plan) {
        char msg[320];
        snprintf(msg, sizeof msg,
                 "cuDNN fused attention %s, B=%d T=%d NH=%d KV=%d HD=%d %s: %s (%s)",
                 s.bwd ? "backward" : "forward", s.B, s.T, s.NH, s.KV, s.HD,
                 s.causal ? "causal" : "bidirectional", cudnnGetErrorString(g.err), g.what);
        if (required)
            cuda_fail("cuDNN attention plan", msg, __FILE__, __LINE__);
        if (!g_logged_fallback) {
            fprintf(stderr, "mmrm: %s; mmrm's kernels run such calls (attention_impl = auto)\n", msg);
            g_logged_fallback = true;
        }
    }
    if (g_nplans < (int)(sizeof g_plans / sizeof *g_plans)) g_plans[g_nplans++] = {s, plan, ws};
    *workspace = ws;
    return plan;
}

void execute(Desc plan, int n, const int64_t *uids, void *const *ptrs, void *workspace) {
    Builder g;
    Desc pack = g.make(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    g.set(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids);
    g.set(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs);
    g.set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
    g.finalize(pack);
    if (g.err != CUDNN_STATUS_SUCCESS)
        cuda_fail(g.what, cudnnGetErrorString(g.err), __FILE__, __LINE__);
    CUDNN_CHECK(cudnnBackendExecute(handle(), plan, pack));
}

bool covered(int HD) { return HD % 8 == 0 && HD <= 128; }

// the cached plan of a call cuDNN may cover (NULL: not covered, see get_plan)
Desc plan_for(const Shape &s, int required, int64_t *workspace) {
    *workspace = 0;
    if (!covered(s.HD) || (s.bwd && s.NH != s.KV)) return NULL;
    return get_plan(s, required, workspace);
}

size_t up256(size_t bytes) { return (bytes + 255) / 256 * 256; }

__device__ __forceinline__ float widen(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

// rows t >= L of out (bf16) and lse set to 0 (cuDNN's masked rows hold the mean of V and
// -1e30 + log T); the other elements are left as cuDNN wrote them
__global__ void zero_padded_kernel(uint16_t *out, float *lse, const int *lengths, int T, int NH,
                                   int HD, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const size_t row = i / HD; // (b, t, h)
    const int h = (int)(row % NH), t = (int)(row / NH % T), b = (int)(row / NH / T);
    if (t < lengths[b]) return;
    out[i] = 0;
    if (i % HD == 0) lse[((size_t)b * NH + h) * T + t] = 0.0f;
}

__global__ void accumulate_kernel(float *g, const uint16_t *g16, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) g[i] += widen(g16[i]);
}

// The forward on bf16 q, k, v into bf16 o16 and fp32 lse (cuDNN's stats written in place),
// rows t >= L of both zeroed; work: the plan's workspace. Both entries run it: the staged
// one on its slot-5 copies, the native one on the activations.
void forward16(Desc plan, void *work, uint16_t *o16, float *lse, const uint16_t *q16,
               const uint16_t *k16, const uint16_t *v16, const int *lengths, const Shape &s) {
    float scale = (float)(1.0 / sqrt((double)s.HD)), neg = -1e30f;
    const int64_t uids[] = {U_Q, U_K, U_V, U_O, U_STATS, U_SCALE, U_NEG, U_SEQ_Q, U_SEQ_KV};
    void *ptrs[] = {(void *)q16, (void *)k16, (void *)v16, o16, lse, &scale, &neg,
                    (void *)lengths, (void *)lengths};
    execute(plan, 9, uids, ptrs, work);
    const size_t nq = (size_t)s.B * s.T * s.NH * s.HD;
    zero_padded_kernel<<<cuda_blocks(nq, 256), 256, 0, cuda_stream()>>>(o16, lse, lengths, s.T,
                                                                         s.NH, s.HD, nq);
    CUDA_LAUNCH_CHECK();
}

// slot-5 bytes the backward needs after the caller's own buffers: dout, dq, dk, dv in bf16,
// Dsum, the workspace
size_t backward16_bytes(const Shape &s, int64_t ws) {
    const size_t n = (size_t)s.B * s.T * s.NH * s.HD, nl = (size_t)s.B * s.NH * s.T;
    return 4 * up256(n * 2) + up256(nl * 4) + (size_t)ws;
}

// The backward (NH == KV) on bf16 q, k, v, o16 and the fp32 dout (an fp32 gradient, rounded
// to bf16 here), the bf16 gradients added (+=) into dq, dk, dv (each may be NULL); tail:
// backward16_bytes of slot 5 (256-byte aligned). Shared by both entries.
void backward16(Desc plan, char *tail, float *dq, float *dk, float *dv, const float *dout,
                const uint16_t *o16, const float *lse, const uint16_t *q16, const uint16_t *k16,
                const uint16_t *v16, const int *lengths, const Shape &s) {
    const size_t n = (size_t)s.B * s.T * s.NH * s.HD, bn = up256(n * 2);
    uint16_t *do16 = (uint16_t *)tail, *g16[3];
    for (int i = 0; i < 3; i++) g16[i] = (uint16_t *)(tail + (1 + i) * bn);
    float *dsum = (float *)(tail + 4 * bn);
    void *work = tail + 4 * bn + up256((size_t)s.B * s.NH * s.T * 4);
    cuda_f32_to_bf16(do16, dout, n);
    float scale = (float)(1.0 / sqrt((double)s.HD)), neg = -1e30f;
    const int64_t uids[] = {U_Q,     U_K + 1000, U_K,   U_V,   U_O,    U_DO,   U_STATS, U_DSUM,
                            U_SCALE, U_SCALE + 1000, U_NEG, U_SEQ_Q, U_SEQ_KV, U_DQ, U_DK, U_DV};
    void *ptrs[] = {(void *)q16, (void *)k16, (void *)k16, (void *)v16, (void *)o16, do16,
                    (void *)lse, dsum, &scale, &scale, &neg, (void *)lengths, (void *)lengths,
                    g16[0], g16[1], g16[2]};
    execute(plan, 16, uids, ptrs, work);
    float *grads[3] = {dq, dk, dv};
    for (int i = 0; i < 3; i++)
        if (grads[i]) {
            accumulate_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(grads[i], g16[i], n);
            CUDA_LAUNCH_CHECK();
        }
}

// cuDNN's tensors are declared 16-byte aligned: an activation that is not (a view) is not
// covered by the native entries
bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }
bool aligned16_all(const void *out, const void *lse, const void *q, const void *k,
                   const void *v) {
    return aligned16(out) && aligned16(lse) && aligned16(q) && aligned16(k) && aligned16(v);
}

} // namespace

extern "C" int cuda_cudnn_compiled(void) { return 1; }

extern "C" const char *cuda_cudnn_describe(void) {
    static char buf[96];
    const size_t v = cudnnGetVersion();
    snprintf(buf, sizeof buf, "cuDNN %zu.%zu.%zu (compiled against %d.%d.%d)", v / 10000,
             v / 100 % 100, v % 100, CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL);
    return buf;
}

extern "C" int cuda_attention_cudnn_covers(int B, int T, int NH, int KV, int HD, int causal,
                                           int bwd) {
    int64_t ws = 0;
    return plan_for(Shape{B, T, NH, KV, HD, causal, bwd ? 1 : 0}, 0, &ws) != NULL;
}

// the staged entries: q, k, v (and out) rounded to bf16 into slot 5, out widened back
extern "C" int cuda_attention_cudnn_forward(float *out, float *lse, const float *q, const float *k,
                                            const float *v, const int *lengths, int B, int T,
                                            int NH, int KV, int HD, int causal, int required) {
    if (!aligned16(lse)) return 0; // cuDNN writes its stats there
    const Shape s = {B, T, NH, KV, HD, causal, 0};
    int64_t ws = 0;
    Desc plan = plan_for(s, required, &ws);
    if (!plan) return 0;
    const size_t nq = (size_t)B * T * NH * HD, nkv = (size_t)B * T * KV * HD;
    // slot 5: q, k, v, O in bf16, then the workspace, 256-byte aligned
    const size_t bq = up256(nq * 2), bkv = up256(nkv * 2);
    char *base = (char *)cuda_scratch(5, 2 * bq + 2 * bkv + (size_t)ws);
    uint16_t *q16 = (uint16_t *)base, *k16 = (uint16_t *)(base + bq);
    uint16_t *v16 = (uint16_t *)(base + bq + bkv), *o16 = (uint16_t *)(base + bq + 2 * bkv);
    cuda_f32_to_bf16(q16, q, nq);
    cuda_f32_to_bf16(k16, k, nkv);
    cuda_f32_to_bf16(v16, v, nkv);
    forward16(plan, base + 2 * bq + 2 * bkv, o16, lse, q16, k16, v16, lengths, s);
    cuda_bf16_to_f32(out, o16, nq);
    return 1;
}

extern "C" int cuda_attention_cudnn_backward(float *dq, float *dk, float *dv, const float *dout,
                                             const float *out, const float *lse, const float *q,
                                             const float *k, const float *v, const int *lengths,
                                             int B, int T, int NH, int KV, int HD, int causal,
                                             int required) {
    const Shape s = {B, T, NH, KV, HD, causal, 1};
    int64_t ws = 0;
    Desc plan = plan_for(s, required, &ws);
    if (!plan) return 0;
    const size_t n = (size_t)B * T * NH * HD, bn = up256(n * 2);
    // slot 5: q, k, v, out in bf16, then backward16's part
    char *base = (char *)cuda_scratch(5, 4 * bn + backward16_bytes(s, ws));
    uint16_t *t16[4];
    const float *src[4] = {q, k, v, out};
    for (int i = 0; i < 4; i++) {
        t16[i] = (uint16_t *)(base + i * bn);
        cuda_f32_to_bf16(t16[i], src[i], n);
    }
    backward16(plan, base + 4 * bn, dq, dk, dv, dout, t16[3], lse, t16[0], t16[1], t16[2],
               lengths, s);
    return 1;
}

// the native entries: q, k, v (and out) read where they are, O written in bf16 into out;
// slot 5 holds only the workspace (forward), dout in bf16, the bf16 gradients and Dsum
extern "C" int cuda_attention_cudnn_forward_x16(uint16_t *out, float *lse, const uint16_t *q,
                                                const uint16_t *k, const uint16_t *v,
                                                const int *lengths, int B, int T, int NH, int KV,
                                                int HD, int causal, int required) {
    if (!aligned16_all(out, lse, q, k, v)) return 0;
    const Shape s = {B, T, NH, KV, HD, causal, 0};
    int64_t ws = 0;
    Desc plan = plan_for(s, required, &ws);
    if (!plan) return 0;
    void *work = ws ? cuda_scratch(5, (size_t)ws) : NULL;
    forward16(plan, work, out, lse, q, k, v, lengths, s);
    return 1;
}

extern "C" int cuda_attention_cudnn_backward_x16(float *dq, float *dk, float *dv,
                                                 const float *dout, const uint16_t *out,
                                                 const float *lse, const uint16_t *q,
                                                 const uint16_t *k, const uint16_t *v,
                                                 const int *lengths, int B, int T, int NH,
                                                 int KV, int HD, int causal, int required) {
    if (!aligned16_all(out, lse, q, k, v)) return 0;
    const Shape s = {B, T, NH, KV, HD, causal, 1};
    int64_t ws = 0;
    Desc plan = plan_for(s, required, &ws);
    if (!plan) return 0;
    char *tail = (char *)cuda_scratch(5, backward16_bytes(s, ws));
    backward16(plan, tail, dq, dk, dv, dout, out, lse, q, k, v, lengths, s);
    return 1;
}

#endif
