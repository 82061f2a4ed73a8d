/* safetensors_write.c - the atomic writer (safetensors.h): one file byte for byte as the
 * Python package writes it, and a model directory as HF save_pretrained leaves it (one file,
 * or shards and model.safetensors.index.json). */
#include "runtime/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/safetensors_internal.h"
#include "runtime/strbuf.h"

/* A JSON string as serde_json writes it (the Rust crate's header) or, with ascii, as
 * Python's json.dumps does (HF's index: non-ASCII as \uXXXX, UTF-16 surrogate pairs). The
 * input is valid UTF-8 (checked before writing). */
static void put_json_string(StrBuf *b, const char *s, int ascii) {
    sb_putc(b, '"');
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; u[i];) {
        unsigned c = u[i];
        const char *esc = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t"
                                      : NULL;
        if (esc) {
            sb_puts(b, esc);
            i++;
        } else if (c < 0x20 || (ascii && c == 0x7f)) {
            sb_printf(b, "\\u%04x", c);
            i++;
        } else if (c < 0x80 || !ascii) {
            sb_putc(b, (char)c);
            i++;
        } else {
            size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            unsigned cp = c & (0x7f >> len);
            for (size_t k = 1; k < len; k++) cp = (cp << 6) | (u[i + k] & 0x3f);
            if (cp >= 0x10000)
                sb_printf(b, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10),
                          0xdc00 + ((cp - 0x10000) & 0x3ff));
            else
                sb_printf(b, "\\u%04x", cp);
            i += len;
        }
    }
    sb_putc(b, '"');
}

static size_t out_numel(const StTensorOut *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

static size_t out_nbytes(const StTensorOut *t) { return out_numel(t) * st_dtype_size(t->dtype); }

static int cmp_out_ptr_name(const void *a, const void *b) {
    return strcmp((*(const StTensorOut *const *)a)->name, (*(const StTensorOut *const *)b)->name);
}

static int cmp_meta_ptr_key(const void *a, const void *b) {
    return strcmp((*(const StMeta *const *)a)->key, (*(const StMeta *const *)b)->key);
}

/* The Rust crate lays tensors out by descending dtype (in its enum order F32 > I32 > BF16),
 * then by name; larger elements first also keeps every tensor aligned to its size. */
static int out_rank(StDType dt) { return dt == ST_F32 ? 0 : dt == ST_I32 ? 1 : 2; }

static int cmp_out_ptr_layout(const void *a, const void *b) {
    const StTensorOut *x = *(const StTensorOut *const *)a, *y = *(const StTensorOut *const *)b;
    int r = out_rank(x->dtype) - out_rank(y->dtype);
    return r ? r : strcmp(x->name, y->name);
}

static int valid_utf8(const char *s) {
    size_t n = strlen(s);
    return st_utf8_invalid_at((const unsigned char *)s, n) == n;
}

/* Everything that can be wrong with the caller's tensors, checked before any file is
 * touched. sorted receives the tensors in name order. */
static int check_outputs(const char *path, const StTensorOut *t, int n, const StMeta *meta,
                         int n_meta, const StTensorOut **sorted) {
    if (n < 0 || n_meta < 0 || (n > 0 && !t) || (n_meta > 0 && !meta)) {
        mmrm_set_error("cannot write %s: bad tensor or metadata list (%d tensors, %d pairs)",
                       path, n, n_meta);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const StTensorOut *o = &t[i];
        const char *name = o->name;
        if (!name || !valid_utf8(name) || strcmp(name, "__metadata__") == 0) {
            mmrm_set_error("cannot write %s: tensor %d: name %s", path, i,
                           !name ? "is missing" : !valid_utf8(name) ? "is not valid UTF-8"
                                                                   : "__metadata__ is reserved");
            return -1;
        }
        int ok = (o->src == DT_F32 || o->src == DT_BF16)
                     ? (o->dtype == ST_F32 || o->dtype == ST_BF16)
                     : (o->src == DT_I32 && o->dtype == ST_I32);
        if (!ok || (unsigned)o->dtype >= ST_NUM_DTYPES) {
            mmrm_set_error("cannot write %s: tensor %s: %s data cannot be stored as %s (F32 or "
                           "BF16 from f32/bf16, I32 from i32)", path, name, dtype_name(o->src),
                           (unsigned)o->dtype < ST_NUM_DTYPES ? st_dtype_name(o->dtype) : "?");
            return -1;
        }
        if (o->ndim < 0 || o->ndim > ST_MAX_DIMS) {
            mmrm_set_error("cannot write %s: tensor %s: rank %d is outside 0..%d", path, name,
                           o->ndim, ST_MAX_DIMS);
            return -1;
        }
        size_t bytes = st_dtype_size(o->dtype);
        for (int d = 0; d < o->ndim; d++)
            if (o->shape[d] < 0 || (uint64_t)o->shape[d] > (uint64_t)ST_MAX_JSON_INT ||
                __builtin_mul_overflow(bytes, (size_t)o->shape[d], &bytes)) {
                mmrm_set_error("cannot write %s: tensor %s: dimension %d (%lld) is negative or "
                               "too large", path, name, d, (long long)o->shape[d]);
                return -1;
            }
        if (bytes && !o->data) {
            mmrm_set_error("cannot write %s: tensor %s: data is NULL", path, name);
            return -1;
        }
        sorted[i] = o;
    }
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_out_ptr_name);
    for (int i = 1; i < n; i++)
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
            mmrm_set_error("cannot write %s: tensor %s: the name is given twice", path,
                           sorted[i]->name);
            return -1;
        }
    for (int i = 0; i < n_meta; i++) {
        const StMeta *m = &meta[i];
        if (!m->key || !m->value || !valid_utf8(m->key) || !valid_utf8(m->value)) {
            mmrm_set_error("cannot write %s: metadata pair %d: key and value must be UTF-8 "
                           "strings", path, i);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(meta[j].key, m->key) == 0) {
                mmrm_set_error("cannot write %s: metadata key %s is given twice", path, m->key);
                return -1;
            }
    }
    return 0;
}

