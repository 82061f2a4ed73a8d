/* tokenizer.c - the tokenizer interface: the shared special-token layer, the byte-level
 * and word kinds, and loading/saving the tokenizer file of a model directory (JSON via cJSON). */
#include "models/tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/tokenizer_bpe.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "models/tokenizer_spm.h"

#define BYTE_VOCAB 256
#define MAX_VOCAB (1 << 24) /* far beyond any real vocabulary; bounds a hostile file's */

static const char *const g_byte_specials[] = {
    "<s>",   "</s>",   "<|im_start|>", "<|im_end|>", "<img>",  "</img>", "<IMG_CONTEXT>",
    "<quad>", "</quad>", "<ref>",        "</ref>",     "<box>",  "</box>", "<pad>",
};
enum { BYTE_N_SPECIAL = sizeof g_byte_specials / sizeof g_byte_specials[0] };

const char *tokenizer_kind_name(TokenizerKind kind) {
    switch (kind) {
    case TOKENIZER_BYTE: return "byte";
    case TOKENIZER_WORD: return "word";
    case TOKENIZER_BPE: return "bpe";
    case TOKENIZER_SPM: return "sentencepiece";
    }
    MMRM_FATAL("tokenizer: unknown kind %d", (int)kind);
}

static Tokenizer *tokenizer_alloc(TokenizerKind kind, int n_special) {
    Tokenizer *tok = xcalloc(1, sizeof *tok);
    tok->kind = kind;
    tok->bos_id = tok->eos_id = tok->pad_id = -1;
    tok->special = xcalloc((size_t)n_special, sizeof *tok->special);
    return tok;
}

static void add_special(Tokenizer *tok, const char *text, int id) {
    SpecialToken *sp = &tok->special[tok->n_special++];
    sp->text = xstrdup(text);
    sp->len = strlen(text);
    sp->id = id;
    tok->special_first[(unsigned char)text[0]] = 1;
}

Tokenizer *tokenizer_byte_new(int add_bos) {
    Tokenizer *tok = tokenizer_alloc(TOKENIZER_BYTE, BYTE_N_SPECIAL);
    for (int k = 0; k < BYTE_N_SPECIAL; k++) add_special(tok, g_byte_specials[k], BYTE_VOCAB + k);
    tok->vocab_size = BYTE_VOCAB + BYTE_N_SPECIAL;
    tok->bos_id = tokenizer_special_id(tok, "<s>");
    tok->eos_id = tokenizer_special_id(tok, "</s>");
    tok->pad_id = tokenizer_special_id(tok, "<pad>");
    tok->add_bos = add_bos != 0;
    return tok;
}

/* ---- the word vocabulary ---- */

static int is_word_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* length of the word piece at s[i] (a maximal letter/digit run, with the space before it if
 * s[i] is that space), 0 if none starts there */
static size_t word_piece_len(const char *s, size_t n, size_t i) {
    size_t j = i;
    if (s[j] == ' ' && j + 1 < n && is_word_char((unsigned char)s[j + 1])) j++;
    if (!is_word_char((unsigned char)s[j])) return 0;
    while (j < n && is_word_char((unsigned char)s[j])) j++;
    return j - i;
}

void tokenizer_word_pieces(const char *text, size_t len,
                           void (*fn)(const char *piece, size_t len, void *ctx), void *ctx) {
    for (size_t i = 0; i < len;) {
        size_t m = word_piece_len(text, len, i);
        if (m) fn(text + i, m, ctx);
        i += m ? m : 1;
    }
}

static int cmp_text(const char *a, size_t na, const char *b, size_t nb) {
    int c = memcmp(a, b, na < nb ? na : nb);
    return c ? c : (na > nb) - (na < nb);
}

static int cmp_word(const void *a, const void *b) {
    const SpecialToken *x = a, *y = b;
    return cmp_text(x->text, x->len, y->text, y->len);
}

