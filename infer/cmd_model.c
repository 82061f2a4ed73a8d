/* cmd_model.c - `mmrm info` and `mmrm init`, the two commands about a model directory itself.
 * info loads a directory the way training and scoring do (rm_load) and prints what it holds:
 * the architecture and sizes, parameters per group, the on-disk dtype, the image geometry,
 * estimated forward FLOPs and the tokenizer file, as text or as one JSON object. init builds
 * a randomly initialised directory from an HF InternVL config (those in configs/model/) plus the
 * byte tokenizer, deterministically for a seed, so tiny models can be trained from scratch
 * and real shapes can be benchmarked without downloading weights.
 */
#include "infer/commands.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/checkpoint.h"
#include "models/config.h"
#include "models/reward_model.h"
#include "models/template.h"
#include "models/tokenizer.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"

/* the reference pair for the FLOP estimate: one 1-tile image and 256 text tokens per response */
#define PAIR_TILES 1
#define PAIR_TEXT_TOKENS 256

static int fail(void) {
    fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
    return 1;
}

static int usage_error(const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const char *usage, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("mmrm: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n%s", usage);
    return 2;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* 940123456 -> "940.1M": parameter counts at a glance (the exact count is printed next to it) */
static const char *human_count(double n, char *buf, size_t cap) {
    if (n < 1e3) snprintf(buf, cap, "%.0f", n);
    else if (n < 1e6) snprintf(buf, cap, "%.1fK", n / 1e3);
    else if (n < 1e9) snprintf(buf, cap, "%.1fM", n / 1e6);
    else snprintf(buf, cap, "%.2fB", n / 1e9);
    return buf;
}

static const char *human_flops(double f, char *buf, size_t cap) {
    if (f < 1e9) snprintf(buf, cap, "%.2f MFLOP", f / 1e6);
    else if (f < 1e12) snprintf(buf, cap, "%.2f GFLOP", f / 1e9);
    else snprintf(buf, cap, "%.2f TFLOP", f / 1e12);
    return buf;
}

/* Forward FLOPs of one pair: the ViT once for the shared image, then two sequences of
 * S = tiles * tokens_per_tile + text tokens each. Causal attention costs 2 * hd * NH * (i + 1)
 * FLOPs per product (QK^T, then AV) at query position i, so 2 * NH * hd * S * (S + 1) per
 * layer and sequence: spec/model.md's 2 * L * H * S per token. */
static double pair_forward_flops(const ModelConfig *cfg, int tiles, int text) {
    const LlmConfig *l = &cfg->llm;
    double S = (double)tiles * config_tokens_per_tile(cfg) + text;
    double attn = 2.0 * l->layers * (double)l->heads * l->head_dim * S * (S + 1);
    return tiles * rm_vit_flops_per_tile(cfg) + 2.0 * (S * rm_llm_flops_per_token(cfg) + attn);
}

/* ---------------------------------------------------------------- info */

static const char *info_usage =
    "usage: mmrm info MODEL_DIR [--json]\n"
    "\n"
    "Loads a model directory (config.json + model.safetensors, or shards with\n"
    "model.safetensors.index.json) as training and scoring do, and prints its architecture\n"
    "and sizes, parameters per group (vision, connector, llm, head), the on-disk dtype, the\n"
    "image geometry, estimated forward FLOPs (per text token, per tile, and for one pair of\n"
    "responses sharing a 1-tile image with 256 text tokens each) and the tokenizer file.\n"
    "\n"
    "options:\n"
    "  --json    print the same as one JSON object\n"
    "  --help    this text\n";

typedef struct {
    const char *dir, *weights_file;
    LoadReport rep;
    size_t count[PG_COUNT], total;
    double flops_token, flops_tile, flops_pair;
    Tokenizer *tok; /* NULL: no tokenizer file */
} Info;

/* the tokenizer must agree with the config and the template, or every batch would fail later
 * with a less obvious message */
static void warn_tokenizer_mismatch(const Info *in, const ModelConfig *cfg) {
    const Tokenizer *tok = in->tok;
    int img = -1;
    for (int i = 0; i < tok->n_special; i++)
        if (!strcmp(tok->special[i].text, "<IMG_CONTEXT>")) img = tok->special[i].id;
    /* a config without img_context_token_id takes the tokenizer's (config_adopt_img_context) */
    if (cfg->img_context_from_config && img != cfg->img_context_id)
        mmrm_warn("%s: the tokenizer's <IMG_CONTEXT> is id %d but config.json's "
                  "img_context_token_id is %d", in->dir, img, cfg->img_context_id);
    if (tok->vocab_size > cfg->llm.vocab)
        mmrm_warn("%s: the tokenizer's vocab_size %d exceeds the model's vocab_size %d", in->dir,
                  tok->vocab_size, cfg->llm.vocab);
    TemplateKind kind;
    if (template_parse(cfg->template_name, &kind) != 0)
        mmrm_warn("%s/config.json: %s", in->dir, mmrm_last_error());
    else if (tok->add_bos != (kind == TEMPLATE_INTERNLM2_CHAT))
        mmrm_warn("%s: the tokenizer's add_bos is %s but template %s %s a BOS", in->dir,
                  tok->add_bos ? "true" : "false", cfg->template_name,
                  kind == TEMPLATE_INTERNLM2_CHAT ? "needs" : "takes no");
}

static void print_text(const Info *in, const ModelConfig *cfg) {
    const VisionConfig *v = &cfg->vision;
    const LlmConfig *l = &cfg->llm;
    int G = config_grid(cfg);
    char h[32], f1[32], f2[32], f3[32];
    printf("model       %s\n", in->dir);
    printf("arch        InternViT + mlp1 (pixel shuffle v2, ratio %g) + %s, template %s\n",
           cfg->downsample_ratio, llm_arch_name(l->arch), cfg->template_name);
    printf("vision      hidden %d, layers %d, heads %d (head dim %d), intermediate %d, %s eps %g, "
           "qkv_bias %s, qk_norm %s, select_layer %d\n",
           v->hidden, v->layers, v->heads, v->hidden / v->heads, v->intermediate,
           v->rms_norm ? "rms_norm" : "layer_norm", v->eps, v->qkv_bias ? "yes" : "no",
           v->qk_norm ? "yes" : "no", cfg->select_layer);
    printf("llm         hidden %d, layers %d, heads %d, kv heads %d, head dim %d, intermediate %d, "
           "vocab %d, rope theta %g, rms eps %g\n",
           l->hidden, l->layers, l->heads, l->kv_heads, l->head_dim, l->intermediate, l->vocab,
           l->rope_theta, l->rms_eps);
    printf("image       %d px, patch %d, grid %dx%d, %d image tokens per tile, <IMG_CONTEXT> id %d\n",
           cfg->image_size, v->patch, G, G, config_tokens_per_tile(cfg), cfg->img_context_id);
    printf("parameters\n");
    for (int g = PG_VISION; g <= PG_HEAD; g++)
        printf("  %-10s %12zu  %s\n", param_group_name((ParamGroup)g), in->count[g],
               human_count((double)in->count[g], h, sizeof h));
    if (in->count[PG_OTHER])
        printf("  %-10s %12zu  %s\n", "other", in->count[PG_OTHER],
               human_count((double)in->count[PG_OTHER], h, sizeof h));
    printf("  %-10s %12zu  %s\n", "total", in->total, human_count((double)in->total, h, sizeof h));
    printf("weights     %s, %s on disk, %d tensors loaded, %d ignored (unused by the reward model)\n",
           in->weights_file, in->rep.disk_dtype, in->rep.n_loaded, in->rep.n_ignored);
    printf("score       %s\n", in->rep.score_initialised
                                   ? "score.weight absent from the files: initialised N(0, 1/(H+1))"
                                   : "score.weight loaded from the files");
    if (in->rep.pos_resized_from)
        printf("position    embedding grid resized %dx%d -> %dx%d (force_image_size)\n",
               in->rep.pos_resized_from, in->rep.pos_resized_from, G, G);
    printf("flops       %s per text token (LLM, without attention), %s per tile (ViT + connector)\n",
           human_flops(in->flops_token, f1, sizeof f1), human_flops(in->flops_tile, f2, sizeof f2));
    printf("            %s forward for one pair (2 sequences of %d image + %d text tokens "
           "sharing one %d-tile image, ViT run once)\n",
           human_flops(in->flops_pair, f3, sizeof f3), PAIR_TILES * config_tokens_per_tile(cfg),
           PAIR_TEXT_TOKENS, PAIR_TILES);
    if (in->tok)
        printf("tokenizer   %s (vocab %d, add_bos %s)\n", tokenizer_kind_name(in->tok->kind),
               in->tok->vocab_size, in->tok->add_bos ? "yes" : "no");
    else
        printf("tokenizer   none (no %s, HF tokenizer files or tokenizer.model in the directory)\n",
               TOKENIZER_FILE);
}

static void print_json(const Info *in, const ModelConfig *cfg) {
    const VisionConfig *v = &cfg->vision;
    const LlmConfig *l = &cfg->llm;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "dir", in->dir);
    cJSON *a = cJSON_AddObjectToObject(root, "architecture");
    cJSON_AddStringToObject(a, "vision", "InternViT");
    cJSON_AddStringToObject(a, "connector", "pixel_shuffle_v2+mlp1");
    cJSON_AddStringToObject(a, "llm", llm_arch_name(l->arch));
    cJSON_AddStringToObject(a, "template", cfg->template_name);
    cJSON *jv = cJSON_AddObjectToObject(root, "vision");
    cJSON_AddNumberToObject(jv, "hidden_size", v->hidden);
    cJSON_AddNumberToObject(jv, "num_hidden_layers", v->layers);
    cJSON_AddNumberToObject(jv, "num_attention_heads", v->heads);
    cJSON_AddNumberToObject(jv, "head_dim", v->hidden / v->heads);
    cJSON_AddNumberToObject(jv, "intermediate_size", v->intermediate);
    cJSON_AddStringToObject(jv, "norm_type", v->rms_norm ? "rms_norm" : "layer_norm");
    cJSON_AddNumberToObject(jv, "layer_norm_eps", v->eps);
    cJSON_AddBoolToObject(jv, "qkv_bias", v->qkv_bias);
    cJSON_AddBoolToObject(jv, "qk_normalization", v->qk_norm);
    cJSON_AddNumberToObject(jv, "select_layer", cfg->select_layer);
    cJSON *jl = cJSON_AddObjectToObject(root, "llm");
    cJSON_AddStringToObject(jl, "architecture", llm_arch_name(l->arch));
    cJSON_AddNumberToObject(jl, "hidden_size", l->hidden);
    cJSON_AddNumberToObject(jl, "num_hidden_layers", l->layers);
    cJSON_AddNumberToObject(jl, "num_attention_heads", l->heads);
    cJSON_AddNumberToObject(jl, "num_key_value_heads", l->kv_heads);
    cJSON_AddNumberToObject(jl, "head_dim", l->head_dim);
    cJSON_AddNumberToObject(jl, "intermediate_size", l->intermediate);
    cJSON_AddNumberToObject(jl, "vocab_size", l->vocab);
    cJSON_AddNumberToObject(jl, "rope_theta", l->rope_theta);
    cJSON_AddNumberToObject(jl, "rms_norm_eps", l->rms_eps);
    cJSON_AddNumberToObject(jl, "max_position_embeddings", l->max_positions);
    cJSON *ji = cJSON_AddObjectToObject(root, "image");
    cJSON_AddNumberToObject(ji, "image_size", cfg->image_size);
    cJSON_AddNumberToObject(ji, "patch_size", v->patch);
    cJSON_AddNumberToObject(ji, "grid", config_grid(cfg));
    cJSON_AddNumberToObject(ji, "downsample_ratio", cfg->downsample_ratio);
    cJSON_AddNumberToObject(ji, "tokens_per_tile", config_tokens_per_tile(cfg));
    cJSON_AddNumberToObject(ji, "img_context_token_id", cfg->img_context_id);
    /* counts stay below 2^53, so doubles hold them exactly */
    cJSON *jp = cJSON_AddObjectToObject(root, "parameters");
    for (int g = 0; g < PG_COUNT; g++)
        if ((g != PG_OTHER && g != PG_LORA) || in->count[g])
            cJSON_AddNumberToObject(jp, param_group_name((ParamGroup)g), (double)in->count[g]);
    cJSON_AddNumberToObject(jp, "total", (double)in->total);
    cJSON *jw = cJSON_AddObjectToObject(root, "weights");
    cJSON_AddStringToObject(jw, "file", in->weights_file);
    cJSON_AddStringToObject(jw, "disk_dtype", in->rep.disk_dtype);
    cJSON_AddNumberToObject(jw, "loaded_tensors", in->rep.n_loaded);
    cJSON_AddNumberToObject(jw, "ignored_tensors", in->rep.n_ignored);
    cJSON_AddBoolToObject(jw, "score_initialised", in->rep.score_initialised);
    cJSON_AddNumberToObject(jw, "pos_resized_from", in->rep.pos_resized_from);
    cJSON *jf = cJSON_AddObjectToObject(root, "flops");
    cJSON_AddNumberToObject(jf, "llm_per_text_token", in->flops_token);
    cJSON_AddNumberToObject(jf, "vit_connector_per_tile", in->flops_tile);
    cJSON_AddNumberToObject(jf, "pair_forward", in->flops_pair);
    cJSON_AddNumberToObject(jf, "pair_tiles", PAIR_TILES);
    cJSON_AddNumberToObject(jf, "pair_text_tokens", PAIR_TEXT_TOKENS);
    if (in->tok) {
        cJSON *jt = cJSON_AddObjectToObject(root, "tokenizer");
        cJSON_AddStringToObject(jt, "type", tokenizer_kind_name(in->tok->kind));
        cJSON_AddNumberToObject(jt, "vocab_size", in->tok->vocab_size);
        cJSON_AddBoolToObject(jt, "add_bos", in->tok->add_bos);
    } else {
        cJSON_AddNullToObject(root, "tokenizer");
    }
    char *text = cJSON_Print(root);
    puts(text);
    free(text);
    cJSON_Delete(root);
}