/* An atomically replaced output file: content goes to "PATH.tmp.<pid>", which is fsynced
 * and renamed over PATH, so readers see the old file or the whole new one. */
typedef struct {
    const char *path;
    char *tmp;
    int fd;
} AtomicFile;

static int af_fail(AtomicFile *f, const char *what, int err) {
    mmrm_set_error("cannot write %s: %s %s: %s", f->path, what, f->tmp, strerror(err));
    if (f->fd >= 0) close(f->fd);
    unlink(f->tmp);
    free(f->tmp);
    f->tmp = NULL;
    f->fd = -1;
    return -1;
}

static int af_begin(AtomicFile *f, const char *path) {
    f->path = path;
    f->fd = -1;
    size_t len = strlen(path) + 32;
    f->tmp = xmalloc(len);
    snprintf(f->tmp, len, "%s.tmp.%ld", path, (long)getpid());
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (f->fd < 0) {
        mmrm_set_error("cannot write %s: cannot create %s: %s", path, f->tmp, strerror(errno));
        free(f->tmp);
        f->tmp = NULL;
        return -1;
    }
    return 0;
}

static int af_write(AtomicFile *f, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(f->fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return af_fail(f, "write to", w < 0 ? errno : ENOSPC);
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int af_commit(AtomicFile *f) {
    if (fsync(f->fd) != 0) return af_fail(f, "fsync of", errno);
    int rc = close(f->fd);
    f->fd = -1;
    if (rc != 0) return af_fail(f, "close of", errno);
    if (rename(f->tmp, f->path) != 0) return af_fail(f, "rename of", errno);
    free(f->tmp);
    f->tmp = NULL;
    /* the rename itself is durable only once the directory is synced */
    char *dir = st_dir_of(f->path);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = dfd < 0 ? errno : fsync(dfd) != 0 ? errno : 0;
    if (dfd >= 0) close(dfd);
    if (err && err != EINVAL) {
        mmrm_set_error("wrote %s but cannot sync its directory %s: %s", f->path, dir,
                       strerror(err));
        free(dir);
        return -1;
    }
    free(dir);
    return 0;
}

#define CONVERT_CHUNK 16384 /* elements converted per write when the dtype changes */

static int write_tensor_data(AtomicFile *f, const StTensorOut *o, void *scratch) {
    size_t n = out_numel(o);
    int convert = (o->src == DT_F32 && o->dtype == ST_BF16) ||
                  (o->src == DT_BF16 && o->dtype == ST_F32);
    if (!convert) return n ? af_write(f, o->data, n * st_dtype_size(o->dtype)) : 0;
    for (size_t i = 0; i < n; i += CONVERT_CHUNK) {
        size_t m = n - i < CONVERT_CHUNK ? n - i : CONVERT_CHUNK;
        if (o->src == DT_F32) {
            f32_to_bf16_array(scratch, (const float *)o->data + i, m);
            if (af_write(f, scratch, m * 2) != 0) return -1;
        } else {
            bf16_to_f32_array(scratch, (const uint16_t *)o->data + i, m);
            if (af_write(f, scratch, m * 4) != 0) return -1;
        }
    }
    return 0;
}

/* Writes already checked tensors (any order) and metadata as one file. */
static int save_checked(const char *path, const StTensorOut **t, int n, const StMeta *meta,
                        int n_meta) {
    const StTensorOut **order = xmalloc(((size_t)n + 1) * sizeof *order);
    const StMeta **mo = xmalloc(((size_t)n_meta + 1) * sizeof *mo);
    memcpy(order, t, (size_t)n * sizeof *order);
    qsort(order, (size_t)n, sizeof *order, cmp_out_ptr_layout);
    for (int i = 0; i < n_meta; i++) mo[i] = &meta[i];
    qsort(mo, (size_t)n_meta, sizeof *mo, cmp_meta_ptr_key);

    StrBuf h = {0};
    sb_puts(&h, "{");
    if (n_meta > 0) {
        sb_puts(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_puts(&h, ",");
            put_json_string(&h, mo[i]->key, 0);
            sb_puts(&h, ":");
            put_json_string(&h, mo[i]->value, 0);
        }
        sb_puts(&h, "}");
    }
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        const StTensorOut *o = order[i];
        if (i || n_meta > 0) sb_puts(&h, ",");
        put_json_string(&h, o->name, 0);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(o->dtype));
        for (int d = 0; d < o->ndim; d++) sb_printf(&h, d ? ",%lld" : "%lld", (long long)o->shape[d]);
        size_t nb = out_nbytes(o);
        sb_printf(&h, "],\"data_offsets\":[%zu,%zu]}", offset, offset + nb);
        offset += nb;
    }
    sb_puts(&h, "}");
    while (h.len % 8) sb_puts(&h, " ");
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (uint8_t)((uint64_t)h.len >> (8 * i));

    int rc = -1;
    void *scratch = xmalloc(CONVERT_CHUNK * 4);
    AtomicFile f;
    if (af_begin(&f, path) != 0) goto done;
    if (af_write(&f, len_le, 8) != 0 || af_write(&f, h.s, h.len) != 0) goto done;
    for (int i = 0; i < n; i++)
        if (write_tensor_data(&f, order[i], scratch) != 0) goto done;
    rc = af_commit(&f);
done:
    free(scratch);
    sb_free(&h);
    free(mo);
    free(order);
    return rc;
}

