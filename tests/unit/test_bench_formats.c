/* test_bench_formats.c - the public benchmark layouts read into pairs and their metrics on
 * hand-worked cases: VL-RewardBench's ranks pick the preferred response and image folders
 * give the three groups (macro = their mean, ties wrong); Multimodal RewardBench counts ties
 * 0.5 and splits safety and reasoning by the ID's prefix; MM-RLHF's Acc+ needs every pair of
 * an id right (a tie is wrong, a question with an unscored pair is left out); a malformed
 * record names file:line and the field; auto detection. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infer/bench_formats.h"
#include "runtime/error.h"
#include "tests/harness.h"

static int close_to(double a, double b) { return fabs(a - b) <= 1e-12 * (1 + fabs(b)); }

/* text into a fresh temporary file; its path in buf */
static void write_tmp(char *buf, size_t n, const char *text) {
    snprintf(buf, n, "/tmp/mmrm_bench_XXXXXX");
    int fd = mkstemp(buf);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) abort();
    close(fd);
}

static const BenchCategory *cat(const BenchMetrics *m, const char *name) {
    for (int k = 0; k < m->ncat; k++)
        if (!strcmp(m->cats[k].name, name)) return &m->cats[k];
    return NULL;
}

TEST(test_bench_vlrewardbench_ranks_pick_the_preferred_response_and_folders_give_groups) {
    char path[64];
    write_tmp(path, sizeof path,
              "{\"id\": \"a\", \"query\": \"q1\", \"response\": [\"A0\", \"A1\"], \"human_ranking\": [0, 1], \"image_path\": \"images/povid/a.jpg\"}\n"
              "{\"id\": \"b\", \"query\": \"q2\", \"response\": [\"B0\", \"B1\"], \"human_ranking\": [1, 0], \"image_path\": \"images/rlaif-v/b.jpg\"}\n"
              "{\"id\": \"c\", \"query\": \"q3\", \"response\": [\"C0\", \"C1\"], \"human_ranking\": [1, 0], \"image_path\": \"images/wildvision-battle/c.jpg\"}\n"
              "{\"id\": 7, \"query\": \"q4\", \"response\": [\"D0\", \"D1\"], \"human_ranking\": [0, 1], \"image_path\": \"x/d.jpg\", \"category\": \"reasoning\"}\n");
    BenchSet b;
    CHECK(bench_load(&b, path, BENCH_VLREWARDBENCH, "/root") == 0, "%s", mmrm_last_error());
    CHECK(b.n == 4 && b.ngroups == 4, "n %zu", b.n);
    CHECK(!strcmp(b.pairs[0].chosen, "A0") && !strcmp(b.pairs[0].rejected, "A1"), "[0, 1]: the first");
    CHECK(!strcmp(b.pairs[1].chosen, "B1") && !strcmp(b.pairs[1].rejected, "B0"), "[1, 0]: the second");
    CHECK(!strcmp(b.pairs[1].image, "/root/images/rlaif-v/b.jpg"), "image %s", b.pairs[1].image);
    CHECK(!strcmp(b.pairs[3].id, "7"), "numeric id %s", b.pairs[3].id);
    /* hallucination: right, tie (wrong); general: wrong; reasoning: right */
    float c[4] = {2, 1, 0, 5}, r[4] = {1, 1, 3, 4};
    BenchMetrics m;
    bench_metrics_compute(&b, c, r, &m);
    CHECK(m.n == 4 && m.ties == 1 && close_to(m.accuracy, 0.5), "accuracy %g", m.accuracy);
    const BenchCategory *h = cat(&m, "hallucination"), *g = cat(&m, "general"), *re = cat(&m, "reasoning");
    CHECK(h && g && re && m.ncat == 3, "three groups");
    CHECK(h->n == 2 && close_to(h->accuracy, 0.5) && close_to(g->accuracy, 0) && close_to(re->accuracy, 1),
          "group accuracies");
    CHECK(close_to(m.macro_accuracy, 0.5), "macro %g, want (0.5 + 0 + 1) / 3", m.macro_accuracy);
    CHECK(!m.has_acc_plus, "no Acc+");
    bench_metrics_free(&m);
    bench_free(&b);
    unlink(path);
}