static int cmp_id(const void *a, const void *b) {
    const SpecialToken *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* id of the vocabulary word s[0..n), -1 if none */
static int word_id(const Tokenizer *tok, const char *s, size_t n) {
    int lo = 0, hi = tok->n_words - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const SpecialToken *w = &tok->words[mid];
        int c = cmp_text(s, n, w->text, w->len);
        if (!c) return w->id;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return -1;
}

/* "" if text is a word piece, else why not */
static const char *word_problem(const char *text) {
    size_t n = strlen(text);
    if (!n) return "it is empty";
    if (word_piece_len(text, n, 0) != n)
        return "a word is ASCII letters and digits, with at most one leading space";
    return "";
}

/* sorts the words and rejects duplicates; 0 or -1 with an error naming `where` */
static int finish_words(Tokenizer *tok, const char *where) {
    qsort(tok->words, (size_t)tok->n_words, sizeof *tok->words, cmp_word);
    for (int k = 1; k < tok->n_words; k++)
        if (!cmp_word(&tok->words[k - 1], &tok->words[k])) {
            mmrm_set_error("%s: the word \"%s\" appears twice", where, tok->words[k].text);
            return -1;
        }
    return 0;
}

Tokenizer *tokenizer_word_new(const char *const *words, int n, int add_bos) {
    Tokenizer *tok = tokenizer_byte_new(add_bos);
    tok->kind = TOKENIZER_WORD;
    tok->words = xcalloc((size_t)(n > 0 ? n : 1), sizeof *tok->words);
    for (int k = 0; k < n; k++) {
        const char *why = word_problem(words[k]);
        if (*why) {
            mmrm_set_error("word tokenizer: word %d \"%s\": %s", k, words[k], why);
            tokenizer_free(tok);
            return NULL;
        }
        tok->words[k] = (SpecialToken){xstrdup(words[k]), strlen(words[k]), tok->vocab_size + k};
        tok->n_words = k + 1;
    }
    tok->vocab_size += n;
    if (finish_words(tok, "word tokenizer")) {
        tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

void tokenizer_free(Tokenizer *tok) {
    if (!tok) return;
    for (int k = 0; k < tok->n_special; k++) free(tok->special[k].text);
    for (int k = 0; k < tok->n_words; k++) free(tok->words[k].text);
    free(tok->words);
    free(tok->special);
    bpe_free(tok->bpe);
    spm_model_free(tok->spm);
    free(tok);
}

static const SpecialToken *special_by_id(const Tokenizer *tok, int id) {
    for (int k = 0; k < tok->n_special; k++)
        if (tok->special[k].id == id) return &tok->special[k];
    return NULL;
}

int tokenizer_special_id(const Tokenizer *tok, const char *text) {
    for (int k = 0; k < tok->n_special; k++)
        if (strcmp(tok->special[k].text, text) == 0) return tok->special[k].id;
    mmrm_set_error("the %s tokenizer has no special token \"%s\"", tokenizer_kind_name(tok->kind), text);
    return -1;
}

/* ---- encode / decode ---- */

/* the longest special token that s[0..n) starts with; -1 if none */
static int match_special(const Tokenizer *tok, const char *s, size_t n, size_t *match_len) {
    int best = -1;
    size_t best_len = 0;
    for (int k = 0; k < tok->n_special; k++) {
        const SpecialToken *sp = &tok->special[k];
        if (sp->len > best_len && sp->len <= n && memcmp(sp->text, s, sp->len) == 0) {
            best = k;
            best_len = sp->len;
        }
    }
    *match_len = best_len;
    return best;
}

/* text between special tokens, through the kind's own encoder; *count counts every id,
 * written or not */
static void encode_plain(const Tokenizer *tok, const char *s, size_t n, int *ids, int cap,
                         size_t *count) {
    switch (tok->kind) {
    case TOKENIZER_BYTE:
        for (size_t i = 0; i < n; i++, (*count)++)
            if (*count < (size_t)cap) ids[*count] = (unsigned char)s[i];
        return;
    case TOKENIZER_WORD:
        for (size_t i = 0; i < n;) {
            size_t m = word_piece_len(s, n, i);
            int id = m ? word_id(tok, s + i, m) : -1;
            if (id < 0 && m > 1 && s[i] == ' ') {
                /* " word" unknown: the space as a byte, then the bare word */
                if (*count < (size_t)cap) ids[*count] = ' ';
                (*count)++;
                i++;
                m--;
                id = word_id(tok, s + i, m);
            }
            if (id >= 0) {
                if (*count < (size_t)cap) ids[*count] = id;
                (*count)++;
                i += m;
                continue;
            }
            for (size_t e = i + (m ? m : 1); i < e; i++, (*count)++)
                if (*count < (size_t)cap) ids[*count] = (unsigned char)s[i];
        }
        return;
    case TOKENIZER_BPE:
        bpe_encode(tok->bpe, s, n, ids, cap, count);
        return;
    case TOKENIZER_SPM:
        spm_encode(tok->spm, s, n, ids, cap, count);
        return;
    }
    MMRM_FATAL("tokenizer: unknown kind %d", (int)tok->kind);
}

int tokenizer_encode(const Tokenizer *tok, const char *text, size_t len, int *ids, int cap) {
    if (len > INT_MAX || cap < 0 || (cap > 0 && !ids)) {
        mmrm_set_error("tokenizer_encode: bad arguments (len %zu, cap %d)", len, cap);
        return -1;
    }
    size_t count = 0, plain = 0; /* plain: start of the text not yet encoded */
    for (size_t i = 0; i < len;) {
        size_t match_len = 0;
        int k = tok->special_first[(unsigned char)text[i]]
                    ? match_special(tok, text + i, len - i, &match_len)
                    : -1;
        if (k < 0) {
            i++;
            continue;
        }
        encode_plain(tok, text + plain, i - plain, ids, cap, &count);
        if (count < (size_t)cap) ids[count] = tok->special[k].id;
        count++;
        i += match_len;
        plain = i;
    }
    encode_plain(tok, text + plain, len - plain, ids, cap, &count);
    return (int)count;
}

/* bytes of id's text, or NULL (then *n is 0) if the id has no token; *one holds a byte id */
static const char *token_text(const Tokenizer *tok, int id, char *one, size_t *n) {
    const SpecialToken *sp = special_by_id(tok, id);
    if (sp) {
        *n = sp->len;
        return sp->text;
    }
    if (tok->kind == TOKENIZER_BPE) {
        const char *bytes = bpe_token_bytes(tok->bpe, id, n);
        if (!bytes) *n = 0;
        return bytes;
    }
    if (id >= 0 && id < BYTE_VOCAB) {
        *one = (char)(unsigned char)id;
        *n = 1;
        return one;
    }
    for (int k = 0; k < tok->n_words; k++)
        if (tok->words[k].id == id) {
            *n = tok->words[k].len;
            return tok->words[k].text;
        }
    *n = 0;
    return NULL;
}

char *tokenizer_decode(const Tokenizer *tok, const int *ids, int n, size_t *len_out) {
    if (tok->kind == TOKENIZER_SPM) return spm_decode(tok, ids, n, len_out);
    size_t total = 0, piece_len;
    char one;
    for (int i = 0; i < n; i++) {
        if (!token_text(tok, ids[i], &one, &piece_len)) {
            mmrm_set_error("tokenizer_decode: id %d at position %d has no token (%s tokenizer, "
                           "vocab_size %d)", ids[i], i, tokenizer_kind_name(tok->kind), tok->vocab_size);
            return NULL;
        }
        total += piece_len;
    }
    char *out = xmalloc(total + 1);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *piece = token_text(tok, ids[i], &one, &piece_len);
        memcpy(out + at, piece, piece_len);
        at += piece_len;
    }
    out[total] = '\0';
    if (len_out) *len_out = total;
    return out;
}

/* ---- the tokenizer file ---- */

/* an integral JSON number in [lo, hi] */
static int json_int(const cJSON *item, long lo, long hi, int *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= (double)lo && v <= (double)hi) || v != (double)(long)v) return 0;
    *out = (int)v;
    return 1;
}

