/* eval.c - `mmrm eval`: pairwise accuracy of a reward model on preference pairs, with margin
 * statistics, per-category accuracy (records with a string "category"), and against a
 * text-only verdict (a second model, or the same one, shown the blank image) the text-only
 * accuracy and the Shortcut-Failure Degradation (infer/metrics.h has the definitions).
 *
 * Pairs come from models/records.h, so both training formats work. The pairs a ratings record
 * yields share its image and response texts: they are scored as one group, each response
 * once. The category is read from the same file by line, since pairs keep only their file
 * and line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "infer/commands.h"
#include "infer/metrics.h"
#include "infer/scorer.h"
#include "models/records.h"
#include "runtime/error.h"
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
    "  --json                  one JSON object on stdout instead of the table\n"
    "%s"
    "  --help                  this text\n";

static int usage_error(const char *fmt, const char *arg) {
    fputs("mmrm: error: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n\n", stderr);
    fprintf(stderr, usage_text, SCORER_CLI_USAGE);
    return 2;
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
static void plan_build(const PairSet *ps, Plan *p) {
    memset(p, 0, sizeof *p);
    p->groups = xmalloc((ps->n ? ps->n : 1) * sizeof *p->groups);
    p->group_line = xmalloc((ps->n ? ps->n : 1) * sizeof *p->group_line);
    p->texts = xmalloc((2 * ps->n + 1) * sizeof *p->texts);
    p->chosen_at = xmalloc((ps->n ? ps->n : 1) * sizeof *p->chosen_at);
    p->rejected_at = xmalloc((ps->n ? ps->n : 1) * sizeof *p->rejected_at);
    size_t start = 0;
    for (size_t i = 0; i < ps->n; i++) {
        const Pair *q = &ps->pairs[i];
        int same = i > 0 && ps->pairs[i - 1].file == q->file && ps->pairs[i - 1].line == q->line;
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

/* Scores every group of the plan into outs (ntexts), in chunks of about a batch, with
 * progress and a warning per group that failed. 0 or -1. */
