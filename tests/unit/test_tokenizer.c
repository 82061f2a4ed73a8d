/* test_tokenizer.c - the byte tokenizer: exact round trips of arbitrary bytes, special-token
 * recognition (longest match), the snprintf-like encode contract, decode errors, and the
 * tokenizer file: save/load round trip and clear errors for corrupt files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/tokenizer.h"
#include "runtime/error.h"
#include "tests/harness.h"

static int *encode_new(const Tokenizer *tok, const char *s, size_t n, int *count) {
    int *ids = malloc((n + 1) * sizeof *ids);
    *count = tokenizer_encode(tok, s, n, ids, (int)n + 1);
    return ids;
}

/* a temporary model directory holding TOKENIZER_FILE with the given text (NULL: none) */
static char *temp_dir_with(const char *json) {
    char tmpl[] = "/tmp/mmrm_test_tok_XXXXXX";
    char *dir = strdup(mkdtemp(tmpl));
    if (json) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, TOKENIZER_FILE);
        FILE *f = fopen(path, "wb");
        fputs(json, f);
        fclose(f);
    }
    return dir;
}

static void remove_dir(char *dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, TOKENIZER_FILE);
    remove(path);
    rmdir(dir);
    free(dir);
}

TEST(test_byte_tokenizer_round_trips_random_bytes_exactly) {
    /* pieces that look like special tokens, whole or cut short, mixed with raw bytes
     * (NUL, invalid UTF-8, lone continuation bytes) */
    static const char *const pieces[] = {"<|im_end", "<|im_end|", "<|im_end|>", "<|im_start|>",
                                         "<", "|", ">", "<s", "<s>", "</s", "</s>", "<img",
                                         "<IMG_CONTEXT", "<IMG_CONTEXT>", "</img>", "<pad",
                                         "<box>", "\xff\xfe", "\xc3", "\xe4\xbd", "\x80"};
    const int n_pieces = sizeof pieces / sizeof pieces[0];
    Tokenizer *tok = tokenizer_byte_new(1);
    TRng r = trng(7);
    char buf[600];
    for (int trial = 0; trial < 300; trial++) {
        size_t n = 0;
        int n_parts = (int)(trng_uniform(&r) * 40);
        for (int p = 0; p < n_parts; p++) {
            if (trng_uniform(&r) < 0.5) {
                buf[n++] = (char)(int)(trng_uniform(&r) * 256);
            } else {
                const char *s = pieces[(int)(trng_uniform(&r) * n_pieces)];
                memcpy(buf + n, s, strlen(s));
                n += strlen(s);
            }
        }
        int count;
        int *ids = encode_new(tok, buf, n, &count);
        CHECK(count >= 0 && (size_t)count <= n, "trial %d: %d ids for %zu bytes", trial, count, n);
        int in_range = 1;
        for (int i = 0; i < count; i++) in_range &= ids[i] >= 0 && ids[i] < tok->vocab_size;
        CHECK(in_range, "trial %d: an id outside [0, %d)", trial, tok->vocab_size);
        size_t len = 0;
        char *back = tokenizer_decode(tok, ids, count, &len);
        CHECK(back && len == n && memcmp(back, buf, n) == 0, "trial %d: %zu bytes came back as %zu",
              trial, n, len);
        free(back);
        free(ids);
    }
    tokenizer_free(tok);
}

TEST(test_encode_maps_plain_bytes_and_partial_special_tokens_to_byte_ids) {
    Tokenizer *tok = tokenizer_byte_new(1);
    const char text[] = "a<|im_end\xe4\xbd\xa0<s\x00</img";
    size_t n = sizeof text - 1;
    int count;
    int *ids = encode_new(tok, text, n, &count);
    CHECK((size_t)count == n, "%d ids for %zu bytes", count, n);
    for (size_t i = 0; i < n && (size_t)count == n; i++)
        CHECK(ids[i] == (unsigned char)text[i], "id %zu is %d, byte %d", i, ids[i],
              (unsigned char)text[i]);
    free(ids);
    tokenizer_free(tok);
}

