/* rope.c - rotary position embedding, rotate-half form (HF Llama / Qwen2 / InternLM2,
 * spec/model.md s3), forward and backward. N rows (tokens), NH heads, HD head dim (even; the
 * caller checks). Row n of every head rotates each pair (x[i], x[i + HD/2]), i < HD/2, by the
 * angle pos[n] * theta^(-2i/HD). Frequencies, angles, cos/sin and the rotation itself are
 * computed in double, so the result is the exact rotation rounded once to float at any
 * position; HF forms the angle in float32, which differs by up to pos * 6e-8 rad. The cos/sin
 * of each position are computed once per call (rows share positions), the same values. */
#include "kernels/cpu/cpu.h"

#include <math.h>
#include <stdlib.h>

/* Frequencies are handled in blocks so the per-row cos/sin tables fit on the stack for any
 * HD; HD <= 2 * ROPE_BLOCK (every model in spec/model.md) takes a single block. */
#define ROPE_BLOCK 128

/* cos and sin of pos * inv_freq[i] in double for every position 0 .. npos-1 (the rows of a
 * batch share positions: a table per call costs npos instead of N sincos per frequency) */
typedef struct {
    double *cs; /* (npos, nb, 2): cos, sin */
    int npos;
} RopeTable;

/* rows reuse positions when the largest is below 2 N (positions of a batch: 0 .. length);
 * otherwise (NULL table) each row computes its own */
static RopeTable rope_table(const int *pos, int N, const double *inv_freq, int nb) {
    RopeTable t = {NULL, 0};
    int lo = 0, hi = -1;
    for (int n = 0; n < N; n++) {
        if (pos[n] < lo) lo = pos[n];
        if (pos[n] > hi) hi = pos[n];
    }
    if (lo < 0 || hi >= 2 * N) return t;
    t.cs = malloc((size_t)(hi + 1) * nb * 2 * sizeof(double));
    if (!t.cs) return t;
    t.npos = hi + 1;
#pragma omp parallel for schedule(static) if (t.npos >= 64)
    for (int p = 0; p < t.npos; p++)
        for (int i = 0; i < nb; i++) {
            double *e = t.cs + ((size_t)p * nb + i) * 2;
            sincos((double)p * inv_freq[i], &e[1], &e[0]);
        }
    return t;
}

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
        RopeTable tab = rope_table(pos, N, inv_freq, nb);
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            double c[ROPE_BLOCK], s[ROPE_BLOCK];
            for (int i = 0; i < nb; i++) {
                if (tab.cs) {
                    const double *e = tab.cs + ((size_t)pos[n] * nb + i) * 2;
                    c[i] = e[0], s[i] = e[1];
                } else {
                    sincos((double)pos[n] * inv_freq[i], &s[i], &c[i]);
                }
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
        free(tab.cs);
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
