/* test_jsonl.c - the JSONL line reader on files written by the tests: line endings, blank
 * lines, long lines, a missing final newline, NUL bytes, invalid UTF-8, truncated and trailing
 * garbage, empty and missing files; malformed lines are reported and reading continues. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/jsonl.h"
#include "tests/harness.h"

static char g_dir[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void tmp_begin(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/mmrm_jsonl_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void tmp_end(void) { nftw(g_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS); }

/* Writes n bytes to a file in the test folder; the path is in a static buffer. */
static const char *write_bytes(const char *name, const void *data, size_t n) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(2);
    }
    return path;
}

#define WRITE_LIT(name, lit) write_bytes(name, lit, sizeof(lit) - 1)

/* Reads the whole file: per call of jsonl_next its result, line number and the integer "a"
 * (or -1). Stops after the first 0 or -2. Returns the number of calls. */
typedef struct { int rc, line, a; } Step;
static int read_all(const char *path, Step *steps, int max_steps, size_t max_line) {
    JsonlReader *r = jsonl_open(path);
    if (!CHECK(r, "open %s: %s", path, mmrm_last_error())) return 0;
    if (max_line) jsonl_set_max_line(r, max_line);
    int n = 0;
    while (n < max_steps) {
        cJSON *v;
        int line = -1;
        int rc = jsonl_next(r, &v, &line);
        const cJSON *a = rc == 1 && cJSON_IsObject(v) ? cJSON_GetObjectItem(v, "a") : NULL;
        steps[n++] = (Step){rc, line, a && cJSON_IsNumber(a) ? a->valueint : -1};
        cJSON_Delete(v);
        if (rc == 0 || rc == -2) break;
    }
    jsonl_close(r);
    return n;
}

static void check_steps(const Step *got, int n, const Step *want, int nwant, const char *what) {
    CHECK(n == nwant, "%s: %d calls, want %d", what, n, nwant);
    for (int i = 0; i < n && i < nwant; i++)
        CHECK(got[i].rc == want[i].rc && (want[i].rc == 0 || got[i].line == want[i].line) &&
                  got[i].a == want[i].a,
              "%s: call %d gave rc %d line %d a %d, want rc %d line %d a %d", what, i, got[i].rc,
              got[i].line, got[i].a, want[i].rc, want[i].line, want[i].a);
}

TEST(test_jsonl_crlf_lines_parse_and_blank_lines_keep_the_numbering) {
    tmp_begin();
    const char *p = WRITE_LIT("crlf.jsonl",
                              "{\"a\":1}\r\n\r\n   \n{\"a\":2}\n\t\r\n\n{\"a\":3}\r\n\r\n");
    Step s[16];
    int n = read_all(p, s, 16, 0);
    const Step want[] = {{1, 1, 1}, {1, 4, 2}, {1, 7, 3}, {0, 0, -1}};
    check_steps(s, n, want, 4, "crlf");
    tmp_end();
}

TEST(test_jsonl_last_line_without_final_newline_is_read) {
    tmp_begin();
    const char *p = WRITE_LIT("nonl.jsonl", "{\"a\":1}\n{\"a\":2}");
    Step s[8];
    int n = read_all(p, s, 8, 0);
    const Step want[] = {{1, 1, 1}, {1, 2, 2}, {0, 0, -1}};
    check_steps(s, n, want, 3, "no final newline");
    p = WRITE_LIT("nonl_crlf.jsonl", "{\"a\":5}\r");
    n = read_all(p, s, 8, 0);
    const Step want2[] = {{1, 1, 5}, {0, 0, -1}};
    check_steps(s, n, want2, 2, "final CR without LF");
    tmp_end();
}

TEST(test_jsonl_reads_a_5mb_line_whole_and_the_next_line_after_it) {
    tmp_begin();
    size_t big = 5u << 20;
    size_t n = big + 64;
    char *buf = malloc(n);
    size_t o = (size_t)sprintf(buf, "{\"s\":\"");
    for (size_t i = 0; i < big; i++) buf[o++] = (char)('a' + i % 26);
    o += (size_t)sprintf(buf + o, "\"}\n{\"a\":7}\n");
    const char *p = write_bytes("big.jsonl", buf, o);
    JsonlReader *r = jsonl_open(p);
    cJSON *v;
    int line;
    CHECK(jsonl_next(r, &v, &line) == 1 && line == 1, "the 5 MB line parses");
    const cJSON *s = cJSON_GetObjectItem(v, "s");
    CHECK(s && cJSON_IsString(s) && strlen(s->valuestring) == big &&
              memcmp(s->valuestring, buf + 6, big) == 0,
          "the 5 MB string comes back byte for byte");
    cJSON_Delete(v);
    CHECK(jsonl_next(r, &v, &line) == 1 && line == 2 && cJSON_GetObjectItem(v, "a")->valueint == 7,
          "the line after the long one");
    cJSON_Delete(v);
    CHECK(jsonl_next(r, &v, &line) == 0, "then EOF");
    jsonl_close(r);
    free(buf);
    tmp_end();
}

