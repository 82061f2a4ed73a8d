/* test_metrics.c - the evaluation metrics against their definitions (spec/algorithm.md
 * "Evaluation"): accuracy with ties as 0.5 on a hand-worked case and on random scores counted
 * in the test, margin mean and population std in double, per-category accuracy, text-only
 * accuracy and SFD from the pairs split by the text-only verdict, NaN for empty sides, and the
 * JSON and table outputs carrying the same numbers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "infer/metrics.h"
#include "tests/harness.h"

static int close_to(double a, double b) { return fabs(a - b) <= 1e-9 * (1 + fabs(b)); }

TEST(test_accuracy_counts_ties_as_half_on_a_hand_worked_case) {
    /* wins: 3>1, 2>0; tie: 2=2; loss: 1<2 -> (2 + 0.5) / 4 */
    float c[4] = {3, 1, 2, 2}, r[4] = {1, 2, 2, 0};
    EvalMetrics m;
    metrics_compute(c, r, 4, NULL, NULL, 0, NULL, NULL, &m);
    CHECK(m.n == 4 && m.pairs == 4 && m.unscored == 0, "n %ld pairs %ld", m.n, m.pairs);
    CHECK(close_to(m.accuracy, 0.625), "accuracy %g, want 0.625", m.accuracy);
    CHECK(m.ties == 1, "ties %ld", m.ties);
    /* margins 2, -1, 0, 2: mean 0.75, population variance (1.5625+3.0625+0.5625+1.5625)/4 */
    CHECK(close_to(m.margin_mean, 0.75), "margin mean %g", m.margin_mean);
    CHECK(close_to(m.margin_std, sqrt(6.75 / 4)), "margin std %g", m.margin_std);
    CHECK(!m.has_text && m.ncat == 0, "no text-only part, no categories");
    metrics_free(&m);
}

TEST(test_accuracy_and_margins_match_a_direct_count_on_random_scores) {
    enum { N = 1001 };
    TRng g = trng(42);
    float c[N], r[N];
    for (int i = 0; i < N; i++) {
        c[i] = trng_normal(&g);
        r[i] = (i % 7 == 0) ? c[i] : trng_normal(&g); /* every 7th pair a tie */
        if (i % 50 == 3) c[i] = NAN;                  /* some pairs not scored */
    }
    double credit = 0, sum = 0, sum2 = 0;
    long n = 0, ties = 0;
    for (int i = 0; i < N; i++) {
        if (isnan(c[i]) || isnan(r[i])) continue;
        n++;
        credit += c[i] > r[i] ? 1 : c[i] == r[i] ? 0.5 : 0;
        ties += c[i] == r[i];
        sum += (double)c[i] - r[i];
    }
    double mean = sum / n;
    for (int i = 0; i < N; i++)
        if (!isnan(c[i])) sum2 += ((double)c[i] - r[i] - mean) * ((double)c[i] - r[i] - mean);
    EvalMetrics m;
    metrics_compute(c, r, N, NULL, NULL, 0, NULL, NULL, &m);
    CHECK(m.n == n && m.unscored == N - n && m.ties == ties, "n %ld/%ld ties %ld/%ld", m.n, n,
          m.ties, ties);
    CHECK(close_to(m.accuracy, credit / n), "accuracy %.12g vs %.12g", m.accuracy, credit / n);
    CHECK(close_to(m.margin_mean, mean), "mean %.12g vs %.12g", m.margin_mean, mean);
    CHECK(close_to(m.margin_std, sqrt(sum2 / n)), "std %.12g vs %.12g", m.margin_std,
          sqrt(sum2 / n));
    metrics_free(&m);
}

