/* fsutil.c - durable file-system helpers (fsutil.h). */
#include "runtime/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/error.h"

char *fs_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        int err = errno;
        mmrm_set_error("%s: cannot open (%s)", path, strerror(err));
        errno = err;
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f), err = errno;
    fclose(f);
    if (bad) {
        mmrm_set_error("%s: read error", path);
        free(buf);
        errno = err;
        return NULL;
    }
    buf[len] = 0;
    if (n) *n = len;
    return buf;
}

char *fs_join(char *buf, size_t cap, const char *dir, const char *name) {
    size_t dl = strlen(dir);
    const char *sep = dl == 0 || dir[dl - 1] == '/' ? "" : "/";
    int w = snprintf(buf, cap, "%s%s%s", dir, sep, name);
    if (w < 0 || (size_t)w >= cap) {
        mmrm_set_error("%s%s%s: path too long (over %zu bytes)", dir, sep, name, cap - 1);
        return NULL;
    }
    return buf;
}

int fs_mkdir_p(const char *dir) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
        mmrm_set_error("%.64s...: path too long", dir);
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) goto fail;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) goto fail;
    return 0;
fail:
    mmrm_set_error("%s: cannot create the directory (%s)", buf, strerror(errno));
    return -1;
}

void fs_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

void fs_fsync_parent(const char *path) {
    char d[4200];
    snprintf(d, sizeof d, "%s", path);
    fs_fsync_dir(dirname(d));
}

int fs_write_fd(int fd, const void *p, size_t n, const char *path) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            mmrm_set_error("%s: write failed (%s)", path, strerror(errno));
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int fs_write_atomic(const char *path, const void *data, size_t n) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(data, 1, n, f) == n;
    ok = f && fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    if (f) ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        mmrm_set_error("%s: cannot write (%s)", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    fs_fsync_parent(path);
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

void fs_remove_tree(const char *path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }
