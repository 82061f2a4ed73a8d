/* fuzz_config.c - libFuzzer target: arbitrary bytes as a model's config.json, read by
 * config_load (which validates it); a config that loads is saved and loaded again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "models/config.h"
#include "runtime/error.h"
#include "tests/fuzz/fuzz.h"

static const char *const g_names[] = {"config.json", "saved.json"};
static const char *g_dir;
static char g_saved[96];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    mmrm_set_quiet(1);
    g_dir = fuzz_tmpdir(g_names, 2);
    snprintf(g_saved, sizeof g_saved, "%s/%s", g_dir, g_names[1]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ModelConfig cfg, again; /* ~33 KB each: not on the stack */
    if (config_load(fuzz_write(g_dir, g_names[0], data, size), &cfg)) return 0;
    config_grid(&cfg);
    config_tokens_per_tile(&cfg);
    if (config_save(&cfg, g_saved, "float32")) return 0;
    if (config_load(g_saved, &again)) { /* what we write, we must read */
        fprintf(stderr, "fuzz_config: saved config does not load back: %s\n", mmrm_last_error());
        abort();
    }
    return 0;
}
