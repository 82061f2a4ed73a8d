/* test_tfevents.c - the TensorBoard event writer (runtime/tfevents.c): CRC32C against its
 * check value and RFC 3720's vectors; the bytes of a file written from the inputs of
 * tests/fixtures/tfevents/inputs.json against the file TensorBoard's own writer made from
 * them (tests/oracle/tfevents_fixture.py); the histogram buckets against numpy.histogram's;
 * the reader on torn and corrupted files; the rebuild of a run directory on resume. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/tfevents.h"
#include "tests/harness.h"

#define FIXTURE_DIR "tests/fixtures/tfevents/"

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static void make_tmp(char *dir, size_t cap) {
    snprintf(dir, cap, "/tmp/mmrm_tfevents_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void rm_tmp(const char *dir) { nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS); }

static void write_plain(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(b, 1, n, f) == n && fclose(f) == 0, "writing %s", path);
}

TEST(test_crc32c_matches_check_value_and_rfc3720_vectors) {
    CHECK(crc32c("123456789", 9) == 0xE3069283u, "check value: %08x", crc32c("123456789", 9));
    unsigned char b[48];
    memset(b, 0, 32);
    CHECK(crc32c(b, 32) == 0x8A9136AAu, "32 zeros: %08x", crc32c(b, 32));
    memset(b, 0xFF, 32);
    CHECK(crc32c(b, 32) == 0x62A8AB43u, "32 x 0xff: %08x", crc32c(b, 32));
    for (int i = 0; i < 32; i++) b[i] = (unsigned char)i;
    CHECK(crc32c(b, 32) == 0x46DD794Eu, "0..31: %08x", crc32c(b, 32));
    for (int i = 0; i < 32; i++) b[i] = (unsigned char)(31 - i);
    CHECK(crc32c(b, 32) == 0x113FDB5Cu, "31..0: %08x", crc32c(b, 32));
    static const unsigned char iscsi[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
        0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    CHECK(crc32c(iscsi, 48) == 0xD9963A56u, "iSCSI read PDU: %08x", crc32c(iscsi, 48));
}

static cJSON *load_inputs(void) {
    char *text = fs_read_file(FIXTURE_DIR "inputs.json", NULL);
    CHECK(text != NULL, "%s", mmrm_last_error());
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(j != NULL, "inputs.json does not parse");
    return j;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    CHECK(cJSON_IsNumber(v), "inputs.json: \"%s\" missing", k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    CHECK(cJSON_IsString(v), "inputs.json: \"%s\" missing", k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* a number array of o into a malloc'd array (at least one slot); *n its length */
static double *nums(const cJSON *o, const char *k, int *n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, k), *e;
    *n = cJSON_GetArraySize(a);
    double *x = xcalloc(*n + 1, sizeof *x);
    int i = 0;
    cJSON_ArrayForEach(e, a) x[i++] = e->valuedouble;
    return x;
}

/* the histogram of an input from its listed statistics and buckets (arrays malloc'd) */
static TfHistogram listed_histogram(const cJSON *e, double **lim, double **cnt) {
    int nl, nc;
    *lim = nums(e, "bucket_limit", &nl);
    *cnt = nums(e, "bucket", &nc);
    CHECK(nl == nc, "bucket_limit and bucket differ in length");
    return (TfHistogram){.min = num(e, "min"), .max = num(e, "max"), .num = num(e, "num"), .sum = num(e, "sum"),
                         .sum_squares = num(e, "sum_squares"), .n = nl, .bucket_limit = *lim, .bucket = *cnt};
}

/* the fixture's bytes against our writer's, fed the same inputs */
TEST(test_tfevents_writer_matches_tensorboard_bytes) {
    cJSON *j = load_inputs();
    if (!j) return;
    char dir[64];
    make_tmp(dir, sizeof dir);
    TfEventWriter *w = tfevents_open(dir, num(j, "wall_time"), NULL);
    CHECK(w != NULL, "%s", mmrm_last_error());
    if (!w) goto out;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(j, "events")) {
        double wt = num(e, "wall_time");
        int64_t step = (int64_t)num(e, "step");
        if (strcmp(str(e, "kind"), "scalar") == 0) {
            CHECK(tfevents_scalar(w, wt, step, str(e, "tag"), (float)num(e, "value")) == 0, "write");
        } else {
            double *lim, *cnt;
            TfHistogram h = listed_histogram(e, &lim, &cnt);
            CHECK(tfevents_histogram(w, wt, step, str(e, "tag"), &h) == 0, "write");
            free(lim);
            free(cnt);
        }
    }
    CHECK(tfevents_flush(w) == 0, "flush");
    size_t n_ours, n_ref;
    char *ours = fs_read_file(tfevents_path(w), &n_ours);
    char *ref = fs_read_file(FIXTURE_DIR "events.out.tfevents.fixture", &n_ref);
    CHECK(ours && ref, "reading the files");
    if (ours && ref) {
        size_t at = 0;
        while (at < n_ours && at < n_ref && ours[at] == ref[at]) at++;
        CHECK(n_ours == n_ref && at == n_ref, "%zu bytes written, TensorBoard's %zu; first difference at byte %zu",
              n_ours, n_ref, at);
    }
    const char *name = strrchr(tfevents_path(w), '/') + 1;
    char host[256] = "";
    gethostname(host, sizeof host);
    char want[512];
    snprintf(want, sizeof want, "events.out.tfevents.%010ld.%s.%ld.0", (long)num(j, "wall_time"), host, (long)getpid());
    CHECK(strcmp(name, want) == 0, "file name %s, TensorBoard's would be %s", name, want);
    free(ours);
    free(ref);
    tfevents_close(w);