static const char *const g_fields[] = {"type",   "vocab_size", "special_tokens", "bos_id",
                                       "eos_id", "pad_id",     "add_bos",        "words"};
enum { N_FIELDS = sizeof g_fields / sizeof g_fields[0], F_WORDS = N_FIELDS - 1 };
#define FIELD_LIST "type, vocab_size, special_tokens, bos_id, eos_id, pad_id, add_bos (and words for type word)"

/* root's fields in g_fields order; every one but "words" required, no others, none twice */
static int collect_fields(const char *path, const cJSON *root, const cJSON *field[N_FIELDS]) {
    for (int f = 0; f < N_FIELDS; f++) field[f] = NULL;
    for (const cJSON *it = root->child; it; it = it->next) {
        int f = 0;
        while (f < N_FIELDS && strcmp(it->string, g_fields[f]) != 0) f++;
        if (f == N_FIELDS) {
            mmrm_set_error("%s: unknown field \"%s\" (a tokenizer file has " FIELD_LIST ")",
                           path, it->string);
            return -1;
        }
        if (field[f]) {
            mmrm_set_error("%s: field \"%s\" appears twice", path, it->string);
            return -1;
        }
        field[f] = it;
    }
    for (int f = 0; f < F_WORDS; f++) {
        if (!field[f]) {
            mmrm_set_error("%s: field \"%s\" is missing (a tokenizer file has " FIELD_LIST ")",
                           path, g_fields[f]);
            return -1;
        }
    }
    return 0;
}

