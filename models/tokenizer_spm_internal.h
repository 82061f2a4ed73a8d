/* tokenizer_spm_internal.h - what the two halves of the SentencePiece kind share:
 * tokenizer_spm_load.c (reading tokenizer.model and the HF files beside it; saving) and
 * tokenizer_spm.c (encoding and decoding). Private to those two files. */
#ifndef MMRM_TOKENIZER_SPM_INTERNAL_H
#define MMRM_TOKENIZER_SPM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "models/tokenizer_spm.h"

/* ModelProto.SentencePiece.Type */
enum { PT_NORMAL = 1, PT_UNKNOWN = 2, PT_CONTROL = 3, PT_USER = 4, PT_UNUSED = 5, PT_BYTE = 6 };
enum { MODEL_UNIGRAM = 1, MODEL_BPE = 2, MODEL_WORD = 3, MODEL_CHAR = 4 };
#define SPM_MAX_PIECES (1 << 24)

static const char SPACE_SYM[] __attribute__((unused)) = "\xE2\x96\x81"; /* U+2581, sentencepiece's kSpaceSymbol */
static const char REPLACEMENT[] __attribute__((unused)) = "\xEF\xBF\xBD"; /* U+FFFD */

typedef struct {
    const char *text; /* into SpmModel.blob */
    uint32_t len;
    float score;
    int type;
} Piece;

/* an open-addressing map piece text -> id */
typedef struct {
    int *slot; /* [mask + 1], -1 empty */
    uint32_t mask;
} PieceMap;

struct SpmModel {
    char *raw;      /* the file's bytes, written back as they are by tokenizer_spm_save */
    size_t raw_len;
    int n;          /* pieces */
    Piece *pieces;  /* [n] */
    char *blob;     /* the pieces' texts */
    PieceMap normal;   /* NORMAL, USER_DEFINED, UNUSED: what merges look up */
    PieceMap reserved; /* UNKNOWN, CONTROL, BYTE: looked up first for ids */
    int unk_id;
    int byte_fallback;
    int byte_id[256];  /* <0xXX> pieces; unk_id where absent */
    int add_dummy_prefix;
    int bos_id, eos_id, pad_id; /* trainer_spec's, -1 when not a piece */
    char *unk_surface;
    int n_user;
    int *user;         /* [n_user] USER_DEFINED ids, grouped by first byte: */
    int user_at[257];  /* those starting with byte c are user[user_at[c]..user_at[c+1]) */
};

/* the id of piece text s[0..n) in map, -1 if none */
int spm_map_find(const PieceMap *map, const Piece *pieces, const char *s, size_t n);
/* the id encoding gives s[0..n): reserved pieces first, then the others; -1 if none */
int spm_piece_id(const SpmModel *m, const char *s, size_t n);
/* the byte a BYTE piece "<0xXX>" stands for, -1 if p is not one */
int spm_byte_of_piece(const Piece *p);
/* the special token with this id, NULL if none */
const SpecialToken *spm_special_of(const Tokenizer *tok, int id);

#endif