int st_save(const char *path, const StTensorOut *t, int n, const StMeta *meta, int n_meta) {
    const StTensorOut **sorted = xmalloc(((size_t)(n > 0 ? n : 0) + 1) * sizeof *sorted);
    int rc = check_outputs(path, t, n, meta, n_meta, sorted);
    if (rc == 0) rc = save_checked(path, sorted, n, meta, n_meta);
    free(sorted);
    return rc;
}

static int unlink_if_present(const char *path) {
    if (unlink(path) == 0 || errno == ENOENT) return 0;
    mmrm_set_error("cannot remove the outdated %s: %s", path, strerror(errno));
    return -1;
}

/* Index (1-based) and count of a shard file name "model-KKKKK-of-NNNNN.safetensors". */
static int parse_shard_name(const char *name, int *k, int *total) {
    static const char pattern[] = "model-00000-of-00000.safetensors";
    if (strlen(name) != sizeof pattern - 1) return -1;
    for (size_t i = 0; pattern[i]; i++)
        if (pattern[i] == '0' ? (name[i] < '0' || name[i] > '9') : name[i] != pattern[i])
            return -1;
    *k = atoi(name + 6);
    *total = atoi(name + 15);
    return 0;
}

/* Removes what an older save left in dir that the new one (n_shards shards, 0 for a single
 * model.safetensors) does not use. */
