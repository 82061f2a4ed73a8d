/* train_config.c - reading, checking, printing and saving the training configuration
 * (train_config.h). One table of keys drives everything: each entry names the struct field,
 * the type, the range or the enum names and the default as text, which goes through the same
 * parser as the file's values, so a default can never be out of range and the saved file is
 * read back by the code that read the original.
 *
 * inih is used through ini_parse_stream with our own line reader, for three reasons: the
 * reader counts lines, so the handler knows the line it is called for (the packaged inih is
 * built without line numbers in handlers); it rejects indented continuation lines before
 * inih sees them; and it lifts inih's fixed line buffer (200 bytes in its default build) by
 * handing inih a short stand-in "key=\x1fN" for a longer key line and keeping the real value
 * aside, which the handler then trims exactly as inih would have.
 */
#include "train/train_config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kernels/kernels.h"
#include "models/lora.h"
#include "models/template.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/strbuf.h"

_Static_assert(sizeof(TrainAlgorithm) == sizeof(int) && sizeof(SchedKind) == sizeof(int) &&
                   sizeof(TrainDevice) == sizeof(int) && sizeof(TrainPrecision) == sizeof(int) &&
                   sizeof(TrainOverlap) == sizeof(int) && sizeof(RecOnBad) == sizeof(int) &&
                   sizeof(TrainReportTo) == sizeof(int),
               "enum fields are written through int pointers");

typedef enum { T_STR, T_LIST, T_INT, T_I64, T_F64, T_BOOL, T_ENUM, T_TEMPLATE } KeyType;

typedef struct {
    const char *name;
    KeyType type;
    size_t off;                 /* the field */
    size_t count_off;           /* T_LIST: the int count next to the char ** array */
    const char *const *names;   /* T_ENUM: names in enum order, NULL-terminated */
    long long ilo, ihi;         /* T_INT, T_I64: inclusive range */
    double flo, fhi;            /* T_F64: range, ends open where flo_open / fhi_open */
    int flo_open, fhi_open;
    const char *def;            /* the default, as the file would write it */
    const char *group;          /* heading in the saved file, on the first key of a group */
    const char *what;           /* named in range errors and missing-key messages */
} Key;

/* names in enum order */
static const char *const k_algorithms[] = {"standard", "shortcut_aware", NULL};
static const char *const k_schedules[] = {"cosine", "linear", "constant", "constant_with_warmup",
                                          NULL};
_Static_assert(SCHED_COSINE == 0 && SCHED_LINEAR == 1 && SCHED_CONSTANT == 2 &&
                   SCHED_CONSTANT_WITH_WARMUP == 3,
               "k_schedules names train/optim.h's SchedKind in its order");
static const char *const k_devices[] = {"auto", "cpu", "cuda", NULL};
static const char *const k_precisions[] = {"auto", "fp32", "bf16", NULL};
static const char *const k_attention_impls[] = {"auto", "mmrm", "cudnn", NULL};
_Static_assert(ATTN_IMPL_AUTO == 0 && ATTN_IMPL_MMRM == 1 && ATTN_IMPL_CUDNN == 2,
               "k_attention_impls names kernels/kernels.h's AttentionImpl in its order");
static const char *const k_overlap[] = {"auto", "true", "false", NULL};
static const char *const k_on_bad[] = {"skip", "fail", NULL};
static const char *const k_report_to[] = {"none", "tensorboard", NULL};

