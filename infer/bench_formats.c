/* bench_formats.c - the benchmark layouts read into pairs, and the benchmarks' own metrics
 * (bench_formats.h has the layouts, the sources and the tie rules). */
#include "infer/bench_formats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/error.h"
#include "runtime/jsonl.h"
#include "runtime/strbuf.h"

static const char *const FORMAT_NAMES[BENCH_NFORMATS] = {"pairs", "vlrewardbench",
                                                          "mmrewardbench", "mmrlhf"};

/* what a record of each format needs, for error hints */
static const char *const FORMAT_HINTS[BENCH_NFORMATS] = {
    "",
    "VL-RewardBench records need id, query, response [2 strings], human_ranking [2 numbers], "
    "image_path",
    "Multimodal RewardBench records need ID, Text, Image, Output1, Output2, Better "
    "(\"Output1\" or \"Output2\"), Category",
    "MM-RLHF-RewardBench records need id, prompt, chosen, rejected, image"};

/* credit of a tie, per benchmark */
static const double TIE_CREDIT[BENCH_NFORMATS] = {0.5, 0.0, 0.5, 0.0};
static const char *const TIE_RULES[BENCH_NFORMATS] = {
    "a tie counts 0.5",
    "a tie counts as wrong (a judge agrees only by picking the human-preferred response)",
    "a tie counts 0.5 (the official script breaks a missing verdict by a fair coin)",
    "a tie counts as wrong (the official script needs reward_0 > reward_1)"};

const char *bench_format_name(BenchFormat f) {
    return f >= 0 && f < BENCH_NFORMATS ? FORMAT_NAMES[f] : "?";
}

static int has(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k) != NULL; }

static int detect(const cJSON *o, BenchFormat *out) {
    if (has(o, "human_ranking") && has(o, "response")) *out = BENCH_VLREWARDBENCH;
    else if (has(o, "Output1") && has(o, "Output2") && has(o, "Better")) *out = BENCH_MMREWARDBENCH;
    else if (has(o, "img_path") || has(o, "completions")) *out = BENCH_PAIRS;
    else if (has(o, "chosen") && has(o, "rejected") && (has(o, "image") || has(o, "video")))
        *out = BENCH_MMRLHF;
    else return -1;
    return 0;
}

int bench_format_resolve(const char *name, const char *path, BenchFormat *out) {
    for (int f = 0; f < BENCH_NFORMATS; f++)
        if (!strcmp(name, FORMAT_NAMES[f])) {
            *out = (BenchFormat)f;
            return 0;
        }
    if (strcmp(name, "auto")) {
        mmrm_set_error("unknown --format '%s' (pairs, vlrewardbench, mmrewardbench, mmrlhf or "
                       "auto)", name);
        return -1;
    }
    JsonlReader *r = jsonl_open(path);
    if (!r) return -1;
    int rc = -1;
    for (;;) {
        cJSON *v;
        int line, got = jsonl_next(r, &v, &line);
        if (got == 0) {
            mmrm_set_error("%s: no record to detect the format from (--format auto)", path);
            break;
        }
        if (got == -2) break;
        if (got < 0) continue; /* malformed: the loader reports it */
        if (cJSON_IsObject(v) && detect(v, out) == 0) rc = 0;
        else
            mmrm_set_error("%s:%d: --format auto cannot tell the layout from this record's "
                           "fields (human_ranking + response: vlrewardbench; Output1 + Output2 "
                           "+ Better: mmrewardbench; chosen + rejected + image: mmrlhf; "
                           "img_path: pairs); name it with --format", path, line);
        cJSON_Delete(v);
        break;
    }
    jsonl_close(r);
    return rc;
}

/* ---- loading ---- */

typedef struct {
    BenchSet *b;
    const char *path;
    int line;
    const char *base; /* image folder for relative paths, NULL: none */
    char **ids;       /* (ngroups) mmrlhf question ids */
} Load;

static char *own(BenchSet *b, char *s) {
    b->owned = xrealloc(b->owned, (b->nowned + 1) * sizeof *b->owned);
    return b->owned[b->nowned++] = s;
}

static int bad(const Load *L, const char *field, const char *what) {
    mmrm_set_error("%s:%d: field \"%s\" %s (%s)", L->path, L->line, field, what,
                   FORMAT_HINTS[L->b->format]);
    return -1;
}

