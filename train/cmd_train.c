/* cmd_train.c - `mmrm train CONFIG.ini [key=value ...]`: reads and validates the
 * configuration, prints it and saves it in output_dir, then runs the trainer. */
#include <errno.h>
#include <limits.h>
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
            "output_dir/checkpoint-last/ (the final model), metrics.jsonl, train_config.ini,\n"
            "and TensorBoard events in output_dir/runs/ (report_to = tensorboard, the default;\n"
            "view with `tensorboard --logdir OUT/runs`; report_to = none: off).\n"
            "A run whose output_dir holds checkpoints resumes from the newest complete one.\n");
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
    Device dev;
    /* each rank takes the GPU of its node-local rank */
    if (device_resolve(train_device_name(c.device), comm.local_rank, 0, &dev)) {
        fprintf(stderr, "mmrm: error: %s (in %s)\n", mmrm_last_error(), argv[1]);
        goto out;
    }
    if (c.precision == PRECISION_BF16 && dev == DEV_CPU) {
        fprintf(stderr, "mmrm: error: precision = bf16 needs a GPU (device = cuda); the CPU trains in "
                        "fp32 (precision = fp32 or auto)\n");
        goto out;
    }
    int bf16 = dev == DEV_CUDA && c.precision != PRECISION_FP32;
    if (device_set_attention_impl(dev, train_attention_impl_name(c.attention_impl),
                                  comm.rank == 0)) {
        fprintf(stderr, "mmrm: error: %s (in %s)\n", mmrm_last_error(), argv[1]);
        goto out;
    }
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
        char buf[PATH_MAX];
        const char *p = *need[k][0] ? fs_join(buf, sizeof buf, need[k][0], "config.json") : need[k][1];
        if (!p) {
            fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
            goto out;
        }
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
        char path[PATH_MAX];
        if (!fs_join(path, sizeof path, c.output_dir, "train_config.ini") || fs_mkdir_p(c.output_dir) ||
            train_config_save(&c, path)) {
            fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
            goto out;
        }
    }
    TrainRuntime rt = {.comm = &comm, .device = dev, .bf16 = bf16};
    rc = train_run(&c, &rt);
out:
    train_config_free(&c);
    /* a failing rank skips comm_finalize: its non-zero exit then ends every rank (comm.h),
     * where finalizing would leave the others waiting in their next collective */
    if (rc == 0) comm_finalize(&comm);
    return rc;
}