out:
    rm_tmp(dir);
    cJSON_Delete(j);
}

TEST(test_tfevents_histogram_fill_matches_numpy_histogram) {
    cJSON *j = load_inputs();
    if (!j) return;
    const cJSON *e;
    int cases = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(j, "events")) {
        if (strcmp(str(e, "kind"), "histogram") != 0) continue;
        cases++;
        int nv, nb = (int)num(e, "buckets");
        double *x = nums(e, "values", &nv), *lim, *cnt;
        TfHistogram ref = listed_histogram(e, &lim, &cnt);
        double *l = xcalloc(nb, sizeof *l), *c = xcalloc(nb, sizeof *c);
        TfHistogram h;
        tf_histogram_fill(&h, x, nv, nb, l, c);
        CHECK(h.min == ref.min && h.max == ref.max && h.num == ref.num && h.sum == ref.sum &&
                  h.sum_squares == ref.sum_squares,
              "step %g: statistics (%.17g %.17g %g %.17g %.17g) vs numpy's (%.17g %.17g %g %.17g %.17g)",
              num(e, "step"), h.min, h.max, h.num, h.sum, h.sum_squares, ref.min, ref.max, ref.num, ref.sum,
              ref.sum_squares);
        CHECK(h.n == ref.n, "step %g: %d buckets, numpy %d", num(e, "step"), h.n, ref.n);
        for (int i = 0; i < h.n && i < ref.n; i++)
            CHECK(h.bucket_limit[i] == ref.bucket_limit[i] && h.bucket[i] == ref.bucket[i],
                  "step %g bucket %d: limit %.17g count %g, numpy %.17g %g", num(e, "step"), i,
                  h.bucket_limit[i], h.bucket[i], ref.bucket_limit[i], ref.bucket[i]);
        free(x);
        free(lim);
        free(cnt);
        free(l);
        free(c);
    }
    CHECK(cases >= 3, "inputs.json has %d histograms", cases);
    cJSON_Delete(j);
}

typedef struct {
    int count;
    TfEventInfo info[64];
} Seen;

static int seen_record(void *ctx, const void *data, size_t n) {
    Seen *s = ctx;
    if (s->count < 64) CHECK(tf_event_parse(data, n, &s->info[s->count]) == 0, "record %d does not parse", s->count);
    s->count++;
    return 0;
}

/* the record boundaries of a well-formed file, from its length fields */
static int boundaries(const unsigned char *b, size_t n, size_t *end, int cap) {
    int k = 0;
    for (size_t at = 0; at + 12 <= n && k < cap;) {
        uint64_t len = 0;
        for (int i = 0; i < 8; i++) len |= (uint64_t)b[at + i] << (8 * i);
        at += 16 + len;
        end[k++] = at;
    }
    return k;
}

