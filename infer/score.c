/* score.c - `mmrm score`: every response of every scoring record ({prompt, img_path,
 * responses}) through the reward model, one output line per response
 * ({"prompt", "img_path", "response", "score"}, the reference's format) or with --grouped
 * one line per record ({"prompt", "img_path", "responses", "scores"}).
 *
 * The output is a log that a rerun continues: it is read first, the (prompt, img_path,
 * response) triples (grouped: the whole records) it holds are skipped, and new lines are
 * appended with an fsync after each chunk, so a killed run loses at most the chunk in flight.
 * A crash can leave a torn last line (no newline, or not JSON); it is cut away before
 * appending, so no line is lost or duplicated. This is why the output is appended in place
 * rather than written to a temporary file and renamed as other outputs are: a run of
 * millions of responses must survive being stopped. An exclusive lock (flock) on the output
 * refuses a second run on the same file while one writes it. Keys are counted as a multiset:
 * an input that repeats a response scores it as often as it appears, and a rerun skips as
 * many.
 *
 * Several ranks (mpirun/srun): every rank loads the model and the input; rank 0 alone takes
 * the lock and reads what is done, and broadcasts which responses are left. The work is cut
 * into chunks of whole records exactly as a single process cuts it (so every forward holds
 * the same sequences, and the scores are bitwise those of one process), and rank 0 hands out
 * chunk indices on request: a faster rank asks more often and takes more. Rank 0 also scores
 * chunks itself and answers requests between its own chunks; a worker keeps its next
 * WORK_AHEAD requests in flight so that those answers are there when it needs them (so a
 * slow rank delays the end of the job by at most that many of its chunks). Each rank appends
 * its lines, tagged with the record's input line and the response's index, to its own part
 * file OUT.parts/rank-R (fsync per chunk), so the ranks never contend for one file; at the
 * end rank 0 appends every part line to OUT in input order (the order one process writes)
 * and removes the parts. Parts need a folder every rank can write (a shared file system
 * across nodes).
 *
 * Part files are a continuation of OUT: a rerun with any number of ranks (one included)
 * counts their complete lines as done (a torn last line is cut as in OUT), keeps them, and
 * merges them with its own lines at the end, so a killed job loses at most each rank's chunk
 * in flight. The merge moves the part lines into OUT without a window where a line is in
 * both or in neither: OUT's size goes into OUT.parts/base, the folder is renamed
 * OUT.parts.merging (the commit to merge), the lines are appended to OUT and synced, and the
 * folder is renamed OUT.parts.merged (the commit that they are in) and removed. A run that
 * finds OUT.parts.merging cuts OUT back to that size and renames the folder back; one that
 * finds OUT.parts.merged removes it.
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
#include <dirent.h>

#include "infer/commands.h"
#include "infer/scorer.h"
#include "models/records.h"
#include "runtime/comm.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"

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
    "Under mpirun/srun the ranks share the work dynamically: each writes its lines to\n"
    "OUT.parts/rank-R, and rank 0 appends them to OUT in input order at the end. A killed\n"
    "job's parts are kept and merged by the rerun (with any number of ranks).\n"
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

/* A part file's line is "LINE J " and the output line, LINE the record's line in the input
 * and J the response's index (0 for a --grouped line): the merge sorts by them. Returns the
 * output line, or NULL when the tag is malformed. */
static const char *parse_tag(const char *s, long *line, long *j) {
    char *end;
    if (*s < '0' || *s > '9') return NULL;
    *line = strtol(s, &end, 10);
    if (*end != ' ' || end[1] < '0' || end[1] > '9') return NULL;
    *j = strtol(end + 1, &end, 10);
    return *end == ' ' ? end + 1 : NULL;
}

/* Fills done from path's lines and counts them in *lines (tagged: a part file). A last line
 * without its newline or that is not an output line is what a crash mid-write leaves: the
 * file is cut back to the end of the line before it. Any other bad line is an error (the
 * file is not ours). 0 or -1; a missing file is an empty output. */
