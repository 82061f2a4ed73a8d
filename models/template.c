/* template.c - internlm2-chat and Hermes-2 chat templates: the exact text of the data spec,
 * the image block expansion, tokenisation and truncation that keeps the final <|im_end|>. */
#include "models/template.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/strbuf.h"

/* UTF-8, copied from spec/data.md */
static const char SYS[] = "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，"
                          "英文名叫InternVL, 是一个有用无害的人工智能助手。";

/* 4096 tiles of 256: far beyond any configured max_num, small enough that the text's
 * length (13 bytes per <IMG_CONTEXT>) cannot overflow */
#define MAX_IMAGE_TOKENS (1 << 20)

static const struct {
    const char *name;
    TemplateKind kind;
} g_templates[] = {{"internlm2-chat", TEMPLATE_INTERNLM2_CHAT}, {"Hermes-2", TEMPLATE_HERMES_2}};

int template_parse(const char *name, TemplateKind *out) {
    for (size_t i = 0; i < sizeof g_templates / sizeof g_templates[0]; i++) {
        if (strcmp(name, g_templates[i].name) == 0) {
            *out = g_templates[i].kind;
            return 0;
        }
    }
    mmrm_set_error("unknown template \"%s\" (valid: internlm2-chat, Hermes-2)", name);
    return -1;
}

const char *template_name(TemplateKind kind) {
    for (size_t i = 0; i < sizeof g_templates / sizeof g_templates[0]; i++)
        if (g_templates[i].kind == kind) return g_templates[i].name;
    MMRM_FATAL("template: unknown kind %d", (int)kind);
}

/* ---- Python's str.strip() on UTF-8 ---- */

/* length of the valid UTF-8 sequence at s[0..n) and its code point; 0 if invalid */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    size_t len;
    uint32_t v, min;
    if (n == 0) return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xE0) == 0xC0) len = 2, v = s[0] & 0x1F, min = 0x80;
    else if ((s[0] & 0xF0) == 0xE0) len = 3, v = s[0] & 0x0F, min = 0x800;
    else if ((s[0] & 0xF8) == 0xF0) len = 4, v = s[0] & 0x07, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

/* Python's str.isspace(): bidirectional class WS, B or S, or category Zs */
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* s[*begin..*end) is s[0..n) without what str.strip() removes; bytes that are not valid
 * UTF-8 are never whitespace */
static void py_strip(const char *s, size_t n, size_t *begin, size_t *end) {
    const unsigned char *u = (const unsigned char *)s;
    size_t a = 0, b = n, len;
    uint32_t cp;
    while (a < b && (len = utf8_decode(u + a, b - a, &cp)) && py_isspace(cp)) a += len;
    while (b > a) {
        size_t k = b - 1; /* back to the lead byte of the last character */
        while (k > a && b - k < 4 && (u[k] & 0xC0) == 0x80) k--;
        if (utf8_decode(u + k, b - k, &cp) != b - k || !py_isspace(cp)) break;
        b = k;
    }
    *begin = a;
    *end = b;
}

/* ---- text ---- */

/* s[0..n), stripped where the template strips, less its first `skip` bytes after that */
static void add_message(StrBuf *b, TemplateKind kind, const char *s, size_t n, size_t skip) {
    size_t begin = 0, end = n;
    if (kind == TEMPLATE_INTERNLM2_CHAT) py_strip(s, n, &begin, &end);
    sb_append(b, s + begin + skip, end - begin - skip);
}

/* The whole text; *prefix_len is the length up to and including the assistant header.
 * The reference replaces the first "<image>" of the conversation; the system turn has
 * none and stripping never touches the leading "<image>" of USER, so it is USER's own
 * first 7 bytes and is expanded in place. */
