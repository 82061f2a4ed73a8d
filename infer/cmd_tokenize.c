/* cmd_tokenize.c - `mmrm tokenize`: text to token ids and back with a model directory's
 * tokenizer (any kind tokenizer_load reads), one record per line, for checking mmrm's
 * tokenisation against another implementation or feeding ids to other tools. */
#include "infer/commands.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/config.h"
#include "models/template.h"
#include "models/tokenizer.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/strbuf.h"

static const char USAGE[] =
    "usage: mmrm tokenize (--tokenizer DIR | --model DIR) [--input FILE] [--jsonl] [--decode]\n"
    "       mmrm tokenize --model DIR --template [--input FILE]\n"
    "       mmrm tokenize build --data FILE.jsonl --out DIR   a word tokenizer for a data set\n"
    "                                                         (see mmrm tokenize build --help)\n"
    "\n"
    "Encodes each input line (stdin, or --input FILE) with DIR's tokenizer (mmrm_tokenizer.json,\n"
    "or HF's tokenizer.json / vocab.json + merges.txt) and prints its ids as one JSON array per\n"
    "line. Lines end at '\\n' only; everything else, '\\r' included, is text. No BOS is added.\n"
    "\n"
    "  --tokenizer DIR, --model DIR   the directory holding the tokenizer files\n"
    "  --input FILE                   read FILE instead of stdin\n"
    "  --jsonl                        each input line is one JSON string (texts may hold\n"
    "                                 newlines); with --decode, print JSON strings too\n"
    "  --decode                       the reverse: a JSON array of ids per line in, the text out\n"
    "  --template                     the model's input rows: each input line is a JSON object\n"
    "                                 {\"prompt\", \"response\", \"tiles\"} (tiles: image tiles,\n"
    "                                 default 1, 0 = no image); prints {\"ids\": [...],\n"
    "                                 \"image\": [first, end) of <img>..</img> or null,\n"
    "                                 \"response_start\", \"reward_index\"} with DIR's chat\n"
    "                                 template, system message and tokens per tile (config.json)\n"
    "  --help                         this text\n"
    "\n"
    "example:  echo 'Hello, world' | mmrm tokenize --model DIR      prints [9707, 11, 1879]\n";

static int usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "mmrm: error: %s%s\n\n%s", msg, arg ? arg : "", USAGE);
    return 2;
}

/* s[0..n) as a JSON string: quotes, backslashes and control bytes escaped, other bytes as
 * they are */
static void put_json_string(StrBuf *out, const char *s, size_t n) {
    sb_putc(out, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': sb_puts(out, "\\\""); break;
        case '\\': sb_puts(out, "\\\\"); break;
        case '\n': sb_puts(out, "\\n"); break;
        case '\r': sb_puts(out, "\\r"); break;
        case '\t': sb_puts(out, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7F) sb_printf(out, "\\u%04x", c);
            else sb_putc(out, (char)c);
        }
    }
    sb_putc(out, '"');
}

static int encode_line(const Tokenizer *tok, const char *text, size_t n, int **ids, int *cap,
                       StrBuf *out) {
    int k = tokenizer_encode(tok, text, n, *ids, *cap);
    if (k > *cap) {
        *cap = k;
        *ids = xrealloc(*ids, (size_t)k * sizeof **ids);
        k = tokenizer_encode(tok, text, n, *ids, *cap);
    }
    if (k < 0) return -1;
    sb_putc(out, '[');
    for (int i = 0; i < k; i++) sb_printf(out, i ? ", %d" : "%d", (*ids)[i]);
    sb_puts(out, "]\n");
    return 0;
}

/* a JSON array of ids -> the text, as raw bytes or (jsonl) a JSON string */
static int decode_line(const Tokenizer *tok, const char *line, size_t n, int jsonl, int **ids,
                       int *cap, StrBuf *out) {
    cJSON *arr = cJSON_ParseWithLength(line, n);
    int k = 0, rc = -1;
    if (!cJSON_IsArray(arr)) {
        mmrm_set_error("expected a JSON array of token ids");
        goto done;
    }
    for (const cJSON *it = arr->child; it; it = it->next, k++) {
        double v = it->valuedouble;
        if (!cJSON_IsNumber(it) || v != floor(v) || v < INT_MIN || v > INT_MAX) {
            mmrm_set_error("element %d of the array is not an integer id", k);
            goto done;
        }
        if (k >= *cap) {
            *cap = 2 * k + 16;
            *ids = xrealloc(*ids, (size_t)*cap * sizeof **ids);
        }
        (*ids)[k] = (int)v;
    }
    size_t len;
    char *text = tokenizer_decode(tok, *ids, k, &len);
    if (!text) goto done;
    if (jsonl) put_json_string(out, text, len);
    else sb_append(out, text, len);
    sb_putc(out, '\n');
    free(text);
    rc = 0;
done:
    cJSON_Delete(arr);
    return rc;
}

/* --template: one {"prompt", "response", "tiles"} object -> the model's input row */
typedef struct {
    TemplateKind kind;
    const char *system;
    int tokens_per_tile;
} TemplateSetup;

