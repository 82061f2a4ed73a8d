/* fuzz_st_index.c - libFuzzer target: a model directory of sharded weights, opened by mw_open.
 * The input holds up to three files split at FUZZ_SEP (fuzz.h): the index
 * model.safetensors.index.json and two shards; the index must agree with the shards. */
#include <stdint.h>
#include <stdlib.h>

#include "runtime/error.h"
#include "runtime/safetensors.h"
#include "tests/fuzz/fuzz.h"

static const char *const g_names[] = {"model.safetensors.index.json",
                                      "model-00001-of-00002.safetensors",
                                      "model-00002-of-00002.safetensors"};
static const char *g_dir;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    mmrm_set_quiet(1);
    g_dir = fuzz_tmpdir(g_names, 3);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write_parts(g_dir, data, size, g_names, 3);
    ModelWeights *w = mw_open(g_dir);
    if (!w) return 0;
    for (int i = 0; i < mw_count(w); i++) {
        const SafeTensors *file;
        const StEntry *e = mw_get(w, i, &file);
        const SafeTensors *file2;
        if (!file || mw_find(w, e->name, &file2) != e || file2 != file) abort();
    }
    mw_close(w);
    return 0;
}
