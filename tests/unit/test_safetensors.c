/* test_safetensors.c - the safetensors reader, writer and model-weights view: round trips,
 * byte-exact output (the bytes the Python package writes for the same tensors), F16
 * decoding of all 65536 patterns against the IEEE formula, the Python-written fixture
 * (tests/oracle/check_safetensors.py describes it), hostile files, sharded directories and
 * atomic replacement. Files go to /tmp under names carrying the process id.
 *
 * seeded() is the value formula shared with tests/oracle/check_safetensors.py.
 */
#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/safetensors.h"
#include "tests/harness.h"

#define FIXTURE "tests/fixtures/safetensors/python_written.safetensors"

static uint32_t hash32(uint32_t seed, uint32_t k) {
    uint32_t x = k * 0x9E3779B1u + seed * 0x85EBCA77u + 0x165667B1u;
    x ^= x >> 15;
    x *= 0x2C1B3C6Du;
    x ^= x >> 12;
    x *= 0x297A2D39u;
    x ^= x >> 15;
    return x;
}

/* in [-16, 16), exactly representable and the same in numpy */
static float seeded(uint32_t seed, size_t k) {
    return (float)(int32_t)hash32(seed, (uint32_t)k) * 0x1p-27f;
}

static int32_t seeded_i32(uint32_t seed, size_t k) { return (int32_t)hash32(seed, (uint32_t)k) >> 8; }

static float *seeded_array(uint32_t seed, size_t n) {
    float *x = tmalloc(n ? n : 1);
    for (size_t k = 0; k < n; k++) x[k] = seeded(seed, k);
    return x;
}

/* bf16 nearest to x, ties to the even mantissa, by comparing the two neighbours in double
 * (independent of the bit trick in runtime/tensor.c). NaN and infinity pass through. */
static uint16_t bf16_ref(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if (isnan(x)) return (uint16_t)((u >> 16) | 0x40);
    uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
    float flo, fhi;
    memcpy(&flo, &lo, 4);
    memcpy(&fhi, &hi, 4);
    if (isinf(x)) return (uint16_t)(lo >> 16);
    /* past the largest bf16 the upper neighbour is infinity, at the distance 2^128 would be */
    double dhi = isinf(fhi) ? ldexp(1.0, 128) - fabs((double)x) : fabs((double)fhi - x);
    double dlo = fabs((double)x - flo);
    uint32_t pick = dlo < dhi ? lo : dhi < dlo ? hi : ((lo >> 16) & 1) ? hi : lo;
    return (uint16_t)(pick >> 16);
}

static void tmp_path(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "/tmp/mmrm_test_st_%d_%s", (int)getpid(), name);
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); abort(); }
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)len + 1);
    if (fread(p, 1, (size_t)len, f) != (size_t)len) abort();
    fclose(f);
    *n = (size_t)len;
    return p;
}

