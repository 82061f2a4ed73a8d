/* score_merge.c - the part files of a multi-rank `mmrm score` and their merge into the
 * output (score_merge.h).
 *
 * Each rank appends its lines, tagged with the record's input line and the response's index
 * (score_resume.h), to its own part file OUT.parts/rank-R (fsync per chunk), so the ranks
 * never contend for one file; at the end rank 0 appends every part line to OUT in input order
 * (the order one process writes) and removes the parts. Parts need a folder every rank can
 * write (a shared file system across nodes).
 *
 * Part files are a continuation of OUT: a rerun with any number of ranks (one included)
 * counts their complete lines as done (a torn last line is cut as in OUT), keeps them, and
 * merges them with its own lines at the end, so a killed job loses at most each rank's chunk
 * in flight. The merge moves the part lines into OUT without a window where a line is in
 * both or in neither: OUT's size goes into OUT.parts/base, the folder is renamed
 * OUT.parts.merging (the commit to merge), the lines are appended to OUT and synced, and the
 * folder is renamed OUT.parts.merged (the commit that they are in) and removed. A run that
 * finds OUT.parts.merging cuts OUT back to that size and renames the folder back; one that
 * finds OUT.parts.merged removes it.
 */
#include "infer/score_merge.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/strbuf.h"

/* a malloc'd a b c */
static char *join3(const char *a, const char *b, const char *c) {
    StrBuf s = {0};
    sb_printf(&s, "%s%s%s", a, b, c);
    return sb_take(&s);
}

void parts_init(PartDirs *d, const char *out) {
    d->live = join3(out, ".parts", "");
    d->merging = join3(out, ".parts.merging", "");
    d->merged = join3(out, ".parts.merged", "");
}

void parts_free(PartDirs *d) {
    free(d->live);
    free(d->merging);
    free(d->merged);
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

typedef struct {
    long rank;
    char *path;
} PartFile;

static int partfile_cmp(const void *a, const void *b) {
    const PartFile *x = a, *y = b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

static void partfiles_free(PartFile *f, int n) {
    for (int i = 0; i < n; i++) free(f[i].path);
    free(f);
}

/* The part files "rank-R" in dir, in rank order. "base" (the size of OUT a merge starts
 * from) is skipped; anything else is an error: the folder is this command's. 0 or -1. */
static int list_parts(const char *dir, PartFile **files, int *n) {
    *files = NULL;
    *n = 0;
    DIR *dp = opendir(dir);
    if (!dp) {
        mmrm_set_error("%s: cannot list the part files (%s)", dir, strerror(errno));
        return -1;
    }
    int cap = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        const char *name = e->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, "base")) continue;
        char *end = NULL;
        long r = strncmp(name, "rank-", 5) || name[5] < '0' || name[5] > '9'
                     ? -1 : strtol(name + 5, &end, 10);
        if (r < 0 || *end) {
            mmrm_set_error("%s/%s is not a part file of mmrm score (this folder holds the lines "
                           "of a multi-rank run on the output; move the file away)", dir, name);
            rc = -1;
            break;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            *files = xrealloc(*files, (size_t)cap * sizeof **files);
        }
        (*files)[(*n)++] = (PartFile){r, join3(dir, "/", name)};
    }
    closedir(dp);
    if (rc) {
        partfiles_free(*files, *n);
        *files = NULL;
        *n = 0;
    } else if (*n) {
        qsort(*files, (size_t)*n, sizeof **files, partfile_cmp);
    }
    return rc;
}

int parts_recover(const PartDirs *d, const char *out, int fd) {
    if (exists(d->merged)) {
        fs_remove_tree(d->merged);
        fs_fsync_parent(out);
        mmrm_log("%s: removed the part files of a completed merge", d->merged);
    }
    if (!exists(d->merging)) return 0;
    if (exists(d->live)) {
        mmrm_set_error("%s and %s both exist: these are not the folders of one mmrm score run "
                       "(move both away and score again)", d->merging, d->live);
        return -1;
    }
    char *base_path = join3(d->merging, "/", "base");
    FILE *f = fopen(base_path, "r");
    long long base = -1;
    struct stat st;
    if (!f || fscanf(f, "%lld", &base) != 1 || fstat(fd, &st) != 0 || base < 0 ||
        base > (long long)st.st_size) {
        mmrm_set_error("%s: missing or not a size within %s: cannot undo the interrupted merge "
                       "(its part files are in %s; the lines there that %s lacks can be "
                       "appended by hand, without their two leading numbers)", base_path, out,
                       d->merging, out);
        if (f) fclose(f);
        free(base_path);
        return -1;
    }
    fclose(f);
    free(base_path);
    if (ftruncate(fd, (off_t)base) != 0 || fsync(fd) != 0 || rename(d->merging, d->live) != 0) {
        mmrm_set_error("%s: cannot undo the interrupted merge (%s)", out, strerror(errno));
        return -1;
    }
    fs_fsync_parent(out);
    mmrm_log("%s: a merge of part files was interrupted; %s is cut back to its %lld bytes from "
             "before it, and the part files are merged again", out, out, base);
    return 0;
}

/* Counts the complete lines of every part file into done (cutting a torn last line). */
static int parts_scan(const PartDirs *d, int grouped, KeySet *done, int *nfiles, long *lines) {
    PartFile *files;
    *lines = 0;
    if (list_parts(d->live, &files, nfiles)) return -1;
    int rc = 0;
    for (int i = 0; i < *nfiles && rc == 0; i++) {
        long n;
        rc = score_read_done(files[i].path, grouped, 1, done, &n);
        *lines += n;
    }
    partfiles_free(files, *nfiles);
    return rc;
}

