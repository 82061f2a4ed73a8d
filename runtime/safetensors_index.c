/* safetensors_index.c - HF model weights (safetensors.h): one model.safetensors, or
 * model.safetensors.index.json and the shards it names, checked against each other (each
 * listed tensor present in the shard it names, every tensor of a shard listed for it), seen
 * as one sorted list of tensors. */
#include "runtime/safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "runtime/error.h"
#include "runtime/safetensors_internal.h"
#include "runtime/strbuf.h"

/* ---- paths (the writer's too) ---- */

char *st_path_join(const char *dir, const char *name) {
    StrBuf b = {0};
    sb_printf(&b, "%s/%s", dir, name);
    return sb_take(&b);
}

char *st_dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    char *d = xmalloc((size_t)(slash - path) + 1);
    memcpy(d, path, (size_t)(slash - path));
    d[slash - path] = 0;
    return d;
}

/* ---- model weights ---- */

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

static int is_regular_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The whole file, as fs_read_file reads it, but refused once it passes max bytes: an index
 * is a few MB of JSON, and anything far larger is not one. */
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
    cJSON *root = st_parse_json(index_path, "index", text, len);
    free(text);
    if (!root) return -1;
    int rc = -1;
    MapPair *pairs = NULL;
    char *dir = st_dir_of(index_path);
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
            char *shard_path = st_path_join(dir, pairs[i].shard);
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
        const StEntry *e = st_find(w->shards[w->n_shards - 1], pairs[i].name);
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
        for (int i = 0; i < st_count(w->shards[s]); i++) {
            MwItem key = {.e = st_get(w->shards[s], i)};
            const MwItem *it = bsearch(&key, w->items, (size_t)w->n, sizeof key, cmp_item_name);
            if (!it || it->shard != s) {
                mmrm_set_error("%s: tensor %s: present in the shard but not listed for it in %s",
                               st_path(w->shards[s]), key.e->name, index_path);
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
    w->n = st_count(st);
    w->items = xcalloc((size_t)w->n, sizeof *w->items);
    for (int i = 0; i < w->n; i++) w->items[i] = (MwItem){st_get(st, i), 0};
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
        char *single = st_path_join(path, ST_SINGLE_NAME);
        char *index = st_path_join(path, ST_INDEX_NAME);
        if (is_regular_file(single)) {
            rc = open_single(w, single);
        } else if (is_regular_file(index)) {
            rc = open_index(w, index);
        } else {
            mmrm_set_error("%s: no %s or %s in this directory", path, ST_SINGLE_NAME,
                           ST_INDEX_NAME);
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
