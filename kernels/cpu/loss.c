/* loss.c - preference losses on reward scores, forward and backward fused in one pass:
 * Bradley-Terry (standard RM) and the shortcut-aware loss of spec/algorithm.md. P is the
 * number of preference pairs in a batch (a handful per step), so the loops are serial and
 * run in double: the batch sums are added in pair order, which makes them independent of
 * the thread count, and the extra precision costs nothing at this size. */
#include <math.h>

#include "kernels/cpu/cpu.h"
#include "kernels/scalar.h"

void cpu_bt_loss(float *loss,                          /* (1) */
                 float *losses,                        /* (P) */
                 float *dchosen, float *drejected,     /* (P) each, or NULL */
                 const float *rc, const float *rr,     /* (P) */
                 const float *margin,                  /* (P) or NULL */
                 int P, float dloss) {
    double sum = 0.0;
    double scale = (double)dloss / P; /* d mean / d losses[i] = 1/P */
    for (int i = 0; i < P; i++) {
        double x = (double)rc[i] - rr[i] - (margin ? margin[i] : 0.0f);
        double l = kscalar_neg_log_sigmoid(x);
        losses[i] = (float)l;
        sum += l;
        double g = scale * kscalar_sigmoid(-x); /* d softplus(-x) / dx = -sigmoid(-x) */
        if (dchosen) dchosen[i] -= (float)g;
        if (drejected) drejected[i] += (float)g;
    }
    loss[0] = (float)(sum / P);
}

void cpu_shortcut_loss(float *loss,                        /* (1) */
                       float *w, float *lm, float *lb,     /* (P) each */
                       float *dmc, float *dmr, float *dbc, float *dbr, /* (P) each, or NULL */
                       const float *mc, const float *mr,   /* main rewards (P) */
                       const float *bc, const float *br,   /* bias rewards (P) */
                       int P, float eps, float dloss) {
    double sum = 0.0;
    double scale = (double)dloss / P;
    double e = eps;
    for (int i = 0; i < P; i++) {
        sum += kscalar_shortcut_pair_store(i, mc, mr, bc, br, e, scale, w, lm, lb, dmc, dmr, dbc,
                                           dbr);
    }
    loss[0] = (float)(sum / P);
}