static int parse_specials(const char *path, const cJSON *arr, Tokenizer *tok) {
    if (!cJSON_IsArray(arr)) {
        mmrm_set_error("%s: field \"special_tokens\" must be an array of {\"id\", \"content\"}",
                       path);
        return -1;
    }
    int k = 0;
    for (const cJSON *it = arr->child; it; it = it->next, k++) {
        const cJSON *jid = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *jtext = cJSON_GetObjectItemCaseSensitive(it, "content");
        int id;
        if (!cJSON_IsObject(it) || !jid || !cJSON_IsString(jtext) || !jtext->valuestring[0]) {
            mmrm_set_error("%s: field \"special_tokens[%d]\" must be {\"id\": integer, "
                           "\"content\": non-empty string}", path, k);
            return -1;
        }
        if (!json_int(jid, BYTE_VOCAB, tok->vocab_size - 1, &id)) {
            mmrm_set_error("%s: field \"special_tokens[%d].id\" (token \"%s\") is out of "
                           "range: it must be an integer in [%d, vocab_size %d)", path, k,
                           jtext->valuestring, BYTE_VOCAB, tok->vocab_size);
            return -1;
        }
        for (int j = 0; j < tok->n_special; j++) {
            if (tok->special[j].id == id) {
                mmrm_set_error("%s: field \"special_tokens[%d].id\": duplicate id %d (also "
                               "special_tokens[%d], \"%s\")", path, k, id, j,
                               tok->special[j].text);
                return -1;
            }
            if (strcmp(tok->special[j].text, jtext->valuestring) == 0) {
                mmrm_set_error("%s: field \"special_tokens[%d].content\": duplicate token "
                               "\"%s\" (also special_tokens[%d])", path, k, jtext->valuestring, j);
                return -1;
            }
        }
        add_special(tok, jtext->valuestring, id);
    }
    return 0;
}

static int parse_words(const char *path, const cJSON *arr, Tokenizer *tok) {
    if (!cJSON_IsArray(arr)) {
        mmrm_set_error("%s: field \"words\" must be an array of {\"id\", \"content\"}", path);
        return -1;
    }
    int n = cJSON_GetArraySize(arr), k = 0;
    tok->words = xcalloc((size_t)(n > 0 ? n : 1), sizeof *tok->words);
    unsigned char *used = xcalloc((size_t)tok->vocab_size, 1);
    for (int j = 0; j < tok->n_special; j++) used[tok->special[j].id] = 1;
    int rc = -1;
    for (const cJSON *it = arr->child; it; it = it->next, k++) {
        const cJSON *jid = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *jtext = cJSON_GetObjectItemCaseSensitive(it, "content");
        int id;
        if (!cJSON_IsObject(it) || !jid || !cJSON_IsString(jtext)) {
            mmrm_set_error("%s: field \"words[%d]\" must be {\"id\": integer, \"content\": "
                           "string}", path, k);
            goto done;
        }
        const char *why = word_problem(jtext->valuestring);
        if (*why) {
            mmrm_set_error("%s: field \"words[%d].content\" \"%s\" is not a word: %s", path, k,
                           jtext->valuestring, why);
            goto done;
        }
        if (!json_int(jid, BYTE_VOCAB, tok->vocab_size - 1, &id)) {
            mmrm_set_error("%s: field \"words[%d].id\" (word \"%s\") is out of range: it must "
                           "be an integer in [%d, vocab_size %d)", path, k, jtext->valuestring,
                           BYTE_VOCAB, tok->vocab_size);
            goto done;
        }
        if (used[id]) {
            mmrm_set_error("%s: field \"words[%d].id\": id %d is already a special token's or "
                           "another word's", path, k, id);
            goto done;
        }
        used[id] = 1;
        tok->words[tok->n_words++] = (SpecialToken){xstrdup(jtext->valuestring),
                                                    strlen(jtext->valuestring), id};
    }
    char where[4200];
    snprintf(where, sizeof where, "%s: field \"words\"", path);
    rc = finish_words(tok, where);
done:
    free(used);
    return rc;
}

