/* test_tokenizer_spm.c - the SentencePiece BPE kind against sentencepiece 0.2.0 itself: every
 * line of tests/fixtures/tokenizers/spm/corpus.jsonl and bytes.txt encodes to the reference
 * ids of three models (tests/oracle/gen_spm_fixtures.py), decoding round-trips, the
 * dummy prefix may need more ids than bytes (and the chat template sizes for it), and a
 * missing, truncated or corrupt tokenizer.model or an unsupported model gives one error
 * naming the file and what is wrong. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "models/template.h"
#include "models/tokenizer.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "tests/harness.h"

#define SPM_DIR "tests/fixtures/tokenizers/spm/"

static const char *const MODELS[] = {"llama", "user", "noprefix"};

static void remove_dir(char *dir);

typedef struct {
    char *text;
    size_t len;
} Line;

/* corpus.jsonl: one JSON string per line */
static Line *read_corpus(int *n_out) {
    size_t len;
    char *data = fs_read_file(SPM_DIR "corpus.jsonl", &len);
    if (!CHECK(data, "%s (run from the repository root)", mmrm_last_error())) return NULL;
    int n = 0, cap = 1024;
    Line *lines = malloc((size_t)cap * sizeof *lines);
    for (char *p = data, *nl; p < data + len; p = nl + 1) {
        nl = strchr(p, '\n');
        *nl = '\0';
        cJSON *j = cJSON_Parse(p);
        CHECK(cJSON_IsString(j), "corpus line %d is not a JSON string", n + 1);
        if (n == cap) lines = realloc(lines, (size_t)(cap *= 2) * sizeof *lines);
        lines[n].text = strdup(j->valuestring);
        lines[n].len = strlen(j->valuestring);
        n++;
        cJSON_Delete(j);
    }
    free(data);
    *n_out = n;
    return lines;
}

/* bytes.txt: one hex string per line */
static Line *read_bytes(int *n_out) {
    size_t len;
    char *data = fs_read_file(SPM_DIR "bytes.txt", &len);
    if (!CHECK(data, "%s", mmrm_last_error())) return NULL;
    int n = 0;
    for (size_t i = 0; i < len; i++) n += data[i] == '\n';
    Line *lines = malloc((size_t)n * sizeof *lines);
    char *p = data;
    for (int k = 0; k < n; k++) {
        char *nl = strchr(p, '\n');
        size_t h = (size_t)(nl - p);
        lines[k].text = malloc(h / 2 + 1);
        lines[k].len = h / 2;
        for (size_t i = 0; i < h / 2; i++) {
            unsigned v;
            sscanf(p + 2 * i, "%2x", &v);
            lines[k].text[i] = (char)v;
        }
        p = nl + 1;
    }
    free(data);
    *n_out = n;
    return lines;
}

static void free_lines(Line *lines, int n) {
    for (int i = 0; i < n; i++) free(lines[i].text);
    free(lines);
}

typedef struct {
    int *ids;   /* all lines' ids */
    int *start; /* [n + 1] line k is ids[start[k]..start[k+1]) */
    int n;
} IdLines;

static IdLines read_ids(const char *path) {
    IdLines r = {0};
    size_t len;
    char *data = fs_read_file(path, &len);
    if (!CHECK(data, "%s", mmrm_last_error())) return r;
    int cap = 1 << 16, lcap = 1024, n_ids = 0;
    r.ids = malloc((size_t)cap * sizeof *r.ids);
    r.start = malloc((size_t)lcap * sizeof *r.start);
    r.start[0] = 0;
    for (char *p = data; p < data + len;) {
        if (*p == '\n') {
            if (r.n + 2 > lcap) r.start = realloc(r.start, (size_t)(lcap *= 2) * sizeof *r.start);
            r.start[++r.n] = n_ids;
            p++;
            continue;
        }
        if (*p == ' ') {
            p++;
            continue;
        }
        if (n_ids == cap) r.ids = realloc(r.ids, (size_t)(cap *= 2) * sizeof *r.ids);
        r.ids[n_ids++] = (int)strtol(p, &p, 10);
    }
    free(data);
    return r;
}