static int same_file_bytes(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    uint8_t *pa = read_bytes(a, &na), *pb = read_bytes(b, &nb);
    int same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A safetensors file from a header string (its length in the prefix unless len_override is
 * not ~0) and data_len bytes of data. */
static void write_st(const char *path, const char *header, size_t data_len, uint64_t len_override,
                     const void *data) {
    size_t h = strlen(header);
    uint64_t n = len_override != ~0ull ? len_override : h;
    uint8_t *buf = calloc(8 + h + data_len + 1, 1);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, header, h);
    if (data) memcpy(buf + 8 + h, data, data_len);
    write_bytes(path, buf, 8 + h + data_len);
    free(buf);
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[512];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int error_has(const char *a, const char *b) {
    const char *e = mmrm_last_error();
    return strstr(e, a) && (!b || strstr(e, b));
}

static StTensorOut out_tensor(const char *name, DType src, StDType dt, int ndim,
                              const int64_t *shape, const void *data) {
    StTensorOut t = {.name = name, .src = src, .dtype = dt, .ndim = ndim, .data = data};
    for (int d = 0; d < ndim; d++) t.shape[d] = shape[d];
    return t;
}

/* ------------------------------------------------------------ round trip */

TEST(test_safetensors_round_trip_keeps_values_shapes_dtypes_and_metadata) {
    char path[256];
    tmp_path(path, sizeof path, "roundtrip.safetensors");
    const int64_t s_one[] = {1}, s_4d[] = {2, 3, 1, 5}, s_bf[] = {7, 3}, s_i[] = {3, 11},
                  s_empty[] = {0, 4}, s_w[] = {9};
    float *one = seeded_array(1, 1), *w4 = seeded_array(2, 30), *wb = seeded_array(3, 21),
          *sc = seeded_array(4, 1);
    uint16_t bsrc[9];
    for (int k = 0; k < 9; k++) bsrc[k] = bf16_from_f32(seeded(5, k));
    int32_t ids[33];
    for (int k = 0; k < 33; k++) ids[k] = seeded_i32(6, k);
    StTensorOut t[] = {
        out_tensor("w4d", DT_F32, ST_F32, 4, s_4d, w4),
        out_tensor("one", DT_F32, ST_F32, 1, s_one, one),
        out_tensor("rounded", DT_F32, ST_BF16, 2, s_bf, wb),
        out_tensor("ids", DT_I32, ST_I32, 2, s_i, ids),
        out_tensor("scalar", DT_F32, ST_F32, 0, NULL, sc),
        out_tensor("empty", DT_F32, ST_BF16, 2, s_empty, NULL),
        out_tensor("widened", DT_BF16, ST_F32, 1, s_w, bsrc),
        out_tensor("bf16.kept", DT_BF16, ST_BF16, 1, s_w, bsrc),
    };
    StMeta meta[] = {{"format", "pt"}, {"mmrm.step", "120"}};
    CHECK(st_save(path, t, 8, meta, 2) == 0, "save: %s", mmrm_last_error());
    SafeTensors *st = st_open(path);
    if (!CHECK(st, "open: %s", mmrm_last_error())) return;
    CHECK(st_count(st) == 8, "count %d", st_count(st));
    for (int i = 1; i < st_count(st); i++)
        CHECK(strcmp(st_get(st, i - 1)->name, st_get(st, i)->name) < 0, "entries in name order");
    CHECK(st_meta_count(st) == 2 && strcmp(st_meta_get(st, "mmrm.step"), "120") == 0 &&
              strcmp(st_meta_get(st, "format"), "pt") == 0 && !st_meta_get(st, "nope"),
          "metadata");

    const StEntry *e = st_find(st, "w4d");
    float got[64];
    CHECK(e && e->dtype == ST_F32 && e->ndim == 4 && e->shape[0] == 2 && e->shape[3] == 5 &&
              e->numel == 30 && e->nbytes == 120, "w4d entry");
    CHECK(st_check_shape(st, e, 4, (const int[]){2, 3, 1, 5}) == 0, "w4d shape");
    CHECK(st_read_f32(st, e, got, 30) == 0, "read w4d");
    EXPECT_SAME("w4d", got, w4, 30);

    e = st_find(st, "one");
    CHECK(e && e->ndim == 1 && e->shape[0] == 1 && st_read_f32(st, e, got, 1) == 0, "one");
    EXPECT_SAME("one", got, one, 1);
    e = st_find(st, "scalar");
    CHECK(e && e->ndim == 0 && e->numel == 1 && st_read_f32(st, e, got, 1) == 0, "scalar");
    EXPECT_SAME("scalar", got, sc, 1);
    e = st_find(st, "empty");
    CHECK(e && e->dtype == ST_BF16 && e->numel == 0 && e->shape[0] == 0 && e->shape[1] == 4 &&
              st_read_f32(st, e, got, 0) == 0, "empty");

    e = st_find(st, "rounded");
    uint16_t gb[32];
    CHECK(e && e->dtype == ST_BF16 && st_read_bf16(st, e, gb, 21) == 0, "rounded");
    int bad = 0;
    for (int k = 0; k < 21; k++) bad += gb[k] != bf16_ref(wb[k]);
    CHECK(bad == 0, "%d bf16 values are not the nearest-even rounding of the f32 input", bad);
    CHECK(st_read_f32(st, e, got, 21) == 0, "rounded as f32");
    bad = 0;
    for (int k = 0; k < 21; k++) bad += got[k] != f32_from_bf16(bf16_ref(wb[k]));
    CHECK(bad == 0, "%d widened bf16 values differ", bad);

    e = st_find(st, "widened");
    CHECK(e && e->dtype == ST_F32 && st_read_f32(st, e, got, 9) == 0, "widened");
    bad = 0;
    for (int k = 0; k < 9; k++) bad += got[k] != f32_from_bf16(bsrc[k]);
    CHECK(bad == 0, "%d bf16 -> F32 values differ", bad);
    e = st_find(st, "bf16.kept");
    CHECK(e && e->dtype == ST_BF16 && st_read_bf16(st, e, gb, 9) == 0 &&
              memcmp(gb, bsrc, sizeof bsrc) == 0, "bf16 stored as is");
    CHECK(st_read_bf16(st, st_find(st, "widened"), gb, 9) == 0 &&
              memcmp(gb, bsrc, sizeof bsrc) == 0, "F32 of bf16 values rounds back exactly");

    e = st_find(st, "ids");
    int32_t gi[33];
    CHECK(e && e->dtype == ST_I32 && st_read_i32(st, e, gi, 33) == 0 &&
              memcmp(gi, ids, sizeof ids) == 0, "ids");
    st_close(st);
    unlink(path);
    free(one); free(w4); free(wb); free(sc);
}

TEST(test_bf16_written_from_f32_rounds_to_nearest_even) {
    /* ties both ways, just off the ties, the largest finite values, infinities, zeros, NaN */
    const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f817fffu,
                                0x7f7fffffu, 0x7f7f7fffu, 0x7f800000u, 0xff800000u,
                                0x80000000u, 0x00000000u, 0x00008000u, 0x00018000u,
                                0x7fc00001u, 0xbf7fffffu, 0x00000001u, 0xc0a08000u};
    enum { NS = sizeof special / sizeof special[0], N = NS + 200 };
    float x[N];
    for (int k = 0; k < NS; k++) memcpy(&x[k], &special[k], 4);
    TRng r = trng(7);
    fill_normal(&r, x + NS, N - NS, 3.0f);
    char path[256];
    tmp_path(path, sizeof path, "rne.safetensors");
    StTensorOut t = out_tensor("x", DT_F32, ST_BF16, 1, (const int64_t[]){N}, x);
    CHECK(st_save(path, &t, 1, NULL, 0) == 0, "save: %s", mmrm_last_error());
    SafeTensors *st = st_open(path);
    if (!CHECK(st, "open: %s", mmrm_last_error())) return;
    uint16_t got[N];
    CHECK(st_read_bf16(st, st_find(st, "x"), got, N) == 0, "read");
    for (int k = 0; k < N; k++) {
        uint16_t want = bf16_ref(x[k]);
        int ok = isnan(x[k]) ? (got[k] & 0x7fff) > 0x7f80 : got[k] == want;
        if (!CHECK(ok, "element %d (f32 bits %08x): bf16 %04x, nearest even is %04x", k,
                   k < NS ? special[k] : 0, got[k], want))
            break;
    }
    CHECK(got[0] == 0x3f80 && got[1] == 0x3f82 && got[4] == 0x7f80, "ties go to even; the "
          "largest float rounds to infinity");
    st_close(st);
    unlink(path);
}