static int read_existing(const char *path, int grouped, int tagged, KeySet *done, long *lines) {
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
            long tag_line, tag_j;
            const char *json = tagged ? parse_tag(line, &tag_line, &tag_j) : line;
            const char *end = NULL;
            cJSON *v = json ? cJSON_ParseWithOpts(json, &end, 1) : NULL;
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

/* ---- part files (several ranks; see the file comment) ---- */

typedef struct {
    char *live;    /* OUT.parts: the part files of this run (or of a killed one) */
    char *merging; /* OUT.parts.merging: their lines are being appended to OUT */
    char *merged;  /* OUT.parts.merged: their lines are in OUT; only removal is left */
} PartDirs;

static char *str_cat(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *s = xmalloc(na + nb + 1);
    memcpy(s, a, na);
    memcpy(s + na, b, nb + 1);
    return s;
}

static void partdirs_init(PartDirs *d, const char *out) {
    d->live = str_cat(out, ".parts");
    d->merging = str_cat(out, ".parts.merging");
    d->merged = str_cat(out, ".parts.merged");
}

static void partdirs_free(PartDirs *d) {
    free(d->live);
    free(d->merging);
    free(d->merged);
}

static char *part_path(const char *dir, const char *name) {
    char *slash = str_cat(dir, "/"), *p = str_cat(slash, name);
    free(slash);
    return p;
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

typedef struct {
    long rank;
    char *path;
} PartFile;

static int partfile_cmp(const void *a, const void *b) {
    const PartFile *x = a, *y = b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

static void partfiles_free(PartFile *f, int n) {
    for (int i = 0; i < n; i++) free(f[i].path);
    free(f);
}

/* The part files "rank-R" in dir, in rank order. "base" (the size of OUT a merge starts
 * from) is skipped; anything else is an error: the folder is this command's. 0 or -1. */
static int list_parts(const char *dir, PartFile **files, int *n) {
    *files = NULL;
    *n = 0;
    DIR *dp = opendir(dir);
    if (!dp) {
        mmrm_set_error("%s: cannot list the part files (%s)", dir, strerror(errno));
        return -1;
    }
    int cap = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        const char *name = e->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, "base")) continue;
        char *end = NULL;
        long r = strncmp(name, "rank-", 5) || name[5] < '0' || name[5] > '9'
                     ? -1 : strtol(name + 5, &end, 10);
        if (r < 0 || *end) {
            mmrm_set_error("%s/%s is not a part file of mmrm score (this folder holds the lines "
                           "of a multi-rank run on the output; move the file away)", dir, name);
            rc = -1;
            break;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            *files = xrealloc(*files, (size_t)cap * sizeof **files);
        }
        (*files)[(*n)++] = (PartFile){r, part_path(dir, name)};
    }
    closedir(dp);
    if (rc) {
        partfiles_free(*files, *n);
        *files = NULL;
        *n = 0;
    } else if (*n) {
        qsort(*files, (size_t)*n, sizeof **files, partfile_cmp);
    }
    return rc;
}

