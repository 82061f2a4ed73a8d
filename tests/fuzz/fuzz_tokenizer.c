/* fuzz_tokenizer.c - libFuzzer target: a tokenizer folder in every kind tokenizer_load reads.
 * The input holds the files below split at FUZZ_SEP (fuzz.h), in this order: mmrm's own
 * mmrm_tokenizer.json; HF's tokenizer.json, or vocab.json + merges.txt, with
 * tokenizer_config.json, added_tokens.json and special_tokens_map.json; the SentencePiece
 * tokenizer.model. A tokenizer that loads encodes a fixed text (special tokens, multi-byte
 * and invalid UTF-8 included) and decodes the ids back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/tokenizer.h"
#include "runtime/error.h"
#include "tests/fuzz/fuzz.h"

static const char *const g_names[] = {
    "mmrm_tokenizer.json", "tokenizer.json", "vocab.json", "merges.txt",
    "tokenizer_config.json", "added_tokens.json", "special_tokens_map.json", "tokenizer.model"};
enum { NFILES = sizeof g_names / sizeof g_names[0] };
static const char *g_dir;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    mmrm_set_quiet(1);
    g_dir = fuzz_tmpdir(g_names, NFILES);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char text[] = "<|im_start|>user\n<image> Which one? 7 cats, \xc3\xa9t\xc3\xa9 "
                               "\xe4\xb8\xad\xe6\x96\x87 \xff\xfe  end<|im_end|></s>\n";
    fuzz_write_parts(g_dir, data, size, g_names, NFILES);
    Tokenizer *tok = tokenizer_load(g_dir);
    if (!tok) return 0;
    int ids[1024];
    int n = tokenizer_encode(tok, text, sizeof text - 1, ids, 1024);
    if (n > 1024) abort(); /* the text is 80 bytes: no kind needs 13 ids per byte */
    if (n > 0) {
        size_t len;
        free(tokenizer_decode(tok, ids, n, &len));
    }
    for (int k = 0; k < tok->n_special; k++) tokenizer_special_id(tok, tok->special[k].text);
    tokenizer_free(tok);
    return 0;
}
