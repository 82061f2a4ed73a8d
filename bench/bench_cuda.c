/* bench_cuda.c - the CUDA kernels' throughput on the GPU (built by `make cuda`, run by
 * tests/gpu/run.sh): GEMM TFLOP/s through kernels_cuda.matmul_* at the model's linear-layer
 * shapes in fp32, in bf16 over fp32 operands (CUBLAS_COMPUTE_32F_FAST_16BF), in bf16 over bf16
 * operands converted per call, and in bf16 with the weight read from its bf16 copy (what
 * training with precision = bf16 runs: the ParamStore's copy passed as weight16), LayerNorm/RMSNorm GB/s against a device-to-device
 * copy measured in the same run, and attention TFLOP/s (forward, backward) of the
 * hand-written kernel, the attention rows op against the full attention (milliseconds); in a build with NCCL (`make cuda NCCL=1`), the NCCL all-reduce's time
 * and bandwidth at gradient-buffer sizes (under mpirun, across the ranks); and a reward-model
 * training step (forward + backward, precision bf16) with activations stored in fp32 vs bf16:
 * time and activation arena. Times with CUDA events on the backend's stream, median of REPS.
 * Prints one table per family; never asserts.
 * bench_cuda --only FAMILY [--variant N] [--check] runs the kernel lab instead (bench/lab,
 * README.md there): numbered variants of one kernel family, checked against the CPU and timed. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/lab/lab.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/kernels.h"
#include "models/reward_model.h"
#include "runtime/comm.h"
#include "runtime/error.h"
#include "runtime/rng.h"

enum { REPS = 7 };

static float *drand(size_t n, uint64_t seed) {
    float *h = malloc(n * sizeof *h);
    Rng r = rng_make(seed, 3);
    rng_fill_uniform(&r, h, n, -1.0f, 1.0f);
    float *d = cuda_malloc(n * sizeof *d);
    cuda_copy_h2d(d, h, n * sizeof *d);
    cuda_synchronize();
    free(h);
    return d;
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

typedef void (*Body)(void *ctx);

/* median milliseconds of body over REPS runs after one warm-up */
static float time_ms(Body body, void *ctx) {
    cudaStream_t s = (cudaStream_t)cuda_stream_handle();
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    body(ctx);
    float ms[REPS];
    for (int i = 0; i < REPS; i++) {
        cudaEventRecord(a, s);
        body(ctx);
        cudaEventRecord(b, s);
        cudaEventSynchronize(b);
        cudaEventElapsedTime(&ms[i], a, b);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    qsort(ms, REPS, sizeof *ms, cmp_f);
    return ms[REPS / 2];
}

typedef struct {
    int N, C, OC, bwd;
    float *x, *w, *b, *y, *dx, *dw, *db;
    uint16_t *w16; /* the weight's bf16 copy, or NULL */
    int prec;      /* KernelPrecision */
} Mm;
static void mm_body(void *v) {
    Mm *m = v;
    if (!m->bwd)
        kernels_cuda.matmul_forward(m->y, m->x, m->w, m->w16, m->b, m->N, m->C, m->OC, m->prec);
    else
        kernels_cuda.matmul_backward(m->dx, m->dw, m->db, m->y, m->x, m->w, m->w16, m->N, m->C,
                                     m->OC, m->prec);
}

typedef struct { int N, C, rms; float *x, *w, *b, *y, *mean, *rstd; } Nm;
static void nm_body(void *v) {
    Nm *n = v;
    if (n->rms) kernels_cuda.rmsnorm_forward(n->y, n->rstd, n->x, n->w, n->N, n->C, 1e-6f);
    else kernels_cuda.layernorm_forward(n->y, n->mean, n->rstd, n->x, n->w, n->b, n->N, n->C, 1e-6f);
}

typedef struct { void *dst, *src; size_t bytes; } Cp;
static void cp_body(void *v) {
    Cp *c = v;
    cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)cuda_stream_handle());
}

typedef struct { int B, T, NH, KV, HD, causal, bwd; float *q, *k, *v, *o, *lse, *dq, *dk, *dv, *dout; int *len; } At;
static void at_body(void *p) {
    At *a = p;
    if (!a->bwd)
        kernels_cuda.attention_forward(a->o, a->lse, a->q, a->k, a->v, a->len, NULL, a->B, a->T, a->NH, a->KV, a->HD,
                                       a->causal, KP_FP32);
    else
        kernels_cuda.attention_backward(a->dq, a->dk, a->dv, a->dout, a->o, a->lse, a->q, a->k, a->v, a->len, NULL, a->B,
                                        a->T, a->NH, a->KV, a->HD, a->causal, KP_FP32);
}

