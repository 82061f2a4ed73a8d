/* fuzz_util.c - temporary folders and multi-file inputs for the fuzz targets (fuzz.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"

static char g_dir[64];
static const char *const *g_names;
static int g_n;

static void remove_dir(void) {
    char path[PATH_MAX];
    for (int k = 0; k < g_n; k++) {
        snprintf(path, sizeof path, "%s/%s", g_dir, g_names[k]);
        remove(path);
    }
    rmdir(g_dir);
}

const char *fuzz_tmpdir(const char *const *names, int n) {
    snprintf(g_dir, sizeof g_dir, "/tmp/mmrm_fuzz_XXXXXX");
    if (!mkdtemp(g_dir)) abort();
    g_names = names, g_n = n;
    atexit(remove_dir);
    return g_dir;
}

const char *fuzz_write(const char *dir, const char *name, const void *data, size_t size) {
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f)) abort();
    return path;
}

void fuzz_write_parts(const char *dir, const uint8_t *data, size_t size,
                      const char *const *names, int n) {
    const size_t seplen = strlen(FUZZ_SEP);
    const uint8_t *p = data, *end = data + size;
    for (int k = 0; k < n; k++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        if (!p) { remove(path); continue; }
        const uint8_t *q = memmem(p, (size_t)(end - p), FUZZ_SEP, seplen);
        size_t len = q ? (size_t)(q - p) : (size_t)(end - p);
        if (len) fuzz_write(dir, names[k], p, len);
        else remove(path);
        p = q ? q + seplen : NULL;
    }
}
