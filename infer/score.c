/* score.c - `mmrm score`: every response of every scoring record ({prompt, img_path,
 * responses}) through the reward model, one output line per response
 * ({"prompt", "img_path", "response", "score"}, the reference's format) or with --grouped
 * one line per record ({"prompt", "img_path", "responses", "scores"}).
 *
 * The output is a log that a rerun continues: it is read first, the (prompt, img_path,
 * response) triples (grouped: the whole records) it holds are skipped, and new lines are
 * appended with an fsync after each batch, so a killed run loses at most the batch in flight.
 * A crash can leave a torn last line (no newline, or not JSON); it is cut away before
 * appending, so no line is lost or duplicated. This is why the output is appended in place
 * rather than written to a temporary file and renamed as other outputs are: a run of
 * millions of responses must survive being stopped. An exclusive lock (flock) on the output
 * refuses a second run on the same file while one writes it. Keys are counted as a multiset:
 * an input that repeats a response scores it as often as it appears, and a rerun skips as
 * many.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "infer/commands.h"
#include "infer/scorer.h"
#include "models/records.h"
#include "runtime/error.h"

static const char usage_text[] =
    "usage: mmrm score --model DIR --input IN.jsonl --output OUT.jsonl [options]\n"
    "\n"
    "Scores every response of every record {\"prompt\", \"img_path\", \"responses\": [...]}\n"
    "with the reward model in DIR. Writes one line per response\n"
    "  {\"prompt\", \"img_path\", \"response\", \"score\"}\n"
    "or with --grouped one line per record {\"prompt\", \"img_path\", \"responses\", \"scores\"}\n"
    "(a response the template rejects gets score null there). A rerun continues OUT: what it\n"
    "holds is skipped, a torn last line left by a crash is removed, new lines are appended.\n"
    "Records that cannot be scored (missing or undecodable image, ...) are reported as\n"
    "IN:line: reason and counted; they do not stop the run.\n"
    "\n"
    "options:\n"
    "  --model DIR             the reward model (config.json, weights, tokenizer file)\n"
    "  --input IN.jsonl        the records to score\n"
    "  --output OUT.jsonl      created, or continued when it exists\n"
    "  --grouped               one line per record with \"scores\" in response order\n"
    "  --blank-image           show every record the blank white image as one tile (the\n"
    "                          model's text-only scores); images are not read\n"
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

/* ---- the lines already written, as a multiset of 128-bit keys ---- */

typedef struct {
    uint64_t a, b;
} Key;

typedef struct {
    Key *keys;
    long *count; /* 0: an empty slot; else 1 + the occurrences not yet taken */
    size_t cap, n;
} KeySet;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Two independent running hashes (FNV-1a and a multiplicative one); every field goes in
 * with its length first, so field boundaries cannot be confused. */
static void key_feed(Key *k, const char *s, size_t n) {
    uint64_t len = n;
    for (int i = 0; i < 8; i++) {
        unsigned char c = (unsigned char)(len >> (8 * i));
        k->a = (k->a ^ c) * 0x100000001b3ULL;
        k->b = k->b * 0x9e3779b97f4a7c15ULL + c + 1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        k->a = (k->a ^ c) * 0x100000001b3ULL;
        k->b = k->b * 0x9e3779b97f4a7c15ULL + c + 1;
    }
}

static Key key_start(void) { return (Key){0xcbf29ce484222325ULL, 0x2545f4914f6cdd1dULL}; }

static Key key_finish(Key k) { return (Key){mix64(k.a), mix64(k.b ^ 0x5851f42d4c957f2dULL)}; }

static Key key_triple(const char *prompt, const char *img_path, const char *response) {
    Key k = key_start();
    key_feed(&k, prompt, strlen(prompt));
    key_feed(&k, img_path, strlen(img_path));
    key_feed(&k, response, strlen(response));
    return key_finish(k);
}

