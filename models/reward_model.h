/* reward_model.h - the InternVL2-style multimodal reward model on the runtime.
 *
 * Parameters carry the exact HF tensor names (spec/model.md) and live in one ParamStore
 * (groups: vision = vision_model.*, connector = mlp1.*, llm = language_model.*,
 * head = score.weight). The forward is written once on the autograd ops:
 *   ViT once per image (tiles) -> pixel shuffle + mlp1 -> spliced into the token
 *   embeddings at IMG_CONTEXT positions -> decoder -> final RMSNorm at each sequence's
 *   last real token -> score.weight -> one reward per sequence.
 * Sequences reference images by index, so chosen and rejected of a pair share one ViT
 * pass and their gradients flow back into it once.
 */
#ifndef MMRM_REWARD_MODEL_H
#define MMRM_REWARD_MODEL_H

#include "models/config.h"
#include "models/lora.h"
#include "runtime/autograd.h"
#include "runtime/memory.h"

typedef struct VitLayer {
    Tensor *norm1_w, *norm1_b, *norm2_w, *norm2_b, *ls1, *ls2;
    Tensor *qkv_w, *qkv_b, *q_norm, *k_norm, *proj_w, *proj_b;
    Tensor *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} VitLayer;

typedef struct LlmLayer {
    Tensor *attn_norm, *ffn_norm;
    Tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b; /* Qwen2 / Llama */
    Tensor *wqkv;                              /* InternLM2, packed by kv group */
    Tensor *o_w, *gate_w, *up_w, *down_w;
} LlmLayer;

typedef struct RewardModel {
    ModelConfig cfg;
    ParamStore ps;
    Tensor *patch_w, *patch_b, *cls, *pos;
    VitLayer *vit;
    Tensor *mlp_ln_w, *mlp_ln_b, *mlp_fc1_w, *mlp_fc1_b, *mlp_fc2_w, *mlp_fc2_b;
    Tensor *embed;
    LlmLayer *llm;
    Tensor *final_norm, *score;
    int grad_checkpoint; /* each ViT and decoder layer is a recompute segment */
    /* 0 (default): the decoder runs q/k/v and gate/up as one GEMM each over their adjacent
     * weights (fused_linear); 1: one GEMM per HF module, the same results within fp32
     * rounding (what the tests compare against) */
    int unfused;
    /* rm_forward's layout (the same rewards with less work; rm_hidden_states ignores it).
     * share_prefix: consecutive rows showing the same image (image_of, -1 included) are one
     * group; its rows' longest common token prefix (kept short of every row's last token) is
     * computed once, each row's rest is a branch that sees the prefix and itself (positions
     * continue from the prefix, the reward is read at the row's own last token). packing:
     * all the (group) rows as one token stream without padding. Both use the attention op's
     * segment mask (kernels/op_list.h); on a device whose attention lacks it (CUDA for now)
     * rm_forward computes the padded rows and logs that once. */
    int share_prefix, packing;
    /* with share_prefix or packing: the compact rows' length (the packed stream's, or the
     * groups' longest) rounded up to a multiple of t_bucket (0 or 1: not rounded), so that
     * the GEMM shapes repeat across batches (a GPU reuses its plans and CUDA graphs). The
     * packed stream's tail is a doc of its own (it sees only itself), rows past a group's
     * length are padding; no reward is read there, so nothing else changes */
    int t_bucket;
    LoraConfig lora;     /* lora.r 0: no adapters */
    int *lora_of;        /* (n of the base's store) index in ps of the lora_A adapting base
                          * parameter i (its lora_B follows), else -1; NULL without adapters */
    const struct RewardModel *shared_base; /* NULL, or the model whose frozen base weights
                          * this one uses: ps then holds only its adapters and score head */
} RewardModel;

/* t_bucket's auto value on a GPU (training's and scoring's): batches of one bucket reuse
 * their cuBLASLt plans; the CPU's is 1 */
enum { RM_T_BUCKET_GPU = 64 };

/* n rounded up to a multiple of bucket (0 or 1: n): a batch's padded T, the compact rows */
static inline long rm_bucket_round(long n, int bucket) {
    return bucket > 1 ? (n + bucket - 1) / bucket * bucket : n;
}