static int template_line(const Tokenizer *tok, const TemplateSetup *ts, const char *line,
                         size_t n, int **ids, int *cap, StrBuf *out) {
    cJSON *o = cJSON_ParseWithLength(line, n);
    int rc = -1;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "response");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "tiles");
    if (!cJSON_IsObject(o) || !cJSON_IsString(p) || !cJSON_IsString(r)) {
        mmrm_set_error("expected a JSON object with string fields \"prompt\" and \"response\"");
        goto done;
    }
    int tiles = 1;
    if (t) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
            t->valuedouble > 64) {
            mmrm_set_error("\"tiles\" must be an integer in [0, 64]");
            goto done;
        }
        tiles = (int)t->valuedouble;
    }
    int need = (int)(strlen(p->valuestring) + strlen(r->valuestring)) * 3 + tiles * ts->tokens_per_tile + 4096;
    if (need > *cap) {
        *cap = need;
        *ids = xrealloc(*ids, (size_t)need * sizeof **ids);
    }
    TemplateInfo info;
    int k = template_encode(tok, ts->kind, ts->system, p->valuestring, r->valuestring,
                            tiles * ts->tokens_per_tile, *cap, *ids, *cap, &info);
    if (k < 0) {
        if (k != TEMPLATE_ERROR) mmrm_set_error("the template rejects this row: %s", template_status_str(k));
        goto done;
    }
    sb_puts(out, "{\"ids\": [");
    for (int i = 0; i < k; i++) sb_printf(out, i ? ", %d" : "%d", (*ids)[i]);
    if (info.image_start >= 0)
        sb_printf(out, "], \"image\": [%d, %d]", info.image_start,
                  info.image_start + tiles * ts->tokens_per_tile + 2);
    else sb_puts(out, "], \"image\": null");
    sb_printf(out, ", \"response_start\": %d, \"reward_index\": %d}\n", info.response_start, k - 1);
    rc = 0;
done:
    cJSON_Delete(o);
    return rc;
}

static int template_setup(const char *dir, TemplateSetup *ts, ModelConfig *cfg) {
    char path[PATH_MAX];
    if (!fs_join(path, sizeof path, dir, "config.json") || config_load(path, cfg)) return -1;
    if (template_parse(cfg->template_name, &ts->kind)) return -1;
    ts->system = config_system_message(cfg);
    ts->tokens_per_tile = config_tokens_per_tile(cfg);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "build")) return cmd_tokenize_build(argc - 1, argv + 1);
    const char *dir = NULL, *input = NULL;
    int jsonl = 0, decode = 0, templ = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "--tokenizer") || !strcmp(a, "--model") || !strcmp(a, "--input")) {
            if (i + 1 >= argc) return usage_error("missing value after ", a);
            if (!strcmp(a, "--input")) input = argv[++i];
            else dir = argv[++i];
        } else if (!strcmp(a, "--jsonl")) {
            jsonl = 1;
        } else if (!strcmp(a, "--decode")) {
            decode = 1;
        } else if (!strcmp(a, "--template")) {
            templ = 1;
        } else {
            return usage_error("unknown argument ", a);
        }
    }
    if (!dir) return usage_error("--tokenizer DIR or --model DIR is required", NULL);
    if (templ && (decode || jsonl)) return usage_error("--template takes neither --decode nor --jsonl", NULL);
    static ModelConfig cfg; /* large: not on the stack */
    TemplateSetup ts;
    if (templ && template_setup(dir, &ts, &cfg)) {
        fprintf(stderr, "mmrm: error: --template: %s\n", mmrm_last_error());
        return 1;
    }
    Tokenizer *tok = tokenizer_load(dir);
    if (!tok) {
        fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
        return 1;
    }
    FILE *in = input ? fopen(input, "rb") : stdin;
    if (!in) {
        fprintf(stderr, "mmrm: error: cannot open %s: %s\n", input, strerror(errno));
        tokenizer_free(tok);
        return 1;
    }
    const char *name = input ? input : "<stdin>";
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t got;
    int *ids = NULL, ids_cap = 0, rc = 0;
    long line_no = 0;
    StrBuf out = {0};
    while ((got = getline(&line, &line_cap, in)) >= 0) {
        line_no++;
        size_t n = (size_t)got;
        if (n && line[n - 1] == '\n') n--;
        int ok;
        if (templ) {
            ok = template_line(tok, &ts, line, n, &ids, &ids_cap, &out) == 0;
        } else if (decode) {
            ok = decode_line(tok, line, n, jsonl, &ids, &ids_cap, &out) == 0;
        } else if (jsonl) {
            cJSON *s = cJSON_ParseWithLength(line, n);
            ok = cJSON_IsString(s);
            if (!ok) mmrm_set_error("expected one JSON string (--jsonl)");
            else ok = encode_line(tok, s->valuestring, strlen(s->valuestring), &ids, &ids_cap,
                                  &out) == 0;
            cJSON_Delete(s);
        } else {
            ok = encode_line(tok, line, n, &ids, &ids_cap, &out) == 0;
        }
        if (!ok) {
            fprintf(stderr, "mmrm: error: %s:%ld: %s\n", name, line_no, mmrm_last_error());
            rc = 1;
            break;
        }
        if (out.len >= (1 << 16)) {
            fwrite(out.s, 1, out.len, stdout);
            sb_reset(&out);
        }
    }
    if (out.len) fwrite(out.s, 1, out.len, stdout);
    if (!rc && ferror(in)) {
        fprintf(stderr, "mmrm: error: reading %s: %s\n", name, strerror(errno));
        rc = 1;
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "mmrm: error: writing the output: %s\n", strerror(errno));
        rc = 1;
    }
    sb_free(&out);
    free(line);
    free(ids);
    if (in != stdin) fclose(in);
    tokenizer_free(tok);
    return rc;
}
