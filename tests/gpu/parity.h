/* parity.h - the GPU parity checks (build/gpu_parity, run by tests/gpu/run.sh on a GPU
 * machine): every op of kernels_cuda against kernels_cpu on fresh random inputs, the tiny
 * model's rewards and gradients, and training on both devices.
 *
 * A check compares a CUDA result with the CPU result norm-wise:
 * rel = ||got - ref||_2 / max(||ref||_2, 1e-30) <= tol, tol = 1e-5 in fp32 mode and 1e-2
 * in bf16 mode (parity_tol; the whole model, where bf16 rounding compounds over every GEMM,
 * uses 5e-2 in bf16 mode: parity_model.c). Every check prints one line and is counted. */
#ifndef MMRM_TESTS_GPU_PARITY_H
#define MMRM_TESTS_GPU_PARITY_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "runtime/rng.h"

typedef struct Parity {
    int passed, failed;
    int bf16;       /* precision of this pass: the GEMMs run in bf16 */
    int quick;      /* --quick: smaller coverage where a group is slow (the CPU emulator) */
    double worst;   /* largest rel seen relative to its tolerance */
    Rng rng;
} Parity;

/* the GEMM precision of this pass, for the op table's `precision` argument */
#define PREC(p) ((p)->bf16 ? KP_BF16 : KP_FP32)

double parity_tol(const Parity *p);  /* 1e-5 fp32, 1e-2 bf16 */
/* compares n floats (both host arrays); returns 1 when within tol */
int parity_check(Parity *p, const char *what, const float *ref, const float *got, size_t n,
                 double tol);

/* downloads n floats of device memory d and checks them against ref with parity_tol */
int parity_check_dev(Parity *p, const char *what, const float *ref, const float *d, size_t n);
/* a check name formatted into a static buffer, valid until the next call (parity_check
 * prints it before the next name is made) */
const char *parity_name(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* host helpers: random arrays from p->rng (freed with free) */
float *h_rand(Parity *p, size_t n, float lo, float hi);
float *h_zeros(size_t n);
float *h_copy(const float *x, size_t n);
/* device helpers (exit on CUDA errors) */
float *d_upload(const float *h, size_t n);        /* new device copy */
int *d_upload_i(const int *h, size_t n);
float *d_zeros(size_t n);
void d_download(float *h, const float *d, size_t n); /* waits for the stream */
void d_free(void *d);

/* the op groups (each in its own file) */
void parity_elementwise(Parity *p); /* embedding, gelu, swiglu, rope, im2col, pixel shuffle,
                                        add, channel scale, drop_path */
void parity_norm(Parity *p);        /* layernorm, rmsnorm */
void parity_bf16act(Parity *p);     /* the kernels over bf16 activations (*_x16), add + norm */
void parity_loss_optim(Parity *p);  /* bt_loss, shortcut_loss, adamw, sum_squares, scale */
void parity_matmul(Parity *p);      /* matmul forward/backward */
void parity_attention(Parity *p);   /* attention forward/backward (and the rows op's) */
void parity_attention_rows(Parity *p); /* attention_rows forward/backward, run by the above */
void parity_model(Parity *p);       /* tiny model rewards/grads, training CPU vs GPU */
void parity_mma(Parity *p);         /* tensor-core primitives (kernels/cuda/mma.cuh) */
void parity_graph(Parity *p);       /* CUDA graphs: capture, update, replay, refusal */

#endif
