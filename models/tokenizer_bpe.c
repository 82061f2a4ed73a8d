/* tokenizer_bpe.c - byte-level BPE (Qwen2's tokenizer), encoding: NFC, the split regex,
 * GPT-2's byte symbols and merges by rank, the piece cache. tokenizer_bpe_load.c reads the
 * HF files. See tokenizer_bpe.h. */
#include "models/tokenizer_bpe_internal.h"

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

/* ---- GPT-2's bytes_to_unicode ---- */

static int byte_is_printable(int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

/* symbol code point of each byte, and the byte of each symbol (-1: not a symbol) */
void bpe_byte_symbols(uint32_t sym[256], int inverse[324]) {
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

size_t bpe_utf8_put(char *out, uint32_t cp) {
    return (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)out);
}

/* ---- hashing ---- */

uint64_t bpe_hash_bytes(const void *p, size_t n) {
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
void bpe_merge_put(struct BpeModel *m, int a, int b, uint32_t rank, int id) {
    uint64_t key = ((uint64_t)(a + 1) << 32) | (uint32_t)(b + 1);
    size_t i = mix64(key) & m->merge_mask;
    while (m->merges[i].key && m->merges[i].key != key) i = (i + 1) & m->merge_mask;
    m->merges[i] = (MergeSlot){key, rank, id};
}

/* ---- the piece cache ---- */

PieceCache *bpe_cache_new(void) {
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
        uint64_t h = bpe_hash_bytes(p, n);
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