TEST(test_save_load_save_is_byte_identical) {
    char a[256], b[256], c[256];
    tmp_path(a, sizeof a, "first.safetensors");
    tmp_path(b, sizeof b, "second.safetensors");
    tmp_path(c, sizeof c, "again.safetensors");
    float *w = seeded_array(11, 35), *v = seeded_array(12, 13);
    int32_t ids[5] = {3, -1, 92546, 0, 7};
    StTensorOut t[] = {
        out_tensor("model.w", DT_F32, ST_BF16, 3, (const int64_t[]){5, 7, 1}, w),
        out_tensor("model.v", DT_F32, ST_F32, 1, (const int64_t[]){13}, v),
        out_tensor("ids", DT_I32, ST_I32, 1, (const int64_t[]){5}, ids),
        out_tensor("s", DT_F32, ST_F32, 0, NULL, v),
    };
    StMeta meta[] = {{"z", "last"}, {"a", "first\n\"quoted\""}};
    CHECK(st_save(a, t, 4, meta, 2) == 0, "save: %s", mmrm_last_error());
    CHECK(st_save(c, t, 4, meta, 2) == 0, "save again: %s", mmrm_last_error());
    CHECK(same_file_bytes(a, c), "the same tensors saved twice differ");

    SafeTensors *st = st_open(a);
    if (!CHECK(st, "open: %s", mmrm_last_error())) return;
    int n = st_count(st);
    StTensorOut *u = calloc((size_t)n, sizeof *u);
    void **bufs = calloc((size_t)n, sizeof *bufs);
    StMeta *m = calloc((size_t)st_meta_count(st), sizeof *m);
    for (int i = 0; i < n; i++) {
        const StEntry *e = st_get(st, i);
        bufs[i] = malloc(e->numel * 4 + 4);
        u[i] = out_tensor(e->name, e->dtype == ST_I32 ? DT_I32 : e->dtype == ST_BF16 ? DT_BF16 : DT_F32,
                          e->dtype, e->ndim, e->shape, bufs[i]);
        int rc = e->dtype == ST_I32    ? st_read_i32(st, e, bufs[i], e->numel)
                 : e->dtype == ST_BF16 ? st_read_bf16(st, e, bufs[i], e->numel)
                                       : st_read_f32(st, e, bufs[i], e->numel);
        CHECK(rc == 0, "read %s: %s", e->name, mmrm_last_error());
    }
    for (int i = 0; i < st_meta_count(st); i++) m[i] = *st_meta_at(st, i);
    CHECK(st_save(b, u, n, m, st_meta_count(st)) == 0, "re-save: %s", mmrm_last_error());
    CHECK(same_file_bytes(a, b), "save -> load -> save changed the bytes");
    st_close(st);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs); free(u); free(m); free(w); free(v);
    unlink(a); unlink(b); unlink(c);
}

TEST(test_writer_output_equals_the_python_package_bytes) {
    /* the Python package's output for the same tensors (serialize() with these dtypes and
     * metadata {"a": "2", "z": "1"}): F32 then I32 then BF16, by name within a dtype, compact
     * JSON escaped as serde_json does, header padded with spaces to a multiple of 8 */
    static const char header[] =
        "{\"__metadata__\":{\"a\":\"2\",\"z\":\"1\"},"
        "\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"q\\\"\\t\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,16]},"
        "\"b\":{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[16,28]},"
        "\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[28,34]}}      ";
    static const uint8_t data[] = {
        0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x80, 0x3e, 0x00, 0x00,
        0x80, 0x3e, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00,
        0x80, 0x3f, 0x00, 0x40, 0x40, 0xc0};
    const float c[] = {1.5f, -2.0f}, q[] = {0.25f, 0.25f};
    const int32_t b[] = {1, 2, 3};
    const uint16_t a[] = {0x3f80, 0x4000, 0xc040};
    StTensorOut t[] = {
        out_tensor("a", DT_BF16, ST_BF16, 1, (const int64_t[]){3}, a),
        out_tensor("b", DT_I32, ST_I32, 1, (const int64_t[]){3}, b),
        out_tensor("q\"\t", DT_F32, ST_F32, 2, (const int64_t[]){1, 2}, q),
        out_tensor("c", DT_F32, ST_F32, 1, (const int64_t[]){2}, c),
    };
    StMeta meta[] = {{"z", "1"}, {"a", "2"}};
    char path[256];
    tmp_path(path, sizeof path, "python_layout.safetensors");
    CHECK(st_save(path, t, 4, meta, 2) == 0, "save: %s", mmrm_last_error());
    size_t n = 0, hn = sizeof header - 1;
    uint8_t *got = read_bytes(path, &n);
    CHECK(hn == 264 && n == 8 + hn + sizeof data, "file is %zu bytes", n);
    if (got && n == 8 + hn + sizeof data) {
        CHECK(got[0] == 8 && got[1] == 1 && got[2] == 0 && got[7] == 0, "length prefix 264");
        CHECK(memcmp(got + 8, header, hn) == 0, "header differs:\n%.*s", (int)hn, got + 8);
        CHECK(memcmp(got + 8 + hn, data, sizeof data) == 0, "data section differs");
    }
    free(got);
    unlink(path);
}

/* ------------------------------------------------------ decoding on read */

