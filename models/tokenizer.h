/* tokenizer.h - text <-> token ids behind one interface, whatever the tokenizer kind.
 *
 * A Tokenizer has a kind and the calls below dispatch on it. Every kind shares the
 * special-token layer: encoding first splits the text at special-token strings (leftmost,
 * longest match, as HF tokenizers split added tokens) and emits their ids; the text between
 * them goes to the kind's own encoder. Encoding never adds BOS/EOS by itself: add_bos records
 * the model's convention and the chat template (models/template.h) applies it.
 *
 * Kinds:
 * - TOKENIZER_BYTE: ids 0..255 are the raw bytes, then the special tokens; any byte string
 *   round-trips exactly through encode/decode. The default set (tokenizer_byte_new) is
 *     256 <s> (bos)   257 </s> (eos)   258 <|im_start|>   259 <|im_end|>
 *     260 <img>   261 </img>   262 <IMG_CONTEXT>   263 <quad>   264 </quad>
 *     265 <ref>   266 </ref>   267 <box>   268 </box>   269 <pad> (pad)
 *   so vocab_size 270; pad has its own id so padding can never be mistaken for text.
 * - TOKENIZER_WORD: the byte tokenizer plus a vocabulary of whole words, for small models
 *   whose byte sequences would be too long (the synthetic benchmark's). The plain text is cut
 *   into pieces: a word piece is a maximal run of ASCII letters and digits with the one space
 *   before it, if any (" red", "The"); every other byte is a piece of its own. A word piece in
 *   the vocabulary is one id; otherwise its space (if any) is a byte and the bare word is
 *   looked up again; a word not in the vocabulary is spelled out in bytes. Every byte string
 *   still round-trips exactly. tokenizer_word_new puts the default special tokens at 256..269
 *   and the words at 270 onwards, in the order given.
 * - TOKENIZER_SPM: SentencePiece BPE with byte fallback (InternLM2's, Llama's; see
 *   models/tokenizer_spm.c), loaded from a model directory's tokenizer.model when it has no
 *   TOKENIZER_FILE. Its special tokens are the added tokens of the HF files beside it
 *   (tokenizer_config.json's added_tokens_decoder, added_tokens.json, special_tokens_map.json;
 *   without them the model's <unk>, <s>, </s>). Each run of text between special tokens is
 *   encoded exactly as sentencepiece's encode(), dummy prefix "▁" included, which is what
 *   transformers' slow LlamaTokenizer (legacy) does; decoding treats each run alone, so
 *   valid UTF-8 without a literal "▁" round-trips exactly. Each invalid UTF-8 byte is read
 *   as U+FFFD, as sentencepiece's C++ does. tokenizer_save writes tokenizer.model and a
 *   tokenizer_config.json.
 *
 * On disk a byte or word tokenizer lives in the model directory as TOKENIZER_FILE (JSON):
 *   {"type": "byte", "vocab_size": 270,
 *    "special_tokens": [{"id": 256, "content": "<s>"}, ...],
 *    "bos_id": 256, "eos_id": 257, "pad_id": 269, "add_bos": true}
 * bos_id/eos_id/pad_id are special-token ids or null (none). Special ids lie in
 * [256, vocab_size); ids there without a token are unused (decoding one is an error).
 * A word tokenizer has "type": "word" and one more field, "words": [{"id": 270, "content":
 * " red"}, ...]: ids in [256, vocab_size) that no special token uses, contents distinct word
 * pieces as defined above.
 */
#ifndef MMRM_TOKENIZER_H
#define MMRM_TOKENIZER_H

#include <stddef.h>

#define TOKENIZER_FILE "mmrm_tokenizer.json"

typedef enum { TOKENIZER_BYTE, TOKENIZER_WORD, TOKENIZER_BPE, TOKENIZER_SPM } TokenizerKind;

struct BpeModel; /* models/tokenizer_bpe.c */
typedef struct SpmModel SpmModel; /* models/tokenizer_spm.c */

typedef struct {
    char *text; /* NUL-terminated, never empty */
    size_t len;
    int id;
} SpecialToken;

typedef struct {
    TokenizerKind kind;
    int vocab_size;
    int bos_id, eos_id, pad_id; /* -1: the tokenizer has none */
    int add_bos;                /* model inputs start with bos_id */
    int n_special;
    SpecialToken *special;      /* [n_special] */
    unsigned char special_first[256]; /* 1 where some special token starts with that byte */
    int n_words;                /* TOKENIZER_WORD: the vocabulary, sorted by text */
    SpecialToken *words;        /* [n_words] (text, len, id) */
    struct BpeModel *bpe;       /* TOKENIZER_BPE: vocabulary, merges, split regex */
    SpmModel *spm;              /* TOKENIZER_SPM: the sentencepiece model */
} Tokenizer;

/* the byte tokenizer with the default special tokens above */
Tokenizer *tokenizer_byte_new(int add_bos);
/* a word tokenizer: the byte tokenizer's special tokens, then words[0..n) at ids 270...
 * NULL with an error if a word is not a word piece or appears twice. */
Tokenizer *tokenizer_word_new(const char *const *words, int n, int add_bos);
/* Calls fn(piece, len, ctx) for each word piece of text[0..len) (special tokens are not
 * recognised here): the pieces a word vocabulary for this text needs. */
void tokenizer_word_pieces(const char *text, size_t len,
                           void (*fn)(const char *piece, size_t len, void *ctx), void *ctx);
void tokenizer_free(Tokenizer *tok);

/* Loads DIR/TOKENIZER_FILE, validating it; without one, DIR's HF BPE files (TOKENIZER_BPE).
 * NULL with mmrm_last_error() naming the file and field on failure. tokenizer_save writes
 * TOKENIZER_FILE (atomically, via a temporary file), or for TOKENIZER_BPE copies of the HF
 * files it was loaded from; 0 or -1. */
Tokenizer *tokenizer_load(const char *dir);
/* "byte", "word", "bpe", "sentencepiece" */
const char *tokenizer_kind_name(TokenizerKind kind);
/* 1 if dir holds files tokenizer_load reads (TOKENIZER_FILE, HF BPE files, tokenizer.model) */
int tokenizer_present(const char *dir);
int tokenizer_save(const Tokenizer *tok, const char *dir);

/* Encodes text[0..len) (it may hold any bytes, NUL included). Writes at most cap ids and
 * returns how many the whole text needs (like snprintf: a result > cap means "call again
 * with a bigger buffer"); -1 on error. The byte and word kinds never need more ids than
 * len; BPE never more than the bytes of the text in NFC, which can be longer (U+0958 becomes
 * two code points; at most 3x); the sentencepiece kind can need more (its dummy prefix "▁"
 * adds an id per run of text between special tokens: "7" -> "▁", "7" in Llama's; byte
 * fallback spells an unknown character, and each invalid UTF-8 byte as U+FFFD, in up to 3
 * byte ids per input byte): size by the result. */
int tokenizer_encode(const Tokenizer *tok, const char *text, size_t len, int *ids, int cap);

/* Decodes ids[0..n) into a new NUL-terminated buffer (free() it) of *len_out bytes; NULL
 * with an error for an id that has no token. */
char *tokenizer_decode(const Tokenizer *tok, const int *ids, int n, size_t *len_out);

/* id of the special token whose text is exactly `text`; -1 with an error if none */
int tokenizer_special_id(const Tokenizer *tok, const char *text);

#endif
