/* tokenizer_bpe.c - byte-level BPE (Qwen2's tokenizer): loading HF tokenizer files, NFC,
 * the split regex, GPT-2's byte symbols and merges by rank. See tokenizer_bpe.h. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "models/tokenizer_bpe.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "runtime/error.h"
#include "runtime/fsutil.h"

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

/* ---- GPT-2's bytes_to_unicode ---- */

static int byte_is_printable(int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

/* symbol code point of each byte, and the byte of each symbol (-1: not a symbol) */
static void byte_symbols(uint32_t sym[256], int inverse[324]) {
    int extra = 0;
    for (int c = 0; c < 324; c++) inverse[c] = -1;
    for (int b = 0; b < 256; b++) {
        sym[b] = byte_is_printable(b) ? (uint32_t)b : (uint32_t)(256 + extra++);
        inverse[sym[b]] = b;
    }
}

/* ---- UTF-8 ---- */

/* length of the valid UTF-8 sequence at s[0..n) (no overlongs, surrogates or code points
 * past U+10FFFF: what Rust's str and utf8proc accept); 0 if the byte starts none */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;  /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0; /* past U+10FFFF */
        return 4;
    }
    return 0;
}

static size_t utf8_put(char *out, uint32_t cp) {
    return (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)out);
}

/* ---- hashing ---- */

static uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h | 1; /* never 0, the empty mark */
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static int merge_find(const struct BpeModel *m, int a, int b, uint32_t *rank, int *id) {
    uint64_t key = ((uint64_t)(a + 1) << 32) | (uint32_t)(b + 1);
    for (size_t i = mix64(key) & m->merge_mask;; i = (i + 1) & m->merge_mask) {
        const MergeSlot *s = &m->merges[i];
        if (s->key == key) {
            *rank = s->rank;
            *id = s->id;
            return 1;
        }
        if (!s->key) return 0;
    }
}

/* a later duplicate of a merge replaces the earlier one, as in HF's HashMap */
static void merge_put(struct BpeModel *m, int a, int b, uint32_t rank, int id) {
    uint64_t key = ((uint64_t)(a + 1) << 32) | (uint32_t)(b + 1);
    size_t i = mix64(key) & m->merge_mask;
    while (m->merges[i].key && m->merges[i].key != key) i = (i + 1) & m->merge_mask;
    m->merges[i] = (MergeSlot){key, rank, id};
}

/* ---- the vocabulary while loading: token string (byte symbols) -> id ---- */

typedef struct {
    const char *text; /* borrowed from the parsed JSON */
    size_t len;
    int id;
} VocabSlot;

typedef struct {
    VocabSlot *slots;
    size_t mask;
} VocabMap;

static int vocab_get(const VocabMap *v, const char *s, size_t n) {
    for (size_t i = hash_bytes(s, n) & v->mask;; i = (i + 1) & v->mask) {
        const VocabSlot *e = &v->slots[i];
        if (!e->text) return -1;
        if (e->len == n && memcmp(e->text, s, n) == 0) return e->id;
    }
}

static void vocab_put(VocabMap *v, const char *s, size_t n, int id) {
    size_t i = hash_bytes(s, n) & v->mask;
    while (v->slots[i].text) i = (i + 1) & v->mask;
    v->slots[i] = (VocabSlot){s, n, id};
}

/* ---- the piece cache ---- */

static PieceCache *cache_new(void) {
    PieceCache *c = xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->slots = xcalloc(CACHE_SLOTS, sizeof *c->slots);
    c->keys = xmalloc(CACHE_KEY_BYTES);
    c->ids = xmalloc(CACHE_IDS * sizeof *c->ids);
    return c;
}

static void cache_free(PieceCache *c) {
    if (!c) return;
    pthread_mutex_destroy(&c->mu);
    free(c->slots);
    free(c->keys);
    free(c->ids);
    free(c);
}

