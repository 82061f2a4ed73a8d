/* jsonl.c - the streaming JSONL reader: lines are assembled from fixed-size reads into one
 * growing buffer (no line limit but the cap), checked for NUL bytes, \u0000 escapes and
 * UTF-8 validity, then handed to cJSON with the exact length so trailing bytes are an error. */
#include "runtime/jsonl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/error.h"
#include "runtime/strbuf.h"

#define READ_CHUNK (1 << 16)

struct JsonlReader {
    FILE *f;
    char *path;
    size_t max_line;
    StrBuf line;     /* the current line (it may hold NUL bytes, which are reported) */
    int lineno;
    int eof;
    size_t pos, end; /* unread bytes are chunk[pos, end) */
    char chunk[READ_CHUNK];
};

JsonlReader *jsonl_open(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        mmrm_set_error("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        mmrm_set_error("cannot read %s: it is a directory (expected a JSONL file)", path);
        return NULL;
    }
    JsonlReader *r = xcalloc(1, sizeof *r);
    r->f = f;
    r->path = xstrdup(path);
    r->max_line = JSONL_DEFAULT_MAX_LINE;
    return r;
}

void jsonl_set_max_line(JsonlReader *r, size_t max_bytes) { r->max_line = max_bytes; }

void jsonl_close(JsonlReader *r) {
    if (!r) return;
    fclose(r->f);
    free(r->path);
    sb_free(&r->line);
    free(r);
}

/* Assembles the next line (without its LF) in r->line. Returns 1 for a line, 0 at end of file,
 * -1 for a line over the cap (read through to its end, not kept), -2 for a read error. The cap
 * leaves room for the CR of a CRLF ending, which the caller strips. */
static int read_line(JsonlReader *r) {
    size_t limit = r->max_line + 1;
    int got_bytes = 0, too_long = 0;
    sb_reset(&r->line);
    for (;;) {
        if (r->pos == r->end) {
            if (r->eof) break;
            r->pos = 0;
            r->end = fread(r->chunk, 1, sizeof r->chunk, r->f);
            if (r->end == 0) {
                if (ferror(r->f)) {
                    mmrm_set_error("%s: read error after line %d: %s", r->path, r->lineno,
                                   strerror(errno));
                    return -2;
                }
                r->eof = 1;
                break;
            }
        }
        got_bytes = 1;
        const char *s = r->chunk + r->pos;
        size_t avail = r->end - r->pos;
        const char *nl = memchr(s, '\n', avail);
        size_t take = nl ? (size_t)(nl - s) : avail;
        if (!too_long && r->line.len + take > limit) too_long = 1;
        if (!too_long) sb_append(&r->line, s, take);
        r->pos += take + (nl != NULL);
        if (nl) break;
    }
    if (!got_bytes) return 0;
    r->lineno++;
    return too_long ? -1 : 1;
}

/* Up to 24 bytes from s[at] for a message, non-printable bytes as \xHH. */
static void excerpt(const char *s, size_t n, size_t at, char *out, size_t out_n) {
    size_t o = 0;
    for (size_t i = at; i < n && i < at + 24 && o + 5 < out_n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f) out[o++] = (char)c;
        else o += (size_t)snprintf(out + o, out_n - o, "\\x%02x", c);
    }
    out[o] = '\0';
}

/* Index of the first byte that does not start a well-formed UTF-8 sequence (no overlong forms,
 * no surrogates, nothing above U+10FFFF), or n if the whole text is valid. */
size_t jsonl_utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c == 0xE0) len = 3, lo = 0xA0;
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) len = 3;
        else if (c == 0xED) len = 3, hi = 0x9F;
        else if (c == 0xF0) len = 4, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) len = 4;
        else if (c == 0xF4) len = 4, hi = 0x8F;
        else return i;
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += len;
    }
    return n;
}

/* Index of the first \u0000 escape, or n. Backslashes only occur inside strings in valid JSON,
 * so skipping the character after each backslash keeps escaped backslashes apart. */
size_t jsonl_nul_escape_at(const char *s, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && n - i >= 6 && memcmp(s + i + 2, "0000", 4) == 0) return i;
        i++;
    }
    return n;
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

int jsonl_next(JsonlReader *r, cJSON **value, int *lineno) {
    *value = NULL;
    for (;;) {
        int rc = read_line(r);
        if (rc == 0 || rc == -2) return rc;
        *lineno = r->lineno;
        size_t n = r->line.len;
        if (rc == 1 && n > 0 && r->line.s[n - 1] == '\r') n--;
        if (rc == -1 || n > r->max_line) {
            mmrm_set_error("%s:%d: malformed JSON (line longer than %zu bytes; JSONL holds one "
                           "record per line)", r->path, r->lineno, r->max_line);
            return -1;
        }
        const char *line = r->line.s ? r->line.s : "";
        size_t skip = 0; /* a UTF-8 byte order mark opening the file */
        if (r->lineno == 1 && n >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) skip = 3;
        if (is_blank(line + skip, n - skip)) continue;
        r->line.s[n] = '\0';

        char near[128];
        const char *nul = memchr(line, '\0', n);
        if (nul) {
            mmrm_set_error("%s:%d: malformed JSON (NUL byte at byte %zu of the line)", r->path,
                           r->lineno, (size_t)(nul - line) + 1);
            return -1;
        }
        size_t bad = jsonl_utf8_invalid_at((const unsigned char *)line, n);
        if (bad < n) {
            excerpt(line, n, bad, near, sizeof near);
            mmrm_set_error("%s:%d: malformed JSON (invalid UTF-8 at byte %zu: '%s'; JSONL must "
                           "be UTF-8 text)", r->path, r->lineno, bad + 1, near);
            return -1;
        }
        size_t esc = jsonl_nul_escape_at(line, n);
        if (esc < n) {
            mmrm_set_error("%s:%d: malformed JSON (\\u0000 escape at byte %zu; NUL characters "
                           "in strings are not supported)", r->path, r->lineno, esc + 1);
            return -1;
        }
        const char *end = NULL;
        cJSON *v = cJSON_ParseWithLengthOpts(line + skip, n - skip + 1, &end, 1);
        if (!v) {
            size_t at = end ? (size_t)(end - line) : n;
            if (at >= n) {
                mmrm_set_error("%s:%d: malformed JSON (unexpected end of line at byte %zu; each "
                               "line must hold one complete JSON value)", r->path, r->lineno,
                               n + 1);
            } else {
                excerpt(line, n, at, near, sizeof near);
                mmrm_set_error("%s:%d: malformed JSON (at byte %zu near '%s'; each line must "
                               "hold exactly one JSON value)", r->path, r->lineno, at + 1, near);
            }
            return -1;
        }
        *value = v;
        return 1;
    }
}
