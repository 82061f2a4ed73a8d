/* serve_request.c - `mmrm serve`'s requests: a POST /score body checked and read into a Job
 * (records, the groups that go to the scorer, images resolved under --image-root or inline
 * base64 images written to the server's private folder), and each record's answer as JSON.
 * Runs in the connection's thread; the queue and HTTP are serve.c's. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "infer/serve.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/jsonl.h"
#include "runtime/strbuf.h"

void job_free(Job *j) {
    if (!j) return;
    for (int t = 0; t < j->ntmp; t++) unlink(j->tmp_files[t]), free(j->tmp_files[t]);
    for (int r = 0; r < j->nrec; r++) free(j->rec_error[r]);
    for (int g = 0; g < j->ngroups; g++) {
        free((void *)j->groups[g].image);
        free((void *)j->groups[g].responses);
    }
    free(j->tmp_files);
    free(j->rec_error);
    free(j->rec_n);
    free(j->group_of);
    free(j->groups);
    free(j->length);
    free(j->first);
    free(j->shown);
    free(j->outs);
    free(j->msg);
    free(j);
}

Reply reply_error(unsigned code, const char *fmt, ...) {
    char m[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", m);
    Reply r = {code, cJSON_PrintUnformatted(o)};
    cJSON_Delete(o);
    return r;
}

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Standard or URL-safe base64, padding optional, no whitespace inside. The bytes (malloc'd,
 * *n of them), or NULL at the first bad character (its index in *n). */
static unsigned char *b64_decode(const char *s, size_t len, size_t *n) {
    while (len && s[len - 1] == '=') len--;
    unsigned char *out = xmalloc(len / 4 * 3 + 3);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            free(out);
            *n = i;
            return NULL;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (len % 4 == 1) { /* 6 bits cannot end a byte */
        free(out);
        *n = len - 1;
        return NULL;
    }
    *n = o;
    return out;
}

/* The image of record `where`: a path inside the root or an inline file, malloc'd into *path.
 * 0; 1 with *rec_err set (the record fails, the request goes on); or -1 with *reply set. */
static int resolve_image(Server *s, Job *j, const cJSON *rec, const char *where, char **path,
                         char **rec_err, Reply *reply) {
    const cJSON *ip = cJSON_GetObjectItemCaseSensitive(rec, "img_path");
    const cJSON *ib = cJSON_GetObjectItemCaseSensitive(rec, "image_base64");
    if (ip && ib) {
        *reply = reply_error(400, "%s: give img_path or image_base64, not both", where);
        return -1;
    }
    if (!ip && !ib) {
        *reply = reply_error(400, "%s: field \"img_path\" (or \"image_base64\") is missing",
                             where);
        return -1;
    }
    const cJSON *f = ip ? ip : ib;
    if (!cJSON_IsString(f)) {
        *reply = reply_error(400, "%s.%s: expected a string", where,
                             ip ? "img_path" : "image_base64");
        return -1;
    }
    const char *v = f->valuestring;
    if (ib) {
        size_t n;
        unsigned char *bytes = b64_decode(v, strlen(v), &n);
        if (!bytes) {
            *reply = reply_error(400, "%s.image_base64: not base64 (character %zu)", where, n);
            return -1;
        }
        char name[PATH_MAX];
        pthread_mutex_lock(&s->mu);
        unsigned long seq = s->tmp_seq++;
        pthread_mutex_unlock(&s->mu);
        snprintf(name, sizeof name, "%s/img-%lu", s->tmp_dir, seq);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        int bad = fd < 0;
        if (!bad) {
            j->tmp_files[j->ntmp++] = xstrdup(name);
            bad = fs_write_fd(fd, bytes, n, name) != 0;
            bad |= close(fd) != 0;
        }
        free(bytes);
        if (bad) {
            *reply = reply_error(500, "writing the inline image of %s to %s failed (%s)", where,
                                 name, strerror(errno));
            return -1;
        }
        *path = xstrdup(name);
        return 0;
    }
    if (!s->root) {
        *reply = reply_error(403, "%s.img_path: this server has no --image-root; send the image "
                             "inline as image_base64", where);
        return -1;
    }
    if (v[0] == '/') {
        *reply = reply_error(403, "%s.img_path \"%s\": absolute paths are refused (give a path "
                             "relative to the image root)", where, v);
        return -1;
    }
    char joined[PATH_MAX], real[PATH_MAX];
    if (!fs_join(joined, sizeof joined, s->root, v)) {
        *reply = reply_error(400, "%s.img_path: too long", where);
        return -1;
    }
    if (!realpath(joined, real)) {
        int e = errno;
        /* a path that does not exist cannot be resolved: refuse one that climbs out of the
         * root by its text, else it is the record's missing image */
        for (const char *p = v; (p = strstr(p, "..")); p += 2)
            if ((p == v || p[-1] == '/') && (p[2] == '/' || p[2] == '\0')) {
                *reply = reply_error(403, "%s.img_path \"%s\": outside the image root", where, v);
                return -1;
            }
        char m[PATH_MAX + 64];
        snprintf(m, sizeof m, "%s: image not found (%s)", v, strerror(e));
        *rec_err = xstrdup(m);
        return 1;
    }
    size_t rl = strlen(s->root);
    if (strncmp(real, s->root, rl) != 0 || (real[rl] != '/' && !(rl == 1 && s->root[0] == '/'))) {
        *reply = reply_error(403, "%s.img_path \"%s\": resolves outside the image root", where, v);
        return -1;
    }
    *path = xstrdup(real);
    return 0;
}