/* ids of piece p[0..n) into out (room for n); their count, or -1 if not cached */
static int cache_get(PieceCache *c, uint64_t h, const unsigned char *p, size_t n, int *out) {
    if (pthread_mutex_trylock(&c->mu) != 0) return -1;
    int found = -1;
    for (size_t i = h & (CACHE_SLOTS - 1);; i = (i + 1) & (CACHE_SLOTS - 1)) {
        const CacheSlot *s = &c->slots[i];
        if (!s->hash) break;
        if (s->hash == h && s->key_len == n && memcmp(c->keys + s->key_off, p, n) == 0) {
            memcpy(out, c->ids + s->ids_off, s->n_ids * sizeof *out);
            found = s->n_ids;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}

static void cache_put(PieceCache *c, uint64_t h, const unsigned char *p, size_t n,
                      const int *ids, int n_ids) {
    if (pthread_mutex_trylock(&c->mu) != 0) return;
    if (c->used >= CACHE_SLOTS / 2 || c->keys_len + n > CACHE_KEY_BYTES ||
        c->ids_len + (size_t)n_ids > CACHE_IDS) {
        memset(c->slots, 0, CACHE_SLOTS * sizeof *c->slots);
        c->used = c->keys_len = c->ids_len = 0;
    }
    size_t i = h & (CACHE_SLOTS - 1);
    while (c->slots[i].hash) i = (i + 1) & (CACHE_SLOTS - 1);
    c->slots[i] = (CacheSlot){h, (uint32_t)c->keys_len, (uint32_t)c->ids_len, (uint16_t)n,
                              (uint16_t)n_ids};
    memcpy(c->keys + c->keys_len, p, n);
    memcpy(c->ids + c->ids_len, ids, (size_t)n_ids * sizeof *ids);
    c->keys_len += n;
    c->ids_len += (size_t)n_ids;
    c->used++;
    pthread_mutex_unlock(&c->mu);
}

/* ---- BPE of one piece ---- */

typedef struct {
    int id, prev, next, len; /* len 0: merged into the symbol on its left */
} Sym;

typedef struct {
    uint32_t rank;
    int pos, id;
} Cand;

static int cand_less(const Cand *a, const Cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(Cand *h, int *n, Cand c) {
    int i = (*n)++;
    while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

/* Floyd's pop: the hole goes down to a leaf along the smaller children (one comparison per
 * level), then the last element rises from there; half the comparisons of the textbook pop,
 * which matters for the cache misses of a long piece's large heap */
static Cand heap_pop(Cand *h, int *n) {
    Cand top = h[0], last = h[--*n];
    int i = 0;
    for (int c = 1; c < *n; c = 2 * i + 1) {
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        h[i] = h[c];
        i = c;
    }
    while (i > 0 && cand_less(&last, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    if (*n > 0) h[i] = last;
    return top;
}

static void push_pair(const struct BpeModel *m, const Sym *sym, int pos, Cand *heap, int *nh) {
    uint32_t rank;
    int id;
    if (merge_find(m, sym[pos].id, sym[sym[pos].next].id, &rank, &id))
        heap_push(heap, nh, (Cand){rank, pos, id});
}

/* HF's Word::merge_all: the lowest-ranked pair first, leftmost among equals; a queued pair
 * is skipped once either side has changed. Writes the ids to out (room for n); their count. */
static int merge_piece(const struct BpeModel *m, const unsigned char *p, int n, int *out) {
    Sym sym_stack[64];
    Cand heap_stack[3 * 64];
    Sym *sym = n <= 64 ? sym_stack : xmalloc((size_t)n * sizeof *sym);
    Cand *heap = n <= 64 ? heap_stack : xmalloc((size_t)3 * (size_t)n * sizeof *heap);
    int nh = 0;
    for (int i = 0; i < n; i++) sym[i] = (Sym){m->byte_id[p[i]], i - 1, i + 1 < n ? i + 1 : -1, 1};
    for (int i = 0; i + 1 < n; i++) push_pair(m, sym, i, heap, &nh);
    while (nh > 0) {
        Cand top = heap_pop(heap, &nh);
        Sym *s = &sym[top.pos];
        uint32_t rank;
        int id;
        if (!s->len || s->next < 0) continue;
        if (!merge_find(m, s->id, sym[s->next].id, &rank, &id) || id != top.id) continue;
        Sym *right = &sym[s->next];
        s->id = id;
        s->len += right->len;
        s->next = right->next;
        right->len = 0;
        if (s->next >= 0) sym[s->next].prev = top.pos;
        if (s->prev >= 0) push_pair(m, sym, s->prev, heap, &nh);
        if (s->next >= 0) push_pair(m, sym, top.pos, heap, &nh);
    }
    int k = 0;
    for (int i = 0; i >= 0; i = sym[i].next) out[k++] = sym[i].id;
    if (sym != sym_stack) free(sym);
    if (heap != heap_stack) free(heap);
    return k;
}

static void emit(int id, int *ids, int cap, size_t *count) {
    if (*count < (size_t)cap) ids[*count] = id;
    (*count)++;
}

static void encode_piece(const struct BpeModel *m, const unsigned char *p, size_t n, int *ids,
                         int cap, size_t *count) {
    if (n == 1) {
        emit(m->byte_id[p[0]], ids, cap, count);
        return;
    }
    int local[CACHE_MAX_PIECE];
    if (n <= CACHE_MAX_PIECE) {
        uint64_t h = hash_bytes(p, n);
        int k = cache_get(m->cache, h, p, n, local);
        if (k < 0) {
            k = merge_piece(m, p, (int)n, local);
            cache_put(m->cache, h, p, n, local, k);
        }
        for (int i = 0; i < k; i++) emit(local[i], ids, cap, count);
        return;
    }
    int *out = xmalloc(n * sizeof *out);
    int k = merge_piece(m, p, (int)n, out);
    for (int i = 0; i < k; i++) emit(out[i], ids, cap, count);
    free(out);
}

/* ---- normalisation and splitting ---- */

typedef struct {
    const unsigned char *view; /* what NFC and the regex see (valid UTF-8) */
    size_t view_len;
    const unsigned char *real; /* what BPE merges: view, with invalid bytes as themselves */
    size_t *map;               /* [view_len + 1]: view offset -> real offset; NULL: same */
    unsigned char *own_view, *own_real;
} Text;

/* NFC of a valid UTF-8 run, appended to out (grown as needed) */
static void nfc_append(const struct BpeModel *m, const unsigned char *s, size_t n,
                       unsigned char **out, size_t *len, size_t *cap) {
    utf8proc_uint8_t *norm = NULL;
    const unsigned char *src = s;
    size_t src_len = n;
    int ascii = 1;
    for (size_t i = 0; i < n && ascii; i++) ascii = s[i] < 0x80;
    if (m->nfc && !ascii) {
        utf8proc_ssize_t r = utf8proc_map(s, (utf8proc_ssize_t)n, &norm,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        MMRM_CHECK(r >= 0, "tokenizer: NFC failed: %s", utf8proc_errmsg(r));
        src = norm;
        src_len = (size_t)r;
    }
    if (*len + src_len + 1 > *cap) {
        *cap = 2 * (*len + src_len) + 16;
        *out = xrealloc(*out, *cap);
    }
    memcpy(*out + *len, src, src_len);
    *len += src_len;
    free(norm);
}

static void text_prepare(const struct BpeModel *m, const unsigned char *s, size_t n, Text *t) {
    memset(t, 0, sizeof *t);
    size_t bad = 0, ascii = 1;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        ascii = 0;
        size_t k = utf8_len(s + i, n - i);
        if (k) i += k;
        else bad++, i++;
    }
    if (ascii || (!bad && !m->nfc)) {
        t->view = t->real = s;
        t->view_len = n;
        return;
    }
    size_t cap = 0, len = 0;
    if (!bad) {
        nfc_append(m, s, n, &t->own_view, &len, &cap);
        t->view = t->real = t->own_view;
        t->view_len = len;
        return;
    }
    /* invalid bytes: each is U+FFFD in the view and itself in the real text */
    size_t rcap = n + 1, rlen = 0, mcap = 0;
    t->own_real = xmalloc(rcap);
    for (size_t i = 0; i < n;) {
        size_t j = i, k;
        while (j < n && (k = utf8_len(s + j, n - j)) != 0) j += k;
        if (j > i) {
            size_t before = len;
            nfc_append(m, s + i, j - i, &t->own_view, &len, &cap);
            if (rlen + (len - before) > rcap) {
                rcap = 2 * (rlen + len - before) + 16;
                t->own_real = xrealloc(t->own_real, rcap);
            }
            if (len + 4 > mcap) {
                mcap = 2 * len + 16;
                t->map = xrealloc(t->map, mcap * sizeof *t->map);
            }
            for (size_t v = before; v < len; v++) t->map[v] = rlen + (v - before);
            memcpy(t->own_real + rlen, t->own_view + before, len - before);
            rlen += len - before;
            i = j;
        }
        if (i < n) { /* s[i] is invalid */
            if (len + 4 > cap) {
                cap = 2 * len + 16;
                t->own_view = xrealloc(t->own_view, cap);
            }
            if (len + 4 > mcap) {
                mcap = 2 * len + 16;
                t->map = xrealloc(t->map, mcap * sizeof *t->map);
            }
            if (rlen + 1 > rcap) {
                rcap = 2 * rlen + 16;
                t->own_real = xrealloc(t->own_real, rcap);
            }
            memcpy(t->own_view + len, "\xEF\xBF\xBD", 3);
            for (int v = 0; v < 3; v++) t->map[len + v] = rlen;
            len += 3;
            t->own_real[rlen++] = s[i++];
        }
    }
    t->map[len] = rlen;
    t->view = t->own_view;
    t->view_len = len;
    t->real = t->own_real;
}

static void encode_span(const struct BpeModel *m, const Text *t, size_t a, size_t b, int *ids,
                        int cap, size_t *count) {
    if (b <= a) return;
    if (t->map) {
        a = t->map[a];
        b = t->map[b];
    }
    encode_piece(m, t->real + a, b - a, ids, cap, count);
}

void bpe_encode(const struct BpeModel *m, const char *s, size_t n, int *ids, int cap,
                size_t *count) {
    if (!n) return;
    Text t;
    text_prepare(m, (const unsigned char *)s, n, &t);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(m->re, NULL);
    MMRM_CHECK(md, "tokenizer: out of memory (PCRE2 match data)");
    size_t gap = 0, at = 0; /* gap: start of text no match has covered */
    while (at < t.view_len) {
        int rc = m->jit ? pcre2_jit_match(m->re, t.view, t.view_len, at, 0, md, NULL)
                        : pcre2_match(m->re, t.view, t.view_len, at, PCRE2_NO_UTF_CHECK, md,
                                      NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        MMRM_CHECK(rc >= 0, "tokenizer: the split regex failed (PCRE2 error %d)", rc);
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match splits nothing: search again one character on */
            at = ms + utf8_len(t.view + ms, t.view_len - ms);
            continue;
        }
        encode_span(m, &t, gap, ms, ids, cap, count);
        encode_span(m, &t, ms, me, ids, cap, count);
        gap = at = me;
    }
    encode_span(m, &t, gap, t.view_len, ids, cap, count);
    pcre2_match_data_free(md);
    free(t.own_view);
    free(t.own_real);
    free(t.map);
}

const char *bpe_token_bytes(const struct BpeModel *m, int id, size_t *n) {
    if (id < 0 || id >= m->n_ids || !m->tok_len[id]) return NULL;
    *n = m->tok_len[id];
    return m->bytes + m->tok_off[id];
}

void bpe_free(struct BpeModel *m) {
    if (!m) return;
    free(m->bytes);
    free(m->tok_off);
    free(m->tok_len);
    free(m->merges);
    if (m->re) pcre2_code_free(m->re);
    for (int i = 0; i < m->n_files; i++) free(m->files[i]);
    free(m->files);
    cache_free(m->cache);
    free(m);
}

/* ---- loading ---- */

typedef struct {
    const char *dir;
    struct BpeModel *m;
    VocabMap vocab;
    cJSON *docs[8]; /* parsed files, alive until the end of the load */
    int n_docs;
    char *merges_text;
    /* added tokens, merged from every file that lists them */
    struct Added {
        int id, special;
        char *content;
    } *added;
    int n_added;
} Loader;

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void remember_file(Loader *L, const char *path) {
    struct BpeModel *m = L->m;
    m->files = xrealloc(m->files, (size_t)(m->n_files + 1) * sizeof *m->files);
    m->files[m->n_files++] = xstrdup(path);
}

/* dir/name parsed; NULL with *absent = 1 if the file does not exist (when optional), NULL
 * with an error if it cannot be read or parsed */
static cJSON *read_json(Loader *L, const char *name, int optional, int *absent) {
    char path[PATH_MAX];
    if (absent) *absent = 0;
    if (!fs_join(path, sizeof path, L->dir, name)) return NULL;
    if (optional && !file_exists(path)) {
        *absent = 1;
        return NULL;
    }
    size_t len;
    char *text = fs_read_file(path, &len);
    if (!text) {
        mmrm_set_error("%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, NULL, 1);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        int line = 1;
        for (const char *p = text; at && p < at && p < text + len; p++) line += *p == '\n';
        mmrm_set_error("%s:%d: malformed JSON near \"%.20s\" (truncated or not JSON?)", path,
                       line, at && at < text + len ? at : "(end of file)");
    } else {
        MMRM_CHECK(L->n_docs < 8, "tokenizer: too many files");
        L->docs[L->n_docs++] = root;
        remember_file(L, path);
    }
    free(text);
    return root;
}

static int json_int(const cJSON *item, long lo, long hi, int *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= (double)lo && v <= (double)hi) || v != (double)(long)v) return 0;
    *out = (int)v;
    return 1;
}

/* the vocabulary object {token: id} of `what` (a file and field) */
static int load_vocab(Loader *L, const cJSON *obj, const char *what) {
    struct BpeModel *m = L->m;
    if (!cJSON_IsObject(obj) || !obj->child) {
        mmrm_set_error("%s must be a non-empty JSON object {\"token\": id, ...}", what);
        return -1;
    }
    int n = cJSON_GetArraySize(obj), max_id = -1;
    size_t slots = 16, total = 0;
    while (slots < 2 * (size_t)n) slots *= 2;
    L->vocab.slots = xcalloc(slots, sizeof *L->vocab.slots);
    L->vocab.mask = slots - 1;
    for (const cJSON *it = obj->child; it; it = it->next) {
        int id;
        if (!json_int(it, 0, MAX_VOCAB - 1, &id)) {
            mmrm_set_error("%s: token \"%s\" has id %s: ids are integers in [0, %d)", what,
                           it->string, cJSON_IsNumber(it) ? "out of range" : "not a number",
                           MAX_VOCAB);
            return -1;
        }
        size_t len = strlen(it->string);
        if (!len) {
            mmrm_set_error("%s: the empty string is not a token (id %d)", what, id);
            return -1;
        }
        if (vocab_get(&L->vocab, it->string, len) >= 0) {
            mmrm_set_error("%s: token \"%s\" appears twice", what, it->string);
            return -1;
        }
        vocab_put(&L->vocab, it->string, len, id);
        if (id > max_id) max_id = id;
        total += len;
    }
    m->n_ids = max_id + 1;
    m->tok_off = xcalloc((size_t)m->n_ids, sizeof *m->tok_off);
    m->tok_len = xcalloc((size_t)m->n_ids, sizeof *m->tok_len);
    m->bytes = xmalloc(total + 1);
    uint32_t sym[256];
    int inverse[324];
    byte_symbols(sym, inverse);
    size_t at = 0;
    for (const cJSON *it = obj->child; it; it = it->next) {
        int id = (int)it->valuedouble;
        if (m->tok_len[id]) {
            mmrm_set_error("%s: id %d belongs to two tokens (\"%s\" and another)", what, id,
                           it->string);
            return -1;
        }
        /* the symbols back to bytes; a token with a character that is no byte symbol
         * decodes to its own UTF-8, as HF's ByteLevel decoder does */
        const unsigned char *s = (const unsigned char *)it->string;
        size_t len = strlen(it->string), start = at;
        for (size_t i = 0; i < len;) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(len - i), &cp);
            if (k <= 0 || cp >= 324 || inverse[cp] < 0) {
                at = start;
                memcpy(m->bytes + at, s, len);
                at += len;
                break;
            }
            m->bytes[at++] = (char)inverse[cp];
            i += (size_t)k;
        }
        m->tok_off[id] = (uint32_t)start;
        m->tok_len[id] = (uint32_t)(at - start);
    }
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t k = utf8_put(u, sym[b]);
        m->byte_id[b] = vocab_get(&L->vocab, u, k);
        if (m->byte_id[b] < 0) {
            mmrm_set_error("%s has no token for byte 0x%02X (symbol \"%.*s\"): byte-level BPE "
                           "needs all 256", what, b, (int)k, u);
            return -1;
        }
    }
    return 0;
}

static void merges_alloc(struct BpeModel *m, size_t n) {
    size_t slots = 16;
    while (slots < 2 * n) slots *= 2;
    m->merges = xcalloc(slots, sizeof *m->merges);
    m->merge_mask = slots - 1;
}

/* one merge "a b" (a and b given apart); `where` names it in errors */
static int add_merge(Loader *L, const char *a, size_t na, const char *b, size_t nb,
                     uint32_t rank, const char *where) {
    int ia = vocab_get(&L->vocab, a, na), ib = vocab_get(&L->vocab, b, nb);
    if (ia < 0 || ib < 0) {
        mmrm_set_error("%s: merge \"%.*s %.*s\": token \"%.*s\" is not in the vocabulary", where,
                       (int)na, a, (int)nb, b, ia < 0 ? (int)na : (int)nb, ia < 0 ? a : b);
        return -1;
    }
    char stack[256], *both = na + nb <= sizeof stack ? stack : xmalloc(na + nb);
    memcpy(both, a, na);
    memcpy(both + na, b, nb);
    int id = vocab_get(&L->vocab, both, na + nb);
    if (id < 0)
        mmrm_set_error("%s: merge \"%.*s %.*s\": the merged token \"%.*s\" is not in the "
                       "vocabulary", where, (int)na, a, (int)nb, b, (int)(na + nb), both);
    if (both != stack) free(both);
    if (id < 0) return -1;
    merge_put(L->m, ia, ib, rank, id);
    return 0;
}

static int load_merges_txt(Loader *L) {
    char path[PATH_MAX];
    if (!fs_join(path, sizeof path, L->dir, "merges.txt")) return -1;
    size_t len;
    char *text = L->merges_text = fs_read_file(path, &len);
    if (!text) {
        mmrm_set_error("%s: cannot read (vocab.json needs its merges.txt): %s", path,
                       strerror(errno));
        return -1;
    }
    remember_file(L, path);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    merges_alloc(L->m, lines + 1);
    uint32_t rank = 0;
    int line_no = 0;
    char where[PATH_MAX + 32];
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        line_no++;
        size_t n = e;
        if (n > i && text[n - 1] == '\r') n--;
        const char *line = text + i;
        size_t ll = n - i;
        i = e + 1;
        if (line_no == 1 && ll >= 8 && memcmp(line, "#version", 8) == 0) continue;
        if (ll == 0 && i >= len) break; /* a final empty line */
        const char *sp = memchr(line, ' ', ll);
        snprintf(where, sizeof where, "%s:%d", path, line_no);
        if (!sp || sp == line || sp + 1 == line + ll || memchr(sp + 1, ' ', (size_t)(line + ll - sp - 1))) {
            mmrm_set_error("%s: \"%.*s\" is not a merge (two tokens separated by one space)",
                           where, (int)(ll < 60 ? ll : 60), line);
            return -1;
        }
        if (add_merge(L, line, (size_t)(sp - line), sp + 1, (size_t)(line + ll - sp - 1), rank++,
                      where))
            return -1;
    }
    return 0;
}

static int load_merges_json(Loader *L, const cJSON *arr, const char *path) {
    if (!cJSON_IsArray(arr)) {
        mmrm_set_error("%s: model.merges must be an array of \"a b\" strings or [a, b] pairs",
                       path);
        return -1;
    }
    merges_alloc(L->m, (size_t)cJSON_GetArraySize(arr));
    uint32_t rank = 0;
    char where[PATH_MAX + 48];
    for (const cJSON *it = arr->child; it; it = it->next, rank++) {
        snprintf(where, sizeof where, "%s: model.merges[%u]", path, rank);
        if (cJSON_IsString(it)) {
            const char *s = it->valuestring, *sp = strchr(s, ' ');
            if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) {
                mmrm_set_error("%s: \"%s\" is not a merge (two tokens separated by one space)",
                               where, s);
                return -1;
            }
            if (add_merge(L, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), rank, where)) return -1;
        } else if (cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) &&
                   cJSON_IsString(it->child->next)) {
            const char *a = it->child->valuestring, *b = it->child->next->valuestring;
            if (add_merge(L, a, strlen(a), b, strlen(b), rank, where)) return -1;
        } else {
            mmrm_set_error("%s: a merge is \"a b\" or [\"a\", \"b\"]", where);
            return -1;
        }
    }
    return 0;
}