/* the decoder's last layer at the rewarded rows (share_prefix / packing): attention_rows at
 * one row per sequence (its last token, which sees every key) against the full attention
 * whose result at those rows is the same, forward and backward, at InternVL2-1B's LLM shape
 * (Qwen2-0.5B: NH 14, KV 2, HD 64), 16 sequences (8 pairs) of 1 tile + 512 text tokens */
typedef struct { At a; int M, *rows; float *qm, *om, *lm, *dqm, *doutm; int prec; } Ar1;
static void rows_body(void *p) {
    Ar1 *r = p;
    At *a = &r->a;
    if (!a->bwd)
        kernels_cuda.attention_rows_forward(r->om, r->lm, r->qm, a->k, a->v, r->rows, a->len, NULL,
                                            r->M, a->B, a->T, a->NH, a->KV, a->HD, 1, r->prec);
    else
        kernels_cuda.attention_rows_backward(r->dqm, a->dk, a->dv, r->doutm, r->om, r->lm, r->qm,
                                             a->k, a->v, r->rows, a->len, NULL, r->M, a->B, a->T,
                                             a->NH, a->KV, a->HD, 1, r->prec);
}
static void full_body(void *p) {
    Ar1 *r = p;
    At *a = &r->a;
    if (!a->bwd)
        kernels_cuda.attention_forward(a->o, a->lse, a->q, a->k, a->v, a->len, NULL, a->B, a->T,
                                       a->NH, a->KV, a->HD, 1, r->prec);
    else
        kernels_cuda.attention_backward(a->dq, a->dk, a->dv, a->dout, a->o, a->lse, a->q, a->k,
                                        a->v, a->len, NULL, a->B, a->T, a->NH, a->KV, a->HD, 1,
                                        r->prec);
}

