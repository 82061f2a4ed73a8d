/* full_disk.c - an LD_PRELOAD shim that makes a folder behave like a disk that fills up, for
 * tests/integration/disk_full.sh (a tmpfs mount needs privileges the sandbox and CI lack).
 *
 *   FULL_DISK_DIR=/path  FULL_DISK_BYTES=N  [FULL_DISK_ERRNO=EIO]  [FULL_DISK_NAME=file]
 *   LD_PRELOAD=full_disk.so cmd
 *
 * Writes to files under FULL_DISK_DIR draw on a budget of N bytes shared by the process: the
 * write that crosses it is cut short (the bytes that fit are written, as on a real disk),
 * and every later one fails with ENOSPC (or EIO); fflush and fsync of such a file fail too
 * once the budget is spent. write() and fwrite() are intercepted (mmrm's writers use them);
 * stdio's internal flushes are not, so the budget counts only those. FULL_DISK_NAME limits
 * the shim to files of that name (e.g. metrics.jsonl) under the folder. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long long budget = -1; /* bytes left; -1: not read yet */
static const char *dir, *name;
static int fail_errno = ENOSPC;

static void init(void) {
    if (budget != -1) return;
    dir = getenv("FULL_DISK_DIR");
    name = getenv("FULL_DISK_NAME");
    const char *b = getenv("FULL_DISK_BYTES");
    budget = b ? atoll(b) : LLONG_MAX;
    const char *e = getenv("FULL_DISK_ERRNO");
    if (e && strcmp(e, "EIO") == 0) fail_errno = EIO;
}

/* whether fd is a file under FULL_DISK_DIR */
static int watched(int fd) {
    init();
    if (!dir || fd < 0) return 0;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    size_t d = strlen(dir);
    if (strncmp(path, dir, d) != 0 || (path[d] != '/' && path[d] != 0)) return 0;
    const char *base = strrchr(path, '/');
    return !name || !*name || strcmp(base ? base + 1 : path, name) == 0;
}

/* how many of n bytes may go to fd; 0 with errno set when none */
static size_t allow(int fd, size_t n) {
    if (!watched(fd)) return n;
    if (budget <= 0) { errno = fail_errno; return 0; }
    if ((long long)n > budget) n = (size_t)budget;
    budget -= (long long)n;
    return n;
}

ssize_t write(int fd, const void *p, size_t n) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    size_t k = n ? allow(fd, n) : 0;
    if (n && !k) return -1;
    return real(fd, p, k);
}

size_t fwrite(const void *p, size_t size, size_t count, FILE *f) {
    static size_t (*real)(const void *, size_t, size_t, FILE *);
    if (!real) real = (size_t (*)(const void *, size_t, size_t, FILE *))dlsym(RTLD_NEXT, "fwrite");
    if (!size || !count) return 0;
    size_t k = allow(fileno(f), size * count) / size;
    return k ? real(p, size, k, f) : 0;
}

int fflush(FILE *f) {
    static int (*real)(FILE *);
    if (!real) real = (int (*)(FILE *))dlsym(RTLD_NEXT, "fflush");
    if (f && watched(fileno(f)) && budget <= 0) { errno = fail_errno; return EOF; }
    return real(f);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (watched(fd) && budget <= 0) { errno = fail_errno; return -1; }
    return real(fd);
}
