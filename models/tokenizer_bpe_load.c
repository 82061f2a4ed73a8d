/* tokenizer_bpe_load.c - the byte-level BPE kind's loader: HF's tokenizer.json, or
 * vocab.json + merges.txt, with the added tokens and roles of tokenizer_config.json,
 * added_tokens.json and special_tokens_map.json; and its save. See tokenizer_bpe.h. */
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
    for (size_t i = bpe_hash_bytes(s, n) & v->mask;; i = (i + 1) & v->mask) {
        const VocabSlot *e = &v->slots[i];
        if (!e->text) return -1;
        if (e->len == n && memcmp(e->text, s, n) == 0) return e->id;
    }
}

static void vocab_put(VocabMap *v, const char *s, size_t n, int id) {
    size_t i = bpe_hash_bytes(s, n) & v->mask;
    while (v->slots[i].text) i = (i + 1) & v->mask;
    v->slots[i] = (VocabSlot){s, n, id};
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
    bpe_byte_symbols(sym, inverse);
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
        size_t k = bpe_utf8_put(u, sym[b]);
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
    bpe_merge_put(L->m, ia, ib, rank, id);
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
    tok->bpe->cache = bpe_cache_new();
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
