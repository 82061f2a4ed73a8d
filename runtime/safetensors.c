/* safetensors.c - the safetensors reader (mmap + a fully validated header), the model
 * weights view over one file or an index with shards, and the atomic writer.
 *
 * Validation follows the reference Rust crate (safetensors/src/tensor.rs): header length at
 * most 100 MB and inside the file, UTF-8 JSON object, each tensor a known dtype with a
 * non-negative shape whose byte size equals its [begin, end) range, and the ranges, sorted,
 * tiling the data section exactly. On top of that, duplicate names (which cJSON keeps) and
 * \u0000 escapes (which would cut cJSON's C strings short) are errors. The header is copied
 * out of the mapping before parsing so the parser never reads the mapping past its length.
 */
#include "runtime/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "runtime/error.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data is little-endian and is read in place");

#define MAX_JSON_INT 9007199254740992.0 /* 2^53: larger integers are not exact in cJSON */
#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

/* ---------------------------------------------------------------- dtypes */

static const struct {
    const char *name;
    size_t size;
} g_dtypes[ST_NUM_DTYPES] = {
    [ST_F32] = {"F32", 4},     [ST_BF16] = {"BF16", 2},   [ST_F16] = {"F16", 2},
    [ST_I32] = {"I32", 4},     [ST_I64] = {"I64", 8},     [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1},   [ST_F64] = {"F64", 8},     [ST_I8] = {"I8", 1},
    [ST_I16] = {"I16", 2},     [ST_U16] = {"U16", 2},     [ST_U32] = {"U32", 4},
    [ST_U64] = {"U64", 8},     [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(StDType dt) { return g_dtypes[dt].name; }
size_t st_dtype_size(StDType dt) { return g_dtypes[dt].size; }

static int dtype_from_name(const char *s, StDType *dt) {
    for (int i = 0; i < ST_NUM_DTYPES; i++)
        if (strcmp(s, g_dtypes[i].name) == 0) {
            *dt = (StDType)i;
            return 0;
        }
    return -1;
}

/* ------------------------------------------------------- JSON text checks */

/* Offset of the first byte that does not start a well-formed UTF-8 sequence (overlong
 * forms, surrogates and code points past U+10FFFF included), or n. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned min, cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { len = 2; min = 0x80; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; min = 0x800; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; min = 0x10000; cp = c & 0x07; }
        else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

/* Checks the raw JSON text before cJSON sees it: UTF-8 as the format requires, no NUL byte
 * and no \u0000 escape, either of which would make cJSON's C strings silently shorter than
 * the JSON ones (two distinct names could then collide). */
static int check_json_text(const char *path, const char *what, const char *s, size_t n) {
    size_t bad = utf8_invalid_at((const unsigned char *)s, n);
    if (bad < n) {
        mmrm_set_error("%s: %s is not valid UTF-8 (byte %zu)", path, what, bad);
        return -1;
    }
    const char *nul = memchr(s, 0, n);
    if (nul) {
        mmrm_set_error("%s: %s holds a NUL byte at byte %zu", path, what, (size_t)(nul - s));
        return -1;
    }
    int in_string = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in_string) {
            in_string = s[i] == '"';
        } else if (s[i] == '"') {
            in_string = 0;
        } else if (s[i] == '\\') {
            if (n - i >= 6 && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0) {
                mmrm_set_error("%s: %s holds a \\u0000 escape at byte %zu (NUL characters "
                               "are not supported in names)", path, what, i);
                return -1;
            }
            i++;
        }
    }
    return 0;
}

/* Parses n bytes of JSON that must be exactly one value (whitespace may follow it). */
static cJSON *parse_json(const char *path, const char *what, const char *s, size_t n) {
    if (check_json_text(path, what, s, n) != 0) return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (!root) {
        size_t at = end && end >= s && end <= s + n ? (size_t)(end - s) : 0;
        mmrm_set_error("%s: %s is not valid JSON (error near byte %zu of %zu)", path, what, at,
                       n);
        return NULL;
    }
    for (const char *p = end; p < s + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            mmrm_set_error("%s: %s has bytes after its JSON value (byte %zu)", path, what,
                           (size_t)(p - s));
            cJSON_Delete(root);
            return NULL;
        }
    return root;
}

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    return "invalid";
}

/* A non-negative integer that cJSON holds exactly. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= MAX_JSON_INT) || d != (double)(uint64_t)d) return -1;
    *out = (uint64_t)d;
    return 0;
}

/* ------------------------------------------------------------ the reader */

struct SafeTensors {
    char *path;
    const uint8_t *map; /* the whole file */
    size_t map_size;
    StEntry *entries;   /* (n) in name order; names owned */
    int n;
    StMeta *meta;       /* (n_meta) in key order; strings owned */
    int n_meta;
};

typedef struct {
    uint64_t begin, end;
    int idx;
} Range;

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp(((const StEntry *)a)->name, ((const StEntry *)b)->name);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_meta_key(const void *a, const void *b) {
    return strcmp(((const StMeta *)a)->key, ((const StMeta *)b)->key);
}

static int cmp_range(const void *a, const void *b) {
    const Range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int parse_metadata(SafeTensors *st, const cJSON *m) {
    if (cJSON_IsNull(m)) return 0;
    if (!cJSON_IsObject(m)) {
        mmrm_set_error("%s: __metadata__ is %s, expected an object of strings", st->path,
                       json_type_name(m));
        return -1;
    }
    int count = cJSON_GetArraySize(m);
    st->meta = xcalloc((size_t)count, sizeof *st->meta);
    for (const cJSON *kv = m->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv)) {
            mmrm_set_error("%s: __metadata__ key %s: value is %s, expected a string", st->path,
                           kv->string, json_type_name(kv));
            return -1;
        }
        st->meta[st->n_meta].key = xstrdup(kv->string);
        st->meta[st->n_meta].value = xstrdup(kv->valuestring);
        st->n_meta++;
    }
    qsort(st->meta, (size_t)st->n_meta, sizeof *st->meta, cmp_meta_key);
    for (int i = 1; i < st->n_meta; i++)
        if (strcmp(st->meta[i - 1].key, st->meta[i].key) == 0) {
            mmrm_set_error("%s: __metadata__ key %s appears twice", st->path, st->meta[i].key);
            return -1;
        }
    return 0;
}

/* Fills e (name already set) and its byte range from one header entry. */
static int parse_entry(const SafeTensors *st, const cJSON *item, StEntry *e, Range *r) {
    const char *path = st->path, *name = e->name;
    if (!cJSON_IsObject(item)) {
        mmrm_set_error("%s: tensor %s: entry is %s, expected an object with dtype, shape and "
                       "data_offsets", path, name, json_type_name(item));
        return -1;
    }
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const cJSON *f = item->child; f; f = f->next) {
        const cJSON **slot = strcmp(f->string, "dtype") == 0          ? &dtype
                             : strcmp(f->string, "shape") == 0        ? &shape
                             : strcmp(f->string, "data_offsets") == 0 ? &offsets
                                                                      : NULL;
        if (!slot) continue; /* other fields are ignored, as by the Rust crate */
        if (*slot) {
            mmrm_set_error("%s: tensor %s: field %s appears twice", path, name, f->string);
            return -1;
        }
        *slot = f;
    }
    const char *missing = !dtype ? "dtype" : !shape ? "shape" : !offsets ? "data_offsets" : NULL;
    if (missing) {
        mmrm_set_error("%s: tensor %s: field %s is missing", path, name, missing);
        return -1;
    }
    if (!cJSON_IsString(dtype)) {
        mmrm_set_error("%s: tensor %s: dtype is %s, expected a string like \"BF16\"", path,
                       name, json_type_name(dtype));
        return -1;
    }
    if (dtype_from_name(dtype->valuestring, &e->dtype) != 0) {
        mmrm_set_error("%s: tensor %s: unknown dtype \"%s\" (known: F32 BF16 F16 I32 I64 U8 "
                       "BOOL F64 I8 I16 U16 U32 U64 F8_E4M3 F8_E5M2)", path, name,
                       dtype->valuestring);
        return -1;
    }
    if (!cJSON_IsArray(shape)) {
        mmrm_set_error("%s: tensor %s: shape is %s, expected an array of integers", path, name,
                       json_type_name(shape));
        return -1;
    }
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS) {
        mmrm_set_error("%s: tensor %s: shape has %d dims, more than the %d supported", path,
                       name, ndim, ST_MAX_DIMS);
        return -1;
    }
    e->ndim = ndim;
    e->numel = 1;
    int d = 0;
    for (const cJSON *v = shape->child; v; v = v->next, d++) {
        uint64_t dim;
        if (json_uint(v, &dim) != 0) {
            if (cJSON_IsNumber(v))
                mmrm_set_error("%s: tensor %s: shape[%d] is %g, expected a non-negative integer",
                               path, name, d, v->valuedouble);
            else
                mmrm_set_error("%s: tensor %s: shape[%d] is %s, expected a non-negative integer",
                               path, name, d, json_type_name(v));
            return -1;
        }
        e->shape[d] = (int64_t)dim;
        if (__builtin_mul_overflow(e->numel, (size_t)dim, &e->numel)) {
            mmrm_set_error("%s: tensor %s: the shape's element count overflows", path, name);
            return -1;
        }
    }
    if (__builtin_mul_overflow(e->numel, st_dtype_size(e->dtype), &e->nbytes)) {
        mmrm_set_error("%s: tensor %s: the shape's byte size overflows", path, name);
        return -1;
    }
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        json_uint(offsets->child, &r->begin) != 0 || json_uint(offsets->child->next, &r->end) != 0) {
        mmrm_set_error("%s: tensor %s: data_offsets must be [begin, end], two non-negative "
                       "integers", path, name);
        return -1;
    }
    if (r->end < r->begin) {
        mmrm_set_error("%s: tensor %s: data_offsets [%llu, %llu] end before they begin", path,
                       name, (unsigned long long)r->begin, (unsigned long long)r->end);
        return -1;
    }
    return 0;
}

