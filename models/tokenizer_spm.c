/* tokenizer_spm.c - the SentencePiece BPE kind: a strict reader of tokenizer.model (a
 * serialized sentencepiece ModelProto), the model's added tokens from the HF files beside it,
 * and encode/decode exactly as sentencepiece 0.2.0's BPE model (bpe_model.cc) and
 * SentencePieceProcessor do for the identity normalizer.
 *
 * Encoding a text (the part between two special tokens):
 *   normalize  each invalid UTF-8 byte -> U+FFFD, ' ' -> U+2581 ("▁"), "▁" in front when
 *              add_dummy_prefix (and the text is not empty); user-defined symbols pass as is
 *   split      into user-defined symbols (longest match, frozen: never merged) and characters
 *   merge      repeatedly the adjacent pair whose concatenation is a piece (NORMAL,
 *              USER_DEFINED or UNUSED) of the best score; ties: the leftmost
 *   resegment  a result that is an UNUSED piece back into the two symbols it was merged from
 *              (recursively), as sentencepiece's rev_merge does
 *   emit       each symbol's id (reserved pieces first, then the others, else <unk>); an
 *              <unk> becomes its bytes' <0xXX> pieces under byte_fallback, or consecutive
 *              <unk>s one <unk> without it.
 * Decoding a run of model ids between special tokens: <0xXX> bytes are gathered and each
 * invalid UTF-8 sequence in them becomes U+FFFD (raw bytes are never reinterpreted: a
 * byte-encoded "▁" stays "▁"); CONTROL pieces are invisible; <unk> is the unk_surface
 * (" ⁇ "); the run's first "▁" is dropped when add_dummy_prefix (before any text), and every
 * other "▁" is a space. */
#include "models/tokenizer_spm_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/fsutil.h"

/* ---- encoding ---- */

/* sentencepiece's DecodeUTF8 validity: the length of the valid character at s[0..n), 0 if
 * s starts with an invalid sequence */
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
#define TRAIL(i) ((s[i] & 0xC0) == 0x80)
    if (n >= 2 && (c & 0xE0) == 0xC0) {
        unsigned cp = (c & 0x1Fu) << 6 | (s[1] & 0x3Fu);
        return TRAIL(1) && cp >= 0x80 ? 2 : 0;
    }
    if (n >= 3 && (c & 0xF0) == 0xE0) {
        unsigned cp = (c & 0x0Fu) << 12 | (s[1] & 0x3Fu) << 6 | (s[2] & 0x3Fu);
        return TRAIL(1) && TRAIL(2) && cp >= 0x800 && (cp < 0xD800 || cp >= 0xE000) ? 3 : 0;
    }
    if (n >= 4 && (c & 0xF8) == 0xF0) {
        unsigned cp = (c & 0x07u) << 18 | (s[1] & 0x3Fu) << 12 | (s[2] & 0x3Fu) << 6 |
                      (s[3] & 0x3Fu);
        return TRAIL(1) && TRAIL(2) && TRAIL(3) && cp >= 0x10000 && cp <= 0x10FFFF ? 4 : 0;
    }
#undef TRAIL
    return 0;
}

/* the longest user-defined symbol s[0..n) starts with: its length, 0 if none */
static size_t match_user(const SpmModel *m, const char *s, size_t n) {
    size_t best = 0;
    unsigned char c = (unsigned char)s[0];
    for (int k = m->user_at[c]; k < m->user_at[c + 1]; k++) {
        const Piece *p = &m->pieces[m->user[k]];
        if (p->len > best && p->len <= n && memcmp(p->text, s, p->len) == 0) best = p->len;
    }
    return best;
}

/* sentencepiece's Normalizer with an empty charsmap; out holds 3 * n + 3 bytes */
static size_t normalize(const SpmModel *m, const char *s, size_t n, char *out) {
    size_t o = 0;
    if (!n) return 0;
    if (m->add_dummy_prefix) {
        memcpy(out, SPACE_SYM, 3);
        o = 3;
    }
    for (size_t i = 0; i < n;) {
        size_t k = match_user(m, s + i, n - i);
        const char *piece = s + i;
        if (!k) {
            k = utf8_valid_len((const unsigned char *)s + i, n - i);
            if (!k) {
                piece = REPLACEMENT;
                memcpy(out + o, piece, 3);
                o += 3;
                i++;
                continue;
            }
        }
        for (size_t j = 0; j < k; j++) {
            if (piece[j] == ' ') {
                memcpy(out + o, SPACE_SYM, 3);
                o += 3;
            } else {
                out[o++] = piece[j];
            }
        }
        i += k;
    }
    return o;
}