/* A batch of sequences and the images they show. Sequence b shows image image_of[b]
 * (-1: none); image i has tiles[i] tiles, stored consecutively in pixels. */
typedef struct RmBatch {
    int B, T;
    const int *ids;       /* (B, T) right padded */
    const int *lengths;   /* (B) real tokens, >= 1 */
    int n_images;
    const int *tiles;     /* (n_images) */
    const float *pixels;  /* (sum tiles, 3, S, S) normalised */
    const int *image_of;  /* (B) */
    /* optional: (sum tiles, tokens_per_tile, 4C) pixel-shuffled ViT features to use instead
     * of running the ViT on pixels (a frozen ViT's constant input, e.g. the blank image);
     * host memory, like pixels */
    const float *vit_cache;
} RmBatch;

/* Declares every parameter of cfg in m->ps (device d); frozen groups as given
 * (freeze[PG_VISION], ...), then lays out the buffers. Values are zero until
 * rm_init_random or a load. */
void rm_create(RewardModel *m, const ModelConfig *cfg, Device d, const int freeze[PG_COUNT]);
/* the same with LoRA adapters (lora->r > 0, models/lora.h; NULL or r 0: none) */
void rm_create_lora(RewardModel *m, const ModelConfig *cfg, Device d, const int freeze[PG_COUNT],
                    const LoraConfig *lora);
void rm_free(RewardModel *m);
/* Moves the parameters (and any gradient/optimizer buffers) to device d. Models are built
 * (rm_create, d = DEV_CPU) and loaded on the CPU, then moved; rm_save copies back itself. */
void rm_to_device(RewardModel *m, Device d);
/* HF-style random init: matrices N(0, 0.02), biases 0, norm weights 1, layer scales 0.1,
 * score.weight N(0, 1/(H+1)) as the spec says; LoRA adapters as lora_init. */
void rm_init_random(RewardModel *m, uint64_t seed);
/* the spec's score head init alone (a checkpoint without score.weight) */
void rm_init_score(RewardModel *m, uint64_t seed);

/* 0, or -1 with mmrm_last_error() saying what is inconsistent (lengths, image indices,
 * token ids, IMG_CONTEXT count vs tiles x tokens_per_tile) */
int rm_check_batch(const RewardModel *m, const RmBatch *batch);
/* rewards (B) for the batch; records the tape when grad is enabled. Fatal on a batch that
 * rm_check_batch rejects: callers validate data before it gets here. */
Tensor *rm_forward(RewardModel *m, Graph *g, const RmBatch *batch);
/* the token rows rm_forward's decoder would compute for the batch (its layout's B x T:
 * after prefix sharing and packing, padding included), on the host without running it */
long rm_forward_tokens(const RewardModel *m, const RmBatch *batch);
/* running totals over every rm_forward of the process: the token rows the decoder computed
 * (padding included) and the real tokens of the batches' rows (a shared prefix counted in
 * every row) */
void rm_tokens_counted(long *computed, long *in_rows);
/* the decoder's last hidden states (B, T, H) after the final norm, at every position (HF's
 * last_hidden_state); rows t >= lengths[b] are padding and undefined. Fatal like rm_forward. */
Tensor *rm_hidden_states(RewardModel *m, Graph *g, const RmBatch *bt);
/* the connector output for a set of tiles: (n_tiles, tokens_per_tile, H) */
Tensor *rm_vision(RewardModel *m, Graph *g, const float *pixels, int n_tiles);
/* its two halves: ViT + CLS drop + pixel shuffle -> (n_tiles, tokens_per_tile, 4C), and
 * mlp1 -> (n_tiles, tokens_per_tile, H) */
Tensor *rm_vit_features(RewardModel *m, Graph *g, const float *pixels, int n_tiles);
Tensor *rm_connector(RewardModel *m, Graph *g, Tensor *features);

/* FLOPs of one forward per text token (LLM, excluding attention) and per 448 tile */
double rm_llm_flops_per_token(const ModelConfig *cfg);
double rm_vit_flops_per_tile(const ModelConfig *cfg);

#endif