int cmd_info(int argc, char **argv) {
    const char *dir = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(info_usage, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error(info_usage, "info: unknown option '%s'", argv[i]);
        } else if (dir) {
            return usage_error(info_usage, "info: one MODEL_DIR expected, got a second: '%s'", argv[i]);
        } else {
            dir = argv[i];
        }
    }
    if (!dir) return usage_error(info_usage, "info: MODEL_DIR is missing");

    char path[4096];
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        mmrm_set_error("%s: cannot open (%s); expected a model directory holding config.json "
                       "and model.safetensors", dir, strerror(errno));
        return fail();
    }
    if (!S_ISDIR(sb.st_mode)) {
        mmrm_set_error("%s: not a directory; expected a model directory holding config.json "
                       "and model.safetensors", dir);
        return fail();
    }
    if (!fs_join(path, sizeof path, dir, "config.json")) return fail();
    if (!file_exists(path)) {
        mmrm_set_error("%s: no config.json, so this is not a model directory (create one with "
                       "`mmrm init --config CONFIG.json --out %s`)", dir, dir);
        return fail();
    }
    /* everything frozen: info needs no gradient buffers */
    int freeze[PG_COUNT];
    for (int g = 0; g < PG_COUNT; g++) freeze[g] = 1;
    RewardModel m;
    Info in = {0};
    in.dir = dir;
    if (rm_load(&m, dir, DEV_CPU, freeze, 0, &in.rep) != 0) return fail();
    if (!fs_join(path, sizeof path, dir, "model.safetensors")) {
        rm_free(&m);
        return fail();
    }
    in.weights_file = file_exists(path) ? "model.safetensors" : "model.safetensors.index.json";
    for (int g = 0; g < PG_COUNT; g++) in.count[g] = params_count_group(&m.ps, (ParamGroup)g);
    in.total = m.ps.numel;
    const ModelConfig *cfg = &m.cfg;
    in.flops_token = rm_llm_flops_per_token(cfg);
    in.flops_tile = rm_vit_flops_per_tile(cfg);
    in.flops_pair = pair_forward_flops(cfg, PAIR_TILES, PAIR_TEXT_TOKENS);
    if (tokenizer_present(dir)) {
        in.tok = tokenizer_load(dir);
        if (!in.tok) {
            rm_free(&m);
            return fail();
        }
        warn_tokenizer_mismatch(&in, cfg);
        /* a config without img_context_token_id shows the id train and score adopt from the
         * tokenizer (config_adopt_img_context), not the built-in default */
        int ctx = -1;
        for (int i = 0; i < in.tok->n_special; i++)
            if (!strcmp(in.tok->special[i].text, "<IMG_CONTEXT>")) ctx = in.tok->special[i].id;
        if (!m.cfg.img_context_from_config && ctx >= 0 && ctx < m.cfg.llm.vocab)
            config_adopt_img_context(&m.cfg, ctx);
    }
    if (json) print_json(&in, cfg);
    else print_text(&in, cfg);
    tokenizer_free(in.tok);
    rm_free(&m);
    return 0;
}