/* bos_id / eos_id / pad_id: null or the id of a special token */
static int parse_role_id(const char *path, const char *name, const cJSON *item,
                         const Tokenizer *tok, int *out) {
    if (cJSON_IsNull(item)) {
        *out = -1;
        return 0;
    }
    if (!json_int(item, INT_MIN, INT_MAX, out) || !special_by_id(tok, *out)) {
        mmrm_set_error("%s: field \"%s\" must be null or the id of one of special_tokens",
                       path, name);
        return -1;
    }
    return 0;
}

static Tokenizer *tokenizer_from_json(const char *path, const cJSON *root) {
    if (!cJSON_IsObject(root)) {
        mmrm_set_error("%s: the top level must be a JSON object with " FIELD_LIST, path);
        return NULL;
    }
    const cJSON *field[N_FIELDS];
    if (collect_fields(path, root, field) != 0) return NULL;
    const cJSON *jtype = field[0], *jvocab = field[1], *jspecial = field[2], *jadd = field[6];
    if (!cJSON_IsString(jtype)) {
        mmrm_set_error("%s: field \"type\" must be a string (supported: byte, word)", path);
        return NULL;
    }
    TokenizerKind kind = TOKENIZER_BYTE;
    if (strcmp(jtype->valuestring, "word") == 0) {
        kind = TOKENIZER_WORD;
    } else if (strcmp(jtype->valuestring, "byte") != 0) {
        mmrm_set_error("%s: field \"type\": unknown tokenizer type \"%s\" (supported: byte, "
                       "word)", path, jtype->valuestring);
        return NULL;
    }
    if ((kind == TOKENIZER_WORD) != (field[F_WORDS] != NULL)) {
        mmrm_set_error(kind == TOKENIZER_WORD ? "%s: field \"words\" is missing (type word)"
                                              : "%s: field \"words\" belongs to type word, not byte",
                       path);
        return NULL;
    }
    int vocab_size;
    if (!json_int(jvocab, BYTE_VOCAB, MAX_VOCAB, &vocab_size)) {
        mmrm_set_error("%s: field \"vocab_size\" must be an integer in [%d, %d] (bytes + special "
                       "tokens + words)", path, BYTE_VOCAB, MAX_VOCAB);
        return NULL;
    }
    if (!cJSON_IsBool(jadd)) {
        mmrm_set_error("%s: field \"add_bos\" must be true or false", path);
        return NULL;
    }
    Tokenizer *tok = tokenizer_alloc(kind, cJSON_GetArraySize(jspecial));
    tok->vocab_size = vocab_size;
    tok->add_bos = cJSON_IsTrue(jadd);
    if (parse_specials(path, jspecial, tok) != 0 ||
        parse_role_id(path, "bos_id", field[3], tok, &tok->bos_id) != 0 ||
        parse_role_id(path, "eos_id", field[4], tok, &tok->eos_id) != 0 ||
        parse_role_id(path, "pad_id", field[5], tok, &tok->pad_id) != 0 ||
        (kind == TOKENIZER_WORD && parse_words(path, field[F_WORDS], tok) != 0)) {
        tokenizer_free(tok);
        return NULL;
    }
    if (tok->add_bos && tok->bos_id < 0) {
        mmrm_set_error("%s: field \"add_bos\" is true but bos_id is null", path);
        tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

Tokenizer *tokenizer_load(const char *dir) {
    char path[PATH_MAX];
    if (!fs_join(path, sizeof path, dir, TOKENIZER_FILE)) return NULL;
    char spm_path[PATH_MAX];
    if (access(path, F_OK) != 0 && fs_join(spm_path, sizeof spm_path, dir, SPM_MODEL_FILE) &&
        access(spm_path, F_OK) == 0)
        return tokenizer_spm_load(dir);
    size_t len;
    char *text = fs_read_file(path, &len);
    if (!text && errno == ENOENT && tokenizer_bpe_present(dir)) return tokenizer_bpe_load(dir);
    if (!text)
        mmrm_set_error("cannot open tokenizer file %s: %s (nor has the directory HF tokenizer "
                       "files: tokenizer.json, vocab.json + merges.txt, or " SPM_MODEL_FILE ")",
                       path, strerror(errno));
    Tokenizer *tok = NULL;
    if (text) {
        /* the length includes the terminating NUL: cJSON's check for trailing garbage
         * requires it inside the buffer */
        cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, NULL, 1);
        if (!root) {
            const char *at = cJSON_GetErrorPtr();
            int line = 1;
            for (const char *p = text; at && p < at && p < text + len; p++) line += *p == '\n';
            mmrm_set_error("%s:%d: malformed JSON near \"%.20s\"", path, line,
                           at && at < text + len ? at : "(end of file)");
        } else {
            tok = tokenizer_from_json(path, root);
            cJSON_Delete(root);
        }
        free(text);
    }
    return tok;
}

int tokenizer_present(const char *dir) {
    char path[PATH_MAX];
    char spm[PATH_MAX];
    return (fs_join(path, sizeof path, dir, TOKENIZER_FILE) && access(path, R_OK) == 0) ||
           tokenizer_bpe_present(dir) ||
           (fs_join(spm, sizeof spm, dir, SPM_MODEL_FILE) && access(spm, R_OK) == 0);
}

static cJSON *json_role_id(int id) { return id < 0 ? cJSON_CreateNull() : cJSON_CreateNumber(id); }

int tokenizer_save(const Tokenizer *tok, const char *dir) {
    if (tok->kind == TOKENIZER_BPE) return tokenizer_bpe_save(tok, dir);
    if (tok->kind == TOKENIZER_SPM) return tokenizer_spm_save(tok, dir);
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_CreateArray();
    MMRM_CHECK(root && arr, "tokenizer_save: out of memory building JSON");
    for (int k = 0; k < tok->n_special; k++) {
        cJSON *item = cJSON_CreateObject();
        MMRM_CHECK(item && cJSON_AddNumberToObject(item, "id", tok->special[k].id) &&
                       cJSON_AddStringToObject(item, "content", tok->special[k].text) &&
                       cJSON_AddItemToArray(arr, item),
                   "tokenizer_save: out of memory building JSON");
    }
    MMRM_CHECK(cJSON_AddStringToObject(root, "type", tokenizer_kind_name(tok->kind)) &&
                   cJSON_AddNumberToObject(root, "vocab_size", tok->vocab_size) &&
                   cJSON_AddItemToObject(root, "special_tokens", arr) &&
                   cJSON_AddItemToObject(root, "bos_id", json_role_id(tok->bos_id)) &&
                   cJSON_AddItemToObject(root, "eos_id", json_role_id(tok->eos_id)) &&
                   cJSON_AddItemToObject(root, "pad_id", json_role_id(tok->pad_id)) &&
                   cJSON_AddBoolToObject(root, "add_bos", tok->add_bos),
               "tokenizer_save: out of memory building JSON");
    if (tok->kind == TOKENIZER_WORD) {
        cJSON *words = cJSON_AddArrayToObject(root, "words");
        MMRM_CHECK(words, "tokenizer_save: out of memory building JSON");
        /* in id order, so the file reads like the vocabulary */
        SpecialToken *by_id = xmalloc((size_t)(tok->n_words > 0 ? tok->n_words : 1) * sizeof *by_id);
        memcpy(by_id, tok->words, (size_t)tok->n_words * sizeof *by_id);
        qsort(by_id, (size_t)tok->n_words, sizeof *by_id, cmp_id);
        for (int k = 0; k < tok->n_words; k++) {
            cJSON *item = cJSON_CreateObject();
            MMRM_CHECK(item && cJSON_AddNumberToObject(item, "id", by_id[k].id) &&
                           cJSON_AddStringToObject(item, "content", by_id[k].text) &&
                           cJSON_AddItemToArray(words, item),
                       "tokenizer_save: out of memory building JSON");
        }
        free(by_id);
    }
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    MMRM_CHECK(json, "tokenizer_save: out of memory printing JSON");

    char path[PATH_MAX], tmp[PATH_MAX];
    if (!fs_join(path, sizeof path, dir, TOKENIZER_FILE) ||
        !fs_join(tmp, sizeof tmp, dir, TOKENIZER_FILE ".tmp")) {
        cJSON_free(json);
        return -1;
    }
    int rc = -1;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        mmrm_set_error("cannot write tokenizer file %s: %s", tmp, strerror(errno));
    } else {
        size_t n = strlen(json);
        int ok = fwrite(json, 1, n, f) == n && fputc('\n', f) != EOF;
        ok &= fclose(f) == 0;
        if (!ok) {
            mmrm_set_error("cannot write tokenizer file %s: %s", tmp, strerror(errno));
            remove(tmp);
        } else if (rename(tmp, path) != 0) {
            mmrm_set_error("cannot rename %s to %s: %s", tmp, path, strerror(errno));
            remove(tmp);
        } else {
            rc = 0;
        }
    }
    cJSON_free(json);
    return rc;
}
