/* bon.c - `mmrm bon`: best-of-N selection, the reward model's downstream use. Every scoring
 * record {prompt, img_path, responses} is scored as one group and the response with the
 * highest reward is picked; --text-only picks with the blank image instead (the
 * shortcut-aware model's text-only view), --compare-text-only picks both ways and counts how
 * often they agree. The output is written at the end in one atomic replace
 * (fs_write_atomic): a killed run leaves no partial file, and a rerun starts over. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "infer/commands.h"
#include "infer/score_groups.h"
#include "infer/scorer.h"
#include "models/records.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/rng.h"
#include "runtime/strbuf.h"

static const char usage_text[] =
    "usage: mmrm bon --model DIR --input IN.jsonl --output OUT.jsonl [options]\n"
    "\n"
    "Best-of-N: scores every response of every record {\"prompt\", \"img_path\",\n"
    "\"responses\": [...]} and picks the one with the highest reward. Writes one line per\n"
    "record {\"prompt\", \"img_path\", \"responses\", \"scores\", \"chosen_index\", \"chosen\"}\n"
    "(scores null where a response was not scored; chosen_index and chosen null when none\n"
    "was). Responses that are not scored are never picked. OUT is replaced atomically at the\n"
    "end.\n"
    "\n"
    "options:\n"
    "  --model DIR             the reward model\n"
    "  --input IN.jsonl        the records\n"
    "  --output OUT.jsonl      the picks\n"
    "  --text-only             score with the blank white image (the model's text-only view)\n"
    "  --compare-text-only     pick with the image and with the blank image; each line adds\n"
    "                          \"text_only_scores\", \"text_only_chosen_index\", \"agree\", and\n"
    "                          the agreement rate is logged\n"
    "  --ties first|all|random equal top scores: the first of them (default), all of them\n"
    "                          (chosen_index and chosen become lists), or one drawn\n"
    "                          uniformly with --seed (per record from (seed, input line))\n"
    "  --seed S                for --ties random (default 0)\n"
    "%s"
    "  --help                  this text\n";

static int usage_error(const char *fmt, const char *arg) {
    return scorer_cli_usage_error(usage_text, fmt, arg);
}

typedef enum { TIES_FIRST, TIES_ALL, TIES_RANDOM } Ties;

/* The indices of the top scores among the scored ones into top (n), their count (0 when none
 * is scored); with TIES_FIRST or TIES_RANDOM one of them is moved to top[0]. */
static int pick(const ScoreOut *s, int n, Ties ties, Rng *rng, int *top) {
    int k = 0;
    float best = 0;
    for (int j = 0; j < n; j++) {
        if (s[j].status != SCORE_OK || isnan(s[j].score)) continue;
        if (k == 0 || s[j].score > best) {
            best = s[j].score;
            k = 0;
        }
        if (s[j].score == best) top[k++] = j;
    }
    if (k > 1 && ties == TIES_RANDOM) top[0] = top[rng_below(rng, (uint64_t)k)];
    return k;
}

static void add_scores(cJSON *o, const char *key, const ScoreOut *s, int n) {
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (int j = 0; j < n; j++)
        cJSON_AddItemToArray(a, s[j].status == SCORE_OK && isfinite(s[j].score)
                                    ? cJSON_CreateNumber((double)s[j].score)
                                    : cJSON_CreateNull());
}

static void add_pick(cJSON *o, const char *ikey, const char *ckey, const ScoreRecord *rec,
                     const int *top, int k, Ties ties) {
    if (k == 0) {
        cJSON_AddNullToObject(o, ikey);
        if (ckey) cJSON_AddNullToObject(o, ckey);
    } else if (ties == TIES_ALL) {
        cJSON *ia = cJSON_AddArrayToObject(o, ikey);
        cJSON *ca = ckey ? cJSON_AddArrayToObject(o, ckey) : NULL;
        for (int t = 0; t < k; t++) {
            cJSON_AddItemToArray(ia, cJSON_CreateNumber(top[t]));
            if (ca) cJSON_AddItemToArray(ca, cJSON_CreateString(rec->responses[top[t]]));
        }
    } else {
        cJSON_AddNumberToObject(o, ikey, top[0]);
        if (ckey) cJSON_AddStringToObject(o, ckey, rec->responses[top[0]]);
    }
}

