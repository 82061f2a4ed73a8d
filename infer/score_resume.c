/* score_resume.c - what earlier runs of `mmrm score` wrote, read back so that a rerun
 * continues them (score_resume.h).
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
 * many. Part files (score_merge.h) are read the same way, their lines behind a tag.
 */
#include "infer/score_resume.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "runtime/error.h"
#include "runtime/fsutil.h"

/* ---- the lines already written, as a multiset of 128-bit keys ---- */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Two independent running hashes (FNV-1a and a multiplicative one); every field goes in
 * with its length first, so field boundaries cannot be confused. */
static void key_feed(ScoreKey *k, const char *s, size_t n) {
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

static ScoreKey key_start(void) {
    return (ScoreKey){0xcbf29ce484222325ULL, 0x2545f4914f6cdd1dULL};
}

static ScoreKey key_finish(ScoreKey k) {
    return (ScoreKey){mix64(k.a), mix64(k.b ^ 0x5851f42d4c957f2dULL)};
}

ScoreKey key_triple(const char *prompt, const char *img_path, const char *response) {
    ScoreKey k = key_start();
    key_feed(&k, prompt, strlen(prompt));
    key_feed(&k, img_path, strlen(img_path));
    key_feed(&k, response, strlen(response));
    return key_finish(k);
}

ScoreKey key_record(const char *prompt, const char *img_path, const char *const *responses,
                    int n) {
    ScoreKey k = key_start();
    key_feed(&k, prompt, strlen(prompt));
    key_feed(&k, img_path, strlen(img_path));
    for (int i = 0; i < n; i++) key_feed(&k, responses[i], strlen(responses[i]));
    return key_finish(k);
}

static size_t keyset_slot(const KeySet *s, ScoreKey k) {
    size_t i = (size_t)k.a & (s->cap - 1);
    while (s->count[i] && (s->keys[i].a != k.a || s->keys[i].b != k.b)) i = (i + 1) & (s->cap - 1);
    return i;
}

static void keyset_add(KeySet *s, ScoreKey k) {
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

int keyset_take(KeySet *s, ScoreKey k) {
    if (!s->cap) return 0;
    size_t i = keyset_slot(s, k);
    if (s->count[i] < 2) return 0;
    s->count[i]--;
    return 1;
}

void keyset_free(KeySet *s) {
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
static int line_key(const cJSON *v, int grouped, ScoreKey *k) {
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

void score_put_tag(StrBuf *b, long line, int j) {
    if (line >= 0) sb_printf(b, "%ld %d ", line, j);
}

const char *score_parse_tag(const char *s, long *line, long *j) {
    char *end;
    if (*s < '0' || *s > '9') return NULL;
    *line = strtol(s, &end, 10);
    if (*end != ' ' || end[1] < '0' || end[1] > '9') return NULL;
    *j = strtol(end + 1, &end, 10);
    return *end == ' ' ? end + 1 : NULL;
}

int score_read_done(const char *path, int grouped, int tagged, KeySet *done, long *lines) {
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
            const char *json = tagged ? score_parse_tag(line, &tag_line, &tag_j) : line;
            const char *end = NULL;
            cJSON *v = json ? cJSON_ParseWithOpts(json, &end, 1) : NULL;
            ScoreKey k;
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

int score_open_locked(const char *output) {
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
    if (!existed) fs_fsync_parent(output);
    return fd;
}