static void rows_bench(void) {
    printf("\nattention rows (last layer, 1 row/seq) vs full, causal    fwd ms   bwd ms  (full fwd, bwd)\n");
    for (int prec = 0; prec < 2; prec++) {
        Ar1 r = {{16, 768, 14, 2, 64, 1, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
                 16, NULL, NULL, NULL, NULL, NULL, NULL, prec ? KP_BF16 : KP_FP32};
        At *a = &r.a;
        size_t nq = (size_t)a->B * a->T * a->NH * a->HD, nk = (size_t)a->B * a->T * a->KV * a->HD;
        size_t nm = (size_t)r.M * a->NH * a->HD;
        a->q = drand(nq, 31); a->k = drand(nk, 32); a->v = drand(nk, 33); a->o = drand(nq, 34);
        a->lse = drand((size_t)a->B * a->NH * a->T, 35);
        a->dq = drand(nq, 36); a->dk = drand(nk, 37); a->dv = drand(nk, 38); a->dout = drand(nq, 39);
        r.qm = drand(nm, 41); r.om = drand(nm, 42); r.lm = drand((size_t)r.M * a->NH, 43);
        r.dqm = drand(nm, 44); r.doutm = drand(nm, 45);
        int hl[16], hr[16];
        for (int b = 0; b < a->B; b++) hl[b] = a->T, hr[b] = b * a->T + a->T - 1;
        a->len = cuda_malloc(sizeof hl);
        r.rows = cuda_malloc(sizeof hr);
        cuda_copy_h2d(a->len, hl, sizeof hl);
        cuda_copy_h2d(r.rows, hr, sizeof hr);
        float rf = time_ms(rows_body, &r), ff = time_ms(full_body, &r);
        a->bwd = 1;
        float rb = time_ms(rows_body, &r), fb = time_ms(full_body, &r);
        printf("B=%d T=%d NH=%d KV=%d HD=%d M=%d %-4s        %8.3f %8.3f  (%.3f, %.3f: %.0fx, %.0fx)\n",
               a->B, a->T, a->NH, a->KV, a->HD, r.M, prec ? "bf16" : "fp32", rf, rb, ff, fb,
               ff / rf, fb / rb);
        cuda_free(a->q); cuda_free(a->k); cuda_free(a->v); cuda_free(a->o); cuda_free(a->lse);
        cuda_free(a->dq); cuda_free(a->dk); cuda_free(a->dv); cuda_free(a->dout); cuda_free(a->len);
        cuda_free(r.rows); cuda_free(r.qm); cuda_free(r.om); cuda_free(r.lm); cuda_free(r.dqm);
        cuda_free(r.doutm);
    }
}

#ifdef MMRM_NCCL
typedef struct {
    const Comm *c;
    float *buf;
    size_t n;
} Ar;
static void ar_body(void *ctx) {
    Ar *a = ctx;
    comm_allreduce_mean_f32_device(a->c, a->buf, a->n, cuda_stream_handle());
}

/* ncclAllReduce (avg, the gradient all-reduce) at the sizes of a 25 MiB bucket and of whole
 * gradient buffers; algbw = bytes / time, busbw = algbw * 2 (W - 1) / W (nccl-tests'
 * definition: the traffic of a ring; 0 on one rank, where NCCL only copies) */
static void nccl_bench(Comm *c) {
    if (c->rank == 0)
        printf("\nall-reduce (NCCL, avg, f32) on %d rank(s)        time ms   algbw GB/s   busbw GB/s\n",
               c->world);
    const double mib[] = {25, 256, 1024, 3584}; /* a bucket; ~64M/256M/900M-parameter models */
    for (size_t s = 0; s < sizeof mib / sizeof *mib; s++) {
        Ar a = {c, NULL, (size_t)(mib[s] * 1048576.0 / 4)};
        a.buf = drand(a.n, 40 + s);
        float t = time_ms(ar_body, &a);
        double bytes = a.n * 4.0, alg = bytes / t / 1e6;
        if (c->rank == 0)
            printf("%8.0f MiB %37.3f %12.1f %12.1f\n", mib[s], t, alg, alg * 2.0 * (c->world - 1) / c->world);
        cuda_free(a.buf);
    }
}
#endif

/* a forward + backward of the reward model (configs/model/small.json widened to a 1024-wide,
 * 4-layer decoder), 8 sequences of 512 tokens, 4 images */
typedef struct { RewardModel *m; Graph *g; RmBatch *bt; } Step;
static void step_body(void *v) {
    Step *s = v;
    graph_reset(s->g);
    params_zero_grad(&s->m->ps);
    Tensor *r = rm_forward(s->m, s->g, s->bt);
    float w[8] = {1, -1, 1, -1, 1, -1, 1, -1};
    graph_backward_from(s->g, r, w);
}

static void model_bench(void) {
    ModelConfig cfg;
    if (config_load("configs/model/small.json", &cfg)) {
        printf("\nmodel step: skipped (%s)\n", mmrm_last_error());
        return;
    }
    cfg.llm.hidden = 1024;
    cfg.llm.heads = 16;
    cfg.llm.kv_heads = 4;
    cfg.llm.head_dim = 64;
    cfg.llm.intermediate = 2816;
    int freeze[PG_COUNT] = {0};
    RewardModel m;
    rm_create(&m, &cfg, DEV_CPU, freeze);
    Rng r = rng_make(5, 9);
    rng_fill_normal(&r, m.ps.data, m.ps.numel, 0.0f, 0.02f);
    rm_to_device(&m, DEV_CUDA);
    enum { B = 8, T = 512 };
    int tpt = config_tokens_per_tile(&cfg), S = cfg.image_size;
    static int ids[B * T], lengths[B], tiles[B / 2], image_of[B];
    float *pixels = malloc(sizeof(float) * 3 * S * S * (B / 2));
    rng_fill_uniform(&r, pixels, (size_t)3 * S * S * (B / 2), -2.0f, 2.0f);
    for (int b = 0; b < B; b++) {
        int t = 0;
        image_of[b] = b / 2;
        tiles[b / 2] = 1;
        lengths[b] = T - 16 * b;
        ids[b * T + t++] = 258;
        ids[b * T + t++] = 260;
        for (int k = 0; k < tpt; k++) ids[b * T + t++] = cfg.img_context_id;
        ids[b * T + t++] = 261;
        while (t < lengths[b] - 1) ids[b * T + t++] = 32 + (int)(rng_uniform(&r) * 90);
        ids[b * T + t++] = 259;
        while (t < T) ids[b * T + t++] = 0;
    }
    RmBatch bt = {B, T, ids, lengths, B / 2, tiles, pixels, image_of, NULL};
    params_enable_bf16(&m.ps);
    printf("\nreward model step, precision bf16 (%.0fM parameters, %d x %d tokens)   ms    activation arena MiB (+ staging)\n",
           m.ps.numel / 1e6, B, T);
    for (int k = 0; k < 2; k++) {
        Graph g;
        graph_init(&g, DEV_CUDA, 64 << 20, 1);
        graph_set_precision(&g, KP_BF16);
        if (k) graph_set_act_dtype(&g, DT_BF16);
        Step st = {&m, &g, &bt};
        float ms = time_ms(step_body, &st);
        printf("  activations stored as %-4s %38.2f    %.1f (+ %.1f)\n", k ? "bf16" : "fp32", ms,
               g.act.peak / 1048576.0, g.stage.peak / 1048576.0);
        graph_free(&g);
    }
    rm_free(&m);
    free(pixels);
}

int main(int argc, char **argv) {
#ifdef MMRM_NCCL
    /* under mpirun every rank times the all-reduce; the kernel tables run on rank 0 only */
    static Comm comm_s;
    Comm *comm = &comm_s;
    comm_init(comm, &argc, &argv);
    if (cuda_device_count() > 0) cuda_select_device(comm->local_rank % cuda_device_count());
    if (comm->world > 1 && comm->rank != 0) {
        comm_nccl_init(comm);
        nccl_bench(comm);
        comm_finalize(comm);
        return 0;
    }
#else
    (void)argc;
    (void)argv;
#endif
    if (cuda_device_count() == 0) {
        fprintf(stderr, "bench_cuda: no GPU visible\n");
        return 2;
    }
    printf("device: %s\n\n", cuda_device_description());
    int lab = lab_main(argc, argv); /* --only FAMILY ...: the kernel lab, then nothing else */
    if (lab >= 0) {
#ifdef MMRM_NCCL
        comm_finalize(comm);
#endif
        return lab;
    }

    /* GEMMs: (N tokens, C in, OC out) of Qwen2-0.5B / InternLM2-7B / InternViT-300M layers */
    const int shapes[][3] = {{4096, 896, 896}, {4096, 896, 4864}, {4096, 4864, 896},
                             {4096, 4096, 4096}, {4096, 4096, 14336}, {4096, 1024, 4096}};
    printf("GEMM (kernels_cuda.matmul_*, cuBLASLt)   fwd TFLOP/s                        bwd TFLOP/s\n");
    printf("  fp32: fp32 math; fast: bf16 mode over fp32 operands (FAST_16BF); conv: bf16 operands\n"
           "  converted per call; copy: bf16 weight copy + converted activations (training)\n");
    printf("%-20s %7s %7s %7s %7s  %7s %7s %7s %7s\n", "N x C -> OC", "fp32", "fast", "conv", "copy",
           "fp32", "fast", "conv", "copy");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        Mm m = {shapes[s][0], shapes[s][1], shapes[s][2], 0, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL, KP_FP32};
        m.x = drand((size_t)m.N * m.C, 1);
        m.w = drand((size_t)m.OC * m.C, 2);
        m.b = drand(m.OC, 3);
        m.y = drand((size_t)m.N * m.OC, 4);
        m.dx = drand((size_t)m.N * m.C, 5);
        m.dw = drand((size_t)m.OC * m.C, 6);
        m.db = drand(m.OC, 7);
        double flop = 2.0 * m.N * m.C * m.OC;
        float t[8];
        for (int k = 0; k < 8; k++) { /* k % 4: fp32, fast, conv, copy; k / 4: fwd, bwd */
            int mode = k % 4;
            static const int precs[4] = {KP_FP32, KP_BF16_FP32_OPERANDS, KP_BF16, KP_BF16};
            m.prec = precs[mode];
            m.w16 = NULL;
            if (mode == 3) {
                m.w16 = cuda_malloc((size_t)m.OC * m.C * sizeof *m.w16);
                kernels_cuda.f32_to_bf16(m.w16, m.w, (size_t)m.OC * m.C);
            }
            m.bwd = k / 4;
            t[k] = time_ms(mm_body, &m);
            if (m.w16) cuda_free(m.w16);
        }
        printf("%5d x %5d -> %5d", m.N, m.C, m.OC);
        for (int k = 0; k < 8; k++)
            printf(k == 4 ? "  %7.1f" : " %7.1f", (k < 4 ? flop : 2 * flop) / t[k] / 1e9);
        printf("\n");
        cuda_free(m.x); cuda_free(m.w); cuda_free(m.b); cuda_free(m.y);
        cuda_free(m.dx); cuda_free(m.dw); cuda_free(m.db);
    }

    /* norms: read x once, write y once (weights and statistics are negligible) */
    printf("\nnorm forward (fp32)               GB/s   (device-to-device copy of the same bytes: GB/s)\n");
    const int nshapes[][2] = {{8192, 896}, {8192, 1024}, {8192, 4096}, {16384, 4096}};
    for (size_t s = 0; s < sizeof nshapes / sizeof *nshapes; s++) {
        Nm n = {nshapes[s][0], nshapes[s][1], 0, NULL, NULL, NULL, NULL, NULL, NULL};
        size_t e = (size_t)n.N * n.C;
        n.x = drand(e, 11);
        n.y = drand(e, 12);
        n.w = drand(n.C, 13);
        n.b = drand(n.C, 14);
        n.mean = drand(n.N, 15);
        n.rstd = drand(n.N, 16);
        Cp c = {n.y, n.x, e * sizeof(float)};
        float tc = time_ms(cp_body, &c);
        double bytes = 2.0 * e * sizeof(float);
        float tl = time_ms(nm_body, &n);
        n.rms = 1;
        float tr = time_ms(nm_body, &n);
        printf("%6d x %5d  layernorm %7.0f  rmsnorm %7.0f   copy %7.0f  (layernorm %.0f%%, rmsnorm %.0f%% of copy)\n",
               n.N, n.C, bytes / tl / 1e6, bytes / tr / 1e6, bytes / tc / 1e6, 100.0 * tc / tl, 100.0 * tc / tr);
        cuda_free(n.x); cuda_free(n.y); cuda_free(n.w); cuda_free(n.b); cuda_free(n.mean); cuda_free(n.rstd);
    }

    /* attention: 4 * B * NH * T^2 * HD flops forward (halved when causal), 2.5x that backward */
    printf("\nattention (hand-written, fp32)                 fwd TFLOP/s  bwd TFLOP/s\n");
    const int ash[][6] = {{4, 1024, 16, 16, 64, 0}, {4, 1025, 16, 16, 64, 0}, {2, 2048, 14, 2, 64, 1},
                          {1, 4096, 32, 8, 128, 1}};
    for (size_t s = 0; s < sizeof ash / sizeof *ash; s++) {
        At a = {ash[s][0], ash[s][1], ash[s][2], ash[s][3], ash[s][4], ash[s][5], 0,
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
        size_t nq = (size_t)a.B * a.T * a.NH * a.HD, nk = (size_t)a.B * a.T * a.KV * a.HD;
        a.q = drand(nq, 21); a.k = drand(nk, 22); a.v = drand(nk, 23); a.o = drand(nq, 24);
        a.lse = drand((size_t)a.B * a.NH * a.T, 25);
        a.dq = drand(nq, 26); a.dk = drand(nk, 27); a.dv = drand(nk, 28); a.dout = drand(nq, 29);
        int *hl = malloc(a.B * sizeof *hl);
        for (int b = 0; b < a.B; b++) hl[b] = a.T;
        a.len = cuda_malloc(a.B * sizeof(int));
        cuda_copy_h2d(a.len, hl, a.B * sizeof(int));
        free(hl);
        double flop = 4.0 * a.B * a.NH * (double)a.T * a.T * a.HD * (a.causal ? 0.5 : 1.0);
        float tf = time_ms(at_body, &a);
        a.bwd = 1;
        float tb = time_ms(at_body, &a);
        printf("B=%d T=%5d NH=%2d KV=%2d HD=%3d %-8s %18.1f %12.1f\n", a.B, a.T, a.NH, a.KV, a.HD,
               a.causal ? "causal" : "full", flop / tf / 1e9, 2.5 * flop / tb / 1e9);
        cuda_free(a.q); cuda_free(a.k); cuda_free(a.v); cuda_free(a.o); cuda_free(a.lse);
        cuda_free(a.dq); cuda_free(a.dk); cuda_free(a.dv); cuda_free(a.dout); cuda_free(a.len);
    }
    rows_bench();
    model_bench();
#ifdef MMRM_NCCL
    comm_nccl_init(comm);
    nccl_bench(comm);
    comm_finalize(comm);
#endif
    return 0;
}
