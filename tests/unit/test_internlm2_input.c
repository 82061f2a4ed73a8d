/* test_internlm2_input.c - InternVL2-2B/8B's exact input: the internlm2-chat template over an
 * InternLM2-layout SentencePiece tokenizer (tests/fixtures/tokenizers/internlm2: a small
 * BPE model with InternLM2-chat's and InternVL2's added tokens at their published ids) gives,
 * for every row of tests/fixtures/internlm2_input/rows.jsonl (written by
 * tests/oracle/gen_internlm2_input_fixtures.py from InternVL's conversation template,
 * Generalizable-MM-RM's preprocess_internlm and transformers' slow LlamaTokenizer with
 * legacy=True, as InternLM2's tokenizer behaves), the reference's text, its ids (<s> first)
 * and the token where the reference reads the reward (lengths - 1 in mmrm).
 * The rows that differ by design are checked as such, as in test_internvl_input.c: the
 * reference drops the closing <|im_end|> of a response that is empty after .strip() (mmrm
 * keeps it, models/template.h), and a text holding the pad token's text ("</s>") is read
 * before it, where mmrm ends the row (ids equal up to there). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/template.h"
#include "models/tokenizer.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "tests/harness.h"

#define ROWS "tests/fixtures/internlm2_input/rows.jsonl"
#define TOKDIR "tests/fixtures/tokenizers/internlm2"

/* one fixture row against mmrm; 1 if it agrees */
static int check_row(const Tokenizer *tok, const cJSON *rec, int line) {
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(rec, "name"));
    const cJSON *sys = cJSON_GetObjectItem(rec, "system");
    const char *system = cJSON_IsString(sys) ? sys->valuestring : NULL;
    const char *prompt = cJSON_GetStringValue(cJSON_GetObjectItem(rec, "prompt"));
    const char *response = cJSON_GetStringValue(cJSON_GetObjectItem(rec, "response"));
    const char *want_text = cJSON_GetStringValue(cJSON_GetObjectItem(rec, "text"));
    const cJSON *want = cJSON_GetObjectItem(rec, "ids");
    int n_image = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(rec, "num_image_token"));
    int reward_at = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(rec, "reward_index"));
    int pad = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(rec, "pad_id"));
    int drops_im_end = cJSON_IsTrue(cJSON_GetObjectItem(rec, "reference_drops_im_end"));
    if (!CHECK(name && prompt && response && want_text && cJSON_IsArray(want),
               "%s:%d: a field is missing", ROWS, line))
        return 0;
    int n_want = cJSON_GetArraySize(want), ok = 1;
    int *ref = malloc((size_t)n_want * sizeof *ref);
    for (int i = 0; i < n_want; i++) ref[i] = cJSON_GetArrayItem(want, i)->valueint;

    if (!drops_im_end) {
        char *text = template_text(TEMPLATE_INTERNLM2_CHAT, system, prompt, response, n_image);
        ok &= CHECK(strcmp(text, want_text) == 0, "%s: text differs from the reference's", name);
        free(text);
    }

    int cap = n_want + 8, *got = malloc((size_t)cap * sizeof *got);
    TemplateInfo info;
    int n = template_encode(tok, TEMPLATE_INTERNLM2_CHAT, system, prompt, response, n_image,
                            8192, got, cap, &info);
    ok &= CHECK(n > 0, "%s: template_encode gave %d (%s)", name, n, mmrm_last_error());
    if (n > 0) {
        int im_end = tokenizer_special_id(tok, "<|im_end|>");
        /* the ids mmrm must give: the reference's, plus the <|im_end|> it drops, up to and
         * including the token where it reads the reward */
        int n_expect = drops_im_end ? n_want + 1 : reward_at + 1;
        int same = n == n_expect;
        for (int i = 0; same && i < n; i++)
            same = got[i] == (i < n_want ? ref[i] : im_end);
        if (!same) {
            int i = 0;
            while (i < n && i < n_want && got[i] == ref[i]) i++;
            CHECK(0, "%s: %d ids, expected %d (reference %d); first difference at %d: %d vs %d",
                  name, n, n_expect, n_want, i, i < n ? got[i] : -1, i < n_want ? ref[i] : -1);
        }
        ok &= same;
        ok &= CHECK(got[0] == tok->bos_id, "%s: starts with %d, not <s>", name, got[0]);
        if (drops_im_end)
            ok &= CHECK(reward_at == n_want - 1 && n - 1 == n_want, "%s: reference reads at %d "
                        "(the assistant header's last token), mmrm at the added <|im_end|> %d",
                        name, reward_at, n - 1);
        else if (n < n_want) /* the rest of the reference's row starts with the pad id */
            ok &= CHECK(ref[n] == pad && info.pad_cut == n_want - n,
                        "%s: row ends at %d, but the reference's next id is %d (pad %d)", name, n,
                        ref[n], pad);
        else
            ok &= CHECK(n - 1 == reward_at && got[n - 1] == im_end,
                        "%s: mmrm reads at %d, the reference at %d", name, n - 1, reward_at);
    }
    free(got);
    free(ref);
    return ok;
}

