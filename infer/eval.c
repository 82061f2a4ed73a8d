/* eval.c - `mmrm eval`: pairwise accuracy of a reward model on preference pairs, with margin
 * statistics, per-category accuracy (records with a string "category"), and against a
 * text-only verdict (a second model, or the same one, shown the blank image) the text-only
 * accuracy and the Shortcut-Failure Degradation (infer/metrics.h has the definitions).
 *
 * Pairs come from models/records.h, so both training formats work. The pairs a ratings record
 * yields share its image and response texts: they are scored as one group, each response
 * once. The category is read from the same file by line, since pairs keep only their file
 * and line. With --format a public benchmark's records are read instead (bench_formats.h),
 * which adds the benchmark's own metrics to the table and the JSON ("benchmark"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "infer/bench_formats.h"
#include "infer/commands.h"
#include "infer/metrics.h"
#include "infer/score_groups.h"
#include "infer/scorer.h"
#include "models/records.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/strbuf.h"
#include "runtime/jsonl.h"

static const char usage_text[] =
    "usage: mmrm eval --model DIR --data PAIRS.jsonl [options]\n"
    "\n"
    "Pairwise accuracy of the reward model in DIR on preference pairs (pairwise\n"
    "{prompt, img_path, chosen, rejected} or ratings records), ties counting 0.5, with the\n"
    "margin score(chosen) - score(rejected) (mean, std) and per-category accuracy when\n"
    "records carry a string \"category\". With a text-only verdict it adds the text-only\n"
    "accuracy and SFD = acc(MM-RM | text-only right) - acc(MM-RM | text-only wrong) in\n"
    "percentage points (text-only right: its score(chosen) > score(rejected), a tie counts\n"
    "as wrong).\n"
    "\n"
    "options:\n"
    "  --model DIR             the reward model\n"
    "  --data PAIRS.jsonl      the pairs\n"
    "  --text-only-model DIR   the text-only verdict from this model (e.g. a trained bias\n"
    "                          model) shown the blank white image as one tile\n"
    "  --text-only             the text-only verdict from --model itself, blank image\n"
    "  --format F              the layout of --data: pairs (the default: pairwise or ratings\n"
    "                          records), vlrewardbench, mmrewardbench, mmrlhf (public\n"
    "                          benchmarks' JSONL exports; bench/export_benchmark.py), or auto\n"
    "                          (from the first record's fields). A benchmark adds its official\n"
    "                          metrics: overall and macro accuracy, per category, Acc+ (mmrlhf),\n"
    "                          with its own tie rule; its malformed records stop the run\n"
    "  --json                  one JSON object on stdout instead of the table\n"
    "  --scores FILE           also write every pair's scores as JSONL (written atomically):\n"
    "                          {line, category, chosen, rejected, text_chosen,\n"
    "                          text_rejected}, line = the record's line in --data, null for a\n"
    "                          score not computed; every number of the report follows from it\n"
    "%s"
    "  --help                  this text\n";

static int usage_error(const char *fmt, const char *arg) {
    return scorer_cli_usage_error(usage_text, fmt, arg);
}

static int fail(void) {
    fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
    return 1;
}

/* ---- categories, read by line ---- */

typedef struct {
    int *of_line;   /* (nlines + 1) category index per 1-based line, -1 none */
    int nlines;
    char **names;
    int n;
} Categories;

static int category_index(Categories *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->names[i], name)) return i;
    c->names = xrealloc(c->names, (size_t)(c->n + 1) * sizeof *c->names);
    c->names[c->n] = xstrdup(name);
    return c->n++;
}

