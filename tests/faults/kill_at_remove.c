/* kill_at_remove.c - an LD_PRELOAD shim for tests/integration/disk_full.sh: the process kills
 * itself with SIGKILL at its first remove() of a path ending in KILL_AT_REMOVE (e.g.
 * "/model.safetensors"), that is, in the middle of removing a directory tree: what a crash
 * at that moment leaves behind. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int remove(const char *path) {
    static int (*real)(const char *);
    if (!real) real = (int (*)(const char *))dlsym(RTLD_NEXT, "remove");
    const char *suffix = getenv("KILL_AT_REMOVE");
    size_t n = strlen(path), k = suffix ? strlen(suffix) : 0;
    if (k && n >= k && strcmp(path + n - k, suffix) == 0) raise(SIGKILL);
    return real(path);
}
