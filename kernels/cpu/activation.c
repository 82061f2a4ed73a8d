/* activation.c - elementwise activations over n values, forward and backward: exact
 * (erf) GELU and the SwiGLU gate product silu(gate) * up.
 *
 * GELU is evaluated as x * Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2, the same function
 * as 0.5 x (1 + erf(x / sqrt 2)) but without the cancellation of 1 + erf for x << 0, and
 * in double: glibc's erfc costs the same as erfcf here, and the float rounding of
 * x / sqrt 2 alone would be amplified about x^2 times in the tail. The sigmoid in SiLU
 * only ever exponentiates -|g|, so no intermediate overflows and 1 - sigmoid keeps its
 * relative precision for large g.
 */
#include "kernels/cpu/cpu.h"

#include <math.h>

#define INV_SQRT_2PI 0.39894228040143267794

void cpu_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        out[i] = (float)(0.5 * x * erfc(-x * M_SQRT1_2));
    }
}

/* d/dx x Phi(x) = Phi(x) + x phi(x) */
void cpu_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    if (!dinp) return;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        double d = 0.5 * erfc(-x * M_SQRT1_2) + x * exp(-0.5 * x * x) * INV_SQRT_2PI;
        dinp[i] += (float)(dout[i] * d);
    }
}

/* sigmoid(g) and 1 - sigmoid(g) from e = exp(-|g|) <= 1 */
static inline void sigmoid_pair(float g, float *sig, float *one_minus_sig) {
    float e = expf(-fabsf(g));
    float r = 1.0f / (1.0f + e), p = e * r;
    *sig = g >= 0 ? r : p;
    *one_minus_sig = g >= 0 ? p : r;
}

void cpu_swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float s, oms;
        sigmoid_pair(gate[i], &s, &oms);
        out[i] = gate[i] * s * up[i];
    }
}

/* silu'(g) = s + g s (1 - s) */
void cpu_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, size_t n) {
    if (!dgate && !dup) return;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], s, oms;
        sigmoid_pair(g, &s, &oms);
        if (dgate) dgate[i] += dout[i] * up[i] * (s * (1.0f + g * oms));
        if (dup) dup[i] += dout[i] * (g * s);
    }
}