static void describe_shape(const StEntry *e, char *buf, size_t len) {
    int o = snprintf(buf, len, "(");
    for (int i = 0; i < e->ndim && o > 0 && (size_t)o < len; i++)
        o += snprintf(buf + o, len - o, i ? ", %lld" : "%lld", (long long)e->shape[i]);
    if (o > 0 && (size_t)o < len) snprintf(buf + o, len - o, ")");
}

/* Each range holds exactly its tensor's bytes, and the ranges tile [0, data_size). */
static int check_layout(const SafeTensors *st, Range *r, size_t data_size) {
    for (int i = 0; i < st->n; i++) {
        const StEntry *e = &st->entries[r[i].idx];
        if (r[i].end > data_size) {
            mmrm_set_error("%s: tensor %s: data_offsets [%llu, %llu] run past the end of the "
                           "data section (%zu bytes; truncated file?)", st->path, e->name,
                           (unsigned long long)r[i].begin, (unsigned long long)r[i].end,
                           data_size);
            return -1;
        }
        if (r[i].end - r[i].begin != e->nbytes) {
            char shp[160];
            describe_shape(e, shp, sizeof shp);
            mmrm_set_error("%s: tensor %s: data_offsets span %llu bytes but shape %s of %s "
                           "needs %zu", st->path, e->name,
                           (unsigned long long)(r[i].end - r[i].begin), shp,
                           st_dtype_name(e->dtype), e->nbytes);
            return -1;
        }
    }
    qsort(r, (size_t)st->n, sizeof *r, cmp_range);
    uint64_t covered = 0;
    for (int i = 0; i < st->n; i++) {
        const char *name = st->entries[r[i].idx].name;
        if (r[i].begin < covered) {
            mmrm_set_error("%s: tensor %s: data_offsets [%llu, %llu] overlap tensor %s "
                           "[%llu, %llu]", st->path, name, (unsigned long long)r[i].begin,
                           (unsigned long long)r[i].end, st->entries[r[i - 1].idx].name,
                           (unsigned long long)r[i - 1].begin, (unsigned long long)r[i - 1].end);
            return -1;
        }
        if (r[i].begin > covered) {
            mmrm_set_error("%s: tensor %s: data_offsets [%llu, %llu] leave a hole: bytes "
                           "[%llu, %llu) of the data section belong to no tensor", st->path,
                           name, (unsigned long long)r[i].begin, (unsigned long long)r[i].end,
                           (unsigned long long)covered, (unsigned long long)r[i].begin);
            return -1;
        }
        covered = r[i].end;
    }
    if (covered != data_size) {
        mmrm_set_error("%s: bytes [%llu, %zu) of the data section belong to no tensor "
                       "(trailing bytes)", st->path, (unsigned long long)covered, data_size);
        return -1;
    }
    return 0;
}