/* Unicode's White_Space, which \s is in Oniguruma (HF's regex engine); PCRE2's \s under UCP
 * also matches U+180E, a format character since Unicode 6.3 */
#define WHITE_SPACE \
    "\\t\\n\\x0B\\f\\r\\x20\\x85\\xA0\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}" \
    "\\x{205F}\\x{3000}"

/* pattern with \s and \S spelled as WHITE_SPACE classes, in a new string; NULL if \S is
 * inside a character class (no HF pattern has that) */
static char *oniguruma_spaces(const char *pattern) {
    size_t n = strlen(pattern), cap = n + 1, len = 0;
    for (size_t i = 0; i < n; i++) cap += pattern[i] == '\\' ? sizeof WHITE_SPACE + 3 : 0;
    char *out = xmalloc(cap);
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = pattern[i];
        if (c == '\\' && i + 1 < n) {
            char e = pattern[++i];
            if (e == 's' || e == 'S') {
                if (in_class && e == 'S') {
                    free(out);
                    return NULL;
                }
                len += (size_t)sprintf(out + len, in_class ? "%s" : e == 's' ? "[%s]" : "[^%s]",
                                       WHITE_SPACE);
            } else {
                out[len++] = c;
                out[len++] = e;
            }
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            out[len++] = c;
            if (i + 1 < n && pattern[i + 1] == '^') out[len++] = pattern[++i];
            if (i + 1 < n && pattern[i + 1] == ']') out[len++] = pattern[++i];
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        out[len++] = c;
    }
    out[len] = '\0';
    return out;
}