static Key key_record(const char *prompt, const char *img_path, const char *const *responses,
                      int n) {
    Key k = key_start();
    key_feed(&k, prompt, strlen(prompt));
    key_feed(&k, img_path, strlen(img_path));
    for (int i = 0; i < n; i++) key_feed(&k, responses[i], strlen(responses[i]));
    return key_finish(k);
}

static size_t keyset_slot(const KeySet *s, Key k) {
    size_t i = (size_t)k.a & (s->cap - 1);
    while (s->count[i] && (s->keys[i].a != k.a || s->keys[i].b != k.b)) i = (i + 1) & (s->cap - 1);
    return i;
}

static void keyset_add(KeySet *s, Key k) {
    if (2 * (s->n + 1) > s->cap) {
        KeySet g = {0};
        g.cap = s->cap ? 2 * s->cap : 1024;
        g.keys = xmalloc(g.cap * sizeof *g.keys);
        g.count = xcalloc(g.cap, sizeof *g.count);
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->count[i]) continue;
            size_t j = keyset_slot(&g, s->keys[i]);
            g.keys[j] = s->keys[i];
            g.count[j] = s->count[i];
        }
        g.n = s->n;
        free(s->keys);
        free(s->count);
        *s = g;
    }
    size_t i = keyset_slot(s, k);
    if (!s->count[i]) {
        s->keys[i] = k;
        s->count[i] = 1;
        s->n++;
    }
    s->count[i]++;
}

/* 1 (and one occurrence fewer) when the set holds k */
static int keyset_take(KeySet *s, Key k) {
    if (!s->cap) return 0;
    size_t i = keyset_slot(s, k);
    if (s->count[i] < 2) return 0;
    s->count[i]--;
    return 1;
}

static void keyset_free(KeySet *s) {
    free(s->keys);
    free(s->count);
    memset(s, 0, sizeof *s);
}

/* ---- reading what a previous run wrote ---- */

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int is_score(const cJSON *v) { return cJSON_IsNumber(v) || cJSON_IsNull(v); }

/* The key of a line of this run's kind; 1 for a line of the other kind, -1 for no output
 * line at all. */