/* a string field, required */
static int get_str(const Load *L, const cJSON *o, const char *k, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v) return bad(L, k, "is missing");
    if (!cJSON_IsString(v)) return bad(L, k, "is not a string");
    *out = v->valuestring;
    return 0;
}

/* the first of the names that is present, as a string */
static int get_str_either(const Load *L, const cJSON *o, const char *k1, const char *k2,
                          const char **out) {
    return get_str(L, o, has(o, k1) || !has(o, k2) ? k1 : k2, out);
}

/* an id as text: a string, or a number kept as its text */
static int get_id(const Load *L, const cJSON *o, const char *k, char *buf, size_t n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v) return bad(L, k, "is missing");
    if (cJSON_IsString(v)) snprintf(buf, n, "%s", v->valuestring);
    else if (cJSON_IsNumber(v)) snprintf(buf, n, "%.17g", v->valuedouble);
    else return bad(L, k, "is not a string or a number");
    return 0;
}

static char *resolve(const Load *L, const char *img) {
    if (img[0] == '/' || !L->base) return xstrdup(img);
    StrBuf s = {0};
    sb_puts(&s, L->base);
    if (s.len && s.s[s.len - 1] != '/') sb_putc(&s, '/');
    sb_puts(&s, img);
    return sb_take(&s);
}

static int category_index(BenchSet *b, const char *name) {
    for (int i = 0; i < b->ncat; i++)
        if (!strcmp(b->cats[i], name)) return i;
    b->cats = xrealloc(b->cats, (size_t)(b->ncat + 1) * sizeof *b->cats);
    b->cats[b->ncat] = xstrdup(name);
    return b->ncat++;
}

static void add_pair(Load *L, const char *id, const char *prompt, const char *img,
                     const char *chosen, const char *rejected, const char *category, int group) {
    BenchSet *b = L->b;
    b->pairs = xrealloc(b->pairs, (b->n + 1) * sizeof *b->pairs);
    b->category = xrealloc(b->category, (b->n + 1) * sizeof *b->category);
    b->group = xrealloc(b->group, (b->n + 1) * sizeof *b->group);
    b->pairs[b->n] = (Pair){.id = own(b, xstrdup(id)), .prompt = own(b, xstrdup(prompt)),
                            .image = own(b, resolve(L, img)), .chosen = own(b, xstrdup(chosen)),
                            .rejected = own(b, xstrdup(rejected)), .file = 0, .line = L->line};
    b->category[b->n] = category ? category_index(b, category) : -1;
    b->group[b->n] = group;
    b->n++;
}

/* the folder name holding the image: ".../<subset>/file.jpg" */
static void parent_folder(const char *path, char *out, size_t n) {
    const char *end = strrchr(path, '/');
    out[0] = '\0';
    if (!end) return;
    const char *start = end;
    while (start > path && start[-1] != '/') start--;
    snprintf(out, n, "%.*s", (int)(end - start), start);
}

/* cal.py's group_mapping */
static const char *vlrb_group(const char *subset) {
    static const char *const MAP[][2] = {
        {"vlfeedback", "general"},        {"wildvision-battle", "general"},
        {"povid", "hallucination"},       {"rlhf-v", "hallucination"},
        {"rlaif-v", "hallucination"},     {"reasoning_tasks", "reasoning"}};
    for (size_t i = 0; i < sizeof MAP / sizeof MAP[0]; i++)
        if (!strcasecmp(subset, MAP[i][0])) return MAP[i][1];
    return NULL;
}

