/* loss.c - preference losses on reward scores, forward and backward fused in one pass:
 * Bradley-Terry (standard RM) and the shortcut-aware loss of spec/algorithm.md. P is the
 * number of preference pairs in a batch (a handful per step), so the loops are serial and
 * run in double: the batch sums are added in pair order, which makes them independent of
 * the thread count, and the extra precision costs nothing at this size. */
#include <math.h>

#include "cpu.h"

/* -log sigmoid(x) = softplus(-x), written so that neither branch overflows: exp only ever
 * sees -|x| <= 0, and log1p keeps the tiny tail (x = 40 gives 4.2e-18, not 0), which the
 * shortcut weight depends on when both losses vanish. */
static double neg_log_sigmoid(double x) {
    return fmax(-x, 0.0) + log1p(exp(-fabs(x)));
}

/* exp is only evaluated at -|x|, so |x| = 1e4 underflows to 0 or 1 instead of inf/inf */
static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

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
        double l = neg_log_sigmoid(x);
        losses[i] = (float)l;
        sum += l;
        double g = scale * sigmoid(-x); /* d softplus(-x) / dx = -sigmoid(-x) */
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
        double dm = (double)mc[i] - mr[i];
        double db = (double)bc[i] - br[i];
        double Lm = neg_log_sigmoid(dm);
        double Lb = neg_log_sigmoid(db);
        /* the reference code's SFC, eps terms included: when Lm and Lb both vanish,
         * w -> eps/2 rather than 0/0 */
        double wi = 0.5 * e + Lb / (e + Lb + Lm);
        w[i] = (float)wi;
        lm[i] = (float)Lm;
        lb[i] = (float)Lb;
        sum += wi * Lm + Lb;
        /* w is detached: the main model sees w * dLm, the bias model sees only dLb */
        double gm = scale * wi * sigmoid(-dm);
        double gb = scale * sigmoid(-db);
        if (dmc) dmc[i] -= (float)gm;
        if (dmr) dmr[i] += (float)gm;
        if (dbc) dbc[i] -= (float)gb;
        if (dbr) dbr[i] += (float)gb;
    }
    loss[0] = (float)(sum / P);
}