static int parse_header(SafeTensors *st, const char *text, size_t n) {
    cJSON *root = parse_json(st->path, "header", text, n);
    if (!root) return -1;
    int rc = -1;
    Range *ranges = NULL;
    const char **names = NULL;
    if (!cJSON_IsObject(root)) {
        mmrm_set_error("%s: header is %s, expected a JSON object of tensors", st->path,
                       json_type_name(root));
        goto done;
    }
    int count = cJSON_GetArraySize(root);
    st->entries = xcalloc((size_t)count, sizeof *st->entries);
    ranges = xcalloc((size_t)count, sizeof *ranges);
    int seen_meta = 0;
    for (const cJSON *item = root->child; item; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (seen_meta++) {
                mmrm_set_error("%s: __metadata__ appears twice", st->path);
                goto done;
            }
            if (parse_metadata(st, item) != 0) goto done;
            continue;
        }
        StEntry *e = &st->entries[st->n];
        e->name = xstrdup(item->string);
        st->n++;
        ranges[st->n - 1].idx = st->n - 1;
        if (parse_entry(st, item, e, &ranges[st->n - 1]) != 0) goto done;
    }
    /* duplicates first: a repeated entry would otherwise be reported as overlapping itself */
    names = xmalloc(((size_t)st->n + 1) * sizeof *names);
    for (int i = 0; i < st->n; i++) names[i] = st->entries[i].name;
    qsort(names, (size_t)st->n, sizeof *names, cmp_str_ptr);
    for (int i = 1; i < st->n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            mmrm_set_error("%s: tensor %s: the name appears twice in the header", st->path,
                           names[i]);
            goto done;
        }
    size_t data_size = st->map_size - 8 - n;
    if (check_layout(st, ranges, data_size) != 0) goto done;
    const uint8_t *data = st->map + 8 + n;
    for (int i = 0; i < st->n; i++) st->entries[ranges[i].idx].data = data + ranges[i].begin;
    /* sorting the entries comes last: ranges index them in header order */
    qsort(st->entries, (size_t)st->n, sizeof *st->entries, cmp_entry_name);
    rc = 0;
done:
    free(names);
    free(ranges);
    cJSON_Delete(root);
    return rc;
}

SafeTensors *st_open(const char *path) {
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (fstat then rejects it) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        mmrm_set_error("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        mmrm_set_error("cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(sb.st_mode)) {
        mmrm_set_error("cannot read %s: %s", path,
                       S_ISDIR(sb.st_mode) ? "it is a directory (expected a .safetensors file)"
                                           : "not a regular file");
        close(fd);
        return NULL;
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        mmrm_set_error("%s: file is %zu bytes, too short for the 8-byte header length (not a "
                       "safetensors file?)", path, size);
        close(fd);
        return NULL;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        mmrm_set_error("cannot map %s: %s", path, strerror(map_errno));
        return NULL;
    }
    SafeTensors *st = xcalloc(1, sizeof *st);
    st->path = xstrdup(path);
    st->map = map;
    st->map_size = size;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | st->map[i];
    if (n > ST_MAX_HEADER_BYTES) {
        mmrm_set_error("%s: header length %llu is over the %u-byte limit (not a safetensors "
                       "file?)", path, (unsigned long long)n, ST_MAX_HEADER_BYTES);
        goto fail;
    }
    if (n > size - 8) {
        mmrm_set_error("%s: header length %llu runs past the end of the %zu-byte file "
                       "(truncated?)", path, (unsigned long long)n, size);
        goto fail;
    }
    char *text = xmalloc((size_t)n + 1);
    memcpy(text, st->map + 8, (size_t)n);
    text[n] = 0;
    int rc = parse_header(st, text, (size_t)n);
    free(text);
    if (rc != 0) goto fail;
    return st;
fail:
    st_close(st);
    return NULL;
}