TEST(test_internlm2_tokenizer_fixture_has_internvl2_8b_special_ids) {
    Tokenizer *tok = tokenizer_load(TOKDIR);
    if (!CHECK(tok, "%s: %s", TOKDIR, mmrm_last_error())) return;
    static const struct {
        const char *text;
        int id;
    } want[] = {{"<unk>", 0},          {"<s>", 1},         {"</s>", 2},
                {"<|plugin|>", 92538}, {"<|interpreter|>", 92539},
                {"<|action_end|>", 92540}, {"<|action_start|>", 92541},
                {"<|im_end|>", 92542}, {"<|im_start|>", 92543}, {"<img>", 92544},
                {"</img>", 92545},     {"<IMG_CONTEXT>", 92546}, {"<quad>", 92547},
                {"</quad>", 92548},    {"<ref>", 92549},   {"</ref>", 92550},
                {"<box>", 92551},      {"</box>", 92552}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(tokenizer_special_id(tok, want[i].text) == want[i].id, "%s: id %d, want %d",
              want[i].text, tokenizer_special_id(tok, want[i].text), want[i].id);
    CHECK(tok->kind == TOKENIZER_SPM && tok->vocab_size == 92553 && tok->bos_id == 1 &&
              tok->eos_id == 2 && tok->pad_id == 2 && tok->add_bos,
          "kind %d vocab %d bos %d eos %d pad %d add_bos %d", (int)tok->kind, tok->vocab_size,
          tok->bos_id, tok->eos_id, tok->pad_id, tok->add_bos);
    tokenizer_free(tok);
}

TEST(test_internlm2_chat_rows_match_internvl2_8b_reference_ids_and_reward_position) {
    Tokenizer *tok = tokenizer_load(TOKDIR);
    size_t n;
    char *buf = fs_read_file(ROWS, &n);
    if (!CHECK(tok && buf, "fixtures: %s", mmrm_last_error())) goto done;
    int rows = 0, mismatches = 0, line = 0, drop_rows = 0, pad_rows = 0;
    for (char *s = buf, *e; s < buf + n; s = e + 1) {
        e = memchr(s, '\n', (size_t)(buf + n - s));
        if (!e) e = buf + n;
        if (e == s) continue;
        line++;
        cJSON *rec = cJSON_ParseWithLength(s, (size_t)(e - s));
        if (!CHECK(rec, "%s:%d: not JSON", ROWS, line)) continue;
        int pad = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(rec, "pad_id"));
        CHECK(pad == tok->pad_id, "%s:%d: pad id %d, the tokenizer's %d", ROWS, line, pad,
              tok->pad_id);
        drop_rows += cJSON_IsTrue(cJSON_GetObjectItem(rec, "reference_drops_im_end"));
        const cJSON *ids = cJSON_GetObjectItem(rec, "ids");
        int reward_at = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(rec, "reward_index"));
        pad_rows += reward_at + 1 < cJSON_GetArraySize(ids);
        rows++;
        mismatches += !check_row(tok, rec, line);
        cJSON_Delete(rec);
    }
    CHECK(rows >= 14 && drop_rows == 2 && pad_rows == 2, "%s: %d rows, %d dropping <|im_end|>, "
          "%d read before a pad", ROWS, rows, drop_rows, pad_rows);
    CHECK(mismatches == 0, "%d of %d rows differ from the reference", mismatches, rows);
    printf("    %s: %d rows, %d mismatches\n", ROWS, rows, mismatches);
done:
    free(buf);
    tokenizer_free(tok);
}
