/* safetensors_read.c - the safetensors reader: mmap + a fully validated header, and the
 * conversions of values on read (safetensors.h).
 *
 * Validation follows the reference Rust crate (safetensors/src/tensor.rs): header length at
 * most 100 MB and inside the file, UTF-8 JSON object, each tensor a known dtype with a
 * non-negative shape whose byte size equals its [begin, end) range, and the ranges, sorted,
 * tiling the data section exactly. On top of that, duplicate names (which cJSON keeps) and
 * \u0000 escapes (which would cut cJSON's C strings short) are errors. The header is copied
 * out of the mapping before parsing so the parser never reads the mapping past its length.
 */
#include "runtime/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "runtime/error.h"
#include "runtime/safetensors_internal.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data is little-endian and is read in place");

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

size_t st_utf8_invalid_at(const unsigned char *s, size_t n) {
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
    size_t bad = st_utf8_invalid_at((const unsigned char *)s, n);
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

cJSON *st_parse_json(const char *path, const char *what, const char *s, size_t n) {
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
    if (!(d >= 0 && d <= ST_MAX_JSON_INT) || d != (double)(uint64_t)d) return -1;
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
    cJSON *root = st_parse_json(st->path, "header", text, n);
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