#define F(field) offsetof(TrainConfig, field)
#define STR(n, w) {.name = #n, .type = T_STR, .off = F(n), .def = "", .what = w}
#define LIST(n, field, w) \
    {.name = #n, .type = T_LIST, .off = F(field), .count_off = F(n_##field), .def = "", .what = w}
#define BOOL(n, d, w) {.name = #n, .type = T_BOOL, .off = F(n), .def = d, .what = w}
#define INT(n, lo, hi, d, w) \
    {.name = #n, .type = T_INT, .off = F(n), .ilo = lo, .ihi = hi, .def = d, .what = w}
#define I64(n, lo, hi, d, w) \
    {.name = #n, .type = T_I64, .off = F(n), .ilo = lo, .ihi = hi, .def = d, .what = w}
#define F64(n, lo, lo_open, hi, hi_open, d, w)                                               \
    {.name = #n, .type = T_F64, .off = F(n), .flo = lo, .flo_open = lo_open, .fhi = hi,        \
     .fhi_open = hi_open, .def = d, .what = w}
#define ENUM(n, v, d, w) {.name = #n, .type = T_ENUM, .off = F(n), .names = v, .def = d, .what = w}

/* The fixed order of printing and saving; groups as in train_config.h. */
static const Key g_keys[] = {
    {.name = "model_name_or_path", .type = T_STR, .off = F(model_name_or_path), .def = "",
     .group = "model", .what = "the HF model directory to start from"},
    STR(init_model_config, "an HF config.json for a randomly initialised model"),
    ENUM(algorithm, k_algorithms, "standard", "the objective"),
    STR(bias_model_path, "the text-only bias RM's directory, usually the same checkpoint"),
    STR(init_bias_model_config, "an HF config.json for a randomly initialised bias RM"),
    STR(tokenizer_path, "a folder holding mmrm_tokenizer.json for a model from init_model_config "
                        "(e.g. mmrm synth's output; default: the byte tokenizer)"),
    BOOL(freeze_llm, "false", "freeze the LLM decoder"),
    BOOL(freeze_backbone, "true", "freeze the ViT"),
    BOOL(freeze_mlp, "false", "freeze the mlp1 connector"),
    BOOL(grad_checkpoint, "true", "recompute activations in backward"),
    BOOL(share_prefix, "true", "compute a pair's common prefix (image + prompt) once (CPU)"),
    BOOL(packing, "true", "all rows of a batch as one stream without padding (CPU)"),
    F64(drop_path_rate, 0, 0, 1, 1, "0.1", "ViT stochastic depth rate"),
    INT(lora_r, 0, 65536, "0", "LoRA rank; 0: full fine-tuning, else adapters on a frozen base"),
    F64(lora_alpha, 0, 1, 1e6, 0, "16", "LoRA scale: updates are scaled by lora_alpha / lora_r"),
    F64(lora_dropout, 0, 0, 1, 1, "0", "dropout on the LoRA adapters' input"),
    LIST(lora_target_modules, lora_target_modules,
         "PEFT target_modules, comma-separated (unset: every LLM linear)"),
    ENUM(precision, k_precisions, "auto", "auto: fp32 on CPU, bf16 on CUDA"),
    ENUM(device, k_devices, "auto", "where to train"),
    ENUM(attention_impl, k_attention_impls, "auto",
         "bf16 attention on a GPU: auto (cuDNN where it covers the shape), mmrm, cudnn; the CPU "
         "ignores it"),
    BOOL(cuda_graphs, "false", "GPU: capture each micro-batch's forward and backward as a CUDA graph "
                               "per shape and replay it (the CPU ignores it)"),
    {.name = "dataset_path", .type = T_LIST, .off = F(dataset_paths),
     .count_off = F(n_dataset_paths), .def = "", .group = "data",
     .what = "the training JSONL file(s), comma-separated"},
    LIST(eval_dataset_path, eval_dataset_paths, "evaluation JSONL file(s), comma-separated"),
    STR(image_root, "the folder relative img_path values resolve against"),
    {.name = "conv_style", .type = T_TEMPLATE, .off = F(conv_style), .def = "",
     .what = "the chat template"},
    INT(max_length, 1, 1 << 20, "4096", "tokens per sequence"),
    INT(t_bucket, 0, 1 << 20, "0", "padded T rounded up to a multiple (0: 64 on CUDA without lora_dropout, else 1)"),
    BOOL(dynamic_image_size, "true", "InternVL dynamic tiling"),
    INT(min_dynamic_patch, 1, 64, "1", "fewest tiles per image"),
    INT(max_dynamic_patch, 1, 64, "6", "most tiles per image, thumbnail excluded"),
    BOOL(use_thumbnail, "true", "append a whole-image tile to multi-tile images"),
    INT(force_image_size, 0, 16384, "0", "0: the checkpoint's tile size, else pixels"),
    ENUM(on_bad_record, k_on_bad, "skip", "what a bad JSONL record does"),
    INT(num_workers, 0, 64, "2", "batch prefetch threads"),
    {.name = "num_train_epochs", .type = T_F64, .off = F(num_train_epochs), .flo = 0,
     .flo_open = 1, .fhi = 1e6, .def = "1", .group = "optimisation",
     .what = "passes over the data"},
    I64(max_steps, -1, LLONG_MAX, "-1", "-1: from num_train_epochs, else optimizer steps"),
    INT(per_device_train_batch_size, 1, 1 << 16, "4", "pairs per rank and micro-step"),
    INT(max_tokens_per_batch, 0, 1 << 30, "0", "tokens per chunk of pairs a micro-batch runs "
        "as (main + bias forwards, after prefix sharing and packing), 0: no limit"),
    INT(gradient_accumulation_steps, 1, 1 << 16, "2", "micro-steps per optimizer step"),
    F64(learning_rate, 0, 0, 1, 0, "1e-5", "the peak learning rate"),
    ENUM(lr_scheduler_type, k_schedules, "cosine", "the learning-rate schedule"),
    F64(warmup_ratio, 0, 0, 1, 0, "0.1", "fraction of the steps spent warming up"),
    I64(warmup_steps, 0, LLONG_MAX, "0", "warmup steps; > 0 overrides warmup_ratio"),
    F64(weight_decay, 0, 0, INFINITY, 0, "0.05", "AdamW decoupled weight decay"),
    F64(adam_beta1, 0, 0, 1, 1, "0.9", "AdamW first-moment decay"),
    F64(adam_beta2, 0, 0, 1, 1, "0.98", "AdamW second-moment decay"),
    F64(adam_epsilon, 0, 1, 1, 0, "1e-8", "AdamW epsilon"),
    F64(max_grad_norm, 0, 0, INFINITY, 0, "1", "global gradient-norm clip, 0: off"),
    F64(shortcut_eps, 0, 1, 1, 0, "1e-7", "eps of the shortcut-failure coefficient"),
    I64(seed, 0, LLONG_MAX, "42", "the run's random seed"),
    INT(zero_stage, 0, 1, "0", "1: shard the AdamW state across ranks"),
    F64(grad_bucket_mb, 0, 0, 1e6, 0, "25", "MiB per gradient all-reduce bucket, 0: one per model"),
    ENUM(overlap_grad_reduce, k_overlap, "auto", "start buckets during backward (auto: with NCCL)"),
    {.name = "output_dir", .type = T_STR, .off = F(output_dir), .def = "", .group = "run",
     .what = "the folder for checkpoints and the trained model"},
    BOOL(overwrite_output_dir, "false", "start over where output_dir holds a run"),
    BOOL(resume, "true", "continue from output_dir's newest checkpoint"),
    INT(logging_steps, 1, INT_MAX, "10", "optimizer steps between log lines"),
    INT(save_steps, 0, INT_MAX, "100", "optimizer steps between checkpoints, 0: final only"),
    INT(save_total_limit, 0, INT_MAX, "10", "checkpoints kept, 0: all"),
    BOOL(save_bias_model, "true", "also save the shortcut-aware bias RM"),
    INT(eval_steps, 0, INT_MAX, "0", "optimizer steps between evaluations, 0: at the end"),
    ENUM(report_to, k_report_to, "tensorboard", "tensorboard: event files in output_dir/runs"),
};
#define NKEYS ((int)(sizeof g_keys / sizeof g_keys[0]))

/* Keys of the reference's configs and HF's TrainingArguments that mmrm does not take, with
 * what to write instead. */
static const struct {
    const char *name, *hint;
} g_foreign[] = {
    {"bf16", "the reference's bf16 = true is precision = bf16 here (auto picks bf16 on CUDA)"},
    {"fp16", "mmrm trains in fp32 or bf16: use precision = bf16"},
    {"tf32", "mmrm has no tf32 switch; remove the line"},
    {"deepspeed", "mmrm shards the optimizer state itself: use zero_stage = 0 or 1 and launch "
                  "ranks with mpirun"},
    {"gradient_checkpointing", "mmrm's name for it is grad_checkpoint"},
    {"per_device_eval_batch_size", "evaluation batches follow per_device_train_batch_size; "
                                   "remove the line"},
    {"save_strategy", "mmrm saves every save_steps steps; remove the line"},
    {"evaluation_strategy", "mmrm evaluates every eval_steps steps when eval_dataset_path is "
                            "set; remove the line"},
    {"logging_first_step", "mmrm always logs the first step; remove the line"},
    {"remove_unused_columns", "a HF datasets setting with no meaning here; remove the line"},
    {"lr", "the key is learning_rate"},
};

/* Where a key's value came from: a file line, an override, or the default. */
typedef struct {
    int line;             /* > 0: the line in the file */
    const char *override; /* non-NULL: the override text */
} Origin;

typedef struct {
    TrainConfig *c;
    const char *path;       /* the file, or NULL */
    FILE *f;
    char *raw;              /* the line most recently read */
    size_t raw_cap;
    int line;               /* its number */
    int key_seen;           /* a key line since the last section header (inih's continuation
                             * rule: an indented line after one continues its value) */
    int section_line;       /* the line of the current [section], 0 before any */
    char **long_values;     /* raw values of key lines too long for inih's buffer */
    int n_long;
    int long_line;          /* the line the newest stand-in was made for */
    int failed;             /* an error is set: stop reading */
    int read_errno;         /* why reading the file stopped early, 0 at its end */
    int error_line;         /* its line in the file, 0 if not a file error */
    Origin origin[NKEYS];
} Parse;

static void *field(TrainConfig *c, const Key *k) { return (char *)c + k->off; }
static const void *cfield(const TrainConfig *c, const Key *k) {
    return (const char *)c + k->off;
}

static int find_key(const char *name) {
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(g_keys[i].name, name) == 0) return i;
    return -1;
}

/* "CONFIG.ini:LINE", "override 'k=v'" or, for a default, "CONFIG.ini" / "the configuration" */
static void where(const Parse *p, Origin o, char *buf, size_t n) {
    if (o.override) snprintf(buf, n, "override '%s'", o.override);
    else if (o.line > 0) snprintf(buf, n, "%s:%d", p->path, o.line);
    else if (p->path) snprintf(buf, n, "%s", p->path);
    else snprintf(buf, n, "the configuration");
}

/* Sets the error and marks the parse failed; returns -1. */
static int fail(Parse *p, Origin o, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(Parse *p, Origin o, const char *fmt, ...) {
    char loc[1024], msg[1024];
    where(p, o, loc, sizeof loc);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mmrm_set_error("%s: %s", loc, msg);
    p->failed = 1;
    if (!o.override && o.line > 0) p->error_line = o.line;
    return -1;
}

static int is_quote(char ch) { return ch == '"' || ch == '\''; }

/* Removes one pair of matching quotes around s (in place) when the inner text holds no quote
 * of that kind; returns s. */
static char *unquote(char *s) {
    size_t n = strlen(s);
    if (n >= 2 && is_quote(s[0]) && s[n - 1] == s[0] && !memchr(s + 1, s[0], n - 2)) {
        memmove(s, s + 1, n - 2);
        s[n - 2] = '\0';
    }
    return s;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* A string value must survive being saved and read back: no control characters, no
 * whitespace before ';' and no ';' first (saved as "key = ;...", the reader would take it for
 * an inline comment), and no quote at either end once the quotes have been removed (they
 * would be removed again). */
static int check_text(Parse *p, Origin o, const Key *k, const char *v) {
    for (const char *s = v; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return fail(p, o, "%s contains a control character (byte 0x%02x)", k->name,
                        (unsigned char)*s);
        if (*s == ';' && s == v)
            return fail(p, o, "%s = '%s': a value starting with ';' would be read back as a "
                              "comment",
                        k->name, v);
        if (*s == ';' && s > v && isspace((unsigned char)s[-1]))
            return fail(p, o, "%s = '%s': ' ;' would start a comment when the file is read "
                              "back; remove the space",
                        k->name, v);
    }
    size_t n = strlen(v);
    if (n > 0 && (is_quote(v[0]) || is_quote(v[n - 1])))
        return fail(p, o, "%s = %s: unbalanced or doubled quotes; write the value without "
                          "quotes or in one pair of matching quotes",
                    k->name, v);
    return 0;
}

static void free_list(char ***list, int *n) {
    for (int i = 0; i < *n; i++) free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

static int set_list(Parse *p, Origin o, const Key *k, char *v) {
    char ***list = (char ***)field(p->c, k);
    int *count = (int *)((char *)p->c + k->count_off);
    char **items = NULL;
    int n = 0, rc = 0;
    if (*v) {
        for (char *s = v;; s++) {
            char *comma = strchr(s, ',');
            if (comma) *comma = '\0';
            char *item = unquote(trim(s));
            if (!*item) {
                rc = fail(p, o, "%s has an empty entry (entry %d of a comma-separated list)",
                          k->name, n + 1);
                break;
            }
            if ((rc = check_text(p, o, k, item)) != 0) break;
            items = xrealloc(items, (size_t)(n + 1) * sizeof *items);
            items[n++] = xstrdup(item);
            if (!comma) break;
            s = comma;
        }
    }
    if (rc) {
        free_list(&items, &n);
        return -1;
    }
    free_list(list, count);
    *list = items;
    *count = n;
    return 0;
}

static int parse_integer(const char *v, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno == ERANGE) return -1;
    *out = x;
    return 0;
}

static int range_error(Parse *p, Origin o, const Key *k, const char *v) {
    char range[128];
    if (k->type == T_F64) {
        if (isinf(k->fhi))
            snprintf(range, sizeof range, "must be %s %g", k->flo_open ? ">" : ">=", k->flo);
        else
            snprintf(range, sizeof range, "must be in %c%g, %g%c", k->flo_open ? '(' : '[',
                     k->flo, k->fhi, k->fhi_open ? ')' : ']');
    } else if (k->ihi == LLONG_MAX || k->ihi == INT_MAX) {
        snprintf(range, sizeof range, "must be >= %lld", k->ilo);
    } else {
        snprintf(range, sizeof range, "must be in [%lld, %lld]", k->ilo, k->ihi);
    }
    return fail(p, o, "%s = %s is out of range: %s (%s)", k->name, v, range, k->what);
}

static void list_names(const char *const *names, char *buf, size_t n) {
    buf[0] = '\0';
    for (int i = 0; names[i]; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, "%s%s", i ? ", " : "", names[i]);
    }
}

/* Parses v (trimmed; the caller's buffer may be modified) into key k. */
static int set_value(Parse *p, Origin o, int ki, char *v) {
    const Key *k = &g_keys[ki];
    TrainConfig *c = p->c;
    v = unquote(v); /* a list also loses quotes around each entry (set_list) */
    switch (k->type) {
    case T_STR:
    case T_TEMPLATE: {
        if (check_text(p, o, k, v)) return -1;
        if (k->type == T_TEMPLATE && *v) {
            TemplateKind kind;
            if (template_parse(v, &kind) != 0)
                return fail(p, o, "conv_style: %s; leave it unset to use the model config's",
                            mmrm_last_error());
        }
        char **s = (char **)field(c, k);
        free(*s);
        *s = xstrdup(v);
        return 0;
    }
    case T_LIST:
        return set_list(p, o, k, v);
    case T_INT:
    case T_I64: {
        long long x;
        if (parse_integer(v, &x) != 0)
            return fail(p, o, "%s = '%s' is not an integer (%s)", k->name, v, k->what);
        if (x < k->ilo || x > k->ihi) return range_error(p, o, k, v);
        if (ki == find_key("max_steps") && x == 0)
            return fail(p, o, "max_steps = 0 would train nothing: use -1 (steps from "
                              "num_train_epochs) or a positive step count");
        if (k->type == T_INT) *(int *)field(c, k) = (int)x;
        else *(long long *)field(c, k) = x;
        return 0;
    }
    case T_F64: {
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        if (end == v || *end || !isfinite(x))
            return fail(p, o, "%s = '%s' is not a finite number (%s)", k->name, v, k->what);
        if (x < k->flo || (k->flo_open && x == k->flo) || x > k->fhi ||
            (k->fhi_open && x == k->fhi))
            return range_error(p, o, k, v);
        *(double *)field(c, k) = x;
        return 0;
    }
    case T_BOOL: {
        static const char *const t[] = {"true", "1", "yes"}, *const f[] = {"false", "0", "no"};
        for (int i = 0; i < 3; i++) {
            if (strcasecmp(v, t[i]) == 0 || strcasecmp(v, f[i]) == 0) {
                *(int *)field(c, k) = strcasecmp(v, t[i]) == 0;
                return 0;
            }
        }
        return fail(p, o, "%s = '%s' is not a boolean (use true/false, 1/0 or yes/no)", k->name,
                    v);
    }
    case T_ENUM: {
        int n = 0;
        while (k->names[n]) n++;
        for (int i = 0; i < n; i++) {
            if (strcasecmp(v, k->names[i]) == 0) {
                *(int *)field(c, k) = i;
                return 0;
            }
        }
        char list[256];
        list_names(k->names, list, sizeof list);
        const char *near = str_nearest(v, k->names, n);
        if (near)
            return fail(p, o, "%s = '%s' is not one of %s (did you mean %s?)", k->name, v, list,
                        near);
        return fail(p, o, "%s = '%s' is not one of %s", k->name, v, list);
    }
    }
    MMRM_FATAL("train config: key %s has no type", k->name);
}

static int unknown_key(Parse *p, Origin o, const char *name) {
    for (size_t i = 0; i < sizeof g_foreign / sizeof g_foreign[0]; i++)
        if (strcasecmp(name, g_foreign[i].name) == 0)
            return fail(p, o, "unknown key '%s': %s", name, g_foreign[i].hint);
    const char *names[NKEYS];
    for (int i = 0; i < NKEYS; i++) names[i] = g_keys[i].name;
    const char *near = str_nearest(name, names, NKEYS);
    if (near) return fail(p, o, "unknown key '%s' (did you mean %s?)", name, near);
    char list[1024] = "";
    for (int i = 0; i < NKEYS; i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s", i ? " " : "", names[i]);
    }
    return fail(p, o, "unknown key '%s'; the keys are: %s", name, list);
}

/* ---- the file ---- */

/* inih's inline-comment rule: ';' after whitespace ends the text. */
static char *cut_inline_comment(char *s) {
    int was_space = 0;
    for (char *t = s; *t; t++) {
        if (was_space && *t == ';') {
            *t = '\0';
            break;
        }
        was_space = isspace((unsigned char)*t);
    }
    return s;
}

/* inih's ini_reader: one line per call, never more than inih's buffer of num bytes. */
static char *read_line(char *buf, int num, void *stream) {
    Parse *p = stream;
    if (p->failed) return NULL;
    errno = 0;
    ssize_t n = getline(&p->raw, &p->raw_cap, p->f);
    if (n < 0) {
        p->read_errno = ferror(p->f) ? (errno ? errno : EIO) : 0;
        return NULL;
    }
    p->line++;
    Origin here = {.line = p->line};
    if ((size_t)n != strlen(p->raw)) {
        fail(p, here, "the line contains a NUL byte; is this a text file?");
        return NULL;
    }
    char *s = p->raw;
    if (p->line == 1 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB &&
        (unsigned char)s[2] == 0xBF)
        s += 3;
    while (n > 0 && (p->raw[n - 1] == '\n' || p->raw[n - 1] == '\r')) p->raw[--n] = '\0';
    char *t = s;
    while (isspace((unsigned char)*t)) t++;
    int blank_or_comment = !*t || *t == ';' || *t == '#';
    if (!blank_or_comment && *t == '[') {
        p->key_seen = 0;
        p->section_line = p->line;
    } else if (!blank_or_comment) {
        if (t > s && p->key_seen) {
            fail(p, here, "indented line after a key; write each key = value on one line "
                          "without leading spaces");
            return NULL;
        }
        p->key_seen = 1;
    }
    if ((size_t)n + 2 <= (size_t)num) {
        memcpy(buf, p->raw, (size_t)n);
        buf[n] = '\n';
        buf[n + 1] = '\0';
        return buf;
    }
    if (blank_or_comment) {
        snprintf(buf, (size_t)num, "#\n");
        return buf;
    }
    char *sep = t + strcspn(t, "=:");
    size_t name_len = (size_t)(sep - t);
    if (*t == '[' || !*sep || name_len + 16 > (size_t)num) {
        fail(p, here, "line of %zd characters that is not key = value; is this an INI file?", n);
        return NULL;
    }
    p->long_values = xrealloc(p->long_values, (size_t)(p->n_long + 1) * sizeof *p->long_values);
    p->long_values[p->n_long] = xstrdup(sep + 1);
    p->long_line = p->line;
    snprintf(buf, (size_t)num, "%.*s=\x1f%d\n", (int)name_len, t, p->n_long++);
    return buf;
}

static int on_key(void *user, const char *section, const char *name, const char *value) {
    Parse *p = user;
    if (p->failed) return 0;
    Origin here = {.line = p->line};
    if (!name) return 1; /* a section start, from inih builds that report them */
    if (!value) {        /* a bare name, from inih builds that allow them */
        fail(p, here, "'%s' has no value; write key = value", name);
        return 0;
    }
    if (*section && strcasecmp(section, "train") != 0) {
        fail(p, here, "key '%s' is in section [%s] (line %d); mmrm reads [train] or keys "
                      "before any section",
             name, section, p->section_line);
        return 0;
    }
    int ki = find_key(name);
    if (ki < 0) {
        unknown_key(p, here, name);
        return 0;
    }
    if (p->origin[ki].line > 0) {
        fail(p, here, "%s is set twice (also at line %d); keep one", name, p->origin[ki].line);
        return 0;
    }
    char *v;
    if (value[0] == '\x1f' && p->long_line == p->line)
        v = xstrdup(trim(cut_inline_comment(p->long_values[atoi(value + 1)])));
    else
        v = xstrdup(value);
    int rc = set_value(p, here, ki, v);
    free(v);
    if (rc) return 0;
    p->origin[ki] = here;
    return 1;
}

static int read_file(Parse *p) {
    p->f = fopen(p->path, "r");
    if (!p->f) {
        mmrm_set_error("%s: cannot open the configuration (%s)", p->path, strerror(errno));
        return -1;
    }
    int rc = ini_parse_stream(read_line, p, on_key, p);
    fclose(p->f);
    p->f = NULL;
    /* inih reports its own syntax errors only by line; keep whichever error comes first */
    if (rc > 0 && (!p->failed || rc < p->error_line)) {
        mmrm_set_error("%s:%d: expected key = value, a [train] header or a comment", p->path,
                       rc);
        return -1;
    }
    if (p->failed) return -1;
    if (p->read_errno) {
        mmrm_set_error("%s: cannot read the configuration (%s)", p->path,
                       strerror(p->read_errno));
        return -1;
    }
    if (rc != 0) {
        mmrm_set_error("%s: cannot read the configuration (inih status %d)", p->path, rc);
        return -1;
    }
    return 0;
}

static int apply_override(Parse *p, const char *text) {
    Origin here = {.override = text};
    char *eq = strchr(text, '=');
    if (!eq) return fail(p, here, "expected key=value");
    char *name = xstrdup(text);
    name[eq - text] = '\0';
    char *v = trim(name + (eq - text) + 1);
    const char *key = trim(name);
    int rc;
    int ki = find_key(key);
    if (ki < 0) rc = unknown_key(p, here, key);
    else if ((rc = set_value(p, here, ki, v)) == 0) p->origin[ki] = here;
    free(name);
    return rc;
}

/* ---- checks across keys ---- */

static int is_set(const TrainConfig *c, const char *name) {
    const Key *k = &g_keys[find_key(name)];
    return **(char *const *)cfield(c, k) != '\0';
}

static int check(Parse *p) {
    TrainConfig *c = p->c;
    Origin none = {0};
    if (!is_set(c, "model_name_or_path") && !is_set(c, "init_model_config"))
        return fail(p, none, "no model: set model_name_or_path (an HF model directory) or "
                             "init_model_config (a config.json for a randomly initialised "
                             "model)");
    if (is_set(c, "tokenizer_path") && is_set(c, "model_name_or_path"))
        return fail(p, p->origin[find_key("tokenizer_path")],
                    "tokenizer_path is for a model built from init_model_config; the model "
                    "directory of model_name_or_path brings its own tokenizer");
    if (c->n_dataset_paths == 0)
        return fail(p, none, "dataset_path is required (%s)",
                    g_keys[find_key("dataset_path")].what);
    if (!is_set(c, "output_dir"))
        return fail(p, none, "output_dir is required (%s)", g_keys[find_key("output_dir")].what);
    if (c->algorithm == TRAIN_SHORTCUT_AWARE && !is_set(c, "bias_model_path") &&
        !is_set(c, "init_bias_model_config"))
        return fail(p, p->origin[find_key("algorithm")],
                    "algorithm = shortcut_aware needs bias_model_path (the text-only bias RM, "
                    "usually the same checkpoint as model_name_or_path) or "
                    "init_bias_model_config");
    if (c->n_lora_target_modules > LORA_MAX_TARGETS)
        return fail(p, p->origin[find_key("lora_target_modules")],
                    "lora_target_modules: %d names, at most %d", c->n_lora_target_modules,
                    LORA_MAX_TARGETS);
    for (int i = 0; i < c->n_lora_target_modules; i++)
        if (!lora_known_target(c->lora_target_modules[i]))
            return fail(p, p->origin[find_key("lora_target_modules")],
                        "lora_target_modules: \"%s\" is not a linear layer name (q_proj, k_proj, "
                        "v_proj, o_proj, gate_proj, up_proj, down_proj; InternLM2: wqkv, wo, w1, "
                        "w2, w3; ViT: qkv, proj, fc1, fc2; connector: mlp1.1, mlp1.3)",
                        c->lora_target_modules[i]);
    if (c->min_dynamic_patch > c->max_dynamic_patch) {
        int lo = find_key("min_dynamic_patch"), hi = find_key("max_dynamic_patch");
        Origin o = p->origin[lo].line || p->origin[lo].override ? p->origin[lo] : p->origin[hi];
        return fail(p, o, "min_dynamic_patch = %d is larger than max_dynamic_patch = %d",
                    c->min_dynamic_patch, c->max_dynamic_patch);
    }
    return 0;
}

int train_config_load(TrainConfig *c, const char *path, int n_overrides,
                      char *const *overrides) {
    memset(c, 0, sizeof *c);
    Parse p = {.c = c, .path = path};
    for (int i = 0; i < NKEYS; i++) {
        char *def = xstrdup(g_keys[i].def);
        if (set_value(&p, (Origin){0}, i, def) != 0)
            MMRM_FATAL("train config: bad default of %s: %s", g_keys[i].name, mmrm_last_error());
        free(def);
    }
    int rc = path ? read_file(&p) : 0;
    for (int i = 0; rc == 0 && i < n_overrides; i++) rc = apply_override(&p, overrides[i]);
    if (rc == 0) rc = check(&p);
    free(p.raw);
    for (int i = 0; i < p.n_long; i++) free(p.long_values[i]);
    free(p.long_values);
    if (rc != 0) train_config_free(c);
    return rc;
}

/* ---- printing and saving ---- */

/* The shortest text that strtod reads back to exactly x. */
static void format_double(double x, char *buf, size_t n) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) return;
    }
}

