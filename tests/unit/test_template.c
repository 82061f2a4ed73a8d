/* test_template.c - the internlm2-chat and Hermes-2 templates against the data spec written
 * out literally: exact text, stripping, image block expansion and positions, BOS, and
 * truncation that keeps the final <|im_end|> and never cuts the image block. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/template.h"
#include "models/tokenizer.h"
#include "runtime/error.h"
#include "tests/harness.h"

/* the byte tokenizer's ids, spelled out so the test does not ask the code under test */
enum { BOS = 256, IM_START = 258, IM_END = 259, IMG = 260, IMG_END = 261, CTX = 262 };

#define SYS                                                                                 \
    "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, "     \
    "是一个有用无害的人工智能助手。"
static const char HEAD[] = "<|im_start|>system\n" SYS "<|im_end|><|im_start|>user\n";
static const char MID[] = "<|im_end|><|im_start|>assistant\n";
static const char TAIL[] = "<|im_end|>";

static char *concat_text(const char *user, int n_image, const char *response) {
    size_t n = strlen(HEAD) + strlen(user) + strlen(MID) + strlen(response) + strlen(TAIL) +
               13 * (size_t)n_image + 16;
    char *s = malloc(n), *end = s;
    end = stpcpy(end, HEAD);
    if (n_image > 0) {
        end = stpcpy(end, "<img>");
        for (int i = 0; i < n_image; i++) end = stpcpy(end, "<IMG_CONTEXT>");
        end = stpcpy(end, "</img>");
    }
    end = stpcpy(end, user);
    end = stpcpy(end, MID);
    end = stpcpy(end, response);
    stpcpy(end, TAIL);
    return s;
}

typedef struct {
    int *ids;
    int n;
} Seq;

static void seq_bytes(Seq *s, const char *t) {
    while (*t) s->ids[s->n++] = (unsigned char)*t++;
}
static void seq_id(Seq *s, int id, int times) {
    for (int i = 0; i < times; i++) s->ids[s->n++] = id;
}

/* the ids the spec implies, built piece by piece; USER here is the text after </img> */
static Seq expected_ids(int bos, const char *user, int n_image, const char *response) {
    Seq s = {malloc((strlen(user) + strlen(response) + (size_t)n_image + 512) * sizeof(int)), 0};
    if (bos) seq_id(&s, BOS, 1);
    seq_id(&s, IM_START, 1);
    seq_bytes(&s, "system\n");
    seq_bytes(&s, SYS);
    seq_id(&s, IM_END, 1);
    seq_id(&s, IM_START, 1);
    seq_bytes(&s, "user\n");
    if (n_image > 0) {
        seq_id(&s, IMG, 1);
        seq_id(&s, CTX, n_image);
        seq_id(&s, IMG_END, 1);
    }
    seq_bytes(&s, user);
    seq_id(&s, IM_END, 1);
    seq_id(&s, IM_START, 1);
    seq_bytes(&s, "assistant\n");
    seq_bytes(&s, response);
    seq_id(&s, IM_END, 1);
    return s;
}

static void check_text(TemplateKind kind, const char *prompt, const char *response, int n_image,
                       const char *user_want, const char *response_want, const char *what) {
    char *got = template_text(kind, NULL, prompt, response, n_image);
    char *want = concat_text(user_want, n_image, response_want);
    size_t i = 0;
    while (got[i] && got[i] == want[i]) i++;
    CHECK(strcmp(got, want) == 0, "%s (%s): texts differ at byte %zu: got \"%.40s\" want \"%.40s\"",
          what, template_name(kind), i, got + i, want + i);
    free(got);
    free(want);
}

TEST(test_internlm2_chat_text_matches_the_spec_and_strips_each_message) {
    /* the reference strips the whole user message "<image>\n" + prompt, so the prompt's
     * leading whitespace survives behind the image and only its trailing whitespace goes */
    for (int tiles = 1; tiles <= 7; tiles += 6) {
        check_text(TEMPLATE_INTERNLM2_CHAT, " \t What is in the image?  \n", "\n A cat on a mat. \t",
                   256 * tiles, "\n \t What is in the image?", "A cat on a mat.", "with image");
        check_text(TEMPLATE_INTERNLM2_CHAT, "What is in the image?", "A cat on a mat.",
                   256 * tiles, "\nWhat is in the image?", "A cat on a mat.", "nothing to strip");
        check_text(TEMPLATE_INTERNLM2_CHAT, "  \n ", "ok", 256 * tiles, "", "ok",
                   "whitespace prompt loses the newline after the image too");
    }
    check_text(TEMPLATE_INTERNLM2_CHAT, " \t What is in the image?  \n", "\n A cat on a mat. \t", 0,
               "What is in the image?", "A cat on a mat.", "text only");
}

