/* records.c - JSONL training records to preference pairs and scoring records (spec/data.md):
 * field and type checks with a hint per failure, VLFeedback ratings to pairs, img_path
 * resolution with a header-only image check, and the skip/fail policy with per-reason counts.
 *
 * Objects with a repeated key use the last value, as Python's json module does. A record is
 * fully checked before anything is copied into the set's arena, so skipped records leave no
 * trace but their count. */
#include "models/records.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/image.h"
#include "runtime/error.h"
#include "runtime/jsonl.h"

/* ---- string arena: blocks that never move, freed together ---- */

typedef struct ArenaBlock {
    struct ArenaBlock *next;
    size_t used, cap;
    _Alignas(max_align_t) char data[];
} ArenaBlock;

struct RecArena {
    ArenaBlock *head;
};

#define ARENA_BLOCK ((size_t)1 << 20)

static void *arena_alloc(RecArena *a, size_t n) {
    ArenaBlock *b = a->head;
    size_t at = b ? (b->used + 7) & ~(size_t)7 : 0; /* 8-aligned for the responses arrays */
    if (!b || at + n > b->cap) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        b = xmalloc(sizeof *b + cap);
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        at = 0;
    }
    b->used = at + n;
    return b->data + at;
}

static const char *arena_strdup(RecArena *a, const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(arena_alloc(a, n), s, n);
}

static void arena_free(RecArena *a) {
    if (!a) return;
    for (ArenaBlock *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(a);
}

/* ---- the record being checked ---- */

static const char *const REASON_NAMES[REC_NREASONS] = {
    "malformed JSON", "missing field", "wrong type",
    "missing image", "undecodable image", "no valid pair",
};

const char *rec_reason_name(RecReason r) {
    return (unsigned)r < REC_NREASONS ? REASON_NAMES[r] : "unknown reason";
}

typedef struct {
    const RecordOptions *opt;
    const char *path; /* the JSONL file */
    const char *base; /* folder relative img_path values resolve against; "" is the cwd */
    int file, line;
    RecReason reason; /* set with msg when a record is bad */
    char msg[1024];
} Ctx;

/* Records why the current record is bad as "file:line: <reason><detail>"; returns 1. */
__attribute__((format(printf, 3, 4)))
static int bad(Ctx *c, RecReason reason, const char *fmt, ...) {
    c->reason = reason;
    int n = snprintf(c->msg, sizeof c->msg, "%s:%d: %s", c->path, c->line,
                     rec_reason_name(reason));
    if (n >= 0 && (size_t)n < sizeof c->msg) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->msg + n, sizeof c->msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return 1;
}

static const char *type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    return "an object";
}

/* The value of key in obj, the last one if the key repeats; NULL when absent. */
static const cJSON *field(const cJSON *obj, const char *key) {
    const cJSON *found = NULL;
    for (const cJSON *c = obj->child; c; c = c->next)
        if (c->string && strcmp(c->string, key) == 0) found = c;
    return found;
}

static int get_string(Ctx *c, const cJSON *obj, const char *key, const char *hint,
                      const char **out) {
    const cJSON *v = field(obj, key);
    if (!v) return bad(c, REC_MISSING_FIELD, " \"%s\" (%s)", key, hint);
    if (!cJSON_IsString(v))
        return bad(c, REC_WRONG_TYPE, " for \"%s\": %s (expected a string)", key, type_name(v));
    *out = v->valuestring;
    return 0;
}

/* The optional id: absent or null gives NULL; a number is kept as cJSON prints it. The result
 * is malloc'd. */
static int get_id(Ctx *c, const cJSON *obj, char **out) {
    const cJSON *v = field(obj, "id");
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v)) {
        *out = xstrdup(v->valuestring);
        return 0;
    }
    if (!cJSON_IsNumber(v))
        return bad(c, REC_WRONG_TYPE, " for \"id\": %s (expected a string or a number)",
                   type_name(v));
    char *text = cJSON_PrintUnformatted(v);
    if (!text) MMRM_FATAL("out of memory printing a record id");
    *out = xstrdup(text);
    cJSON_free(text);
    return 0;
}

