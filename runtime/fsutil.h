/* fsutil.h - file-system helpers for durable outputs: create directory trees, replace a
 * file atomically (temporary file, fsync, rename, fsync of the directory), remove a tree. */
#ifndef MMRM_FSUTIL_H
#define MMRM_FSUTIL_H

#include <stddef.h>

/* mkdir -p; 0, or -1 with mmrm_last_error() naming the directory */
int fs_mkdir_p(const char *dir);
/* Writes n bytes to path through "path.tmp.<pid>": the old file stays intact until the new
 * one is complete and synced. 0, or -1 with mmrm_last_error() (the temporary is removed). */
int fs_write_atomic(const char *path, const void *data, size_t n);
void fs_fsync_dir(const char *dir);
/* rm -rf (no error when absent) */
void fs_remove_tree(const char *path);

#endif
