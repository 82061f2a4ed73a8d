/* metrics.h - evaluation metrics over scored preference pairs (spec/algorithm.md
 * "Evaluation"): pairwise accuracy, margin statistics, per-category accuracy, and against a
 * text-only verdict the text-only accuracy and the Shortcut-Failure Degradation.
 *
 * Definitions (printed next to the numbers):
 * - accuracy: fraction of pairs with score(chosen) > score(rejected), a tie counting 0.5;
 * - margin: score(chosen) - score(rejected); its mean and population standard deviation
 *   (divide by n);
 * - text-only verdict of a pair: right when the text-only model scores chosen strictly above
 *   rejected; a tie counts as wrong (the shortcut did not pick the chosen response);
 *   text-only accuracy is the fraction of pairs it gets right under that rule;
 * - SFD = acc(MM-RM | text-only right) - acc(MM-RM | text-only wrong), in percentage points,
 *   both accuracies with ties 0.5; NaN when either side has no pair; also per category;
 * - the text-only model's own accuracy under the MM-RM's rule (ties 0.5), to set next to the
 *   MM-RM's accuracy (the paper finds the two within ~1.2 points on the training distribution).
 * Pairs whose MM-RM scores are NaN (not scored) are left out of everything and counted;
 * pairs without a text-only verdict (NaN text scores) are left out of the text-only part.
 */
#ifndef MMRM_INFER_METRICS_H
#define MMRM_INFER_METRICS_H

#include <stddef.h>
#include <stdio.h>

typedef struct CategoryAcc {
    char *name;
    long n;
    double accuracy;    /* ties 0.5 */
    /* with a text-only verdict, over the category's pairs that have one (NaN otherwise) */
    long n_text, text_right, text_wrong;
    double text_accuracy, acc_text_right, acc_text_wrong, sfd_pp;
} CategoryAcc;

typedef struct EvalMetrics {
    long pairs;         /* pairs given */
    long n;             /* pairs with both MM-RM scores */
    long unscored;      /* pairs - n */
    long ties;
    double accuracy;    /* NaN when n == 0 */
    double margin_mean, margin_std;
    int ncat;
    CategoryAcc *cats;  /* (ncat) sorted by name; pairs without a category are not listed */
    int has_text;       /* a text-only verdict was given */
    long n_text;        /* scored pairs with a text-only verdict */
    long text_right, text_wrong, text_ties;
    double text_accuracy;            /* text_right / n_text */
    double text_accuracy_ties_half;  /* the text-only model's own accuracy, ties 0.5 like accuracy */
    double acc_text_right, acc_text_wrong; /* MM-RM accuracy on each side */
    double sfd_pp;      /* (acc_text_right - acc_text_wrong) * 100 */
} EvalMetrics;

/* chosen/rejected (n) MM-RM scores; category (n) may be NULL, else an index into
 * category_names (ncat) or -1 for none; text_chosen/text_rejected (n) may be NULL (no
 * text-only verdict), NaN marks a pair without one. */
void metrics_compute(const float *chosen, const float *rejected, size_t n,
                     const int *category, const char *const *category_names, int ncat,
                     const float *text_chosen, const float *text_rejected, EvalMetrics *out);
void metrics_free(EvalMetrics *m);

/* an aligned table with the definitions next to the numbers; label names the data */
void metrics_print_table(FILE *f, const EvalMetrics *m, const char *label);
/* one JSON object (free() it); NaN values are null */
char *metrics_json(const EvalMetrics *m, const char *label);

#endif