static int compile_pattern(struct BpeModel *m, const char *pattern, const char *where) {
    int err;
    PCRE2_SIZE off;
    char *spelled = oniguruma_spaces(pattern);
    if (!spelled) {
        mmrm_set_error("%s: the split regex has \\S inside a character class (not supported)",
                       where);
        return -1;
    }
    m->re = pcre2_compile((PCRE2_SPTR)spelled, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                          &err, &off, NULL);
    free(spelled);
    if (!m->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        mmrm_set_error("%s: the split regex does not compile at offset %zu: %s", where,
                       (size_t)off, (const char *)msg);
        return -1;
    }
    m->jit = pcre2_jit_compile(m->re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

/* records an added token; the same id twice must agree on its content */
static int add_token(Loader *L, int id, const char *content, int special, const char *where) {
    for (int k = 0; k < L->n_added; k++) {
        if (L->added[k].id == id) {
            if (strcmp(L->added[k].content, content) != 0) {
                mmrm_set_error("%s: id %d is \"%s\" here but \"%s\" elsewhere", where, id,
                               content, L->added[k].content);
                return -1;
            }
            L->added[k].special |= special;
            return 0;
        }
        if (strcmp(L->added[k].content, content) == 0) {
            mmrm_set_error("%s: \"%s\" has id %d here but %d elsewhere", where, content, id,
                           L->added[k].id);
            return -1;
        }
    }
    L->added = xrealloc(L->added, (size_t)(L->n_added + 1) * sizeof *L->added);
    L->added[L->n_added++] = (struct Added){id, special, xstrdup(content)};
    return 0;
}

/* an added-token description {content, special, lstrip, rstrip, single_word, normalized} */
static int add_token_json(Loader *L, int id, const cJSON *obj, const char *where) {
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(obj, "content");
    if (!cJSON_IsString(content) || !content->valuestring[0]) {
        mmrm_set_error("%s: an added token needs a non-empty \"content\"", where);
        return -1;
    }
    static const char *const unsupported[] = {"lstrip", "rstrip", "single_word"};
    for (int k = 0; k < 3; k++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, unsupported[k]))) {
            mmrm_set_error("%s: added token \"%s\" sets %s, which mmrm does not implement",
                           where, content->valuestring, unsupported[k]);
            return -1;
        }
    return add_token(L, id, content->valuestring,
                     cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "special")), where);
}

static int load_tokenizer_json(Loader *L, const cJSON *root, const char *path) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsObject(model) || (type && !(cJSON_IsString(type) && !strcmp(type->valuestring, "BPE")))) {
        mmrm_set_error("%s: model.type must be \"BPE\" (mmrm reads byte-level BPE tokenizers)",
                       path);
        return -1;
    }
    static const char *const off_fields[] = {"dropout", "unk_token", "continuing_subword_prefix",
                                             "end_of_word_suffix"};
    for (int k = 0; k < 4; k++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(model, off_fields[k]);
        if (f && !cJSON_IsNull(f) && !(cJSON_IsString(f) && !f->valuestring[0])) {
            mmrm_set_error("%s: model.%s is set; mmrm implements byte-level BPE without it",
                           path, off_fields[k]);
            return -1;
        }
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")) ||
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"))) {
        mmrm_set_error("%s: model.byte_fallback / model.ignore_merges are not implemented", path);
        return -1;
    }
    char what[PATH_MAX + 16];
    snprintf(what, sizeof what, "%s: model.vocab", path);
    if (load_vocab(L, cJSON_GetObjectItemCaseSensitive(model, "vocab"), what) ||
        load_merges_json(L, cJSON_GetObjectItemCaseSensitive(model, "merges"), path))
        return -1;

    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *ntype = cJSON_GetObjectItemCaseSensitive(norm, "type");
    if (norm && !cJSON_IsNull(norm) && !(cJSON_IsString(ntype) && !strcmp(ntype->valuestring, "NFC"))) {
        mmrm_set_error("%s: normalizer must be null or NFC (mmrm implements no other)", path);
        return -1;
    }
    L->m->nfc = cJSON_IsString(ntype);

    /* pre_tokenizer: Sequence[Split(regex, Isolated), ByteLevel(use_regex false)] as Qwen2,
     * or ByteLevel(use_regex true) as GPT-2 */
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *ptype = cJSON_GetObjectItemCaseSensitive(pre, "type");
    const cJSON *split = NULL, *bytelevel = NULL;
    if (cJSON_IsString(ptype) && !strcmp(ptype->valuestring, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers");
        if (cJSON_GetArraySize(list) == 2) {
            split = list->child;
            bytelevel = list->child->next;
        }
    } else {
        bytelevel = pre;
    }
    const cJSON *btype = cJSON_GetObjectItemCaseSensitive(bytelevel, "type");
    const cJSON *use_regex = cJSON_GetObjectItemCaseSensitive(bytelevel, "use_regex");
    const char *pattern = NULL;
    if (split) {
        const cJSON *stype = cJSON_GetObjectItemCaseSensitive(split, "type");
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(split, "pattern");
        const cJSON *regex = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(split, "behavior");
        if (cJSON_IsString(stype) && !strcmp(stype->valuestring, "Split") &&
            cJSON_IsString(regex) && cJSON_IsString(beh) &&
            !strcmp(beh->valuestring, "Isolated") &&
            !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(split, "invert")) &&
            cJSON_IsFalse(use_regex))
            pattern = regex->valuestring;
    } else if (cJSON_IsTrue(use_regex)) {
        pattern = GPT2_PATTERN;
    }
    if (!pattern || !cJSON_IsString(btype) || strcmp(btype->valuestring, "ByteLevel") ||
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(bytelevel, "add_prefix_space"))) {
        mmrm_set_error("%s: pre_tokenizer must be Sequence[Split(Regex, Isolated), "
                       "ByteLevel(use_regex false)] (Qwen2) or ByteLevel(use_regex true) (GPT-2), "
                       "without add_prefix_space", path);
        return -1;
    }
    if (compile_pattern(L->m, pattern, path)) return -1;

    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    int k = 0;
    for (const cJSON *it = cJSON_IsArray(added) ? added->child : NULL; it; it = it->next, k++) {
        char where[PATH_MAX + 32];
        snprintf(where, sizeof where, "%s: added_tokens[%d]", path, k);
        int id;
        if (!json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), 0, MAX_VOCAB - 1, &id)) {
            mmrm_set_error("%s: \"id\" must be an integer in [0, %d)", where, MAX_VOCAB);
            return -1;
        }
        if (add_token_json(L, id, it, where)) return -1;
    }
    return 0;
}

