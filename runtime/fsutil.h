/* fsutil.h - file-system helpers: read a whole file, join paths, and durable outputs
 * (create directory trees, replace a file atomically: temporary file, fsync, rename, fsync
 * of the directory; remove a tree). The one place each of these is written. */
#ifndef MMRM_FSUTIL_H
#define MMRM_FSUTIL_H

#include <stddef.h>

/* The whole file at path, NUL-terminated (*n = its size without the NUL when n is not NULL;
 * the caller frees). NULL, with mmrm_last_error() naming the file and errno telling why,
 * when it cannot be opened or read. */
char *fs_read_file(const char *path, size_t *n);
/* dir "/" name into buf (one slash: none added when dir is empty or ends in '/'). Returns
 * buf, or NULL with mmrm_last_error() naming both parts when it does not fit in cap. */
char *fs_join(char *buf, size_t cap, const char *dir, const char *name);

/* mkdir -p; 0, or -1 with mmrm_last_error() naming the directory */
int fs_mkdir_p(const char *dir);
/* Writes n bytes to path through "path.tmp.<pid>": the old file stays intact until the new
 * one is complete and synced. 0, or -1 with mmrm_last_error() (the temporary is removed). */
int fs_write_atomic(const char *path, const void *data, size_t n);
void fs_fsync_dir(const char *dir);
/* fs_fsync_dir of the folder holding path, so that a newly created entry is durable too */
void fs_fsync_parent(const char *path);
/* All n bytes to fd (short writes and EINTR retried); 0, or -1 with mmrm_last_error()
 * naming path. */
int fs_write_fd(int fd, const void *p, size_t n, const char *path);
/* rm -rf (no error when absent) */
void fs_remove_tree(const char *path);

#endif