static char *build_text(TemplateKind kind, const char *system, const char *prompt,
                        const char *response, int n_image_tokens, size_t *prefix_len,
                        size_t *len) {
    static const char image_tag[] = "<image>\n";
    const size_t tag_len = sizeof image_tag - 1, image_len = 7; /* "<image>" */
    size_t np = strlen(prompt);
    char *user = xmalloc(tag_len + np + 1);
    size_t nu = 0;
    if (n_image_tokens > 0) {
        memcpy(user, image_tag, tag_len);
        nu = tag_len;
    }
    memcpy(user + nu, prompt, np + 1);
    nu += np;

    StrBuf b = {0};
    sb_puts(&b, "<|im_start|>system\n");
    sb_puts(&b, system ? system : template_default_system(kind));
    sb_puts(&b, "<|im_end|><|im_start|>user\n");
    size_t skip = 0;
    if (n_image_tokens > 0) {
        sb_puts(&b, "<img>");
        for (int i = 0; i < n_image_tokens; i++) sb_puts(&b, "<IMG_CONTEXT>");
        sb_puts(&b, "</img>");
        skip = image_len;
    }
    add_message(&b, kind, user, nu, skip);
    sb_puts(&b, "<|im_end|><|im_start|>assistant\n");
    *prefix_len = b.len;
    add_message(&b, kind, response, strlen(response), 0);
    sb_puts(&b, "<|im_end|>");
    free(user);
    *len = b.len;
    return sb_take(&b);
}

const char *template_default_system(TemplateKind kind) {
    (void)kind; /* both templates use the same message */
    return SYS;
}

char *template_text(TemplateKind kind, const char *system, const char *prompt,
                    const char *response, int n_image_tokens) {
    size_t prefix_len, len;
    return build_text(kind, system, prompt, response, n_image_tokens, &prefix_len, &len);
}

/* ---- tokens ---- */

typedef struct {
    int im_start, im_end, img, img_end, img_context;
} TemplateIds;

/* the special tokens the template needs, and a BOS convention that matches the template */
static int check_tokenizer(const Tokenizer *tok, TemplateKind kind, TemplateIds *t) {
    static const char *const needed[] = {"<|im_start|>", "<|im_end|>", "<img>", "</img>",
                                         "<IMG_CONTEXT>"};
    int ids[5];
    for (int i = 0; i < 5; i++) {
        ids[i] = tokenizer_special_id(tok, needed[i]);
        if (ids[i] < 0) {
            mmrm_set_error("template %s needs the special token \"%s\", which the tokenizer "
                           "lacks", template_name(kind), needed[i]);
            return -1;
        }
    }
    *t = (TemplateIds){ids[0], ids[1], ids[2], ids[3], ids[4]};
    int wants_bos = kind == TEMPLATE_INTERNLM2_CHAT;
    if (wants_bos != tok->add_bos) {
        mmrm_set_error("template %s %s, but the tokenizer has add_bos %s (templates pair with "
                       "their tokenizers: internlm2-chat with InternLM2's, Hermes-2 with "
                       "Qwen2's)", template_name(kind),
                       wants_bos ? "expects inputs to start with <s>" : "expects no BOS",
                       tok->add_bos ? "true" : "false");
        return -1;
    }
    return 0;
}

/* ids of text[0..len), after BOS when bos >= 0, in a new buffer; NULL with an error.
 * len + 2 ids are almost always enough (SentencePiece's dummy prefix "▁" can add one id
 * per text run, its byte fallback up to 3 ids per byte); when not, tokenizer_encode said
 * how many it needs and the second call has exactly that room. */
static int *encode_all(const Tokenizer *tok, const char *text, size_t len, int bos, int *n_out) {
    int off = bos >= 0, cap = (int)len + 2;
    int *ids = xmalloc(((size_t)cap + (size_t)off) * sizeof *ids);
    int n = tokenizer_encode(tok, text, len, ids + off, cap);
    if (n > cap) {
        cap = n;
        ids = xrealloc(ids, ((size_t)cap + (size_t)off) * sizeof *ids);
        n = tokenizer_encode(tok, text, len, ids + off, cap);
    }
    if (n < 0 || n > cap) {
        if (n > cap)
            mmrm_set_error("template_encode: the tokenizer needed %d ids, then %d", cap, n);
        free(ids);
        return NULL;
    }
    if (off) ids[0] = bos;
    *n_out = n + off;
    return ids;
}