/* Finishes or undoes what a killed merge left (rank 0, holding the lock on OUT = fd). */
static int parts_recover(const PartDirs *d, const char *out, int fd) {
    if (exists(d->merged)) {
        fs_remove_tree(d->merged);
        sync_parent(out);
        mmrm_log("%s: removed the part files of a completed merge", d->merged);
    }
    if (!exists(d->merging)) return 0;
    if (exists(d->live)) {
        mmrm_set_error("%s and %s both exist: these are not the folders of one mmrm score run "
                       "(move both away and score again)", d->merging, d->live);
        return -1;
    }
    char *base_path = part_path(d->merging, "base");
    FILE *f = fopen(base_path, "r");
    long long base = -1;
    struct stat st;
    if (!f || fscanf(f, "%lld", &base) != 1 || fstat(fd, &st) != 0 || base < 0 ||
        base > (long long)st.st_size) {
        mmrm_set_error("%s: missing or not a size within %s: cannot undo the interrupted merge "
                       "(its part files are in %s; the lines there that %s lacks can be "
                       "appended by hand, without their two leading numbers)", base_path, out,
                       d->merging, out);
        if (f) fclose(f);
        free(base_path);
        return -1;
    }
    fclose(f);
    free(base_path);
    if (ftruncate(fd, (off_t)base) != 0 || fsync(fd) != 0 || rename(d->merging, d->live) != 0) {
        mmrm_set_error("%s: cannot undo the interrupted merge (%s)", out, strerror(errno));
        return -1;
    }
    sync_parent(out);
    mmrm_log("%s: a merge of part files was interrupted; %s is cut back to its %lld bytes from "
             "before it, and the part files are merged again", out, out, base);
    return 0;
}

/* Counts the complete lines of every part file into done (cutting a torn last line). */
static int parts_scan(const PartDirs *d, int grouped, KeySet *done, int *nfiles, long *lines) {
    PartFile *files;
    *lines = 0;
    if (list_parts(d->live, &files, nfiles)) return -1;
    int rc = 0;
    for (int i = 0; i < *nfiles && rc == 0; i++) {
        long n;
        rc = read_existing(files[i].path, grouped, 1, done, &n);
        *lines += n;
    }
    partfiles_free(files, *nfiles);
    return rc;
}

typedef struct {
    long line, j; /* the tag: input line, response index */
    size_t seq;   /* the order read, so equal tags keep it */
    const char *p;
    size_t n;     /* the output line with its newline */
} PartLine;

static int partline_cmp(const void *a, const void *b) {
    const PartLine *x = a, *y = b;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    if (x->j != y->j) return x->j < y->j ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* path's whole content, or NULL with the error set */
static char *read_whole(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        mmrm_set_error("%s: cannot read (%s)", path, strerror(errno));
        if (f) fclose(f);
        return NULL;
    }
    char *p = xmalloc((size_t)st.st_size + 1);
    *n = fread(p, 1, (size_t)st.st_size, f);
    int bad = ferror(f) || *n != (size_t)st.st_size;
    fclose(f);
    if (bad) {
        mmrm_set_error("%s: read error", path);
        free(p);
        return NULL;
    }
    return p;
}

/* Appends every part line to OUT (fd, locked) in input order and removes the part files,
 * through the commits described in the file comment. *merged = the lines appended. */