TEST(test_tfevents_read_parses_the_fixture_and_its_framing) {
    cJSON *j = load_inputs();
    if (!j) return;
    Seen s = {0};
    int torn = -1;
    long n = tfevents_read(FIXTURE_DIR "events.out.tfevents.fixture", seen_record, &s, &torn);
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(j, "events"), *e;
    CHECK(n == 1 + cJSON_GetArraySize(events) && s.count == n && torn == 0, "%ld records (torn %d), %d inputs",
          n, torn, cJSON_GetArraySize(events));
    CHECK(!s.info[0].has_summary && s.info[0].wall_time == num(j, "wall_time"), "the file_version event");
    int i = 1;
    cJSON_ArrayForEach(e, events) {
        if (i >= s.count || i >= 64) break;
        CHECK(s.info[i].has_summary && s.info[i].step == (int64_t)num(e, "step") &&
                  s.info[i].wall_time == num(e, "wall_time") && strcmp(s.info[i].tag, str(e, "tag")) == 0,
              "record %d: step %lld tag %s wall %.17g", i, (long long)s.info[i].step, s.info[i].tag,
              s.info[i].wall_time);
        i++;
    }
    /* the framing on its own: each header's and payload's masked CRC, as the formula gives */
    size_t size;
    unsigned char *b = (unsigned char *)fs_read_file(FIXTURE_DIR "events.out.tfevents.fixture", &size);
    size_t end[64];
    int k = b ? boundaries(b, size, end, 64) : 0;
    CHECK(k == n && end[k - 1] == size, "%d frames by their lengths", k);
    for (int r = 0; r < k; r++) {
        size_t at = r ? end[r - 1] : 0, len = end[r] - at - 16;
        uint32_t want_h = 0, want_d = 0;
        for (int q = 0; q < 4; q++) {
            want_h |= (uint32_t)b[at + 8 + q] << (8 * q);
            want_d |= (uint32_t)b[at + 12 + len + q] << (8 * q);
        }
        uint32_t c = crc32c(b + at, 8), d = crc32c(b + at + 12, len);
        CHECK(want_h == ((c >> 15) | (c << 17)) + 0xa282ead8u && want_d == ((d >> 15) | (d << 17)) + 0xa282ead8u,
              "record %d: masked CRCs", r);
        CHECK(tfrecord_masked_crc(b + at + 12, len) == want_d, "record %d: tfrecord_masked_crc", r);
    }
    free(b);
    cJSON_Delete(j);
}

/* tf_event_histogram_parse on the events TensorBoard's writer encoded: each histogram's
 * statistics and buckets as listed in inputs.json; scalars and the file version hold none */
typedef struct {
    int count;
    unsigned char *ev[64];
    size_t n[64];
} Records;

static int keep_record(void *ctx, const void *data, size_t n) {
    Records *r = ctx;
    if (r->count < 64) {
        r->ev[r->count] = xmalloc(n ? n : 1);
        memcpy(r->ev[r->count], data, n);
        r->n[r->count++] = n;
    }
    return 0;
}

TEST(test_tfevents_histogram_parse_reads_tensorboards_histograms) {
    cJSON *j = load_inputs();
    if (!j) return;
    Records r = {0};
    tfevents_read(FIXTURE_DIR "events.out.tfevents.fixture", keep_record, &r, NULL);
    double lim[256], cnt[256];
    TfHistogram h;
    CHECK(r.count > 1 && tf_event_histogram_parse(r.ev[0], r.n[0], &h, lim, cnt, 256) == 0, "file version event");
    int i = 1, histograms = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(j, "events")) {
        if (i >= r.count) break;
        int got = tf_event_histogram_parse(r.ev[i], r.n[i], &h, lim, cnt, 256);
        if (strcmp(str(e, "kind"), "scalar") == 0) {
            CHECK(got == 0, "record %d (a scalar): %d", i, got);
        } else {
            double *wl, *wc;
            TfHistogram want = listed_histogram(e, &wl, &wc);
            CHECK(got == 1 && h.n == want.n && h.min == want.min && h.max == want.max && h.num == want.num &&
                      h.sum == want.sum && h.sum_squares == want.sum_squares,
                  "record %d: %d, %d buckets (want %d), min %g max %g num %g", i, got, h.n, want.n, h.min, h.max,
                  h.num);
            for (int k = 0; got == 1 && k < h.n && k < want.n; k++)
                CHECK(h.bucket_limit[k] == want.bucket_limit[k] && h.bucket[k] == want.bucket[k],
                      "record %d bucket %d: %.17g %g, want %.17g %g", i, k, h.bucket_limit[k], h.bucket[k],
                      want.bucket_limit[k], want.bucket[k]);
            if (want.n > 1)
                CHECK(tf_event_histogram_parse(r.ev[i], r.n[i], &h, lim, cnt, want.n - 1) == -1,
                      "record %d: more buckets than room accepted", i);
            for (size_t cut = 1; cut < r.n[i]; cut += 7)
                CHECK(tf_event_histogram_parse(r.ev[i], r.n[i] - cut, &h, lim, cnt, 256) != 1 ||
                          h.n != want.n,
                      "record %d cut by %zu bytes read as whole", i, cut);
            free(wl);
            free(wc);
            histograms++;
        }
        i++;
    }
    CHECK(histograms >= 2, "%d histograms in the fixture", histograms);
    for (int k = 0; k < r.count; k++) free(r.ev[k]);
    cJSON_Delete(j);
}

