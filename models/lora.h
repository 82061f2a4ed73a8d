/* lora.h - LoRA adapters on the reward model's linear layers, in PEFT's layout.
 *
 * A targeted linear y = x W^T + b becomes y = x W^T + b + (alpha/r) * dropout(x) A^T B^T
 * with A (r, in) and B (out, r) extra parameters (group PG_LORA) named after the module
 * they adapt: "<module>.lora_A.weight" / ".lora_B.weight", e.g.
 * language_model.model.layers.0.self_attn.q_proj.lora_A.weight. Init as PEFT: A
 * Kaiming-uniform (a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))), B zero, so an untrained
 * adapter leaves the model unchanged. The adapter is built from op_linear, op_channel_scale,
 * op_add and op_drop_path (one element per "sample", i.e. inverted dropout drawn from the
 * graph's dropout stream), so every backend gets it through its op table and a resumed
 * run draws the same masks.
 *
 * Targets are PEFT target_modules names, matched like PEFT (the module path equals the name
 * or ends with "." + name) against the model's linear layers:
 *   Qwen2/Llama LLM: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj
 *   InternLM2 LLM:   wqkv wo w1 w2 w3 (w1 gate, w3 up, w2 down; wqkv the packed q/k/v)
 *   ViT:             qkv proj fc1 fc2        connector: mlp1.1 mlp1.3
 * None given: every linear of the LLM.
 *
 * Files: adapter_config.json (peft_type LORA, task_type SEQ_CLS, modules_to_save ["score"])
 * and adapter_model.safetensors holding base_model.model.<module>.lora_A.weight,
 * .lora_B.weight and base_model.model.score.weight, the names peft's save_pretrained
 * writes for the whole InternVL model wrapped by get_peft_model.
 */
#ifndef MMRM_LORA_H
#define MMRM_LORA_H

#include <stdint.h>

#define LORA_MAX_TARGETS 24
#define LORA_NAME_LEN 32

typedef struct LoraConfig {
    int r;           /* rank; 0: no adapters */
    double alpha;    /* lora_alpha: the update is scaled by alpha / r */
    double dropout;  /* lora_dropout on the adapter's input while training */
    int n_targets;   /* 0: every linear of the LLM */
    char targets[LORA_MAX_TARGETS][LORA_NAME_LEN];
} LoraConfig;

struct RewardModel;
struct ModelConfig;
struct Graph;
struct Tensor;

/* 1 when name is a target module name of some model family above */
int lora_known_target(const char *name);
/* 0 when every target of lc names a linear layer of cfg's model; else -1 with an error
 * naming the target and the names this model has (what: where the config came from) */
int lora_check(const LoraConfig *lc, const struct ModelConfig *cfg, const char *what);

/* rm_create's part (m->lora set): declares A and B for each targeted weight among the
 * parameters declared so far, before params_finalize, and fills m->lora_of */
void lora_declare(struct RewardModel *m);
/* A Kaiming-uniform (a stream of seed per adapter, in module order), B zero: host
 * parameters */
void lora_init(struct RewardModel *m, uint64_t seed);
/* number of adapted linear layers */
int lora_count(const struct RewardModel *m);
/* 1 when some weight of parameter group g (a ParamGroup) has an adapter */
int lora_adapts_group(const struct RewardModel *m, int g);

/* A model on base's frozen weights (base has adapters; its base groups frozen): m gets its
 * own adapters for the same modules (lora_init with seed, or adapter's weights when adapter
 * is not NULL) and its own score head (base's current one copied, or with init_score the
 * spec's init from seed), all trainable, in a store of their own on the CPU; the base
 * weights are base's tensors, not copied. base must outlive m. 0, or -1 with an error. */
int lora_create_shared(struct RewardModel *m, const struct RewardModel *base, uint64_t seed,
                       int init_score, const char *adapter);

/* 1 when the weight w (a parameter of m's base store) has an adapter: the decoder then keeps
 * that layer's q/k/v or gate/up GEMMs separate rather than fused */
int lora_has(const struct RewardModel *m, const struct Tensor *w);
/* y = x w^T + b, plus the adapter of w when it has one */
struct Tensor *lora_linear(struct Graph *g, struct RewardModel *m, struct Tensor *x,
                           struct Tensor *w, struct Tensor *b);

/* Reads DIR/adapter_config.json into lc. 0, or -1 naming the file and field. */
int lora_read_config(const char *dir, LoraConfig *lc);
/* Reads DIR/adapter_model.safetensors into m's adapters (every one must be there) and its
 * score.weight when present (PEFT's modules_to_save); m on the host. An adapter peft made
 * on the language model alone (base_model.model.model.layers..., e.g. on
 * Qwen2ForSequenceClassification) is read too. 0 or -1. */
int lora_load_weights(struct RewardModel *m, const char *dir);
/* Writes adapter_config.json and adapter_model.safetensors (adapters + score.weight, F32)
 * into dir (created), each atomically; base: base_model_name_or_path. 0 or -1. */
int lora_save(const struct RewardModel *m, const char *dir, const char *base);
/* W += (alpha/r) B A for every adapter, on the host, then B = 0 (the adapters become a
 * no-op): the merged weights score as base + adapter did. */
void lora_merge(struct RewardModel *m);

#endif
