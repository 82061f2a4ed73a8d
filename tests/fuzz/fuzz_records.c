/* fuzz_records.c - libFuzzer target: arbitrary bytes as one JSONL file, read by the pair and
 * scoring loaders under both bad-record policies, with the load's bookkeeping checked. Records
 * may name img.bmp (a valid 1x1 BMP) or bad.bmp (not an image) in the image root the target
 * creates. See fuzz.h; `make fuzz` builds and runs it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/error.h"
#include "models/records.h"
#include "tests/fuzz/fuzz.h"

static int g_fd = -1;
static char g_path[64];   /* the input, as /proc/self/fd/N */
static char g_root[64];   /* image root with img.bmp and bad.bmp */

static void write_file(const char *dir, const char *name, const void *data, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) abort();
}

static void remove_root(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/img.bmp", g_root);
    remove(path);
    snprintf(path, sizeof path, "%s/bad.bmp", g_root);
    remove(path);
    remove(g_root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static const unsigned char bmp[58] = {
        'B', 'M', 58, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0,
        1, 0, 24, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0x13, 0x0b, 0, 0, 0x13, 0x0b, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0x20, 0x40, 0x80, 0};
    mmrm_set_quiet(1);
    g_fd = memfd_create("fuzz.jsonl", 0);
    if (g_fd < 0) abort();
    snprintf(g_path, sizeof g_path, "/proc/self/fd/%d", g_fd);
    snprintf(g_root, sizeof g_root, "/tmp/mmrm_fuzz_XXXXXX");
    if (!mkdtemp(g_root)) abort();
    write_file(g_root, "img.bmp", bmp, sizeof bmp);
    write_file(g_root, "bad.bmp", "not an image", 12);
    atexit(remove_root);
    return 0;
}

static long skipped(const RecLoad *ld) {
    long t = 0;
    for (int r = 0; r < REC_NREASONS; r++) t += ld->skipped[r];
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (ftruncate(g_fd, 0) || pwrite(g_fd, data, size, 0) != (ssize_t)size) abort();
    long lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    const char *paths[1] = {g_path};
    for (int policy = REC_ON_BAD_SKIP; policy <= REC_ON_BAD_FAIL; policy++) {
        RecordOptions opt = {.image_root = g_root, .on_bad_record = (RecOnBad)policy};
        PairSet ps;
        if (pairset_load(&ps, paths, 1, &opt) == 0) {
            if (skipped(&ps.load) > ps.load.records || ps.load.records > lines) abort();
            for (size_t i = 0; i < ps.n; i++) {
                const Pair *p = &ps.pairs[i];
                if (!p->prompt || !p->image || !p->chosen || !p->rejected || p->file != 0 ||
                    p->line < 1 || p->line > lines || (i && p->line < ps.pairs[i - 1].line))
                    abort();
            }
        } else if (ps.n || ps.pairs) {
            abort();
        }
        pairset_free(&ps);

        ScoreSet ss;
        if (scoreset_load(&ss, paths, 1, &opt) == 0) {
            if ((long)ss.n + skipped(&ss.load) != ss.load.records) abort();
            for (size_t i = 0; i < ss.n; i++)
                for (int k = 0; k < ss.recs[i].nresponses; k++)
                    if (!ss.recs[i].responses[k]) abort();
        }
        scoreset_free(&ss);
    }
    return 0;
}
