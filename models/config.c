/* config.c - config.json <-> ModelConfig (config.h). */
#include "models/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/fsutil.h"

static const char *arch_names[] = {"Qwen2ForCausalLM", "InternLM2ForCausalLM", "LlamaForCausalLM"};

const char *llm_arch_name(LlmArch a) { return (unsigned)a < 3 ? arch_names[a] : "?"; }

int config_grid(const ModelConfig *cfg) { return cfg->image_size / cfg->vision.patch; }

int config_tokens_per_tile(const ModelConfig *cfg) {
    int g = (int)lround(config_grid(cfg) * cfg->downsample_ratio);
    return g * g;
}

typedef struct { const char *path, *section; int err; } Ctx;

static const cJSON *field(Ctx *c, const cJSON *obj, const char *key, int required) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v && required && !c->err) {
        mmrm_set_error("%s: field \"%s%s\" is missing", c->path, c->section, key);
        c->err = 1;
    }
    return v;
}

static int get_int(Ctx *c, const cJSON *obj, const char *key, int required, int dflt) {
    const cJSON *v = field(c, obj, key, required);
    if (!v || cJSON_IsNull(v)) return dflt;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9) {
        if (!c->err) mmrm_set_error("%s: field \"%s%s\" must be an integer", c->path, c->section, key);
        c->err = 1;
        return dflt;
    }
    return (int)v->valuedouble;
}

static double get_num(Ctx *c, const cJSON *obj, const char *key, int required, double dflt) {
    const cJSON *v = field(c, obj, key, required);
    if (!v || cJSON_IsNull(v)) return dflt;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
        /* (a literal such as 1e999 parses to infinity, which no field can take) */
        if (!c->err)
            mmrm_set_error("%s: field \"%s%s\" must be a finite number", c->path, c->section, key);
        c->err = 1;
        return dflt;
    }
    return v->valuedouble;
}

static int get_bool(Ctx *c, const cJSON *obj, const char *key, int dflt) {
    const cJSON *v = field(c, obj, key, 0);
    if (!v || cJSON_IsNull(v)) return dflt;
    if (!cJSON_IsBool(v)) {
        if (!c->err) mmrm_set_error("%s: field \"%s%s\" must be true or false", c->path, c->section, key);
        c->err = 1;
        return dflt;
    }
    return cJSON_IsTrue(v);
}

static const char *get_str(Ctx *c, const cJSON *obj, const char *key, int required, const char *dflt) {
    const cJSON *v = field(c, obj, key, required);
    if (!v || cJSON_IsNull(v)) return dflt;
    if (!cJSON_IsString(v)) {
        if (!c->err) mmrm_set_error("%s: field \"%s%s\" must be a string", c->path, c->section, key);
        c->err = 1;
        return dflt;
    }
    return v->valuestring;
}

