/* optimizer.c - the parameter-update ops: AdamW (torch.optim.AdamW's single-tensor
 * algorithm, fp32 state), the sum of squares behind global gradient-norm clipping, and
 * in-place scaling (clipping, gradient-accumulation averaging). n is the number of
 * elements of one flat parameter/gradient buffer. */
#include <math.h>

#include "kernels/cpu/cpu.h"
#include "kernels/scalar.h"

void cpu_adamw_update(float *params,      /* (n) */
                      uint16_t *params16, /* (n) bf16 copy of params to rewrite, or NULL */
                      const float *grads, /* (n) */
                      float *m,           /* (n) first moment */
                      float *v,           /* (n) second moment */
                      size_t n, float lr, float beta1, float beta2, float eps,
                      float weight_decay, int t, float grad_scale) {
    /* torch computes these step scalars in double (Python floats) and rounds them to the
     * tensor's fp32 when it applies them */
    float decay = (float)(1.0 - (double)lr * weight_decay);
    double bias_correction1 = 1.0 - pow(beta1, t);
    double bias_correction2 = 1.0 - pow(beta2, t);
    float step_size = (float)(lr / bias_correction1);
    float bias_correction2_sqrt = (float)sqrt(bias_correction2);
    float one_minus_b1 = 1.0f - beta1, one_minus_b2 = 1.0f - beta2;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grads[i] * grad_scale;
        float p = params[i] * decay; /* decoupled weight decay, before the Adam step */
        float mi = beta1 * m[i] + one_minus_b1 * g;
        float vi = beta2 * v[i] + one_minus_b2 * g * g;
        float denom = sqrtf(vi) / bias_correction2_sqrt + eps;
        float np = p - step_size * (mi / denom);
        params[i] = np;
        if (params16) params16[i] = kscalar_bf16_rn(np);
        m[i] = mi;
        v[i] = vi;
    }
}

enum {
    SUMSQ_CHUNK = 4096, /* elements per partial sum */
    SUMSQ_ROUND = 256,  /* partial sums per parallel round: bounds the stack buffer */
    SUMSQ_LANES = 8,    /* independent accumulators, so the chunk loop vectorises */
};

/* sum of squares of one chunk in double, in a fixed lane pattern */
static double sum_squares_chunk(const float *g, size_t n) {
    double lane[SUMSQ_LANES] = {0};
    size_t i = 0;
    for (; i + SUMSQ_LANES <= n; i += SUMSQ_LANES)
        for (int k = 0; k < SUMSQ_LANES; k++) lane[k] += (double)g[i + k] * g[i + k];
    for (; i < n; i++) lane[0] += (double)g[i] * g[i];
    double s = 0.0;
    for (int k = 0; k < SUMSQ_LANES; k++) s += lane[k];
    return s;
}

/* The partition into chunks depends only on n, and the partial sums are added in chunk
 * order by one thread, so the result is bitwise the same for any thread count. */
void cpu_sum_squares(float *out, /* (1) */
                     const float *g, /* (n) */
                     size_t n) {
    size_t nchunks = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    double partial[SUMSQ_ROUND];
    double total = 0.0;
    for (size_t base = 0; base < nchunks; base += SUMSQ_ROUND) {
        size_t count = nchunks - base < SUMSQ_ROUND ? nchunks - base : SUMSQ_ROUND;
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < count; k++) {
            size_t start = (base + k) * SUMSQ_CHUNK;
            size_t len = n - start < SUMSQ_CHUNK ? n - start : SUMSQ_CHUNK;
            partial[k] = sum_squares_chunk(g + start, len);
        }
        for (size_t k = 0; k < count; k++) total += partial[k];
    }
    out[0] = (float)total;
}

void cpu_sum_squares_acc(double *sq, /* (1) */
                         const float *g, /* (n) */
                         size_t n) {
    float part;
    cpu_sum_squares(&part, g, n);
    sq[0] += part;
}

void cpu_clip_coef(float *coef, /* (1) */
                   const double *sq, /* (1) */
                   double max_norm) {
    coef[0] = kscalar_clip_coef(sq[0], max_norm);
}

void cpu_adamw_update_scaled(float *params, uint16_t *params16, const float *grads, float *m, float *v,
                             size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                             int t, const float *grad_scale /* (1) */) {
    if (!isfinite(grad_scale[0])) return;
    cpu_adamw_update(params, params16, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, t, grad_scale[0]);
}

void cpu_scale_inplace(float *x, /* (n) */
                       float s, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}
