/* fuzz_trainer_state.c - libFuzzer target: arbitrary bytes as a checkpoint's
 * trainer_state.json, read as a resumed run reads it (checkpoint_read_state). */
#include <stdint.h>
#include <stdlib.h>

#include "runtime/error.h"
#include "tests/fuzz/fuzz.h"
#include "train/run.h"

static const char *const g_names[] = {"trainer_state.json"};
static const char *g_dir;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    mmrm_set_quiet(1);
    g_dir = fuzz_tmpdir(g_names, 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    State s = {0};
    int rc = checkpoint_read_state(&s, fuzz_write(g_dir, g_names[0], data, size));
    if (rc == 0 && (s.nlog < 0 || s.nlog > s.caplog || (s.nlog && !s.log))) abort();
    free(s.log);
    return 0;
}