void st_close(SafeTensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free((char *)st->entries[i].name);
    for (int i = 0; i < st->n_meta; i++) {
        free((char *)st->meta[i].key);
        free((char *)st->meta[i].value);
    }
    free(st->entries);
    free(st->meta);
    munmap((void *)st->map, st->map_size);
    free(st->path);
    free(st);
}

const char *st_path(const SafeTensors *st) { return st->path; }
int st_count(const SafeTensors *st) { return st->n; }
const StEntry *st_get(const SafeTensors *st, int i) { return &st->entries[i]; }
int st_meta_count(const SafeTensors *st) { return st->n_meta; }
const StMeta *st_meta_at(const SafeTensors *st, int i) { return &st->meta[i]; }

const StEntry *st_find(const SafeTensors *st, const char *name) {
    StEntry key = {.name = name};
    const StEntry *e = bsearch(&key, st->entries, (size_t)st->n, sizeof key, cmp_entry_name);
    if (!e) mmrm_set_error("%s: tensor %s: not found", st->path, name);
    return e;
}

const char *st_meta_get(const SafeTensors *st, const char *key) {
    StMeta k = {.key = key};
    const StMeta *m = bsearch(&k, st->meta, (size_t)st->n_meta, sizeof k, cmp_meta_key);
    return m ? m->value : NULL;
}

int st_check_shape(const SafeTensors *st, const StEntry *e, int ndim, const int *shape) {
    int same = e->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = e->shape[i] == shape[i];
    if (same) return 0;
    char got[160], want[160];
    StEntry w = {.ndim = ndim < 0 ? 0 : ndim > ST_MAX_DIMS ? ST_MAX_DIMS : ndim};
    for (int i = 0; i < w.ndim; i++) w.shape[i] = shape[i];
    describe_shape(e, got, sizeof got);
    describe_shape(&w, want, sizeof want);
    mmrm_set_error("%s: tensor %s: shape %s in the file, %s expected", st->path, e->name, got,
                   want);
    return -1;
}

/* ------------------------------------------------------ reading values */

/* IEEE binary16 to binary32, exact for every input (NaN payloads kept). */
static inline float f32_from_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp) {
        u = sign | ((exp + 112) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else {
        float f = (float)man * 0x1p-24f; /* subnormal (or zero): man * 2^-24, exact */
        memcpy(&u, &f, 4);
        u |= sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int check_read(const SafeTensors *st, const StEntry *e, size_t n, const char *as,
                      int ok) {
    if (!ok) {
        mmrm_set_error("%s: tensor %s: dtype %s is unsupported as %s (f32 and bf16 reads take "
                       "F32, BF16, F16; i32 reads take I32, I64, U8, BOOL)", st->path, e->name,
                       st_dtype_name(e->dtype), as);
        return -1;
    }
    if (n != e->numel) {
        mmrm_set_error("%s: tensor %s: has %zu elements, the destination %zu", st->path,
                       e->name, e->numel, n);
        return -1;
    }
    return 0;
}

/* Loads go through memcpy because a tensor's bytes need not be aligned in the file. */
int st_read_f32(const SafeTensors *st, const StEntry *e, float *dst, size_t n) {
    const uint8_t *src = e->data;
    if (check_read(st, e, n, "f32",
                   e->dtype == ST_F32 || e->dtype == ST_BF16 || e->dtype == ST_F16) != 0)
        return -1;
    if (e->dtype == ST_F32) {
        if (n) memcpy(dst, src, n * 4);
    } else if (e->dtype == ST_BF16) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            uint16_t b;
            memcpy(&b, src + 2 * i, 2);
            dst[i] = f32_from_bf16(b);
        }
    } else {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = f32_from_f16(h);
        }
    }
    return 0;
}

int st_read_bf16(const SafeTensors *st, const StEntry *e, uint16_t *dst, size_t n) {
    const uint8_t *src = e->data;
    if (check_read(st, e, n, "bf16",
                   e->dtype == ST_F32 || e->dtype == ST_BF16 || e->dtype == ST_F16) != 0)
        return -1;
    if (e->dtype == ST_BF16) {
        if (n) memcpy(dst, src, n * 2);
    } else if (e->dtype == ST_F32) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            float f;
            memcpy(&f, src + 4 * i, 4);
            dst[i] = bf16_from_f32(f);
        }
    } else {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = bf16_from_f32(f32_from_f16(h));
        }
    }
    return 0;
}