TEST(test_jsonl_line_over_the_cap_is_malformed_and_reading_continues) {
    tmp_begin();
    char buf[1024];
    size_t o = 0;
    o += (size_t)sprintf(buf + o, "{\"s\":\"");
    for (int i = 0; i < 200; i++) buf[o++] = 'x';
    o += (size_t)sprintf(buf + o, "\"}\n{\"a\":1}\n");
    /* exactly at the cap, with a CRLF ending that does not count */
    o += (size_t)sprintf(buf + o, "{\"a\":2,\"s\":\"");
    size_t start = o - 12;
    while (o - start < 100 - 2) buf[o++] = 'y';
    o += (size_t)sprintf(buf + o, "\"}\r\n");
    const char *p = write_bytes("cap.jsonl", buf, o);
    Step s[8];
    int n = read_all(p, s, 8, 100);
    const Step want[] = {{-1, 1, -1}, {1, 2, 1}, {1, 3, 2}, {0, 0, -1}};
    check_steps(s, n, want, 4, "cap 100");

    JsonlReader *r = jsonl_open(p);
    jsonl_set_max_line(r, 100);
    cJSON *v;
    int line;
    CHECK(jsonl_next(r, &v, &line) == -1, "over the cap");
    char want_msg[512];
    snprintf(want_msg, sizeof want_msg, "%s:1: malformed JSON (line longer than 100 bytes", p);
    CHECK(strncmp(mmrm_last_error(), want_msg, strlen(want_msg)) == 0, "message: %s",
          mmrm_last_error());
    jsonl_close(r);
    tmp_end();
}

TEST(test_jsonl_truncated_last_line_is_malformed_with_file_and_line) {
    tmp_begin();
    const char *p = WRITE_LIT("trunc.jsonl", "{\"a\":1}\n\n{\"a\": 2, \"s\": \"unterminat");
    JsonlReader *r = jsonl_open(p);
    cJSON *v;
    int line;
    CHECK(jsonl_next(r, &v, &line) == 1 && line == 1, "first line");
    cJSON_Delete(v);
    CHECK(jsonl_next(r, &v, &line) == -1 && line == 3 && v == NULL, "truncated line 3");
    char want[512];
    snprintf(want, sizeof want, "%s:3: malformed JSON (", p);
    CHECK(strncmp(mmrm_last_error(), want, strlen(want)) == 0, "message: %s", mmrm_last_error());
    CHECK(jsonl_next(r, &v, &line) == 0, "then EOF");
    jsonl_close(r);
    tmp_end();
}

TEST(test_jsonl_trailing_garbage_and_two_values_on_a_line_are_malformed) {
    tmp_begin();
    const char *p = WRITE_LIT("garbage.jsonl",
                              "{\"a\":1} x\n{\"a\":2}{\"a\":3}\n{\"a\":4}   \t\n[1,2]\n7\n"
                              "{\"a\":5,}\n");
    Step s[16];
    int n = read_all(p, s, 16, 0);
    /* arrays and numbers are JSON values too: the reader returns them, records reject them */
    const Step want[] = {{-1, 1, -1}, {-1, 2, -1}, {1, 3, 4}, {1, 4, -1},
                         {1, 5, -1},  {-1, 6, -1}, {0, 0, -1}};
    check_steps(s, n, want, 7, "garbage");
    tmp_end();
}

TEST(test_jsonl_nul_bytes_and_nul_escapes_are_malformed_not_truncated) {
    tmp_begin();
    const char *p = WRITE_LIT("nul.jsonl",
                              "{\"a\":1}\0garbage\n"
                              "{\"s\":\"x\0y\",\"a\":2}\n"
                              "{\"s\":\"x\\u0000y\",\"a\":3}\n"
                              "\0\n"
                              "{\"s\":\"x\\\\u0000\",\"a\":4}\n");
    Step s[16];
    int n = read_all(p, s, 16, 0);
    const Step want[] = {{-1, 1, -1}, {-1, 2, -1}, {-1, 3, -1}, {-1, 4, -1}, {1, 5, 4},
                         {0, 0, -1}};
    check_steps(s, n, want, 6, "NUL");

    JsonlReader *r = jsonl_open(p);
    cJSON *v;
    int line;
    CHECK(jsonl_next(r, &v, &line) == -1 && strstr(mmrm_last_error(), ":1: malformed JSON (NUL "
                                                   "byte at byte 8"),
          "message: %s", mmrm_last_error());
    jsonl_next(r, &v, &line);
    CHECK(jsonl_next(r, &v, &line) == -1 && strstr(mmrm_last_error(), "\\u0000 escape"),
          "message: %s", mmrm_last_error());
    jsonl_next(r, &v, &line);
    CHECK(jsonl_next(r, &v, &line) == 1, "an escaped backslash before u0000 is plain text");
    const cJSON *str = cJSON_GetObjectItem(v, "s");
    CHECK(str && strcmp(str->valuestring, "x\\u0000") == 0, "decoded: %s",
          str ? str->valuestring : "(none)");
    cJSON_Delete(v);
    jsonl_close(r);
    tmp_end();
}