TEST(test_bench_mmrewardbench_counts_ties_half_and_splits_safety_and_reasoning_by_id) {
    char path[64];
    write_tmp(path, sizeof path,
              "{\"ID\": \"PAIRS_1\", \"Text\": \"t\", \"Image\": \"i.png\", \"Output1\": \"x\", \"Output2\": \"y\", \"Better\": \"Output2\", \"Category\": \"safety\"}\n"
              "{\"ID\": \"hateful_2\", \"Text\": \"t\", \"Image\": \"i.png\", \"Output1\": \"x\", \"Output2\": \"y\", \"Better\": \"Output1\", \"Category\": \"safety\"}\n"
              "{\"ID\": \"math_3\", \"Text\": \"t\", \"Image\": \"i.png\", \"Output1\": \"x\", \"Output2\": \"y\", \"Better\": \"Output1\", \"Category\": \"reasoning\"}\n"
              "{\"ID\": \"EMMA_4\", \"Text\": \"t\", \"Image\": \"i.png\", \"Output1\": \"x\", \"Output2\": \"y\", \"Better\": \"Output1\", \"Category\": \"reasoning\"}\n");
    BenchSet b;
    CHECK(bench_load(&b, path, BENCH_MMREWARDBENCH, NULL) == 0, "%s", mmrm_last_error());
    CHECK(!strcmp(b.pairs[0].chosen, "y") && !strcmp(b.pairs[1].chosen, "x"), "Better picks");
    CHECK(!strcmp(b.pairs[0].image, "/tmp/i.png"), "relative to the file's folder: %s", b.pairs[0].image);
    float c[4] = {1, 1, 0, 2}, r[4] = {1, 0, 1, 1}; /* tie, right, wrong, right */
    BenchMetrics m;
    bench_metrics_compute(&b, c, r, &m);
    CHECK(close_to(m.accuracy, 2.5 / 4), "accuracy %g, want 0.625", m.accuracy);
    CHECK(m.ncat == 4 && close_to(cat(&m, "safety/bias")->accuracy, 0.5) &&
              close_to(cat(&m, "safety/toxicity")->accuracy, 1) &&
              close_to(cat(&m, "reasoning/math")->accuracy, 0) &&
              close_to(cat(&m, "reasoning/coding")->accuracy, 1),
          "the split categories");
    CHECK(close_to(m.macro_accuracy, 2.5 / 4), "macro %g", m.macro_accuracy);
    bench_metrics_free(&m);
    bench_free(&b);
    unlink(path);
}

TEST(test_bench_mmrlhf_acc_plus_needs_every_pair_of_an_id_right) {
    char path[64];
    write_tmp(path, sizeof path,
              "{\"id\": \"q1\", \"image\": \"d/mcq/1.png\", \"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
              "{\"id\": \"q2\", \"image\": \"d/long/2.png\", \"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
              "{\"id\": \"q1\", \"image\": \"d/mcq/1.png\", \"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"c\"}\n"
              "{\"id\": \"v\", \"video\": \"d/video/3\", \"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
              "{\"id\": \"q2\", \"image\": \"d/long/2.png\", \"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"c\"}\n"
              "{\"id\": \"q3\", \"image\": \"d/short/3.png\", \"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
              "{\"id\": \"q4\", \"image\": \"d/mcq/4.png\", \"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
              "{\"id\": \"q4\", \"image\": \"d/mcq/4.png\", \"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"c\"}\n");
    BenchSet b;
    CHECK(bench_load(&b, path, BENCH_MMRLHF, NULL) == 0, "%s", mmrm_last_error());
    CHECK(b.n == 7 && b.ngroups == 4 && b.skipped_video == 1, "n %zu groups %d", b.n, b.ngroups);
    CHECK(b.group[0] == b.group[2] && b.group[1] == b.group[3] && b.group[5] == b.group[6], "ids group");
    /* q1: right, right -> Acc+; q2: right, tie -> not; q3: right; q4: right, unscored -> left out */
    float c[7] = {2, 2, 3, 1, 4, 1, NAN}, r[7] = {1, 1, 0, 1, 0, 0, 0};
    BenchMetrics m;
    bench_metrics_compute(&b, c, r, &m);
    CHECK(m.n == 6 && m.unscored == 1 && close_to(m.accuracy, 5.0 / 6), "accuracy %g", m.accuracy);
    CHECK(m.has_acc_plus && m.groups == 3 && close_to(m.acc_plus, 2.0 / 3), "Acc+ %g over %ld", m.acc_plus,
          m.groups);
    const BenchCategory *mcq = cat(&m, "mcq"), *lng = cat(&m, "long");
    CHECK(mcq && mcq->n == 3 && close_to(mcq->accuracy, 1) && mcq->groups == 1 && close_to(mcq->acc_plus, 1),
          "mcq: q4 is left out of Acc+");
    CHECK(lng && lng->n == 2 && close_to(lng->accuracy, 0.5) && lng->groups == 1 && close_to(lng->acc_plus, 0),
          "long: the tie is wrong");
    bench_metrics_free(&m);
    bench_free(&b);
    unlink(path);
}

TEST(test_bench_malformed_records_name_the_line_and_field) {
    char path[64];
    write_tmp(path, sizeof path,
              "{\"id\": \"q1\", \"image\": \"a.png\", \"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
              "\n"
              "{\"id\": \"q1\", \"image\": \"a.png\", \"prompt\": \"p\", \"chosen\": \"a\"}\n");
    BenchSet b;
    CHECK(bench_load(&b, path, BENCH_MMRLHF, NULL) == -1, "a missing field must fail");
    char want[96];
    snprintf(want, sizeof want, "%s:3: field \"rejected\" is missing", path);
    CHECK(strstr(mmrm_last_error(), want) != NULL, "message: %s", mmrm_last_error());
    CHECK(b.n == 0 && b.pairs == NULL, "the set is left empty");
    BenchFormat f;
    CHECK(bench_format_resolve("auto", path, &f) == 0 && f == BENCH_MMRLHF, "auto: mmrlhf");
    CHECK(bench_format_resolve("nope", path, &f) == -1, "an unknown name");
    unlink(path);
}
