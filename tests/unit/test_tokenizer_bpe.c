/* test_tokenizer_bpe.c - the byte-level BPE tokenizer against HF tokenizers: every line of the
 * oracle corpus (tests/oracle/gen_bpe_fixtures.py: tokenizers 0.19.1 / transformers 4.44.2 on
 * InternVL2-1B's Qwen2 tokenizer) gives the same ids, decodes back to its bytes (in NFC), and
 * needs no more ids than those bytes; tokenizer.json with either merge format; the added
 * tokens and roles; saving; and one clear error per broken tokenizer directory. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

#include "models/tokenizer.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "tests/harness.h"

#define FIX "tests/fixtures/tokenizers/"
#define QWEN2 FIX "qwen2"

/* the next line of buf[*at..n) (without '\n'); NULL at the end */
static const char *next_line(const char *buf, size_t n, size_t *at, size_t *len) {
    if (*at >= n) return NULL;
    const char *s = buf + *at, *e = memchr(s, '\n', n - *at);
    *len = e ? (size_t)(e - s) : n - *at;
    *at += *len + 1;
    return s;
}

/* the ids of one line of an ids file; their count */
static int parse_ids(const char *s, size_t len, int *ids, int cap) {
    int k = 0;
    const char *e = s + len;
    while (s < e && k < cap) {
        char *end;
        ids[k++] = (int)strtol(s, &end, 10);
        s = end;
        while (s < e && *s == ' ') s++;
    }
    return k;
}

/* what decoding the ids of s[0..n) must give: s with each valid UTF-8 run in NFC (HF
 * normalises before splitting) and every invalid byte as itself */
static char *nfc_text(const char *s, size_t n, size_t *out_len) {
    char *out = malloc(4 * n + 16);
    size_t len = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        utf8proc_int32_t cp;
        utf8proc_ssize_t k;
        while (j < n && (k = utf8proc_iterate((const utf8proc_uint8_t *)s + j,
                                               (utf8proc_ssize_t)(n - j), &cp)) > 0)
            j += (size_t)k;
        if (j > i) {
            utf8proc_uint8_t *norm = NULL;
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(j - i), &norm,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            memcpy(out + len, norm, (size_t)r);
            len += (size_t)r;
            free(norm);
        }
        if (j < n) out[len++] = s[j++];
        i = j;
    }
    *out_len = len;
    return out;
}

/* compares tok's ids with the expected ones for text; 1 if equal and decoding gives the
 * text back (in NFC) */
static int check_text(const Tokenizer *tok, const char *text, size_t n, const char *want_line,
                      size_t want_len, const char *where, int line, int *reported) {
    int cap = 3 * (int)n + 1; /* NFC grows text at most 3x */
    int *want = malloc((size_t)cap * sizeof *want), *got = malloc((size_t)cap * sizeof *got);
    int n_want = parse_ids(want_line, want_len, want, cap);
    int n_got = tokenizer_encode(tok, text, n, got, cap);
    int same = n_got == n_want && memcmp(got, want, (size_t)n_got * sizeof *got) == 0;
    if (!same && (*reported)++ < 5) {
        int i = 0;
        while (i < n_got && i < n_want && got[i] == want[i]) i++;
        CHECK(0, "%s line %d (%zu bytes \"%.40s\"): %d ids, HF %d; first difference at %d: "
              "%d vs HF %d", where, line, n, text, n_got, n_want, i, i < n_got ? got[i] : -1,
              i < n_want ? want[i] : -1);
    }
    int ok = same;
    if (n_got >= 0 && n_got <= cap) {
        size_t back_len = 0, nfc_len;
        char *back = tokenizer_decode(tok, got, n_got, &back_len);
        char *nfc = nfc_text(text, n, &nfc_len);
        /* and the contract: never more ids than bytes of the text in NFC */
        int round = back && back_len == nfc_len && memcmp(back, nfc, nfc_len) == 0 &&
                    (size_t)n_got <= nfc_len;
        if (!round && (*reported)++ < 5)
            CHECK(0, "%s line %d: decoding gave %zu bytes back for %zu (%zu in NFC)", where, line,
                  back_len, n, nfc_len);
        ok &= round;
        free(back);
        free(nfc);
    }
    free(want);
    free(got);
    return ok;
}