/* ---------------------------------------------------------------- init */

static const char *init_usage =
    "usage: mmrm init --config CONFIG.json --out DIR [--seed S] [--dtype F32|BF16]\n"
    "                 [--template NAME] [--force]\n"
    "\n"
    "Creates a randomly initialised reward model directory from an HF InternVL config\n"
    "(e.g. configs/model/tiny.json): DIR/config.json, DIR/model.safetensors and the byte\n"
    "tokenizer DIR/" TOKENIZER_FILE " (add_bos per the template). The same config and seed\n"
    "give a byte-identical model.safetensors. Matrices are N(0, 0.02), biases 0, norm weights 1,\n"
    "layer scales 0.1, score.weight N(0, 1/(H+1)).\n"
    "The byte tokenizer is written only when it fits the config (<IMG_CONTEXT> id 262 and a\n"
    "vocabulary of at least 270 ids); real-vocabulary shapes get a warning instead.\n"
    "\n"
    "options:\n"
    "  --config PATH    HF InternVL config.json (vision_config, llm_config, ...)\n"
    "  --out DIR        the model directory to create\n"
    "  --seed S         initialisation seed (default 1)\n"
    "  --dtype D        weight dtype on disk: F32 (default) or BF16\n"
    "  --template NAME  chat template, overriding the config's: internlm2-chat or Hermes-2\n"
    "  --force          overwrite a DIR that already holds a model\n"
    "  --help           this text\n";