TEST(test_f16_decoding_matches_the_ieee_half_formula_for_all_65536_values) {
    char path[256];
    tmp_path(path, sizeof path, "f16.safetensors");
    uint16_t *h = malloc(65536 * 2);
    for (int k = 0; k < 65536; k++) h[k] = (uint16_t)k;
    write_st(path, "{\"h\":{\"dtype\":\"F16\",\"shape\":[256,256],\"data_offsets\":[0,131072]}}",
             131072, ~0ull, h);
    SafeTensors *st = st_open(path);
    if (!CHECK(st, "open: %s", mmrm_last_error())) return;
    float *got = tmalloc(65536);
    uint16_t *gb = malloc(65536 * 2);
    const StEntry *e = st_find(st, "h");
    CHECK(e && st_read_f32(st, e, got, 65536) == 0, "read f32");
    CHECK(e && st_read_bf16(st, e, gb, 65536) == 0, "read bf16");
    int bad = 0;
    for (int k = 0; k < 65536 && bad < 5; k++) {
        int s = k >> 15, ex = (k >> 10) & 31, m = k & 1023;
        double v = ex == 0 ? ldexp(m, -24) : ex == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, ex - 25);
        if (s) v = -v;
        float want = (float)v;
        int ok = isnan(want) ? isnan(got[k]) && !!signbit(got[k]) == s && isnan(f32_from_bf16(gb[k]))
                             : memcmp(&got[k], &want, 4) == 0 && gb[k] == bf16_ref(want);
        if (!ok) bad++;
        CHECK(ok, "half %04x: got %.9g (bf16 %04x), the formula gives %.9g", k, got[k], gb[k], want);
    }
    st_close(st);
    free(got); free(gb); free(h);
    unlink(path);
}

TEST(test_integer_reads_convert_i64_u8_bool_and_reject_out_of_range_values) {
    char path[256];
    tmp_path(path, sizeof path, "ints.safetensors");
    int64_t big[4] = {0, -5, INT32_MAX, INT32_MIN};
    uint8_t bytes[32 + 3 + 2];
    memcpy(bytes, big, 32);
    bytes[32] = 0; bytes[33] = 200; bytes[34] = 7;
    bytes[35] = 1; bytes[36] = 0;
    write_st(path, "{\"q\":{\"dtype\":\"I64\",\"shape\":[4],\"data_offsets\":[0,32]},"
                   "\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[32,35]},"
                   "\"b\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[35,37]}}",
             sizeof bytes, ~0ull, bytes);
    SafeTensors *st = st_open(path);
    if (!CHECK(st, "open: %s", mmrm_last_error())) return;
    int32_t got[4];
    CHECK(st_read_i32(st, st_find(st, "q"), got, 4) == 0 && got[0] == 0 && got[1] == -5 &&
              got[2] == INT32_MAX && got[3] == INT32_MIN, "I64 in range");
    CHECK(st_read_i32(st, st_find(st, "u"), got, 3) == 0 && got[0] == 0 && got[1] == 200 &&
              got[2] == 7, "U8");
    CHECK(st_read_i32(st, st_find(st, "b"), got, 2) == 0 && got[0] == 1 && got[1] == 0, "BOOL");
    st_close(st);

    big[2] = (int64_t)INT32_MAX + 1;
    memcpy(bytes, big, 32);
    bytes[36] = 2;
    write_st(path, "{\"q\":{\"dtype\":\"I64\",\"shape\":[4],\"data_offsets\":[0,32]},"
                   "\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[32,35]},"
                   "\"b\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[35,37]}}",
             sizeof bytes, ~0ull, bytes);
    st = st_open(path);
    if (!CHECK(st, "open: %s", mmrm_last_error())) return;
    CHECK(st_read_i32(st, st_find(st, "q"), got, 4) == -1 &&
              error_has(path, "tensor q: element 2 is 2147483648, outside the int32 range"),
          "I64 out of range: %s", mmrm_last_error());
    CHECK(st_read_i32(st, st_find(st, "b"), got, 2) == -1 &&
              error_has(path, "tensor b: element 1 is byte 2, not a BOOL"),
          "BOOL 2: %s", mmrm_last_error());
    st_close(st);
    unlink(path);
}

TEST(test_tensors_at_unaligned_offsets_read_correctly) {
    /* a 3-byte U8 tensor first puts the F32, BF16 and I32 data at odd addresses */
    char path[256];
    tmp_path(path, sizeof path, "unaligned.safetensors");
    float f[3] = {1.25f, -3.5f, 1e-3f};
    uint16_t b[2] = {0x3f80, 0xc000};
    int32_t i[2] = {-7, 1 << 30};
    uint8_t data[3 + 12 + 4 + 8] = {1, 2, 3};
    memcpy(data + 3, f, 12);
    memcpy(data + 15, b, 4);
    memcpy(data + 19, i, 8);
    write_st(path, "{\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                   "\"f\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[3,15]},"
                   "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[15,19]},"
                   "\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[19,27]}} ",
             sizeof data, ~0ull, data);
    SafeTensors *st = st_open(path);
    if (!CHECK(st, "open: %s", mmrm_last_error())) return;
    float gf[3], gb[2];
    int32_t gi[2];
    CHECK(st_read_f32(st, st_find(st, "f"), gf, 3) == 0, "F32");
    EXPECT_SAME("unaligned F32", gf, f, 3);
    CHECK(st_read_f32(st, st_find(st, "b"), gb, 2) == 0 && gb[0] == 1.0f && gb[1] == -2.0f,
          "unaligned BF16");
    CHECK(st_read_i32(st, st_find(st, "i"), gi, 2) == 0 && gi[0] == -7 && gi[1] == 1 << 30,
          "unaligned I32");
    st_close(st);
    unlink(path);
}