TEST(test_hermes_2_text_matches_the_spec_and_keeps_whitespace) {
    for (int tiles = 1; tiles <= 7; tiles += 6)
        check_text(TEMPLATE_HERMES_2, " \t What is in the image?  \n", "\n A cat on a mat. \t",
                   256 * tiles, "\n \t What is in the image?  \n", "\n A cat on a mat. \t",
                   "with image");
    check_text(TEMPLATE_HERMES_2, " \t What is in the image?  \n", "\n A cat on a mat. \t", 0,
               " \t What is in the image?  \n", "\n A cat on a mat. \t", "text only");
}

TEST(test_internlm2_chat_strips_unicode_whitespace_like_python) {
    /* U+3000, U+00A0, U+2003, U+0085 are str.isspace(); U+200B is not; a lone 0xA0 byte is
     * not a character at all */
    check_text(TEMPLATE_INTERNLM2_CHAT, "\xe3\x80\x80\xc2\xa0 Hi\xe2\x80\x83\r\n",
               "\xe2\x80\x8bOK\xc2\x85", 0, "Hi", "\xe2\x80\x8bOK", "unicode spaces");
    check_text(TEMPLATE_INTERNLM2_CHAT, "Hi\xa0", "\x85OK \xe4\xbd\xa0\xe5\xa5\xbd\xe3\x80\x80",
               0, "Hi\xa0", "\x85OK \xe4\xbd\xa0\xe5\xa5\xbd", "invalid UTF-8 is no whitespace");
}

static void check_ids(TemplateKind kind, int add_bos, int tiles) {
    Tokenizer *tok = tokenizer_byte_new(add_bos);
    const char *prompt = " Describe the picture. ", *response = " A red bus\n";
    int strip = kind == TEMPLATE_INTERNLM2_CHAT, n_image = 256 * tiles;
    Seq want = expected_ids(add_bos, strip ? "\n Describe the picture." : "\n Describe the picture. ",
                            n_image, strip ? "A red bus" : " A red bus\n");
    int cap = want.n + 8;
    int *ids = malloc((size_t)cap * sizeof(int));
    TemplateInfo info;
    int n = template_encode(tok, kind, NULL, prompt, response, n_image, 4096, ids, cap, &info);
    const char *name = template_name(kind);
    CHECK(n == want.n, "%s x%d: %d ids, want %d (%s)", name, tiles, n, want.n,
          n < 0 ? mmrm_last_error() : "");
    if (n == want.n) {
        int first_diff = 0;
        while (first_diff < n && ids[first_diff] == want.ids[first_diff]) first_diff++;
        CHECK(first_diff == n, "%s x%d: ids differ at %d: %d vs %d", name, tiles, first_diff,
              ids[first_diff], want.ids[first_diff]);
        /* [<s>] <|im_start|> system\n SYS <|im_end|> <|im_start|> user\n */
        int image_start = add_bos + 1 + 7 + (int)strlen(SYS) + 2 + 5;
        CHECK(info.image_start == image_start && ids[image_start] == IMG,
              "%s x%d: image starts at %d, want %d", name, tiles, info.image_start, image_start);
        int contiguous = 1, count = 0;
        for (int i = 0; i < n; i++) count += ids[i] == CTX;
        for (int i = 1; i <= n_image; i++) contiguous &= ids[image_start + i] == CTX;
        CHECK(count == n_image && contiguous && ids[image_start + n_image + 1] == IMG_END,
              "%s x%d: %d <IMG_CONTEXT>, want %d in one block", name, tiles, count, n_image);
        CHECK((ids[0] == BOS) == add_bos, "%s: first id %d", name, ids[0]);
        int n_bos = 0;
        for (int i = 0; i < n; i++) n_bos += ids[i] == BOS;
        CHECK(n_bos == add_bos, "%s: %d BOS ids", name, n_bos);
        int resp_len = (int)strlen(strip ? "A red bus" : " A red bus\n");
        CHECK(info.full_length == n && info.truncated == 0 &&
                  info.response_start == n - 1 - resp_len,
              "%s: info full %d truncated %d response_start %d", name, info.full_length,
              info.truncated, info.response_start);
        CHECK(ids[n - 1] == IM_END, "%s: last id %d", name, ids[n - 1]);
    }
    free(want.ids);
    free(ids);
    tokenizer_free(tok);
}