TEST(test_per_category_accuracy_matches_a_count_per_category_sorted_by_name) {
    enum { N = 300, NCAT = 4 };
    const char *names[NCAT] = {"ocr", "counting", "unused", "hallucination"};
    TRng g = trng(7);
    float c[N], r[N];
    int cat[N];
    double credit[NCAT] = {0};
    long cnt[NCAT] = {0};
    for (int i = 0; i < N; i++) {
        c[i] = trng_normal(&g);
        r[i] = i % 11 == 0 ? c[i] : trng_normal(&g);
        int k = (int)(trng_uniform(&g) * 4); /* 3 -> no category; "unused" never drawn */
        cat[i] = k == 3 ? -1 : k == 2 ? 3 : k;
        if (cat[i] >= 0) {
            credit[cat[i]] += c[i] > r[i] ? 1 : c[i] == r[i] ? 0.5 : 0;
            cnt[cat[i]]++;
        }
    }
    EvalMetrics m;
    metrics_compute(c, r, N, cat, names, NCAT, NULL, NULL, &m);
    CHECK(m.ncat == 3, "%d categories listed, want 3 (empty ones are not listed)", m.ncat);
    for (int j = 0; j + 1 < m.ncat; j++)
        CHECK(strcmp(m.cats[j].name, m.cats[j + 1].name) < 0, "not sorted: %s, %s",
              m.cats[j].name, m.cats[j + 1].name);
    for (int j = 0; j < m.ncat; j++) {
        int k = 0;
        while (k < NCAT && strcmp(names[k], m.cats[j].name)) k++;
        CHECK(k < NCAT && cnt[k] == m.cats[j].n, "%s: %ld pairs", m.cats[j].name, m.cats[j].n);
        if (k < NCAT)
            CHECK(close_to(m.cats[j].accuracy, credit[k] / cnt[k]), "%s: accuracy %g vs %g",
                  names[k], m.cats[j].accuracy, credit[k] / cnt[k]);
    }
    metrics_free(&m);
}

TEST(test_sfd_is_accuracy_where_text_only_is_right_minus_where_it_is_wrong) {
    /* text-only right on pairs 0, 1 (pair 2's tie counts as wrong), wrong on 2, 3, 4.
     * MM-RM: pair 0 win, 1 loss | 2 win, 3 tie, 4 win -> 50% vs (1 + 0.5 + 1) / 3 */
    float c[5] = {2, 0, 5, 1, 3}, r[5] = {1, 1, 4, 1, 2};
    float tc[5] = {1, 3, 2, 0, 0}, tr[5] = {0, 2, 2, 1, 5};
    EvalMetrics m;
    metrics_compute(c, r, 5, NULL, NULL, 0, tc, tr, &m);
    CHECK(m.has_text && m.n_text == 5, "n_text %ld", m.n_text);
    CHECK(m.text_right == 2 && m.text_wrong == 3 && m.text_ties == 1, "right %ld wrong %ld "
          "ties %ld", m.text_right, m.text_wrong, m.text_ties);
    CHECK(close_to(m.text_accuracy, 0.4), "text-only accuracy %g", m.text_accuracy);
    CHECK(close_to(m.acc_text_right, 0.5), "acc | right %g", m.acc_text_right);
    CHECK(close_to(m.acc_text_wrong, 2.5 / 3), "acc | wrong %g", m.acc_text_wrong);
    CHECK(close_to(m.sfd_pp, 100 * (0.5 - 2.5 / 3)), "SFD %g", m.sfd_pp);
    metrics_free(&m);
}