static int check_object(Ctx *c, const cJSON *v) {
    if (cJSON_IsObject(v)) return 0;
    return bad(c, REC_WRONG_TYPE, ": the record is %s (expected a JSON object)", type_name(v));
}

/* ---- images ---- */

/* Joins base and img_path unless img_path is absolute; malloc'd. */
static char *resolve_image(const Ctx *c, const char *img_path) {
    if (img_path[0] == '/' || c->base[0] == '\0') return xstrdup(img_path);
    size_t nb = strlen(c->base), ni = strlen(img_path);
    int slash = c->base[nb - 1] != '/';
    char *p = xmalloc(nb + (size_t)slash + ni + 1);
    memcpy(p, c->base, nb);
    if (slash) p[nb] = '/';
    memcpy(p + nb + slash, img_path, ni + 1);
    return p;
}

/* Resolves img_path into *resolved (malloc'd) and checks that it exists and that the decoder
 * reads its header (image_info): cheap enough for every record at load time. Returns 1 for a bad
 * image, with *resolved freed and NULL. */
static int check_image(Ctx *c, const char *img_path, char **resolved) {
    const char *how = img_path[0] == '/' ? "img_path is absolute"
                      : c->opt->image_root && c->opt->image_root[0]
                          ? "relative img_path resolves against image_root"
                          : "relative img_path resolves against the JSONL file's folder "
                            "unless image_root is set";
    char *path = resolve_image(c, img_path);
    int is_bad = 0;
    FILE *f = fopen(path, "rb");
    struct stat st;
    int w, h;
    if (!f) {
        is_bad = bad(c, REC_MISSING_IMAGE, " %s (%s; %s)", path, strerror(errno), how);
    } else {
        int is_dir = fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode);
        fclose(f);
        if (is_dir)
            is_bad = bad(c, REC_MISSING_IMAGE, " %s (it is a directory; %s)", path, how);
        else if (image_info(path, &w, &h) != 0) /* the message starts with the path */
            is_bad = bad(c, REC_UNDECODABLE_IMAGE, " %s", mmrm_last_error());
    }
    if (is_bad) {
        free(path);
        path = NULL;
    }
    *resolved = path;
    return is_bad;
}

/* prompt and img_path, common to every record kind */
static int get_prompt_image(Ctx *c, const cJSON *v, const char *hint, const char **prompt,
                            const char **img_path) {
    if (get_string(c, v, "prompt", hint, prompt)) return 1;
    if (get_string(c, v, "img_path", hint, img_path)) return 1;
    if (!(*img_path)[0])
        return bad(c, REC_MISSING_FIELD, " \"img_path\" (it is empty; %s)", hint);
    return 0;
}

/* ---- training records ---- */

static const char *const PAIRWISE_HINT =
    "pairwise records need prompt, img_path, chosen, rejected";
static const char *const RATINGS_HINT =
    "ratings records need prompt, img_path, completions.annotations, completions.response";

static Pair *push_pair(PairSet *ps) {
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 1024;
        ps->pairs = xrealloc(ps->pairs, ps->cap * sizeof *ps->pairs);
    }
    Pair *p = &ps->pairs[ps->n++];
    memset(p, 0, sizeof *p);
    return p;
}

