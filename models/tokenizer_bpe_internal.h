/* tokenizer_bpe_internal.h - what the two halves of the byte-level BPE kind share:
 * tokenizer_bpe.c (encoding: byte symbols, merges, the piece cache, NFC and the split) and
 * tokenizer_bpe_load.c (reading HF's files). Private to those two files. */
#ifndef MMRM_TOKENIZER_BPE_INTERNAL_H
#define MMRM_TOKENIZER_BPE_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "models/tokenizer_bpe.h"

/* Qwen2Tokenizer's pattern (tokenization_qwen2.py PRETOKENIZE_REGEX, the Split of its
 * tokenizer.json); GPT-2's is what a ByteLevel pre-tokenizer with use_regex applies */
#define QWEN2_PATTERN                                                                      \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+" \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define GPT2_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

#define MAX_VOCAB (1 << 24)
#define CACHE_SLOTS (1u << 15)      /* power of two; half of it may fill before a reset */
#define CACHE_MAX_PIECE 255         /* longer pieces are merged every time */
#define CACHE_KEY_BYTES (1u << 20)
#define CACHE_IDS (1u << 18)

typedef struct {
    uint64_t key; /* (a+1) << 32 | (b+1); 0: empty */
    uint32_t rank;
    int32_t id;
} MergeSlot;

typedef struct {
    uint64_t hash; /* 0: empty */
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids;
} CacheSlot;

typedef struct {
    pthread_mutex_t mu; /* taken with trylock: a busy cache is skipped, never waited for */
    CacheSlot *slots;   /* [CACHE_SLOTS] */
    unsigned char *keys;
    int *ids;
    size_t used, keys_len, ids_len;
} PieceCache;

struct BpeModel {
    int n_ids;              /* 1 + the largest vocabulary id */
    char *bytes;            /* every token's bytes, back to back */
    uint32_t *tok_off;      /* [n_ids] */
    uint32_t *tok_len;      /* [n_ids]; 0: no token has this id */
    MergeSlot *merges;      /* open addressing, [merge_mask + 1] */
    size_t merge_mask;
    int byte_id[256];       /* id of each byte's symbol */
    int nfc;
    pcre2_code *re;
    int jit;
    char **files;           /* the HF files read, for tokenizer_bpe_save */
    int n_files;
    PieceCache *cache;
};

/* GPT-2's bytes_to_unicode: sym[b] is byte b's code point, inverse[cp] its byte (-1: none) */
void bpe_byte_symbols(uint32_t sym[256], int inverse[324]);
/* cp as UTF-8 into out (at most 4 bytes); the length */
size_t bpe_utf8_put(char *out, uint32_t cp);
uint64_t bpe_hash_bytes(const void *p, size_t n);
/* merge (a, b) -> id at rank; the table has room (sized by the loader) */
void bpe_merge_put(struct BpeModel *m, int a, int b, uint32_t rank, int id);
PieceCache *bpe_cache_new(void);

#endif
