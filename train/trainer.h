/* trainer.h - the training loop: standard (Bradley-Terry) and shortcut-aware objectives,
 * gradient accumulation, AdamW with schedule and clipping, non-finite step skipping,
 * periodic evaluation, metrics, checkpoints and exact resume.
 *
 * One step: for each of accum micro-batches (P pairs each, from the batch loader), the main
 * model scores chosen and rejected rows (the ViT runs once per pair image); with
 * shortcut_aware the bias model scores the same rows shown the blank image (its ViT
 * features computed once per run when its ViT is frozen); the loss of the micro-batch is
 * backpropagated with weight P_micro / P_step so the accumulated gradient is that of one
 * big batch. Then both models' gradients are clipped together and AdamW steps.
 *
 * Checkpoints: output_dir/checkpoint-STEP/ with config.json, model.safetensors,
 * mmrm_tokenizer.json, optimizer.safetensors, trainer_state.json and, for shortcut_aware,
 * bias/ (config, weights, optimizer). Each is written into a hidden temporary directory
 * that is renamed into place only when complete; trainer_state.json marks a complete one.
 * A resumed run reproduces the uninterrupted run bitwise on the CPU.
 *
 * Data parallelism (comm with world R > 1): each rank reads its disjoint share of every
 * global batch (P pairs of the P x R the step takes, models/batch.h), the gradients are
 * averaged across ranks in buckets during the last micro-batch's backward
 * (runtime/gradsync.h: on GPUs with NCCL on a second stream, overlapped with the rest of
 * backward), the non-finite flag and the logged sums are reduced, so every rank
 * takes the identical optimizer step; rank 0 alone logs, evaluates' prints and writes
 * checkpoints (the others wait at a barrier), and every rank resumes from the same one.
 * zero_stage = 1 shards the AdamW moments: gradients are reduce-scattered, each rank updates
 * its slice of the flat parameters and the slices are all-gathered (train/optim.h);
 * checkpoints hold the gathered moments, so a run may resume on another number of ranks.
 */
#ifndef MMRM_TRAINER_H
#define MMRM_TRAINER_H

#include <stdint.h>

#include "runtime/comm.h"
#include "train/optim.h"

typedef enum { ALGO_STANDARD, ALGO_SHORTCUT_AWARE } Algorithm;

typedef struct TrainerOptions {
    Algorithm algorithm;
    const char *model_path;        /* model directory, or NULL with init_config */
    const char *init_config;       /* HF config.json for a random init */
    const char *tokenizer_path;    /* folder with TOKENIZER_FILE for init_config; NULL: byte */
    const char *bias_model_path;   /* shortcut_aware */
    const char *init_bias_config;
    const char *const *datasets;
    int n_datasets;
    const char *image_root;        /* NULL: each file's folder */
    const char *const *eval_datasets; /* none: no evaluation */
    int n_eval_datasets;
    const char *output_dir;
    int freeze_vision, freeze_connector, freeze_llm;
    int grad_checkpoint;
    double drop_path_rate;         /* < 0: the model config's */
    int max_dynamic_patch, min_dynamic_patch, dynamic_image_size, use_thumbnail;
    int force_image_size;          /* 0: the model's */
    const char *template_name;     /* NULL: the model config's */
    int max_length;
    double num_train_epochs;
    long max_steps;                /* > 0 overrides epochs */
    int pairs_per_device, accum;
    AdamW opt;                     /* lr, betas, eps, weight decay, clipping, schedule */
    double warmup_ratio;           /* used when opt.warmup_steps is 0 */
    int logging_steps, save_steps, save_total_limit;
    int eval_steps;                /* 0: evaluate at the end only */
    uint64_t seed;
    int on_bad_fail;
    int num_workers;
    int resume, overwrite_output_dir;
    double shortcut_eps;
    int save_bias_model;
    const char *save_dtype;        /* "F32" (exact resume) or "BF16" */
    long stop_after_steps;         /* > 0: exit after this many steps (tests of interruption) */
    const Comm *comm;              /* data parallelism: NULL or world 1 = one process */
    int zero_stage;                /* 1: AdamW moments sharded across ranks (ZeRO-1) */
    double grad_bucket_mb;         /* all-reduce bucket size (runtime/gradsync.h); 0: one per model */
    int overlap_grad_reduce;       /* -1 auto (on with NCCL), 0 off, 1 on */
    Device device;                 /* DEV_CPU (default) or DEV_CUDA, already resolved */
    int bf16;                      /* precision = bf16 on CUDA: the GEMMs read a bf16 copy of the
                                    * weights that the fused AdamW kernel rewrites (memory.h),
                                    * and activations are stored in bf16 (autograd.h) */
    int quiet;
} TrainerOptions;

void trainer_options_default(TrainerOptions *o);
/* Runs the whole training; 0 on success, 1 on failure (message printed). */
int train_run(const TrainerOptions *o);

#endif