static int load_vocab_merges(Loader *L) {
    char path[PATH_MAX];
    if (!fs_join(path, sizeof path, L->dir, "vocab.json")) return -1;
    const cJSON *vocab = read_json(L, "vocab.json", 0, NULL);
    if (!vocab || load_vocab(L, vocab, path) || load_merges_txt(L)) return -1;
    L->m->nfc = 1;
    return compile_pattern(L->m, QWEN2_PATTERN, path);
}

/* tokenizer_config.json's tokenizer_class, added_tokens_decoder; added_tokens.json */
static int load_added(Loader *L, const cJSON *config, int from_tokenizer_json) {
    char path[PATH_MAX];
    fs_join(path, sizeof path, L->dir, "tokenizer_config.json");
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(config, "tokenizer_class");
    if (!from_tokenizer_json && cJSON_IsString(cls) && strncmp(cls->valuestring, "Qwen2Tokenizer", 14)) {
        mmrm_set_error("%s: tokenizer_class \"%s\": with vocab.json + merges.txt mmrm reads "
                       "Qwen2Tokenizer only (give the model directory a tokenizer.json)", path,
                       cls->valuestring);
        return -1;
    }
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(config, "added_tokens_decoder");
    for (const cJSON *it = cJSON_IsObject(dec) ? dec->child : NULL; it; it = it->next) {
        char where[PATH_MAX + 64];
        snprintf(where, sizeof where, "%s: added_tokens_decoder[\"%s\"]", path, it->string);
        char *end;
        long id = strtol(it->string, &end, 10);
        if (*end || end == it->string || id < 0 || id >= MAX_VOCAB) {
            mmrm_set_error("%s: the key must be an id in [0, %d)", where, MAX_VOCAB);
            return -1;
        }
        if (add_token_json(L, (int)id, it, where)) return -1;
    }
    int absent;
    const cJSON *extra = read_json(L, "added_tokens.json", 1, &absent);
    if (!extra && !absent) return -1;
    fs_join(path, sizeof path, L->dir, "added_tokens.json");
    for (const cJSON *it = extra ? extra->child : NULL; it; it = it->next) {
        int id;
        if (!json_int(it, 0, MAX_VOCAB - 1, &id) || !it->string[0]) {
            mmrm_set_error("%s: \"%s\" must map a non-empty token to an id in [0, %d)", path,
                           it->string, MAX_VOCAB);
            return -1;
        }
        /* added_tokens.json carries no flags: such a token is special when listed so elsewhere */
        if (add_token(L, id, it->string, 0, path)) return -1;
    }
    return 0;
}