static int line_key(const cJSON *v, int grouped, Key *k) {
    if (!cJSON_IsObject(v)) return -1;
    const char *prompt = json_str(v, "prompt"), *img = json_str(v, "img_path");
    if (!prompt || !img) return -1;
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(v, "response");
    const cJSON *score = cJSON_GetObjectItemCaseSensitive(v, "score");
    const cJSON *resps = cJSON_GetObjectItemCaseSensitive(v, "responses");
    const cJSON *scores = cJSON_GetObjectItemCaseSensitive(v, "scores");
    int one = cJSON_IsString(resp) && score && is_score(score);
    int many = cJSON_IsArray(resps) && cJSON_IsArray(scores) &&
               cJSON_GetArraySize(resps) == cJSON_GetArraySize(scores);
    for (const cJSON *e = many ? resps->child : NULL; e; e = e->next) many &= cJSON_IsString(e);
    for (const cJSON *e = many ? scores->child : NULL; e; e = e->next) many &= is_score(e);
    if (!one && !many) return -1;
    if (grouped ? !many : !one) return 1;
    if (!grouped) {
        *k = key_triple(prompt, img, resp->valuestring);
        return 0;
    }
    int n = cJSON_GetArraySize(resps), i = 0;
    const char **texts = xmalloc((size_t)(n ? n : 1) * sizeof *texts);
    for (const cJSON *e = resps->child; e; e = e->next) texts[i++] = e->valuestring;
    *k = key_record(prompt, img, texts, n);
    free(texts);
    return 0;
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

/* Fills done from path's lines and counts them in *lines. A last line without its newline or
 * that is not an output line is what a crash mid-write leaves: the file is cut back to the
 * end of the line before it. Any other bad line is an error (the file is not ours). 0 or -1;
 * a missing file is an empty output. */
static int read_existing(const char *path, int grouped, KeySet *done, long *lines) {
    *lines = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return 0;
        mmrm_set_error("%s: %s (the --output file cannot be read)", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        mmrm_set_error("%s is a directory (--output names the JSONL file to write)", path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long lineno = 0, bad_line = 0;
    off_t good_end = 0, torn_bytes = 0;
    int rc = 0, kind_error = 0;
    while ((got = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (bad_line) { /* a bad line with more after it is not a torn end */
            rc = -1;
            break;
        }
        size_t n = (size_t)got;
        int complete = line[n - 1] == '\n';
        if (complete) line[--n] = '\0';
        int ok = complete;
        if (ok && !is_blank(line, n)) {
            const char *end = NULL;
            cJSON *v = cJSON_ParseWithOpts(line, &end, 1);
            Key k;
            int r = v && (size_t)(end - line) == n ? line_key(v, grouped, &k) : -1;
            cJSON_Delete(v);
            if (r == 0) {
                keyset_add(done, k);
                ++*lines;
            }
            kind_error = r == 1;
            ok = r == 0;
        }
        if (ok) good_end += got;
        else {
            bad_line = lineno;
            torn_bytes = got;
        }
    }
    if (ferror(f)) {
        mmrm_set_error("%s: read error (%s)", path, strerror(errno));
        rc = -1;
    } else if (rc) {
        if (kind_error)
            mmrm_set_error("%s:%ld: a line of a %s output, but this run writes %s (pass %s, or "
                           "another --output)", path, bad_line, grouped ? "per-response" : "--grouped",
                           grouped ? "one line per record" : "one line per response",
                           grouped ? "no --grouped" : "--grouped");
        else
            mmrm_set_error("%s:%ld: not a line of a score output, and not the torn last line of "
                           "an interrupted run (lines follow it); fix or move the file", path,
                           bad_line);
    }
    free(line);
    fclose(f);
    if (rc || !bad_line) return rc;
    if (kind_error) {
        mmrm_set_error("%s:%ld: the last line is a line of a %s output (pass %s, or another "
                       "--output)", path, bad_line, grouped ? "per-response" : "--grouped",
                       grouped ? "no --grouped" : "--grouped");
        return -1;
    }
    int fd = open(path, O_WRONLY);
    if (fd < 0 || ftruncate(fd, good_end) != 0 || fsync(fd) != 0) {
        mmrm_set_error("%s: cannot cut the torn last line (%s)", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    mmrm_log("%s:%ld: removed a torn last line (%ld bytes) left by an interrupted run; its "
             "responses are scored again", path, bad_line, (long)torn_bytes);
    return 0;
}

/* ---- writing lines ---- */

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = 2 * (b->n + n + 1);
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void buf_lit(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

/* s as a JSON string; the text is valid UTF-8 (the reader checked it), so only quotes,
 * backslashes and control characters need escapes */
static void buf_str(Buf *b, const char *s) {
    buf_put(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        buf_put(b, run, (size_t)(s - run));
        char esc[8];
        switch (c) {
        case '"': buf_lit(b, "\\\""); break;
        case '\\': buf_lit(b, "\\\\"); break;
        case '\n': buf_lit(b, "\\n"); break;
        case '\t': buf_lit(b, "\\t"); break;
        case '\r': buf_lit(b, "\\r"); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_lit(b, esc);
        }
        run = s + 1;
    }
    buf_put(b, run, (size_t)(s - run));
    buf_put(b, "\"", 1);
}

/* %.9g round-trips a float; JSON has no NaN or infinity, so those are null */
static void buf_score(Buf *b, const ScoreOut *o) {
    char num[32];
    if (o->status != SCORE_OK || !isfinite(o->score)) snprintf(num, sizeof num, "null");
    else snprintf(num, sizeof num, "%.9g", (double)o->score);
    buf_lit(b, num);
}

static int write_all(int fd, const char *p, size_t n, const char *path) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            mmrm_set_error("%s: write failed (%s)", path, strerror(errno));
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync of the folder holding path, so that a newly created file's entry is durable too */
static void sync_parent(const char *path) {
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) slash[1] = '\0';
    else *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

/* ---- the command ---- */

typedef struct {
    long scored, done_before, truncated, nonfinite, lines_written;
    long failed[SCORE_NSTATUS];  /* responses, by status */
    long failed_records;         /* records whose image failed */
} Counts;

/* Counts one record's results and appends its lines: per response the scored ones, or with
 * grouped one line holding every score (null for a rejected response) unless the image
 * failed. */
static void put_lines(Buf *b, const ScoreRecord *rec, const ScoreGroup *gr, const ScoreOut *go,
                      int grouped, Counts *c) {
    if (go[0].status == SCORE_IMAGE_FAILED) c->failed_records++;
    for (int j = 0; j < gr->n; j++) {
        int ok = go[j].status == SCORE_OK;
        c->failed[go[j].status] += !ok;
        c->scored += ok;
        c->truncated += ok && go[j].truncated;
        c->nonfinite += ok && !isfinite(go[j].score);
    }
    if (grouped) {
        if (go[0].status == SCORE_IMAGE_FAILED) return;
        buf_lit(b, "{\"prompt\": ");
        buf_str(b, rec->prompt);
        buf_lit(b, ", \"img_path\": ");
        buf_str(b, rec->img_path);
        buf_lit(b, ", \"responses\": [");
        for (int j = 0; j < gr->n; j++) {
            if (j) buf_lit(b, ", ");
            buf_str(b, gr->responses[j]);
        }
        buf_lit(b, "], \"scores\": [");
        for (int j = 0; j < gr->n; j++) {
            if (j) buf_lit(b, ", ");
            buf_score(b, &go[j]);
        }
        buf_lit(b, "]}\n");
        c->lines_written++;
        return;
    }
    for (int j = 0; j < gr->n; j++) {
        if (go[j].status != SCORE_OK) continue;
        buf_lit(b, "{\"prompt\": ");
        buf_str(b, rec->prompt);
        buf_lit(b, ", \"img_path\": ");
        buf_str(b, rec->img_path);
        buf_lit(b, ", \"response\": ");
        buf_str(b, gr->responses[j]);
        buf_lit(b, ", \"score\": ");
        buf_score(b, &go[j]);
        buf_lit(b, "}\n");
        c->lines_written++;
    }
}

/* the final counts: what was scored, skipped, failed (by reason) and how fast */
static void report(const Counts *c, const ScoreSet *ss, const char *input, const char *output,
                   long total_responses, int max_length, const ScorerStats *st, double secs) {
    long failed = 0;
    for (int s = 1; s < SCORE_NSTATUS; s++) failed += c->failed[s];
    mmrm_log("%s: %ld records read, %zu loaded (%ld responses): %ld responses scored now, %ld "
             "already in %s, %ld failed; %ld line%s appended", input, ss->load.records, ss->n,
             total_responses, c->scored, c->done_before, output, failed, c->lines_written,
             c->lines_written == 1 ? "" : "s");
    for (int s = 1; s < SCORE_NSTATUS; s++) {
        if (!c->failed[s]) continue;
        if (s == SCORE_IMAGE_FAILED)
            mmrm_log("  failed: %ld responses of %ld records: %s", c->failed[s],
                     c->failed_records, score_status_name((ScoreStatus)s));
        else
            mmrm_log("  failed: %ld responses: %s", c->failed[s],
                     score_status_name((ScoreStatus)s));
    }
    for (int s = 0; s < REC_NREASONS; s++)
        if (ss->load.skipped[s])
            mmrm_log("  not loaded: %ld records: %s (the first: %s)", ss->load.skipped[s],
                     rec_reason_name((RecReason)s), ss->load.first_skip[s]);
    if (c->truncated)
        mmrm_log("  %ld responses were cut to --max-length %d (scored; the final <|im_end|> is "
                 "kept)", c->truncated, max_length);
    if (c->nonfinite)
        mmrm_warn("%ld scores are not finite (written as null): the model's weights may be "
                  "broken", c->nonfinite);
    if (st->forwards > 0)
        mmrm_log("throughput: %ld responses in %.2f s = %.1f responses/s | %ld forwards of %.1f "
                 "sequences, %.0f%% padding | images %.2f s, forwards %.2f s", c->scored, secs,
                 secs > 0 ? (double)c->scored / secs : 0.0, st->forwards,
                 (double)st->sequences / (double)st->forwards,
                 st->padded ? 100.0 * (double)(st->padded - st->tokens) / (double)st->padded
                            : 0.0,
                 st->image_seconds, st->forward_seconds);
}

int cmd_score(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *output = NULL;
    int grouped = 0, blank = 0;
    ScorerCli cli = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = scorer_cli_option(&cli, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf(usage_text, SCORER_CLI_USAGE);
            return 0;
        } else if (!strcmp(a, "--grouped")) {
            grouped = 1;
        } else if (!strcmp(a, "--blank-image")) {
            blank = 1;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--input") || !strcmp(a, "--output")) {
            if (i + 1 >= argc) return usage_error("%s needs a value", a);
            const char **dst = a[2] == 'm' ? &model : a[2] == 'i' ? &input : &output;
            *dst = argv[++i];
        } else {
            return usage_error("score: unknown option '%s'", a);
        }
    }
    if (!model) return usage_error("score: %s is missing", "--model");
    if (!input) return usage_error("score: %s is missing", "--input");
    if (!output) return usage_error("score: %s is missing", "--output");
    struct stat si, so;
    if (stat(input, &si) == 0 && stat(output, &so) == 0 && si.st_dev == so.st_dev &&
        si.st_ino == so.st_ino) {
        mmrm_set_error("--input and --output are the same file (%s)", output);
        return fail();
    }

    RewardModel m;
    Tokenizer *tok;
    if (scorer_load_model(model, &m, &tok)) return fail();
    ScorerOptions so_opt;
    scorer_cli_options(&cli, &m.cfg, &so_opt);
    so_opt.blank = blank;
    Scorer *sc = scorer_new(&m, tok, &so_opt);
    if (!sc) {
        tokenizer_free(tok);
        rm_free(&m);
        return fail();
    }
    ScoreSet ss;
    RecordOptions ropt = {.image_root = cli.image_root, .on_bad_record = REC_ON_BAD_SKIP};
    int rc = 1;
    KeySet done = {0};
    long existing = 0;
    if (scoreset_load(&ss, &input, 1, &ropt)) {
        fail();
        goto out_model;
    }
    /* the lock keeps a second run from appending to the same file at the same time */
    int existed = access(output, F_OK) == 0;
    int fd = open(output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        mmrm_set_error("%s: cannot open for writing (%s)", output, strerror(errno));
        fail();
        goto out_set;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        mmrm_set_error("%s is being written by another process (%s); wait for it or choose "
                       "another --output", output, strerror(errno));
        close(fd);
        fail();
        goto out_set;
    }
    if (!existed) sync_parent(output);
    if (read_existing(output, grouped, &done, &existing)) {
        close(fd);
        fail();
        goto out_set;
    }

    /* what is left to score: per record the responses (grouped: all or none) */
    Counts c = {0};
    long total_responses = 0, to_score = 0;
    for (size_t r = 0; r < ss.n; r++) total_responses += ss.recs[r].nresponses;
    const char **sel = xmalloc((size_t)(total_responses ? total_responses : 1) * sizeof *sel);
    size_t *sel_start = xmalloc((ss.n + 1) * sizeof *sel_start);
    for (size_t r = 0; r < ss.n; r++) {
        const ScoreRecord *rec = &ss.recs[r];
        sel_start[r] = (size_t)to_score;
        if (grouped) {
            if (keyset_take(&done, key_record(rec->prompt, rec->img_path, rec->responses,
                                              rec->nresponses))) {
                c.done_before += rec->nresponses;
                continue;
            }
            for (int j = 0; j < rec->nresponses; j++) sel[to_score++] = rec->responses[j];
            continue;
        }
        for (int j = 0; j < rec->nresponses; j++) {
            if (keyset_take(&done, key_triple(rec->prompt, rec->img_path, rec->responses[j])))
                c.done_before++;
            else
                sel[to_score++] = rec->responses[j];
        }
    }
    sel_start[ss.n] = (size_t)to_score;
    keyset_free(&done);
    if (existing)
        mmrm_log("%s holds %ld line%s: %ld of %ld responses are already scored, %ld to go",
                 output, existing, existing == 1 ? "" : "s", c.done_before, total_responses,
                 to_score);

    int B = so_opt.batch_size;
    ScoreGroup *groups = xmalloc((size_t)4 * B * sizeof *groups);
    size_t *grec = xmalloc((size_t)4 * B * sizeof *grec);
    char (*msg)[SCORER_MSG_LEN] = xmalloc((size_t)4 * B * sizeof *msg);
    ScoreOut *outs = xmalloc((size_t)(to_score ? to_score : 1) * sizeof *outs);
    Buf buf = {0};
    Progress prog;
    progress_start(&prog, "responses", to_score);
    double t0 = progress_now();
    rc = 0;
    for (size_t r = 0; r < ss.n && rc == 0;) {
        /* a chunk: whole records, ending where the responses fill whole forwards or pass
         * 4 forwards' worth; its lines are written and synced together */
        int ng = 0, nresp = 0;
        for (; r < ss.n && ng < 4 * B && !(nresp >= B && (nresp % B == 0 || nresp >= 4 * B));
             r++) {
            int k = (int)(sel_start[r + 1] - sel_start[r]);
            if (k == 0) continue;
            const ScoreRecord *rec = &ss.recs[r];
            groups[ng] = (ScoreGroup){rec->prompt, rec->image, sel + sel_start[r], k};
            grec[ng++] = r;
            nresp += k;
        }
        if (ng == 0) break;
        ScoreOut *o = outs + sel_start[grec[0]];
        if (scorer_score(sc, groups, ng, o, msg)) {
            rc = fail();
            break;
        }
        buf.n = 0;
        for (int g = 0; g < ng; g++) {
            const ScoreRecord *rec = &ss.recs[grec[g]];
            const ScoreGroup *gr = &groups[g];
            ScoreOut *go = outs + sel_start[grec[g]];
            if (msg[g][0]) {
                if (prog.tty) fputs("\r\033[K", stderr);
                mmrm_warn("%s:%d: %s", input, rec->line, msg[g]);
            }
            put_lines(&buf, rec, gr, go, grouped, &c);
        }
        if (write_all(fd, buf.p, buf.n, output)) {
            rc = fail();
            break;
        }
        if (fsync(fd) != 0) {
            mmrm_set_error("%s: fsync failed (%s)", output, strerror(errno));
            rc = fail();
            break;
        }
        progress_add(&prog, nresp);
    }
    double secs = progress_now() - t0;
    progress_end(&prog);
    if (close(fd) != 0 && rc == 0) {
        mmrm_set_error("%s: close failed (%s)", output, strerror(errno));
        rc = fail();
    }

    report(&c, &ss, input, output, total_responses, so_opt.max_length, scorer_stats(sc), secs);
    free(buf.p);
    free(outs);
    free(msg);
    free(grec);
    free(groups);
    free(sel);
    free(sel_start);
out_set:
    keyset_free(&done);
    scoreset_free(&ss);
out_model:
    scorer_free(sc);
    tokenizer_free(tok);
    rm_free(&m);
    return rc;
}