TEST(test_encode_recognises_every_special_token_in_text) {
    Tokenizer *tok = tokenizer_byte_new(1);
    CHECK(tok->vocab_size == 270 && tok->bos_id == 256 && tok->eos_id == 257 &&
              tok->pad_id == 269 && tok->add_bos == 1,
          "vocab %d bos %d eos %d pad %d", tok->vocab_size, tok->bos_id, tok->eos_id, tok->pad_id);
    static const char *const specials[] = {"<s>",    "</s>",  "<|im_start|>", "<|im_end|>",
                                           "<img>",  "</img>", "<IMG_CONTEXT>", "<quad>",
                                           "</quad>", "<ref>", "</ref>", "<box>", "</box>",
                                           "<pad>"};
    for (int k = 0; k < 14; k++) {
        CHECK(tokenizer_special_id(tok, specials[k]) == 256 + k, "%s has id %d", specials[k],
              tokenizer_special_id(tok, specials[k]));
        char text[64];
        snprintf(text, sizeof text, "x%s%sy", specials[k], specials[k]);
        int ids[64];
        int n = tokenizer_encode(tok, text, strlen(text), ids, 64);
        CHECK(n == 4 && ids[0] == 'x' && ids[1] == 256 + k && ids[2] == 256 + k && ids[3] == 'y',
              "\"%s\" gave %d ids", text, n);
    }
    const char text[] = "<s><|im_start|>user\n<img><IMG_CONTEXT></img><|im_end|>";
    const int want[] = {256, 258, 'u', 's', 'e', 'r', '\n', 260, 262, 261, 259};
    int ids[64];
    int n = tokenizer_encode(tok, text, strlen(text), ids, 64);
    CHECK(n == 11 && memcmp(ids, want, sizeof want) == 0, "got %d ids", n);
    tokenizer_free(tok);
}

TEST(test_special_id_lookup_of_an_unknown_string_fails_with_its_name) {
    Tokenizer *tok = tokenizer_byte_new(0);
    CHECK(tokenizer_special_id(tok, "<|endoftext|>") == -1, "unknown token found");
    CHECK(strstr(mmrm_last_error(), "<|endoftext|>"), "error: %s", mmrm_last_error());
    CHECK(tokenizer_special_id(tok, "<s") == -1, "a prefix of <s> matched");
    tokenizer_free(tok);
}

TEST(test_encode_returns_the_needed_length_and_writes_no_more_than_cap) {
    Tokenizer *tok = tokenizer_byte_new(1);
    const char *text = "ab<|im_end|>cd";
    const int want[5] = {'a', 'b', 259, 'c', 'd'};
    for (int cap = 0; cap <= 6; cap++) {
        int ids[8] = {-7, -7, -7, -7, -7, -7, -7, -7};
        int n = tokenizer_encode(tok, text, strlen(text), ids, cap);
        CHECK(n == 5, "cap %d: needed %d ids, want 5", cap, n);
        for (int i = 0; i < 8; i++) {
            int expect = i < cap && i < 5 ? want[i] : -7;
            CHECK(ids[i] == expect, "cap %d: ids[%d] = %d, want %d", cap, i, ids[i], expect);
        }
    }
    CHECK(tokenizer_encode(tok, text, strlen(text), NULL, 0) == 5, "counting with cap 0");
    int one[1];
    CHECK(tokenizer_encode(tok, "", 0, one, 1) == 0, "empty text gives ids");
    tokenizer_free(tok);
}

TEST(test_decode_rejects_ids_without_a_token) {
    Tokenizer *tok = tokenizer_byte_new(1);
    const int bad[][2] = {{'a', 270}, {-1, 'a'}, {'a', 1 << 20}};
    for (int i = 0; i < 3; i++) {
        size_t len = 99;
        char *s = tokenizer_decode(tok, bad[i], 2, &len);
        CHECK(!s, "case %d decoded", i);
        char want[32];
        snprintf(want, sizeof want, "id %d", bad[i][0] == 'a' ? bad[i][1] : bad[i][0]);
        CHECK(strstr(mmrm_last_error(), want), "case %d: error \"%s\" lacks \"%s\"", i,
              mmrm_last_error(), want);
        free(s);
    }
    tokenizer_free(tok);
}