/* every line of corpus (the first max_lines; 0: all) against ids_file */
static void check_corpus(const Tokenizer *tok, const char *ids_file, int max_lines) {
    size_t nc, ni;
    char *corpus = fs_read_file(FIX "bpe_corpus.txt", &nc), *ids = fs_read_file(ids_file, &ni);
    if (!CHECK(corpus && ids, "fixtures: %s", mmrm_last_error())) return;
    size_t ac = 0, ai = 0, lc, li;
    const char *c, *i;
    int line = 0, bad = 0, reported = 0;
    long bytes = 0;
    while ((c = next_line(corpus, nc, &ac, &lc)) && (i = next_line(ids, ni, &ai, &li))) {
        line++;
        bad += !check_text(tok, c, lc, i, li, ids_file, line, &reported);
        bytes += (long)lc;
        if (line == max_lines) break;
    }
    CHECK(bad == 0, "%s: %d of %d lines differ from HF or do not round-trip", ids_file, bad, line);
    CHECK(line >= (max_lines ? max_lines : 20000), "%s: only %d lines", ids_file, line);
    printf("    %s: %d lines, %ld bytes, %d mismatches\n", ids_file, line, bytes, bad);
    free(corpus);
    free(ids);
}

TEST(test_bpe_qwen2_ids_equal_hf_on_every_corpus_line_and_round_trip) {
    Tokenizer *tok = tokenizer_load(QWEN2);
    if (!CHECK(tok, "load: %s", mmrm_last_error())) return;
    CHECK(tok->kind == TOKENIZER_BPE, "kind %d", (int)tok->kind);
    check_corpus(tok, FIX "bpe_ids.txt", 0);

    /* texts with newlines, one JSON string per line */
    size_t nm, ni, am = 0, ai = 0, lm, li;
    char *multi = fs_read_file(FIX "bpe_multi.jsonl", &nm), *ids = fs_read_file(FIX "bpe_multi_ids.txt", &ni);
    const char *m, *i;
    int line = 0, bad = 0, reported = 0;
    while (multi && ids && (m = next_line(multi, nm, &am, &lm)) && (i = next_line(ids, ni, &ai, &li))) {
        line++;
        cJSON *s = cJSON_ParseWithLength(m, lm);
        if (!CHECK(cJSON_IsString(s), "bpe_multi.jsonl:%d is not a JSON string", line)) break;
        bad += !check_text(tok, s->valuestring, strlen(s->valuestring), i, li, "bpe_multi", line,
                           &reported);
        cJSON_Delete(s);
    }
    CHECK(line >= 800 && bad == 0, "bpe_multi: %d of %d texts differ", bad, line);
    free(multi);
    free(ids);
    tokenizer_free(tok);
}

TEST(test_bpe_tokenizer_json_with_string_or_pair_merges_equals_hf) {
    static const char *const dirs[] = {FIX "tiny_json", FIX "tiny_json_pairs"};
    for (int d = 0; d < 2; d++) {
        Tokenizer *tok = tokenizer_load(dirs[d]);
        if (!CHECK(tok, "load %s: %s", dirs[d], mmrm_last_error())) continue;
        CHECK(tok->n_special == 12 && tokenizer_special_id(tok, "</box>") == tok->vocab_size - 1,
              "%s: %d added tokens, </box> %d of %d", dirs[d], tok->n_special,
              tokenizer_special_id(tok, "</box>"), tok->vocab_size);
        check_corpus(tok, FIX "tiny_ids.txt", 2000);
        tokenizer_free(tok);
    }
}