static int parse(Ctx *c, const cJSON *root, ModelConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    const cJSON *vc = field(c, root, "vision_config", 1), *lc = field(c, root, "llm_config", 1);
    if (c->err) return -1;
    if (!cJSON_IsObject(vc) || !cJSON_IsObject(lc)) {
        mmrm_set_error("%s: \"vision_config\" and \"llm_config\" must be objects", c->path);
        return -1;
    }
    VisionConfig *v = &cfg->vision;
    c->section = "vision_config.";
    v->hidden = get_int(c, vc, "hidden_size", 1, 0);
    v->heads = get_int(c, vc, "num_attention_heads", 1, 0);
    v->intermediate = get_int(c, vc, "intermediate_size", 1, 0);
    v->layers = get_int(c, vc, "num_hidden_layers", 1, 0);
    v->image_size = get_int(c, vc, "image_size", 1, 0);
    v->patch = get_int(c, vc, "patch_size", 1, 0);
    v->channels = get_int(c, vc, "num_channels", 0, 3);
    v->qkv_bias = get_bool(c, vc, "qkv_bias", 1);
    v->qk_norm = get_bool(c, vc, "qk_normalization", 0);
    v->eps = get_num(c, vc, "layer_norm_eps", 0, 1e-6);
    v->drop_path_rate = get_num(c, vc, "drop_path_rate", 0, 0.0);
    const char *nt = get_str(c, vc, "norm_type", 0, "layer_norm");
    if (!c->err && strcmp(nt, "layer_norm") && strcmp(nt, "rms_norm")) {
        mmrm_set_error("%s: field \"vision_config.norm_type\" is \"%s\"; valid: layer_norm, rms_norm", c->path, nt);
        return -1;
    }
    v->rms_norm = nt && !strcmp(nt, "rms_norm");

    LlmConfig *l = &cfg->llm;
    c->section = "llm_config.";
    const cJSON *archs = field(c, lc, "architectures", 1);
    if (c->err) return -1;
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (!cJSON_IsString(a0)) {
        mmrm_set_error("%s: field \"llm_config.architectures\" must be a list of names", c->path);
        return -1;
    }
    int found = 0;
    for (int i = 0; i < 3; i++)
        if (!strcmp(a0->valuestring, arch_names[i])) l->arch = (LlmArch)i, found = 1;
    if (!found) {
        mmrm_set_error("%s: field \"llm_config.architectures\": unknown architecture \"%s\"; "
                       "valid: Qwen2ForCausalLM, InternLM2ForCausalLM, LlamaForCausalLM",
                       c->path, a0->valuestring);
        return -1;
    }
    l->hidden = get_int(c, lc, "hidden_size", 1, 0);
    l->heads = get_int(c, lc, "num_attention_heads", 1, 0);
    l->kv_heads = get_int(c, lc, "num_key_value_heads", 0, l->heads);
    l->intermediate = get_int(c, lc, "intermediate_size", 1, 0);
    l->layers = get_int(c, lc, "num_hidden_layers", 1, 0);
    l->vocab = get_int(c, lc, "vocab_size", 1, 0);
    l->rope_theta = get_num(c, lc, "rope_theta", 0, 10000.0);
    l->rms_eps = get_num(c, lc, "rms_norm_eps", 0, 1e-6);
    l->max_positions = get_int(c, lc, "max_position_embeddings", 0, 32768);
    l->head_dim = l->heads > 0 ? l->hidden / l->heads : 0;

    c->section = "";
    cfg->select_layer = get_int(c, root, "select_layer", 0, -1);
    cfg->downsample_ratio = get_num(c, root, "downsample_ratio", 0, 0.5);
    const char *ps = get_str(c, root, "ps_version", 0, "v2");
    if (!c->err && strcmp(ps, "v2")) {
        mmrm_set_error("%s: field \"ps_version\" is \"%s\"; only v2 is supported (v1 yields the "
                       "transposed grid and is not used by InternVL2 checkpoints)", c->path, ps);
        return -1;
    }
    int force = get_int(c, root, "force_image_size", 0, 0);
    cfg->image_size = force > 0 ? force : v->image_size;
    snprintf(cfg->template_name, sizeof cfg->template_name, "%s",
             get_str(c, root, "template", 0, "internlm2-chat"));
    cfg->img_context_id = get_int(c, root, "img_context_token_id", 0, 262);
    cfg->img_context_from_config = cJSON_HasObjectItem(root, "img_context_token_id");
    cfg->init_range = get_num(c, root, "initializer_range", 0, 0.02);
    cfg->has_tiling = 1;
    cfg->dynamic_image_size = get_bool(c, root, "dynamic_image_size", 1);
    cfg->use_thumbnail = get_bool(c, root, "use_thumbnail", 1);
    cfg->min_dynamic_patch = get_int(c, root, "min_dynamic_patch", 0, 1);
    cfg->max_dynamic_patch = get_int(c, root, "max_dynamic_patch", 0, 6);
    if (!c->err && (cfg->min_dynamic_patch < 1 || cfg->min_dynamic_patch > cfg->max_dynamic_patch ||
                    cfg->max_dynamic_patch > 64)) {
        mmrm_set_error("%s: fields \"min_dynamic_patch\" %d and \"max_dynamic_patch\" %d must "
                       "satisfy 1 <= min <= max <= 64", c->path, cfg->min_dynamic_patch,
                       cfg->max_dynamic_patch);
        return -1;
    }
    const char *sys = get_str(c, root, "system_message", 0, NULL);
    if (sys) {
        size_t n = strlen(sys);
        if (n > CONFIG_MAX_SYSTEM_MESSAGE) {
            mmrm_set_error("%s: field \"system_message\" is %zu bytes long; at most %d are "
                           "supported", c->path, n, CONFIG_MAX_SYSTEM_MESSAGE);
            return -1;
        }
        memcpy(cfg->system_message, sys, n + 1);
        cfg->has_system_message = 1;
    }
    return c->err ? -1 : config_validate(cfg, c->path);
}