TEST(test_template_ids_place_the_image_block_and_bos_as_the_spec_says) {
    for (int tiles = 1; tiles <= 7; tiles += 6) {
        check_ids(TEMPLATE_INTERNLM2_CHAT, 1, tiles);
        check_ids(TEMPLATE_HERMES_2, 0, tiles);
    }
}

TEST(test_template_ids_decode_back_to_the_template_text) {
    for (int k = 0; k < 2; k++) {
        TemplateKind kind = k ? TEMPLATE_HERMES_2 : TEMPLATE_INTERNLM2_CHAT;
        Tokenizer *tok = tokenizer_byte_new(kind == TEMPLATE_INTERNLM2_CHAT);
        const char *prompt = "Is there <|im_end a dog?\xff", *response = " No<s. ";
        int ids[1024];
        int n = template_encode(tok, kind, NULL, prompt, response, 256, 1024, ids, 1024, NULL);
        char *text = template_text(kind, NULL, prompt, response, 256);
        size_t len = 0;
        char *back = n > 0 ? tokenizer_decode(tok, ids, n, &len) : NULL;
        const char *want_prefix = tok->add_bos ? "<s>" : "";
        CHECK(back && strncmp(back, want_prefix, strlen(want_prefix)) == 0 &&
                  strcmp(back + strlen(want_prefix), text) == 0,
              "%s: decoded ids differ from the template text", template_name(kind));
        free(back);
        free(text);
        tokenizer_free(tok);
    }
}

TEST(test_template_rejects_a_tokenizer_with_the_other_bos_convention) {
    for (int k = 0; k < 2; k++) {
        TemplateKind kind = k ? TEMPLATE_HERMES_2 : TEMPLATE_INTERNLM2_CHAT;
        Tokenizer *tok = tokenizer_byte_new(kind == TEMPLATE_HERMES_2);
        int ids[1024];
        int n = template_encode(tok, kind, NULL, "hi", "yo", 256, 1024, ids, 1024, NULL);
        CHECK(n == TEMPLATE_ERROR && strstr(mmrm_last_error(), "add_bos") &&
                  strstr(mmrm_last_error(), template_name(kind)),
              "%s: got %d, error \"%s\"", template_name(kind), n, mmrm_last_error());
        tokenizer_free(tok);
    }
}

/* internlm2-chat, 7 tiles, a response of n_response letters */
typedef struct {
    Tokenizer *tok;
    char *response;
    int *full;
    int n_full;
    TemplateInfo info;
} Long;

static Long long_sample(int n_response) {
    Long s = {tokenizer_byte_new(1), malloc((size_t)n_response + 1), malloc(16384 * sizeof(int)), 0,
              {0}};
    TRng r = trng(3);
    for (int i = 0; i < n_response; i++) s.response[i] = (char)('a' + (int)(trng_uniform(&r) * 26));
    s.response[n_response] = '\0';
    s.n_full = template_encode(s.tok, TEMPLATE_INTERNLM2_CHAT, NULL, "What?", s.response, 256 * 7,
                               16384, s.full, 16384, &s.info);
    return s;
}

static void long_free(Long *s) {
    tokenizer_free(s->tok);
    free(s->response);
    free(s->full);
}