static int score_plan(Scorer *sc, const Plan *p, const char *data, const char *what,
                      ScoreOut *outs) {
    int B = scorer_options(sc)->batch_size;
    char (*msg)[SCORER_MSG_LEN] = xmalloc((size_t)4 * B * sizeof *msg);
    long failed[SCORE_NSTATUS] = {0};
    Progress prog;
    progress_start(&prog, what, (long)p->ntexts);
    size_t at = 0;
    int rc = 0;
    for (int g0 = 0; g0 < p->ngroups && rc == 0;) {
        /* whole groups, ending where the responses fill whole forwards or pass 4 forwards */
        int ng = 0, nresp = 0;
        while (g0 + ng < p->ngroups && ng < 4 * B &&
               !(nresp >= B && (nresp % B == 0 || nresp >= 4 * B)))
            nresp += p->groups[g0 + ng++].n;
        if (scorer_score(sc, p->groups + g0, ng, outs + at, msg)) {
            rc = -1;
            break;
        }
        for (int g = 0; g < ng; g++) {
            if (msg[g][0]) {
                if (prog.tty) fputs("\r\033[K", stderr);
                mmrm_warn("%s:%d: %s", data, p->group_line[g0 + g], msg[g]);
            }
        }
        for (int k = 0; k < nresp; k++) failed[outs[at + (size_t)k].status]++;
        at += (size_t)nresp;
        g0 += ng;
        progress_add(&prog, nresp);
    }
    progress_end(&prog);
    for (int s = 1; s < SCORE_NSTATUS; s++)
        if (failed[s]) mmrm_log("  %s: %ld responses not scored: %s", what, failed[s],
                                score_status_name((ScoreStatus)s));
    free(msg);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *text_model = NULL;
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
                   !strcmp(a, "--text-only-model")) {
            if (i + 1 >= argc) return usage_error("%s needs a value", a);
            const char **dst = !strcmp(a, "--model") ? &model : !strcmp(a, "--data") ? &data
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

    RewardModel m, tm;
    Tokenizer *tok, *ttok = NULL;
    Scorer *sc = NULL, *tsc = NULL;
    int rc = 1, have_tm = 0;
    Device dev;
    int bf16 = 0;
    if (scorer_cli_device(&cli, 0, &dev, &bf16)) return 2;
    if (scorer_load_model(model, dev, bf16, &m, &tok)) return fail();
    ScorerOptions o;
    scorer_cli_options(&cli, &m.cfg, &o);
    if (!(sc = scorer_new(&m, tok, &o))) goto out_model;
    if (text_model) {
        if (scorer_load_model(text_model, dev, bf16, &tm, &ttok)) goto out_model;
        have_tm = 1;
    }
    if (text_self || text_model) {
        ScorerOptions to;
        scorer_cli_options(&cli, have_tm ? &tm.cfg : &m.cfg, &to);
        to.blank = 1;
        if (!(tsc = scorer_new(have_tm ? &tm : &m, have_tm ? ttok : tok, &to))) goto out_model;
    }

    PairSet ps;
    RecordOptions ropt = {.image_root = cli.image_root, .on_bad_record = REC_ON_BAD_SKIP};
    if (pairset_load(&ps, &data, 1, &ropt)) goto out_model;
    Categories cats;
    if (categories_read(&cats, data)) {
        pairset_free(&ps);
        goto out_model;
    }
    Plan plan;
    plan_build(&ps, &plan);
    ScoreOut *mm = xmalloc((plan.ntexts + 1) * sizeof *mm);
    ScoreOut *txt = tsc ? xmalloc((plan.ntexts + 1) * sizeof *txt) : NULL;
    float *c = xmalloc((ps.n + 1) * sizeof *c), *r = xmalloc((ps.n + 1) * sizeof *r);
    float *tc = NULL, *tr = NULL;
    int *cat = xmalloc((ps.n + 1) * sizeof *cat);
    double t0 = clock_seconds();
    if (score_plan(sc, &plan, data, "responses", mm) ||
        (tsc && score_plan(tsc, &plan, data, "text-only responses", txt)))
        goto out_scored;
    double secs = clock_seconds() - t0;
    if (tsc) {
        tc = xmalloc((ps.n + 1) * sizeof *tc);
        tr = xmalloc((ps.n + 1) * sizeof *tr);
    }
    for (size_t i = 0; i < ps.n; i++) {
        c[i] = mm[plan.chosen_at[i]].score; /* NaN when not scored */
        r[i] = mm[plan.rejected_at[i]].score;
        cat[i] = category_of(&cats, ps.pairs[i].line);
        if (tsc) {
            tc[i] = txt[plan.chosen_at[i]].score;
            tr[i] = txt[plan.rejected_at[i]].score;
        }
    }
    EvalMetrics em;
    metrics_compute(c, r, ps.n, cat, (const char *const *)cats.names, cats.n, tc, tr, &em);
    long scored = (long)plan.ntexts * (tsc ? 2 : 1);
    mmrm_log("scored %ld responses of %zu pairs in %.2f s (%.1f responses/s)", scored, ps.n,
             secs, secs > 0 ? (double)scored / secs : 0.0);
    if (json) {
        char *text = metrics_json(&em, data);
        printf("%s\n", text);
        free(text);
    } else {
        metrics_print_table(stdout, &em, data);
        if (text_model) printf("  text-only verdict: %s shown the blank image\n", text_model);
        else if (text_self) printf("  text-only verdict: the same model shown the blank image\n");
    }
    metrics_free(&em);
    rc = 0;
    if (fflush(stdout) != 0) {
        mmrm_set_error("writing the results to stdout failed");
        rc = 1;
    }
out_scored:
    if (rc) fail();
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
    scorer_free(tsc);
    scorer_free(sc);
    if (have_tm) {
        tokenizer_free(ttok);
        rm_free(&tm);
    }
    tokenizer_free(tok);
    rm_free(&m);
    return rc;
out_model:
    fail();
    scorer_free(tsc);
    scorer_free(sc);
    if (have_tm) {
        tokenizer_free(ttok);
        rm_free(&tm);
    }
    tokenizer_free(tok);
    rm_free(&m);
    return 1;
}