int config_validate(const ModelConfig *cfg, const char *path) {
    const VisionConfig *v = &cfg->vision;
    const LlmConfig *l = &cfg->llm;
    MMRM_REQUIRE(v->hidden > 0 && v->heads > 0 && v->hidden % v->heads == 0,
            "%s: vision_config.hidden_size %d must be a positive multiple of num_attention_heads %d",
            path, v->hidden, v->heads);
    MMRM_REQUIRE(v->intermediate > 0 && v->layers > 0 && v->patch > 0 && v->channels > 0,
            "%s: vision_config sizes (intermediate_size, num_hidden_layers, patch_size, "
            "num_channels) must be positive", path);
    MMRM_REQUIRE(v->image_size > 0 && v->image_size % v->patch == 0,
            "%s: vision_config.image_size %d must be a multiple of patch_size %d", path,
            v->image_size, v->patch);
    MMRM_REQUIRE(cfg->image_size % v->patch == 0,
            "%s: force_image_size %d must be a multiple of patch_size %d", path, cfg->image_size, v->patch);
    MMRM_REQUIRE(fabs(cfg->downsample_ratio - 0.5) < 1e-9,
            "%s: downsample_ratio %g: only 0.5 (pixel shuffle by 2) is supported", path,
            cfg->downsample_ratio);
    MMRM_REQUIRE(config_grid(cfg) % 2 == 0,
            "%s: image grid %d (image size / patch) must be even for pixel shuffle", path,
            config_grid(cfg));
    MMRM_REQUIRE(cfg->select_layer >= -(v->layers + 1) && cfg->select_layer <= v->layers,
            "%s: select_layer %d is outside [-%d, %d]", path, cfg->select_layer, v->layers + 1,
            v->layers);
    MMRM_REQUIRE(v->drop_path_rate >= 0 && v->drop_path_rate < 1,
            "%s: vision_config.drop_path_rate %g is outside [0, 1)", path, v->drop_path_rate);
    MMRM_REQUIRE(l->hidden > 0 && l->heads > 0 && l->hidden % l->heads == 0,
            "%s: llm_config.hidden_size %d must be a positive multiple of num_attention_heads %d",
            path, l->hidden, l->heads);
    MMRM_REQUIRE(l->head_dim % 2 == 0, "%s: llm head dim %d (hidden_size / num_attention_heads) must be even for RoPE",
            path, l->head_dim);
    MMRM_REQUIRE(l->kv_heads > 0 && l->heads % l->kv_heads == 0,
            "%s: llm_config.num_attention_heads %d must be a multiple of num_key_value_heads %d",
            path, l->heads, l->kv_heads);
    MMRM_REQUIRE(l->intermediate > 0 && l->layers > 0 && l->vocab > 0,
            "%s: llm_config sizes (intermediate_size, num_hidden_layers, vocab_size) must be positive", path);
    MMRM_REQUIRE(cfg->img_context_id >= 0 && cfg->img_context_id < l->vocab,
            "%s: img_context_token_id %d is outside the vocabulary (%d)", path, cfg->img_context_id, l->vocab);
    MMRM_REQUIRE(l->rope_theta > 0 && l->rms_eps > 0, "%s: llm_config rope_theta and rms_norm_eps must be positive", path);
    MMRM_REQUIRE(cfg->init_range >= 0 && cfg->init_range <= 1,
            "%s: initializer_range %g is outside (0, 1]", path, cfg->init_range);
    return 0;
}

/* Numbers are kept as the file wrote them: cJSON prints 2.0 as 2 and 1000000.0 as 1000000,
 * and Python reads those back as ints (transformers warns on an int rope_scaling factor).
 * Each number of the tree becomes a raw node holding its text; the tree and text are in the
 * same document order, so the k-th number node takes the k-th number token. */
static const char *next_number(const char *p, size_t *len) {
    for (; *p; p++) {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1]) p++;
            if (!*p) return NULL;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            *len = strspn(p, "+-0123456789.eE");
            return p;
        }
    }
    return NULL;
}