static int pairwise_record(PairSet *ps, Ctx *c, const cJSON *v) {
    const char *prompt, *img_path, *chosen, *rejected;
    if (get_prompt_image(c, v, PAIRWISE_HINT, &prompt, &img_path)) return 1;
    if (get_string(c, v, "chosen", PAIRWISE_HINT, &chosen)) return 1;
    if (get_string(c, v, "rejected", PAIRWISE_HINT, &rejected)) return 1;
    const cJSON *m = field(v, "margin");
    int has_margin = m && !cJSON_IsNull(m);
    if (has_margin && !(cJSON_IsNumber(m) && fabs(m->valuedouble) <= FLT_MAX))
        return bad(c, REC_WRONG_TYPE, " for \"margin\": %s (expected a finite number, or no "
                   "margin)", cJSON_IsNumber(m) ? "a number out of float range" : type_name(m));
    char *id, *resolved;
    if (get_id(c, v, &id)) return 1;
    if (check_image(c, img_path, &resolved)) {
        free(id);
        return 1;
    }
    Pair *p = push_pair(ps);
    p->id = id ? arena_strdup(ps->arena, id) : NULL;
    p->prompt = arena_strdup(ps->arena, prompt);
    p->image = arena_strdup(ps->arena, resolved);
    p->chosen = arena_strdup(ps->arena, chosen);
    p->rejected = arena_strdup(ps->arena, rejected);
    p->has_margin = has_margin;
    p->margin = has_margin ? (float)m->valuedouble : 0.0f;
    p->file = c->file;
    p->line = c->line;
    free(id);
    free(resolved);
    return 0;
}

/* float(Rating) as Python reads it, for a number or a decimal string; 0 for anything else
 * ("N/A", "", null, hex, NaN and infinities). */
static int rating_value(const cJSON *r, double *out) {
    double d;
    if (cJSON_IsNumber(r)) {
        d = r->valuedouble;
    } else if (cJSON_IsString(r)) {
        const char *s = r->valuestring;
        char *end;
        if (strpbrk(s, "xX")) return 0;
        d = strtod(s, &end);
        if (end == s) return 0;
        while (isspace((unsigned char)*end)) end++;
        if (*end) return 0;
    } else {
        return 0;
    }
    *out = d;
    return isfinite(d);
}

/* Mean rating of one annotation {aspect: {"Rating": r, ...}, ...}, or NAN when any rating is
 * not a number or there is no aspect. Repeated aspect keys count once with their last value,
 * at the position of the first, as a Python dict holds them. */
static int annotation_score(Ctx *c, const cJSON *ann, int idx, double *score) {
    if (!cJSON_IsObject(ann))
        return bad(c, REC_WRONG_TYPE, " for \"completions.annotations[%d]\": %s (expected an "
                   "object of aspects)", idx, type_name(ann));
    double sum = 0;
    int count = 0, numeric = 1;
    for (const cJSON *a = ann->child; a; a = a->next) {
        int seen = 0;
        for (const cJSON *e = ann->child; e != a && !seen; e = e->next)
            seen = strcmp(e->string, a->string) == 0;
        if (seen) continue;
        const cJSON *aspect = field(ann, a->string);
        if (!cJSON_IsObject(aspect))
            return bad(c, REC_WRONG_TYPE, " for \"completions.annotations[%d].%s\": %s "
                       "(expected an object with a Rating)", idx, aspect->string,
                       type_name(aspect));
        const cJSON *r = field(aspect, "Rating");
        if (!r)
            return bad(c, REC_MISSING_FIELD, " \"completions.annotations[%d].%s.Rating\" (each "
                       "aspect needs a Rating)", idx, aspect->string);
        double x;
        if (rating_value(r, &x)) sum += x;
        else numeric = 0;
        count++;
    }
    *score = numeric && count > 0 ? sum / count : NAN;
    return 0;
}

/* The items of an array, in order (cJSON arrays are linked lists). */
static const cJSON **array_items(const cJSON *arr, int *n) {
    *n = cJSON_GetArraySize(arr);
    const cJSON **items = xmalloc((size_t)*n * sizeof *items);
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next) items[i++] = e;
    return items;
}

static int ratings_checked(PairSet *ps, Ctx *c, const cJSON *v, const cJSON **anns,
                           const cJSON **resps, int k, double *score) {
    const char *prompt, *img_path;
    if (get_prompt_image(c, v, RATINGS_HINT, &prompt, &img_path)) return 1;
    for (int i = 0; i < k; i++)
        if (!cJSON_IsString(resps[i]))
            return bad(c, REC_WRONG_TYPE, " for \"completions.response[%d]\": %s (expected a "
                       "string)", i, type_name(resps[i]));
    for (int i = 0; i < k; i++)
        if (annotation_score(c, anns[i], i, &score[i])) return 1;
    long valid = 0, tied = 0, unrated = 0;
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++) {
            if (isnan(score[i]) || isnan(score[j])) unrated++;
            else if (score[i] == score[j]) tied++;
            else valid++;
        }
    if (valid == 0)
        return bad(c, REC_NO_VALID_PAIR, " (%d completion%s: %ld tied and %ld unrated pairs; "
                   "ratings records need two completions with different numeric mean ratings)",
                   k, k == 1 ? "" : "s", tied, unrated);
    char *id, *resolved;
    if (get_id(c, v, &id)) return 1;
    if (check_image(c, img_path, &resolved)) {
        free(id);
        return 1;
    }
    const char *sid = id ? arena_strdup(ps->arena, id) : NULL;
    const char *sprompt = arena_strdup(ps->arena, prompt);
    const char *simage = arena_strdup(ps->arena, resolved);
    const char **text = xcalloc((size_t)k, sizeof *text); /* arena copies, made on first use */
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++) {
            if (isnan(score[i]) || isnan(score[j]) || score[i] == score[j]) continue;
            int hi = score[i] > score[j] ? i : j, lo = hi == i ? j : i;
            if (!text[hi]) text[hi] = arena_strdup(ps->arena, resps[hi]->valuestring);
            if (!text[lo]) text[lo] = arena_strdup(ps->arena, resps[lo]->valuestring);
            Pair *p = push_pair(ps);
            p->id = sid;
            p->prompt = sprompt;
            p->image = simage;
            p->chosen = text[hi];
            p->rejected = text[lo];
            p->file = c->file;
            p->line = c->line;
        }
    ps->tied += tied;
    ps->unrated += unrated;
    free(text);
    free(id);
    free(resolved);
    return 0;
}

static int ratings_record(PairSet *ps, Ctx *c, const cJSON *v, const cJSON *comp) {
    if (field(v, "chosen") || field(v, "rejected"))
        return bad(c, REC_WRONG_TYPE, ": the record has both completions and chosen/rejected "
                   "(use one format per record)");
    if (!cJSON_IsObject(comp))
        return bad(c, REC_WRONG_TYPE, " for \"completions\": %s (expected an object with "
                   "annotations and response arrays)", type_name(comp));
    const cJSON *ann = field(comp, "annotations"), *resp = field(comp, "response");
    if (!ann) return bad(c, REC_MISSING_FIELD, " \"completions.annotations\" (%s)", RATINGS_HINT);
    if (!resp) return bad(c, REC_MISSING_FIELD, " \"completions.response\" (%s)", RATINGS_HINT);
    if (!cJSON_IsArray(ann))
        return bad(c, REC_WRONG_TYPE, " for \"completions.annotations\": %s (expected an array)",
                   type_name(ann));
    if (!cJSON_IsArray(resp))
        return bad(c, REC_WRONG_TYPE, " for \"completions.response\": %s (expected an array)",
                   type_name(resp));
    int na, nr;
    const cJSON **anns = array_items(ann, &na), **resps = array_items(resp, &nr);
    int rc;
    if (na != nr) {
        rc = bad(c, REC_WRONG_TYPE, ": completions.annotations has %d entries but "
                 "completions.response has %d (one annotation per response)", na, nr);
    } else {
        double *score = xmalloc((size_t)na * sizeof *score);
        rc = ratings_checked(ps, c, v, anns, resps, na, score);
        free(score);
    }
    free(anns);
    free(resps);
    return rc;
}

static int pair_record(void *set, Ctx *c, const cJSON *v) {
    if (check_object(c, v)) return 1;
    const cJSON *comp = field(v, "completions");
    return comp ? ratings_record(set, c, v, comp) : pairwise_record(set, c, v);
}

/* ---- scoring records ---- */

static const char *const SCORING_HINT = "scoring records need prompt, img_path, responses";

static int score_record(void *set, Ctx *c, const cJSON *v) {
    ScoreSet *ss = set;
    const char *prompt, *img_path;
    if (check_object(c, v)) return 1;
    if (get_prompt_image(c, v, SCORING_HINT, &prompt, &img_path)) return 1;
    const cJSON *resp = field(v, "responses");
    if (!resp) return bad(c, REC_MISSING_FIELD, " \"responses\" (%s)", SCORING_HINT);
    if (!cJSON_IsArray(resp))
        return bad(c, REC_WRONG_TYPE, " for \"responses\": %s (expected an array of strings)",
                   type_name(resp));
    int k;
    const cJSON **items = array_items(resp, &k);
    char *resolved = NULL;
    int rc = 0;
    for (int i = 0; i < k && !rc; i++)
        if (!cJSON_IsString(items[i]))
            rc = bad(c, REC_WRONG_TYPE, " for \"responses[%d]\": %s (expected a string)", i,
                     type_name(items[i]));
    if (!rc && k == 0)
        rc = bad(c, REC_NO_VALID_PAIR, " (responses is empty: nothing to score)");
    if (!rc && check_image(c, img_path, &resolved)) rc = 1;
    if (!rc) {
        if (ss->n == ss->cap) {
            ss->cap = ss->cap ? 2 * ss->cap : 256;
            ss->recs = xrealloc(ss->recs, ss->cap * sizeof *ss->recs);
        }
        const char **texts = arena_alloc(ss->arena, (size_t)k * sizeof *texts);
        for (int i = 0; i < k; i++) texts[i] = arena_strdup(ss->arena, items[i]->valuestring);
        ss->recs[ss->n++] = (ScoreRecord){
            .prompt = arena_strdup(ss->arena, prompt),
            .img_path = arena_strdup(ss->arena, img_path),
            .image = arena_strdup(ss->arena, resolved),
            .responses = texts,
            .nresponses = k,
            .file = c->file,
            .line = c->line,
        };
    }
    free(resolved);
    free(items);
    return rc;
}

/* ---- loading ---- */

typedef int (*RecordFn)(void *set, Ctx *c, const cJSON *v);

static void load_free(RecLoad *ld) {
    for (int i = 0; i < ld->nfiles; i++) free(ld->files[i]);
    free(ld->files);
    for (int r = 0; r < REC_NREASONS; r++) free(ld->first_skip[r]);
    memset(ld, 0, sizeof *ld);
}

/* The folder of a path ("" for a bare file name) */
static char *folder_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup("");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = xmalloc(n + 1);
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

static int load_file(RecLoad *ld, int file, const RecordOptions *opt, RecordFn fn, void *set) {
    const char *path = ld->files[file];
    JsonlReader *r = jsonl_open(path);
    if (!r) return -1;
    char *folder = opt->image_root && opt->image_root[0] ? NULL : folder_of(path);
    Ctx c = {.opt = opt, .path = path, .base = folder ? folder : opt->image_root, .file = file};
    int rc = 0;
    for (;;) {
        cJSON *v;
        int got = jsonl_next(r, &v, &c.line);
        if (got == 0) break;
        if (got == -2) {
            rc = -1;
            break;
        }
        ld->records++;
        int is_bad;
        if (got == -1) {
            c.reason = REC_MALFORMED_JSON;
            snprintf(c.msg, sizeof c.msg, "%s", mmrm_last_error());
            is_bad = 1;
        } else {
            is_bad = fn(set, &c, v);
            cJSON_Delete(v);
        }
        if (!is_bad) continue;
        if (opt->on_bad_record == REC_ON_BAD_FAIL) {
            mmrm_set_error("%s", c.msg);
            rc = -1;
            break;
        }
        ld->skipped[c.reason]++;
        if (!ld->first_skip[c.reason]) ld->first_skip[c.reason] = xstrdup(c.msg);
    }
    free(folder);
    jsonl_close(r);
    return rc;
}