TEST(test_sfd_on_random_pairs_matches_the_split_computed_in_the_test) {
    enum { N = 500 };
    TRng g = trng(99);
    float c[N], r[N], tc[N], tr[N];
    for (int i = 0; i < N; i++) {
        c[i] = trng_normal(&g);
        r[i] = trng_normal(&g) + (i % 3 == 0 ? 0.8f : 0.0f);
        tc[i] = trng_normal(&g);
        tr[i] = i % 13 == 0 ? tc[i] : trng_normal(&g);
        if (i % 17 == 5) tc[i] = NAN; /* no text-only verdict */
        if (i % 31 == 9) r[i] = NAN;  /* not scored at all */
    }
    double kr = 0, kw = 0;
    long nr = 0, nw = 0;
    for (int i = 0; i < N; i++) {
        if (isnan(c[i]) || isnan(r[i]) || isnan(tc[i]) || isnan(tr[i])) continue;
        double k = c[i] > r[i] ? 1 : c[i] == r[i] ? 0.5 : 0;
        if (tc[i] > tr[i]) kr += k, nr++;
        else kw += k, nw++;
    }
    EvalMetrics m;
    metrics_compute(c, r, N, NULL, NULL, 0, tc, tr, &m);
    CHECK(m.text_right == nr && m.text_wrong == nw && m.n_text == nr + nw, "split %ld/%ld vs "
          "%ld/%ld", m.text_right, m.text_wrong, nr, nw);
    CHECK(close_to(m.text_accuracy, (double)nr / (nr + nw)), "text-only accuracy %g",
          m.text_accuracy);
    CHECK(close_to(m.sfd_pp, 100 * (kr / nr - kw / nw)), "SFD %g vs %g", m.sfd_pp,
          100 * (kr / nr - kw / nw));
    metrics_free(&m);
}

/* Per category: the same split as overall, restricted to the category's pairs; the
 * text-only model's own accuracy with ties 0.5 overall; the JSON carries both. */
TEST(test_sfd_by_category_and_text_only_accuracy_with_ties_half_match_a_direct_count) {
    enum { N = 600, NCAT = 3 };
    static const char *const names[NCAT] = {"size", "count", "colour"};
    TRng g = trng(123);
    float c[N], r[N], tc[N], tr[N];
    int cat[N];
    for (int i = 0; i < N; i++) {
        c[i] = trng_normal(&g);
        r[i] = trng_normal(&g) + (i % 4 == 0 ? 0.7f : 0.0f);
        tc[i] = trng_normal(&g);
        tr[i] = i % 11 == 0 ? tc[i] : trng_normal(&g) + (i % 3 == 1 ? 0.5f : 0.0f);
        cat[i] = i % 19 == 7 ? -1 : (int)(trng_normal(&g) > 0) + (i % 2); /* 0..2, some none */
        if (i % 23 == 4) tc[i] = NAN;
        if (i % 29 == 3) c[i] = NAN;
    }
    double kr[NCAT] = {0}, kw[NCAT] = {0}, tk = 0;
    long nr[NCAT] = {0}, nw[NCAT] = {0}, nt = 0;
    for (int i = 0; i < N; i++) {
        if (isnan(c[i]) || isnan(r[i]) || isnan(tc[i]) || isnan(tr[i])) continue;
        nt++;
        tk += tc[i] > tr[i] ? 1 : tc[i] == tr[i] ? 0.5 : 0;
        if (cat[i] < 0) continue;
        double k = c[i] > r[i] ? 1 : c[i] == r[i] ? 0.5 : 0;
        if (tc[i] > tr[i]) kr[cat[i]] += k, nr[cat[i]]++;
        else kw[cat[i]] += k, nw[cat[i]]++;
    }
    EvalMetrics m;
    metrics_compute(c, r, N, cat, names, NCAT, tc, tr, &m);
    CHECK(m.n_text == nt && close_to(m.text_accuracy_ties_half, tk / nt), "text-only ties 0.5 %g "
          "vs %g", m.text_accuracy_ties_half, tk / nt);
    CHECK(m.ncat == NCAT, "%d categories", m.ncat);
    for (int j = 0; j < m.ncat; j++) {
        int k = 0;
        while (k < NCAT && strcmp(names[k], m.cats[j].name)) k++;
        CHECK(k < NCAT, "unknown category %s", m.cats[j].name);
        if (k == NCAT) continue;
        double want = 100 * (kr[k] / nr[k] - kw[k] / nw[k]);
        CHECK(m.cats[j].text_right == nr[k] && m.cats[j].text_wrong == nw[k] &&
                  m.cats[j].n_text == nr[k] + nw[k],
              "%s: split %ld/%ld vs %ld/%ld", names[k], m.cats[j].text_right, m.cats[j].text_wrong,
              nr[k], nw[k]);
        CHECK(close_to(m.cats[j].text_accuracy, (double)nr[k] / (nr[k] + nw[k])),
              "%s: text-only accuracy %g", names[k], m.cats[j].text_accuracy);
        CHECK(close_to(m.cats[j].sfd_pp, want), "%s: SFD %g vs %g", names[k], m.cats[j].sfd_pp, want);
    }
    char *json = metrics_json(&m, "x");
    CHECK(strstr(json, "\"accuracy_ties_half\":") && strstr(json, "\"sfd_pp\":"), "%s", json);
    cJSON *o = cJSON_Parse(json);
    const cJSON *size = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "categories"), "size");
    CHECK(size && cJSON_IsNumber(cJSON_GetObjectItem(size, "sfd_pp")) &&
              close_to(cJSON_GetObjectItem(size, "sfd_pp")->valuedouble,
                       100 * (kr[0] / nr[0] - kw[0] / nw[0])),
          "categories.size.sfd_pp in %s", json);
    cJSON_Delete(o);
    free(json);
    metrics_free(&m);
}

