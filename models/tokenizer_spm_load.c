/* tokenizer_spm_load.c - the SentencePiece kind's loader: a strict reader of
 * tokenizer.model (a serialized sentencepiece ModelProto: pieces, trainer_spec,
 * normalizer_spec; what mmrm does not support is refused naming the field), the model's added
 * tokens and roles from the HF files beside it, and the save. Encoding and decoding are in
 * tokenizer_spm.c (which describes them). */
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

/* ---- a strict protobuf reader (wire format: varint, 64-bit, length-delimited, 32-bit) ---- */

typedef struct {
    const uint8_t *p, *start, *end;
    const char *path;
} Pb;

static int pb_fail(const Pb *b, const char *what) {
    mmrm_set_error("%s: byte %td: %s (not a valid sentencepiece model file)", b->path,
                   b->p - b->start, what);
    return -1;
}

static int pb_varint(Pb *b, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (b->p >= b->end) return pb_fail(b, "truncated varint");
        uint8_t c = *b->p++;
        if (shift == 63 && c > 1) return pb_fail(b, "varint overflows 64 bits");
        *v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) return 0;
    }
    return pb_fail(b, "varint longer than 10 bytes");
}

/* the next field's number and wire type; 1 at the end, 0 read, -1 error */
static int pb_key(Pb *b, uint32_t *field, int *wt) {
    if (b->p >= b->end) return 1;
    uint64_t key;
    if (pb_varint(b, &key)) return -1;
    *field = (uint32_t)(key >> 3);
    *wt = (int)(key & 7);
    if (key >> 3 == 0 || key >> 3 > 536870911u) return pb_fail(b, "field number 0 or too large");
    if (*wt != 0 && *wt != 1 && *wt != 2 && *wt != 5) {
        char what[128];
        snprintf(what, sizeof what, "field %u has wire type %d (groups or an unknown type)",
                 *field, *wt);
        return pb_fail(b, what);
    }
    return 0;
}

static int pb_bytes(Pb *b, Pb *sub) {
    uint64_t n;
    if (pb_varint(b, &n)) return -1;
    if (n > (uint64_t)(b->end - b->p))
        return pb_fail(b, "a length-delimited field runs past the end of its message (the "
                          "file is truncated or corrupt)");
    *sub = (Pb){b->p, b->start, b->p + n, b->path};
    b->p += n;
    return 0;
}

static int pb_skip(Pb *b, int wt) {
    uint64_t v;
    Pb sub;
    switch (wt) {
    case 0: return pb_varint(b, &v);
    case 2: return pb_bytes(b, &sub);
    default: {
        size_t n = wt == 1 ? 8 : 4;
        if ((size_t)(b->end - b->p) < n) return pb_fail(b, "truncated fixed-width field");
        b->p += n;
        return 0;
    }
    }
}

/* a known field must have its declared wire type */
static int pb_want(const Pb *b, const char *name, int wt, int want) {
    if (wt == want) return 0;
    char what[160];
    snprintf(what, sizeof what, "%s has wire type %d, expected %d", name, wt, want);
    return pb_fail(b, what);
}

static int pb_int(Pb *b, const char *name, int wt, long lo, long hi, long *out) {
    uint64_t v;
    if (pb_want(b, name, wt, 0) || pb_varint(b, &v)) return -1;
    int64_t s = (int64_t)v;
    if (s < lo || s > hi) {
        char what[160];
        snprintf(what, sizeof what, "%s = %lld is out of range [%ld, %ld]", name, (long long)s,
                 lo, hi);
        return pb_fail(b, what);
    }
    *out = (long)s;
    return 0;
}

/* ---- the model proto ---- */

typedef struct {
    long model_type, byte_fallback, unk_id, bos_id, eos_id, pad_id, ws_suffix;
    const uint8_t *unk_surface;
    size_t unk_surface_len;
    int has_unk_surface;
} TrainerSpec;

