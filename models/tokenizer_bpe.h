/* tokenizer_bpe.h - the byte-level BPE kind of models/tokenizer.h (private to models/).
 *
 * Encoding a text between added tokens, as HF tokenizers does for Qwen2:
 *   1. NFC (utf8proc);
 *   2. the pre-tokenizer's Split regex (PCRE2, UTF + UCP, JIT; \s spelled as Unicode's
 *      White_Space, which is Oniguruma's \s), matches and the gaps between them are pieces;
 *   3. each piece's bytes become GPT-2 byte symbols, merged by rank (lowest first, leftmost
 *      on ties: HF's BPE::merge_word), with a cache of recent pieces.
 * Invalid UTF-8: a byte that does not belong to a valid UTF-8 sequence is U+FFFD for NFC and
 * the regex (what HF does with a lone surrogate, i.e. Python's errors="surrogateescape"),
 * while its own byte is what BPE merges, so decoding gives the input bytes back. Tokens are
 * stored as raw bytes; decoding concatenates them.
 * Added tokens (special or not) are matched on the raw text, before NFC: right for every
 * Qwen2/InternVL2 token (all "normalized": false); lstrip/rstrip/single_word are refused.
 */
#ifndef MMRM_TOKENIZER_BPE_H
#define MMRM_TOKENIZER_BPE_H

#include <stddef.h>

#include "models/tokenizer.h"

/* 1 if dir holds tokenizer.json or vocab.json (the HF files tokenizer_bpe_load reads) */
int tokenizer_bpe_present(const char *dir);
/* dir's tokenizer.json (preferred) or vocab.json + merges.txt, with the added tokens of
 * tokenizer_config.json (added_tokens_decoder) and added_tokens.json and the roles
 * (bos/eos/pad) of tokenizer_config.json / special_tokens_map.json. NULL with an error
 * naming the file and what is wrong. */
Tokenizer *tokenizer_bpe_load(const char *dir);
/* copies the HF files tok was loaded from into dir; 0 or -1 */
int tokenizer_bpe_save(const Tokenizer *tok, const char *dir);
void bpe_free(struct BpeModel *bpe);

/* encodes plain text s[0..n) (no added tokens in it): ids written while *count < cap,
 * *count advanced by every id */
void bpe_encode(const struct BpeModel *bpe, const char *s, size_t n, int *ids, int cap,
                size_t *count);
/* bytes of a vocabulary token, NULL if the id has none */
const char *bpe_token_bytes(const struct BpeModel *bpe, int id, size_t *n);

#endif