static int parts_merge(const PartDirs *d, const char *out, int fd, long *merged) {
    PartFile *files;
    int nfiles, rc = -1;
    *merged = 0;
    if (list_parts(d->live, &files, &nfiles)) return -1;
    char **text = xcalloc((size_t)(nfiles ? nfiles : 1), sizeof *text);
    PartLine *lines = NULL;
    size_t n = 0, cap = 0;
    Buf b = {0};
    for (int i = 0; i < nfiles; i++) {
        size_t len;
        if (!(text[i] = read_whole(files[i].path, &len))) goto out;
        long lineno = 0;
        for (size_t at = 0; at < len;) {
            const char *p = text[i] + at, *nl = memchr(p, '\n', len - at);
            lineno++;
            PartLine pl = {.seq = n};
            const char *json = nl ? parse_tag(p, &pl.line, &pl.j) : NULL;
            if (!json || json > nl) {
                mmrm_set_error("%s:%ld: not a complete tagged line (part files hold only those "
                               "at the merge; was the file changed?)", files[i].path, lineno);
                goto out;
            }
            pl.p = json;
            pl.n = (size_t)(nl + 1 - json);
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                lines = xrealloc(lines, cap * sizeof *lines);
            }
            lines[n++] = pl;
            at = (size_t)(nl + 1 - text[i]);
        }
    }
    if (n == 0) {
        fs_remove_tree(d->live);
        sync_parent(out);
        rc = 0;
        goto out;
    }
    qsort(lines, n, sizeof *lines, partline_cmp);
    /* commit 1: OUT's size now is where a killed merge is undone to */
    struct stat st;
    if (fstat(fd, &st) != 0) {
        mmrm_set_error("%s: cannot stat (%s)", out, strerror(errno));
        goto out;
    }
    char size[32];
    int len = snprintf(size, sizeof size, "%lld\n", (long long)st.st_size);
    char *base_path = part_path(d->live, "base");
    int bfd = open(base_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int ok = bfd >= 0 && write_all(bfd, size, (size_t)len, base_path) == 0 && fsync(bfd) == 0;
    if (bfd >= 0) ok = close(bfd) == 0 && ok;
    free(base_path);
    if (!ok) {
        mmrm_set_error("%s: cannot record the size of %s before the merge (%s)", d->live, out,
                       strerror(errno));
        goto out;
    }
    fs_fsync_dir(d->live);
    if (rename(d->live, d->merging) != 0) {
        mmrm_set_error("%s: cannot rename to %s (%s)", d->live, d->merging, strerror(errno));
        goto out;
    }
    sync_parent(out);
    for (size_t i = 0; i < n; i++) {
        buf_put(&b, lines[i].p, lines[i].n);
        if (b.n < ((size_t)1 << 20) && i + 1 < n) continue;
        if (write_all(fd, b.p, b.n, out)) goto out;
        b.n = 0;
    }
    if (fsync(fd) != 0) {
        mmrm_set_error("%s: fsync failed (%s)", out, strerror(errno));
        goto out;
    }
    /* commit 2: the lines are in OUT */
    if (rename(d->merging, d->merged) != 0) {
        mmrm_set_error("%s: cannot rename to %s (%s); a rerun finishes the merge", d->merging,
                       d->merged, strerror(errno));
        goto out;
    }
    sync_parent(out);
    fs_remove_tree(d->merged);
    *merged = (long)n;
    rc = 0;
out:
    if (rc && exists(d->merging))
        mmrm_log("%s: the merge stopped; a rerun of the same command undoes it and merges again",
                 d->merging);
    for (int i = 0; i < nfiles; i++) free(text[i]);
    free(text);
    free(lines);
    free(b.p);
    partfiles_free(files, nfiles);
    return rc;
}

/* ---- the command ---- */

typedef struct {
    long scored, done_before, truncated, nonfinite, lines_written;
    long failed[SCORE_NSTATUS];  /* responses, by status */
    long failed_records;         /* records whose image failed */
} Counts;

/* "LINE J " before a part file's line; nothing with line < 0 */
static void put_tag(Buf *b, long line, int j) {
    if (line < 0) return;
    char t[48];
    int n = snprintf(t, sizeof t, "%ld %d ", line, j);
    buf_put(b, t, (size_t)n);
}

/* Counts one record's results and appends its lines: per response the scored ones, or with
 * grouped one line holding every score (null for a rejected response) unless the image
 * failed. tag: the record's input line when the lines go to a part file, else -1;
 * resp_index: the group's responses' indices in the record (a rerun scores only some). */
static void put_lines(Buf *b, const ScoreRecord *rec, const ScoreGroup *gr, const int *resp_index,
                      const ScoreOut *go, int grouped, long tag, Counts *c) {
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
        put_tag(b, tag, 0);
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
        put_tag(b, tag, resp_index[j]);
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
                   long total_responses, int max_length, const ScorerStats *st, double secs,
                   int world) {
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
    char ranks[48] = "";
    if (world > 1) snprintf(ranks, sizeof ranks, " (summed over %d ranks)", world);
    if (st->forwards > 0)
        mmrm_log("throughput: %ld responses in %.2f s = %.1f responses/s | %ld forwards of %.1f "
                 "sequences, %.0f%% padding | images %.2f s, forwards %.2f s%s", c->scored, secs,
                 secs > 0 ? (double)c->scored / secs : 0.0, st->forwards,
                 (double)st->sequences / (double)st->forwards,
                 st->padded ? 100.0 * (double)(st->padded - st->tokens) / (double)st->padded
                            : 0.0,
                 st->image_seconds, st->forward_seconds, ranks);
}

