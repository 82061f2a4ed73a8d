/* main.c - the mmrm command line: a thin dispatcher over the subcommands. It is the one
 * file that sees both train/ and infer/. */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "kernels/kernels.h"
#include "runtime/tensor.h"

#define MMRM_VERSION "0.1.0"

static void usage(FILE *f) {
    fprintf(f,
            "mmrm %s - multimodal reward models in C\n"
            "\n"
            "usage: mmrm COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  version     the build: version, backends, OpenMP threads\n"
            "  help        this text\n"
            "\n"
            "Run `make help` for the build, test and benchmark targets.\n",
            MMRM_VERSION);
}

static int cmd_version(void) {
    printf("mmrm %s\n", MMRM_VERSION);
    printf("backends: %s%s\n", kernels_cpu.name, device_cuda_compiled() ? ", cuda" : "");
    printf("openmp threads: %d (set OMP_NUM_THREADS to change)\n", omp_get_max_threads());
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) return cmd_version();
    fprintf(stderr, "mmrm: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