static int load_vlrb(Load *L, const cJSON *o) {
    char id[256];
    const char *query, *img, *cat = NULL;
    if (get_id(L, o, "id", id, sizeof id) || get_str(L, o, "query", &query) ||
        get_str_either(L, o, "image_path", "image", &img))
        return -1;
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(o, "response");
    const cJSON *rank = cJSON_GetObjectItemCaseSensitive(o, "human_ranking");
    if (!resp) return bad(L, "response", "is missing");
    if (!cJSON_IsArray(resp) || cJSON_GetArraySize(resp) != 2 ||
        !cJSON_IsString(cJSON_GetArrayItem(resp, 0)) || !cJSON_IsString(cJSON_GetArrayItem(resp, 1)))
        return bad(L, "response", "is not a list of 2 strings");
    if (!rank) return bad(L, "human_ranking", "is missing");
    if (!cJSON_IsArray(rank) || cJSON_GetArraySize(rank) != 2 ||
        !cJSON_IsNumber(cJSON_GetArrayItem(rank, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(rank, 1)))
        return bad(L, "human_ranking", "is not a list of 2 numbers");
    double r0 = cJSON_GetArrayItem(rank, 0)->valuedouble, r1 = cJSON_GetArrayItem(rank, 1)->valuedouble;
    if (r0 == r1) return bad(L, "human_ranking", "ranks both responses equal");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "category");
    if (cJSON_IsString(c)) {
        cat = c->valuestring;
    } else {
        char subset[128];
        parent_folder(img, subset, sizeof subset);
        if (!(cat = vlrb_group(subset))) {
            mmrm_set_error("%s:%d: cannot tell the subset from image_path \"%s\" (its folder "
                           "should be vlfeedback, wildvision-battle, povid, rlhf-v, rlaif-v or "
                           "reasoning_tasks, as in the release); or give a string \"category\" "
                           "(general, hallucination, reasoning)", L->path, L->line, img);
            return -1;
        }
    }
    /* rank 0 is preferred: [0, 1] the first, [1, 0] the second (dataset card) */
    int best = r0 < r1 ? 0 : 1;
    add_pair(L, id, query, img, cJSON_GetArrayItem(resp, best)->valuestring,
             cJSON_GetArrayItem(resp, 1 - best)->valuestring, cat, (int)L->b->n);
    return 0;
}

static int starts_with_ci(const char *s, const char *prefix) {
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static int load_mmrb(Load *L, const cJSON *o) {
    char id[256];
    const char *text, *img, *o1, *o2, *better, *cat;
    if (get_id(L, o, "ID", id, sizeof id) || get_str(L, o, "Text", &text) ||
        get_str(L, o, "Image", &img) || get_str(L, o, "Output1", &o1) ||
        get_str(L, o, "Output2", &o2) || get_str(L, o, "Better", &better) ||
        get_str(L, o, "Category", &cat))
        return -1;
    int second = !strcmp(better, "Output2");
    if (!second && strcmp(better, "Output1")) return bad(L, "Better", "is not \"Output1\" or \"Output2\"");
    /* scripts/2_get_accuracy.py's split of two categories by the ID's prefix */
    if (!strcmp(cat, "safety")) cat = starts_with_ci(id, "pairs") ? "safety/bias" : "safety/toxicity";
    else if (!strcmp(cat, "reasoning")) cat = starts_with_ci(id, "math") ? "reasoning/math" : "reasoning/coding";
    add_pair(L, id, text, img, second ? o2 : o1, second ? o1 : o2, cat, (int)L->b->n);
    return 0;
}

static int load_mmrlhf(Load *L, const cJSON *o) {
    char id[256];
    const char *prompt, *chosen, *rejected, *img;
    if (get_id(L, o, "id", id, sizeof id)) return -1;
    if (!has(o, "image") && has(o, "video")) {
        L->b->skipped_video++;
        return 0;
    }
    if (get_str(L, o, "prompt", &prompt) || get_str(L, o, "chosen", &chosen) ||
        get_str(L, o, "rejected", &rejected) || get_str(L, o, "image", &img))
        return -1;
    const char *cat = NULL;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "category");
    if (cJSON_IsString(c)) {
        cat = c->valuestring;
    } else {
        static const char *const KEYWORDS[] = {"mcq", "long", "short", "safety", "video"};
        for (size_t k = 0; k < sizeof KEYWORDS / sizeof KEYWORDS[0] && !cat; k++)
            if (strstr(img, KEYWORDS[k])) cat = KEYWORDS[k];
    }
    int g = 0;
    while (g < L->b->ngroups && strcmp(L->ids[g], id)) g++;
    if (g == L->b->ngroups) {
        L->ids = xrealloc(L->ids, (size_t)(g + 1) * sizeof *L->ids);
        L->ids[g] = xstrdup(id);
        L->b->ngroups++;
    }
    add_pair(L, id, prompt, img, chosen, rejected, cat, g);
    return 0;
}

static char *folder_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    StrBuf s = {0};
    sb_append(&s, path, (size_t)(slash - path + (slash == path)));
    return sb_take(&s);
}