TEST(test_truncation_cuts_the_response_and_keeps_im_end_last) {
    Long s = long_sample(6000);
    CHECK(s.n_full > 4096 && s.n_full == s.info.full_length, "untruncated length %d", s.n_full);
    int ids[4096];
    TemplateInfo info;
    int n = template_encode(s.tok, TEMPLATE_INTERNLM2_CHAT, NULL, "What?", s.response, 256 * 7, 4096,
                            ids, 4096, &info);
    CHECK(n == 4096, "length %d, want max_length 4096 (%s)", n, n < 0 ? mmrm_last_error() : "");
    if (n == 4096) {
        CHECK(ids[4095] == IM_END, "last id %d, want <|im_end|>", ids[4095]);
        CHECK(memcmp(ids, s.full, 4095 * sizeof(int)) == 0, "kept ids differ from the full ones");
        CHECK(info.truncated == s.n_full - 4096 && info.full_length == s.n_full &&
                  info.response_start == s.info.response_start &&
                  info.image_start == s.info.image_start,
              "info truncated %d full %d", info.truncated, info.full_length);
    }
    long_free(&s);
}

TEST(test_max_length_that_fits_exactly_leaves_the_sample_unchanged) {
    Long s = long_sample(300);
    int *ids = malloc((size_t)s.n_full * sizeof(int));
    TemplateInfo info;
    int n = template_encode(s.tok, TEMPLATE_INTERNLM2_CHAT, NULL, "What?", s.response, 256 * 7, s.n_full,
                            ids, s.n_full, &info);
    CHECK(n == s.n_full && memcmp(ids, s.full, (size_t)n * sizeof(int)) == 0 && info.truncated == 0,
          "max_length = length changed the sample (%d ids)", n);
    n = template_encode(s.tok, TEMPLATE_INTERNLM2_CHAT, NULL, "What?", s.response, 256 * 7,
                        s.n_full - 1, ids, s.n_full, &info);
    CHECK(n == s.n_full - 1 && ids[n - 1] == IM_END && ids[n - 2] == s.full[n - 2] &&
              info.truncated == 1,
          "one token short: %d ids, truncated %d", n, info.truncated);
    free(ids);
    long_free(&s);
}

TEST(test_max_length_inside_the_image_block_rejects_the_sample) {
    Long s = long_sample(300);
    int image_end = s.info.image_start + 256 * 7 + 2; /* one past </img> */
    int lengths[] = {1, s.info.image_start, s.info.image_start + 100, image_end - 1, image_end};
    int ids[4096];
    for (int k = 0; k < 5; k++) {
        TemplateInfo info;
        int n = template_encode(s.tok, TEMPLATE_INTERNLM2_CHAT, NULL, "What?", s.response, 256 * 7,
                                lengths[k], ids, 4096, &info);
        CHECK(n == TEMPLATE_IMAGE_CUT && strstr(mmrm_last_error(), "image block") &&
                  info.full_length == s.n_full,
              "max_length %d: got %d (%s)", lengths[k], n, mmrm_last_error());
    }
    CHECK(strstr(template_status_str(TEMPLATE_IMAGE_CUT), "image"), "status string");
    long_free(&s);
}

TEST(test_max_length_without_room_for_a_response_token_rejects_the_sample) {
    Long s = long_sample(300);
    int image_end = s.info.image_start + 256 * 7 + 2;
    int ids[4096];
    int lengths[] = {image_end + 1, s.info.response_start, s.info.response_start + 1};
    for (int k = 0; k < 3; k++) {
        int n = template_encode(s.tok, TEMPLATE_INTERNLM2_CHAT, NULL, "What?", s.response, 256 * 7,
                                lengths[k], ids, 4096, NULL);
        CHECK(n == TEMPLATE_NO_ROOM && strstr(mmrm_last_error(), "no room"),
              "max_length %d: got %d (%s)", lengths[k], n, mmrm_last_error());
    }
    int rs = s.info.response_start;
    int n = template_encode(s.tok, TEMPLATE_INTERNLM2_CHAT, NULL, "What?", s.response, 256 * 7, rs + 2,
                            ids, 4096, NULL);
    CHECK(n == rs + 2 && ids[rs] == (unsigned char)s.response[0] && ids[rs + 1] == IM_END,
          "room for one response token: got %d", n);
    long_free(&s);
}