TEST(test_save_then_load_gives_the_same_tokenizer) {
    for (int add_bos = 0; add_bos <= 1; add_bos++) {
        Tokenizer *tok = tokenizer_byte_new(add_bos);
        char *dir = temp_dir_with(NULL);
        CHECK(tokenizer_save(tok, dir) == 0, "save: %s", mmrm_last_error());
        Tokenizer *back = tokenizer_load(dir);
        CHECK(back, "load: %s", mmrm_last_error());
        if (back) {
            CHECK(back->kind == TOKENIZER_BYTE && back->vocab_size == tok->vocab_size &&
                      back->bos_id == tok->bos_id && back->eos_id == tok->eos_id &&
                      back->pad_id == tok->pad_id && back->add_bos == add_bos &&
                      back->n_special == tok->n_special,
                  "fields differ after the round trip");
            for (int k = 0; k < tok->n_special && k < back->n_special; k++)
                CHECK(back->special[k].id == tok->special[k].id &&
                          strcmp(back->special[k].text, tok->special[k].text) == 0,
                      "special %d differs", k);
            const char *text = "<s>hi<|im_end|><IMG_CONTEXT>\xff";
            int a[32], b[32];
            int na = tokenizer_encode(tok, text, strlen(text), a, 32);
            int nb = tokenizer_encode(back, text, strlen(text), b, 32);
            CHECK(na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0, "encodings differ");
        }
        tokenizer_free(back);
        tokenizer_free(tok);
        remove_dir(dir);
    }
}

TEST(test_loaded_tokenizer_takes_the_longest_special_match_and_allows_unused_ids) {
    char *dir = temp_dir_with(
        "{\"type\": \"byte\", \"vocab_size\": 300,\n"
        " \"special_tokens\": [{\"id\": 290, \"content\": \"<a>\"},\n"
        "                    {\"id\": 260, \"content\": \"<a><b>\"},\n"
        "                    {\"id\": 299, \"content\": \"<a><b\"}],\n"
        " \"bos_id\": null, \"eos_id\": 290, \"pad_id\": null, \"add_bos\": false}\n");
    Tokenizer *tok = tokenizer_load(dir);
    CHECK(tok, "load: %s", mmrm_last_error());
    if (tok) {
        CHECK(tok->bos_id == -1 && tok->pad_id == -1 && tok->eos_id == 290, "role ids");
        const char *text = "<a><b><a><b<a><a>b>";
        const int want[] = {260, 299, 290, 290, 'b', '>'};
        int ids[32];
        int n = tokenizer_encode(tok, text, strlen(text), ids, 32);
        CHECK(n == 6 && memcmp(ids, want, sizeof want) == 0, "got %d ids", n);
        const int unused[] = {270};
        CHECK(!tokenizer_decode(tok, unused, 1, NULL), "decoded an unused id");
    }
    tokenizer_free(tok);
    remove_dir(dir);
}

