/* trainer.h - the training loop: standard (Bradley-Terry) and shortcut-aware objectives,
 * gradient accumulation, AdamW with schedule and clipping, non-finite step skipping,
 * periodic evaluation, metrics, checkpoints and exact resume.
 *
 * One step: for each of gradient_accumulation_steps micro-batches (P =
 * per_device_train_batch_size pairs each, from the batch loader), the main model scores
 * chosen and rejected rows (the ViT runs once per pair image); with shortcut_aware the bias
 * model scores the same rows shown the blank image (its ViT features computed once per run
 * when its ViT is frozen); the loss of the micro-batch is backpropagated with weight
 * P_micro / P_step so the accumulated gradient is that of one big batch. Then both models'
 * gradients are clipped together and AdamW steps.
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

#include "runtime/comm.h"
#include "runtime/tensor.h"
#include "train/train_config.h"

/* What a run needs besides its configuration: none of it is an INI key. Zero-initialised,
 * it is one process on the CPU in fp32, logging. */
typedef struct TrainRuntime {
    const Comm *comm;       /* data parallelism: NULL or world 1 = one process */
    Device device;          /* resolved from the `device` key (cmd_train) */
    int bf16;               /* `precision` resolved against the device: bf16 on CUDA, the GEMMs
                             * read a bf16 copy of the weights that the fused AdamW kernel
                             * rewrites (memory.h), and activations are stored in bf16
                             * (autograd.h) */
    int quiet;              /* no log lines */
    long stop_after_steps;  /* > 0: exit after this many steps (tests of interruption) */
} TrainRuntime;

/* Runs the whole training of c (as train_config_load left it); 0 on success, 1 on failure
 * (message printed). */
int train_run(const TrainConfig *c, const TrainRuntime *rt);

/* `mmrm train CONFIG.ini [key=value ...]` (train/cmd_train.c): exit status */
int cmd_train(int argc, char **argv);

#endif
