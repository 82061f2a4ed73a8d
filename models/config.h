/* config.h - the model configuration, read from an HF InternVL-layout config.json.
 *
 * Fields keep HF's names in comments. The run image size is force_image_size when set,
 * else vision_config.image_size; when the two differ the position embedding is resized at
 * load time (models/reward_model.c), as InternVL's fine-tuning does.
 * Unknown keys are ignored (real HF configs carry many); missing required keys, wrong
 * types, unknown architectures and inconsistent shapes are errors naming the field.
 * Unknown keys are also kept: config_load records the whole file (ModelConfig.source) and
 * config_save writes it back with mmrm's values in the keys it models, so a published
 * InternVL2 config.json (auto_map, model_type, llm_config's own auto_map and generation
 * fields, use_backbone_lora, ...) keeps every key through load -> save.
 */
#ifndef MMRM_CONFIG_H
#define MMRM_CONFIG_H

#include <stddef.h>

typedef enum { LLM_QWEN2 = 0, LLM_INTERNLM2, LLM_LLAMA } LlmArch;

typedef struct VisionConfig {
    int hidden;        /* hidden_size C */
    int heads;         /* num_attention_heads */
    int intermediate;  /* intermediate_size */
    int layers;        /* num_hidden_layers */
    int image_size;    /* image_size of the checkpoint's position embedding */
    int patch;         /* patch_size */
    int channels;      /* num_channels (3) */
    int qkv_bias;
    int qk_norm;       /* qk_normalization */
    int rms_norm;      /* norm_type == "rms_norm" (else layer_norm) */
    double eps;        /* layer_norm_eps */
    double drop_path_rate;
} VisionConfig;

typedef struct LlmConfig {
    LlmArch arch;      /* architectures[0] */
    int hidden, heads, kv_heads, head_dim, intermediate, layers, vocab;
    double rope_theta, rms_eps;
    int max_positions; /* max_position_embeddings */
} LlmConfig;

#define CONFIG_MAX_SYSTEM_MESSAGE 1023 /* bytes */
#define CONFIG_MAX_SOURCE 32767 /* bytes of compact JSON; published InternVL2 configs take ~2.5k */

typedef struct ModelConfig {
    VisionConfig vision;
    LlmConfig llm;
    int image_size;        /* run size: force_image_size or vision.image_size */
    int select_layer;      /* -1 = last ViT layer; index into the L+1 hidden states */
    double downsample_ratio; /* 0.5 */
    char template_name[32];
    int img_context_id;    /* id of <IMG_CONTEXT> (img_context_token_id, default byte vocab) */
    int img_context_from_config; /* img_context_token_id was in config.json; else the
                                  * tokenizer's id is adopted (config_adopt_img_context) */
    double init_range;     /* initializer_range: std of the random init of weight matrices
                            * (HF's key; 0.02 when absent; 0 in a struct = 0.02) */
    /* image tiling of InternVL's config.json (dynamic_image_size, use_thumbnail,
     * min_dynamic_patch, max_dynamic_patch): how this model's images are cut at inference.
     * config_load fills them (InternVL2's 1/1/1/6 when absent) and sets has_tiling; the
     * trainer records its own settings in the checkpoint it saves. has_tiling 0 (a config
     * built in code): scoring uses InternVL2's defaults. */
    int has_tiling;
    int dynamic_image_size, use_thumbnail, min_dynamic_patch, max_dynamic_patch;
    int has_system_message; /* "system_message" present (an mmrm key; HF configs keep unknown
                             * keys as attributes): it replaces the template's system prompt */
    char system_message[CONFIG_MAX_SYSTEM_MESSAGE + 1];
    /* the config.json it was read from as compact JSON; "" for a config built in code */
    char source[CONFIG_MAX_SOURCE + 1];
} ModelConfig;

/* the system message the chat template should use: NULL for the template's own */
static inline const char *config_system_message(const ModelConfig *cfg) {
    return cfg->has_system_message ? cfg->system_message : NULL;
}

/* 0, or -1 with mmrm_last_error() naming the file and field */
int config_load(const char *path, ModelConfig *cfg);
/* The tokenizer's <IMG_CONTEXT> id (ctx_id) and cfg's: a config.json without
 * img_context_token_id (published InternVL2 configs have none: InternVL's code takes the id
 * from the tokenizer) adopts ctx_id; one with it must agree. 0, or -1 with an error. */
int config_adopt_img_context(ModelConfig *cfg, int ctx_id);
/* writes cfg as config.json (atomically): cfg->source's keys, mmrm's values replacing those
 * it models, plus the keys HF's loaders look for (architectures and model_type at each level,
 * hidden_act) and torch_dtype ("float32", "bfloat16": the dtype of the weights beside it,
 * at each level as save_pretrained writes it); 0 or -1 */
int config_save(const ModelConfig *cfg, const char *path, const char *torch_dtype);
int config_validate(const ModelConfig *cfg, const char *path);

const char *llm_arch_name(LlmArch a);
int config_grid(const ModelConfig *cfg);          /* G = image_size / patch */
int config_tokens_per_tile(const ModelConfig *cfg); /* (G * r)^2 */

#endif