TEST(test_load_rejects_corrupt_tokenizer_files_with_a_clear_error) {
    static const char *const head = "\"type\": \"byte\", \"vocab_size\": 260, ";
    static const char *const specials =
        "\"special_tokens\": [{\"id\": 256, \"content\": \"<s>\"}, "
        "{\"id\": 257, \"content\": \"</s>\"}], ";
    static const char *const roles = "\"bos_id\": 256, \"eos_id\": 257, \"pad_id\": 257, ";
    static const struct {
        const char *json, *want1, *want2;
    } cases[] = {
        {"{\"type\": \"byte\",\n \"vocab_size\": 260,\n \"special_tokens\": [,]}", ":3: malformed JSON", NULL},
        {"", "malformed JSON", NULL},
        {"{}  trailing", "malformed JSON", NULL},
        {"[1, 2]", "top level", NULL},
        {"{$H$S$R\"add_bos\": true, \"extra\": 1}", "unknown field \"extra\"", NULL},
        {"{$H$S$R\"add_bos\": true, \"add_bos\": true}", "\"add_bos\" appears twice", NULL},
        {"{$H$S$R\"add_bos\": 1}", "\"add_bos\"", "true or false"},
        {"{$H$S$R\"add_boss\": true}", "unknown field \"add_boss\"", NULL},
        {"{$H$S\"bos_id\": 256, \"eos_id\": 257, \"add_bos\": true}", "\"pad_id\" is missing",
         NULL},
        {"{\"type\": \"bpe\", \"vocab_size\": 260, $S$R\"add_bos\": true}", "\"type\"",
         "unknown tokenizer type \"bpe\""},
        {"{\"type\": 3, \"vocab_size\": 260, $S$R\"add_bos\": true}", "\"type\"", "string"},
        {"{\"type\": \"byte\", \"vocab_size\": 12.5, $S$R\"add_bos\": true}", "\"vocab_size\"",
         NULL},
        {"{$H\"special_tokens\": [{\"id\": 256, \"content\": \"<s>\"}, {\"id\": 256, \"content\": "
         "\"</s>\"}], $R\"add_bos\": true}",
         "special_tokens[1].id", "duplicate id 256"},
        {"{$H\"special_tokens\": [{\"id\": 256, \"content\": \"<s>\"}, {\"id\": 257, \"content\": "
         "\"<s>\"}], $R\"add_bos\": true}",
         "special_tokens[1].content", "duplicate token"},
        {"{$H\"special_tokens\": [{\"id\": 256, \"content\": \"<s>\"}, {\"id\": 260, \"content\": "
         "\"</s>\"}], $R\"add_bos\": true}",
         "special_tokens[1].id", "out of range"},
        {"{$H\"special_tokens\": [{\"id\": 255, \"content\": \"<s>\"}], $R\"add_bos\": true}",
         "special_tokens[0].id", "out of range"},
        {"{$H\"special_tokens\": [{\"id\": 256}], $R\"add_bos\": true}", "special_tokens[0]",
         "content"},
        {"{$H\"special_tokens\": [{\"id\": 256, \"content\": \"\"}], $R\"add_bos\": true}",
         "special_tokens[0]", "non-empty"},
        {"{$H\"special_tokens\": {\"<s>\": 256}, $R\"add_bos\": true}", "\"special_tokens\"",
         "array"},
        {"{$H$S\"bos_id\": 258, \"eos_id\": 257, \"pad_id\": 257, \"add_bos\": true}",
         "\"bos_id\"", "special_tokens"},
        {"{$H$S\"bos_id\": null, \"eos_id\": 257, \"pad_id\": 257, \"add_bos\": true}",
         "\"add_bos\" is true but bos_id is null", NULL},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* $H, $S, $R stand for the valid head, special tokens and role ids */
        char json[1024] = "";
        for (const char *src = cases[c].json; *src; src++) {
            if (src[0] == '$' && src[1] == 'H') strcat(json, head), src++;
            else if (src[0] == '$' && src[1] == 'S') strcat(json, specials), src++;
            else if (src[0] == '$' && src[1] == 'R') strcat(json, roles), src++;
            else strncat(json, src, 1);
        }
        char *dir = temp_dir_with(json);
        Tokenizer *tok = tokenizer_load(dir);
        const char *err = mmrm_last_error();
        CHECK(!tok, "case %zu loaded: %s", c, json);
        CHECK(strstr(err, dir) && strstr(err, TOKENIZER_FILE), "case %zu: error names no file: %s",
              c, err);
        CHECK(strstr(err, cases[c].want1) && (!cases[c].want2 || strstr(err, cases[c].want2)),
              "case %zu: error \"%s\" lacks \"%s\"", c, err, cases[c].want1);
        tokenizer_free(tok);
        remove_dir(dir);
    }
    char *dir = temp_dir_with(NULL);
    CHECK(!tokenizer_load(dir) && strstr(mmrm_last_error(), "cannot open"),
          "a missing file: %s", mmrm_last_error());
    remove_dir(dir);
}

/* ---- the word kind ---- */

