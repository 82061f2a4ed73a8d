/* metrics.c - accuracy, margins, per-category accuracy, text-only accuracy and SFD over
 * scored pairs (definitions in metrics.h), printed as an aligned table or as JSON. Sums are
 * in double; the margin's standard deviation takes a second pass around the mean. */
#include "infer/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "runtime/error.h"

#define SFD_DEFINITION \
    "SFD = acc(MM-RM | text-only right) - acc(MM-RM | text-only wrong), percentage points; " \
    "text-only right = text-only score(chosen) > score(rejected), a tie counts as wrong"

/* 1 for a win, 0.5 for a tie, 0 for a loss */
static double credit(double c, double r) { return c > r ? 1.0 : c == r ? 0.5 : 0.0; }

static int cmp_cat(const void *a, const void *b) {
    return strcmp(((const CategoryAcc *)a)->name, ((const CategoryAcc *)b)->name);
}

void metrics_compute(const float *chosen, const float *rejected, size_t n,
                     const int *category, const char *const *category_names, int ncat,
                     const float *text_chosen, const float *text_rejected, EvalMetrics *out) {
    memset(out, 0, sizeof *out);
    out->pairs = (long)n;
    out->has_text = text_chosen && text_rejected;
    double sum = 0, dsum = 0, right_sum = 0, wrong_sum = 0;
    double *cat_sum = xcalloc((size_t)(ncat > 0 ? ncat : 1), sizeof *cat_sum);
    long *cat_n = xcalloc((size_t)(ncat > 0 ? ncat : 1), sizeof *cat_n);
    /* per category: text-only right/wrong counts and the MM-RM credit on each side */
    long *cat_right = xcalloc((size_t)(ncat > 0 ? ncat : 1), sizeof *cat_right);
    long *cat_wrong = xcalloc((size_t)(ncat > 0 ? ncat : 1), sizeof *cat_wrong);
    double *cat_rsum = xcalloc((size_t)(ncat > 0 ? ncat : 1), sizeof *cat_rsum);
    double *cat_wsum = xcalloc((size_t)(ncat > 0 ? ncat : 1), sizeof *cat_wsum);
    double text_credit = 0;
    for (size_t i = 0; i < n; i++) {
        double c = chosen[i], r = rejected[i];
        if (isnan(c) || isnan(r)) continue;
        double k = credit(c, r);
        out->n++;
        out->ties += c == r;
        sum += k;
        dsum += c - r;
        int j = category && category[i] >= 0 && category[i] < ncat ? category[i] : -1;
        if (j >= 0) {
            cat_sum[j] += k;
            cat_n[j]++;
        }
        if (!out->has_text || isnan(text_chosen[i]) || isnan(text_rejected[i])) continue;
        out->n_text++;
        out->text_ties += text_chosen[i] == text_rejected[i];
        text_credit += credit(text_chosen[i], text_rejected[i]);
        if (text_chosen[i] > text_rejected[i]) {
            out->text_right++;
            right_sum += k;
            if (j >= 0) cat_right[j]++, cat_rsum[j] += k;
        } else {
            out->text_wrong++;
            wrong_sum += k;
            if (j >= 0) cat_wrong[j]++, cat_wsum[j] += k;
        }
    }
    out->unscored = out->pairs - out->n;
    out->accuracy = out->n ? sum / (double)out->n : NAN;
    out->margin_mean = out->n ? dsum / (double)out->n : NAN;
    double var = 0;
    for (size_t i = 0; i < n && out->n; i++) {
        double c = chosen[i], r = rejected[i];
        if (isnan(c) || isnan(r)) continue;
        double d = c - r - out->margin_mean;
        var += d * d;
    }
    out->margin_std = out->n ? sqrt(var / (double)out->n) : NAN;
    for (int j = 0; j < ncat; j++)
        if (cat_n[j] > 0) out->ncat++;
    out->cats = xcalloc((size_t)(out->ncat > 0 ? out->ncat : 1), sizeof *out->cats);
    for (int j = 0, k = 0; j < ncat; j++) {
        if (cat_n[j] == 0) continue;
        long nt = cat_right[j] + cat_wrong[j];
        double ar = cat_right[j] ? cat_rsum[j] / (double)cat_right[j] : NAN;
        double aw = cat_wrong[j] ? cat_wsum[j] / (double)cat_wrong[j] : NAN;
        out->cats[k++] = (CategoryAcc){xstrdup(category_names[j]), cat_n[j],
                                       cat_sum[j] / (double)cat_n[j], nt, cat_right[j],
                                       cat_wrong[j], nt ? (double)cat_right[j] / (double)nt : NAN,
                                       ar, aw, 100.0 * (ar - aw)};
    }
    qsort(out->cats, (size_t)out->ncat, sizeof *out->cats, cmp_cat);
    free(cat_sum);
    free(cat_n);
    free(cat_right);
    free(cat_wrong);
    free(cat_rsum);
    free(cat_wsum);
    out->text_accuracy = out->n_text ? (double)out->text_right / (double)out->n_text : NAN;
    out->text_accuracy_ties_half = out->n_text ? text_credit / (double)out->n_text : NAN;
    out->acc_text_right = out->text_right ? right_sum / (double)out->text_right : NAN;
    out->acc_text_wrong = out->text_wrong ? wrong_sum / (double)out->text_wrong : NAN;
    out->sfd_pp = 100.0 * (out->acc_text_right - out->acc_text_wrong);
}