/* prefixes of the file (a writer killed at any byte) and a flipped byte in every record */
TEST(test_tfevents_read_stops_at_a_torn_or_corrupt_record) {
    size_t size;
    unsigned char *b = (unsigned char *)fs_read_file(FIXTURE_DIR "events.out.tfevents.fixture", &size);
    CHECK(b != NULL, "fixture");
    if (!b) return;
    size_t end[64];
    int k = boundaries(b, size, end, 64);
    char dir[64], p[128];
    make_tmp(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/f", dir);
    int bad = 0;
    /* every byte of the first three records, then around each boundary */
    for (size_t cut = 0; cut <= size && !bad; cut++) {
        int near = 0;
        for (int r = 0; r < k; r++) near |= cut + 1 >= end[r] && cut <= end[r] + 12;
        if (cut > end[2] && !near) continue;
        write_plain(p, b, cut);
        int whole = 0;
        while (whole < k && end[whole] <= cut) whole++;
        Seen s = {0};
        int torn;
        long n = tfevents_read(p, seen_record, &s, &torn);
        int at_boundary = cut == 0 || (whole > 0 && end[whole - 1] == cut);
        if (n != whole || torn != !at_boundary) {
            CHECK(0, "cut at %zu: %ld records (torn %d), %d complete", cut, n, torn, whole);
            bad = 1;
        }
    }
    for (int r = 0; r < k; r++) {
        size_t at = r ? end[r - 1] : 0;
        unsigned char *c = xmalloc(size);
        memcpy(c, b, size);
        size_t flip = at + 12 + (end[r] - at - 16) / 2; /* inside the payload */
        c[flip] ^= 0x10;
        write_plain(p, c, size);
        Seen s = {0};
        int torn;
        long n = tfevents_read(p, seen_record, &s, &torn);
        CHECK(n == r && torn == 1, "byte %zu flipped: %ld records (torn %d), want %d", flip, n, torn, r);
        free(c);
    }
    rm_tmp(dir);
    free(b);
}

static void write_file(const char *dir, const char *name, const StrBuf *b) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CHECK(fs_write_atomic(p, b->s, b->len) == 0, "%s", mmrm_last_error());
}

static int count_event_files(const char *dir, char *last, size_t cap) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, "events.out.tfevents.", 20) == 0) n++, snprintf(last, cap, "%s", e->d_name);
    if (d) closedir(d);
    return n;
}

/* a resumed run: two earlier files (the second a rerun that died with a torn tail, repeating
 * steps of the first) and a stale temporary; collect keeps steps <= the checkpoint once
 * each, open leaves one file holding them in step order */
TEST(test_tfevents_rebuild_keeps_each_step_up_to_the_checkpoint_once) {
    char dir[64];
    make_tmp(dir, sizeof dir);
    TRng rng = trng(11);
    StrBuf a = {0}, b = {0}, ev = {0};
    tf_event_file_version(&ev, 100.0, "brain.Event:2");
    tfrecord_frame(&a, ev.s, ev.len);
    tfrecord_frame(&b, ev.s, ev.len);
    for (int step = 1; step <= 6; step++) {
        for (int t = 0; t < 2; t++) {
            sb_reset(&ev);
            tf_event_scalar(&ev, 100.0 + step, step, t ? "train/accuracy" : "train/loss", trng_normal(&rng));
            tfrecord_frame(&a, ev.s, ev.len);
        }
    }
    for (int step = 3; step <= 7; step++) { /* the rerun: same tags, other values */
        sb_reset(&ev);
        tf_event_scalar(&ev, 200.0 + step, step, "train/loss", 1000.0f + step);
        tfrecord_frame(&b, ev.s, ev.len);
    }
    b.len -= 5; /* torn */
    write_file(dir, "events.out.tfevents.0000000100.h.1.0", &a);
    write_file(dir, "events.out.tfevents.0000000200.h.2.0", &b);
    write_file(dir, "events.out.tfevents.0000000300.h.3.0.tmp.3", &b);
    TfEventList l = {0};
    CHECK(tfevents_collect(dir, 4, &l) == 0, "%s", mmrm_last_error());
    CHECK(l.count == 8, "%ld events kept, want 8 (steps 1-4, two tags)", l.count);
    for (int step = 1; step <= 4; step++)
        CHECK(tf_list_has(&l, "train/loss", step) && tf_list_has(&l, "train/accuracy", step), "step %d", step);
    CHECK(!tf_list_has(&l, "train/loss", 5), "step 5 is past the checkpoint");
    sb_reset(&ev);
    tf_event_scalar(&ev, 300.0, 2, "eval/accuracy", 0.5f);
    CHECK(tf_list_add(&l, ev.s, ev.len) == 1, "a new tag and step is added");
    CHECK(tf_list_add(&l, ev.s, ev.len) == 0, "a repeated one is not");
    TfEventWriter *w = tfevents_open(dir, 400.0, &l);
    CHECK(w != NULL, "%s", mmrm_last_error());
    char last[256] = "";
    CHECK(count_event_files(dir, last, sizeof last) == 1, "one event file left");
    if (w) {
        CHECK(tfevents_scalar(w, 401.0, 5, "train/loss", 2.5f) == 0 && tfevents_flush(w) == 0, "append");
        Seen s = {0};
        int torn;
        long n = tfevents_read(tfevents_path(w), seen_record, &s, &torn);
        CHECK(n == 11 && !torn, "%ld records", n);
        int64_t prev = 0;
        for (int i = 1; i < s.count && i < 64; i++) {
            CHECK(s.info[i].step >= prev, "record %d: step %lld after %lld", i, (long long)s.info[i].step,
                  (long long)prev);
            prev = s.info[i].step;
        }
        CHECK(s.info[10].step == 5 && strcmp(s.info[10].tag, "train/loss") == 0, "the appended event last");
        /* the kept values are the first file's */
        for (int i = 1; i < s.count && i < 10; i++)
            if (strcmp(s.info[i].tag, "eval/accuracy") != 0)
                CHECK(s.info[i].wall_time == 100.0 + s.info[i].step, "record %d comes from the first file", i);
    }
    tfevents_close(w);
    tf_list_free(&l);
    sb_free(&a);
    sb_free(&b);
    sb_free(&ev);
    rm_tmp(dir);
}