TEST(test_bpe_added_tokens_and_roles_come_from_the_config_files) {
    Tokenizer *tok = tokenizer_load(QWEN2);
    if (!CHECK(tok, "load: %s", mmrm_last_error())) return;
    CHECK(tok->vocab_size == 151655 && tok->n_special == 12, "vocab_size %d, %d added tokens",
          tok->vocab_size, tok->n_special);
    CHECK(tok->bos_id == -1 && !tok->add_bos && tok->eos_id == 151645 && tok->pad_id == 151643,
          "bos %d add_bos %d eos %d pad %d", tok->bos_id, tok->add_bos, tok->eos_id, tok->pad_id);
    CHECK(tokenizer_special_id(tok, "<img>") == 151646 &&
              tokenizer_special_id(tok, "<IMG_CONTEXT>") == 151648 &&
              tokenizer_special_id(tok, "</box>") == 151654,
          "InternVL2's image tokens");
    /* the encode contract: like snprintf, and never more ids than bytes */
    const char *text = "<|im_start|>user\n<img><IMG_CONTEXT></img>Hello, 世界!<|im_end|>";
    int ids[64], few[3];
    int n = tokenizer_encode(tok, text, strlen(text), ids, 64);
    int again = tokenizer_encode(tok, text, strlen(text), few, 3);
    CHECK(n > 3 && n <= (int)strlen(text) && again == n && memcmp(ids, few, sizeof few) == 0,
          "%d ids, %d with cap 3", n, again);
    CHECK(ids[0] == 151644 && ids[3] == 151646 && ids[4] == 151648 && ids[n - 1] == 151645,
          "added tokens split out: %d %d %d %d", ids[0], ids[3], ids[4], ids[n - 1]);
    int bad_id = 151655;
    size_t len;
    CHECK(!tokenizer_decode(tok, &bad_id, 1, &len) && strstr(mmrm_last_error(), "151655"),
          "an id past the vocabulary is an error: %s", mmrm_last_error());
    tokenizer_free(tok);
}

/* ---- broken directories ---- */

static void write_file(const char *dir, const char *name, const char *data, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

/* a vocab.json of the 256 byte symbols (GPT-2's mapping) plus "ab" and "abc" */
static char *byte_vocab_json(void) {
    char *out = malloc(8192), *p = out;
    int extra = 0;
    p += sprintf(p, "{");
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)extra++;
        char u[4];
        int k = cp < 0x80 ? (u[0] = (char)cp, 1)
                          : (u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), 2);
        if (cp == '"' || cp == '\\') p += sprintf(p, "\"\\%c\": %d,", (char)cp, b);
        else p += sprintf(p, "\"%.*s\": %d,", k, u, b);
    }
    sprintf(p, "\"ab\": 256, \"abc\": 257}");
    return out;
}

static char *temp_dir(void) {
    char tmpl[] = "/tmp/mmrm_test_bpe_XXXXXX";
    return strdup(mkdtemp(tmpl));
}

/* tokenizer_load(dir) fails with an error that contains every one of the needles */
static void expect_error(const char *dir, const char *case_name, const char *needle1,
                         const char *needle2) {
    Tokenizer *tok = tokenizer_load(dir);
    const char *e = mmrm_last_error();
    CHECK(!tok && strstr(e, needle1) && strstr(e, needle2), "%s: %s", case_name,
          tok ? "loaded" : e);
    tokenizer_free(tok);
}

