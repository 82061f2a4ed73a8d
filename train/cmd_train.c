/* cmd_train.c - `mmrm train CONFIG.ini [key=value ...]`: reads and validates the
 * configuration, prints it and saves it in output_dir, then runs the trainer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/comm.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "train/train_config.h"
#include "train/trainer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: mmrm train CONFIG.ini [key=value ...]\n"
            "\n"
            "Trains a reward model with the standard (Bradley-Terry) or the shortcut-aware\n"
            "objective. CONFIG.ini uses the reference's key names (see configs/ and the README);\n"
            "key=value arguments override the file. Output: output_dir/checkpoint-STEP/,\n"
            "output_dir/checkpoint-last/ (the final model), metrics.jsonl, train_config.ini.\n"
            "A run whose output_dir holds checkpoints resumes from the newest complete one.\n");
}

static void map(const TrainConfig *c, TrainerOptions *o) {
    trainer_options_default(o);
    o->algorithm = c->algorithm == TRAIN_SHORTCUT_AWARE ? ALGO_SHORTCUT_AWARE : ALGO_STANDARD;
    o->model_path = c->model_name_or_path;
    o->init_config = c->init_model_config;
    o->tokenizer_path = *c->tokenizer_path ? c->tokenizer_path : NULL;
    o->bias_model_path = c->bias_model_path;
    o->init_bias_config = c->init_bias_model_config;
    o->datasets = (const char *const *)c->dataset_paths;
    o->n_datasets = c->n_dataset_paths;
    o->eval_datasets = (const char *const *)c->eval_dataset_paths;
    o->n_eval_datasets = c->n_eval_dataset_paths;
    o->image_root = *c->image_root ? c->image_root : NULL;
    o->output_dir = c->output_dir;
    o->freeze_vision = c->freeze_backbone;
    o->freeze_connector = c->freeze_mlp;
    o->freeze_llm = c->freeze_llm;
    o->grad_checkpoint = c->grad_checkpoint;
    o->drop_path_rate = c->drop_path_rate;
    o->max_dynamic_patch = c->max_dynamic_patch;
    o->min_dynamic_patch = c->min_dynamic_patch;
    o->dynamic_image_size = c->dynamic_image_size;
    o->use_thumbnail = c->use_thumbnail;
    o->force_image_size = c->force_image_size;
    o->template_name = *c->conv_style ? c->conv_style : NULL;
    o->max_length = c->max_length;
    o->num_train_epochs = c->num_train_epochs;
    o->max_steps = (long)c->max_steps;
    o->pairs_per_device = c->per_device_train_batch_size;
    o->accum = c->gradient_accumulation_steps;
    static const SchedKind sched[] = {SCHED_COSINE, SCHED_LINEAR, SCHED_CONSTANT, SCHED_CONSTANT_WITH_WARMUP};
    o->opt = (AdamW){.lr = c->learning_rate, .beta1 = c->adam_beta1, .beta2 = c->adam_beta2,
                     .eps = c->adam_epsilon, .weight_decay = c->weight_decay,
                     .max_grad_norm = c->max_grad_norm, .sched = sched[c->lr_scheduler_type],
                     .warmup_steps = (long)c->warmup_steps};
    o->warmup_ratio = c->warmup_ratio;
    o->logging_steps = c->logging_steps;
    o->save_steps = c->save_steps;
    o->save_total_limit = c->save_total_limit;
    o->eval_steps = c->eval_steps;
    o->seed = (uint64_t)c->seed;
    o->on_bad_fail = c->on_bad_record == REC_ON_BAD_FAIL;
    o->num_workers = c->num_workers;
    o->resume = c->resume && !c->overwrite_output_dir;
    o->overwrite_output_dir = c->overwrite_output_dir;
    o->shortcut_eps = c->shortcut_eps;
    o->save_bias_model = c->save_bias_model;
}

int cmd_train(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc < 2 || strchr(argv[1], '=')) {
        usage(stderr);
        return 2;
    }
    Comm comm;
    comm_init(&comm, &argc, &argv);
    TrainConfig c;
    if (train_config_load(&c, argv[1], argc - 2, argv + 2)) {
        fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
        return 1;
    }
    int rc = 1;
    static const char *const dev_names[] = {"auto", "cpu", "cuda"};
    Device dev;
    /* each rank takes the GPU of its node-local rank */
    if (device_resolve(dev_names[c.device], comm.local_rank, 0, &dev)) {
        fprintf(stderr, "mmrm: error: %s (in %s)\n", mmrm_last_error(), argv[1]);
        goto out;
    }
    if (c.precision == PRECISION_BF16 && dev == DEV_CPU) {
        fprintf(stderr, "mmrm: error: precision = bf16 needs a GPU (device = cuda); the CPU trains in "
                        "fp32 (precision = fp32 or auto)\n");
        goto out;
    }
    int bf16 = dev == DEV_CUDA && c.precision != PRECISION_FP32;