typedef struct {
    const uint8_t *name;
    size_t name_len;
    size_t charsmap_len;
    long add_dummy_prefix, remove_extra_ws, escape_ws;
} NormSpec;

static int parse_piece(Pb *b, Piece *pc, const uint8_t **text) {
    pc->type = PT_NORMAL;
    pc->score = 0;
    int have_text = 0;
    for (;;) {
        uint32_t f;
        int wt, k = pb_key(b, &f, &wt);
        if (k < 0) return -1;
        if (k) return have_text ? 0 : pb_fail(b, "a piece has no text");
        if (f == 1) {
            Pb s;
            if (pb_want(b, "SentencePiece.piece (field 1)", wt, 2) || pb_bytes(b, &s)) return -1;
            *text = s.p;
            pc->len = (uint32_t)(s.end - s.p);
            have_text = 1;
        } else if (f == 2) {
            if (pb_want(b, "SentencePiece.score (field 2)", wt, 5)) return -1;
            if (b->end - b->p < 4) return pb_fail(b, "truncated score");
            uint32_t u = (uint32_t)b->p[0] | (uint32_t)b->p[1] << 8 | (uint32_t)b->p[2] << 16 |
                         (uint32_t)b->p[3] << 24;
            memcpy(&pc->score, &u, 4);
            b->p += 4;
        } else if (f == 3) {
            long t;
            if (pb_int(b, "SentencePiece.type (field 3)", wt, PT_NORMAL, PT_BYTE, &t)) return -1;
            pc->type = (int)t;
        } else if (pb_skip(b, wt)) {
            return -1;
        }
    }
}

/* the TrainerSpec integers read: the rest (training options) is skipped */
static const struct {
    uint32_t field;
    const char *name;
    long lo, hi;
    size_t off;
} g_trainer_ints[] = {
    {3, "TrainerSpec.model_type (field 3)", 1, 4, offsetof(TrainerSpec, model_type)},
    {24, "TrainerSpec.treat_whitespace_as_suffix (field 24)", 0, 1,
     offsetof(TrainerSpec, ws_suffix)},
    {35, "TrainerSpec.byte_fallback (field 35)", 0, 1, offsetof(TrainerSpec, byte_fallback)},
    {40, "TrainerSpec.unk_id (field 40)", INT_MIN, INT_MAX, offsetof(TrainerSpec, unk_id)},
    {41, "TrainerSpec.bos_id (field 41)", INT_MIN, INT_MAX, offsetof(TrainerSpec, bos_id)},
    {42, "TrainerSpec.eos_id (field 42)", INT_MIN, INT_MAX, offsetof(TrainerSpec, eos_id)},
    {43, "TrainerSpec.pad_id (field 43)", INT_MIN, INT_MAX, offsetof(TrainerSpec, pad_id)},
};
enum { N_TRAINER_INTS = sizeof g_trainer_ints / sizeof g_trainer_ints[0] };

static int parse_trainer(Pb *b, TrainerSpec *t) {
    for (;;) {
        uint32_t f;
        int wt, k = pb_key(b, &f, &wt);
        if (k) return k < 0 ? -1 : 0;
        if (f == 44) {
            Pb s;
            if (pb_want(b, "TrainerSpec.unk_surface (field 44)", wt, 2) || pb_bytes(b, &s))
                return -1;
            t->unk_surface = s.p;
            t->unk_surface_len = (size_t)(s.end - s.p);
            t->has_unk_surface = 1;
            continue;
        }
        int i = 0;
        while (i < N_TRAINER_INTS && g_trainer_ints[i].field != f) i++;
        if (i == N_TRAINER_INTS) {
            if (pb_skip(b, wt)) return -1;
            continue;
        }
        long *dst = (long *)((char *)t + g_trainer_ints[i].off);
        if (pb_int(b, g_trainer_ints[i].name, wt, g_trainer_ints[i].lo, g_trainer_ints[i].hi, dst))
            return -1;
    }
}

static int parse_normalizer(Pb *b, NormSpec *n) {
    for (;;) {
        uint32_t f;
        int wt, k = pb_key(b, &f, &wt);
        if (k) return k < 0 ? -1 : 0;
        Pb s;
        switch (f) {
        case 1:
            if (pb_want(b, "NormalizerSpec.name (field 1)", wt, 2) || pb_bytes(b, &s)) return -1;
            n->name = s.p;
            n->name_len = (size_t)(s.end - s.p);
            break;
        case 2:
            if (pb_want(b, "NormalizerSpec.precompiled_charsmap (field 2)", wt, 2) ||
                pb_bytes(b, &s))
                return -1;
            n->charsmap_len = (size_t)(s.end - s.p);
            break;
        case 3:
            if (pb_int(b, "NormalizerSpec.add_dummy_prefix (field 3)", wt, 0, 1,
                       &n->add_dummy_prefix))
                return -1;
            break;
        case 4:
            if (pb_int(b, "NormalizerSpec.remove_extra_whitespaces (field 4)", wt, 0, 1,
                       &n->remove_extra_ws))
                return -1;
            break;
        case 5:
            if (pb_int(b, "NormalizerSpec.escape_whitespaces (field 5)", wt, 0, 1, &n->escape_ws))
                return -1;
            break;
        default:
            if (pb_skip(b, wt)) return -1;
        }
    }
}

/* ---- the piece maps ---- */

static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

int spm_map_find(const PieceMap *map, const Piece *pieces, const char *s, size_t n) {
    for (uint32_t i = hash_bytes(s, n) & map->mask;; i = (i + 1) & map->mask) {
        int id = map->slot[i];
        if (id < 0) return -1;
        if (pieces[id].len == n && memcmp(pieces[id].text, s, n) == 0) return id;
    }
}

static void map_init(PieceMap *map, int n) {
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)n + 16) cap <<= 1;
    map->mask = cap - 1;
    map->slot = xmalloc(cap * sizeof *map->slot);
    for (uint32_t i = 0; i < cap; i++) map->slot[i] = -1;
}

/* 0, or the id already holding that text */
static int map_insert(PieceMap *map, const Piece *pieces, int id) {
    const Piece *p = &pieces[id];
    int old = spm_map_find(map, pieces, p->text, p->len);
    if (old >= 0) return old;
    uint32_t i = hash_bytes(p->text, p->len) & map->mask;
    while (map->slot[i] >= 0) i = (i + 1) & map->mask;
    map->slot[i] = id;
    return -1;
}

static int is_normal_type(int type) {
    return type == PT_NORMAL || type == PT_USER || type == PT_UNUSED;
}

/* sentencepiece's PieceToId: reserved pieces first, then the others, else <unk> */
int spm_piece_id(const SpmModel *m, const char *s, size_t n) {
    int id = spm_map_find(&m->reserved, m->pieces, s, n);
    if (id < 0) id = spm_map_find(&m->normal, m->pieces, s, n);
    return id < 0 ? m->unk_id : id;
}

void spm_model_free(SpmModel *m) {
    if (!m) return;
    free(m->raw);
    free(m->pieces);
    free(m->blob);
    free(m->normal.slot);
    free(m->reserved.slot);
    free(m->user);
    free(m->unk_surface);
    free(m);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* the byte of a "<0xXX>" piece (sentencepiece writes upper-case hex), -1 if not one */
int spm_byte_of_piece(const Piece *p) {
    if (p->len != 6 || memcmp(p->text, "<0x", 3) != 0 || p->text[5] != '>') return -1;
    int hi = hexval(p->text[3]), lo = hexval(p->text[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static SpmModel *model_fail(SpmModel *m) {
    spm_model_free(m);
    return NULL;
}

static const char *model_type_name(long t) {
    switch (t) {
    case MODEL_UNIGRAM: return "UNIGRAM";
    case MODEL_BPE: return "BPE";
    case MODEL_WORD: return "WORD";
    default: return "CHAR";
    }
}

/* sorts m->user by first byte (a counting sort, stable) and fills m->user_at */
static void group_users(SpmModel *m) {
    int count[257] = {0};
    for (int k = 0; k < m->n_user; k++) count[(unsigned char)m->pieces[m->user[k]].text[0] + 1]++;
    for (int c = 0; c < 256; c++) count[c + 1] += count[c];
    memcpy(m->user_at, count, sizeof count);
    int *sorted = xmalloc((size_t)(m->n_user ? m->n_user : 1) * sizeof *sorted);
    for (int k = 0; k < m->n_user; k++)
        sorted[count[(unsigned char)m->pieces[m->user[k]].text[0]]++] = m->user[k];
    free(m->user);
    m->user = sorted;
}

/* parses and checks the serialized ModelProto data[0..len) read from path */
static SpmModel *model_parse(const char *path, const uint8_t *data, size_t len) {
    Pb b = {data, data, data + len, path};
    SpmModel *m = xcalloc(1, sizeof *m);
    /* proto2 defaults: what an absent field means */
    TrainerSpec ts = {MODEL_UNIGRAM, 0, 0, 1, 2, -1, 0, NULL, 0, 0};
    NormSpec ns = {NULL, 0, 0, 1, 1, 1};
    size_t denorm_charsmap = 0, blob_len = 0;
    int cap = 0, have_trainer = 0, have_norm = 0;
    const uint8_t **texts = NULL;
    for (;;) {
        uint32_t f;
        int wt, k = pb_key(&b, &f, &wt);
        if (k < 0) goto fail;
        if (k) break;
        Pb s;
        if (f >= 1 && f <= 5 && f != 4) {
            static const char *const names[] = {"", "ModelProto.pieces (field 1)",
                                                "ModelProto.trainer_spec (field 2)",
                                                "ModelProto.normalizer_spec (field 3)", "",
                                                "ModelProto.denormalizer_spec (field 5)"};
            if (pb_want(&b, names[f], wt, 2) || pb_bytes(&b, &s)) goto fail;
        } else {
            if (pb_skip(&b, wt)) goto fail;
            continue;
        }
        if (f == 1) {
            if (m->n == SPM_MAX_PIECES) {
                pb_fail(&b, "more than 2^24 pieces");
                goto fail;
            }
            if (m->n == cap) {
                cap = cap ? 2 * cap : 1024;
                m->pieces = xrealloc(m->pieces, (size_t)cap * sizeof *m->pieces);
                texts = xrealloc(texts, (size_t)cap * sizeof *texts);
            }
            if (parse_piece(&s, &m->pieces[m->n], &texts[m->n])) goto fail;
            blob_len += m->pieces[m->n].len + 1;
            m->n++;
        } else if (f == 2) {
            have_trainer = 1;
            if (parse_trainer(&s, &ts)) goto fail;
        } else if (f == 3) {
            have_norm = 1;
            if (parse_normalizer(&s, &ns)) goto fail;
        } else {
            NormSpec dn = {NULL, 0, 0, 1, 1, 1};
            if (parse_normalizer(&s, &dn)) goto fail;
            denorm_charsmap = dn.charsmap_len;
        }
    }
    if (!m->n || !have_trainer || !have_norm) {
        mmrm_set_error("%s: no %s (not a sentencepiece model file, or an empty one)", path,
                       !m->n ? "pieces" : !have_trainer ? "trainer_spec" : "normalizer_spec");
        goto fail;
    }
    if (ts.model_type != MODEL_BPE) {
        mmrm_set_error("%s: trainer_spec.model_type is %s: mmrm supports SentencePiece BPE "
                       "models only (model_type=bpe, as InternLM2's and Llama's)", path,
                       model_type_name(ts.model_type));
        goto fail;
    }
    if (ns.charsmap_len || denorm_charsmap) {
        mmrm_set_error("%s: the %snormalizer \"%.*s\" has a precompiled_charsmap of %zu bytes: "
                       "mmrm supports only the identity normalizer (InternLM2's and Llama's), "
                       "not NFKC or custom rules", path, ns.charsmap_len ? "" : "de",
                       (int)ns.name_len, ns.name ? (const char *)ns.name : "",
                       ns.charsmap_len ? ns.charsmap_len : denorm_charsmap);
        goto fail;
    }
    if (ns.remove_extra_ws || !ns.escape_ws || ts.ws_suffix) {
        mmrm_set_error("%s: %s: mmrm supports the identity normalizer with "
                       "remove_extra_whitespaces false, escape_whitespaces true and the "
                       "whitespace as a prefix (InternLM2's and Llama's settings)", path,
                       ns.remove_extra_ws ? "normalizer_spec.remove_extra_whitespaces is true"
                       : !ns.escape_ws  ? "normalizer_spec.escape_whitespaces is false"
                                        : "trainer_spec.treat_whitespace_as_suffix is true");
        goto fail;
    }
    m->add_dummy_prefix = (int)ns.add_dummy_prefix;
    m->byte_fallback = (int)ts.byte_fallback;
    m->unk_surface = ts.has_unk_surface
                         ? strndup((const char *)ts.unk_surface, ts.unk_surface_len)
                         : xstrdup(" \xE2\x81\x87 ");
    MMRM_CHECK(m->unk_surface, "out of memory");

    m->blob = xmalloc(blob_len ? blob_len : 1);
    map_init(&m->normal, m->n);
    map_init(&m->reserved, m->n);
    m->user = xmalloc((size_t)m->n * sizeof *m->user);
    m->unk_id = -1;
    for (int c = 0; c < 256; c++) m->byte_id[c] = -1;
    size_t at = 0;
    for (int i = 0; i < m->n; i++) {
        Piece *p = &m->pieces[i];
        memcpy(m->blob + at, texts[i], p->len);
        m->blob[at + p->len] = '\0';
        p->text = m->blob + at;
        at += p->len + 1;
        if (!p->len) {
            mmrm_set_error("%s: piece %d is empty", path, i);
            goto fail;
        }
        int normal = is_normal_type(p->type);
        int old = map_insert(normal ? &m->normal : &m->reserved, m->pieces, i);
        if (old >= 0) {
            mmrm_set_error("%s: piece %d \"%s\" is defined twice (also piece %d)", path, i,
                           p->text, old);
            goto fail;
        }
        if (p->type == PT_USER) {
            m->user[m->n_user++] = i;
        } else if (p->type == PT_UNKNOWN) {
            if (m->unk_id >= 0) {
                mmrm_set_error("%s: pieces %d and %d are both of type UNKNOWN", path, m->unk_id, i);
                goto fail;
            }
            m->unk_id = i;
        } else if (p->type == PT_BYTE) {
            int c = spm_byte_of_piece(p);
            if (!m->byte_fallback) {
                mmrm_set_error("%s: piece %d \"%s\" is of type BYTE but trainer_spec.byte_fallback "
                               "is false", path, i, p->text);
                goto fail;
            }
            if (c < 0) {
                mmrm_set_error("%s: piece %d \"%s\" is of type BYTE but not of the form <0xXX>",
                               path, i, p->text);
                goto fail;
            }
            m->byte_id[c] = i;
        }
    }
    group_users(m);
    if (m->unk_id < 0) {
        mmrm_set_error("%s: no piece of type UNKNOWN (sentencepiece requires <unk>)", path);
        goto fail;
    }
    for (int c = 0; c < 256; c++) {
        if (m->byte_fallback && m->byte_id[c] < 0) {
            mmrm_set_error("%s: trainer_spec.byte_fallback is true but there is no BYTE piece "
                           "<0x%02X>", path, c);
            goto fail;
        }
    }
    long role[3] = {ts.bos_id, ts.eos_id, ts.pad_id};
    int *dst[3] = {&m->bos_id, &m->eos_id, &m->pad_id};
    for (int r = 0; r < 3; r++) *dst[r] = role[r] >= 0 && role[r] < m->n ? (int)role[r] : -1;
    free(texts);
    return m;
fail:
    free(texts);
    return model_fail(m);
}

/* ---- the HF files beside tokenizer.model: added tokens and roles ---- */

/* the file's JSON (NULL and *err 0 when absent; *err -1 with an error when unreadable) */
static cJSON *read_json(const char *dir, const char *name, char *path, size_t cap, int *err) {
    *err = 0;
    if (!fs_join(path, cap, dir, name)) {
        *err = -1;
        return NULL;
    }
    if (access(path, F_OK) != 0) return NULL;
    size_t len;
    char *text = fs_read_file(path, &len);
    if (!text) {
        *err = -1;
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, NULL, 1);
    free(text);
    if (!root) {
        mmrm_set_error("%s: malformed JSON", path);
        *err = -1;
    }
    return root;
}

/* a token given as "text" or {"content": "text", ...}; NULL if neither */
static const char *token_content(const cJSON *item) {
    if (cJSON_IsString(item)) return item->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(item, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

/* An added token may take the id of a model piece of another text: InternLM2's
 * added_tokens_decoder gives reserved pieces of its tokenizer.model new texts (the chat
 * markers), and HF then decodes that id as the added token, as here. */
static int add_token(Tokenizer *tok, int *cap, const char *path, const char *text, long id) {
    if (!text || !*text || id < 0 || id >= SPM_MAX_PIECES) {
        mmrm_set_error("%s: added token \"%s\" id %ld: a token is a non-empty string with an id "
                       "in [0, %d)", path, text ? text : "(none)", id, SPM_MAX_PIECES);
        return -1;
    }
    for (int k = 0; k < tok->n_special; k++) {
        const SpecialToken *sp = &tok->special[k];
        if (sp->id == id && strcmp(sp->text, text) == 0) return 0; /* listed again */
        if (sp->id == id || strcmp(sp->text, text) == 0) {
            mmrm_set_error("%s: added token \"%s\" id %ld conflicts with \"%s\" id %d", path,
                           text, id, sp->text, sp->id);
            return -1;
        }
    }
    if (tok->n_special == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        tok->special = xrealloc(tok->special, (size_t)*cap * sizeof *tok->special);
    }
    tok->special[tok->n_special++] = (SpecialToken){xstrdup(text), strlen(text), (int)id};
    tok->special_first[(unsigned char)text[0]] = 1;
    if (id >= tok->vocab_size) tok->vocab_size = (int)id + 1;
    return 0;
}

/* the id of a role token named in a config ("<s>"): a special token's or a piece's */
static int role_id(const Tokenizer *tok, const char *path, const char *field, const cJSON *item,
                   int *out) {
    if (!item) return 0;
    if (cJSON_IsNull(item)) {
        *out = -1;
        return 0;
    }
    const char *text = token_content(item);
    if (text) {
        for (int k = 0; k < tok->n_special; k++)
            if (strcmp(tok->special[k].text, text) == 0) {
                *out = tok->special[k].id;
                return 0;
            }
        int id = spm_map_find(&tok->spm->reserved, tok->spm->pieces, text, strlen(text));
        if (id < 0) id = spm_map_find(&tok->spm->normal, tok->spm->pieces, text, strlen(text));
        if (id >= 0) {
            *out = id;
            return 0;
        }
    }
    mmrm_set_error("%s: field \"%s\" must name a token of the model or an added token", path,
                   field);
    return -1;
}

static int load_added(Tokenizer *tok, const char *dir, int *cap) {
    char path[PATH_MAX];
    int err, rc = -1;
    /* tokenizer_config.json: added_tokens_decoder {"id": {"content": ...}}, roles, add_bos */
    cJSON *cfg = read_json(dir, "tokenizer_config.json", path, sizeof path, &err);
    if (err) return -1;
    char cfg_path[PATH_MAX];
    snprintf(cfg_path, sizeof cfg_path, "%s", path);
    if (cfg) {
        const cJSON *dec = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder");
        if (dec && !cJSON_IsObject(dec)) {
            mmrm_set_error("%s: field \"added_tokens_decoder\" must be an object {\"id\": "
                           "{\"content\": ...}}", path);
            goto done;
        }
        for (const cJSON *it = dec ? dec->child : NULL; it; it = it->next) {
            char *end;
            long id = strtol(it->string, &end, 10);
            if (*end || end == it->string) id = -1;
            if (add_token(tok, cap, path, token_content(it), id)) goto done;
        }
    }
    /* added_tokens.json: {"content": id} */
    cJSON *added = read_json(dir, "added_tokens.json", path, sizeof path, &err);
    if (err) goto done;
    for (const cJSON *it = added ? added->child : NULL; it; it = it->next) {
        /* range first: converting 1e300 to long is undefined behaviour */
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        long id = v >= 0 && v < SPM_MAX_PIECES && v == (double)(long)v ? (long)v : -1;
        if (add_token(tok, cap, path, it->string, id)) {
            cJSON_Delete(added);
            goto done;
        }
    }
    cJSON_Delete(added);
    /* the model's CONTROL and UNKNOWN pieces (<unk>, <s>, </s>) are special tokens too, as
     * HF's unk/bos/eos are, unless the files gave their id or text to another token */
    for (int i = 0; i < tok->spm->n; i++) {
        const Piece *p = &tok->spm->pieces[i];
        int taken = 0;
        for (int k = 0; k < tok->n_special && !taken; k++)
            taken = tok->special[k].id == i || strcmp(tok->special[k].text, p->text) == 0;
        if ((p->type == PT_CONTROL || p->type == PT_UNKNOWN) && !taken &&
            add_token(tok, cap, SPM_MODEL_FILE, p->text, i))
            goto done;
    }
    /* special_tokens_map.json: roles; additional_special_tokens must be known tokens */
    cJSON *map = read_json(dir, "special_tokens_map.json", path, sizeof path, &err);
    if (err) goto done;
    const cJSON *roles[2] = {map, cfg};
    const char *role_path[2] = {path, cfg_path};
    for (int r = 0; r < 2; r++) {
        const cJSON *j = roles[r];
        if (!j) continue;
        static const char *const names[3] = {"bos_token", "eos_token", "pad_token"};
        int *dst[3] = {&tok->bos_id, &tok->eos_id, &tok->pad_id};
        for (int q = 0; q < 3; q++) {
            if (role_id(tok, role_path[r], names[q],
                        cJSON_GetObjectItemCaseSensitive(j, names[q]), dst[q])) {
                cJSON_Delete(map);
                goto done;
            }
        }
    }
    const cJSON *extra =
        map ? cJSON_GetObjectItemCaseSensitive(map, "additional_special_tokens") : NULL;
    for (const cJSON *it = cJSON_IsArray(extra) ? extra->child : NULL; it; it = it->next) {
        int id = -1;
        if (role_id(tok, path, "additional_special_tokens", it, &id) ||
            add_token(tok, cap, path, token_content(it), id)) {
            cJSON_Delete(map);
            goto done;
        }
    }
    cJSON_Delete(map);
    const cJSON *add_bos = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token") : NULL;
    if (add_bos && !cJSON_IsBool(add_bos)) {
        mmrm_set_error("%s: field \"add_bos_token\" must be true or false", cfg_path);
        goto done;
    }
    if (add_bos) tok->add_bos = cJSON_IsTrue(add_bos);
    rc = 0;
done:
    cJSON_Delete(cfg);
    return rc;
}

Tokenizer *tokenizer_spm_load(const char *dir) {
    char path[PATH_MAX];
    if (!fs_join(path, sizeof path, dir, SPM_MODEL_FILE)) return NULL;
    size_t len;
    char *data = fs_read_file(path, &len);
    if (!data) {
        mmrm_set_error("cannot open tokenizer file %s: %s", path, strerror(errno));
        return NULL;
    }
    SpmModel *m = model_parse(path, (const uint8_t *)data, len);
    if (!m) {
        free(data);
        return NULL;
    }
    m->raw = data;
    m->raw_len = len;
    Tokenizer *tok = xcalloc(1, sizeof *tok);
    tok->kind = TOKENIZER_SPM;
    tok->spm = m;
    tok->vocab_size = m->n;
    tok->special = xcalloc(1, sizeof *tok->special);
    /* the trainer_spec's roles unless the HF files name others; Llama and InternLM2 start
     * inputs with <s> (HF's add_bos_token defaults to true) */
    tok->bos_id = m->bos_id;
    tok->eos_id = m->eos_id;
    tok->pad_id = m->pad_id;
    tok->add_bos = tok->bos_id >= 0;
    int cap = 1;
    if (load_added(tok, dir, &cap)) {
        tokenizer_free(tok);
        return NULL;
    }
    if (tok->add_bos && tok->bos_id < 0) {
        mmrm_set_error("%s: add_bos_token is true but the model has no bos token", path);
        tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

/* a role as tokenizer_config.json names it: the token's text, or null */
static cJSON *role_json(const Tokenizer *tok, int id) {
    if (id < 0) return cJSON_CreateNull();
    const SpecialToken *sp = spm_special_of(tok, id);
    return cJSON_CreateString(sp ? sp->text : tok->spm->pieces[id].text);
}

int tokenizer_spm_save(const Tokenizer *tok, const char *dir) {
    char path[PATH_MAX];
    if (!fs_join(path, sizeof path, dir, SPM_MODEL_FILE) ||
        fs_write_atomic(path, tok->spm->raw, tok->spm->raw_len))
        return -1;
    cJSON *root = cJSON_CreateObject(), *dec = cJSON_CreateObject();
    MMRM_CHECK(root && dec, "tokenizer_save: out of memory building JSON");
    for (int k = 0; k < tok->n_special; k++) {
        char key[16];
        snprintf(key, sizeof key, "%d", tok->special[k].id);
        cJSON *item = cJSON_CreateObject();
        MMRM_CHECK(item && cJSON_AddStringToObject(item, "content", tok->special[k].text) &&
                       cJSON_AddBoolToObject(item, "special", 1) &&
                       cJSON_AddItemToObject(dec, key, item),
                   "tokenizer_save: out of memory building JSON");
    }
    MMRM_CHECK(cJSON_AddBoolToObject(root, "add_bos_token", tok->add_bos) &&
                   cJSON_AddItemToObject(root, "bos_token", role_json(tok, tok->bos_id)) &&
                   cJSON_AddItemToObject(root, "eos_token", role_json(tok, tok->eos_id)) &&
                   cJSON_AddItemToObject(root, "pad_token", role_json(tok, tok->pad_id)) &&
                   cJSON_AddItemToObject(root, "added_tokens_decoder", dec),
               "tokenizer_save: out of memory building JSON");
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    MMRM_CHECK(json, "tokenizer_save: out of memory printing JSON");
    int rc = fs_join(path, sizeof path, dir, "tokenizer_config.json") &&
                     !fs_write_atomic(path, json, strlen(json))
                 ? 0
                 : -1;
    cJSON_free(json);
    return rc;
}