/* a long run's list: thousands of (tag, step) keys, each found, each added once */
TEST(test_tfevents_list_finds_every_key_and_refuses_repeats) {
    static const char *tags[] = {"train/loss", "train/accuracy", "eval/accuracy"};
    TfEventList l = {0};
    StrBuf ev = {0};
    int added = 0, repeats = 0;
    for (int round = 0; round < 2; round++)
        for (int step = 1; step <= 3000; step++)
            for (int t = 0; t < 3; t++) {
                sb_reset(&ev);
                tf_event_scalar(&ev, 1.0, step, tags[t], (float)step);
                int rc = tf_list_add(&l, ev.s, ev.len);
                added += rc == 1;
                repeats += rc == 0;
            }
    CHECK(added == 9000 && repeats == 9000 && l.count == 9000, "%d added, %d repeats, %ld listed", added, repeats,
          l.count);
    int missing = 0;
    for (int step = 1; step <= 3000; step++)
        for (int t = 0; t < 3; t++) missing += !tf_list_has(&l, tags[t], step);
    CHECK(missing == 0, "%d keys not found", missing);
    CHECK(!tf_list_has(&l, "train/loss", 3001) && !tf_list_has(&l, "train/los", 1), "absent keys");
    sb_reset(&ev);
    tf_event_file_version(&ev, 1.0, "brain.Event:2");
    CHECK(tf_list_add(&l, ev.s, ev.len) == -1, "a file_version event is not a summary event");
    tf_list_free(&l);
    sb_free(&ev);
}

/* bytes of another kind (random, or a real event cut short) are refused, never over-read */
TEST(test_tfevents_parse_refuses_malformed_events) {
    StrBuf ev = {0};
    tf_event_scalar(&ev, 12.5, 77, "train/loss", 0.25f);
    TfEventInfo info;
    CHECK(tf_event_parse(ev.s, ev.len, &info) == 0 && info.step == 77 && info.wall_time == 12.5 &&
              strcmp(info.tag, "train/loss") == 0,
          "the whole event");
    for (size_t cut = 1; cut < ev.len; cut++) {
        char *c = xmalloc(cut); /* exactly cut bytes: ASan sees an over-read */
        memcpy(c, ev.s, cut);
        TfEventInfo i2;
        int rc = tf_event_parse(c, cut, &i2);
        CHECK(rc == -1 || !i2.has_summary || strcmp(i2.tag, "train/loss") != 0 || cut == ev.len,
              "cut at %zu parsed as complete", cut);
        free(c);
    }
    TRng rng = trng(5);
    for (int k = 0; k < 2000; k++) {
        size_t n = 1 + (size_t)(trng_uniform(&rng) * 64);
        unsigned char *c = xmalloc(n);
        for (size_t i = 0; i < n; i++) c[i] = (unsigned char)(trng_uniform(&rng) * 256);
        tf_event_parse(c, n, &info);
        free(c);
    }
    sb_free(&ev);
}