TEST(test_python_written_fixture_loads_with_the_values_numpy_computed) {
    SafeTensors *st = st_open(FIXTURE);
    if (!CHECK(st, "open: %s (run from the repository root)", mmrm_last_error())) return;
    CHECK(st_meta_get(st, "format") && strcmp(st_meta_get(st, "format"), "pt") == 0, "metadata");
    /* every converted dtype has a NAME.expected companion written by numpy */
    int companions = 0;
    for (int i = 0; i < st_count(st); i++) {
        const StEntry *x = st_get(st, i);
        size_t len = strlen(x->name);
        if (len < 9 || strcmp(x->name + len - 9, ".expected") != 0) continue;
        char base[128];
        snprintf(base, sizeof base, "%.*s", (int)(len - 9), x->name);
        const StEntry *e = st_find(st, base);
        if (!CHECK(e && e->numel == x->numel && e->ndim == x->ndim, "%s: companion of %s", base,
                   x->name))
            continue;
        for (int d = 0; d < e->ndim; d++) CHECK(e->shape[d] == x->shape[d], "%s shape", base);
        companions++;
        if (x->dtype == ST_F32) {
            float *got = tmalloc(e->numel + 1), *want = tmalloc(e->numel + 1);
            CHECK(st_read_f32(st, e, got, e->numel) == 0 && st_read_f32(st, x, want, x->numel) == 0,
                  "%s: %s", base, mmrm_last_error());
            EXPECT_SAME(base, got, want, e->numel);
            free(got); free(want);
        } else {
            int32_t *got = calloc(e->numel + 1, 4), *want = calloc(e->numel + 1, 4);
            CHECK(st_read_i32(st, e, got, e->numel) == 0 && st_read_i32(st, x, want, x->numel) == 0,
                  "%s: %s", base, mmrm_last_error());
            CHECK(memcmp(got, want, e->numel * 4) == 0, "%s: values differ", base);
            free(got); free(want);
        }
    }
    CHECK(companions == 6, "%d companions (bf16, f16, empty f16, i64, u8, bool expected)",
          companions);
    const StEntry *f16 = st_find(st, "f16.mixed"), *b = st_find(st, "bf16.w");
    CHECK(f16 && f16->dtype == ST_F16 && b && b->dtype == ST_BF16, "the fixture holds F16 and BF16");
    float got[16];
    const StEntry *e = st_find(st, "f32.odd");
    CHECK(e && e->ndim == 2 && e->shape[0] == 3 && e->shape[1] == 5 &&
              st_read_f32(st, e, got, 15) == 0, "f32.odd");
    float *want = seeded_array(10, 15);
    EXPECT_SAME("f32.odd", got, want, 15);
    free(want);
    e = st_find(st, "scalar");
    CHECK(e && e->ndim == 0 && st_read_f32(st, e, got, 1) == 0 && got[0] == seeded(13, 0), "scalar");
    int32_t ids[9];
    e = st_find(st, "i32.ids");
    CHECK(e && st_read_i32(st, e, ids, 9) == 0, "i32.ids");
    for (int k = 0; k < 9; k++) CHECK(ids[k] == seeded_i32(12, k), "i32.ids[%d]", k);
    st_close(st);
}

TEST(test_read_errors_name_the_file_and_tensor) {
    char path[256];
    tmp_path(path, sizeof path, "api.safetensors");
    int32_t ids[6] = {1, 2, 3, 4, 5, 6};
    StTensorOut t = out_tensor("ids", DT_I32, ST_I32, 2, (const int64_t[]){2, 3}, ids);
    CHECK(st_save(path, &t, 1, NULL, 0) == 0, "save");
    SafeTensors *st = st_open(path);
    if (!CHECK(st, "open: %s", mmrm_last_error())) return;
    float f[6];
    int32_t g[6];
    const StEntry *e = st_find(st, "ids");
    CHECK(!st_find(st, "nope") && error_has(path, "tensor nope: not found"), "find");
    CHECK(st_read_f32(st, e, f, 6) == -1 && error_has(path, "tensor ids: dtype I32 is unsupported as f32"),
          "dtype: %s", mmrm_last_error());
    CHECK(st_read_i32(st, e, g, 5) == -1 && error_has(path, "tensor ids: has 6 elements, the destination 5"),
          "count: %s", mmrm_last_error());
    CHECK(st_check_shape(st, e, 2, (const int[]){3, 2}) == -1 &&
              error_has(path, "tensor ids: shape (2, 3) in the file, (3, 2) expected"),
          "shape: %s", mmrm_last_error());
    CHECK(st_check_shape(st, e, 1, (const int[]){6}) == -1, "rank differs");
    st_close(st);

    /* a dtype mmrm cannot convert still opens; only reading it fails */
    double d[2] = {1.0, 2.0};
    write_st(path, "{\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16, ~0ull,
             d);
    st = st_open(path);
    if (!CHECK(st, "open F64: %s", mmrm_last_error())) return;
    e = st_find(st, "d");
    CHECK(e && e->dtype == ST_F64 && e->nbytes == 16, "F64 entry");
    CHECK(st_read_f32(st, e, f, 2) == -1 && error_has(path, "tensor d: dtype F64 is unsupported as f32"),
          "F64: %s", mmrm_last_error());
    st_close(st);
    unlink(path);
}

TEST(test_conversions_are_bitwise_independent_of_the_thread_count) {
    enum { N = 70001 };
    char path[256];
    tmp_path(path, sizeof path, "threads.safetensors");
    float *x = seeded_array(31, N);
    StTensorOut t[] = {out_tensor("b", DT_F32, ST_BF16, 1, (const int64_t[]){N}, x),
                       out_tensor("f", DT_F32, ST_F32, 1, (const int64_t[]){N}, x)};
    CHECK(st_save(path, t, 2, NULL, 0) == 0, "save");
    SafeTensors *st = st_open(path);
    if (!CHECK(st, "open: %s", mmrm_last_error())) return;
    float *a = tmalloc(N), *b = tmalloc(N);
    uint16_t *ha = malloc(N * 2), *hb = malloc(N * 2);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    st_read_f32(st, st_find(st, "b"), a, N);
    st_read_bf16(st, st_find(st, "f"), ha, N);
    omp_set_num_threads(3);
    st_read_f32(st, st_find(st, "b"), b, N);
    st_read_bf16(st, st_find(st, "f"), hb, N);
    omp_set_num_threads(saved);
    EXPECT_SAME("bf16 -> f32, 1 vs 3 threads", a, b, N);
    CHECK(memcmp(ha, hb, N * 2) == 0, "f32 -> bf16, 1 vs 3 threads");
    st_close(st);
    free(a); free(b); free(ha); free(hb); free(x);
    unlink(path);
}