static void write_value(const TrainConfig *c, const Key *k, StrBuf *b) {
    const void *v = cfield(c, k);
    char num[64];
    switch (k->type) {
    case T_STR:
    case T_TEMPLATE:
        sb_puts(b, *(char *const *)v);
        break;
    case T_LIST: {
        int n = *(const int *)((const char *)c + k->count_off);
        for (int i = 0; i < n; i++) sb_printf(b, "%s%s", i ? "," : "", (*(char **const *)v)[i]);
        break;
    }
    case T_INT:
        sb_printf(b, "%d", *(const int *)v);
        break;
    case T_I64:
        sb_printf(b, "%lld", *(const long long *)v);
        break;
    case T_F64:
        format_double(*(const double *)v, num, sizeof num);
        sb_puts(b, num);
        break;
    case T_BOOL:
        sb_puts(b, *(const int *)v ? "true" : "false");
        break;
    case T_ENUM:
        sb_puts(b, k->names[*(const int *)v]);
        break;
    }
}

static int value_is_empty(const TrainConfig *c, const Key *k) {
    if (k->type == T_STR || k->type == T_TEMPLATE) return **(char *const *)cfield(c, k) == '\0';
    if (k->type == T_LIST) return *(const int *)((const char *)c + k->count_off) == 0;
    return 0;
}