#ifdef MMRM_CUDA
    if (dev == DEV_CUDA) {
#ifdef MMRM_NCCL
        /* NCCL needs a GPU per rank; ranks sharing one (device = auto with more ranks than
         * GPUs) average their gradients through the host instead. MMRM_NCCL=0 turns NCCL
         * off (host staging: to rule NCCL out when debugging), MMRM_NCCL=1 uses it even for
         * one process (its code path, checked against the plain single-GPU run). */
        const char *env = getenv("MMRM_NCCL");
        int want = env && *env ? strcmp(env, "0") != 0 : comm.world > 1;
        if (want && comm.local_world <= device_gpu_count()) comm_nccl_init(&comm);
        else if (want && comm.rank == 0)
            mmrm_log("%d ranks share %d GPU(s) on a node: gradients are averaged through host "
                     "memory and MPI, not NCCL", comm.local_world, device_gpu_count());
        else if (comm.world > 1 && comm.rank == 0)
            mmrm_log("NCCL off (MMRM_NCCL=0): gradients are averaged through host memory and MPI");
#endif
    }
#endif
    /* check the inputs before anything is created under output_dir */
    const char *need[2][2] = {{c.model_name_or_path, c.init_model_config},
                              {c.bias_model_path, c.init_bias_model_config}};
    for (int k = 0; k < (c.algorithm == TRAIN_SHORTCUT_AWARE ? 2 : 1); k++) {
        char p[4200];
        if (*need[k][0]) snprintf(p, sizeof p, "%s/config.json", need[k][0]);
        else snprintf(p, sizeof p, "%s", need[k][1]);
        if (access(p, R_OK) != 0) {
            fprintf(stderr, "mmrm: error: %s: %s (check %s in %s)\n", p, strerror(errno),
                    *need[k][0] ? (k ? "bias_model_path" : "model_name_or_path")
                                : (k ? "init_bias_model_config" : "init_model_config"), argv[1]);
            goto out;
        }
    }
    if (c.zero_stage == 1 && comm.world == 1 && comm.rank == 0)
        mmrm_log("zero_stage = 1 has no effect in a single process");
    if (comm.rank == 0) {
        char what[300] = "as configured";
#ifdef MMRM_CUDA
        if (dev == DEV_CUDA) snprintf(what, sizeof what, "%s", device_describe(DEV_CUDA));
        else if (c.device == TRAIN_DEVICE_AUTO) snprintf(what, sizeof what, "auto: no GPU visible");
#else
        if (c.device == TRAIN_DEVICE_AUTO) snprintf(what, sizeof what, "auto: no GPU backend in this build");
#endif
        mmrm_log("device: %s (%s), precision %s, %d rank%s (%s)", device_name(dev), what,
                 bf16 ? "bf16 (bf16 weight copies, GEMM operands and stored activations; fp32 master weights, optimizer state, gradients and statistics)" : "fp32", comm.world,
                 comm.world > 1 ? "s" : "", comm_kind_name(comm.kind));
        fprintf(stderr, "mmrm: resolved configuration (%s):\n", argv[1]);
        train_config_print(&c, stderr);
        char path[4200];
        snprintf(path, sizeof path, "%s/train_config.ini", c.output_dir);
        if (fs_mkdir_p(c.output_dir) || train_config_save(&c, path)) {
            fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
            goto out;
        }
    }
    TrainerOptions o;
    map(&c, &o);
    o.comm = &comm;
    o.zero_stage = c.zero_stage;
    o.grad_bucket_mb = c.grad_bucket_mb;
    o.overlap_grad_reduce = c.overlap_grad_reduce == OVERLAP_AUTO ? -1 : c.overlap_grad_reduce == OVERLAP_TRUE;
    o.device = dev;
    o.bf16 = bf16;
    rc = train_run(&o);
out:
    train_config_free(&c);
    /* a failing rank skips MPI_Finalize: its non-zero exit then ends every rank (comm.h),
     * where finalizing would leave the others waiting in their next collective */
    if (rc == 0) comm_finalize(&comm);
    return rc;
}