/* a role (bos_token, ...) of tokenizer_config.json or special_tokens_map.json: a string or
 * {"content": string}; its id among the added tokens or the vocabulary, -1 if null/absent */
static int role_id(Loader *L, const cJSON *config, const cJSON *map, const char *name, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, name);
    if (!v) v = cJSON_GetObjectItemCaseSensitive(map, name);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    *out = -1;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) {
        mmrm_set_error("%s/tokenizer_config.json: %s must be null, a string or {\"content\"}",
                       L->dir, name);
        return -1;
    }
    for (int k = 0; k < L->n_added; k++)
        if (!strcmp(L->added[k].content, v->valuestring)) *out = L->added[k].id;
    if (*out < 0) *out = vocab_get(&L->vocab, v->valuestring, strlen(v->valuestring));
    if (*out < 0) {
        mmrm_set_error("%s/tokenizer_config.json: %s \"%s\" is neither an added token nor in "
                       "the vocabulary", L->dir, name, v->valuestring);
        return -1;
    }
    return 0;
}

int tokenizer_bpe_present(const char *dir) {
    char path[PATH_MAX];
    return (fs_join(path, sizeof path, dir, "tokenizer.json") && file_exists(path)) ||
           (fs_join(path, sizeof path, dir, "merges.txt") && file_exists(path)) ||
           (fs_join(path, sizeof path, dir, "vocab.json") && file_exists(path));
}

