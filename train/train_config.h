/* train_config.h - the configuration of `mmrm train CONFIG.ini [key=value ...]`: an INI file
 * (read with inih) whose keys are the reference's own names (its configs/train_*_8B.yaml and
 * arguments.py, HF TrainingArguments), command-line overrides, validation, and the resolved
 * configuration printed at start and saved in output_dir.
 *
 * File. `key = value` lines, either before any section or in a [train] section (both may appear;
 * any other section is an error). `#` or `;` starts a comment line; ` ;` starts an inline
 * comment. A value in matching quotes ("..." or '...') loses them, so the reference's YAML
 * values translate one to one. A key set twice in the file is an error (a pasted duplicate
 * would otherwise decide silently); on the command line the later override wins, and every
 * override replaces the file's value. Keys take one line of any length; an indented line
 * after a key is an error (inih would read it as a continuation of that value). Relative
 * paths are kept as written: they resolve against the working directory, as the reference's
 * scripts do. Reference-only keys (bf16, deepspeed, gradient_checkpointing, ...)
 * are errors that name the mmrm equivalent or say that the line can go.
 *
 * Values. Booleans: true/false, 1/0, yes/no (any case). Enums: the names below, in any case
 * (conv_style: exactly as written). Numbers must be finite and in range; integers are
 * decimal. dataset_path and eval_dataset_path take one file or several, comma-separated (read
 * in order; a path cannot hold a comma). An empty string (`key =`) means unset. Errors come
 * one at a time, the first in file order, as "CONFIG.ini:LINE: ..." or "override 'k=v': ..."
 * naming the key and, for a mistyped key or enum value, the nearest valid name by edit
 * distance (or the list of valid ones).
 *
 * Required: model_name_or_path or init_model_config; dataset_path; output_dir; with
 * algorithm = shortcut_aware also bias_model_path or init_bias_model_config. A model path
 * wins over an init config (the init config builds a randomly initialised model for
 * from-scratch runs). Also checked: min_dynamic_patch <= max_dynamic_patch.
 *
 * Defaults: the paper's reference recipe (spec/algorithm.md) where it gives a value, else the
 * reference configs (yaml), else its arguments.py, else HF TrainingArguments, else mmrm's.
 *
 * | key                         | values                                   | default  | from |
 * |-----------------------------|------------------------------------------|----------|------|
 * | model_name_or_path          | HF model directory                       | unset    | req* |
 * | init_model_config           | HF config.json: random init              | unset    | req* |
 * | algorithm                   | standard, shortcut_aware                 | standard | mmrm |
 * | bias_model_path             | HF model directory of the text-only RM   | unset    | req**|
 * | init_bias_model_config      | HF config.json: random bias init         | unset    | req**|
 * | tokenizer_path              | dir with mmrm_tokenizer.json (init only) | unset    | mmrm |
 * | freeze_llm                  | bool (the LLM decoder)                   | false    | spec |
 * | freeze_backbone             | bool (the ViT)                           | true     | spec |
 * | freeze_mlp                  | bool (the mlp1 connector)                | false    | spec |
 * | grad_checkpoint             | bool (recompute activations in backward) | true     | spec |
 * | share_prefix                | bool (a pair's prefix computed once)     | true     | mmrm |
 * | packing                     | bool (rows packed, no padding)           | true     | mmrm |
 * | drop_path_rate              | [0, 1) ViT stochastic depth              | 0.1      | spec |
 * | lora_r                      | [0, 65536] rank, 0: full fine-tuning     | 0        | PEFT |
 * | lora_alpha                  | (0, 1e6], updates scaled by alpha / r    | 16       | mmrm |
 * | lora_dropout                | [0, 1) on the adapters' input            | 0        | PEFT |
 * | lora_target_modules         | PEFT module names, comma-separated       | LLM's    | mmrm |
 * | precision                   | auto (fp32 on CPU, bf16 on CUDA), fp32, bf16 | auto | spec |
 * | device                      | auto, cpu, cuda                          | auto     | mmrm |
 * | attention_impl              | auto, mmrm, cudnn (bf16 on a GPU)        | auto     | mmrm |
 * | cuda_graphs                 | bool (GPU: each micro-batch a CUDA graph) | false   | mmrm |
 * | dataset_path                | JSONL file(s), comma-separated           | unset    | req  |
 * | eval_dataset_path           | JSONL file(s), comma-separated           | unset    | mmrm |
 * | image_root                  | folder for relative img_path values      | unset    | mmrm |
 * | conv_style                  | internlm2-chat, Hermes-2                 | unset    | mmrm |
 * | max_length                  | [1, 2^20] tokens per sequence            | 4096     | spec |
 * | t_bucket                    | [0, 2^20] padded T rounded up to a multiple (0: 64 on CUDA without lora_dropout, else 1) | 0 | mmrm |
 * | dynamic_image_size          | bool (InternVL dynamic tiling)           | true     | yaml |
 * | min_dynamic_patch           | [1, 64] tiles                            | 1        | args |
 * | max_dynamic_patch           | [1, 64] tiles, thumbnail excluded        | 6        | spec |
 * | use_thumbnail               | bool                                     | true     | spec |
 * | force_image_size            | 0 (the checkpoint's) or tile pixels      | 0        | mmrm |
 * | on_bad_record               | skip, fail                               | skip     | mmrm |
 * | num_workers                 | [0, 64] batch prefetch threads           | 2        | mmrm |
 * | num_train_epochs            | (0, 1e6], fractional allowed             | 1        | spec |
 * | max_steps                   | -1 (from epochs) or >= 1                 | -1       | HF   |
 * | per_device_train_batch_size | [1, 65536] pairs per rank and micro-step | 4        | spec |
 * | max_tokens_per_batch        | [0, 2^30] tokens per chunk of pairs, 0: off | 0   | mmrm |
 * | gradient_accumulation_steps | [1, 65536] micro-steps per step          | 2        | spec |
 * | learning_rate               | [0, 1], the peak                         | 1e-5     | spec |
 * | lr_scheduler_type           | cosine, linear, constant, constant_with_warmup | cosine | spec |
 * | warmup_ratio                | [0, 1] of the steps                      | 0.1      | spec |
 * | warmup_steps                | >= 0; > 0 overrides warmup_ratio         | 0        | HF   |
 * | weight_decay                | >= 0 (AdamW, decoupled)                  | 0.05     | spec |
 * | adam_beta1                  | [0, 1)                                   | 0.9      | HF   |
 * | adam_beta2                  | [0, 1)                                   | 0.98     | spec |
 * | adam_epsilon                | (0, 1]                                   | 1e-8     | HF   |
 * | max_grad_norm               | >= 0 (0: no clipping)                    | 1        | HF   |
 * | shortcut_eps                | (0, 1], eps of the shortcut weight w     | 1e-7     | spec |
 * | seed                        | >= 0                                     | 42       | HF   |
 * | zero_stage                  | 0, 1 (1: shard the AdamW state)          | 0        | mmrm |
 * | grad_bucket_mb              | [0, 1e6] MiB per all-reduce bucket (0: one per model) | 25 | mmrm |
 * | overlap_grad_reduce         | auto, true, false (auto: on with NCCL)   | auto     | mmrm |
 * | output_dir                  | folder for checkpoints and the model     | unset    | req  |
 * | overwrite_output_dir        | bool: start over where output_dir has a run | false | HF   |
 * | resume                      | bool: continue from the newest checkpoint | true    | mmrm |
 * | logging_steps               | >= 1 steps between log lines             | 10       | yaml |
 * | save_steps                  | >= 0 steps between checkpoints (0: final only) | 100 | spec |
 * | save_total_limit            | >= 0 checkpoints kept (0: all)           | 10       | yaml |
 * | save_bias_model             | bool: shortcut_aware saves the bias RM too | true   | mmrm |
 * | eval_steps                  | >= 0 steps between evaluations (0: at the end) | 0  | mmrm |
 * | report_to                   | none, tensorboard (event files in output_dir/runs) | tensorboard | HF* |
 * req: required; req*: one of the two; req**: one of the two with algorithm = shortcut_aware.
 * HF*: HF's key and value names (HF's default reports to every installed integration; the
 * reference's configs say tensorboard, which is mmrm's default).
 * Unset image_root: relative img_path values resolve against the JSONL file's folder. Unset
 * conv_style: the model config's template. overwrite_output_dir = true starts over even where
 * output_dir holds a run (resume is then ignored); resume = true continues from output_dir's
 * newest checkpoint when there is one.
 * from: spec = spec/algorithm.md, yaml = the reference's configs, args = its arguments.py,
 * HF = TrainingArguments, mmrm = ours.
 *
 * Steps are optimizer steps (one per gradient_accumulation_steps micro-steps); with max_steps =
 * -1 the run has ceil(num_train_epochs x steps per epoch) of them.
 *
 * TrainConfig is the one set of training options: the key table of train_config.c fills it
 * (that table holds every default) and the trainer (train/trainer.h) takes it as loaded.
 */
