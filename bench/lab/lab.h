/* lab.h - the kernel lab (bench/lab, README.md there): numbered variants of one kernel family
 * side by side, each checked against the CPU reference (kernels_cpu) and timed with CUDA
 * events. Variant 0 is always the production kernel called through the kernels_cuda op table;
 * the others are written in the family's file. Entry: build/bench_cuda --only FAMILY
 * [--variant N] [--check] (lab_main); build/emu_bench_cuda is the same program on the CPU
 * emulator (tests/cuda_emu), run with --check by tests/integration/kernel_lab.sh.
 *
 * C-callable (bench_cuda.c is C); the family files are CUDA C++. */
#ifndef MMRM_BENCH_LAB_H
#define MMRM_BENCH_LAB_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* bench_cuda's entry: -1 when argv has no lab option (run the usual sections), else the exit
 * status of the lab run (0 every check passed, 1 a check failed, 2 usage) */
int lab_main(int argc, char **argv);

typedef struct Lab {
    int variant;    /* --variant N, -1: all */
    int check_only; /* --check: small odd shapes, correctness only (the emulator) */
    int checks, failed;
    int ran;        /* variants run (0 with --variant N past the family's last: an error) */
} Lab;

/* the families (one file each) */
void lab_matmul(Lab *L);
void lab_norm(Lab *L);
void lab_attention(Lab *L);
void lab_elementwise(Lab *L);
void lab_loss(Lab *L);

/* 1 when variant v of a family with nv variants runs (counts it in L->ran) */
int lab_want(Lab *L, int v, int nv);

/* host memory: uniform in [lo, hi) from a fixed seed (rng_make(seed, 7)); free() it */
float *lab_rand(size_t n, uint64_t seed, float lo, float hi);
/* device memory (cuda_free it): a copy of h, or n floats of NaN (0xff bytes) so that an
 * element a variant does not write fails its check */
float *lab_upload(const float *h, size_t n);
int *lab_upload_i(const int *h, size_t n);
float *lab_nan(size_t n);
void lab_fill_nan(float *d, size_t n);
void lab_reset(float *d, const float *h, size_t n); /* d = h (device <- host) */

/* a check or row name formatted into a static buffer, valid until the next call */
const char *lab_name(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* rel = ||got - ref||_2 / ||ref||_2 <= tol, got downloaded from device memory d; prints one
 * line, counts it; a reference that is all zeros fails (the inputs are wrong) */
int lab_check(Lab *L, const char *what, const float *ref, const float *d, size_t n, double tol);

/* median ms of body over LAB_REPS runs after one warm-up, CUDA events on the backend's stream */
enum { LAB_REPS = 9 };
float lab_time_ms(void (*body)(void *), void *ctx);
/* median ms of a device-to-device cudaMemcpy moving `traffic` bytes (reads + writes: a copy
 * of traffic/2 bytes), the memory-bound reference */
float lab_copy_ms(double traffic);
/* one result line: variant, name, ms, TFLOP/s (flop > 0) or GB/s (bytes > 0), % of ref_ms */
void lab_row(int v, const char *name, float ms, double flop, double bytes, float ref_ms);

/* ---- the calls through the op table: the only places the lab calls KernelOps members (so
 * a change of the table's signatures is one line each, in lab.cu) ---- */
void lab_op_matmul_forward(const KernelOps *ops, float *out, const float *inp, const float *weight,
                           const float *bias, int N, int C, int OC);
void lab_op_layernorm_forward(const KernelOps *ops, float *out, float *mean, float *rstd,
                              const float *inp, const float *weight, const float *bias, int N,
                              int C, float eps);
void lab_op_rmsnorm_forward(const KernelOps *ops, float *out, float *rstd, const float *inp,
                            const float *weight, int N, int C, float eps);
void lab_op_attention_forward(const KernelOps *ops, float *out, float *lse, const float *q,
                              const float *k, const float *v, const int *lengths, int B, int T,
                              int NH, int KV, int HD, int causal, int precision);
void lab_op_attention_backward(const KernelOps *ops, float *dq, float *dk, float *dv,
                               const float *dout, const float *out, const float *lse,
                               const float *q, const float *k, const float *v,
                               const int *lengths, int B, int T, int NH, int KV, int HD,
                               int causal, int precision);
void lab_op_gelu_forward(const KernelOps *ops, float *out, const float *inp, size_t n);
void lab_op_swiglu_forward(const KernelOps *ops, float *out, const float *gate, const float *up,
                           size_t n);
void lab_op_add_forward(const KernelOps *ops, float *out, const float *a, const float *b, size_t n);
void lab_op_shortcut_loss(const KernelOps *ops, float *loss, float *w, float *lm, float *lb,
                          float *dmc, float *dmr, float *dbc, float *dbr, const float *mc,
                          const float *mr, const float *bc, const float *br, int P, float eps,
                          float dloss);
void lab_op_adamw_update(const KernelOps *ops, float *params, const float *grads, float *m,
                         float *v, size_t n, float lr, float beta1, float beta2, float eps,
                         float weight_decay, int t, float grad_scale);

#ifdef __cplusplus
}

/* lab_time_ms over a callable (the family files' lambdas) */
template <class F> float lab_time(F f) {
    return lab_time_ms([](void *p) { (*static_cast<F *>(p))(); }, &f);
}
#endif

#endif