static Tokenizer *build(Loader *L) {
    char path[PATH_MAX];
    int absent, from_json = fs_join(path, sizeof path, L->dir, "tokenizer.json") &&
                                    file_exists(path);
    if (from_json) {
        const cJSON *root = read_json(L, "tokenizer.json", 0, NULL);
        if (!root || load_tokenizer_json(L, root, path)) return NULL;
    } else if (load_vocab_merges(L)) {
        return NULL;
    }
    const cJSON *config = read_json(L, "tokenizer_config.json", 1, &absent);
    if (!config && !absent) return NULL;
    const cJSON *map = read_json(L, "special_tokens_map.json", 1, &absent);
    if (!map && !absent) return NULL;
    if (load_added(L, config, from_json)) return NULL;

    Tokenizer *tok = xcalloc(1, sizeof *tok);
    tok->kind = TOKENIZER_BPE;
    tok->bpe = L->m;
    L->m = NULL;
    tok->special = xcalloc((size_t)(L->n_added > 0 ? L->n_added : 1), sizeof *tok->special);
    tok->vocab_size = tok->bpe->n_ids;
    for (int k = 0; k < L->n_added; k++) {
        SpecialToken *sp = &tok->special[tok->n_special++];
        sp->text = xstrdup(L->added[k].content);
        sp->len = strlen(sp->text);
        sp->id = L->added[k].id;
        tok->special_first[(unsigned char)sp->text[0]] = 1;
        if (sp->id >= tok->vocab_size) tok->vocab_size = sp->id + 1;
    }
    if (role_id(L, config, map, "bos_token", &tok->bos_id) ||
        role_id(L, config, map, "eos_token", &tok->eos_id) ||
        role_id(L, config, map, "pad_token", &tok->pad_id)) {
        tokenizer_free(tok);
        return NULL;
    }
    tok->add_bos = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(config, "add_bos_token")) &&
                   tok->bos_id >= 0;
    tok->bpe->cache = cache_new();
    return tok;
}

Tokenizer *tokenizer_bpe_load(const char *dir) {
    Loader L = {.dir = dir, .m = xcalloc(1, sizeof(struct BpeModel))};
    Tokenizer *tok = build(&L);
    bpe_free(L.m);
    free(L.vocab.slots);
    for (int k = 0; k < L.n_docs; k++) cJSON_Delete(L.docs[k]);
    for (int k = 0; k < L.n_added; k++) free(L.added[k].content);
    free(L.added);
    free(L.merges_text);
    return tok;
}

int tokenizer_bpe_save(const Tokenizer *tok, const char *dir) {
    const struct BpeModel *m = tok->bpe;
    for (int i = 0; i < m->n_files; i++) {
        const char *name = strrchr(m->files[i], '/');
        name = name ? name + 1 : m->files[i];
        char path[PATH_MAX];
        size_t n;
        if (!fs_join(path, sizeof path, dir, name)) return -1;
        if (!strcmp(path, m->files[i])) continue; /* saving where it was loaded from */
        char *data = fs_read_file(m->files[i], &n);
        if (!data) {
            mmrm_set_error("cannot copy tokenizer file %s: %s", m->files[i], strerror(errno));
            return -1;
        }
        int rc = fs_write_atomic(path, data, n);
        free(data);
        if (rc) return -1;
    }
    return 0;
}