/* Every rank's counts and scorer statistics summed into every rank's (done_before is rank
 * 0's alone: it read the output). */
static void sum_over_ranks(const Comm *cm, Counts *c, ScorerStats *st) {
    if (cm->world == 1) return;
    long *n[] = {&c->scored, &c->truncated, &c->nonfinite, &c->lines_written,
                 &c->failed_records, &st->forwards, &st->sequences, &st->tokens, &st->padded,
                 &st->images, &st->tiles};
    enum { NL = sizeof n / sizeof n[0], NV = NL + SCORE_NSTATUS + 2 };
    double v[NV];
    for (int i = 0; i < NL; i++) v[i] = (double)*n[i];
    for (int s = 0; s < SCORE_NSTATUS; s++) v[NL + s] = (double)c->failed[s];
    v[NV - 2] = st->image_seconds;
    v[NV - 1] = st->forward_seconds;
    comm_allreduce_sum_f64(cm, v, NV);
    for (int i = 0; i < NL; i++) *n[i] = (long)v[i];
    for (int s = 0; s < SCORE_NSTATUS; s++) c->failed[s] = (long)v[NL + s];
    st->image_seconds = v[NV - 2];
    st->forward_seconds = v[NV - 1];
}

/* The work units: chunk k is records [at[k], at[k + 1]) of those with responses left, whole
 * records ending where the responses fill whole forwards or pass 4 forwards' worth. Every
 * rank computes the same plan, and a single process scores the chunks in order, so each
 * forward holds the same sequences however many ranks run. */
static size_t *plan_chunks(const size_t *sel_start, size_t n, int B, size_t *nchunks) {
    size_t *at = xmalloc((n + 1) * sizeof *at), k = 0, r = 0;
    while (r < n) {
        size_t begin = r;
        int ng = 0, nresp = 0;
        for (; r < n && ng < 4 * B && !(nresp >= B && (nresp % B == 0 || nresp >= 4 * B));
             r++) {
            int m = (int)(sel_start[r + 1] - sel_start[r]);
            if (m == 0) continue;
            ng++;
            nresp += m;
        }
        if (ng == 0) break;
        at[k++] = begin;
    }
    at[k] = r;
    *nchunks = k;
    return at;
}

/* What scoring a chunk needs; each rank has its own. */
typedef struct {
    const ScoreSet *ss;
    const char *input;
    int grouped, tagged;       /* tagged: lines go to a part file, with their tags */
    int fd;                    /* where lines go */
    const char *path;
    Scorer *sc;
    const char **sel;          /* (to_score) the responses left, record by record */
    const int *sel_index;      /* (to_score) their indices in their records */
    const size_t *sel_start;   /* (n + 1) record r's are sel[sel_start[r] .. sel_start[r + 1]) */
    const size_t *at;          /* (nchunks + 1) the plan */
    size_t nchunks;
    ScoreOut *outs;            /* (to_score) */
    ScoreGroup *groups;        /* (4B) */
    size_t *grec;              /* (4B) */
    char (*msg)[SCORER_MSG_LEN]; /* (4B) */
    Buf buf;
    Counts c;
    int tty;                   /* a progress bar is drawn on stderr */
    Progress *prog;            /* rank 0's */
} Run;

/* The work queue's task (u is the Run): scores chunk k and appends its lines (one write, then
 * fsync). The number of responses it held, or -1 with the error set. */