/* msg (malloc'd) with the server's path of an image replaced by the client's name for it:
 * answers do not tell where the server keeps files */
static char *client_message(const char *msg, const char *path, const char *shown) {
    StrBuf b = {0};
    const char *at = path ? strstr(msg, path) : NULL;
    if (!at) return xstrdup(msg);
    sb_append(&b, msg, (size_t)(at - msg));
    sb_puts(&b, shown);
    sb_puts(&b, at + strlen(path));
    return sb_take(&b);
}

/* Reads one record into job slot r: 0, 1 (the record fails: rec_error set), -1 (*reply). */
static int read_record(Server *s, Job *j, int r, const cJSON *rec, const char *where,
                       Reply *reply) {
    if (!cJSON_IsObject(rec)) {
        *reply = reply_error(400, "%s: expected an object {\"prompt\", \"img_path\", "
                             "\"responses\"}", where);
        return -1;
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(rec, "prompt");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(rec, "responses");
    if (!p) {
        *reply = reply_error(400, "%s: field \"prompt\" is missing", where);
        return -1;
    }
    if (!cJSON_IsString(p)) {
        *reply = reply_error(400, "%s.prompt: expected a string", where);
        return -1;
    }
    if (!rs) {
        *reply = reply_error(400, "%s: field \"responses\" is missing", where);
        return -1;
    }
    int n = cJSON_IsArray(rs) ? cJSON_GetArraySize(rs) : 0;
    if (n == 0) {
        *reply = reply_error(400, "%s.responses: expected a non-empty array of strings", where);
        return -1;
    }
    const char **resp = xmalloc((size_t)n * sizeof *resp);
    int k = 0;
    for (const cJSON *x = rs->child; x; x = x->next, k++) {
        if (!cJSON_IsString(x)) {
            free(resp);
            *reply = reply_error(400, "%s.responses[%d]: expected a string", where, k);
            return -1;
        }
        resp[k] = x->valuestring;
    }
    j->rec_n[r] = n;
    char *path = NULL, *err = NULL;
    int blank = scorer_options(s->sc)->blank; /* no image is read */
    int rc = blank ? 0 : resolve_image(s, j, rec, where, &path, &err, reply);
    long tiles = 1;
    const cJSON *ip = cJSON_GetObjectItemCaseSensitive(rec, "img_path");
    const char *shown = ip && cJSON_IsString(ip) ? ip->valuestring : "image_base64";
    if (rc == 0 && !blank) {
        int w = 0, h = 0;
        if (image_info(path, &w, &h) != 0) {
            err = client_message(mmrm_last_error(), path, shown);
            rc = 1;
        } else if ((long)w * h > SERVE_MAX_PIXELS) {
            char m[256];
            snprintf(m, sizeof m, "image of %dx%d pixels: more than the %ld this server decodes",
                     w, h, SERVE_MAX_PIXELS);
            err = xstrdup(m);
            rc = 1;
        } else {
            tiles = image_num_tiles(w, h, &scorer_options(s->sc)->image);
        }
        if (rc) free(path);
    }
    if (rc != 0) {
        free(resp);
        j->rec_error[r] = err;
        return rc;
    }
    /* bytes stand in for tokens: only the order matters, and tiles dominate it */
    size_t longest = 0;
    for (k = 0; k < n; k++)
        if (strlen(resp[k]) > longest) longest = strlen(resp[k]);
    j->length[j->ngroups] = tiles << 32 | (long)(strlen(p->valuestring) + longest);
    j->first[j->ngroups] = j->nresp;
    j->shown[j->ngroups] = shown;
    j->group_of[r] = j->ngroups;
    j->groups[j->ngroups++] = (ScoreGroup){p->valuestring, path, resp, n};
    j->nresp += n;
    return 0;
}

/* The body as a job (*job; its strings point into *doc), or a reply. */
int parse_request(Server *s, const char *body, size_t len, cJSON **doc, Job **job,
                         Reply *reply) {
    if (len == 0) {
        *reply = reply_error(400, "empty body: expected JSON {\"prompt\", \"img_path\", "
                             "\"responses\"} or {\"records\": [...]}");
        return -1;
    }
    size_t bad = jsonl_utf8_invalid_at((const unsigned char *)body, len);
    if (bad < len) {
        *reply = reply_error(400, "malformed JSON: invalid UTF-8 at byte %zu", bad);
        return -1;
    }
    bad = jsonl_nul_escape_at(body, len);
    if (bad < len) {
        *reply = reply_error(400, "malformed JSON: \\u0000 escape at byte %zu (NUL characters "
                             "are not accepted)", bad);
        return -1;
    }
    const char *end = NULL;
    *doc = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (*doc && end) {
        while (end < body + len && strchr(" \t\r\n", *end)) end++;
        if (end < body + len) {
            *reply = reply_error(400, "malformed JSON: more after the value at byte %zu",
                                 (size_t)(end - body));
            return -1;
        }
    }
    if (!*doc) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= body && at <= body + len ? (size_t)(at - body) : 0;
        *reply = reply_error(400, "malformed JSON near byte %zu", off);
        return -1;
    }
    if (!cJSON_IsObject(*doc)) {
        *reply = reply_error(400, "expected a JSON object {\"prompt\", \"img_path\", "
                             "\"responses\"} or {\"records\": [...]}");
        return -1;
    }
    const cJSON *recs = cJSON_GetObjectItemCaseSensitive(*doc, "records");
    int single = recs == NULL;
    if (!single && (!cJSON_IsArray(recs) || cJSON_GetArraySize(recs) == 0)) {
        *reply = reply_error(400, "records: expected a non-empty array of records");
        return -1;
    }
    int n = single ? 1 : cJSON_GetArraySize(recs);
    Job *j = xcalloc(1, sizeof *j);
    *job = j;
    j->single = single;
    j->nrec = n;
    j->rec_n = xcalloc((size_t)n, sizeof *j->rec_n);
    j->rec_error = xcalloc((size_t)n, sizeof *j->rec_error);
    j->group_of = xmalloc((size_t)n * sizeof *j->group_of);
    j->groups = xmalloc((size_t)n * sizeof *j->groups);
    j->length = xmalloc((size_t)n * sizeof *j->length);
    j->first = xmalloc((size_t)n * sizeof *j->first);
    j->shown = xmalloc((size_t)n * sizeof *j->shown);
    j->tmp_files = xmalloc((size_t)n * sizeof *j->tmp_files);
    const cJSON *rec = single ? *doc : recs->child;
    for (int r = 0; r < n; r++, rec = rec->next) {
        char where[48] = "body";
        if (!single) snprintf(where, sizeof where, "records[%d]", r);
        j->group_of[r] = -1;
        if (read_record(s, j, r, rec, where, reply) < 0) return -1;
    }
    j->outs = xmalloc((size_t)(j->nresp ? j->nresp : 1) * sizeof *j->outs);
    j->msg = xcalloc((size_t)(j->ngroups ? j->ngroups : 1), sizeof *j->msg);
    return 0;
}

/* one record's answer: scores (null where not scored), and an error when one failed */
cJSON *record_result(const Job *j, int r) {
    cJSON *o = cJSON_CreateObject();
    char *own = NULL;
    cJSON *sc = cJSON_AddArrayToObject(o, "scores");
    int g = j->group_of[r];
    const char *err = j->rec_error[r];
    for (int k = 0; k < j->rec_n[r]; k++) {
        const ScoreOut *x = g >= 0 ? &j->outs[j->first[g] + k] : NULL;
        if (x && x->status == SCORE_OK && isfinite(x->score))
            cJSON_AddItemToArray(sc, cJSON_CreateNumber((double)x->score));
        else
            cJSON_AddItemToArray(sc, cJSON_CreateNull());
        if (x && x->status == SCORE_OK && !isfinite(x->score) && !err)
            err = "a score is not finite (the model's weights may be broken)";
    }
    if (g >= 0 && j->msg[g][0])
        err = own = client_message(j->msg[g], j->groups[g].image, j->shown[g]);
    if (err) cJSON_AddStringToObject(o, "error", err);
    free(own);
    return o;
}