TEST(test_empty_response_still_ends_on_im_end) {
    Tokenizer *tok = tokenizer_byte_new(1);
    int ids[2048];
    TemplateInfo info;
    int n = template_encode(tok, TEMPLATE_INTERNLM2_CHAT, NULL, "Q", " \n ", 256, 2048, ids, 2048, &info);
    CHECK(n > 0 && ids[n - 1] == IM_END && ids[n - 2] == '\n' && info.response_start == n - 1,
          "empty response: %d ids", n);
    int m = template_encode(tok, TEMPLATE_INTERNLM2_CHAT, NULL, "Q", "", 256, n, ids, 2048, NULL);
    CHECK(m == n, "max_length = prompt + <|im_end|> with an empty response: got %d", m);
    tokenizer_free(tok);
}

/* the reference reads the reward before the first pad id (Generalizable-MM-RM's reward model);
 * attention is causal, so ending the row there gives the same score */
TEST(test_pad_token_text_ends_the_row_where_the_reference_reads_the_reward) {
    Tokenizer *tok = tokenizer_byte_new(0); /* pad: <pad>, 269 */
    int ids[2048], whole[2048];
    TemplateInfo info;
    int n_whole = template_encode(tok, TEMPLATE_HERMES_2, NULL, "Q", "ab<pad>cd", 4, 2048, whole,
                                  2048, NULL);
    int n = template_encode(tok, TEMPLATE_HERMES_2, NULL, "Q", "ab<pad>cd", 4, 2048, ids, 2048,
                            &info);
    CHECK(n > 2 && ids[n - 1] == 'b' && ids[n - 2] == 'a' && info.pad_cut == 4,
          "pad in the response: %d ids ending %d, pad_cut %d", n, n > 0 ? ids[n - 1] : -1,
          info.pad_cut);
    CHECK(n_whole == n && info.full_length == n + 4, "full length %d", info.full_length);
    n = template_encode(tok, TEMPLATE_HERMES_2, NULL, "Q<pad>", "ab", 4, 2048, ids, 2048, &info);
    CHECK(n > 0 && ids[n - 1] == 'Q' && n < info.response_start,
          "pad in the prompt: the row ends inside the prompt, got %d", n);
    n = template_encode(tok, TEMPLATE_HERMES_2, "S<pad>", "Q", "ab", 4, 2048, ids, 2048, NULL);
    CHECK(n == TEMPLATE_IMAGE_CUT && strstr(mmrm_last_error(), "pad token"),
          "pad before the image block: got %d", n);
    n = template_encode(tok, TEMPLATE_HERMES_2, "S<pad>", "Q", "ab", 0, 2048, ids, 2048, NULL);
    CHECK(n > 0 && ids[n - 1] == 'S', "pad in the system turn without an image: got %d", n);
    /* max_length before the pad: the usual truncation, ending on <|im_end|> */
    n = template_encode(tok, TEMPLATE_HERMES_2, NULL, "Q", "abc<pad>cd", 4, n_whole, ids, 2048,
                        &info);
    CHECK(n == n_whole && ids[n - 1] == IM_END && ids[n - 2] == 'a' && info.pad_cut == 0 &&
          info.truncated == 5, "pad beyond max_length: got %d", n);
    tokenizer_free(tok);
}

TEST(test_image_context_written_in_the_text_rejects_the_sample) {
    Tokenizer *tok = tokenizer_byte_new(0);
    int ids[2048];
    const struct {
        const char *prompt, *response;
        int n_image;
    } cases[] = {{"look <IMG_CONTEXT>", "ok", 256}, {"look", "<IMG_CONTEXT>", 256},
                 {"<IMG_CONTEXT>", "ok", 0}};
    for (int k = 0; k < 3; k++) {
        int n = template_encode(tok, TEMPLATE_HERMES_2, NULL, cases[k].prompt, cases[k].response,
                                cases[k].n_image, 2048, ids, 2048, NULL);
        CHECK(n == TEMPLATE_IMAGE_TOKEN_TEXT && strstr(mmrm_last_error(), "<IMG_CONTEXT>"),
              "case %d: got %d", k, n);
    }
    tokenizer_free(tok);
}