/* Malformed lines are the records loader's to report; here they just have no category. */
static int categories_read(Categories *c, const char *path) {
    memset(c, 0, sizeof *c);
    JsonlReader *r = jsonl_open(path);
    if (!r) return -1;
    long not_string = 0;
    for (;;) {
        cJSON *v;
        int line, got = jsonl_next(r, &v, &line);
        if (got == 0) break;
        if (got == -2) {
            jsonl_close(r);
            return -1;
        }
        if (got < 0) continue;
        const cJSON *cat = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "category")
                                             : NULL;
        if (cat && !cJSON_IsString(cat) && !cJSON_IsNull(cat)) not_string++;
        if (cJSON_IsString(cat)) {
            if (line > c->nlines) {
                int cap = line > 2 * c->nlines ? line : 2 * c->nlines;
                c->of_line = xrealloc(c->of_line, ((size_t)cap + 1) * sizeof *c->of_line);
                for (int i = c->nlines + 1; i <= cap; i++) c->of_line[i] = -1;
                c->nlines = cap;
            }
            c->of_line[line] = category_index(c, cat->valuestring);
        }
        cJSON_Delete(v);
    }
    jsonl_close(r);
    if (not_string)
        mmrm_warn("%s: %ld records have a \"category\" that is not a string (they count in no "
                  "category)", path, not_string);
    return 0;
}

static int category_of(const Categories *c, int line) {
    return line >= 1 && line <= c->nlines ? c->of_line[line] : -1;
}

static void categories_free(Categories *c) {
    for (int i = 0; i < c->n; i++) free(c->names[i]);
    free(c->names);
    free(c->of_line);
}

/* ---- the per-pair scores file ---- */

static void add_score(cJSON *o, const char *key, const float *v, size_t i) {
    if (!v || isnan(v[i])) cJSON_AddNullToObject(o, key);
    else cJSON_AddNumberToObject(o, key, (double)v[i]);
}

/* One JSON line per pair in pair order; cJSON prints a float's double with 17 significant
 * digits, so the scores read back exactly. */
static int write_scores(const char *path, const Pair *pairs, size_t n, const int *cat,
                        const char *const *cat_names, const float *c, const float *r,
                        const float *tc, const float *tr) {
    StrBuf b = {0};
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "line", pairs[i].line);
        if (cat[i] >= 0) cJSON_AddStringToObject(o, "category", cat_names[cat[i]]);
        else cJSON_AddNullToObject(o, "category");
        add_score(o, "chosen", c, i);
        add_score(o, "rejected", r, i);
        add_score(o, "text_chosen", tc, i);
        add_score(o, "text_rejected", tr, i);
        char *line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        MMRM_CHECK(line, "eval: out of memory printing the scores");
        sb_puts(&b, line);
        sb_putc(&b, '\n');
        cJSON_free(line);
    }
    int rc = fs_write_atomic(path, b.s ? b.s : "", b.len);
    sb_free(&b);
    return rc;
}

/* ---- pairs as scoring groups ---- */

typedef struct {
    ScoreGroup *groups;
    int ngroups;
    int *group_line;      /* (ngroups) the record's line */
    const char **texts;   /* every group's responses, back to back */
    size_t ntexts;
    size_t *chosen_at, *rejected_at; /* (pairs) index into texts (and the scores) */
} Plan;

/* Consecutive pairs of one record share a group; within it a response text (the loader's
 * pointer) is scored once. */
static void plan_build(const Pair *pairs, size_t n, Plan *p) {
    memset(p, 0, sizeof *p);
    p->groups = xmalloc((n ? n : 1) * sizeof *p->groups);
    p->group_line = xmalloc((n ? n : 1) * sizeof *p->group_line);
    p->texts = xmalloc((2 * n + 1) * sizeof *p->texts);
    p->chosen_at = xmalloc((n ? n : 1) * sizeof *p->chosen_at);
    p->rejected_at = xmalloc((n ? n : 1) * sizeof *p->rejected_at);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const Pair *q = &pairs[i];
        int same = i > 0 && pairs[i - 1].file == q->file && pairs[i - 1].line == q->line;
        if (!same) {
            start = p->ntexts;
            p->groups[p->ngroups] = (ScoreGroup){q->prompt, q->image, NULL, 0};
            p->group_line[p->ngroups++] = q->line;
        }
        ScoreGroup *g = &p->groups[p->ngroups - 1];
        const char *two[2] = {q->chosen, q->rejected};
        size_t *at[2] = {&p->chosen_at[i], &p->rejected_at[i]};
        for (int k = 0; k < 2; k++) {
            size_t j = start;
            while (j < p->ntexts && p->texts[j] != two[k]) j++;
            if (j == p->ntexts) {
                p->texts[p->ntexts++] = two[k];
                g->n++;
            }
            *at[k] = j;
        }
    }
    size_t at = 0;
    for (int g = 0; g < p->ngroups; g++) {
        p->groups[g].responses = p->texts + at;
        at += (size_t)p->groups[g].n;
    }
}