int bench_load(BenchSet *b, const char *path, BenchFormat f, const char *image_root) {
    memset(b, 0, sizeof *b);
    b->format = f;
    if (f <= BENCH_PAIRS || f >= BENCH_NFORMATS) {
        mmrm_set_error("bench_load: %s is not a benchmark format", bench_format_name(f));
        return -1;
    }
    JsonlReader *r = jsonl_open(path);
    if (!r) return -1;
    char *folder = image_root && image_root[0] ? NULL : folder_of(path);
    Load L = {.b = b, .path = path, .base = folder ? folder : image_root};
    int rc = 0;
    for (;;) {
        cJSON *v;
        int got = jsonl_next(r, &v, &L.line);
        if (got == 0) break;
        if (got < 0) {
            rc = -1; /* the reader's message names file and line */
            break;
        }
        if (!cJSON_IsObject(v)) {
            mmrm_set_error("%s:%d: the record is not a JSON object (%s)", path, L.line,
                           FORMAT_HINTS[f]);
            rc = -1;
        } else {
            rc = f == BENCH_VLREWARDBENCH ? load_vlrb(&L, v)
                 : f == BENCH_MMREWARDBENCH ? load_mmrb(&L, v)
                                            : load_mmrlhf(&L, v);
        }
        cJSON_Delete(v);
        if (rc) break;
    }
    jsonl_close(r);
    free(folder);
    for (int g = 0; g < (f == BENCH_MMRLHF ? b->ngroups : 0); g++) free(L.ids[g]);
    free(L.ids);
    if (f != BENCH_MMRLHF) b->ngroups = (int)b->n;
    if (rc) {
        bench_free(b);
        return -1;
    }
    if (b->skipped_video)
        mmrm_warn("%s: %ld video records skipped (mmrm scores images only)", path,
                  b->skipped_video);
    mmrm_log("%s: %zu %s pairs in %d questions, %d categories", path, b->n,
             bench_format_name(f), b->ngroups, b->ncat);
    return 0;
}

void bench_free(BenchSet *b) {
    for (size_t i = 0; i < b->nowned; i++) free(b->owned[i]);
    for (int i = 0; i < b->ncat; i++) free(b->cats[i]);
    free(b->owned);
    free(b->cats);
    free(b->pairs);
    free(b->category);
    free(b->group);
    memset(b, 0, sizeof *b);
}

/* ---- metrics ---- */

static int cmp_cat(const void *a, const void *b) {
    return strcmp(((const BenchCategory *)a)->name, ((const BenchCategory *)b)->name);
}

void bench_metrics_compute(const BenchSet *b, const float *chosen, const float *rejected,
                           BenchMetrics *m) {
    memset(m, 0, sizeof *m);
    m->format = b->format;
    m->has_acc_plus = b->format == BENCH_MMRLHF;
    double tie = TIE_CREDIT[b->format], sum = 0;
    int nc = b->ncat > 0 ? b->ncat : 1, ng = b->ngroups > 0 ? b->ngroups : 1;
    double *cat_sum = xcalloc((size_t)nc, sizeof *cat_sum);
    long *cat_n = xcalloc((size_t)nc, sizeof *cat_n);
    /* per question: -1 unseen, 0 some pair wrong or unscored, 1 all right so far */
    int *all_right = xmalloc((size_t)ng * sizeof *all_right);
    int *group_cat = xmalloc((size_t)ng * sizeof *group_cat);
    for (int g = 0; g < ng; g++) all_right[g] = -1, group_cat[g] = -1;
    for (size_t i = 0; i < b->n; i++) {
        double c = chosen[i], r = rejected[i];
        int g = b->group[i], k = b->category[i];
        if (all_right[g] == -1) {
            all_right[g] = 1;
            group_cat[g] = k; /* a question's category is its first pair's */
        }
        if (isnan(c) || isnan(r)) {
            m->unscored++;
            all_right[g] = -2; /* left out of Acc+ */
            continue;
        }
        double credit = c > r ? 1.0 : c == r ? tie : 0.0;
        m->n++;
        m->ties += c == r;
        sum += credit;
        if (k >= 0) {
            cat_sum[k] += credit;
            cat_n[k]++;
        }
        if (!(c > r) && all_right[g] == 1) all_right[g] = 0;
    }
    m->accuracy = m->n ? sum / (double)m->n : NAN;
    long *cat_groups = xcalloc((size_t)nc, sizeof *cat_groups);
    long *cat_plus = xcalloc((size_t)nc, sizeof *cat_plus);
    long plus = 0;
    for (int g = 0; g < b->ngroups; g++) {
        if (all_right[g] < 0) continue;
        m->groups++;
        plus += all_right[g];
        if (group_cat[g] >= 0) {
            cat_groups[group_cat[g]]++;
            cat_plus[group_cat[g]] += all_right[g];
        }
    }
    m->acc_plus = m->groups ? (double)plus / (double)m->groups : NAN;
    for (int k = 0; k < b->ncat; k++) m->ncat += cat_n[k] > 0;
    m->cats = xcalloc((size_t)(m->ncat > 0 ? m->ncat : 1), sizeof *m->cats);
    double macro = 0;
    for (int k = 0, j = 0; k < b->ncat; k++) {
        if (!cat_n[k]) continue;
        m->cats[j++] = (BenchCategory){xstrdup(b->cats[k]), cat_n[k], cat_sum[k] / (double)cat_n[k],
                                       cat_groups[k],
                                       cat_groups[k] ? (double)cat_plus[k] / (double)cat_groups[k] : NAN};
        macro += cat_sum[k] / (double)cat_n[k];
    }
    m->macro_accuracy = m->ncat ? macro / m->ncat : NAN;
    qsort(m->cats, (size_t)m->ncat, sizeof *m->cats, cmp_cat);
    free(cat_sum);
    free(cat_n);
    free(all_right);
    free(group_cat);
    free(cat_groups);
    free(cat_plus);
}