TEST(test_jsonl_invalid_utf8_is_malformed_and_valid_utf8_is_kept) {
    tmp_begin();
    const char *p = WRITE_LIT("utf8.jsonl",
                              "{\"s\":\"ab\xff\",\"a\":1}\n"         /* never valid */
                              "{\"s\":\"\xc0\xaf\",\"a\":2}\n"       /* overlong '/' */
                              "{\"s\":\"\xed\xa0\x80\",\"a\":3}\n"   /* a UTF-16 surrogate */
                              "{\"s\":\"\xe2\x82\",\"a\":4}\n"       /* cut sequence */
                              "{\"s\":\"\xf4\x90\x80\x80\",\"a\":5}\n" /* above U+10FFFF */
                              "{\"s\":\"\\ud800\",\"a\":6}\n"        /* lone surrogate escape */
                              "{\"s\":\"\xe0\x80\xaf\",\"a\":9}\n"   /* 3-byte overlong '/' */
                              "{\"s\":\"caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80\",\"a\":7}\n"
                              "{\"s\":\"caf\\u00e9 \\u4e2d \\ud83d\\ude00\",\"a\":8}\n");
    Step s[16];
    int n = read_all(p, s, 16, 0);
    const Step want[] = {{-1, 1, -1}, {-1, 2, -1}, {-1, 3, -1}, {-1, 4, -1}, {-1, 5, -1},
                         {-1, 6, -1}, {-1, 7, -1}, {1, 8, 7},   {1, 9, 8},   {0, 0, -1}};
    check_steps(s, n, want, 10, "UTF-8");

    JsonlReader *r = jsonl_open(p);
    cJSON *v;
    int line;
    CHECK(jsonl_next(r, &v, &line) == -1 && strstr(mmrm_last_error(), "invalid UTF-8 at byte 9"),
          "message: %s", mmrm_last_error());
    for (int i = 0; i < 6; i++) jsonl_next(r, &v, &line);
    cJSON *raw, *esc;
    jsonl_next(r, &raw, &line);
    jsonl_next(r, &esc, &line);
    CHECK(raw && esc && strcmp(cJSON_GetObjectItem(raw, "s")->valuestring,
                               cJSON_GetObjectItem(esc, "s")->valuestring) == 0 &&
              strcmp(cJSON_GetObjectItem(raw, "s")->valuestring,
                     "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80") == 0,
          "raw UTF-8 and \\u escapes decode to the same bytes");
    cJSON_Delete(raw);
    cJSON_Delete(esc);
    jsonl_close(r);
    tmp_end();
}

TEST(test_jsonl_byte_order_mark_opening_the_file_is_ignored) {
    tmp_begin();
    const char *p = WRITE_LIT("bom.jsonl", "\xEF\xBB\xBF{\"a\":1}\n{\"a\":2}\n");
    Step s[8];
    int n = read_all(p, s, 8, 0);
    const Step want[] = {{1, 1, 1}, {1, 2, 2}, {0, 0, -1}};
    check_steps(s, n, want, 3, "BOM");
    p = WRITE_LIT("bom_blank.jsonl", "\xEF\xBB\xBF \r\n{\"a\":2}\n");
    n = read_all(p, s, 8, 0);
    const Step want2[] = {{1, 2, 2}, {0, 0, -1}};
    check_steps(s, n, want2, 2, "BOM on a blank first line");
    tmp_end();
}

TEST(test_jsonl_deep_nesting_is_malformed_without_crashing) {
    tmp_begin();
    size_t depth = 100000;
    char *buf = malloc(2 * depth + 16);
    memset(buf, '[', depth);
    memset(buf + depth, ']', depth);
    memcpy(buf + 2 * depth, "\n{\"a\":1}\n", 9);
    const char *p = write_bytes("deep.jsonl", buf, 2 * depth + 9);
    Step s[8];
    int n = read_all(p, s, 8, 0);
    const Step want[] = {{-1, 1, -1}, {1, 2, 1}, {0, 0, -1}};
    check_steps(s, n, want, 3, "deep nesting");
    free(buf);
    tmp_end();
}

TEST(test_jsonl_empty_and_blank_files_are_immediately_at_eof) {
    tmp_begin();
    Step s[4];
    int n = read_all(write_bytes("empty.jsonl", "", 0), s, 4, 0);
    const Step want[] = {{0, 0, -1}};
    check_steps(s, n, want, 1, "empty");
    n = read_all(WRITE_LIT("blank.jsonl", "\n\r\n  \n"), s, 4, 0);
    check_steps(s, n, want, 1, "blank");
    tmp_end();
}

TEST(test_jsonl_open_names_a_missing_file_and_rejects_a_folder) {
    tmp_begin();
    char path[128];
    snprintf(path, sizeof path, "%s/does_not_exist.jsonl", g_dir);
    CHECK(jsonl_open(path) == NULL, "missing file");
    CHECK(strstr(mmrm_last_error(), path) && strstr(mmrm_last_error(), "No such file"),
          "message: %s", mmrm_last_error());
    CHECK(jsonl_open(g_dir) == NULL && strstr(mmrm_last_error(), "directory"), "folder: %s",
          mmrm_last_error());
    tmp_end();
}