TEST(test_template_names_parse_and_unknown_names_list_the_valid_ones) {
    TemplateKind kind;
    CHECK(template_parse("internlm2-chat", &kind) == 0 && kind == TEMPLATE_INTERNLM2_CHAT,
          "internlm2-chat");
    CHECK(template_parse("Hermes-2", &kind) == 0 && kind == TEMPLATE_HERMES_2, "Hermes-2");
    CHECK(strcmp(template_name(TEMPLATE_HERMES_2), "Hermes-2") == 0 &&
              strcmp(template_name(TEMPLATE_INTERNLM2_CHAT), "internlm2-chat") == 0,
          "names");
    const char *bad[] = {"hermes-2", "internlm2_chat", ""};
    for (int k = 0; k < 3; k++) {
        CHECK(template_parse(bad[k], &kind) == -1, "\"%s\" parsed", bad[k]);
        const char *err = mmrm_last_error();
        CHECK(strstr(err, "internlm2-chat") && strstr(err, "Hermes-2"), "error \"%s\"", err);
    }
}

TEST(test_template_encode_reports_a_too_small_output_buffer) {
    Tokenizer *tok = tokenizer_byte_new(1);
    int ids[300];
    int n = template_encode(tok, TEMPLATE_INTERNLM2_CHAT, NULL, "hi", "yo", 256, 4096, ids, 300, NULL);
    CHECK(n == TEMPLATE_ERROR && strstr(mmrm_last_error(), "room for 300"), "got %d (%s)", n,
          mmrm_last_error());
    tokenizer_free(tok);
}

/* A system message from the model config replaces SYS and nothing else; "" keeps an empty
 * system turn (the reference's template always emits the system header). */
TEST(test_template_system_message_replaces_the_default_system_prompt) {
    const char *systems[] = {"", "Be brief.", " padded \n"};
    for (int k = 0; k < 3; k++)
        for (int kind = 0; kind < 2; kind++) {
            TemplateKind tk = kind ? TEMPLATE_HERMES_2 : TEMPLATE_INTERNLM2_CHAT;
            char *got = template_text(tk, systems[k], "Q?", "A.", 4);
            char want[512];
            snprintf(want, sizeof want,
                     "<|im_start|>system\n%s<|im_end|><|im_start|>user\n<img>"
                     "<IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT></img>\nQ?"
                     "<|im_end|><|im_start|>assistant\nA.<|im_end|>",
                     systems[k]);
            CHECK(strcmp(got, want) == 0, "%s, system \"%s\": got \"%s\"", template_name(tk),
                  systems[k], got);
            free(got);

            /* ids: the spelled-out sequence with the message's bytes in SYS's place */
            Tokenizer *tok = tokenizer_byte_new(kind == 0);
            int ids[256], n = template_encode(tok, tk, systems[k], "Q?", "A.", 4, 256, ids, 256, NULL);
            int want_ids[256], m = 0;
            if (kind == 0) want_ids[m++] = BOS;
            want_ids[m++] = IM_START;
            for (const char *p = "system\n"; *p; p++) want_ids[m++] = (unsigned char)*p;
            for (const char *p = systems[k]; *p; p++) want_ids[m++] = (unsigned char)*p;
            want_ids[m++] = IM_END;
            want_ids[m++] = IM_START;
            for (const char *p = "user\n"; *p; p++) want_ids[m++] = (unsigned char)*p;
            want_ids[m++] = IMG;
            for (int i = 0; i < 4; i++) want_ids[m++] = CTX;
            want_ids[m++] = IMG_END;
            for (const char *p = "\nQ?"; *p; p++) want_ids[m++] = (unsigned char)*p;
            want_ids[m++] = IM_END;
            want_ids[m++] = IM_START;
            for (const char *p = "assistant\nA."; *p; p++) want_ids[m++] = (unsigned char)*p;
            want_ids[m++] = IM_END;
            CHECK(n == m && memcmp(ids, want_ids, (size_t)m * sizeof(int)) == 0,
                  "%s, system \"%s\": %d ids, want %d", template_name(tk), systems[k], n, m);
            tokenizer_free(tok);
        }
    /* NULL is the template's own message */
    char *def = template_text(TEMPLATE_HERMES_2, NULL, "Q?", "A.", 0);
    CHECK(strstr(def, SYS) != NULL && strcmp(template_default_system(TEMPLATE_HERMES_2), SYS) == 0,
          "NULL system: %s", def);
    free(def);
}
