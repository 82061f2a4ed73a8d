/* fuzz_train_config.c - libFuzzer target: a training INI file and command-line overrides, read
 * by train_config_load. The input is split at FUZZ_SEP (fuzz.h): the first part is the file
 * (absent when empty), each further part one "key=value" override. A configuration that
 * loads is saved and must load back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "tests/fuzz/fuzz.h"
#include "train/train_config.h"

enum { MAX_OVERRIDES = 16 };
static const char *const g_names[] = {"train.ini", "saved.ini"};
static const char *g_dir;
static char g_ini[96], g_saved[96];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    mmrm_set_quiet(1);
    g_dir = fuzz_tmpdir(g_names, 2);
    snprintf(g_ini, sizeof g_ini, "%s/%s", g_dir, g_names[0]);
    snprintf(g_saved, sizeof g_saved, "%s/%s", g_dir, g_names[1]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const size_t seplen = strlen(FUZZ_SEP);
    const uint8_t *end = data + size;
    const uint8_t *q = memmem(data, size, FUZZ_SEP, seplen);
    size_t len = q ? (size_t)(q - data) : size;
    if (len) fuzz_write(g_dir, g_names[0], data, len);
    char *ov[MAX_OVERRIDES] = {0};
    int n = 0;
    for (const uint8_t *p = q ? q + seplen : NULL; p && n < MAX_OVERRIDES; n++) {
        q = memmem(p, (size_t)(end - p), FUZZ_SEP, seplen);
        size_t k = q ? (size_t)(q - p) : (size_t)(end - p);
        ov[n] = strndup((const char *)p, k); /* an override is a C string: cut at a NUL */
        p = q ? q + seplen : NULL;
    }
    TrainConfig c;
    if (train_config_load(&c, len ? g_ini : NULL, n, ov) == 0) {
        TrainConfig again;
        if (train_config_save(&c, g_saved) || train_config_load(&again, g_saved, 0, NULL)) {
            fprintf(stderr, "fuzz_train_config: saved config does not load back: %s\n",
                    mmrm_last_error());
            abort();
        }
        train_config_free(&again);
        train_config_free(&c);
    }
    for (int k = 0; k < n; k++) free(ov[k]);
    if (len) remove(g_ini);
    return 0;
}