static void keep_number_text(cJSON *node, const char **cursor) {
    for (cJSON *c = node->child; c && *cursor; c = c->next) {
        if (cJSON_IsNumber(c)) {
            size_t len;
            const char *tok = next_number(*cursor, &len);
            if (!tok) {
                *cursor = NULL;
                return;
            }
            char *raw = xmalloc(len + 1); /* cJSON_Delete frees it (default hooks: free) */
            memcpy(raw, tok, len);
            raw[len] = 0;
            c->type = cJSON_Raw;
            c->valuestring = raw;
            *cursor = tok + len;
        } else {
            keep_number_text(c, cursor);
        }
    }
}

int config_load(const char *path, ModelConfig *cfg) {
    size_t len;
    char *text = fs_read_file(path, &len);
    if (!text) return -1;
    const char *nul = memchr(text, 0, len);
    if (nul) { /* cJSON would skip it as white space; JSON text has none (found by fuzz_config) */
        int line = 1;
        for (const char *p = text; p < nul; p++) line += *p == '\n';
        mmrm_set_error("%s:%d: a NUL byte (malformed config.json: not JSON text)", path, line);
        free(text);
        return -1;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        int line = 1;
        for (const char *p = text; end && p < end; p++) line += *p == '\n';
        mmrm_set_error("%s:%d: not a JSON object (malformed config.json)", path, line);
        cJSON_Delete(root);
        free(text);
        return -1;
    }
    Ctx c = {path, "", 0};
    int rc = parse(&c, root, cfg);
    if (rc == 0) {
        const char *cursor = text;
        keep_number_text(root, &cursor);
        char *compact = cJSON_PrintUnformatted(root);
        size_t n = strlen(compact);
        if (n > CONFIG_MAX_SOURCE) {
            mmrm_set_error("%s: the config is %zu bytes as compact JSON; at most %d are kept "
                           "for saving it back (CONFIG_MAX_SOURCE)", path, n, CONFIG_MAX_SOURCE);
            rc = -1;
        } else {
            memcpy(cfg->source, compact, n + 1);
        }
        free(compact);
    }
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* obj[key] = item, in place when obj has the key (its position in the file is kept) */
static void put(cJSON *obj, const char *key, cJSON *item) {
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item);
    else
        cJSON_AddItemToObject(obj, key, item);
}

/* a number mmrm models: the source's text stays when it holds the same value */
static void put_num(cJSON *o, const char *k, double v) {
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsRaw(old) && strtod(old->valuestring, NULL) == v) return;
    put(o, k, cJSON_CreateNumber(v));
}

/* a number HF's config classes hold as a float (rope_theta, eps, ratios): written with a
 * fraction or exponent like Python's json (1000000.0, 1e-06), so it reads back as a float */
static void put_float(cJSON *o, const char *k, double v) {
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsRaw(old) && strtod(old->valuestring, NULL) == v) return;
    char buf[40];
    snprintf(buf, sizeof buf, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, sizeof buf, "%.17g", v);
    if (!strpbrk(buf, ".eEni")) strcat(buf, ".0");
    put(o, k, cJSON_CreateRaw(buf));
}
static void put_bool(cJSON *o, const char *k, int v) { put(o, k, cJSON_CreateBool(v)); }
static void put_str(cJSON *o, const char *k, const char *v) { put(o, k, cJSON_CreateString(v)); }
static void put_names(cJSON *o, const char *k, const char *v) {
    put(o, k, cJSON_CreateStringArray(&v, 1));
}

/* obj[key] as an object to fill: the source's own when it has one, else a new one */
static cJSON *section(cJSON *root, const char *key) {
    cJSON *s = cJSON_GetObjectItemCaseSensitive(root, key);
    if (cJSON_IsObject(s)) return s;
    s = cJSON_CreateObject();
    put(root, key, s);
    return s;
}

static const char *llm_model_types[] = {"qwen2", "internlm2", "llama"};