/* "key = value" lines; an unset string is "key =" (no trailing space) */
static void write_keys(const TrainConfig *c, StrBuf *b, int with_groups) {
    for (int i = 0; i < NKEYS; i++) {
        const Key *k = &g_keys[i];
        if (with_groups && k->group) sb_printf(b, "%s# %s\n", i ? "\n" : "", k->group);
        sb_printf(b, "%s =", k->name);
        if (!value_is_empty(c, k)) {
            sb_putc(b, ' ');
            write_value(c, k, b);
        }
        sb_putc(b, '\n');
    }
}

void train_config_print(const TrainConfig *c, FILE *f) {
    StrBuf b = {0};
    write_keys(c, &b, 0);
    fputs(b.s, f);
    sb_free(&b);
}

int train_config_save(const TrainConfig *c, const char *path) {
    StrBuf b = {0};
    sb_puts(&b, "# mmrm train configuration, resolved: every key, defaults included.\n"
                "# `mmrm train THIS_FILE` repeats the run.\n"
                "[train]\n\n");
    write_keys(c, &b, 1);
    int rc = fs_write_atomic(path, b.s, b.len);
    sb_free(&b);
    return rc;
}

void train_config_free(TrainConfig *c) {
    for (int i = 0; i < NKEYS; i++) {
        const Key *k = &g_keys[i];
        if (k->type == T_STR || k->type == T_TEMPLATE) {
            char **s = (char **)field(c, k);
            free(*s);
            *s = NULL;
        } else if (k->type == T_LIST) {
            free_list((char ***)field(c, k), (int *)((char *)c + k->count_off));
        }
    }
}

const char *train_algorithm_name(TrainAlgorithm a) {
    return a >= TRAIN_STANDARD && a <= TRAIN_SHORTCUT_AWARE ? k_algorithms[a] : "?";
}

const char *train_device_name(TrainDevice d) {
    return d >= TRAIN_DEVICE_AUTO && d <= TRAIN_DEVICE_CUDA ? k_devices[d] : "?";
}

const char *train_attention_impl_name(int impl) {
    return impl >= ATTN_IMPL_AUTO && impl <= ATTN_IMPL_CUDNN ? k_attention_impls[impl] : "?";
}
