/* checkpoint.h - reward model directories in the HF layout: config.json, model.safetensors
 * (or shards + model.safetensors.index.json) with the exact HF tensor names, and the
 * tokenizer file.
 *
 * Loading converts f32/bf16/f16 on disk to the f32 parameters; a missing score.weight is
 * initialised as the spec says and reported; any other missing tensor or a wrong shape is
 * an error; tensors the reward model does not use (the LM head, ...) are ignored and
 * counted. When the run image size (force_image_size) differs from the checkpoint's, the
 * position embedding grid is resized with PyTorch's bicubic (A = -0.75,
 * align_corners=False) in fp32, as InternVL's fine-tuning does, and the saved config
 * records the new size.
 */
#ifndef MMRM_CHECKPOINT_H
#define MMRM_CHECKPOINT_H

#include "models/reward_model.h"

typedef struct LoadReport {
    int n_loaded;           /* parameters read from the files */
    int n_ignored;          /* tensors in the files that the model does not use */
    int score_initialised;  /* score.weight was absent and got the spec's init */
    int pos_resized_from;   /* old grid side when the position embedding was resized, else 0 */
    char disk_dtype[16];    /* dtype of the stored parameters ("F32", "BF16", "F16", ...; "mixed") */
} LoadReport;

/* Creates m from DIR (config.json + weights) on device d with the given frozen groups.
 * 0, or -1 with mmrm_last_error() naming the file and tensor; m is untouched on error. */
int rm_load(RewardModel *m, const char *dir, Device d, const int freeze[PG_COUNT], uint64_t seed,
            LoadReport *report);
/* the same with run options: force_image_size > 0 sets the run image size (the position
 * embedding is resized), drop_path_rate >= 0 replaces the config's; LoRA (models/lora.h):
 * lora (r > 0) adds fresh adapters (lora_init), adapter (a directory in PEFT's layout) adds
 * the adapters of its adapter_config.json with its weights and its score.weight; NULL: none */
int rm_load_ex(RewardModel *m, const char *dir, Device d, const int freeze[PG_COUNT],
               uint64_t seed, int force_image_size, double drop_path_rate, const LoraConfig *lora,
               const char *adapter, LoadReport *report);
/* Writes config.json and the weights (dtype "F32" or "BF16") into dir (created if needed),
 * every file atomically; LoRA adapters are not part of it (lora_save). 0 or -1. */
int rm_save(const RewardModel *m, const char *dir, const char *dtype);

#endif
