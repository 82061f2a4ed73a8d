/* rope.c - rotary position embedding, rotate-half form (HF Llama / Qwen2 / InternLM2,
 * spec/model.md s3), forward and backward. N rows (tokens), NH heads, HD head dim (even; the
 * caller checks). Row n of every head rotates each pair (x[i], x[i + HD/2]), i < HD/2, by the
 * angle pos[n] * theta^(-2i/HD). Frequencies, angles, cos/sin and the rotation itself are
 * computed in double, so the result is the exact rotation rounded once to float at any
 * position; HF forms the angle in float32, which differs by up to pos * 6e-8 rad. */
#include "kernels/cpu/cpu.h"

#include <math.h>

/* Frequencies are handled in blocks so the per-row cos/sin tables fit on the stack for any
 * HD; HD <= 2 * ROPE_BLOCK (every model in spec/model.md) takes a single block. */
#define ROPE_BLOCK 128

/* y = R(dir * angle) x per pair, either stored (forward, dir = +1; y may alias x because
 * both elements of a pair are read before either is written) or added to y (backward,
 * dir = -1: the transpose of a rotation is the rotation by the opposite angle). */
static void rope_rotate(float *y, const float *x, const int *pos, int N, int NH, int HD,
                        float theta, double dir, int accumulate) {
    int half = HD / 2;
    for (int i0 = 0; i0 < half; i0 += ROPE_BLOCK) {
        int nb = half - i0 < ROPE_BLOCK ? half - i0 : ROPE_BLOCK;
        double inv_freq[ROPE_BLOCK];
        for (int i = 0; i < nb; i++) inv_freq[i] = pow((double)theta, -2.0 * (i0 + i) / HD);
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            double c[ROPE_BLOCK], s[ROPE_BLOCK];
            for (int i = 0; i < nb; i++) {
                sincos((double)pos[n] * inv_freq[i], &s[i], &c[i]);
                s[i] *= dir;
            }
            for (int h = 0; h < NH; h++) {
                const float *xr = x + ((size_t)n * NH + h) * HD + i0; /* (nb) and (nb) at +half */
                float *yr = y + ((size_t)n * NH + h) * HD + i0;
                for (int i = 0; i < nb; i++) {
                    double a = xr[i], b = xr[i + half];
                    double ya = a * c[i] - b * s[i], yb = b * c[i] + a * s[i];
                    if (accumulate) {
                        yr[i] = (float)(yr[i] + ya);
                        yr[i + half] = (float)(yr[i + half] + yb);
                    } else {
                        yr[i] = (float)ya;
                        yr[i + half] = (float)yb;
                    }
                }
            }
        }
    }
}

/* out may equal inp (in-place rotation). */
void cpu_rope_forward(float *out,       /* (N, NH, HD) */
                      const float *inp, /* (N, NH, HD) */
                      const int *pos,   /* (N) */
                      int N, int NH, int HD, float theta) {
    rope_rotate(out, inp, pos, N, NH, HD, theta, 1.0, 0);
}

void cpu_rope_backward(float *dinp,       /* (N, NH, HD) or NULL */
                       const float *dout, /* (N, NH, HD) */
                       const int *pos,    /* (N) */
                       int N, int NH, int HD, float theta) {
    if (!dinp) return;
    rope_rotate(dinp, dout, pos, N, NH, HD, theta, -1.0, 1);
}