void bench_metrics_free(BenchMetrics *m) {
    for (int k = 0; k < m->ncat; k++) free(m->cats[k].name);
    free(m->cats);
    memset(m, 0, sizeof *m);
}

static void add_num(cJSON *o, const char *k, double x) {
    if (isnan(x)) cJSON_AddNullToObject(o, k);
    else cJSON_AddNumberToObject(o, k, x);
}

cJSON *bench_metrics_json(const BenchMetrics *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", bench_format_name(m->format));
    cJSON_AddStringToObject(o, "tie_rule", TIE_RULES[m->format]);
    add_num(o, "pairs", (double)m->n);
    add_num(o, "unscored", (double)m->unscored);
    add_num(o, "ties", (double)m->ties);
    add_num(o, "accuracy", m->accuracy);
    add_num(o, "macro_accuracy", m->macro_accuracy);
    if (m->has_acc_plus) {
        add_num(o, "questions", (double)m->groups);
        add_num(o, "acc_plus", m->acc_plus);
    } else {
        cJSON_AddNullToObject(o, "acc_plus");
    }
    cJSON *cats = cJSON_AddObjectToObject(o, "categories");
    for (int k = 0; k < m->ncat; k++) {
        cJSON *c = cJSON_AddObjectToObject(cats, m->cats[k].name);
        add_num(c, "n", (double)m->cats[k].n);
        add_num(c, "accuracy", m->cats[k].accuracy);
        if (m->has_acc_plus) {
            add_num(c, "questions", (double)m->cats[k].groups);
            add_num(c, "acc_plus", m->cats[k].acc_plus);
        }
    }
    return o;
}

static const char *pct(char *buf, size_t n, double x) {
    if (isnan(x)) snprintf(buf, n, "n/a");
    else snprintf(buf, n, "%.2f%%", 100 * x);
    return buf;
}

void bench_metrics_print(FILE *f, const BenchMetrics *m) {
    char a[32], b[32];
    int w = 18;
    for (int k = 0; k < m->ncat; k++)
        if ((int)strlen(m->cats[k].name) > w) w = (int)strlen(m->cats[k].name);
    fprintf(f, "  %s (official metrics; %s)\n", bench_format_name(m->format), TIE_RULES[m->format]);
    fprintf(f, "    %-*s %-8s over %ld pairs%s\n", w, "overall accuracy",
            pct(a, sizeof a, m->accuracy), m->n, m->unscored ? " (unscored pairs left out)" : "");
    fprintf(f, "    %-*s %-8s mean over %d categories\n", w, "macro accuracy",
            pct(a, sizeof a, m->macro_accuracy), m->ncat);
    if (m->has_acc_plus)
        fprintf(f, "    %-*s %-8s over %ld questions (right only if every pair of the id is)\n", w,
                "Acc+", pct(a, sizeof a, m->acc_plus), m->groups);
    for (int k = 0; k < m->ncat; k++) {
        fprintf(f, "    %-*s %-8s n=%ld", w, m->cats[k].name,
                pct(a, sizeof a, m->cats[k].accuracy), m->cats[k].n);
        if (m->has_acc_plus)
            fprintf(f, "  Acc+ %s of %ld", pct(b, sizeof b, m->cats[k].acc_plus),
                    m->cats[k].groups);
        fputc('\n', f);
    }
}
