/* template.h - the chat templates that turn (prompt, response, image) into model input ids.
 *
 * Both templates produce the text of the data spec (no newline after <|im_end|>):
 *   <|im_start|>system\n{SYS}<|im_end|><|im_start|>user\n{USER}<|im_end|>
 *   <|im_start|>assistant\n{RESPONSE}<|im_end|>
 * with USER = "<image>\n" + prompt when there is an image (n_image_tokens > 0) and
 * USER = prompt without one. The first "<image>" then becomes
 * "<img>" + "<IMG_CONTEXT>" x n_image_tokens + "</img>" (n_image_tokens = 256 x tiles).
 * - internlm2-chat strips leading/trailing whitespace of each message as Python's
 *   str.strip() does (after "<image>\n" is prepended, so only the prompt's trailing
 *   whitespace goes) and the tokenizer prepends <s>.
 * - Hermes-2 strips nothing and adds no BOS.
 * The BOS comes from the tokenizer (its add_bos), as in the reference; a tokenizer whose
 * add_bos contradicts the template is an error, never a silent change of the input.
 * {SYS} is the template's system message (the text above, as in the reference) unless the
 * caller passes another one (the model config's "system_message"; "" gives an empty system
 * turn, which short-sequence models such as the synthetic benchmark's tiny one use so that
 * a long system prompt does not dwarf the image and the answer).
 * No EOS is appended; the reward is read at the final <|im_end|>. An empty (or, after
 * stripping, blank) message keeps its <|im_end|>, where the reference's conversation code
 * would drop it, so that the reward position never moves.
 * The one exception follows the reference's read-out (Generalizable-MM-RM's reward model:
 * the token before the first pad id of the row): a text that holds the pad token's text
 * ("<|endoftext|>" for Qwen2) is read before it. Attention is causal, so that score is the
 * score of the row up to there, and the row ends there (info->pad_cut counts the tokens
 * dropped); such a row before the end of the image block is rejected as TEMPLATE_IMAGE_CUT.
 * A pad id that is one of the template's own tokens is never looked for.
 *
 * Truncation at max_length keeps the reference's right truncation of the response but
 * always ends on <|im_end|>, so the reward is read at the same kind of token: the response
 * tokens are cut and <|im_end|> is appended. A sample is rejected (the caller skips and
 * counts it) when max_length would cut into the image block, or when the system and user
 * turns, the assistant header, one response token and <|im_end|> do not fit.
 */
#ifndef MMRM_TEMPLATE_H
#define MMRM_TEMPLATE_H

#include "models/tokenizer.h"

typedef enum { TEMPLATE_INTERNLM2_CHAT, TEMPLATE_HERMES_2 } TemplateKind;

/* template_encode's results below 0 */
enum {
    TEMPLATE_ERROR = -1,           /* bad arguments or tokenizer: mmrm_last_error() says why */
    TEMPLATE_IMAGE_CUT = -2,       /* max_length would cut into the image block */
    TEMPLATE_NO_ROOM = -3,         /* no room left for any response token */
    TEMPLATE_IMAGE_TOKEN_TEXT = -4 /* the text itself holds <IMG_CONTEXT>: the count of image
                                    * positions would not match the image features */
};

typedef struct {
    int full_length;    /* tokens before truncation */
    int image_start;    /* index of <img>; -1 without an image */
    int response_start; /* index of the first response token = length of the prefix that
                         * every response to this prompt shares */
    int truncated;      /* response tokens dropped to fit max_length */
    int pad_cut;        /* tokens dropped from the pad token's text on */
} TemplateInfo;

/* 0, or -1 with an error listing the valid names ("internlm2-chat", "Hermes-2") */
int template_parse(const char *name, TemplateKind *out);
const char *template_name(TemplateKind kind);

/* the template's own system message */
const char *template_default_system(TemplateKind kind);

/* the exact text before tokenisation, image block expanded (free() it); system: the system
 * message, NULL for the template's own */
char *template_text(TemplateKind kind, const char *system, const char *prompt,
                    const char *response, int n_image_tokens);

/* Writes the ids of the templated sample (at most max_length of them, into ids_out of room
 * cap) and returns their number, or a TEMPLATE_* code < 0; every rejection also sets
 * mmrm_last_error(). info (may be NULL) is filled for every result but TEMPLATE_ERROR. */
int template_encode(const Tokenizer *tok, TemplateKind kind, const char *system, const char *prompt,
                    const char *response, int n_image_tokens, int max_length, int *ids_out,
                    int cap, TemplateInfo *info);

/* a short phrase for a TEMPLATE_* code, for skip counters ("image block cut by max_length") */
const char *template_status_str(int code);

#endif