#ifndef MMRM_TRAIN_CONFIG_H
#define MMRM_TRAIN_CONFIG_H

#include <stdio.h>

#include "models/records.h"
#include "train/optim.h"

/* The enum keys; each value's name in the file is the table's (train_config.c). */
typedef enum { TRAIN_STANDARD = 0, TRAIN_SHORTCUT_AWARE } TrainAlgorithm;
typedef enum { TRAIN_DEVICE_AUTO = 0, TRAIN_DEVICE_CPU, TRAIN_DEVICE_CUDA } TrainDevice;
typedef enum { PRECISION_AUTO = 0, PRECISION_FP32, PRECISION_BF16 } TrainPrecision;
typedef enum { OVERLAP_AUTO = 0, OVERLAP_TRUE, OVERLAP_FALSE } TrainOverlap;
typedef enum { REPORT_NONE = 0, REPORT_TENSORBOARD } TrainReportTo;

/* Every string is non-NULL after a successful load; "" means unset. */
typedef struct TrainConfig {
    /* model */
    char *model_name_or_path;
    char *init_model_config;
    TrainAlgorithm algorithm;
    char *bias_model_path;
    char *init_bias_model_config;
    char *tokenizer_path;
    int freeze_llm, freeze_backbone, freeze_mlp;
    int grad_checkpoint;
    int share_prefix, packing; /* RewardModel.share_prefix, .packing */
    double drop_path_rate;
    int lora_r;                 /* 0: off; else the base is frozen (models/lora.h) */
    double lora_alpha, lora_dropout;
    char **lora_target_modules; /* (n_lora_target_modules,); 0 of them: every LLM linear */
    int n_lora_target_modules;
    TrainPrecision precision;
    TrainDevice device;
    int attention_impl;         /* an AttentionImpl (kernels/kernels.h) */
    int cuda_graphs;            /* GPU: micro-batches captured as CUDA graphs and replayed */
    /* data */
    char **dataset_paths;       /* (n_dataset_paths,) in the order given */
    int n_dataset_paths;
    char **eval_dataset_paths;  /* (n_eval_dataset_paths,); 0 of them: no evaluation */
    int n_eval_dataset_paths;
    char *image_root;
    char *conv_style;           /* a template_parse name, or "": the model config's */
    int max_length;
    int t_bucket;               /* 0: 64 on CUDA (GEMM plans reused across batches) unless
                                 * lora_dropout draws element-wise masks over (B, T, C); else 1 */
    int dynamic_image_size;
    int min_dynamic_patch, max_dynamic_patch;
    int use_thumbnail;
    int force_image_size;       /* 0: the checkpoint's image size */
    RecOnBad on_bad_record;
    int num_workers;
    /* optimisation */
    double num_train_epochs;
    long long max_steps;        /* -1: from num_train_epochs */
    int per_device_train_batch_size;
    int max_tokens_per_batch;   /* 0: off; else micro-batches run in chunks of whole pairs
                                 * whose forwards compute at most this many tokens (step.c) */
    int gradient_accumulation_steps;
    double learning_rate;
    SchedKind lr_scheduler_type;  /* train/optim.h */
    double warmup_ratio;
    long long warmup_steps;     /* > 0 overrides warmup_ratio */
    double weight_decay;
    double adam_beta1, adam_beta2, adam_epsilon;
    double max_grad_norm;       /* 0: no clipping */
    double shortcut_eps;
    long long seed;
    int zero_stage;
    double grad_bucket_mb;      /* data parallel: all-reduce bucket size */
    TrainOverlap overlap_grad_reduce;
    /* run */
    char *output_dir;
    int overwrite_output_dir;
    int resume;
    int logging_steps;
    int save_steps;             /* 0: only the final save */
    int save_total_limit;       /* 0: keep every checkpoint */
    int save_bias_model;
    int eval_steps;             /* 0: evaluate at the end only */
    TrainReportTo report_to;
} TrainConfig;

/* Defaults, then the file at path (NULL: none, the overrides alone), then each "key=value"
 * override in order, then the checks above. 0, or -1 with mmrm_last_error() and c left
 * holding no memory. */
int train_config_load(TrainConfig *c, const char *path, int n_overrides,
                      char *const *overrides);

/* Writes every key, defaults included, as an INI file that loads back to the same struct
 * (atomically: temp file, fsync, rename). 0, or -1 with mmrm_last_error(). */
int train_config_save(const TrainConfig *c, const char *path);

/* "key = value", one per line, every key in the fixed order of the table above. */
void train_config_print(const TrainConfig *c, FILE *f);

/* Releases the strings and lists; c may be loaded again afterwards. */
void train_config_free(TrainConfig *c);

/* the names used in the file: "standard", "shortcut_aware"; "auto", "cpu", "cuda" (the
 * spelling device_resolve takes) */
const char *train_algorithm_name(TrainAlgorithm a);
const char *train_device_name(TrainDevice d);
/* "auto", "mmrm", "cudnn" (what device_set_attention_impl takes) */
const char *train_attention_impl_name(int impl);

#endif
