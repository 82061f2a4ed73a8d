/* main.c - the mmrm command line: a thin dispatcher over the subcommands. It is the one
 * file that sees both train/ and infer/. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infer/commands.h"
#include "kernels/kernels.h"
#include "runtime/comm.h"
#include "runtime/tensor.h"
#include "train/trainer.h"

#define MMRM_VERSION "0.1.0"


typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} Command;

static int cmd_version(int argc, char **argv);

static const Command commands[] = {
    {"train", cmd_train, "train a reward model (standard or shortcut-aware) from an INI config"},
    {"score", cmd_score, "score responses of a JSONL file with a model (resumable)"},
    {"eval", cmd_eval, "pairwise accuracy, text-only accuracy and SFD of a model on pairs"},
    {"bon", cmd_bon, "best-of-N: pick the highest-reward response of each record"},
    {"synth", cmd_synth, "write the synthetic shortcut benchmark"},
    {"info", cmd_info, "describe a model directory: sizes, parameters, FLOPs"},
    {"merge", cmd_merge, "merge a LoRA adapter into its base model"},
    {"init", cmd_init, "create a randomly initialised model directory from a config.json"},
    {"tokenize", cmd_tokenize, "text to token ids and back with a model's tokenizer"},
    {"plot", cmd_plot, "training curves of runs (metrics.jsonl) as one PNG"},
    {"serve", cmd_serve, "an HTTP reward server: POST /score, GET /health, cross-client batching"},
    {"version", cmd_version, "the build: version, backends, OpenMP threads"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "mmrm %s - multimodal reward models in C\n\nusage: mmrm COMMAND [ARGS]\n\ncommands:\n",
            MMRM_VERSION);
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "  %-9s %s\n\n", "help", "this text");
    fprintf(f, "`mmrm COMMAND --help` describes a command; `make help` lists the build targets.\n");
}

static int cmd_version(int argc, char **argv) {
    (void)argc; (void)argv;
    printf("mmrm %s\n", MMRM_VERSION);
    printf("backends: %s%s\n", kernels_cpu.name, device_cuda_compiled() ? ", cuda" : "");
    printf("multi-process: %s%s\n", comm_mpi_compiled() ? "mpi" : "none (built without MPI)",
           comm_nccl_compiled() ? ", nccl" : "");
    printf("openmp threads: %d (set OMP_NUM_THREADS to change)\n", omp_get_max_threads());
#ifdef MMRM_CUDA
    int n = device_gpu_count();
    if (n > 0) printf("gpus visible: %d (GPU 0: %s)\n", n, device_describe(DEV_CUDA));
    else printf("gpus visible: none (device = auto runs on the CPU)\n");
#endif
    return 0;
}

int main(int argc, char **argv) {
    /* OpenMP threads that spin while waiting starve each other (and the data workers) on
     * small machines; passive waiting is much faster there and costs little on big ones.
     * libgomp reads the variable at start-up, so set it and start again. An explicit
     * OMP_WAIT_POLICY is respected. */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) return cmd_version(0, NULL);
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(cmd, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mmrm: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