TEST(test_bpe_broken_tokenizer_directories_give_one_clear_error) {
    char *dir = temp_dir();
    char *vocab = byte_vocab_json();
    const char merges[] = "#version: 0.2\na b\nab c\n";

    expect_error(dir, "no tokenizer files", "mmrm_tokenizer.json", "vocab.json + merges.txt");

    write_file(dir, "merges.txt", merges, strlen(merges));
    expect_error(dir, "no vocab.json", "vocab.json", "No such file");

    write_file(dir, "vocab.json", vocab, strlen(vocab) / 2);
    expect_error(dir, "truncated vocab.json", "vocab.json:1: malformed JSON", "truncated");

    write_file(dir, "vocab.json", vocab, strlen(vocab));
    Tokenizer *tok = tokenizer_load(dir);
    if (CHECK(tok, "a valid small tokenizer: %s", mmrm_last_error())) {
        int ids[8];
        int n = tokenizer_encode(tok, "abc abd", 7, ids, 8);
        CHECK(n == 4 && ids[0] == 257 && ids[2] == 256, "\"abc abd\": %d ids (%d %d %d %d)", n,
              ids[0], ids[1], ids[2], ids[3]);
        tokenizer_free(tok);
    }

    const char unknown[] = "#version: 0.2\na b\nab zz\n";
    write_file(dir, "merges.txt", unknown, strlen(unknown));
    expect_error(dir, "merge with an unknown token", "merges.txt:3", "token \"zz\" is not in the vocabulary");

    const char not_merge[] = "#version: 0.2\na b c\n";
    write_file(dir, "merges.txt", not_merge, strlen(not_merge));
    expect_error(dir, "malformed merge line", "merges.txt:2", "not a merge");

    char path[512];
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    remove(path);
    expect_error(dir, "no merges.txt", "merges.txt", "vocab.json needs");

    snprintf(path, sizeof path, "%s/vocab.json", dir);
    remove(path);
    const char wordpiece[] = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}";
    write_file(dir, "tokenizer.json", wordpiece, strlen(wordpiece));
    expect_error(dir, "tokenizer.json of another model", "tokenizer.json", "\"BPE\"");
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    remove(path);

    rmdir(dir);
    free(dir);
    free(vocab);
}

TEST(test_bpe_tokenizer_saves_as_copies_of_its_hf_files) {
    Tokenizer *tok = tokenizer_load(FIX "tiny_json");
    if (!CHECK(tok, "load: %s", mmrm_last_error())) return;
    char *dir = temp_dir();
    CHECK(tokenizer_save(tok, dir) == 0, "save: %s", mmrm_last_error());
    Tokenizer *back = tokenizer_load(dir);
    if (CHECK(back, "reload: %s", mmrm_last_error())) {
        const char *text = "Hello <|im_end|> wörld  123\n";
        int a[64], b[64];
        int na = tokenizer_encode(tok, text, strlen(text), a, 64);
        int nb = tokenizer_encode(back, text, strlen(text), b, 64);
        CHECK(na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0, "reloaded ids differ");
        CHECK(back->vocab_size == tok->vocab_size, "vocab_size %d vs %d", back->vocab_size,
              tok->vocab_size);
    }
    tokenizer_free(back);
    tokenizer_free(tok);
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    remove(path);
    rmdir(dir);
    free(dir);
}

TEST(test_bpe_encoding_from_two_threads_equals_serial_encoding) {
    /* the piece cache is shared: a thread that finds it busy merges without it */
    Tokenizer *tok = tokenizer_load(FIX "tiny_json");
    size_t n;
    char *corpus = fs_read_file(FIX "bpe_corpus.txt", &n);
    if (!CHECK(tok && corpus, "load: %s", mmrm_last_error())) return;
    enum { LINES = 4000 };
    const char *line[LINES];
    size_t len[LINES], at = 0;
    int k = 0;
    while (k < LINES && (line[k] = next_line(corpus, n, &at, &len[k]))) k++;
    long serial = 0, parallel = 0;
    int buf[1 << 12];
    for (int i = 0; i < k; i++) {
        int c = tokenizer_encode(tok, line[i], len[i], buf, 1 << 12);
        for (int j = 0; j < c && j < (1 << 12); j++) serial += (long)buf[j] * (j + 1);
    }
#pragma omp parallel for num_threads(2) reduction(+ : parallel) schedule(dynamic, 16)
    for (int i = 0; i < k; i++) {
        int local[1 << 12];
        int c = tokenizer_encode(tok, line[i], len[i], local, 1 << 12);
        for (int j = 0; j < c && j < (1 << 12); j++) parallel += (long)local[j] * (j + 1);
    }
    CHECK(serial == parallel, "checksum of %d lines: serial %ld, two threads %ld", k, serial,
          parallel);
    free(corpus);
    tokenizer_free(tok);
}