static void plan_free(Plan *p) {
    free(p->groups);
    free(p->group_line);
    free(p->texts);
    free(p->chosen_at);
    free(p->rejected_at);
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *text_model = NULL, *format = "pairs", *scores = NULL;
    int text_self = 0, json = 0;
    ScorerCli cli = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = scorer_cli_option(&cli, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf(usage_text, SCORER_CLI_USAGE);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--text-only")) {
            text_self = 1;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--data") ||
                   !strcmp(a, "--text-only-model") || !strcmp(a, "--format") ||
                   !strcmp(a, "--scores")) {
            if (i + 1 >= argc) return usage_error("%s needs a value", a);
            const char **dst = !strcmp(a, "--model")    ? &model
                               : !strcmp(a, "--data")   ? &data
                               : !strcmp(a, "--format") ? &format
                               : !strcmp(a, "--scores") ? &scores
                                                        : &text_model;
            *dst = argv[++i];
        } else {
            return usage_error("eval: unknown option '%s'", a);
        }
    }
    if (!model) return usage_error("eval: %s is missing", "--model");
    if (!data) return usage_error("eval: %s is missing", "--data");
    if (text_self && text_model)
        return usage_error("eval: %s", "--text-only and --text-only-model exclude each other "
                                       "(the first uses --model itself)");

    /* the data first: a malformed benchmark record stops before the model is loaded */
    BenchFormat fmt;
    if (strcmp(format, "auto") && bench_format_resolve(format, data, &fmt))
        return usage_error("eval: %s", mmrm_last_error());
    if (!strcmp(format, "auto") && bench_format_resolve(format, data, &fmt)) return fail();
    PairSet ps = {0};
    BenchSet bs = {0};
    Categories cats = {0};
    const Pair *pairs;
    size_t npairs;
    if (fmt == BENCH_PAIRS) {
        RecordOptions ropt = {.image_root = cli.image_root, .on_bad_record = REC_ON_BAD_SKIP};
        if (pairset_load(&ps, &data, 1, &ropt)) return fail();
        if (categories_read(&cats, data)) {
            pairset_free(&ps);
            return fail();
        }
        pairs = ps.pairs;
        npairs = ps.n;
    } else {
        if (bench_load(&bs, data, fmt, cli.image_root)) return fail();
        pairs = bs.pairs;
        npairs = bs.n;
    }

    RewardModel m, tm;
    Tokenizer *tok = NULL, *ttok = NULL;
    Scorer *sc = NULL, *tsc = NULL;
    int rc = 1, have_m = 0, have_tm = 0;
    Device dev;
    int bf16 = 0;
    Plan plan = {0};
    ScoreOut *mm = NULL, *txt = NULL;
    float *c = NULL, *r = NULL, *tc = NULL, *tr = NULL;
    int *cat = NULL;
    if (scorer_cli_device(&cli, 0, &dev, &bf16)) {
        rc = 2;
        goto out;
    }
    if (scorer_load_model_adapter(model, cli.adapter, dev, bf16, &m, &tok)) goto out;
    have_m = 1;
    ScorerOptions o;
    scorer_cli_options(&cli, &m.cfg, &o);
    if (!(sc = scorer_new(&m, tok, &o))) goto out;
    if (text_model) {
        if (scorer_load_model(text_model, dev, bf16, &tm, &ttok)) goto out;
        have_tm = 1;
    }
    if (text_self || text_model) {
        ScorerOptions to;
        scorer_cli_options(&cli, have_tm ? &tm.cfg : &m.cfg, &to);
        to.blank = 1;
        if (!(tsc = scorer_new(have_tm ? &tm : &m, have_tm ? ttok : tok, &to))) goto out;
    }

    plan_build(pairs, npairs, &plan);
    mm = xmalloc((plan.ntexts + 1) * sizeof *mm);
    txt = tsc ? xmalloc((plan.ntexts + 1) * sizeof *txt) : NULL;
    c = xmalloc((npairs + 1) * sizeof *c);
    r = xmalloc((npairs + 1) * sizeof *r);
    cat = xmalloc((npairs + 1) * sizeof *cat);
    double t0 = clock_seconds();
    if (score_groups(sc, plan.groups, plan.ngroups, plan.group_line, data, "responses", mm) ||
        (tsc && score_groups(tsc, plan.groups, plan.ngroups, plan.group_line, data,
                             "text-only responses", txt)))
        goto out;
    double secs = clock_seconds() - t0;
    if (tsc) {
        tc = xmalloc((npairs + 1) * sizeof *tc);
        tr = xmalloc((npairs + 1) * sizeof *tr);
    }
    for (size_t i = 0; i < npairs; i++) {
        c[i] = mm[plan.chosen_at[i]].score; /* NaN when not scored */
        r[i] = mm[plan.rejected_at[i]].score;
        cat[i] = fmt == BENCH_PAIRS ? category_of(&cats, pairs[i].line) : bs.category[i];
        if (tsc) {
            tc[i] = txt[plan.chosen_at[i]].score;
            tr[i] = txt[plan.rejected_at[i]].score;
        }
    }
    EvalMetrics em;
    if (fmt == BENCH_PAIRS)
        metrics_compute(c, r, npairs, cat, (const char *const *)cats.names, cats.n, tc, tr, &em);
    else
        metrics_compute(c, r, npairs, cat, (const char *const *)bs.cats, bs.ncat, tc, tr, &em);
    if (scores && write_scores(scores, pairs, npairs, cat,
                               fmt == BENCH_PAIRS ? (const char *const *)cats.names
                                                  : (const char *const *)bs.cats,
                               c, r, tc, tr)) {
        metrics_free(&em);
        goto out;
    }
    BenchMetrics bm = {0};
    if (fmt != BENCH_PAIRS) bench_metrics_compute(&bs, c, r, &bm);
    long scored = (long)plan.ntexts * (tsc ? 2 : 1);
    mmrm_log("scored %ld responses of %zu pairs in %.2f s (%.1f responses/s)", scored, npairs,
             secs, secs > 0 ? (double)scored / secs : 0.0);
    if (json) {
        char *text = metrics_json(&em, data);
        cJSON *obj = cJSON_Parse(text);
        free(text);
        if (!obj) MMRM_FATAL("metrics_json wrote invalid JSON");
        cJSON_AddItemToObject(obj, "benchmark",
                              fmt == BENCH_PAIRS ? cJSON_CreateNull() : bench_metrics_json(&bm));
        text = cJSON_PrintUnformatted(obj);
        printf("%s\n", text);
        cJSON_free(text);
        cJSON_Delete(obj);
    } else {
        metrics_print_table(stdout, &em, data);
        if (text_model) printf("  text-only verdict: %s shown the blank image\n", text_model);
        else if (text_self) printf("  text-only verdict: the same model shown the blank image\n");
        if (fmt != BENCH_PAIRS) bench_metrics_print(stdout, &bm);
    }
    metrics_free(&em);
    bench_metrics_free(&bm);
    rc = 0;
    if (fflush(stdout) != 0) {
        mmrm_set_error("writing the results to stdout failed");
        rc = 1;
    }
out:
    if (rc == 1) fail();
    free(mm);
    free(txt);
    free(c);
    free(r);
    free(tc);
    free(tr);
    free(cat);
    plan_free(&plan);
    categories_free(&cats);
    pairset_free(&ps);
    bench_free(&bs);
    scorer_free(tsc);
    scorer_free(sc);
    if (have_tm) {
        tokenizer_free(ttok);
        rm_free(&tm);
    }
    if (have_m) {
        tokenizer_free(tok);
        rm_free(&m);
    }
    return rc;
}
