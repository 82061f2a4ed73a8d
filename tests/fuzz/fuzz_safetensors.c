/* fuzz_safetensors.c - libFuzzer target: arbitrary bytes as a .safetensors file, opened and
 * validated by st_open; when it opens, every tensor is looked up by name and read through the
 * converters that accept its dtype. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/safetensors.h"
#include "tests/fuzz/fuzz.h"

static const char *const g_names[] = {"model.safetensors"};
static const char *g_dir;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    mmrm_set_quiet(1);
    g_dir = fuzz_tmpdir(g_names, 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    SafeTensors *st = st_open(fuzz_write(g_dir, g_names[0], data, size));
    if (!st) return 0;
    for (int i = 0; i < st_count(st); i++) {
        const StEntry *e = st_get(st, i);
        if (st_find(st, e->name) != e) abort();
        if (e->nbytes > (1u << 20)) continue;
        void *dst = malloc(e->numel * 4 + 1);
        if (!dst) abort();
        st_read_f32(st, e, dst, e->numel);
        st_read_bf16(st, e, dst, e->numel);
        st_read_i32(st, e, dst, e->numel);
        free(dst);
    }
    for (int i = 0; i < st_meta_count(st); i++) {
        const StMeta *m = st_meta_at(st, i);
        if (strcmp(st_meta_get(st, m->key), m->value)) abort();
    }
    st_close(st);
    return 0;
}