static int load_all(RecLoad *ld, const char *const *paths, int npaths,
                    const RecordOptions *opt, RecordFn fn, void *set) {
    static const RecordOptions defaults = {0};
    if (!opt) opt = &defaults;
    ld->files = xcalloc((size_t)(npaths > 0 ? npaths : 1), sizeof *ld->files);
    for (int f = 0; f < npaths; f++) {
        ld->files[f] = xstrdup(paths[f]);
        ld->nfiles = f + 1;
        if (load_file(ld, f, opt, fn, set)) return -1;
    }
    return 0;
}

/* Appends "; skipped N records: 9 missing image, 5 malformed JSON" (largest counts first) and
 * logs the summary with the first message of each reason. */
static void finish_summary(RecLoad *ld, size_t used) {
    long total = 0;
    for (int r = 0; r < REC_NREASONS; r++) total += ld->skipped[r];
    used += (size_t)snprintf(ld->summary + used, sizeof ld->summary - used,
                             "; skipped %ld record%s", total, total == 1 ? "" : "s");
    int done[REC_NREASONS] = {0};
    for (int listed = 0; used < sizeof ld->summary; listed++) {
        int best = -1;
        for (int r = 0; r < REC_NREASONS; r++)
            if (!done[r] && ld->skipped[r] > 0 && (best < 0 || ld->skipped[r] > ld->skipped[best]))
                best = r;
        if (best < 0) break;
        done[best] = 1;
        used += (size_t)snprintf(ld->summary + used, sizeof ld->summary - used, "%s%ld %s",
                                 listed ? ", " : ": ", ld->skipped[best],
                                 rec_reason_name((RecReason)best));
    }
    mmrm_log("%s", ld->summary);
    for (int r = 0; r < REC_NREASONS; r++)
        if (ld->first_skip[r]) mmrm_log("  first %s: %s", rec_reason_name((RecReason)r),
                                        ld->first_skip[r]);
}

int pairset_load(PairSet *ps, const char *const *paths, int npaths, const RecordOptions *opt) {
    memset(ps, 0, sizeof *ps);
    ps->arena = xcalloc(1, sizeof *ps->arena);
    if (load_all(&ps->load, paths, npaths, opt, pair_record, ps)) {
        pairset_free(ps);
        return -1;
    }
    RecLoad *ld = &ps->load;
    size_t used = (size_t)snprintf(ld->summary, sizeof ld->summary, "loaded %zu pair%s from %d "
                                   "file%s", ps->n, ps->n == 1 ? "" : "s", ld->nfiles,
                                   ld->nfiles == 1 ? "" : "s");
    if (ps->tied || ps->unrated)
        used += (size_t)snprintf(ld->summary + used, sizeof ld->summary - used,
                                 " (not used: %ld tied and %ld unrated completion pairs)",
                                 ps->tied, ps->unrated);
    finish_summary(ld, used);
    return 0;
}

void pairset_free(PairSet *ps) {
    free(ps->pairs);
    load_free(&ps->load);
    arena_free(ps->arena);
    memset(ps, 0, sizeof *ps);
}

int scoreset_load(ScoreSet *ss, const char *const *paths, int npaths, const RecordOptions *opt) {
    memset(ss, 0, sizeof *ss);
    ss->arena = xcalloc(1, sizeof *ss->arena);
    if (load_all(&ss->load, paths, npaths, opt, score_record, ss)) {
        scoreset_free(ss);
        return -1;
    }
    long responses = 0;
    for (size_t i = 0; i < ss->n; i++) responses += ss->recs[i].nresponses;
    RecLoad *ld = &ss->load;
    size_t used = (size_t)snprintf(ld->summary, sizeof ld->summary, "loaded %zu scoring "
                                   "record%s (%ld responses) from %d file%s", ss->n,
                                   ss->n == 1 ? "" : "s", responses, ld->nfiles,
                                   ld->nfiles == 1 ? "" : "s");
    finish_summary(ld, used);
    return 0;
}

void scoreset_free(ScoreSet *ss) {
    free(ss->recs);
    load_free(&ss->load);
    arena_free(ss->arena);
    memset(ss, 0, sizeof *ss);
}