int st_read_i32(const SafeTensors *st, const StEntry *e, int32_t *dst, size_t n) {
    const uint8_t *src = e->data;
    if (check_read(st, e, n, "i32",
                   e->dtype == ST_I32 || e->dtype == ST_I64 || e->dtype == ST_U8 ||
                       e->dtype == ST_BOOL) != 0)
        return -1;
    if (e->dtype == ST_I32) {
        if (n) memcpy(dst, src, n * 4);
    } else if (e->dtype == ST_I64) {
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, src + 8 * i, 8);
            if (v < INT32_MIN || v > INT32_MAX) {
                mmrm_set_error("%s: tensor %s: element %zu is %lld, outside the int32 range",
                               st->path, e->name, i, (long long)v);
                return -1;
            }
            dst[i] = (int32_t)v;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            if (e->dtype == ST_BOOL && src[i] > 1) {
                mmrm_set_error("%s: tensor %s: element %zu is byte %u, not a BOOL (0 or 1)",
                               st->path, e->name, i, src[i]);
                return -1;
            }
            dst[i] = src[i];
        }
    }
    return 0;
}

/* ------------------------------------------------------- model weights */

typedef struct {
    const StEntry *e;
    int shard;
} MwItem;

struct ModelWeights {
    char *path;
    SafeTensors **shards; /* (n_shards) */
    int n_shards;
    MwItem *items;        /* (n) in name order */
    int n;
};

static int cmp_item_name(const void *a, const void *b) {
    return strcmp(((const MwItem *)a)->e->name, ((const MwItem *)b)->e->name);
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = xmalloc(a + b + 2);
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* The directory part of path ("." when it has none). */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    char *d = xmalloc((size_t)(slash - path) + 1);
    memcpy(d, path, (size_t)(slash - path));
    d[slash - path] = 0;
    return d;
}

