/* test_util.c - the shared helpers: fs_read_file (sizes around the growth steps, NUL bytes,
 * a missing file), fs_join (slashes, overflow), fs_write_fd, the string buffer against
 * snprintf and its reset, and the monotonic clock. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/strbuf.h"
#include "tests/harness.h"

TEST(fs_read_file_returns_every_byte_nul_terminated) {
    char dir[] = "/tmp/mmrm_util_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    TRng r = trng(17);
    const size_t sizes[] = {0, 1, 4094, 4095, 4096, 4097, 70001};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        unsigned char *want = malloc(n + 1);
        for (size_t i = 0; i < n; i++) want[i] = (unsigned char)(trng_uniform(&r) * 256);
        char path[256];
        CHECK(fs_join(path, sizeof path, dir, "f.bin") != NULL, "join");
        FILE *f = fopen(path, "wb");
        fwrite(want, 1, n, f);
        fclose(f);
        size_t got_n = 12345;
        char *got = fs_read_file(path, &got_n);
        CHECK(got != NULL, "read %zu bytes: %s", n, mmrm_last_error());
        if (got) {
            CHECK(got_n == n, "size %zu, want %zu", got_n, n);
            CHECK(got_n != n || memcmp(got, want, n) == 0, "bytes differ at size %zu", n);
            CHECK(got[got_n] == 0, "not NUL-terminated at size %zu", n);
        }
        free(got);
        free(want);
        unlink(path);
    }
    char path[256];
    fs_join(path, sizeof path, dir, "missing.json");
    CHECK(fs_read_file(path, NULL) == NULL && errno == ENOENT, "a missing file reads");
    CHECK(strstr(mmrm_last_error(), "missing.json") != NULL, "error names the file: %s",
          mmrm_last_error());
    rmdir(dir);
}

TEST(fs_join_puts_one_slash_and_refuses_overflow) {
    char buf[16];
    CHECK(strcmp(fs_join(buf, sizeof buf, "a/b", "c"), "a/b/c") == 0, "plain: %s", buf);
    CHECK(strcmp(fs_join(buf, sizeof buf, "a/b/", "c"), "a/b/c") == 0, "trailing: %s", buf);
    CHECK(strcmp(fs_join(buf, sizeof buf, "", "c"), "c") == 0, "empty dir: %s", buf);
    CHECK(fs_join(buf, sizeof buf, "0123456789", "abcde") == NULL, "16 bytes fit in 16");
    CHECK(fs_join(buf, sizeof buf, "012345678", "abcde") != NULL, "15 bytes + NUL fit");
    CHECK(strstr(fs_join(buf, 4, "dir", "name") ? "" : mmrm_last_error(), "too long") != NULL,
          "overflow error: %s", mmrm_last_error());
}

TEST(strbuf_matches_snprintf_across_growth) {
    StrBuf b = {0};
    char *empty = sb_take(&b);
    CHECK(strcmp(empty, "") == 0, "empty take");
    free(empty);
    char want[20000];
    size_t wn = 0;
    TRng r = trng(5);
    for (int i = 0; i < 900; i++) {
        int v = (int)(trng_uniform(&r) * 1e6);
        switch (i % 3) {
        case 0: sb_printf(&b, "%d,", v); wn += (size_t)snprintf(want + wn, sizeof want - wn, "%d,", v); break;
        case 1: sb_puts(&b, "xy"); wn += (size_t)snprintf(want + wn, sizeof want - wn, "xy"); break;
        default: sb_putc(&b, (char)('a' + v % 26)); want[wn++] = (char)('a' + v % 26); want[wn] = 0;
        }
        CHECK(b.len == wn && strcmp(b.s, want) == 0, "step %d differs", i);
        if (b.len != wn) break;
    }
    char *s = sb_take(&b);
    CHECK(strcmp(s, want) == 0 && b.s == NULL && b.len == 0, "take");
    free(s);
    sb_free(&b);
}

TEST(fs_write_fd_writes_every_byte_and_names_the_file_on_error) {
    char dir[] = "/tmp/mmrm_util_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256];
    fs_join(path, sizeof path, dir, "out.bin");
    enum { N = 300001 };
    char *want = malloc(N);
    TRng r = trng(23);
    for (size_t i = 0; i < N; i++) want[i] = (char)(unsigned char)(int)(trng_uniform(&r) * 256);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fs_write_fd(fd, want, N, path) == 0, "write: %s", mmrm_last_error());
    close(fd);
    fs_fsync_parent(path);
    size_t n = 0;
    char *got = fs_read_file(path, &n);
    CHECK(got && n == N && memcmp(got, want, N) == 0, "read back %zu bytes", n);
    free(got);
    fd = open(path, O_RDONLY);
    CHECK(fs_write_fd(fd, want, 10, path) == -1 && strstr(mmrm_last_error(), "out.bin"),
          "a read-only fd: %s", mmrm_last_error());
    close(fd);
    free(want);
    unlink(path);
    rmdir(dir);
}

TEST(strbuf_reset_empties_and_keeps_the_memory) {
    StrBuf b = {0};
    sb_printf(&b, "%0200d", 7);
    char *p = b.s;
    size_t cap = b.cap;
    sb_reset(&b);
    CHECK(b.len == 0 && b.s == p && b.cap == cap && b.s[0] == 0, "reset: len %zu", b.len);
    sb_puts(&b, "ab");
    CHECK(b.s == p && strcmp(b.s, "ab") == 0, "after reset: %s", b.s);
    sb_free(&b);
    sb_reset(&b);
    CHECK(b.s == NULL && b.len == 0, "reset of an empty buffer");
}

TEST(clock_seconds_is_monotonic_and_advances) {
    double a = clock_seconds();
    usleep(2000);
    double b = clock_seconds();
    CHECK(b - a >= 0.0015 && b - a < 5.0, "2 ms sleep measured as %g s", b - a);
}