static const char *const g_words[] = {"The", " red", " is", "red", "It", " a9"};
enum { W_THE = 270, W_SRED, W_SIS, W_RED, W_IT, W_SA9 };

static void check_ids(const Tokenizer *tok, const char *text, const int *want, int n_want) {
    int ids[64];
    int n = tokenizer_encode(tok, text, strlen(text), ids, 64);
    int same = n == n_want && memcmp(ids, want, (size_t)n * sizeof *ids) == 0;
    CHECK(same, "\"%s\": %d ids, want %d (first %d, want %d)", text, n, n_want, n > 0 ? ids[0] : -1,
          want[0]);
    size_t len;
    char *back = same ? tokenizer_decode(tok, ids, n, &len) : NULL;
    CHECK(!same || (back && len == strlen(text) && memcmp(back, text, len) == 0),
          "\"%s\" does not decode back", text);
    free(back);
}

TEST(test_word_tokenizer_takes_vocabulary_words_and_spells_out_the_rest) {
    Tokenizer *tok = tokenizer_word_new(g_words, 6, 0);
    CHECK(tok && tok->kind == TOKENIZER_WORD && tok->vocab_size == 276 && tok->pad_id == 269,
          "new: %s", tok ? "wrong fields" : mmrm_last_error());
    if (!tok) return;
    /* expected ids spelled out from the documented grammar */
    check_ids(tok, "The red is red.", (int[]){W_THE, W_SRED, W_SIS, W_SRED, '.'}, 5);
    check_ids(tok, "The  red", (int[]){W_THE, ' ', W_SRED}, 3);        /* one space per word */
    check_ids(tok, "Thered", (int[]){'T', 'h', 'e', 'r', 'e', 'd'}, 6); /* unknown run */
    check_ids(tok, " red", (int[]){W_SRED}, 1);
    check_ids(tok, "\nred", (int[]){'\n', W_RED}, 2);
    check_ids(tok, " reds", (int[]){' ', 'r', 'e', 'd', 's'}, 5);       /* maximal runs only */
    check_ids(tok, " It", (int[]){' ', W_IT}, 2);                       /* " It" unknown, "It" not */
    check_ids(tok, "red<|im_end|> red", (int[]){W_RED, 259, W_SRED}, 3);
    check_ids(tok, "\xc3\xa9 red", (int[]){0xc3, 0xa9, W_SRED}, 3);
    check_ids(tok, "It's a9!", (int[]){W_IT, '\'', 's', W_SA9, '!'}, 5);
    check_ids(tok, "red_is", (int[]){W_RED, '_', 'i', 's'}, 4);          /* '_' ends a word */
    /* the snprintf-like contract holds for word ids too */
    int ids[2];
    CHECK(tokenizer_encode(tok, "The red is", 10, ids, 2) == 3 && ids[0] == W_THE && ids[1] == W_SRED,
          "cap 2");
    tokenizer_free(tok);
}

TEST(test_word_tokenizer_round_trips_random_text_and_survives_a_file_round_trip) {
    static const char *const pieces[] = {"The", " red", " is", "red", "It", " a9", " ", "  ", "!",
                                         "re", "d", "<|im_end|>", "<|im_end", "\xff", "\xc3",
                                         "9", "\n", "_"};
    const int n_pieces = sizeof pieces / sizeof pieces[0];
    Tokenizer *tok = tokenizer_word_new(g_words, 6, 1);
    char *dir = temp_dir_with(NULL);
    CHECK(tok && tokenizer_save(tok, dir) == 0, "save: %s", mmrm_last_error());
    Tokenizer *back = tokenizer_load(dir);
    CHECK(back && back->kind == TOKENIZER_WORD && back->vocab_size == 276 && back->n_words == 6 &&
              back->add_bos == 1,
          "load: %s", back ? "fields differ" : mmrm_last_error());
    TRng r = trng(11);
    char buf[800];
    int words_seen = 0;
    for (int trial = 0; tok && back && trial < 300; trial++) {
        size_t n = 0;
        int n_parts = (int)(trng_uniform(&r) * 40);
        for (int p = 0; p < n_parts; p++) {
            const char *s = pieces[(int)(trng_uniform(&r) * n_pieces)];
            memcpy(buf + n, s, strlen(s));
            n += strlen(s);
        }
        int count, count2;
        int *ids = encode_new(tok, buf, n, &count), *ids2 = encode_new(back, buf, n, &count2);
        CHECK(count >= 0 && (size_t)count <= n, "trial %d: %d ids for %zu bytes", trial, count, n);
        CHECK(count == count2 && memcmp(ids, ids2, (size_t)count * sizeof *ids) == 0,
              "trial %d: the loaded tokenizer encodes differently", trial);
        for (int i = 0; i < count; i++) words_seen += ids[i] >= 270;
        size_t len = 0;
        char *text = tokenizer_decode(tok, ids, count, &len);
        CHECK(text && len == n && memcmp(text, buf, n) == 0, "trial %d: round trip differs", trial);
        free(text);
        free(ids);
        free(ids2);
    }
    CHECK(words_seen > 300, "only %d word ids: the test would not test words", words_seen);
    tokenizer_free(back);
    tokenizer_free(tok);
    remove_dir(dir);
}