int template_encode(const Tokenizer *tok, TemplateKind kind, const char *system, const char *prompt,
                    const char *response, int n_image_tokens, int max_length, int *ids_out,
                    int cap, TemplateInfo *info) {
    if (!prompt || !response || n_image_tokens < 0 || n_image_tokens > MAX_IMAGE_TOKENS ||
        max_length < 1 || cap < 0 || (cap > 0 && !ids_out)) {
        mmrm_set_error("template_encode: bad arguments (n_image_tokens %d, max_length %d, "
                       "cap %d)", n_image_tokens, max_length, cap);
        return TEMPLATE_ERROR;
    }
    TemplateIds t;
    if (check_tokenizer(tok, kind, &t) != 0) return TEMPLATE_ERROR;
    size_t prefix_len, len;
    char *text = build_text(kind, system, prompt, response, n_image_tokens, &prefix_len, &len);
    if (len >= INT_MAX / 2) {
        free(text);
        mmrm_set_error("template_encode: text of %zu bytes is too long", len);
        return TEMPLATE_ERROR;
    }
    int bos = tok->add_bos ? tok->bos_id : -1;
    int n_full = 0, n_prefix = 0;
    int *full = encode_all(tok, text, len, bos, &n_full);
    int *prefix = full ? encode_all(tok, text, prefix_len, bos, &n_prefix) : NULL;
    free(text);
    int rc = TEMPLATE_ERROR;
    if (!prefix) goto done;
    if (full[n_full - 1] != t.im_end) {
        mmrm_set_error("template_encode: the text does not end on the <|im_end|> token (a "
                       "special token of the tokenizer overlaps it)");
        goto done;
    }

    /* where the response starts: the prefix's ids up to the first difference, so that a
     * tokenizer merging across the header's end still splits at a token boundary */
    int response_start = 0;
    while (response_start < n_prefix && response_start < n_full - 1 &&
           prefix[response_start] == full[response_start])
        response_start++;
    int image_start = -1, n_context = 0;
    for (int i = 0; i < n_full; i++) {
        if (full[i] == t.img && image_start < 0 && n_image_tokens > 0) image_start = i;
        n_context += full[i] == t.img_context;
    }
    int n_response = n_full - 1 - response_start;
    if (info) *info = (TemplateInfo){n_full, image_start, response_start, 0, 0};

    /* The reference reads the reward before the first pad id of the row (models/template.h);
     * a pad id that is one of the template's own tokens would put that in the system turn,
     * so then the final <|im_end|> stays the place */
    int pad_at = n_full, pad = tok->pad_id;
    if (pad >= 0 && pad != t.im_start && pad != t.im_end && pad != t.img && pad != t.img_end &&
        pad != t.img_context)
        for (pad_at = 0; pad_at < n_full && full[pad_at] != pad; pad_at++) {}

    if (n_context != n_image_tokens) {
        mmrm_set_error("the prompt or response holds the text \"<IMG_CONTEXT>\": %d image "
                       "positions for %d image tokens", n_context, n_image_tokens);
        rc = TEMPLATE_IMAGE_TOKEN_TEXT;
        goto done;
    }
    int n_out = n_full;
    int image_end = image_start >= 0 ? image_start + n_image_tokens + 2 : 0;
    if (pad_at < n_full && pad_at <= max_length) {
        if (pad_at < image_end) {
            mmrm_set_error("the text holds the pad token's text at token %d, before the image "
                           "block ends (token %d): the reward would be read there", pad_at,
                           image_end - 1);
            rc = TEMPLATE_IMAGE_CUT;
            goto done;
        }
        n_out = pad_at;
        if (info) info->pad_cut = n_full - pad_at;
    } else if (n_full > max_length) {
        if (max_length <= image_end) {
            mmrm_set_error("max_length %d would cut into the image block (tokens %d..%d of %d)",
                           max_length, image_start, image_end - 1, n_full);
            rc = TEMPLATE_IMAGE_CUT;
            goto done;
        }
        if (max_length < response_start + 1 + (n_response > 0)) {
            mmrm_set_error("max_length %d leaves no room for the response: the prompt takes "
                           "%d tokens, the response %d, the closing <|im_end|> 1", max_length,
                           response_start, n_response);
            rc = TEMPLATE_NO_ROOM;
            goto done;
        }
        n_out = max_length;
        full[n_out - 1] = t.im_end;
        if (info) info->truncated = n_full - n_out;
    }
    if (n_out > cap) {
        mmrm_set_error("template_encode: ids_out has room for %d ids, the sample needs %d", cap,
                       n_out);
        goto done;
    }
    memcpy(ids_out, full, (size_t)n_out * sizeof *full);
    rc = n_out;
done:
    free(full);
    free(prefix);
    return rc;
}

const char *template_status_str(int code) {
    switch (code) {
    case TEMPLATE_ERROR: return "error";
    case TEMPLATE_IMAGE_CUT: return "image block cut by max_length";
    case TEMPLATE_NO_ROOM: return "prompt too long for max_length";
    case TEMPLATE_IMAGE_TOKEN_TEXT: return "<IMG_CONTEXT> written in the text";
    default: return code >= 0 ? "ok" : "unknown status";
    }
}