int config_save(const ModelConfig *cfg, const char *path, const char *torch_dtype) {
    const VisionConfig *v = &cfg->vision;
    const LlmConfig *l = &cfg->llm;
    cJSON *root = cfg->source[0] ? cJSON_Parse(cfg->source) : NULL;
    if (cJSON_IsObject(root)) {
        const char *cursor = cfg->source;
        keep_number_text(root, &cursor);
    } else {
        cJSON_Delete(root); /* a config built in code */
        root = cJSON_CreateObject();
    }
    put_names(root, "architectures", "InternVLChatModel");
    put_str(root, "model_type", "internvl_chat");
    put_float(root, "downsample_ratio", cfg->downsample_ratio);
    put_num(root, "force_image_size", cfg->image_size);
    /* known (from config.json or adopted from the tokenizer): else left to the tokenizer */
    if (cfg->img_context_from_config) put_num(root, "img_context_token_id", cfg->img_context_id);
    if (cfg->init_range > 0) put_float(root, "initializer_range", cfg->init_range);
    put_str(root, "ps_version", "v2");
    put_num(root, "select_layer", cfg->select_layer);
    put_str(root, "template", cfg->template_name);
    put_str(root, "torch_dtype", torch_dtype);
    if (cfg->has_system_message) put_str(root, "system_message", cfg->system_message);
    else cJSON_DeleteItemFromObjectCaseSensitive(root, "system_message");
    if (cfg->has_tiling) {
        put_bool(root, "dynamic_image_size", cfg->dynamic_image_size);
        put_bool(root, "use_thumbnail", cfg->use_thumbnail);
        put_num(root, "min_dynamic_patch", cfg->min_dynamic_patch);
        put_num(root, "max_dynamic_patch", cfg->max_dynamic_patch);
    }
    cJSON *lc = section(root, "llm_config"), *vc = section(root, "vision_config");
    put_names(vc, "architectures", "InternVisionModel");
    put_str(vc, "model_type", "intern_vit_6b");
    put_str(vc, "hidden_act", "gelu");
    put_str(vc, "torch_dtype", torch_dtype);
    put_float(vc, "drop_path_rate", v->drop_path_rate);
    put_num(vc, "hidden_size", v->hidden);
    put_num(vc, "image_size", v->image_size);
    put_num(vc, "intermediate_size", v->intermediate);
    put_float(vc, "layer_norm_eps", v->eps);
    put_str(vc, "norm_type", v->rms_norm ? "rms_norm" : "layer_norm");
    put_num(vc, "num_attention_heads", v->heads);
    put_num(vc, "num_channels", v->channels);
    put_num(vc, "num_hidden_layers", v->layers);
    put_num(vc, "patch_size", v->patch);
    put_bool(vc, "qk_normalization", v->qk_norm);
    put_bool(vc, "qkv_bias", v->qkv_bias);
    put_names(lc, "architectures", llm_arch_name(l->arch));
    put_str(lc, "model_type", llm_model_types[l->arch]);
    put_str(lc, "hidden_act", "silu");
    put_str(lc, "torch_dtype", torch_dtype);
    put_num(lc, "hidden_size", l->hidden);
    put_num(lc, "intermediate_size", l->intermediate);
    put_num(lc, "max_position_embeddings", l->max_positions);
    put_num(lc, "num_attention_heads", l->heads);
    put_num(lc, "num_hidden_layers", l->layers);
    put_num(lc, "num_key_value_heads", l->kv_heads);
    put_float(lc, "rms_norm_eps", l->rms_eps);
    put_float(lc, "rope_theta", l->rope_theta);
    put_num(lc, "vocab_size", l->vocab);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    size_t n = strlen(text);
    text = xrealloc(text, n + 2);
    text[n] = '\n';
    text[n + 1] = 0;
    int rc = fs_write_atomic(path, text, n + 1);
    free(text);
    return rc;
}

int config_adopt_img_context(ModelConfig *cfg, int ctx_id) {
    MMRM_REQUIRE(ctx_id >= 0, "the tokenizer has no <IMG_CONTEXT> token");
    MMRM_REQUIRE(ctx_id < cfg->llm.vocab, "the tokenizer's <IMG_CONTEXT> id %d is outside the "
                 "model's vocabulary (%d)", ctx_id, cfg->llm.vocab);
    if (!cfg->img_context_from_config) {
        cfg->img_context_id = ctx_id;
        cfg->img_context_from_config = 1;
    }
    MMRM_REQUIRE(ctx_id == cfg->img_context_id, "the tokenizer's <IMG_CONTEXT> id %d differs "
                 "from the model's img_context_token_id %d", ctx_id, cfg->img_context_id);
    return 0;
}