typedef struct {
    uint32_t start, len;
    int prev, next;
    int frozen;
} Symbol;

typedef struct {
    float score;
    int left, right;
    uint32_t size;
} Pair;

typedef struct {
    int id;
    uint32_t left_len;
} RevMerge;

typedef struct {
    const SpmModel *m;
    const char *text;
    Symbol *sym;
    Pair *heap;
    int n_heap, cap_heap;
    RevMerge *rev;
    int n_rev, cap_rev;
    int *ids;
    int cap;
    size_t *count;
    int prev_unk;
} Enc;

/* a before b in the agenda: higher score, then the leftmost */
static int pair_before(const Pair *a, const Pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(Enc *e, Pair p) {
    if (e->n_heap == e->cap_heap) {
        e->cap_heap = e->cap_heap ? 2 * e->cap_heap : 64;
        e->heap = xrealloc(e->heap, (size_t)e->cap_heap * sizeof *e->heap);
    }
    int i = e->n_heap++;
    while (i > 0 && pair_before(&p, &e->heap[(i - 1) / 2])) {
        e->heap[i] = e->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    e->heap[i] = p;
}

static Pair heap_pop(Enc *e) {
    Pair top = e->heap[0], last = e->heap[--e->n_heap];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= e->n_heap) break;
        if (c + 1 < e->n_heap && pair_before(&e->heap[c + 1], &e->heap[c])) c++;
        if (!pair_before(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (e->n_heap) e->heap[i] = last;
    return top;
}

/* sentencepiece's MaybeAddNewSymbolPair */
static void maybe_add_pair(Enc *e, int left, int right) {
    if (left < 0 || right < 0 || e->sym[left].frozen || e->sym[right].frozen) return;
    const SpmModel *m = e->m;
    uint32_t size = e->sym[left].len + e->sym[right].len;
    int id = spm_map_find(&m->normal, m->pieces, e->text + e->sym[left].start, size);
    if (id < 0) return;
    heap_push(e, (Pair){m->pieces[id].score, left, right, size});
    if (m->pieces[id].type == PT_UNUSED) {
        if (e->n_rev == e->cap_rev) {
            e->cap_rev = e->cap_rev ? 2 * e->cap_rev : 16;
            e->rev = xrealloc(e->rev, (size_t)e->cap_rev * sizeof *e->rev);
        }
        e->rev[e->n_rev++] = (RevMerge){id, e->sym[left].len};
    }
}

static void emit(Enc *e, int id) {
    if (*e->count < (size_t)e->cap) e->ids[*e->count] = id;
    (*e->count)++;
}

/* sentencepiece's resegment, then the processor's unknown handling */
static void emit_piece(Enc *e, const char *s, uint32_t n) {
    const SpmModel *m = e->m;
    int id = spm_piece_id(m, s, n);
    if (m->pieces[id].type == PT_UNUSED) {
        for (int k = e->n_rev - 1; k >= 0; k--) /* the latest entry, as a map's overwrite */
            if (e->rev[k].id == id) {
                emit_piece(e, s, e->rev[k].left_len);
                emit_piece(e, s + e->rev[k].left_len, n - e->rev[k].left_len);
                return;
            }
    }
    if (id == m->unk_id && m->byte_fallback) {
        for (uint32_t i = 0; i < n; i++) emit(e, m->byte_id[(unsigned char)s[i]]);
        e->prev_unk = 0;
        return;
    }
    if (!(id == m->unk_id && e->prev_unk)) emit(e, id);
    e->prev_unk = id == m->unk_id;
}

/* UTF-8 length by the lead byte, as sentencepiece's OneCharLen */
static uint32_t one_char_len(unsigned char c) {
    static const uint8_t tbl[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return tbl[c >> 4];
}

void spm_encode(const SpmModel *m, const char *s, size_t n, int *ids, int cap, size_t *count) {
    if (!n) return;
    char *norm = xmalloc(3 * n + 3);
    size_t nn = normalize(m, s, n, norm);
    Enc e = {.m = m, .text = norm, .ids = ids, .cap = cap, .count = count};
    e.sym = xmalloc(nn * sizeof *e.sym);
    int n_sym = 0;
    for (size_t i = 0; i < nn; n_sym++) {
        uint32_t k = (uint32_t)match_user(m, norm + i, nn - i);
        int frozen = k > 0;
        if (!k) k = one_char_len((unsigned char)norm[i]);
        if (k > nn - i) k = (uint32_t)(nn - i);
        e.sym[n_sym] = (Symbol){(uint32_t)i, k, n_sym - 1, i + k < nn ? n_sym + 1 : -1, frozen};
        i += k;
    }
    for (int i = 1; i < n_sym; i++) maybe_add_pair(&e, i - 1, i);
    while (e.n_heap) {
        Pair top = heap_pop(&e);
        Symbol *l = &e.sym[top.left], *r = &e.sym[top.right];
        if (!l->len || !r->len || l->len + r->len != top.size) continue; /* stale */
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) e.sym[r->next].prev = top.left;
        r->len = 0;
        maybe_add_pair(&e, l->prev, top.left);
        maybe_add_pair(&e, top.left, l->next);
    }
    for (int i = 0; i >= 0 && n_sym; i = e.sym[i].next)
        emit_piece(&e, norm + e.sym[i].start, e.sym[i].len);
    free(e.heap);
    free(e.rev);
    free(e.sym);
    free(norm);
}

/* ---- decoding ---- */

typedef struct {
    char *buf;
    size_t len, cap;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1);
        b->buf = xrealloc(b->buf, b->cap);
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

/* pending <0xXX> bytes -> text: valid UTF-8 as is, each invalid byte as U+FFFD */
static void flush_bytes(Buf *out, const unsigned char *bytes, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t k = utf8_valid_len(bytes + i, n - i);
        if (k) buf_put(out, (const char *)bytes + i, k);
        else buf_put(out, REPLACEMENT, 3);
        i += k ? k : 1;
    }
}

const SpecialToken *spm_special_of(const Tokenizer *tok, int id) {
    for (int k = 0; k < tok->n_special; k++)
        if (tok->special[k].id == id) return &tok->special[k];
    return NULL;
}

char *spm_decode(const Tokenizer *tok, const int *ids, int n, size_t *len_out) {
    const SpmModel *m = tok->spm;
    Buf out = {xmalloc(64), 0, 64};
    unsigned char *bytes = xmalloc((size_t)n + 1);
    size_t n_bytes = 0, run_start = 0; /* out.len where the current run began */
    int bos_ws = 1, bos_ws_seen = 0;
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        const SpecialToken *sp = spm_special_of(tok, id);
        if (!sp && (id < 0 || id >= m->n)) {
            mmrm_set_error("tokenizer_decode: id %d at position %d has no token (sentencepiece "
                           "tokenizer, vocab_size %d)", id, i, tok->vocab_size);
            free(bytes);
            free(out.buf);
            return NULL;
        }
        const Piece *p = sp ? NULL : &m->pieces[id];
        if (p && p->type == PT_BYTE) {
            bytes[n_bytes++] = (unsigned char)spm_byte_of_piece(p);
            continue;
        }
        flush_bytes(&out, bytes, n_bytes);
        n_bytes = 0;
        if (sp) { /* a special token ends the run: the next run starts afresh */
            buf_put(&out, sp->text, sp->len);
            run_start = out.len;
            bos_ws = 1;
            bos_ws_seen = 0;
            continue;
        }
        if (bos_ws_seen || out.len > run_start) bos_ws = 0;
        if (p->type == PT_CONTROL) continue;
        if (p->type == PT_UNKNOWN) {
            buf_put(&out, m->unk_surface, strlen(m->unk_surface));
            continue;
        }
        const char *s = p->text;
        size_t len = p->len;
        if (bos_ws && m->add_dummy_prefix && len >= 3 && memcmp(s, SPACE_SYM, 3) == 0) {
            s += 3;
            len -= 3;
            bos_ws_seen = 1;
        }
        for (size_t j = 0; j < len;) {
            if (len - j >= 3 && memcmp(s + j, SPACE_SYM, 3) == 0) {
                buf_put(&out, " ", 1);
                j += 3;
            } else {
                buf_put(&out, s + j, 1);
                j++;
            }
        }
    }
    flush_bytes(&out, bytes, n_bytes);
    free(bytes);
    out.buf[out.len] = '\0';
    if (len_out) *len_out = out.len;
    return out.buf;
}
