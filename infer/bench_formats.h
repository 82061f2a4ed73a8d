/* bench_formats.h - public multimodal reward benchmarks read as preference pairs, and their
 * official metrics, for `mmrm eval --format`.
 *
 * Layouts (JSONL, one record a line; the exports bench/export_benchmark.py writes):
 * - vlrewardbench (VL-RewardBench, MMInstruction/VL-RewardBench; github.com/vl-rewardbench/
 *   VL_RewardBench data/data.jsonl): {id, query, response: [2], human_ranking: [2],
 *   image_path (or image), ...}; human_ranking holds ranks, 0 the preferred response.
 *   Subset from image_path's folder (images/<subset>/...), grouped as cal.py does into
 *   general (vlfeedback, wildvision-battle), hallucination (povid, rlhf-v, rlaif-v) and
 *   reasoning (reasoning_tasks); a string "category" field overrides.
 * - mmrewardbench (Multimodal RewardBench, facebookresearch/multimodal_rewardbench
 *   data/all_data.json, one element a line): {ID, Text, Image, Output1, Output2,
 *   Better: "Output1"|"Output2", Category}; scripts/2_get_accuracy.py splits safety into
 *   safety/bias (ID starts with "pairs") and safety/toxicity, reasoning into reasoning/math
 *   (ID starts with "math") and reasoning/coding.
 * - mmrlhf (MM-RLHF-RewardBench, yifanzhang114/MM-RLHF-RewardBench mm_reward_bench.jsonl):
 *   {id, prompt, chosen, rejected, image (or video)}; the lines of one id are one question's
 *   pairs; category: the first of mcq, long, short, safety, video found in the image path
 *   (llava/eval/cal_performance_mmreweard_bench.py), a string "category" field overrides.
 *   Video records cannot be scored here: they are skipped and counted.
 * Relative image paths resolve against image_root, else the JSONL file's folder.
 *
 * Metrics (bench_metrics_compute): overall accuracy over pairs, macro accuracy (the mean of
 * the categories' accuracies), per-category accuracy, and for mmrlhf Acc+ (a question counts
 * only when every pair of its id is right). Ties follow each benchmark: wrong for
 * vlrewardbench (a judge agrees only by picking the human-preferred response) and mmrlhf
 * (`reward_0 > reward_1`), half for mmrewardbench (its script breaks a missing verdict by a
 * fair coin; we count the coin's expectation).
 */
#ifndef MMRM_INFER_BENCH_FORMATS_H
#define MMRM_INFER_BENCH_FORMATS_H

#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "models/records.h"

typedef enum {
    BENCH_PAIRS,          /* mmrm's own training records (models/records.h), no benchmark */
    BENCH_VLREWARDBENCH,
    BENCH_MMREWARDBENCH,
    BENCH_MMRLHF,
    BENCH_NFORMATS
} BenchFormat;

const char *bench_format_name(BenchFormat f);
/* name is "pairs", a benchmark's name or "auto" (detected from the first record's fields in
 * path). 0, or -1 with mmrm_last_error(). */
int bench_format_resolve(const char *name, const char *path, BenchFormat *out);

typedef struct BenchSet {
    BenchFormat format;
    Pair *pairs;     /* (n) file 0, line = the record's line; strings owned by the set */
    size_t n;
    int *category;   /* (n) index into cats, -1 none */
    int *group;      /* (n) question index (mmrlhf: by id; else one per pair) */
    char **cats;     /* (ncat) */
    int ncat;
    int ngroups;
    long skipped_video;
    char **owned;    /* every string the pairs point to */
    size_t nowned;
} BenchSet;

/* Reads every record of path (a benchmark format, not BENCH_PAIRS). Any malformed record
 * stops the load: -1 with mmrm_last_error() "path:line: field \"x\" is missing (hint)". */
int bench_load(BenchSet *b, const char *path, BenchFormat f, const char *image_root);
void bench_free(BenchSet *b);

typedef struct BenchCategory {
    char *name;
    long n;            /* scored pairs */
    double accuracy;
    long groups;       /* questions (mmrlhf) */
    double acc_plus;
} BenchCategory;

typedef struct BenchMetrics {
    BenchFormat format;
    long n, unscored, ties;
    double accuracy, macro_accuracy; /* NaN without pairs */
    int has_acc_plus;
    long groups;       /* questions with every pair scored */
    double acc_plus;
    int ncat;
    BenchCategory *cats; /* sorted by name */
} BenchMetrics;

/* chosen/rejected (b->n) scores, NaN for a pair not scored (left out; a question with one is
 * left out of Acc+). */
void bench_metrics_compute(const BenchSet *b, const float *chosen, const float *rejected,
                           BenchMetrics *m);
void bench_metrics_free(BenchMetrics *m);
/* {"name", "tie_rule", "accuracy", "macro_accuracy", "acc_plus", "categories": {...}} */
cJSON *bench_metrics_json(const BenchMetrics *m);
void bench_metrics_print(FILE *f, const BenchMetrics *m);

#endif