static int is_regular_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static char *read_small_file(const char *path, size_t max, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        mmrm_set_error("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap > max) break;
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err || n > max) {
        if (err)
            mmrm_set_error("cannot read %s: read error", path);
        else
            mmrm_set_error("%s: larger than the %zu-byte limit", path, max);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

typedef struct {
    const char *name, *shard;
} MapPair;

static int cmp_pair_shard(const void *a, const void *b) {
    const MapPair *x = a, *y = b;
    int c = strcmp(x->shard, y->shard);
    return c ? c : strcmp(x->name, y->name);
}

static int open_index(ModelWeights *w, const char *index_path) {
    size_t len;
    char *text = read_small_file(index_path, ST_MAX_HEADER_BYTES, &len);
    if (!text) return -1;
    cJSON *root = parse_json(index_path, "index", text, len);
    free(text);
    if (!root) return -1;
    int rc = -1;
    MapPair *pairs = NULL;
    char *dir = dir_of(index_path);
    const cJSON *map = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map")
                                            : NULL;
    if (!cJSON_IsObject(map)) {
        mmrm_set_error("%s: no \"weight_map\" object (expected {\"metadata\": ..., "
                       "\"weight_map\": {tensor: shard file}})", index_path);
        goto done;
    }
    int n = cJSON_GetArraySize(map);
    pairs = xcalloc((size_t)n, sizeof *pairs);
    int k = 0;
    for (const cJSON *kv = map->child; kv; kv = kv->next, k++) {
        const char *s = cJSON_IsString(kv) ? kv->valuestring : NULL;
        if (!s || !s[0] || strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
            mmrm_set_error("%s: tensor %s: weight_map value must be a shard file name in the "
                           "same directory", index_path, kv->string);
            goto done;
        }
        pairs[k] = (MapPair){kv->string, s};
    }
    qsort(pairs, (size_t)n, sizeof *pairs, cmp_pair_shard);
    w->shards = xcalloc((size_t)n, sizeof *w->shards);
    w->items = xcalloc((size_t)n, sizeof *w->items);
    for (int i = 0; i < n; i++) {
        if (i == 0 || strcmp(pairs[i].shard, pairs[i - 1].shard) != 0) {
            char *shard_path = path_join(dir, pairs[i].shard);
            SafeTensors *st = st_open(shard_path);
            free(shard_path);
            if (!st) {
                char why[1024];
                snprintf(why, sizeof why, "%s", mmrm_last_error());
                mmrm_set_error("%s: shard %s (listed for tensor %s) cannot be loaded: %s",
                               index_path, pairs[i].shard, pairs[i].name, why);
                goto done;
            }
            w->shards[w->n_shards++] = st;
        }
        SafeTensors *st = w->shards[w->n_shards - 1];
        StEntry key = {.name = pairs[i].name};
        const StEntry *e = bsearch(&key, st->entries, (size_t)st->n, sizeof key, cmp_entry_name);
        if (!e) {
            mmrm_set_error("%s: tensor %s: listed in shard %s but absent from it", index_path,
                           pairs[i].name, pairs[i].shard);
            goto done;
        }
        w->items[w->n++] = (MwItem){e, w->n_shards - 1};
    }
    qsort(w->items, (size_t)w->n, sizeof *w->items, cmp_item_name);
    for (int i = 1; i < w->n; i++)
        if (strcmp(w->items[i - 1].e->name, w->items[i].e->name) == 0) {
            mmrm_set_error("%s: tensor %s: listed twice in weight_map", index_path,
                           w->items[i].e->name);
            goto done;
        }
    for (int s = 0; s < w->n_shards; s++)
        for (int i = 0; i < w->shards[s]->n; i++) {
            MwItem key = {.e = &w->shards[s]->entries[i]};
            const MwItem *it = bsearch(&key, w->items, (size_t)w->n, sizeof key, cmp_item_name);
            if (!it || it->shard != s) {
                mmrm_set_error("%s: tensor %s: present in the shard but not listed for it in %s",
                               w->shards[s]->path, key.e->name, index_path);
                goto done;
            }
        }
    rc = 0;
done:
    free(dir);
    free(pairs);
    cJSON_Delete(root);
    return rc;
}

static int open_single(ModelWeights *w, const char *file) {
    SafeTensors *st = st_open(file);
    if (!st) return -1;
    w->shards = xcalloc(1, sizeof *w->shards);
    w->shards[0] = st;
    w->n_shards = 1;
    w->items = xcalloc((size_t)st->n, sizeof *w->items);
    for (int i = 0; i < st->n; i++) w->items[i] = (MwItem){&st->entries[i], 0};
    w->n = st->n;
    return 0;
}

ModelWeights *mw_open(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        mmrm_set_error("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    ModelWeights *w = xcalloc(1, sizeof *w);
    w->path = xstrdup(path);
    int rc;
    if (S_ISDIR(sb.st_mode)) {
        char *single = path_join(path, SINGLE_NAME), *index = path_join(path, INDEX_NAME);
        if (is_regular_file(single)) {
            rc = open_single(w, single);
        } else if (is_regular_file(index)) {
            rc = open_index(w, index);
        } else {
            mmrm_set_error("%s: no %s or %s in this directory", path, SINGLE_NAME, INDEX_NAME);
            rc = -1;
        }
        free(single);
        free(index);
    } else {
        rc = ends_with(path, ".json") ? open_index(w, path) : open_single(w, path);
    }
    if (rc != 0) {
        mw_close(w);
        return NULL;
    }
    return w;
}

void mw_close(ModelWeights *w) {
    if (!w) return;
    for (int i = 0; i < w->n_shards; i++) st_close(w->shards[i]);
    free(w->shards);
    free(w->items);
    free(w->path);
    free(w);
}

int mw_count(const ModelWeights *w) { return w->n; }

const StEntry *mw_get(const ModelWeights *w, int i, const SafeTensors **file) {
    if (file) *file = w->shards[w->items[i].shard];
    return w->items[i].e;
}

const StEntry *mw_find(const ModelWeights *w, const char *name, const SafeTensors **file) {
    StEntry e = {.name = name};
    MwItem key = {.e = &e};
    const MwItem *it = bsearch(&key, w->items, (size_t)w->n, sizeof key, cmp_item_name);
    if (!it) {
        mmrm_set_error("%s: tensor %s: not found", w->path, name);
        return NULL;
    }
    if (file) *file = w->shards[it->shard];
    return it->e;
}

/* ------------------------------------------------------------- writing */

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void buf_str(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

__attribute__((format(printf, 2, 3))) static void buf_printf(Buf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string as serde_json writes it (the Rust crate's header) or, with ascii, as
 * Python's json.dumps does (HF's index: non-ASCII as \uXXXX, UTF-16 surrogate pairs). The
 * input is valid UTF-8 (checked before writing). */
static void buf_json_string(Buf *b, const char *s, int ascii) {
    buf_put(b, "\"", 1);
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
            buf_str(b, esc);
            i++;
        } else if (c < 0x20 || (ascii && c == 0x7f)) {
            buf_printf(b, "\\u%04x", c);
            i++;
        } else if (c < 0x80 || !ascii) {
            buf_put(b, (const char *)&u[i], 1);
            i++;
        } else {
            size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            unsigned cp = c & (0x7f >> len);
            for (size_t k = 1; k < len; k++) cp = (cp << 6) | (u[i + k] & 0x3f);
            if (cp >= 0x10000)
                buf_printf(b, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10),
                           0xdc00 + ((cp - 0x10000) & 0x3ff));
            else
                buf_printf(b, "\\u%04x", cp);
            i += len;
        }
    }
    buf_put(b, "\"", 1);
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
    return utf8_invalid_at((const unsigned char *)s, n) == n;
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
            if (o->shape[d] < 0 || (uint64_t)o->shape[d] > (uint64_t)MAX_JSON_INT ||
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
    char *dir = dir_of(f->path);
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

    Buf h = {0};
    buf_str(&h, "{");
    if (n_meta > 0) {
        buf_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) buf_str(&h, ",");
            buf_json_string(&h, mo[i]->key, 0);
            buf_str(&h, ":");
            buf_json_string(&h, mo[i]->value, 0);
        }
        buf_str(&h, "}");
    }
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        const StTensorOut *o = order[i];
        if (i || n_meta > 0) buf_str(&h, ",");
        buf_json_string(&h, o->name, 0);
        buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(o->dtype));
        for (int d = 0; d < o->ndim; d++) buf_printf(&h, d ? ",%lld" : "%lld", (long long)o->shape[d]);
        size_t nb = out_nbytes(o);
        buf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", offset, offset + nb);
        offset += nb;
    }
    buf_str(&h, "}");
    while (h.len % 8) buf_str(&h, " ");
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (uint8_t)((uint64_t)h.len >> (8 * i));

    int rc = -1;
    void *scratch = xmalloc(CONVERT_CHUNK * 4);
    AtomicFile f;
    if (af_begin(&f, path) != 0) goto done;
    if (af_write(&f, len_le, 8) != 0 || af_write(&f, h.p, h.len) != 0) goto done;
    for (int i = 0; i < n; i++)
        if (write_tensor_data(&f, order[i], scratch) != 0) goto done;
    rc = af_commit(&f);