void metrics_free(EvalMetrics *m) {
    for (int j = 0; j < m->ncat; j++) free(m->cats[j].name);
    free(m->cats);
    memset(m, 0, sizeof *m);
}

/* a number, or "n/a" for NaN, as a percentage with pct */
static const char *num(char *buf, size_t n, double x, int pct) {
    if (isnan(x)) snprintf(buf, n, "n/a");
    else if (pct) snprintf(buf, n, "%.2f%%", 100 * x);
    else snprintf(buf, n, "%.4f", x);
    return buf;
}

void metrics_print_table(FILE *f, const EvalMetrics *m, const char *label) {
    char a[64], b[64];
    int w = 14; /* the category names widen the first column when they need it */
    for (int j = 0; j < m->ncat; j++) {
        int len = (int)strlen(m->cats[j].name) + 2;
        if (len > w && len <= 60) w = len;
    }
    fprintf(f, "evaluation of %s\n", label);
    fprintf(f, "  pairs\n");
    fprintf(f, "  %-*s %10ld\n", w, "  given", m->pairs);
    fprintf(f, "  %-*s %10ld\n", w, "  scored", m->n);
    fprintf(f, "  %-*s %10ld  (image unreadable or a response rejected by the template)\n", w,
            "  not scored", m->unscored);
    fprintf(f, "  %-*s %10s  score(chosen) > score(rejected), ties count 0.5 (%ld ties)\n", w,
            "accuracy", num(a, sizeof a, m->accuracy, 1), m->ties);
    fprintf(f, "  %-*s %10s  score(chosen) - score(rejected), mean\n", w, "margin mean",
            num(a, sizeof a, m->margin_mean, 0));
    fprintf(f, "  %-*s %10s  population standard deviation\n", w, "margin std",
            num(a, sizeof a, m->margin_std, 0));
    if (m->ncat > 0) {
        fprintf(f, "  per category (accuracy, ties 0.5)\n");
        for (int j = 0; j < m->ncat; j++)
            fprintf(f, "    %-*.*s %10s  %ld pairs\n", w - 2, 60, m->cats[j].name,
                    num(a, sizeof a, m->cats[j].accuracy, 1), m->cats[j].n);
    }
    if (!m->has_text) return;
    fprintf(f, "  text-only verdict (right = text-only score(chosen) > score(rejected); a tie "
               "counts as wrong)\n");
    fprintf(f, "  %-*s %10s  %ld of %ld pairs right (%ld ties)\n", w, "text-only acc",
            num(a, sizeof a, m->text_accuracy, 1), m->text_right, m->n_text, m->text_ties);
    fprintf(f, "  %-*s %10s  the text-only model's own accuracy, ties 0.5 (MM-RM: %s)\n", w,
            "  ties 0.5", num(a, sizeof a, m->text_accuracy_ties_half, 1),
            num(b, sizeof b, m->accuracy, 1));
    fprintf(f, "  %-*s %10s  MM-RM accuracy on the %ld pairs the text-only model gets right\n",
            w, "acc | right", num(a, sizeof a, m->acc_text_right, 1), m->text_right);
    fprintf(f, "  %-*s %10s  MM-RM accuracy on the %ld pairs the text-only model gets wrong\n",
            w, "acc | wrong", num(b, sizeof b, m->acc_text_wrong, 1), m->text_wrong);
    if (isnan(m->sfd_pp)) snprintf(a, sizeof a, "n/a");
    else snprintf(a, sizeof a, "%+.2f pp", m->sfd_pp);
    fprintf(f, "  %-*s %10s  SFD = acc(MM-RM | text-only right) - acc(MM-RM | text-only "
            "wrong), percentage points%s\n", w, "SFD", a,
            isnan(m->sfd_pp) ? "; n/a: one side has no pair" : "");
    if (m->ncat == 0) return;
    fprintf(f, "  SFD by category (MM-RM acc | text-only acc | SFD; text-only right/wrong pairs)\n");
    for (int j = 0; j < m->ncat; j++) {
        const CategoryAcc *c = &m->cats[j];
        char t[64], sfd[64];
        if (isnan(c->sfd_pp)) snprintf(sfd, sizeof sfd, "n/a");
        else snprintf(sfd, sizeof sfd, "%+.2f pp", c->sfd_pp);
        fprintf(f, "    %-*.*s %10s %10s %11s  %ld/%ld\n", w - 2, 60, c->name,
                num(a, sizeof a, c->accuracy, 1), num(t, sizeof t, c->text_accuracy, 1), sfd,
                c->text_right, c->text_wrong);
    }
}