TEST(test_word_tokenizer_rejects_bad_vocabularies_and_files) {
    const char *bad_words[][2] = {{"red", "re d"}, {"red", ""}, {"  red", "x"}, {"red!", "x"},
                                  {"red", "red"}};
    for (int k = 0; k < 5; k++) {
        Tokenizer *tok = tokenizer_word_new(bad_words[k], 2, 0);
        CHECK(!tok && strstr(mmrm_last_error(), "word"), "case %d accepted (%s)", k,
              mmrm_last_error());
        tokenizer_free(tok);
    }
    static const char *const head =
        "{\"vocab_size\": 300, \"special_tokens\": [{\"id\": 256, \"content\": \"<s>\"}], "
        "\"bos_id\": 256, \"eos_id\": null, \"pad_id\": null, \"add_bos\": true, ";
    static const struct {
        const char *tail, *want;
    } cases[] = {
        {"\"type\": \"word\"}", "\"words\" is missing"},
        {"\"type\": \"byte\", \"words\": []}", "belongs to type word"},
        {"\"type\": \"word\", \"words\": {\"red\": 270}}", "\"words\" must be an array"},
        {"\"type\": \"word\", \"words\": [{\"id\": 270, \"content\": \"re d\"}]}", "words[0].content"},
        {"\"type\": \"word\", \"words\": [{\"id\": 256, \"content\": \"red\"}]}", "words[0].id"},
        {"\"type\": \"word\", \"words\": [{\"id\": 300, \"content\": \"red\"}]}", "out of range"},
        {"\"type\": \"word\", \"words\": [{\"id\": 270, \"content\": \"red\"}, {\"id\": 270, "
         "\"content\": \"blue\"}]}", "words[1].id"},
        {"\"type\": \"word\", \"words\": [{\"id\": 270, \"content\": \"red\"}, {\"id\": 271, "
         "\"content\": \"red\"}]}", "appears twice"},
        {"\"type\": \"word\", \"words\": [{\"id\": 270}]}", "words[0]"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char json[1024];
        snprintf(json, sizeof json, "%s%s", head, cases[c].tail);
        char *dir = temp_dir_with(json);
        Tokenizer *tok = tokenizer_load(dir);
        CHECK(!tok && strstr(mmrm_last_error(), cases[c].want) && strstr(mmrm_last_error(), dir),
              "case %zu: %s", c, tok ? "loaded" : mmrm_last_error());
        tokenizer_free(tok);
        remove_dir(dir);
    }
    char *dir = temp_dir_with("{\"type\": \"byte\", \"vocab_size\": 3000000000, \"special_tokens\": [],"
                              " \"bos_id\": null, \"eos_id\": null, \"pad_id\": null, \"add_bos\": false}");
    CHECK(!tokenizer_load(dir) && strstr(mmrm_last_error(), "vocab_size"), "a huge vocab_size: %s",
          mmrm_last_error());
    remove_dir(dir);
}