TEST(test_empty_sides_give_nan_and_json_null_and_table_na) {
    float c[3] = {1, 2, 3}, r[3] = {0, 0, 5}, tc[3] = {1, 1, 1}, tr[3] = {0, 0, 0};
    EvalMetrics m;
    metrics_compute(c, r, 3, NULL, NULL, 0, tc, tr, &m);
    CHECK(m.text_right == 3 && m.text_wrong == 0, "all right");
    CHECK(isnan(m.acc_text_wrong) && isnan(m.sfd_pp), "empty side: acc %g SFD %g",
          m.acc_text_wrong, m.sfd_pp);
    CHECK(close_to(m.acc_text_right, 2.0 / 3), "acc | right %g", m.acc_text_right);
    char *js = metrics_json(&m, "d.jsonl");
    cJSON *o = cJSON_Parse(js);
    CHECK(o != NULL, "metrics_json is not JSON: %s", js);
    cJSON *t = cJSON_GetObjectItem(o, "text_only");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(t, "sfd_pp")), "sfd_pp is not null");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(t, "acc_given_text_wrong")), "acc | wrong not null");
    CHECK(close_to(cJSON_GetObjectItem(o, "accuracy")->valuedouble, m.accuracy),
          "JSON accuracy differs");
    CHECK(close_to(cJSON_GetObjectItem(t, "acc_given_text_right")->valuedouble, 2.0 / 3),
          "JSON acc | right differs");
    cJSON_Delete(o);
    free(js);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    metrics_print_table(f, &m, "d.jsonl");
    fclose(f);
    CHECK(strstr(buf, "n/a") && strstr(buf, "SFD = acc(MM-RM | text-only right)"),
          "table lacks n/a or the SFD definition:\n%s", buf);
    free(buf);
    metrics_free(&m);
    /* no pair at all */
    metrics_compute(c, r, 0, NULL, NULL, 0, NULL, NULL, &m);
    CHECK(m.n == 0 && isnan(m.accuracy) && isnan(m.margin_mean), "empty set: acc %g", m.accuracy);
    js = metrics_json(&m, "empty");
    o = cJSON_Parse(js);
    CHECK(o && cJSON_IsNull(cJSON_GetObjectItem(o, "accuracy")) &&
          cJSON_IsNull(cJSON_GetObjectItem(o, "text_only")), "empty set JSON: %s", js);
    cJSON_Delete(o);
    free(js);
    metrics_free(&m);
}