/* the two picks agree: the same index, or with TIES_ALL the same set (both in index order) */
static int same_pick(const int *a, int ka, const int *b, int kb, Ties ties) {
    if (ka == 0 || kb == 0) return 0;
    if (ties != TIES_ALL) return a[0] == b[0];
    return ka == kb && !memcmp(a, b, (size_t)ka * sizeof *a);
}

int cmd_bon(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *output = NULL;
    int text_only = 0, compare = 0;
    Ties ties = TIES_FIRST;
    unsigned long long seed = 0;
    ScorerCli cli = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = scorer_cli_option(&cli, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf(usage_text, SCORER_CLI_USAGE);
            return 0;
        } else if (!strcmp(a, "--text-only")) {
            text_only = 1;
        } else if (!strcmp(a, "--compare-text-only")) {
            compare = 1;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--input") || !strcmp(a, "--output") ||
                   !strcmp(a, "--ties") || !strcmp(a, "--seed")) {
            if (i + 1 >= argc) return usage_error("%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--model")) model = v;
            else if (!strcmp(a, "--input")) input = v;
            else if (!strcmp(a, "--output")) output = v;
            else if (!strcmp(a, "--ties")) {
                if (!strcmp(v, "first")) ties = TIES_FIRST;
                else if (!strcmp(v, "all")) ties = TIES_ALL;
                else if (!strcmp(v, "random")) ties = TIES_RANDOM;
                else return usage_error("bon: --ties takes first, all or random, not '%s'", v);
            } else {
                char *end;
                seed = strtoull(v, &end, 10);
                if (!*v || *end || *v == '-') return usage_error("bon: bad --seed '%s'", v);
            }
        } else {
            return usage_error("bon: unknown option '%s'", a);
        }
    }
    if (!model) return usage_error("bon: %s is missing", "--model");
    if (!input) return usage_error("bon: %s is missing", "--input");
    if (!output) return usage_error("bon: %s is missing", "--output");
    if (text_only && compare)
        return usage_error("bon: %s", "--text-only and --compare-text-only exclude each other "
                                      "(the second picks both ways)");

    ScoreSet ss;
    RecordOptions ropt = {.image_root = cli.image_root, .on_bad_record = REC_ON_BAD_SKIP};
    if (scoreset_load(&ss, &input, 1, &ropt)) {
        fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
        return 1;
    }
    RewardModel m;
    Tokenizer *tok = NULL;
    Scorer *sc = NULL, *tsc = NULL;
    ScoreGroup *groups = NULL;
    int *lines = NULL, *top = NULL, *ttop = NULL;
    ScoreOut *mm = NULL, *txt = NULL;
    StrBuf out = {0};
    int rc = 1, have_m = 0;
    Device dev;
    int bf16 = 0;
    if (scorer_cli_device(&cli, 0, &dev, &bf16)) {
        scoreset_free(&ss);
        return 2;
    }
    if (scorer_load_model_adapter(model, cli.adapter, dev, bf16, &m, &tok)) goto done;
    have_m = 1;
    ScorerOptions o;
    scorer_cli_options(&cli, &m.cfg, &o);
    if (!text_only && !(sc = scorer_new(&m, tok, &o))) goto done;
    if (text_only || compare) {
        o.blank = 1;
        if (!(tsc = scorer_new(&m, tok, &o))) goto done;
    }

    size_t total = 0;
    int maxn = 1;
    groups = xmalloc((ss.n + 1) * sizeof *groups);
    lines = xmalloc((ss.n + 1) * sizeof *lines);
    for (size_t i = 0; i < ss.n; i++) {
        const ScoreRecord *rec = &ss.recs[i];
        groups[i] = (ScoreGroup){rec->prompt, rec->image, rec->responses, rec->nresponses};
        lines[i] = rec->line;
        total += (size_t)rec->nresponses;
        if (rec->nresponses > maxn) maxn = rec->nresponses;
    }
    mm = xmalloc((total + 1) * sizeof *mm);
    txt = tsc ? xmalloc((total + 1) * sizeof *txt) : NULL;
    double t0 = clock_seconds();
    if (sc && score_groups(sc, groups, (int)ss.n, lines, input, "responses", mm)) goto done;
    if (tsc && score_groups(tsc, groups, (int)ss.n, lines, input, "text-only responses", txt))
        goto done;
    double secs = clock_seconds() - t0;

    top = xmalloc((size_t)maxn * sizeof *top);
    ttop = xmalloc((size_t)maxn * sizeof *ttop);
    long picked = 0, tied = 0, agree = 0, both = 0;
    size_t at = 0;
    for (size_t i = 0; i < ss.n; i++) {
        const ScoreRecord *rec = &ss.recs[i];
        int n = rec->nresponses;
        Rng rng = rng_make(seed, (uint64_t)rec->line);
        /* the main pick: the image's scores, or with --text-only the blank image's */
        const ScoreOut *main_s = text_only ? txt + at : mm + at;
        int k = pick(main_s, n, ties, &rng, top);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "prompt", rec->prompt);
        cJSON_AddStringToObject(o, "img_path", rec->img_path);
        cJSON *resp = cJSON_AddArrayToObject(o, "responses");
        for (int j = 0; j < n; j++) cJSON_AddItemToArray(resp, cJSON_CreateString(rec->responses[j]));
        add_scores(o, "scores", main_s, n);
        add_pick(o, "chosen_index", "chosen", rec, top, k, ties);
        picked += k > 0;
        tied += k > 1;
        if (compare) {
            Rng trng = rng_make(seed, (uint64_t)rec->line);
            int tk = pick(txt + at, n, ties, &trng, ttop);
            add_scores(o, "text_only_scores", txt + at, n);
            add_pick(o, "text_only_chosen_index", NULL, rec, ttop, tk, ties);
            int same = same_pick(top, k, ttop, tk, ties);
            cJSON_AddBoolToObject(o, "agree", same);
            both += k > 0 && tk > 0;
            agree += same;
        }
        char *line = cJSON_PrintUnformatted(o);
        sb_puts(&out, line);
        sb_putc(&out, '\n');
        cJSON_free(line);
        cJSON_Delete(o);
        at += (size_t)n;
    }
    if (fs_write_atomic(output, out.s ? out.s : "", out.len)) goto done;
    mmrm_log("%s: %zu records, %zu responses scored%s in %.2f s; picked %ld (%ld with tied top "
             "scores, --ties %s), %zu without a scored response; wrote %s", input, ss.n, total,
             text_only ? " with the blank image" : compare ? " twice (image, blank image)" : "",
             secs, picked, tied, ties == TIES_FIRST ? "first" : ties == TIES_ALL ? "all" : "random",
             ss.n - (size_t)picked, output);
    if (compare)
        mmrm_log("text-only pick agrees with the pick on %ld of %ld records (%.1f%%)", agree,
                 both, both ? 100.0 * (double)agree / (double)both : 0.0);
    rc = 0;
done:
    if (rc) fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
    sb_free(&out);
    free(groups);
    free(lines);
    free(top);
    free(ttop);
    free(mm);
    free(txt);
    scorer_free(tsc);
    scorer_free(sc);
    if (have_m) {
        tokenizer_free(tok);
        rm_free(&m);
    }
    scoreset_free(&ss);
    return rc;
}