static Tokenizer *load_model(const char *name) {
    char dir[256];
    snprintf(dir, sizeof dir, SPM_DIR "%s", name);
    Tokenizer *tok = tokenizer_load(dir);
    CHECK(tok && tok->kind == TOKENIZER_SPM, "%s: %s", dir,
          tok ? "not sentencepiece" : mmrm_last_error());
    return tok;
}

static void print_ids(const char *what, const int *ids, int n) {
    fprintf(stderr, "    %s:", what);
    for (int i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* encodes every line and counts those that differ from ref (printing the first few) */
static int count_mismatches(const Tokenizer *tok, const char *name, const Line *lines, int n,
                            IdLines ref) {
    int bad = 0, cap = 1 << 16;
    int *ids = malloc((size_t)cap * sizeof *ids);
    for (int k = 0; k < n && k < ref.n; k++) {
        int m = tokenizer_encode(tok, lines[k].text, lines[k].len, ids, cap);
        const int *want = ref.ids + ref.start[k];
        int n_want = ref.start[k + 1] - ref.start[k];
        if (m == n_want && !memcmp(ids, want, (size_t)m * sizeof *ids)) continue;
        if (bad++ < 3) {
            fprintf(stderr, "  %s line %d (%zu bytes): \"%.80s\"\n", name, k + 1, lines[k].len,
                    lines[k].text);
            print_ids("mmrm        ", ids, m < cap ? m : cap);
            print_ids("sentencepiece", want, n_want);
        }
    }
    free(ids);
    return bad;
}

TEST(test_spm_encode_matches_sentencepiece_on_every_corpus_line) {
    int n = 0, nb = 0;
    Line *lines = read_corpus(&n), *blines = read_bytes(&nb);
    CHECK(n >= 20000 && nb > 0, "corpus %d lines, bytes %d lines", n, nb);
    for (int mi = 0; mi < 3 && lines && blines; mi++) {
        Tokenizer *tok = load_model(MODELS[mi]);
        if (!tok) continue;
        char path[256];
        snprintf(path, sizeof path, SPM_DIR "%s/ids.txt", MODELS[mi]);
        IdLines ref = read_ids(path);
        CHECK(ref.n == n, "%s: %d lines of ids for %d lines", path, ref.n, n);
        int bad = count_mismatches(tok, MODELS[mi], lines, n, ref);
        CHECK(bad == 0, "%s: %d of %d corpus lines differ from sentencepiece", MODELS[mi], bad, n);
        free(ref.ids);
        free(ref.start);
        snprintf(path, sizeof path, SPM_DIR "%s/ids_bytes.txt", MODELS[mi]);
        ref = read_ids(path);
        CHECK(ref.n == nb, "%s: %d lines of ids for %d lines", path, ref.n, nb);
        bad = count_mismatches(tok, MODELS[mi], blines, nb, ref);
        CHECK(bad == 0, "%s: %d of %d byte lines (NUL, invalid UTF-8) differ", MODELS[mi], bad, nb);
        free(ref.ids);
        free(ref.start);
        tokenizer_free(tok);
    }
    if (lines) free_lines(lines, n);
    if (blines) free_lines(blines, nb);
}

/* Every corpus line without a literal U+2581 (decoding makes every "▁" a space) comes back
 * exactly, added tokens included (each run between them is decoded alone, dropping the "▁"
 * its encoding put in front); invalid UTF-8 comes back with each invalid byte as U+FFFD. */
TEST(test_spm_decode_round_trips_valid_utf8_and_replaces_invalid_bytes) {
    int n = 0;
    Line *lines = read_corpus(&n);
    for (int mi = 0; mi < 3 && lines; mi++) {
        Tokenizer *tok = load_model(MODELS[mi]);
        if (!tok) continue;
        int bad = 0, checked = 0, cap = 1 << 16;
        int *ids = malloc((size_t)cap * sizeof *ids);
        for (int k = 0; k < n; k++) {
            if (strstr(lines[k].text, "\xE2\x96\x81")) continue;
            int m = tokenizer_encode(tok, lines[k].text, lines[k].len, ids, cap);
            size_t len;
            char *back = tokenizer_decode(tok, ids, m, &len);
            checked++;
            if (back && len == lines[k].len && !memcmp(back, lines[k].text, len)) {
                free(back);
                continue;
            }
            if (bad++ < 3)
                fprintf(stderr, "  %s line %d: \"%.80s\" decodes to \"%.80s\"\n", MODELS[mi], k + 1,
                        lines[k].text, back ? back : mmrm_last_error());
            free(back);
        }
        CHECK(checked > 10000 && bad == 0, "%s: %d of %d lines do not round-trip", MODELS[mi],
              bad, checked);
        static const struct { const char *in, *out; } invalid[] = {
            {"a\x80z", "a\xEF\xBF\xBDz"},
            {"\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD"},           /* overlong "/" */
            {"\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* a surrogate */
            {"x\xE4\xBD", "x\xEF\xBF\xBD\xEF\xBF\xBD"},          /* truncated */
        };
        for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
            int m = tokenizer_encode(tok, invalid[i].in, strlen(invalid[i].in), ids, cap);
            char *back = tokenizer_decode(tok, ids, m, NULL);
            CHECK(back && !strcmp(back, invalid[i].out), "%s: invalid case %zu decodes to \"%s\"",
                  MODELS[mi], i, back ? back : mmrm_last_error());
            free(back);
        }
        int no_token = tok->vocab_size + 5;
        CHECK(!tokenizer_decode(tok, &no_token, 1, NULL) && strstr(mmrm_last_error(), "no token"),
              "decoding an id past the vocabulary: %s", mmrm_last_error());
        free(ids);
        tokenizer_free(tok);
    }
    if (lines) free_lines(lines, n);
}

TEST(test_spm_loads_added_tokens_and_roles_from_tokenizer_config) {
    Tokenizer *tok = load_model("llama");
    if (!tok) return;
    CHECK(tok->vocab_size == 4000 + 15, "vocab_size %d: 4000 pieces + 15 added", tok->vocab_size);
    CHECK(tokenizer_special_id(tok, "<|im_start|>") == 4000 &&
              tokenizer_special_id(tok, "<IMG_CONTEXT>") == 4008 &&
              tokenizer_special_id(tok, "<s>") == 1,
          "added token ids");
    CHECK(tok->bos_id == 1 && tok->eos_id == 2 && tok->pad_id == 2 && tok->add_bos,
          "roles bos %d eos %d pad %d add_bos %d", tok->bos_id, tok->eos_id, tok->pad_id,
          tok->add_bos);
    tokenizer_free(tok);
}

TEST(test_spm_save_writes_a_folder_that_loads_as_the_same_tokenizer) {
    Tokenizer *tok = load_model("user");
    if (!tok) return;
    tok->pad_id = -1;
    tok->add_bos = 0;
    char tmpl[] = "/tmp/mmrm_test_spm_XXXXXX";
    char *dir = strdup(mkdtemp(tmpl));
    CHECK(tokenizer_save(tok, dir) == 0, "save: %s", mmrm_last_error());
    Tokenizer *back = tokenizer_load(dir);
    CHECK(back && back->kind == TOKENIZER_SPM, "reload: %s", mmrm_last_error());
    if (back) {
        CHECK(back->vocab_size == tok->vocab_size && back->n_special == tok->n_special &&
                  back->bos_id == tok->bos_id && back->eos_id == tok->eos_id &&
                  back->pad_id == -1 && !back->add_bos,
              "vocab %d/%d, %d/%d specials, roles %d %d %d add_bos %d", back->vocab_size,
              tok->vocab_size, back->n_special, tok->n_special, back->bos_id, back->eos_id,
              back->pad_id, back->add_bos);
        const char *text = " def f(x):<|im_start|>user\n\t== 你好 <|user_sym|>";
        int a[64], b[64];
        int na = tokenizer_encode(tok, text, strlen(text), a, 64);
        int nb = tokenizer_encode(back, text, strlen(text), b, 64);
        CHECK(na == nb && na <= 64 && !memcmp(a, b, (size_t)na * sizeof *a), "same ids");
    }
    tokenizer_free(back);
    tokenizer_free(tok);
    remove_dir(dir);
}

/* "7" is "▁", "7" under add_dummy_prefix (split_digits keeps digits alone), "€" is "▁" and
 * its 3 byte pieces: more ids than bytes, reported like snprintf */
TEST(test_spm_dummy_prefix_may_need_more_ids_than_bytes) {
    Tokenizer *tok = load_model("llama");
    if (!tok) return;
    int ids[8] = {0};
    int n = tokenizer_encode(tok, "7", 1, ids, 1);
    CHECK(n == 2, "\"7\" needs %d ids (expected \"▁\", \"7\")", n);
    n = tokenizer_encode(tok, "7", 1, ids, 8);
    char *back = tokenizer_decode(tok, ids, n, NULL);
    CHECK(n == 2 && back && !strcmp(back, "7"), "\"7\" -> %d ids -> \"%s\"", n, back);
    free(back);
    n = tokenizer_encode(tok, "\xE2\x82\xAC", 3, ids, 8);
    CHECK(n == 4 && ids[1] == 3 + 0xE2, "\"€\" -> %d ids (expected \"▁\" <0xE2> <0x82> <0xAC>)",
          n);
    /* a chat sample whose every text run is one such character */
    int out[256];
    TemplateInfo info;
    int m = template_encode(tok, TEMPLATE_INTERNLM2_CHAT, "7", "7", "7", 0, 256, out, 256, &info);
    const char *text = "<|im_start|>system\n7<|im_end|><|im_start|>user\n7<|im_end|>"
                       "<|im_start|>assistant\n7<|im_end|>";
    int want[256];
    int nw = tokenizer_encode(tok, text, strlen(text), want, 256);
    CHECK(m == nw + 1 && out[0] == tok->bos_id && !memcmp(out + 1, want, (size_t)nw * sizeof *want),
          "template_encode: %d ids (%s), tokenizer %d + BOS", m,
          m < 0 ? mmrm_last_error() : "ok", nw);
    /* 100 invalid bytes: each is U+FFFD, 3 byte ids, so the sample needs far more ids than
     * bytes and template.c must ask again with the size tokenizer_encode reported */
    char bad[101];
    memset(bad, 0x80, 100);
    bad[100] = '\0';
    int big[512];
    m = template_encode(tok, TEMPLATE_INTERNLM2_CHAT, "7", "7", bad, 0, 512, big, 512, &info);
    CHECK(m > 300 && big[m - 1] == tokenizer_special_id(tok, "<|im_end|>") &&
              big[m - 2] == 3 + 0xBD && info.response_start + 300 <= m,
          "template_encode of 100 invalid bytes: %d ids (%s)", m,
          m < 0 ? mmrm_last_error() : "ok");
    tokenizer_free(tok);
}

/* ---- bad model files ---- */

typedef struct {
    uint8_t b[4096];
    size_t n;
} Pbw;

static void put_varint(Pbw *w, uint64_t v) {
    do {
        w->b[w->n++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
}

static void put_bytes(Pbw *w, int field, const void *p, size_t n) {
    put_varint(w, (uint64_t)field << 3 | 2);
    put_varint(w, n);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void put_int(Pbw *w, int field, uint64_t v) {
    put_varint(w, (uint64_t)field << 3);
    put_varint(w, v);
}

static void put_piece(Pbw *w, const char *text, float score, int type) {
    Pbw p = {.n = 0};
    put_bytes(&p, 1, text, strlen(text));
    put_varint(&p, 2 << 3 | 5);
    memcpy(p.b + p.n, &score, 4);
    p.n += 4;
    put_int(&p, 3, (uint64_t)type);
    put_bytes(w, 1, p.b, p.n);
}

/* a tiny model: <unk> <s> </s> ▁ a b ab ▁a, then the given specs */
static Pbw tiny_model(int model_type, const char *norm_name, size_t charsmap_len,
                      int remove_extra_ws) {
    Pbw w = {.n = 0};
    put_piece(&w, "<unk>", 0, 2);
    put_piece(&w, "<s>", 0, 3);
    put_piece(&w, "</s>", 0, 3);
    put_piece(&w, "\xE2\x96\x81", -1, 1);
    put_piece(&w, "a", -2, 1);
    put_piece(&w, "b", -3, 1);
    put_piece(&w, "ab", -0.5f, 1);
    put_piece(&w, "\xE2\x96\x81" "a", -0.25f, 1);
    Pbw t = {.n = 0};
    put_int(&t, 3, (uint64_t)model_type);
    put_int(&t, 35, 0);
    put_int(&t, 43, (uint64_t)-1); /* pad_id -1, as a 10-byte varint */
    put_bytes(&w, 2, t.b, t.n);
    Pbw s = {.n = 0};
    put_bytes(&s, 1, norm_name, strlen(norm_name));
    if (charsmap_len) put_bytes(&s, 2, "\x01\x02\x03\x04\x05\x06\x07\x08", charsmap_len);
    put_int(&s, 3, 1);
    put_int(&s, 4, (uint64_t)remove_extra_ws);
    put_int(&s, 5, 1);
    put_bytes(&w, 3, s.b, s.n);
    return w;
}

static char *dir_with_model(const void *data, size_t n) {
    char tmpl[] = "/tmp/mmrm_test_spm_XXXXXX";
    char *dir = strdup(mkdtemp(tmpl));
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
    return dir;
}

static void remove_dir(char *dir) {
    fs_remove_tree(dir);
    free(dir);
}

/* loading fails with one error naming tokenizer.model and holding `what` */
static void expect_load_error(const void *data, size_t n, const char *what, const char *label) {
    char *dir = dir_with_model(data, n);
    Tokenizer *tok = tokenizer_load(dir);
    const char *err = mmrm_last_error();
    CHECK(!tok && strstr(err, "tokenizer.model") && strstr(err, what), "%s: %s", label,
          tok ? "loaded" : err);
    tokenizer_free(tok);
    remove_dir(dir);
}

TEST(test_spm_tiny_model_merges_by_score_and_merges_unknowns_without_byte_fallback) {
    Pbw w = tiny_model(2, "identity", 0, 0);
    char *dir = dir_with_model(w.b, w.n);
    Tokenizer *tok = tokenizer_load(dir);
    CHECK(tok, "tiny model: %s", mmrm_last_error());
    if (tok) {
        int ids[16];
        /* "▁ab": "▁a" (-0.25) beats "ab" (-0.5); "b" stays; "xy" is one merged <unk> */
        int n = tokenizer_encode(tok, "ab xyb", 6, ids, 16);
        CHECK(n == 5 && ids[0] == 7 && ids[1] == 5 && ids[2] == 3 && ids[3] == 0 && ids[4] == 5,
              "\"ab xyb\" -> %d ids %d %d %d %d %d", n, ids[0], ids[1], ids[2], ids[3], ids[4]);
        char *back = tokenizer_decode(tok, ids, n, NULL);
        CHECK(back && !strcmp(back, "ab <unk>b"), "decodes to \"%s\" (<unk> is a special token)",
              back);
        free(back);
        CHECK(tok->pad_id == -1 && tok->bos_id == 1 && tok->n_special == 3,
              "roles from trainer_spec, specials <unk> <s> </s>: pad %d bos %d, %d specials",
              tok->pad_id, tok->bos_id, tok->n_special);
        tokenizer_free(tok);
    }
    remove_dir(dir);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

TEST(test_spm_reads_added_tokens_json_and_special_tokens_map) {
    Pbw w = tiny_model(2, "identity", 0, 0);
    char *dir = dir_with_model(w.b, w.n);
    write_file(dir, "added_tokens.json", "{\"<img>\": 8, \"<x>\": 9}");
    write_file(dir, "special_tokens_map.json",
               "{\"bos_token\": {\"content\": \"<s>\"}, \"pad_token\": \"<img>\", "
               "\"additional_special_tokens\": [\"<x>\", \"ab\"]}");
    Tokenizer *tok = tokenizer_load(dir);
    CHECK(tok, "load: %s", mmrm_last_error());
    if (tok) {
        CHECK(tok->vocab_size == 10 && tok->n_special == 6 && tok->pad_id == 8 && tok->bos_id == 1,
              "vocab %d, %d specials (<img> <x> ab <unk> <s> </s>), pad %d bos %d",
              tok->vocab_size, tok->n_special, tok->pad_id, tok->bos_id);
        int ids[16];
        int n = tokenizer_encode(tok, "xab<img><s>", 11, ids, 16);
        CHECK(n == 5 && ids[0] == 3 && ids[1] == 0 && ids[2] == 6 && ids[3] == 8 && ids[4] == 1,
              "\"xab<img><s>\" -> %d ids %d %d %d %d %d", n, ids[0], ids[1], ids[2], ids[3],
              ids[4]);
        char *back = tokenizer_decode(tok, ids, n, NULL);
        CHECK(back && !strcmp(back, "<unk>ab<img><s>"), "decodes to \"%s\"", back);
        free(back);
        tokenizer_free(tok);
    }
    write_file(dir, "added_tokens.json", "{\"<img>\": 8, \"<img2>\": 8}");
    CHECK(!tokenizer_load(dir) && strstr(mmrm_last_error(), "added_tokens.json") &&
              strstr(mmrm_last_error(), "conflicts"),
          "two tokens for one id: %s", mmrm_last_error());
    /* found by tests/fuzz/fuzz_tokenizer.c: the id went through (long)1e300 unchecked */
    write_file(dir, "added_tokens.json", "{\"<img>\": 1e300}");
    CHECK(!tokenizer_load(dir) && strstr(mmrm_last_error(), "added_tokens.json") &&
              strstr(mmrm_last_error(), "id -1"),
          "an id out of range: %s", mmrm_last_error());
    write_file(dir, "added_tokens.json", "{\"<img>\": 8}");
    write_file(dir, "special_tokens_map.json", "{\"pad_token\": \"<nope>\"}");
    CHECK(!tokenizer_load(dir) && strstr(mmrm_last_error(), "special_tokens_map.json") &&
              strstr(mmrm_last_error(), "pad_token"),
          "an unknown role token: %s", mmrm_last_error());
    remove_dir(dir);
}

TEST(test_spm_bad_model_files_give_one_clear_error) {
    char tmpl[] = "/tmp/mmrm_test_spm_XXXXXX";
    char *empty = strdup(mkdtemp(tmpl));
    CHECK(!tokenizer_load(empty) && strstr(mmrm_last_error(), "tokenizer.model"),
          "missing: %s", mmrm_last_error());
    remove_dir(empty);

    Pbw w = tiny_model(1, "identity", 0, 0);
    expect_load_error(w.b, w.n, "UNIGRAM", "unigram model");
    w = tiny_model(2, "nmt_nfkc", 8, 0);
    expect_load_error(w.b, w.n, "nmt_nfkc", "nfkc normalizer");
    w = tiny_model(2, "identity", 0, 1);
    expect_load_error(w.b, w.n, "remove_extra_whitespaces", "whitespace removal");
    expect_load_error("", 0, "no pieces", "empty file");
    expect_load_error("\x0b\x01", 2, "wire type 3", "a group field");
    expect_load_error("\x0f", 1, "wire type 7", "an unknown wire type");
    expect_load_error("\x0a\x05\x0a", 3, "past the end", "a piece longer than the file");
    expect_load_error("\x1a\x02\x18\x80", 4, "truncated varint", "a truncated varint");
    expect_load_error("\x0a\x02\x10\x00", 4, "wire type 0, expected 5", "a score as a varint");

    size_t len;
    char *real = fs_read_file(SPM_DIR "llama/tokenizer.model", &len);
    if (CHECK(real, "%s", mmrm_last_error())) {
        expect_load_error(real, len / 2, "tokenizer.model", "truncated in half");
        /* every prefix and a byte flipped at many places: an error or a model, never a crash */
        for (size_t cut = 0; cut < len; cut += len / 97 + 1) {
            char *dir = dir_with_model(real, cut);
            tokenizer_free(tokenizer_load(dir));
            remove_dir(dir);
        }
        for (size_t at = 0; at < len; at += len / 61 + 1) {
            real[at] ^= 0x5A;
            char *dir = dir_with_model(real, len);
            tokenizer_free(tokenizer_load(dir));
            remove_dir(dir);
            real[at] ^= 0x5A;
        }
        free(real);
    }
}