static void add_num(cJSON *o, const char *key, double x) {
    if (isnan(x) || isinf(x)) cJSON_AddNullToObject(o, key);
    else cJSON_AddNumberToObject(o, key, x);
}

char *metrics_json(const EvalMetrics *m, const char *label) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "data", label);
    add_num(o, "pairs", (double)m->pairs);
    add_num(o, "scored", (double)m->n);
    add_num(o, "unscored", (double)m->unscored);
    add_num(o, "accuracy", m->accuracy);
    add_num(o, "ties", (double)m->ties);
    add_num(o, "margin_mean", m->margin_mean);
    add_num(o, "margin_std", m->margin_std);
    cJSON *cats = cJSON_AddObjectToObject(o, "categories");
    for (int j = 0; j < m->ncat; j++) {
        cJSON *c = cJSON_AddObjectToObject(cats, m->cats[j].name);
        add_num(c, "n", (double)m->cats[j].n);
        add_num(c, "accuracy", m->cats[j].accuracy);
        if (!m->has_text) continue;
        add_num(c, "text_n", (double)m->cats[j].n_text);
        add_num(c, "text_right", (double)m->cats[j].text_right);
        add_num(c, "text_wrong", (double)m->cats[j].text_wrong);
        add_num(c, "text_accuracy", m->cats[j].text_accuracy);
        add_num(c, "acc_given_text_right", m->cats[j].acc_text_right);
        add_num(c, "acc_given_text_wrong", m->cats[j].acc_text_wrong);
        add_num(c, "sfd_pp", m->cats[j].sfd_pp);
    }
    if (m->has_text) {
        cJSON *t = cJSON_AddObjectToObject(o, "text_only");
        add_num(t, "n", (double)m->n_text);
        add_num(t, "right", (double)m->text_right);
        add_num(t, "wrong", (double)m->text_wrong);
        add_num(t, "ties", (double)m->text_ties);
        add_num(t, "accuracy", m->text_accuracy);
        add_num(t, "accuracy_ties_half", m->text_accuracy_ties_half);
        add_num(t, "acc_given_text_right", m->acc_text_right);
        add_num(t, "acc_given_text_wrong", m->acc_text_wrong);
        add_num(t, "sfd_pp", m->sfd_pp);
        cJSON_AddStringToObject(t, "sfd_definition", SFD_DEFINITION);
    } else {
        cJSON_AddNullToObject(o, "text_only");
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) MMRM_FATAL("out of memory printing the metrics");
    char *copy = xstrdup(text);
    cJSON_free(text);
    return copy;
}
