/* driver.c - runs a fuzz target once over each file named on the command line (a folder:
 * each file in it), without libFuzzer: how `make test` replays the committed corpus and
 * regressions with gcc. Prints one line per target run; exits non-zero if an input could not
 * be read (a crash is a crash: the sanitizers or the target abort). */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "driver: %s: cannot open\n", path); return -1; }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf) abort();
    /* an exact-size copy, so ASan sees reads past the input as libFuzzer would */
    unsigned char *in = malloc(n ? n : 1);
    if (!in) abort();
    memcpy(in, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(in, n);
    free(in);
    return 0;
}

static int run_path(const char *path, int *count) {
    struct stat st;
    if (stat(path, &st)) { fprintf(stderr, "driver: %s: missing\n", path); return -1; }
    if (!S_ISDIR(st.st_mode)) { ++*count; return run_file(path); }
    struct dirent **ents;
    int n = scandir(path, &ents, NULL, alphasort), rc = n < 0 ? -1 : 0;
    for (int i = 0; i < n; i++) {
        char p[PATH_MAX];
        if (ents[i]->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", path, ents[i]->d_name);
            if (run_path(p, count)) rc = -1;
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}

int main(int argc, char **argv) {
    LLVMFuzzerInitialize(&argc, &argv);
    int rc = 0, count = 0;
    for (int i = 1; i < argc; i++)
        if (run_path(argv[i], &count)) rc = 1;
    printf("%s: %d inputs replayed\n", argv[0], count);
    return rc;
}
