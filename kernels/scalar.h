/* scalar.h - per-element arithmetic both backends share, written once: kernels/cpu/ (C)
 * call these as plain C, kernels/cuda/ (CUDA) as __host__ __device__ functions (and so does
 * the CUDA emulator's C++). Same source, same operations in the same order, so the CPU and
 * the GPU differ at most where the summation order of a reduction differs. */
#ifndef MMRM_KERNELS_SCALAR_H
#define MMRM_KERNELS_SCALAR_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__) || (defined(__cplusplus) && defined(MMRM_CUDA_EMU))
#define KSCALAR static inline __host__ __device__
#else
#define KSCALAR static inline
#endif

/* fp32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN */
KSCALAR uint16_t kscalar_bf16_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* -log sigmoid(x) = softplus(-x), written so that neither branch overflows: exp only ever
 * sees -|x| <= 0, and log1p keeps the tiny tail (x = 40 gives 4.2e-18, not 0), which the
 * shortcut weight depends on when both losses vanish. */
KSCALAR double kscalar_neg_log_sigmoid(double x) {
    return fmax(-x, 0.0) + log1p(exp(-fabs(x)));
}

/* exp is only evaluated at -|x|, so |x| = 1e4 underflows to 0 or 1 instead of inf/inf */
KSCALAR double kscalar_sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* One pair of the shortcut-aware loss (spec/algorithm.md): main rewards mc/mr, bias rewards
 * bc/br, the loss mean's upstream scale `scale` = dloss / P. */
typedef struct {
    double w, lm, lb; /* the weight (detached) and the two Bradley-Terry losses */
    double term;      /* w * Lm + Lb, this pair's part of the loss sum */
    double gm, gb;    /* d loss / d mc = -gm (d/d mr = +gm); the same with gb for bc/br */
} KShortcutPair;

KSCALAR KShortcutPair kscalar_shortcut_pair(float mc, float mr, float bc, float br, double eps,
                                            double scale) {
    KShortcutPair r;
    double dm = (double)mc - mr;
    double db = (double)bc - br;
    r.lm = kscalar_neg_log_sigmoid(dm);
    r.lb = kscalar_neg_log_sigmoid(db);
    /* the reference code's SFC, eps terms included: when Lm and Lb both vanish,
     * w -> eps/2 rather than 0/0 */
    r.w = 0.5 * eps + r.lb / (eps + r.lb + r.lm);
    r.term = r.w * r.lm + r.lb;
    /* w is detached: the main model sees w * dLm, the bias model sees only dLb */
    r.gm = scale * r.w * kscalar_sigmoid(-dm);
    r.gb = scale * kscalar_sigmoid(-db);
    return r;
}

/* Pair i of the fused shortcut-aware loss, everything a backend writes for it: w, Lm, Lb,
 * and the four gradients accumulated (each d-vector may be NULL). Returns the pair's term of
 * the loss sum. Both backends' loops call this; only their summation of the terms differs. */
KSCALAR double kscalar_shortcut_pair_store(int i, const float *mc, const float *mr,
                                           const float *bc, const float *br, double eps,
                                           double scale, float *w, float *lm, float *lb,
                                           float *dmc, float *dmr, float *dbc, float *dbr) {
    KShortcutPair r = kscalar_shortcut_pair(mc[i], mr[i], bc[i], br[i], eps, scale);
    w[i] = (float)r.w;
    lm[i] = (float)r.lm;
    lb[i] = (float)r.lb;
    if (dmc) dmc[i] -= (float)r.gm;
    if (dmr) dmr[i] += (float)r.gm;
    if (dbc) dbc[i] -= (float)r.gb;
    if (dbr) dbr[i] += (float)r.gb;
    return r.term;
}

/* torch.nn.utils.clip_grad_norm_'s coefficient for the global norm sqrt(sq), computed in
 * double as train/optim.c always has: min(1, max_norm / (norm + 1e-6)), 1 without clipping
 * (max_norm <= 0); NaN for a non-finite norm, which makes AdamW skip the step */
KSCALAR float kscalar_clip_coef(double sq, double max_norm) {
    double norm = sqrt(sq);
    if (!isfinite(norm)) return NAN;
    if (max_norm <= 0) return 1.0f;
    double c = max_norm / (norm + 1e-6);
    return (float)(c > 1.0 ? 1.0 : c);
}

#endif