done:
    free(scratch);
    free(h.p);
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
    char *single = path_join(dir, SINGLE_NAME), *index = path_join(dir, INDEX_NAME);
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
        char *p = path_join(dir, de->d_name);
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
    Buf idx = {0};
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
        path = path_join(dir, SINGLE_NAME);
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
        path = path_join(dir, name);
        if ((rc = save_checked(path, sorted + first, last - first, meta, n_meta)) != 0)
            goto done;
        first = last;
    }
    /* json.dumps(index, indent=2, sort_keys=True) + "\n", as transformers writes it */
    buf_printf(&idx, "{\n  \"metadata\": {\n    \"total_size\": %zu\n  },\n", total);
    buf_str(&idx, "  \"weight_map\": {");
    for (int i = 0; i < n; i++) {
        buf_str(&idx, i ? ",\n    " : "\n    ");
        buf_json_string(&idx, sorted[i]->name, 1);
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", shard_of[i] + 1, n_shards);
        buf_printf(&idx, ": \"%s\"", name);
    }
    buf_str(&idx, "\n  }\n}\n");
    free(path);
    path = path_join(dir, INDEX_NAME);
    AtomicFile f;
    rc = af_begin(&f, path);
    if (rc == 0) rc = af_write(&f, idx.p, idx.len);
    if (rc == 0) rc = af_commit(&f);
    if (rc == 0) rc = remove_stale(dir, n_shards);
done:
    free(idx.p);
    free(path);
    free(shard_of);
    free(sorted);
    return rc;
}