/* --opt VALUE or --opt=VALUE; NULL when argv[*i] is not opt. Sets *missing when the value is. */
static const char *opt_value(int argc, char **argv, int *i, const char *opt, int *missing) {
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != '\0') return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

static int parse_seed(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *s == '-' || *end || errno) {
        mmrm_set_error("--seed '%s': expected a non-negative integer below 2^64", s);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

/* Writes the byte tokenizer when it fits the model; otherwise removes a stale one that an
 * earlier init may have left (with --force), so the directory never pairs the new weights with
 * a tokenizer that contradicts its config. 0 or -1. */
static int write_tokenizer(const ModelConfig *cfg, const char *cfg_path, const char *dir,
                           TemplateKind kind, int *written) {
    Tokenizer *tok = tokenizer_byte_new(kind == TEMPLATE_INTERNLM2_CHAT);
    int img = tokenizer_special_id(tok, "<IMG_CONTEXT>");
    int rc = 0;
    *written = cfg->llm.vocab >= tok->vocab_size && cfg->img_context_id == img;
    if (*written) {
        rc = tokenizer_save(tok, dir);
    } else {
        mmrm_warn("no %s written: the byte tokenizer (vocab %d, <IMG_CONTEXT> id %d) does not fit "
                  "%s (vocab_size %d, img_context_token_id %d); put the checkpoint's tokenizer "
                  "in %s to score or train text", TOKENIZER_FILE, tok->vocab_size, img, cfg_path,
                  cfg->llm.vocab, cfg->img_context_id, dir);
        char path[4096];
        if (!fs_join(path, sizeof path, dir, TOKENIZER_FILE)) {
            rc = -1;
        } else if (unlink(path) != 0 && errno != ENOENT) {
            mmrm_set_error("%s: cannot remove the previous tokenizer (%s)", path, strerror(errno));
            rc = -1;
        }
    }
    tokenizer_free(tok);
    return rc;
}

int cmd_init(int argc, char **argv) {
    const char *cfg_path = NULL, *out = NULL, *dtype = "F32", *tmpl = NULL, *seed_s = "1", *v;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(init_usage, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--force")) {
            force = 1;
        } else if ((v = opt_value(argc, argv, &i, "--config", &missing))) {
            cfg_path = v;
        } else if ((v = opt_value(argc, argv, &i, "--out", &missing))) {
            out = v;
        } else if ((v = opt_value(argc, argv, &i, "--seed", &missing))) {
            seed_s = v;
        } else if ((v = opt_value(argc, argv, &i, "--dtype", &missing))) {
            dtype = v;
        } else if ((v = opt_value(argc, argv, &i, "--template", &missing))) {
            tmpl = v;
        } else if (missing) {
            return usage_error(init_usage, "init: option %s needs a value", argv[i]);
        } else {
            return usage_error(init_usage, "init: unknown argument '%s'", argv[i]);
        }
    }
    if (!cfg_path) return usage_error(init_usage, "init: --config is missing");
    if (!out) return usage_error(init_usage, "init: --out is missing");
    uint64_t seed;
    if (parse_seed(seed_s, &seed) != 0) return fail();
    if (strcmp(dtype, "F32") && strcmp(dtype, "BF16")) {
        mmrm_set_error("--dtype '%s': valid: F32, BF16", dtype);
        return fail();
    }

    ModelConfig cfg;
    if (config_load(cfg_path, &cfg) != 0) return fail();
    TemplateKind kind;
    if (template_parse(tmpl ? tmpl : cfg.template_name, &kind) != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", mmrm_last_error());
        if (tmpl) mmrm_set_error("--template: %s", msg);
        else mmrm_set_error("%s: field \"template\": %s (or pass --template)", cfg_path, msg);
        return fail();
    }
    snprintf(cfg.template_name, sizeof cfg.template_name, "%s", template_name(kind));

    char path[4096];
    if (!fs_join(path, sizeof path, out, "config.json")) return fail();
    if (!force && file_exists(path)) {
        mmrm_set_error("%s already holds a model (config.json); pass --force to overwrite it", out);
        return fail();
    }

    int freeze[PG_COUNT];
    for (int g = 0; g < PG_COUNT; g++) freeze[g] = 1; /* no gradient buffers needed */
    RewardModel m;
    rm_create(&m, &cfg, DEV_CPU, freeze);
    rm_init_random(&m, seed);
    int rc = rm_save(&m, out, dtype), tok_written = 0;
    size_t total = m.ps.numel;
    rm_free(&m);
    if (rc != 0) return fail();
    if (write_tokenizer(&cfg, cfg_path, out, kind, &tok_written) != 0) return fail();
    char h[32];
    printf("initialised %s: %s parameters (%zu), %s, seed %" PRIu64 ", template %s%s\n", out,
           human_count((double)total, h, sizeof h), total, dtype, seed, cfg.template_name,
           tok_written ? ", byte tokenizer " TOKENIZER_FILE : "");
    return 0;
}