/* ------------------------------------------------------------ hostile files */

typedef struct {
    const char *what;
    const char *header;
    size_t data_len;
    uint64_t len_override; /* ~0: the header's length */
    const char *reason;
} Hostile;

#define T_A "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static const Hostile g_hostile[] = {
    {"length past EOF", "{}", 0, 1000, "header length 1000 runs past the end of the 10-byte file"},
    {"length huge", "{}", 0, 1ull << 40, "header length 1099511627776 is over the 100000000-byte limit"},
    {"not JSON", "{\"a\": nope}", 0, ~0ull, "header is not valid JSON"},
    {"JSON array", "[1, 2]", 0, ~0ull, "header is an array, expected a JSON object"},
    {"bytes after the JSON", "{} x", 0, ~0ull, "header has bytes after its JSON value"},
    {"missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, ~0ull,
     "tensor a: field data_offsets is missing"},
    {"missing dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, ~0ull,
     "tensor a: field dtype is missing"},
    {"offsets out of range", "{" T_A "}", 4, ~0ull,
     "tensor a: data_offsets [0, 8] run past the end of the data section (4 bytes"},
    {"end before begin", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8,
     ~0ull, "tensor a: data_offsets [8, 0] end before they begin"},
    {"size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, ~0ull,
     "tensor a: data_offsets span 8 bytes but shape (3) of F32 needs 12"},
    {"overlap", "{" T_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
     ~0ull, "tensor b: data_offsets [4, 12] overlap tensor a [0, 8]"},
    {"hole", "{" T_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}", 16,
     ~0ull, "tensor b: data_offsets [12, 16] leave a hole: bytes [8, 12)"},
    {"hole at the start", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
     ~0ull, "tensor a: data_offsets [4, 8] leave a hole: bytes [0, 4)"},
    {"trailing data", "{" T_A "}", 12, ~0ull,
     "bytes [8, 12) of the data section belong to no tensor (trailing bytes)"},
    {"unknown dtype", "{\"a\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, ~0ull,
     "tensor a: unknown dtype \"F31\""},
    {"dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, ~0ull,
     "tensor a: dtype is a number"},
    {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, ~0ull,
     "tensor a: shape[0] is -2, expected a non-negative integer"},
    {"fractional dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,8]}}", 8,
     ~0ull, "tensor a: shape[1] is 1.5"},
    {"shape not an array", "{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8,
     ~0ull, "tensor a: shape is a string"},
    {"too many dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}",
     8, ~0ull, "tensor a: shape has 9 dims, more than the 8 supported"},
    {"overflowing shape",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4503599627370496,4503599627370496],\"data_offsets\":[0,8]}}",
     8, ~0ull, "tensor a: the shape's element count overflows"},
    {"three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 8, ~0ull,
     "tensor a: data_offsets must be [begin, end]"},
    {"entry not an object", "{\"a\":3}", 0, ~0ull, "tensor a: entry is a number"},
    {"duplicate names", "{" T_A "," T_A "}", 8, ~0ull, "tensor a: the name appears twice"},
    {"duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}",
     8, ~0ull, "tensor a: field dtype appears twice"},
    {"metadata value not a string", "{\"__metadata__\":{\"k\":1}}", 0, ~0ull,
     "__metadata__ key k: value is a number, expected a string"},
    {"metadata not an object", "{\"__metadata__\":[]}", 0, ~0ull, "__metadata__ is an array"},
    {"NUL escape in a name",
     "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, ~0ull,
     "header holds a \\u0000 escape"},
    {"invalid UTF-8", "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     ~0ull, "header is not valid UTF-8 (byte 3)"},
};

TEST(test_hostile_files_fail_with_the_file_and_the_reason_named) {
    char path[256];
    tmp_path(path, sizeof path, "hostile.safetensors");
    for (size_t i = 0; i < sizeof g_hostile / sizeof g_hostile[0]; i++) {
        const Hostile *h = &g_hostile[i];
        write_st(path, h->header, h->data_len, h->len_override, NULL);
        SafeTensors *st = st_open(path);
        CHECK(!st, "%s: opened", h->what);
        st_close(st);
        CHECK(error_has(path, h->reason), "%s: message \"%s\" lacks \"%s\"", h->what,
              mmrm_last_error(), h->reason);
    }
    write_bytes(path, "", 0);
    CHECK(!st_open(path) && error_has(path, "file is 0 bytes, too short"), "empty: %s",
          mmrm_last_error());
    write_bytes(path, "\x10\0\0\0", 4);
    CHECK(!st_open(path) && error_has(path, "file is 4 bytes, too short"), "4 bytes: %s",
          mmrm_last_error());
    unlink(path);
    CHECK(!st_open(path) && error_has(path, "cannot open"), "missing: %s", mmrm_last_error());
    CHECK(!st_open("/tmp") && error_has("/tmp", "is a directory"), "directory: %s",
          mmrm_last_error());
}

/* --------------------------------------------------------- sharded weights */

TEST(test_sharded_save_splits_by_size_and_every_tensor_is_found_by_name) {
    char dir[] = "/tmp/mmrm_test_st_shards_XXXXXX";
    if (!CHECK(mkdtemp(dir), "mkdtemp")) return;
    enum { NT = 7 };
    const char *names[NT] = {"a.w", "b.w", "c.big", "d.w", "e.ids", "f.s", "g.bf"};
    const int64_t sizes[NT] = {10, 3, 40, 7, 5, 1, 9}; /* 40 f32 = 160 bytes > the limit */
    float *vals[NT];
    StTensorOut t[NT];
    for (int i = 0; i < NT; i++) {
        vals[i] = seeded_array(40 + i, (size_t)sizes[i]);
        t[i] = out_tensor(names[i], i == 4 ? DT_I32 : DT_F32,
                          i == 4 ? ST_I32 : i == 6 ? ST_BF16 : ST_F32, 1, &sizes[i], vals[i]);
    }
    /* a stale single-file save must not shadow the new shards */
    char single[300], index[300], shard[300];
    snprintf(single, sizeof single, "%s/model.safetensors", dir);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    write_bytes(single, "stale", 5);
    CHECK(st_save_sharded(dir, t, NT, (const StMeta[]){{"format", "pt"}}, 1, 64) == 0,
          "sharded save: %s", mmrm_last_error());
    CHECK(!file_exists(single) && file_exists(index), "index written, stale file removed");
    /* greedy in name order, 64 bytes: a(40) b(12) | c(160) | d(28) e(20) f(4) | g(18) */
    snprintf(shard, sizeof shard, "%s/model-00004-of-00004.safetensors", dir);
    CHECK(file_exists(shard), "4 shards");
    ModelWeights *w = mw_open(dir);
    if (!CHECK(w, "open: %s", mmrm_last_error())) return;
    CHECK(mw_count(w) == NT, "count %d", mw_count(w));
    for (int i = 0; i < NT; i++) {
        const SafeTensors *f = NULL;
        const StEntry *e = mw_find(w, names[i], &f);
        if (!CHECK(e && f, "find %s: %s", names[i], mmrm_last_error())) continue;
        CHECK(mw_get(w, i, NULL) == e, "mw_get(%d) is %s in name order", i, names[i]);
        CHECK(strcmp(st_meta_get(f, "format"), "pt") == 0, "shard metadata");
        float got[64];
        if (i == 4) {
            CHECK(st_read_i32(f, e, (int32_t *)got, 5) == 0 && memcmp(got, vals[i], 20) == 0,
                  "ids");
        } else if (i == 6) {
            CHECK(st_read_f32(f, e, got, 9) == 0, "read %s", names[i]);
            for (int k = 0; k < 9; k++)
                CHECK(got[k] == f32_from_bf16(bf16_ref(vals[i][k])), "%s[%d]", names[i], k);
        } else {
            CHECK(st_read_f32(f, e, got, (size_t)sizes[i]) == 0, "read %s", names[i]);
            EXPECT_SAME(names[i], got, vals[i], (size_t)sizes[i]);
        }
    }
    CHECK(!mw_find(w, "nope", NULL) && error_has(dir, "tensor nope: not found"), "not found");
    mw_close(w);
    w = mw_open(index);
    CHECK(w && mw_count(w) == NT, "open by the index path: %s", mmrm_last_error());
    mw_close(w);

    /* saving again into one file removes the index and the shards */
    CHECK(st_save_sharded(dir, t, NT, NULL, 0, 1 << 20) == 0, "single save: %s",
          mmrm_last_error());
    CHECK(file_exists(single) && !file_exists(index) && !file_exists(shard), "single file only");
    w = mw_open(single);
    CHECK(w && mw_count(w) == NT && mw_find(w, "c.big", NULL), "open by the file path: %s",
          mmrm_last_error());
    mw_close(w);
    remove_dir(dir);
    for (int i = 0; i < NT; i++) free(vals[i]);
}

