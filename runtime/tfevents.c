/* tfevents.c - TensorBoard event files (tfevents.h): CRC32C, TFRecord framing, the protobuf
 * encoding of the few messages TensorBoard needs, a reader that stops at a torn tail, and
 * the rebuild of a run directory. */
#include "runtime/tfevents.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/fsutil.h"

#define TF_PREFIX "events.out.tfevents."

/* ---------------------------------------------------------------- CRC32C */

static uint32_t g_crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        g_crc_table[i] = c;
    }
}

uint32_t crc32c(const void *p, size_t n) {
    if (!g_crc_table[1]) crc_init(); /* idempotent: a race writes the same values */
    const unsigned char *b = p;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = g_crc_table[(c ^ b[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t tfrecord_masked_crc(const void *p, size_t n) {
    uint32_t c = crc32c(p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static void put_le(StrBuf *out, uint64_t v, int bytes) {
    char b[8];
    for (int i = 0; i < bytes; i++) b[i] = (char)(v >> (8 * i));
    sb_append(out, b, bytes);
}

static uint64_t get_le(const unsigned char *b, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}

void tfrecord_frame(StrBuf *out, const void *data, size_t n) {
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    sb_append(out, (const char *)len, 8);
    put_le(out, tfrecord_masked_crc(len, 8), 4);
    sb_append(out, data, n);
    put_le(out, tfrecord_masked_crc(data, n), 4);
}

/* ---------------------------------------------------------------- protobuf encoding */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static void put_varint(StrBuf *out, uint64_t v) {
    char b[10];
    int k = 0;
    do {
        b[k++] = (char)((v & 0x7F) | (v >= 0x80 ? 0x80 : 0));
        v >>= 7;
    } while (v);
    sb_append(out, b, k);
}

static void put_key(StrBuf *out, int field, int wt) { put_varint(out, (uint64_t)field << 3 | wt); }

static uint64_t bits_of_double(double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

/* proto3 leaves a scalar out when it is zero (+0.0 for doubles: -0.0 is written) */
static void put_double_field(StrBuf *out, int field, double d) {
    if (bits_of_double(d) == 0) return;
    put_key(out, field, WT_I64);
    put_le(out, bits_of_double(d), 8);
}

static void put_bytes_field(StrBuf *out, int field, const void *p, size_t n) {
    put_key(out, field, WT_LEN);
    put_varint(out, n);
    sb_append(out, p, n);
}

static void put_packed_doubles(StrBuf *out, int field, const double *x, int n) {
    if (n <= 0) return;
    put_key(out, field, WT_LEN);
    put_varint(out, (uint64_t)n * 8);
    for (int i = 0; i < n; i++) put_le(out, bits_of_double(x[i]), 8);
}

/* Event {wall_time, step, summary {value: VALUE}} around an encoded Value */
static void put_summary_event(StrBuf *out, double wall_time, int64_t step, const StrBuf *value) {
    StrBuf summary = {0};
    put_bytes_field(&summary, 1, value->s, value->len);
    put_double_field(out, 1, wall_time);
    if (step) {
        put_key(out, 2, WT_VARINT);
        put_varint(out, (uint64_t)step);
    }
    put_bytes_field(out, 5, summary.s, summary.len);
    sb_free(&summary);
}

static void put_tag(StrBuf *v, const char *tag) {
    if (*tag) put_bytes_field(v, 1, tag, strlen(tag));
}

void tf_event_file_version(StrBuf *out, double wall_time, const char *version) {
    put_double_field(out, 1, wall_time);
    put_bytes_field(out, 3, version, strlen(version));
}

void tf_event_scalar(StrBuf *out, double wall_time, int64_t step, const char *tag, float value) {
    StrBuf v = {0};
    put_tag(&v, tag);
    uint32_t u;
    memcpy(&u, &value, 4);
    put_key(&v, 2, WT_I32);
    put_le(&v, u, 4);
    put_summary_event(out, wall_time, step, &v);
    sb_free(&v);
}

void tf_event_histogram(StrBuf *out, double wall_time, int64_t step, const char *tag, const TfHistogram *h) {
    StrBuf hp = {0}, v = {0};
    put_double_field(&hp, 1, h->min);
    put_double_field(&hp, 2, h->max);
    put_double_field(&hp, 3, h->num);
    put_double_field(&hp, 4, h->sum);
    put_double_field(&hp, 5, h->sum_squares);
    put_packed_doubles(&hp, 6, h->bucket_limit, h->n);
    put_packed_doubles(&hp, 7, h->bucket, h->n);
    put_tag(&v, tag);
    put_key(&v, 5, WT_LEN); /* a oneof member: written even when empty */
    put_varint(&v, hp.len);
    sb_append(&v, hp.s ? hp.s : "", hp.len);
    put_summary_event(out, wall_time, step, &v);
    sb_free(&hp);
    sb_free(&v);
}

void tf_histogram_fill(TfHistogram *h, const double *x, size_t n, int nb, double *limit, double *count) {
    memset(h, 0, sizeof *h);
    if (n == 0 || nb <= 0) return;
    double lo = x[0], hi = x[0], s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, x[i]);
        hi = fmax(hi, x[i]);
        s += x[i];
        s2 += x[i] * x[i];
    }
    *h = (TfHistogram){.min = lo, .max = hi, .num = (double)n, .sum = s, .sum_squares = s2, .n = nb,
                       .bucket_limit = limit, .bucket = count};
    double first = lo, last = hi;
    if (first == last) first -= 0.5, last += 0.5;
    /* numpy.linspace(first, last, nb + 1) and numpy.histogram's uniform-bin search */
    double step = (last - first) / nb;
    for (int i = 0; i < nb; i++) limit[i] = (double)(i + 1) * step + first, count[i] = 0;
    limit[nb - 1] = last;
#define EDGE(i) ((i) == 0 ? first : limit[(i) - 1])
    for (size_t j = 0; j < n; j++) {
        long k = (long)((x[j] - first) / (last - first) * nb);
        if (k >= nb) k = nb - 1;
        if (k < 0) k = 0;
        if (x[j] < EDGE(k)) k--;
        else if (k != nb - 1 && x[j] >= limit[k]) k++;
        count[k] += 1;
    }
#undef EDGE
}

/* ---------------------------------------------------------------- protobuf decoding */

typedef struct {
    const unsigned char *p, *end;
} Cursor;

static int get_varint(Cursor *c, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (c->p >= c->end) return -1;
        unsigned char b = *c->p++;
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* the next field: its number, wire type and, for WT_LEN, the payload; fixed-size and
 * varint values are read into *v */
static int get_field(Cursor *c, int *field, int *wt, uint64_t *v, Cursor *payload) {
    uint64_t key;
    if (get_varint(c, &key)) return -1;
    *field = (int)(key >> 3);
    *wt = (int)(key & 7);
    size_t left = (size_t)(c->end - c->p);
    switch (*wt) {
    case WT_VARINT: return get_varint(c, v);
    case WT_I64:
        if (left < 8) return -1;
        *v = get_le(c->p, 8);
        c->p += 8;
        return 0;
    case WT_I32:
        if (left < 4) return -1;
        *v = get_le(c->p, 4);
        c->p += 4;
        return 0;
    case WT_LEN:
        if (get_varint(c, v) || *v > (uint64_t)(c->end - c->p)) return -1;
        payload->p = c->p;
        payload->end = c->p + *v;
        c->p += *v;
        return 0;
    default: return -1;
    }
}

/* the tag of a Summary's first Value */
static int parse_summary(Cursor s, TfEventInfo *info) {
    int field, wt;
    uint64_t v;
    Cursor sub;
    while (s.p < s.end) {
        if (get_field(&s, &field, &wt, &v, &sub)) return -1;
        if (field != 1 || wt != WT_LEN || info->has_summary) continue;
        info->has_summary = 1;
        while (sub.p < sub.end) {
            Cursor t;
            if (get_field(&sub, &field, &wt, &v, &t)) return -1;
            if (field == 1 && wt == WT_LEN) {
                size_t k = (size_t)(t.end - t.p);
                if (k >= sizeof info->tag) k = sizeof info->tag - 1;
                memcpy(info->tag, t.p, k);
                info->tag[k] = 0;
            }
        }
    }
    return 0;
}

int tf_event_parse(const void *data, size_t n, TfEventInfo *info) {
    memset(info, 0, sizeof *info);
    Cursor c = {data, (const unsigned char *)data + n}, sub;
    int field, wt;
    uint64_t v;
    while (c.p < c.end) {
        if (get_field(&c, &field, &wt, &v, &sub)) return -1;
        if (field == 1 && wt == WT_I64) memcpy(&info->wall_time, &v, 8);
        else if (field == 2 && wt == WT_VARINT) info->step = (int64_t)v;
        else if (field == 5 && wt == WT_LEN && parse_summary(sub, info)) return -1;
    }
    return 0;
}

/* doubles of a repeated field, packed (WT_LEN) or one per key (WT_I64), appended to x[*k] */
static int get_doubles(int wt, uint64_t v, Cursor sub, double *x, int *k, int cap) {
    if (wt == WT_I64) {
        if (*k >= cap) return -1;
        memcpy(&x[(*k)++], &v, 8);
        return 0;
    }
    if (wt != WT_LEN || (sub.end - sub.p) % 8) return -1;
    for (; sub.p < sub.end; sub.p += 8) {
        if (*k >= cap) return -1;
        uint64_t u = get_le(sub.p, 8);
        memcpy(&x[(*k)++], &u, 8);
    }
    return 0;
}

static int parse_histo(Cursor c, TfHistogram *h, double *limit, double *count, int cap) {
    int field, wt, nl = 0, nc = 0;
    uint64_t v;
    Cursor sub = {0};
    double *stat[] = {NULL, &h->min, &h->max, &h->num, &h->sum, &h->sum_squares};
    while (c.p < c.end) {
        if (get_field(&c, &field, &wt, &v, &sub)) return -1;
        if (field >= 1 && field <= 5 && wt == WT_I64) memcpy(stat[field], &v, 8);
        else if (field == 6 && get_doubles(wt, v, sub, limit, &nl, cap)) return -1;
        else if (field == 7 && get_doubles(wt, v, sub, count, &nc, cap)) return -1;
    }
    if (nl != nc) return -1;
    h->n = nl;
    return 0;
}

int tf_event_histogram_parse(const void *data, size_t n, TfHistogram *h, double *limit, double *count, int cap) {
    memset(h, 0, sizeof *h);
    h->bucket_limit = limit;
    h->bucket = count;
    Cursor c = {data, (const unsigned char *)data + n}, sub, s, val, t;
    int field, wt, found = 0;
    uint64_t v;
    while (c.p < c.end) { /* Event */
        if (get_field(&c, &field, &wt, &v, &sub)) return -1;
        if (field != 5 || wt != WT_LEN) continue;
        for (s = sub; s.p < s.end;) { /* Summary: the first Value */
            if (get_field(&s, &field, &wt, &v, &val)) return -1;
            if (field != 1 || wt != WT_LEN || found) continue;
            found = -1; /* a Value, histogram not yet seen */
            while (val.p < val.end) {
                if (get_field(&val, &field, &wt, &v, &t)) return -1;
                if (field == 5 && wt == WT_LEN) {
                    if (parse_histo(t, h, limit, count, cap)) return -1;
                    found = 1;
                }
            }
        }
    }
    return found == 1;
}

/* ---------------------------------------------------------------- reading */

long tfevents_read(const char *path, TfRecordFn fn, void *ctx, int *torn) {
    size_t size;
    unsigned char *b = (unsigned char *)fs_read_file(path, &size);
    if (torn) *torn = 0;
    if (!b) return -1;
    long count = 0;
    size_t at = 0;
    while (at < size) {
        size_t left = size - at;
        uint64_t n = left >= 16 ? get_le(b + at, 8) : 0;
        if (left < 16 || (uint32_t)get_le(b + at + 8, 4) != tfrecord_masked_crc(b + at, 8) || n > left - 16 ||
            (uint32_t)get_le(b + at + 12 + n, 4) != tfrecord_masked_crc(b + at + 12, n)) {
            if (torn) *torn = 1;
            break;
        }
        count++;
        if (fn(ctx, b + at + 12, n)) break;
        at += 16 + n;
    }
    free(b);
    return count;
}

/* ---------------------------------------------------------------- run directories */

static uint64_t key_hash(const char *tag, int64_t step) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)step * 0x9E3779B97F4A7C15ull;
    for (const unsigned char *p = (const unsigned char *)tag; *p; p++) h = (h ^ *p) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* the slot of (tag, step): where it is listed, or the empty slot it would take */
static long find_slot(const TfEventList *l, const char *tag, int64_t step) {
    long mask = l->nslot - 1, i = (long)(key_hash(tag, step) & (uint64_t)mask);
    while (l->slot[i]) {
        const struct TfListed *e = &l->ev[l->slot[i] - 1];
        if (e->step == step && strcmp(e->tag, tag) == 0) break;
        i = (i + 1) & mask;
    }
    return i;
}

int tf_list_has(const TfEventList *l, const char *tag, int64_t step) {
    return l->nslot && l->slot[find_slot(l, tag, step)] != 0;
}

int tf_list_add(TfEventList *l, const void *data, size_t n) {
    TfEventInfo info;
    if (tf_event_parse(data, n, &info) || !info.has_summary) return -1;
    if (tf_list_has(l, info.tag, info.step)) return 0;
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->ev = xrealloc(l->ev, l->cap * sizeof *l->ev);
    }
    char *copy = xmalloc(n ? n : 1);
    memcpy(copy, data, n);
    l->ev[l->count++] = (struct TfListed){info.step, xstrdup(info.tag), copy, n};
    if (2 * l->count > l->nslot) { /* grow and re-index */
        free(l->slot);
        l->nslot = l->nslot ? 2 * l->nslot : 128;
        l->slot = xcalloc(l->nslot, sizeof *l->slot);
        for (long i = 0; i < l->count; i++) l->slot[find_slot(l, l->ev[i].tag, l->ev[i].step)] = i + 1;
    } else {
        l->slot[find_slot(l, info.tag, info.step)] = l->count;
    }
    return 1;
}

void tf_list_free(TfEventList *l) {
    for (long i = 0; i < l->count; i++) {
        free(l->ev[i].tag);
        free(l->ev[i].data);
    }
    free(l->ev);
    free(l->slot);
    memset(l, 0, sizeof *l);
}

static int is_event_file(const char *name) { return strncmp(name, TF_PREFIX, strlen(TF_PREFIX)) == 0; }

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* the event file names of dir, sorted (the unix time in them is zero-padded: oldest first);
 * *n of them, the caller frees each and the array */
static char **list_event_files(const char *dir, int *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **names = NULL;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_event_file(e->d_name)) continue;
        if (*n == cap) names = xrealloc(names, (cap = cap ? 2 * cap : 8) * sizeof *names);
        names[(*n)++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (*n) qsort(names, *n, sizeof *names, cmp_names);
    return names;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

typedef struct {
    TfEventList *l;
    int64_t max_step;
} CollectCtx;

static int collect_record(void *ctx, const void *data, size_t n) {
    CollectCtx *cc = ctx;
    TfEventInfo info;
    if (tf_event_parse(data, n, &info) == 0 && info.has_summary && info.step <= cc->max_step)
        tf_list_add(cc->l, data, n);
    return 0;
}

int tfevents_collect(const char *dir, int64_t max_step, TfEventList *l) {
    int n, rc = 0;
    char **names = list_event_files(dir, &n);
    CollectCtx cc = {l, max_step};
    for (int i = 0; i < n && rc == 0; i++) {
        char p[4096];
        /* a temporary of an interrupted tfevents_open is not part of the run */
        if (strstr(names[i], ".tmp.")) continue;
        if (!fs_join(p, sizeof p, dir, names[i]) || tfevents_read(p, collect_record, &cc, NULL) < 0) rc = -1;
    }
    free_names(names, n);
    return rc;
}

/* ---------------------------------------------------------------- writing */

struct TfEventWriter {
    FILE *f;
    char path[4096];
    StrBuf ev, rec;
};

static int cmp_step(const void *a, const void *b) {
    const struct TfListed *x = *(const struct TfListed *const *)a, *y = *(const struct TfListed *const *)b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return x < y ? -1 : x > y; /* stable: the list's order within a step */
}

double tf_wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

TfEventWriter *tfevents_open(const char *dir, double wall_time, const TfEventList *prefix) {
    if (fs_mkdir_p(dir)) return NULL;
    char host[256] = "localhost", name[512];
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    snprintf(name, sizeof name, TF_PREFIX "%010ld.%s.%ld.0", (long)wall_time, host, (long)getpid());
    TfEventWriter *w = xcalloc(1, sizeof *w);
    if (!fs_join(w->path, sizeof w->path, dir, name)) {
        free(w);
        return NULL;
    }
    StrBuf file = {0};
    tf_event_file_version(&w->ev, wall_time, "brain.Event:2");
    tfrecord_frame(&file, w->ev.s, w->ev.len);
    sb_reset(&w->ev);
    long np = prefix ? prefix->count : 0;
    if (np) {
        const struct TfListed **order = xmalloc(np * sizeof *order);
        for (long i = 0; i < np; i++) order[i] = &prefix->ev[i];
        qsort(order, np, sizeof *order, cmp_step);
        for (long i = 0; i < np; i++) tfrecord_frame(&file, order[i]->data, order[i]->n);
        free(order);
    }
    int rc = fs_write_atomic(w->path, file.s, file.len);
    sb_free(&file);
    if (rc == 0 && !(w->f = fopen(w->path, "ab"))) {
        mmrm_set_error("%s: cannot open for appending (%s)", w->path, strerror(errno));
        rc = -1;
    }
    if (rc) {
        tfevents_close(w);
        return NULL;
    }
    /* the new file holds everything the older ones contributed: they go */
    int n;
    char **names = list_event_files(dir, &n);
    for (int i = 0; i < n; i++) {
        char p[4096];
        if (strcmp(names[i], name) != 0 && fs_join(p, sizeof p, dir, names[i])) remove(p);
    }
    free_names(names, n);
    fs_fsync_dir(dir);
    return w;
}

const char *tfevents_path(const TfEventWriter *w) { return w->path; }

static int write_event(TfEventWriter *w) {
    sb_reset(&w->rec);
    tfrecord_frame(&w->rec, w->ev.s, w->ev.len);
    sb_reset(&w->ev);
    if (fwrite(w->rec.s, 1, w->rec.len, w->f) != w->rec.len) {
        mmrm_set_error("%s: write failed (%s)", w->path, strerror(errno));
        return -1;
    }
    return 0;
}

int tfevents_scalar(TfEventWriter *w, double wall_time, int64_t step, const char *tag, float value) {
    tf_event_scalar(&w->ev, wall_time, step, tag, value);
    return write_event(w);
}

int tfevents_histogram(TfEventWriter *w, double wall_time, int64_t step, const char *tag,
                       const TfHistogram *h) {
    tf_event_histogram(&w->ev, wall_time, step, tag, h);
    return write_event(w);
}

int tfevents_flush(TfEventWriter *w) {
    if (fflush(w->f) != 0) {
        mmrm_set_error("%s: write failed (%s)", w->path, strerror(errno));
        return -1;
    }
    return 0;
}

void tfevents_close(TfEventWriter *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    sb_free(&w->ev);
    sb_free(&w->rec);
    free(w);
}