int parts_prepare(const PartDirs *d, const char *out, int want, int grouped, KeySet *done,
                  int *used, int *nfiles, long *lines) {
    *used = want;
    *nfiles = 0;
    *lines = 0;
    if (exists(d->live)) {
        *used = 1;
        return parts_scan(d, grouped, done, nfiles, lines);
    }
    if (!want) return 0;
    if (mkdir(d->live, 0755) != 0) {
        mmrm_set_error("%s: cannot create the folder of the part files (%s)", d->live,
                       strerror(errno));
        return -1;
    }
    fs_fsync_parent(out);
    return 0;
}

int parts_open(const PartDirs *d, int rank, char **path) {
    char name[32];
    snprintf(name, sizeof name, "rank-%d", rank);
    *path = join3(d->live, "/", name);
    int existed = access(*path, F_OK) == 0;
    int fd = open(*path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        mmrm_set_error("%s: cannot open for writing (%s)", *path, strerror(errno));
        return -1;
    }
    if (!existed) fs_fsync_parent(*path);
    return fd;
}

typedef struct {
    long line, j; /* the tag: input line, response index */
    size_t seq;   /* the order read, so equal tags keep it */
    const char *p;
    size_t n;     /* the output line with its newline */
} PartLine;

static int partline_cmp(const void *a, const void *b) {
    const PartLine *x = a, *y = b;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    if (x->j != y->j) return x->j < y->j ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

int parts_merge(const PartDirs *d, const char *out, int fd, long *merged) {
    PartFile *files;
    int nfiles, rc = -1;
    *merged = 0;
    if (list_parts(d->live, &files, &nfiles)) return -1;
    char **text = xcalloc((size_t)(nfiles ? nfiles : 1), sizeof *text);
    PartLine *lines = NULL;
    size_t n = 0, cap = 0;
    StrBuf b = {0};
    for (int i = 0; i < nfiles; i++) {
        size_t len;
        if (!(text[i] = fs_read_file(files[i].path, &len))) goto out;
        long lineno = 0;
        for (size_t at = 0; at < len;) {
            const char *p = text[i] + at, *nl = memchr(p, '\n', len - at);
            lineno++;
            PartLine pl = {.seq = n};
            const char *json = nl ? score_parse_tag(p, &pl.line, &pl.j) : NULL;
            if (!json || json > nl) {
                mmrm_set_error("%s:%ld: not a complete tagged line (part files hold only those "
                               "at the merge; was the file changed?)", files[i].path, lineno);
                goto out;
            }
            pl.p = json;
            pl.n = (size_t)(nl + 1 - json);
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                lines = xrealloc(lines, cap * sizeof *lines);
            }
            lines[n++] = pl;
            at = (size_t)(nl + 1 - text[i]);
        }
    }
    if (n == 0) {
        fs_remove_tree(d->live);
        fs_fsync_parent(out);
        rc = 0;
        goto out;
    }
    qsort(lines, n, sizeof *lines, partline_cmp);
    /* commit 1: OUT's size now is where a killed merge is undone to */
    struct stat st;
    if (fstat(fd, &st) != 0) {
        mmrm_set_error("%s: cannot stat (%s)", out, strerror(errno));
        goto out;
    }
    char size[32];
    int len = snprintf(size, sizeof size, "%lld\n", (long long)st.st_size);
    char *base_path = join3(d->live, "/", "base");
    int bfd = open(base_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int ok = bfd >= 0 && fs_write_fd(bfd, size, (size_t)len, base_path) == 0 && fsync(bfd) == 0;
    if (bfd >= 0) ok = close(bfd) == 0 && ok;
    free(base_path);
    if (!ok) {
        mmrm_set_error("%s: cannot record the size of %s before the merge (%s)", d->live, out,
                       strerror(errno));
        goto out;
    }
    fs_fsync_dir(d->live);
    if (rename(d->live, d->merging) != 0) {
        mmrm_set_error("%s: cannot rename to %s (%s)", d->live, d->merging, strerror(errno));
        goto out;
    }
    fs_fsync_parent(out);
    for (size_t i = 0; i < n; i++) {
        sb_append(&b, lines[i].p, lines[i].n);
        if (b.len < ((size_t)1 << 20) && i + 1 < n) continue;
        if (fs_write_fd(fd, b.s, b.len, out)) goto out;
        sb_reset(&b);
    }
    if (fsync(fd) != 0) {
        mmrm_set_error("%s: fsync failed (%s)", out, strerror(errno));
        goto out;
    }
    /* commit 2: the lines are in OUT */
    if (rename(d->merging, d->merged) != 0) {
        mmrm_set_error("%s: cannot rename to %s (%s); a rerun finishes the merge", d->merging,
                       d->merged, strerror(errno));
        goto out;
    }
    fs_fsync_parent(out);
    fs_remove_tree(d->merged);
    *merged = (long)n;
    rc = 0;
out:
    if (rc && exists(d->merging))
        mmrm_log("%s: the merge stopped; a rerun of the same command undoes it and merges again",
                 d->merging);
    for (int i = 0; i < nfiles; i++) free(text[i]);
    free(text);
    free(lines);
    sb_free(&b);
    partfiles_free(files, nfiles);
    return rc;
}