static long score_chunk(void *ctx, size_t k) {
    Run *u = ctx;
    int ng = 0;
    long nresp = 0;
    for (size_t r = u->at[k]; r < u->at[k + 1]; r++) {
        int m = (int)(u->sel_start[r + 1] - u->sel_start[r]);
        if (m == 0) continue;
        const ScoreRecord *rec = &u->ss->recs[r];
        u->groups[ng] = (ScoreGroup){rec->prompt, rec->image, u->sel + u->sel_start[r], m};
        u->grec[ng++] = r;
        nresp += m;
    }
    if (ng == 0) return 0;
    if (scorer_score(u->sc, u->groups, ng, u->outs + u->sel_start[u->grec[0]], u->msg)) return -1;
    u->buf.n = 0;
    for (int g = 0; g < ng; g++) {
        size_t r = u->grec[g];
        const ScoreRecord *rec = &u->ss->recs[r];
        if (u->msg[g][0]) {
            if (u->tty) fputs("\r\033[K", stderr);
            mmrm_warn("%s:%d: %s", u->input, rec->line, u->msg[g]);
        }
        put_lines(&u->buf, rec, &u->groups[g], u->sel_index + u->sel_start[r],
                  u->outs + u->sel_start[r], u->grouped, u->tagged ? rec->line : -1, &u->c);
    }
    if (write_all(u->fd, u->buf.p, u->buf.n, u->path)) return -1;
    if (fsync(u->fd) != 0) {
        mmrm_set_error("%s: fsync failed (%s)", u->path, strerror(errno));
        return -1;
    }
    return nresp;
}

/* the work queue's report on rank 0: responses scored by any rank */
static void chunk_done(void *ctx, long responses) { progress_add(((Run *)ctx)->prog, responses); }

/* Opens OUT for appending and takes its lock; the fd, or -1 with the error set. */
static int open_locked(const char *output) {
    int existed = access(output, F_OK) == 0;
    int fd = open(output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        mmrm_set_error("%s: cannot open for writing (%s)", output, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        mmrm_set_error("%s is being written by another process (%s); wait for it or choose "
                       "another --output", output, strerror(errno));
        close(fd);
        return -1;
    }
    if (!existed) sync_parent(output);
    return fd;
}

/* Rank 0 before any scoring: the lock, a killed merge finished or undone, OUT and the part
 * files read; todo[i] = 1 for every response (in input order) not written yet.
 * hdr = {responses, records, responses done, part files in use}. The fd, or -1. */
static int find_work(const ScoreSet *ss, const char *output, const PartDirs *pd, int grouped,
                     int world, unsigned char *todo, long hdr[4]) {
    int fd = open_locked(output);
    if (fd < 0) return -1;
    KeySet done = {0};
    long existing = 0, part_lines = 0;
    int nparts = 0, parts = world > 1;
    if (parts_recover(pd, output, fd) || read_existing(output, grouped, 0, &done, &existing))
        goto fail;
    if (exists(pd->live)) {
        parts = 1;
        if (parts_scan(pd, grouped, &done, &nparts, &part_lines)) goto fail;
    } else if (parts) {
        if (mkdir(pd->live, 0755) != 0) {
            mmrm_set_error("%s: cannot create the folder of the part files (%s)", pd->live,
                           strerror(errno));
            goto fail;
        }
        sync_parent(output);
    }
    long total = 0, done_before = 0;
    for (size_t r = 0; r < ss->n; r++) {
        const ScoreRecord *rec = &ss->recs[r];
        unsigned char *t = todo + total;
        total += rec->nresponses;
        if (grouped) {
            int took = keyset_take(&done, key_record(rec->prompt, rec->img_path, rec->responses,
                                                    rec->nresponses));
            memset(t, !took, (size_t)rec->nresponses);
            done_before += took ? rec->nresponses : 0;
            continue;
        }
        for (int j = 0; j < rec->nresponses; j++) {
            t[j] = !keyset_take(&done, key_triple(rec->prompt, rec->img_path, rec->responses[j]));
            done_before += !t[j];
        }
    }
    keyset_free(&done);
    if (nparts)
        mmrm_log("%s: %d part file%s of an interrupted run hold%s %ld line%s: kept, and merged "
                 "into %s at the end", pd->live, nparts, nparts == 1 ? "" : "s",
                 nparts == 1 ? "s" : "", part_lines, part_lines == 1 ? "" : "s", output);
    if (existing || part_lines)
        mmrm_log("%s holds %ld line%s: %ld of %ld responses are already scored, %ld to go",
                 output, existing + part_lines, existing + part_lines == 1 ? "" : "s",
                 done_before, total, total - done_before);
    hdr[0] = total;
    hdr[1] = (long)ss->n;
    hdr[2] = done_before;
    hdr[3] = parts;
    return fd;
fail:
    keyset_free(&done);
    close(fd);
    return -1;
}

static int score_main(const Comm *cm, int argc, char **argv) {
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
    Device dev;
    if (scorer_cli_device(&cli, cm->local_rank, &dev)) return 2;
    if (scorer_load_model(model, dev, &m, &tok)) return fail();
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
    int rc = 1, fd = -1, pfd = -1;
    char *ppath = NULL;
    PartDirs pd;
    partdirs_init(&pd, output);
    if (scoreset_load(&ss, &input, 1, &ropt)) {
        fail();
        goto out_model;
    }
    long total = 0;
    for (size_t r = 0; r < ss.n; r++) total += ss.recs[r].nresponses;
    unsigned char *todo = xcalloc((size_t)(total ? total : 1), 1);
    long hdr[4] = {0};
    if (cm->rank == 0 && (fd = find_work(&ss, output, &pd, grouped, cm->world, todo, hdr)) < 0) {
        fail();
        goto out_todo;
    }
    comm_broadcast(cm, hdr, sizeof hdr, 0);
    if (hdr[0] != total || hdr[1] != (long)ss.n) {
        mmrm_set_error("rank %d loaded %zu records (%ld responses) from %s but rank 0 loaded %ld "
                       "(%ld): every rank must read the same input", cm->rank, ss.n, total, input,
                       hdr[1], hdr[0]);
        fail();
        goto out_todo;
    }
    comm_broadcast(cm, todo, (size_t)total, 0);
    int parts = (int)hdr[3];
    if (parts) {
        char name[32];
        snprintf(name, sizeof name, "rank-%d", cm->rank);
        ppath = part_path(pd.live, name);
        int existed = access(ppath, F_OK) == 0;
        pfd = open(ppath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (pfd < 0) {
            mmrm_set_error("%s: cannot open for writing (%s)", ppath, strerror(errno));
            fail();
            goto out_todo;
        }
        if (!existed) sync_parent(ppath);
    }

    /* what is left: per record the responses (grouped: all or none) */
    long to_score = 0;
    const char **sel = xmalloc((size_t)(total ? total : 1) * sizeof *sel);
    int *sel_index = xmalloc((size_t)(total ? total : 1) * sizeof *sel_index);
    size_t *sel_start = xmalloc((ss.n + 1) * sizeof *sel_start);
    for (size_t r = 0, i = 0; r < ss.n; r++) {
        sel_start[r] = (size_t)to_score;
        for (int j = 0; j < ss.recs[r].nresponses; j++, i++) {
            if (!todo[i]) continue;
            sel_index[to_score] = j;
            sel[to_score++] = ss.recs[r].responses[j];
        }
    }
    sel_start[ss.n] = (size_t)to_score;
    int B = so_opt.batch_size;
    size_t nchunks;
    size_t *at = plan_chunks(sel_start, ss.n, B, &nchunks);
    Run u = {.ss = &ss, .input = input, .grouped = grouped, .tagged = parts,
             .fd = parts ? pfd : fd, .path = parts ? ppath : output, .sc = sc, .sel = sel,
             .sel_index = sel_index, .sel_start = sel_start, .at = at, .nchunks = nchunks,
             .outs = xmalloc((size_t)(to_score ? to_score : 1) * sizeof(ScoreOut)),
             .groups = xmalloc((size_t)4 * B * sizeof(ScoreGroup)),
             .grec = xmalloc((size_t)4 * B * sizeof(size_t)),
             .msg = xmalloc((size_t)4 * B * sizeof *u.msg)};
    u.c.done_before = hdr[2];
    if (cm->world > 1)
        mmrm_log("%d ranks (%s): %zu chunks of up to 4 forwards, handed out on request",
                 cm->world, comm_kind_name(cm->kind), nchunks);
    Progress prog;
    progress_start(&prog, "responses", cm->rank == 0 ? to_score : 0);
    u.tty = prog.tty;
    u.prog = &prog;
    long *chunks_of = xcalloc((size_t)cm->world, sizeof *chunks_of);
    double t0 = progress_now();
    rc = comm_work_queue(cm, nchunks, score_chunk, chunk_done, &u, chunks_of);
    if (rc == 0 && cm->world > 1 && cm->rank == 0) {
        Buf b = {0};
        char item[48];
        for (int r = 0; r < cm->world; r++) {
            snprintf(item, sizeof item, "%s%ld", r ? ", " : "", chunks_of[r]);
            buf_lit(&b, item);
        }
        buf_put(&b, "", 1);
        mmrm_log("chunks scored by ranks 0..%d: %s", cm->world - 1, b.p);
        free(b.p);
    }
    free(chunks_of);
    rc = rc ? fail() : 0;
    double secs = progress_now() - t0;
    if (cm->rank == 0) progress_end(&prog);
    if (pfd >= 0 && close(pfd) != 0 && rc == 0) {
        mmrm_set_error("%s: close failed (%s)", ppath, strerror(errno));
        rc = fail();
    }
    pfd = -1;
    ScorerStats st = *scorer_stats(sc);
    /* a rank that failed skips the collectives: its exit aborts the job (comm.h); so when the
     * sum completes, every rank has written and synced all its lines */
    if (cm->world > 1 && rc == 0) sum_over_ranks(cm, &u.c, &st);
    if (cm->rank == 0 && parts && rc == 0) {
        long merged;
        if (parts_merge(&pd, output, fd, &merged)) rc = fail();
        u.c.lines_written = merged;
        if (merged) mmrm_log("merged %ld line%s of the part files into %s", merged,
                             merged == 1 ? "" : "s", output);
    }
    if (cm->rank == 0 && fd >= 0) {
        if (close(fd) != 0 && rc == 0) {
            mmrm_set_error("%s: close failed (%s)", output, strerror(errno));
            rc = fail();
        }
        fd = -1;
    }
    if (cm->rank == 0)
        report(&u.c, &ss, input, output, total, so_opt.max_length, &st, secs, cm->world);
    /* the workers wait for the merge, so a merge that fails ends the job with its error */
    if (cm->world > 1 && rc == 0) comm_barrier(cm);
    free(u.buf.p);
    free(u.outs);
    free(u.msg);
    free(u.grec);
    free(u.groups);
    free(at);
    free(sel);
    free(sel_index);
    free(sel_start);
out_todo:
    if (fd >= 0) close(fd);
    if (pfd >= 0) close(pfd);
    free(ppath);
    free(todo);
    scoreset_free(&ss);
out_model:
    partdirs_free(&pd);
    scorer_free(sc);
    tokenizer_free(tok);
    rm_free(&m);
    return rc;
}

int cmd_score(int argc, char **argv) {
    Comm comm;
    comm_init(&comm, &argc, &argv);
    if (comm.rank > 0) mmrm_set_quiet(1); /* rank 0 tells the story; warnings still show */
    int rc = score_main(&comm, argc, argv);
    /* a failing rank skips comm_finalize: its non-zero exit then ends every rank (comm.h) */
    if (rc == 0) comm_finalize(&comm);
    return rc;
}