TEST(test_inconsistent_sharded_directories_name_the_index_and_the_problem) {
    char dir[] = "/tmp/mmrm_test_st_badshards_XXXXXX";
    if (!CHECK(mkdtemp(dir), "mkdtemp")) return;
    char index[300], s1[300], s2[300];
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    snprintf(s1, sizeof s1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(s2, sizeof s2, "%s/model-00002-of-00002.safetensors", dir);
    CHECK(!mw_open(dir) && error_has(dir, "no model.safetensors or model.safetensors.index.json"),
          "empty directory: %s", mmrm_last_error());
    float x[4] = {1, 2, 3, 4};
    StTensorOut ac[] = {out_tensor("a", DT_F32, ST_F32, 1, (const int64_t[]){4}, x),
                        out_tensor("c", DT_F32, ST_F32, 1, (const int64_t[]){1}, x)};
    StTensorOut b = out_tensor("b", DT_F32, ST_F32, 1, (const int64_t[]){2}, x);
    CHECK(st_save(s1, ac, 2, NULL, 0) == 0 && st_save(s2, &b, 1, NULL, 0) == 0, "shards");
    const char *good = "{\"metadata\": {}, \"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", "
                       "\"b\": \"model-00002-of-00002.safetensors\", \"c\": \"model-00001-of-00002.safetensors\"}}";
    write_bytes(index, good, strlen(good));
    ModelWeights *w = mw_open(dir);
    CHECK(w && mw_count(w) == 3, "consistent index: %s", mmrm_last_error());
    mw_close(w);

    static const struct { const char *json, *reason; } cases[] = {
        {"{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00003.safetensors\"}}",
         "shard model-00003.safetensors (listed for tensor b) cannot be loaded: cannot open"},
        {"{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00002-of-00002.safetensors\", "
         "\"ghost\": \"model-00002-of-00002.safetensors\"}}",
         "tensor ghost: listed in shard model-00002-of-00002.safetensors but absent from it"},
        {"{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\"}}",
         "tensor b: listed in shard model-00001-of-00002.safetensors but absent"},
        {"{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00002-of-00002.safetensors\"}}",
         "tensor c: present in the shard but not listed for it"},
        {"{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"a\": \"model-00001-of-00002.safetensors\", "
         "\"b\": \"model-00002-of-00002.safetensors\"}}", "tensor a: listed twice in weight_map"},
        {"{\"weight_map\": {\"a\": \"../model-00001-of-00002.safetensors\"}}",
         "weight_map value must be a shard file name"},
        {"{\"metadata\": {}}", "no \"weight_map\" object"},
        {"{\"weight_map\": ", "index is not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_bytes(index, cases[i].json, strlen(cases[i].json));
        w = mw_open(dir);
        CHECK(!w, "case %zu opened", i);
        mw_close(w);
        CHECK(error_has(index, cases[i].reason) || error_has(s2, cases[i].reason),
              "case %zu: \"%s\" lacks \"%s\"", i, mmrm_last_error(), cases[i].reason);
    }
    write_bytes(index, good, strlen(good));
    unlink(s2);
    CHECK(!mw_open(dir) && error_has(index, "shard model-00002-of-00002.safetensors (listed for "
                                            "tensor b) cannot be loaded") &&
              error_has(s2, "No such file"),
          "missing shard: %s", mmrm_last_error());
    remove_dir(dir);
}

/* ------------------------------------------------------------- atomic writes */

TEST(test_writer_rejects_bad_tensors_before_touching_the_file) {
    char path[256];
    tmp_path(path, sizeof path, "rejected.safetensors");
    unlink(path);
    float x[2] = {1, 2};
    int32_t i[2] = {1, 2};
    const int64_t s2[] = {2}, neg[] = {-2};
    static const char *reasons[] = {
        "tensor x: the name is given twice", "tensor y: i32 data cannot be stored as BF16",
        "name __metadata__ is reserved", "tensor z: dimension 0 (-2) is negative",
        "tensor n: data is NULL", "metadata key k is given twice"};
    StTensorOut cases[][2] = {
        {out_tensor("x", DT_F32, ST_F32, 1, s2, x), out_tensor("x", DT_F32, ST_BF16, 1, s2, x)},
        {out_tensor("x", DT_F32, ST_F32, 1, s2, x), out_tensor("y", DT_I32, ST_BF16, 1, s2, i)},
        {out_tensor("x", DT_F32, ST_F32, 1, s2, x), out_tensor("__metadata__", DT_F32, ST_F32, 1, s2, x)},
        {out_tensor("x", DT_F32, ST_F32, 1, s2, x), out_tensor("z", DT_F32, ST_F32, 1, neg, x)},
        {out_tensor("x", DT_F32, ST_F32, 1, s2, x), out_tensor("n", DT_F32, ST_F32, 1, s2, NULL)},
        {out_tensor("x", DT_F32, ST_F32, 1, s2, x), out_tensor("w", DT_F32, ST_F32, 1, s2, x)},
    };
    const StMeta dup[] = {{"k", "1"}, {"k", "2"}};
    for (int c = 0; c < 6; c++) {
        int rc = st_save(path, cases[c], 2, c == 5 ? dup : NULL, c == 5 ? 2 : 0);
        CHECK(rc == -1 && error_has(path, reasons[c]), "case %d: \"%s\" lacks \"%s\"", c,
              mmrm_last_error(), reasons[c]);
        CHECK(!file_exists(path), "case %d left a file", c);
    }
}

TEST(test_save_into_a_missing_directory_fails_cleanly) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/mmrm_test_st_nodir_%d/sub/model.safetensors", (int)getpid());
    float x[3] = {1, 2, 3};
    StTensorOut t = out_tensor("x", DT_F32, ST_F32, 1, (const int64_t[]){3}, x);
    CHECK(st_save(path, &t, 1, NULL, 0) == -1 && error_has(path, "No such file or directory"),
          "%s", mmrm_last_error());
    CHECK(st_save_sharded("/tmp/mmrm_test_st_nodir_x/y", &t, 1, NULL, 0, 4) == -1 &&
              error_has("/tmp/mmrm_test_st_nodir_x/y/model.safetensors", "No such file"),
          "sharded: %s", mmrm_last_error());
}

TEST(test_failed_write_leaves_the_existing_file_byte_identical) {
    char path[256], keep[256], tmp[300];
    tmp_path(path, sizeof path, "existing.safetensors");
    tmp_path(keep, sizeof keep, "existing.copy");
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    float x[3] = {1, 2, 3};
    StTensorOut t = out_tensor("x", DT_F32, ST_F32, 1, (const int64_t[]){3}, x);
    CHECK(st_save(path, &t, 1, NULL, 0) == 0 && st_save(keep, &t, 1, NULL, 0) == 0, "originals");

    /* a file size limit makes the write fail half way through the data */
    enum { N = 1 << 14 };
    float *big = seeded_array(50, N);
    StTensorOut b = out_tensor("big", DT_F32, ST_BF16, 1, (const int64_t[]){N}, big);
    struct rlimit saved;
    getrlimit(RLIMIT_FSIZE, &saved);
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {4096, saved.rlim_max};
    setrlimit(RLIMIT_FSIZE, &lim);
    int rc = st_save(path, &b, 1, NULL, 0);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, old);
    CHECK(rc == -1 && error_has(path, "File too large"), "limited write: %s", mmrm_last_error());
    CHECK(same_file_bytes(path, keep), "the existing file changed");
    CHECK(!file_exists(tmp), "the temporary file %s was left behind", tmp);
    CHECK(st_save(path, &b, 1, NULL, 0) == 0, "unlimited write: %s", mmrm_last_error());
    CHECK(!same_file_bytes(path, keep) && !file_exists(tmp), "replaced");
    free(big);
    unlink(path);
    unlink(keep);
}