static int remove_stale(const char *dir, int n_shards) {
    char *single = st_path_join(dir, ST_SINGLE_NAME);
    char *index = st_path_join(dir, ST_INDEX_NAME);
    int rc = unlink_if_present(n_shards ? single : index);
    free(single);
    free(index);
    if (rc != 0) return -1;
    DIR *d = opendir(dir);
    if (!d) {
        mmrm_set_error("cannot list %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        int k, total;
        if (parse_shard_name(de->d_name, &k, &total) != 0) continue;
        if (total == n_shards && k >= 1 && k <= n_shards) continue;
        char *p = st_path_join(dir, de->d_name);
        rc = unlink_if_present(p);
        free(p);
    }
    closedir(d);
    return rc;
}

int st_save_sharded(const char *dir, const StTensorOut *t, int n, const StMeta *meta,
                    int n_meta, size_t max_shard_bytes) {
    const StTensorOut **sorted = xmalloc(((size_t)(n > 0 ? n : 0) + 1) * sizeof *sorted);
    int *shard_of = xcalloc((size_t)(n > 0 ? n : 0) + 1, sizeof *shard_of);
    char *path = NULL;
    StrBuf idx = {0};
    int rc = check_outputs(dir, t, n, meta, n_meta, sorted);
    if (rc != 0) goto done;
    int n_shards = 1;
    size_t fill = 0, total = 0;
    for (int i = 0; i < n; i++) {
        size_t nb = out_nbytes(sorted[i]);
        if (fill > 0 && fill + nb > max_shard_bytes) {
            n_shards++;
            fill = 0;
        }
        fill += nb;
        total += nb;
        shard_of[i] = n_shards - 1;
    }
    if (n_shards == 1) {
        path = st_path_join(dir, ST_SINGLE_NAME);
        rc = save_checked(path, sorted, n, meta, n_meta);
        if (rc == 0) rc = remove_stale(dir, 0);
        goto done;
    }
    char name[64];
    for (int s = 0, first = 0; s < n_shards; s++) {
        int last = first;
        while (last < n && shard_of[last] == s) last++;
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        free(path);
        path = st_path_join(dir, name);
        if ((rc = save_checked(path, sorted + first, last - first, meta, n_meta)) != 0)
            goto done;
        first = last;
    }
    /* json.dumps(index, indent=2, sort_keys=True) + "\n", as transformers writes it */
    sb_printf(&idx, "{\n  \"metadata\": {\n    \"total_size\": %zu\n  },\n", total);
    sb_puts(&idx, "  \"weight_map\": {");
    for (int i = 0; i < n; i++) {
        sb_puts(&idx, i ? ",\n    " : "\n    ");
        put_json_string(&idx, sorted[i]->name, 1);
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", shard_of[i] + 1, n_shards);
        sb_printf(&idx, ": \"%s\"", name);
    }
    sb_puts(&idx, "\n  }\n}\n");
    free(path);
    path = st_path_join(dir, ST_INDEX_NAME);
    AtomicFile f;
    rc = af_begin(&f, path);
    if (rc == 0) rc = af_write(&f, idx.s, idx.len);
    if (rc == 0) rc = af_commit(&f);
    if (rc == 0) rc = remove_stale(dir, n_shards);
done:
    sb_free(&idx);
    free(path);
    free(shard_of);
    free(sorted);
    return rc;
}

