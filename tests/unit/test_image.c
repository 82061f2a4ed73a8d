/* test_image.c - the image processor (models/image.c) against PIL and torchvision: decoding
 * to RGB, the bicubic resize, tiling decisions, the candidate order and tile normalisation,
 * all checked on the fixtures that tests/oracle/gen_image_fixtures.py wrote (its header
 * describes tests/fixtures/images/manifest.txt) and, for JPEG decoding, those of
 * tests/oracle/gen_jpeg_fixtures.py (tests/fixtures/jpeg/); plus the tiling rule re-derived
 * here by brute force, the blank image of the bias branch, and the errors for bad files. Runs
 * from the repository root; needs no Python. */
#include "../harness.h"
#include "../../models/image.h"
#include "../../runtime/error.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h> /* after stdio.h, which it needs */

#define FIXTURES "tests/fixtures/images/"

/* ---- fixtures: manifest lines and the blob they point into, loaded once */

static char **g_lines;
static int g_nlines;
static unsigned char *g_blob;
static size_t g_blob_size;

static void load_fixtures(void) {
    if (g_lines) return;
    size_t n;
    char *text = (char *)read_fixture(FIXTURES "manifest.txt", &n);
    g_blob = read_fixture(FIXTURES "expected.bin", &g_blob_size);
    for (size_t i = 0; i < n; i++) g_nlines += text[i] == '\n';
    g_lines = malloc((g_nlines + 1) * sizeof(char *)); /* + a last line without newline */
    int k = 0;
    for (char *s = strtok(text, "\n"); s; s = strtok(NULL, "\n")) g_lines[k++] = s;
    g_nlines = k;
}

static const unsigned char *blob(long off, size_t n) {
    if (off < 0 || (size_t)off + n > g_blob_size) {
        fprintf(stderr, "test_image: expected.bin too short (offset %ld + %zu); regenerate it\n",
                off, n);
        exit(2);
    }
    return g_blob + off;
}

/* the formula of synth_rgb in the oracle script */
static void synth_image(int w, int h, Image *img) {
    img->w = w;
    img->h = h;
    img->rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                int v = (x * (3 + c) + y * (5 - c) + c * 85) & 255;
                if (((x >> 4) + (y >> 4)) & 1) v ^= 0xA5;
                v ^= (x * y) & 15;
                img->rgb[((size_t)y * w + x) * 3 + c] = (unsigned char)v;
            }
}

/* a source named in the manifest, as PIL decoded it (so that resize and tiling checks do not
 * depend on the JPEG decoder) */
static void source_image(const char *src, Image *img) {
    int w, h;
    if (sscanf(src, "synth:%dx%d", &w, &h) == 2) {
        synth_image(w, h, img);
        return;
    }
    for (int i = 0; i < g_nlines; i++) {
        char name[128];
        long off;
        if (sscanf(g_lines[i], "image %127s %d %d %ld", name, &w, &h, &off) == 4 &&
            !strcmp(name, src)) {
            img->w = w;
            img->h = h;
            img->rgb = malloc((size_t)w * h * 3);
            memcpy(img->rgb, blob(off, (size_t)w * h * 3), (size_t)w * h * 3);
            return;
        }
    }
    fprintf(stderr, "test_image: source %s is not in the manifest\n", src);
    exit(2);
}

/* numpy's float32 (x/255 - mean[c]) / std[c], (3, 256) */
static const float *norm_table(void) {
    static float table[3 * 256];
    for (int i = 0; i < g_nlines; i++) {
        long off;
        if (sscanf(g_lines[i], "norm %ld", &off) == 1) {
            memcpy(table, blob(off, sizeof table), sizeof table);
            return table;
        }
    }
    fprintf(stderr, "test_image: no norm record in the manifest\n");
    exit(2);
}

/* ---- decoding */

TEST(test_decode_matches_pil_convert_rgb_for_every_fixture) {
    load_fixtures();
    int files = 0;
    for (int i = 0; i < g_nlines; i++) {
        char name[128], path[256];
        int w, h;
        long off;
        if (sscanf(g_lines[i], "image %127s %d %d %ld", name, &w, &h, &off) != 4) continue;
        files++;
        snprintf(path, sizeof path, FIXTURES "%s", name);
        Image img;
        if (!CHECK(image_load(path, &img) == 0, "%s: %s", name, mmrm_last_error())) continue;
        if (CHECK(img.w == w && img.h == h, "%s: decoded %d x %d, PIL %d x %d", name, img.w,
                  img.h, w, h)) {
            const unsigned char *want = blob(off, (size_t)w * h * 3);
            size_t n = (size_t)w * h * 3, differ = 0;
            int worst = 0;
            for (size_t k = 0; k < n; k++) {
                int d = abs(img.rgb[k] - want[k]);
                differ += d != 0;
                worst = d > worst ? d : worst;
            }
            CHECK(differ == 0, "%s: %zu of %zu values differ from PIL (worst %d)", name, differ,
                  n, worst);
        }
        image_free(&img);
    }
    CHECK(files >= 17, "only %d images in the manifest", files);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        fprintf(stderr, "test_image: cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

/* image_load(path) fails and the message names the file and contains `reason` */
static void expect_load_error(const char *path, const char *reason) {
    Image img = {1, 1, NULL};
    int rc = image_load(path, &img);
    const char *msg = mmrm_last_error();
    CHECK(rc == -1, "%s: loaded instead of failing", path);
    CHECK(img.rgb == NULL && img.w == 0, "%s: a failed load left an image behind", path);
    CHECK(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
    CHECK(strstr(msg, reason) != NULL, "message lacks \"%s\": %s", reason, msg);
    image_free(&img);
}

/* The JPEG fixtures of tests/oracle/gen_jpeg_fixtures.py (its header describes the manifest):
 * every subsampling, progressive, grey, Adobe CMYK and YCCK, restart markers, odd sizes, EXIF
 * orientation (not applied), corrupt data (decoded, as Pillow does) and truncations (refused,
 * as Pillow does). */
#define JPEG_FIXTURES "tests/fixtures/jpeg/"

TEST(test_jpeg_images_decode_to_pillows_bytes_exactly_and_fail_where_pillow_fails) {
    size_t n, blob_n;
    char *text = (char *)read_fixture(JPEG_FIXTURES "manifest.txt", &n);
    unsigned char *want_all = read_fixture(JPEG_FIXTURES "expected.bin", &blob_n);
    int decoded = 0, refused = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char kind[16], name[128], what[64], path[256];
        int w, h;
        long off;
        if (sscanf(line, "%15s %127s %d %d %ld", kind, name, &w, &h, &off) == 5 &&
            (!strcmp(kind, "rgb") || !strcmp(kind, "corrupt"))) {
            snprintf(path, sizeof path, JPEG_FIXTURES "%s", name);
            Image img;
            if (!CHECK(image_load(path, &img) == 0, "%s: %s", name, mmrm_last_error())) continue;
            size_t size = (size_t)w * h * 3, differ = 0;
            if (CHECK(img.w == w && img.h == h && off >= 0 && (size_t)off + size <= blob_n,
                      "%s: decoded %d x %d, Pillow %d x %d", name, img.w, img.h, w, h)) {
                int worst = 0;
                for (size_t k = 0; k < size; k++) {
                    int d = abs(img.rgb[k] - want_all[off + k]);
                    differ += d != 0;
                    worst = d > worst ? d : worst;
                }
                if (!strcmp(kind, "rgb"))
                    CHECK(differ == 0, "%s: %zu of %zu values differ from Pillow (worst %d)",
                          name, differ, size, worst);
                else /* garbage coefficients: bytes depend on libjpeg-turbo's IDCT code path */
                    printf("    %s (corrupt data): %zu of %zu values differ from Pillow's "
                           "x86-64 decode (worst %d)\n", name, differ, size, worst);
            }
            image_free(&img);
            int iw = 0, ih = 0;
            CHECK(image_info(path, &iw, &ih) == 0 && iw == w && ih == h,
                  "%s: image_info says %d x %d: %s", name, iw, ih, mmrm_last_error());
            decoded++;
        } else if (sscanf(line, "error %127s %63s", name, what) == 2) {
            snprintf(path, sizeof path, JPEG_FIXTURES "%s", name);
            expect_load_error(path, what);
            refused++;
        }
    }
    CHECK(decoded >= 20 && refused >= 3, "manifest has %d decodable and %d refused files",
          decoded, refused);
    free(text);
    free(want_all);
}

/* src's quantised coefficients rewritten losslessly with arithmetic coding (what jpegtran
 * -arithmetic does): the pixels must not change. Pillow's encoder cannot write such files. */
static void transcode_arithmetic(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    if (!in || !out) {
        fprintf(stderr, "test_image: cannot open %s or %s\n", src, dst);
        exit(2);
    }
    struct jpeg_decompress_struct d;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr derr, cerr;
    d.err = jpeg_std_error(&derr);
    jpeg_create_decompress(&d);
    jpeg_stdio_src(&d, in);
    jpeg_read_header(&d, TRUE);
    jvirt_barray_ptr *coefs = jpeg_read_coefficients(&d);
    c.err = jpeg_std_error(&cerr);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, out);
    jpeg_copy_critical_parameters(&d, &c);
    c.arith_code = TRUE;
    jpeg_write_coefficients(&c, coefs);
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    fclose(in);
    fclose(out);
}

TEST(test_arithmetic_coded_jpeg_images_decode_like_their_huffman_originals) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/mmrm_test_image_%d_arith.jpg", (int)getpid());
    transcode_arithmetic(JPEG_FIXTURES "baseline420_64x48.jpg", path);
    Image a, b;
    int w = 0, h = 0;
    CHECK(image_info(path, &w, &h) == 0 && w == 64 && h == 48, "image_info: %d x %d (%s)", w,
          h, mmrm_last_error());
    if (CHECK(image_load(path, &a) == 0, "%s", mmrm_last_error()) &&
        CHECK(image_load(JPEG_FIXTURES "baseline420_64x48.jpg", &b) == 0, "%s",
              mmrm_last_error())) {
        CHECK(a.w == b.w && a.h == b.h && !memcmp(a.rgb, b.rgb, (size_t)a.w * a.h * 3),
              "the arithmetic-coded copy decodes to other pixels");
        image_free(&a);
        image_free(&b);
    }
    unlink(path);
}

/* A valid progressive 8 x 8 grey JPEG of 1 + 63 * 10 scans: each AC coefficient sent alone,
 * its bits in ten successive-approximation steps. */
static unsigned char *many_scans_jpeg(unsigned long *size, int *nscans) {
    enum { AC_STEPS = 10, SCANS = 1 + 63 * AC_STEPS };
    static jpeg_scan_info script[SCANS];
    int k = 0;
    script[k++] = (jpeg_scan_info){1, {0}, 0, 0, 0, 0};
    for (int c = 1; c < 64; c++) {
        script[k++] = (jpeg_scan_info){1, {0}, c, c, 0, AC_STEPS - 1};
        for (int al = AC_STEPS - 2; al >= 0; al--)
            script[k++] = (jpeg_scan_info){1, {0}, c, c, al + 1, al};
    }
    unsigned char pixels[64], *out = NULL;
    for (int i = 0; i < 64; i++) pixels[i] = (unsigned char)(i * 37 % 251);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, size);
    c.image_width = c.image_height = 8;
    c.input_components = 1;
    c.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    c.scan_info = script;
    c.num_scans = k;
    jpeg_start_compress(&c, TRUE);
    for (int y = 0; y < 8; y++) {
        JSAMPROW row = pixels + 8 * y;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *nscans = k;
    return out;
}

TEST(test_jpeg_with_more_progressive_scans_than_the_limit_is_refused) {
    unsigned long n = 0;
    int nscans;
    unsigned char *data = many_scans_jpeg(&n, &nscans);
    Image img;
    int rc = image_decode(data, n, "scans.jpg", &img);
    CHECK(rc == -1 && strstr(mmrm_last_error(), "scans.jpg") &&
          strstr(mmrm_last_error(), "progressive scans"),
          "a JPEG of %d scans: rc %d, %s", nscans, rc, rc ? mmrm_last_error() : "decoded");
    if (rc == 0) image_free(&img);
    free(data);
}

/* half of a fixture, written to tmp */
static void write_truncated(const char *fixture, const char *tmp) {
    size_t n;
    unsigned char *d = read_fixture(fixture, &n);
    write_file(tmp, d, n / 2);
    free(d);
}

static uint32_t crc32_png(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static void put_le32(unsigned char *p, uint32_t v) {
    p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}

/* a PNG signature and a valid IHDR chunk claiming w x h 8-bit RGB, nothing else */
static void write_png_header(const char *path, uint32_t w, uint32_t h) {
    unsigned char d[33] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                           'I', 'H', 'D', 'R'};
    put_be32(d + 16, w);
    put_be32(d + 20, h);
    d[24] = 8; /* bit depth */
    d[25] = 2; /* colour type RGB */
    put_be32(d + 29, crc32_png(d + 12, 17));
    write_file(path, d, sizeof d);
}

/* SOI and a baseline SOF0 segment claiming w x h with 3 components */
static void write_jpeg_header(const char *path, unsigned w, unsigned h) {
    unsigned char d[21] = {0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8, h >> 8, h, w >> 8, w, 3,
                           1, 0x22, 0, 2, 0x11, 0, 3, 0x11, 0};
    write_file(path, d, sizeof d);
}

/* a 24-bit BMP file header + BITMAPINFOHEADER claiming w x h, and 16 bytes of pixels */
static void write_bmp_header(const char *path, uint32_t w, uint32_t h) {
    unsigned char d[70] = {'B', 'M'};
    put_le32(d + 2, sizeof d);
    put_le32(d + 10, 54);
    put_le32(d + 14, 40);
    put_le32(d + 18, w);
    put_le32(d + 22, h);
    d[26] = 1;  /* planes */
    d[28] = 24; /* bits per pixel */
    write_file(path, d, sizeof d);
}

TEST(test_load_errors_name_the_file_and_the_reason) {
    char path[128];
    int pid = (int)getpid();
    expect_load_error("/tmp/mmrm_test_image_no_such_file.png", "No such file");
    expect_load_error("/tmp", "not a regular file");

    const char *trunc[][2] = {{"photo_64x48.jpg", "jpg"}, {"rgb_101x101.png", "png"},
                              {"palette_50x31.gif", "gif"}, {"bgr_29x17.bmp", "bmp"}};
    for (int i = 0; i < 4; i++) {
        char fixture[128];
        snprintf(fixture, sizeof fixture, FIXTURES "%s", trunc[i][0]);
        snprintf(path, sizeof path, "/tmp/mmrm_test_image_%d_truncated.%s", pid, trunc[i][1]);
        write_truncated(fixture, path);
        expect_load_error(path, "truncated");
        unlink(path);
    }

    snprintf(path, sizeof path, "/tmp/mmrm_test_image_%d_text.png", pid);
    const char text[] = "this is a text file, not an image\n";
    write_file(path, text, sizeof text - 1);
    expect_load_error(path, "cannot read an image header");
    unlink(path);

    snprintf(path, sizeof path, "/tmp/mmrm_test_image_%d_empty.jpg", pid);
    write_file(path, "", 0);
    expect_load_error(path, "cannot read an image header");
    unlink(path);

    /* refused from the header alone, before any pixel is allocated */
    const uint32_t sizes[][2] = {{20000, 8}, {8, 16385}, {12000, 12000}};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "/tmp/mmrm_test_image_%d_huge.png", pid);
        write_png_header(path, sizes[i][0], sizes[i][1]);
        expect_load_error(path, "over the limit");
        unlink(path);
    }
    snprintf(path, sizeof path, "/tmp/mmrm_test_image_%d_huge.jpg", pid);
    write_jpeg_header(path, 20000, 100);
    expect_load_error(path, "over the limit");
    /* image_info reads up to the first scan, which this file lacks */
    int iw = 0, ih = 0;
    CHECK(image_info(path, &iw, &ih) == -1 && strstr(mmrm_last_error(), "truncated"),
          "image_info on a header without a scan: %s", mmrm_last_error());
    unlink(path);
    /* a JPEG whose quantisation table has a bogus length: libjpeg's error, not an exit() */
    size_t n;
    unsigned char *jpg = read_fixture(JPEG_FIXTURES "baseline420_64x48.jpg", &n);
    for (size_t k = 2; k + 3 < n; k++)
        if (jpg[k] == 0xFF && jpg[k + 1] == 0xDB) {
            jpg[k + 2] = 0;
            jpg[k + 3] = 1;
            break;
        }
    snprintf(path, sizeof path, "/tmp/mmrm_test_image_%d_badtable.jpg", pid);
    write_file(path, jpg, n);
    free(jpg);
    expect_load_error(path, "corrupt JPEG");
    CHECK(image_info(path, &iw, &ih) == -1 && strstr(mmrm_last_error(), path),
          "image_info accepted a bad header: %s", mmrm_last_error());
    unlink(path);
    expect_load_error(JPEG_FIXTURES "truncated_64x48.jpg", "JPEG file is truncated");
    snprintf(path, sizeof path, "/tmp/mmrm_test_image_%d_huge.bmp", pid);
    write_bmp_header(path, 100000, 100000);
    expect_load_error(path, "over the limit");
    unlink(path);
    /* stb itself refuses this PNG header; the message still names the file */
    snprintf(path, sizeof path, "/tmp/mmrm_test_image_%d_huge2.png", pid);
    write_png_header(path, 100000, 100000);
    expect_load_error(path, "too large");
    unlink(path);
}

/* ---- resize */

TEST(test_resize_matches_pillow_bit_exactly_on_every_fixture) {
    load_fixtures();
    size_t total = 0, within1 = 0, exact = 0;
    int worst = 0, cases = 0;
    for (int i = 0; i < g_nlines; i++) {
        char src[128];
        int w, h;
        long off;
        if (sscanf(g_lines[i], "resize %127s %d %d %ld", src, &w, &h, &off) != 4) continue;
        cases++;
        Image in, out;
        source_image(src, &in);
        image_resize(&in, w, h, &out);
        const unsigned char *want = blob(off, (size_t)w * h * 3);
        size_t n = (size_t)w * h * 3, bad = 0;
        for (size_t k = 0; k < n; k++) {
            int d = abs(out.rgb[k] - want[k]);
            worst = d > worst ? d : worst;
            within1 += d <= 1;
            exact += d == 0;
            bad += d != 0;
        }
        total += n;
        CHECK(out.w == w && out.h == h && bad == 0, "%s -> %d x %d: %zu of %zu values differ",
              src, w, h, bad, n);
        image_free(&in);
        image_free(&out);
    }
    printf("    resize vs Pillow: %d cases, %zu values, worst |diff| %d, %.4f%% within 1, "
           "%.4f%% equal\n", cases, total, worst, 100.0 * within1 / total, 100.0 * exact / total);
    CHECK(cases >= 80, "only %d resize cases in the manifest", cases);
    CHECK(within1 >= 0.999 * total, "fewer than 99.9%% of values within 1 of Pillow");
}

TEST(test_resize_is_bitwise_independent_of_thread_count) {
    Image in, a, b;
    synth_image(1000, 700, &in);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    image_resize(&in, 640, 333, &a);
    omp_set_num_threads(3);
    image_resize(&in, 640, 333, &b);
    omp_set_num_threads(saved);
    CHECK(!memcmp(a.rgb, b.rgb, (size_t)640 * 333 * 3), "1 and 3 threads give different pixels");
    image_free(&in);
    image_free(&a);
    image_free(&b);
}

/* ---- tiling */

/* copied from spec/data.md */
static const int SPEC_MAX6[][2] = {{1, 1}, {1, 2}, {2, 1}, {3, 1}, {1, 3}, {4, 1}, {1, 4},
                                   {2, 2}, {1, 5}, {5, 1}, {6, 1}, {2, 3}, {1, 6}, {3, 2}};
static const int SPEC_MAX12[][2] = {
    {1, 1}, {1, 2}, {2, 1}, {3, 1}, {1, 3}, {2, 2}, {4, 1}, {1, 4}, {5, 1}, {1, 5}, {1, 6}, {6, 1},
    {3, 2}, {2, 3}, {7, 1}, {1, 7}, {4, 2}, {2, 4}, {1, 8}, {8, 1}, {1, 9}, {3, 3}, {9, 1}, {2, 5},
    {5, 2}, {10, 1}, {1, 10}, {11, 1}, {1, 11}, {12, 1}, {3, 4}, {4, 3}, {1, 12}, {6, 2}, {2, 6}};

static void check_candidates(int min_num, int max_num, const int *want, int nwant) {
    int grids[2 * 400];
    int n = image_tile_candidates(min_num, max_num, grids, 400);
    if (!CHECK(n == nwant, "min %d max %d: %d candidates, want %d", min_num, max_num, n, nwant))
        return;
    for (int k = 0; k < n; k++)
        if (!CHECK(grids[2 * k] == want[2 * k] && grids[2 * k + 1] == want[2 * k + 1],
                   "min %d max %d: candidate %d is (%d,%d), want (%d,%d)", min_num, max_num, k,
                   grids[2 * k], grids[2 * k + 1], want[2 * k], want[2 * k + 1]))
            return;
}

TEST(test_candidate_order_equals_the_spec_lists) {
    check_candidates(1, 6, &SPEC_MAX6[0][0], 14);
    check_candidates(1, 12, &SPEC_MAX12[0][0], 35);
}

TEST(test_candidate_order_matches_python_sets_for_other_ranges) {
    load_fixtures();
    int ranges = 0;
    for (int i = 0; i < g_nlines; i++) {
        int mn, mx, n, used;
        if (sscanf(g_lines[i], "candidates %d %d %d%n", &mn, &mx, &n, &used) != 3) continue;
        int *want = malloc(2 * n * sizeof(int));
        const char *p = g_lines[i] + used;
        for (int k = 0; k < 2 * n; k++) {
            int len;
            if (sscanf(p, "%d%n", &want[k], &len) != 1) exit(2);
            p += len;
        }
        check_candidates(mn, mx, want, n);
        free(want);
        ranges++;
    }
    CHECK(ranges >= 40, "only %d candidate lists in the manifest", ranges);
}

/* The rule restated as a search: the winner has the smallest |aspect - i/j|; among the
 * candidates at that distance, the first one wins unless a later one has area > 0.5 S^2 i j,
 * in which case the last such one does. */
static void brute_force_grid(int w, int h, int S, const int (*cand)[2], int n, int *cols,
                             int *rows) {
    double aspect = (double)w / h, best = 1e300;
    for (int k = 0; k < n; k++) {
        double d = fabs(aspect - (double)cand[k][0] / cand[k][1]);
        if (d < best) best = d;
    }
    int first = 1;
    for (int k = 0; k < n; k++) {
        if (fabs(aspect - (double)cand[k][0] / cand[k][1]) != best) continue;
        if (first || (double)w * h > 0.5 * S * S * cand[k][0] * cand[k][1]) {
            *cols = cand[k][0];
            *rows = cand[k][1];
        }
        first = 0;
    }
}

TEST(test_tile_grid_matches_a_brute_force_reading_of_the_rule) {
    static const int sizes[][2] = {{448, 448}, {100, 100}, {1000, 1000}, {900, 900},
                                   {500, 400}, {1000, 800}, {600, 400}, {300, 200},
                                   {896, 448}, {448, 896}, {1344, 448}, {37, 23},
                                   {61, 113}, {300, 7}, {8, 200}, {1, 1}, {16384, 1},
                                   {1, 16384}, {1920, 1080}, {1080, 1920}, {640, 480}};
    TRng r = trng(42);
    for (int t = 0; t < 400; t++) {
        int w, h;
        if (t < (int)(sizeof sizes / sizeof sizes[0])) {
            w = sizes[t][0];
            h = sizes[t][1];
        } else {
            w = 1 + (int)(trng_uniform(&r) * 3000);
            h = 1 + (int)(trng_uniform(&r) * 3000);
        }
        for (int m = 0; m < 2; m++) {
            int max_num = m ? 12 : 6, n = m ? 35 : 14;
            const int(*cand)[2] = m ? SPEC_MAX12 : SPEC_MAX6;
            int ci = 0, ri = 0, cb = 0, rb = 0;
            image_tile_grid(w, h, 1, max_num, 448, &ci, &ri);
            brute_force_grid(w, h, 448, cand, n, &cb, &rb);
            CHECK(ci == cb && ri == rb, "%d x %d max %d: grid %dx%d, rule gives %dx%d", w, h,
                  max_num, ci, ri, cb, rb);
        }
    }
}

TEST(test_tile_grid_matches_the_python_reference_table) {
    load_fixtures();
    int cases = 0;
    for (int i = 0; i < g_nlines; i++) {
        int w, h, mn, mx, S, cols, rows, c = 0, r = 0;
        if (sscanf(g_lines[i], "grid %d %d %d %d %d %d %d", &w, &h, &mn, &mx, &S, &cols,
                   &rows) != 7)
            continue;
        image_tile_grid(w, h, mn, mx, S, &c, &r);
        CHECK(c == cols && r == rows, "%d x %d min %d max %d S %d: %dx%d, reference %dx%d", w,
              h, mn, mx, S, c, r, cols, rows);
        cases++;
    }
    CHECK(cases >= 300, "only %d grid cases in the manifest", cases);
}

TEST(test_exact_ties_take_the_larger_grid_only_for_large_images) {
    static const struct { int w, h, max_num, S, cols, rows; } cases[] = {
        {448, 448, 12, 448, 1, 1},   /* 4 tiles need area > 0.5*448^2*4 = 401408 */
        {900, 900, 12, 448, 2, 2},   /* 810000: 2x2 yes, 3x3 (903168) no */
        {1000, 1000, 12, 448, 3, 3}, /* 1e6: both */
        {1000, 1000, 6, 448, 2, 2},
        {500, 400, 6, 448, 1, 1},    /* 1.25: tie of 1/1 and 3/2, 200000 <= 602112 */
        {1000, 800, 6, 448, 3, 2},   /* 800000 > 602112 */
        {600, 400, 1, 448, 1, 1},
        {9, 8, 6, 6, 1, 1},          /* area 72 = 0.5*6^2*4 exactly: strictly greater needed */
        {10, 8, 6, 6, 2, 2},         /* 80 > 72, then 3/2 ties too but 80 <= 108 */
        {9, 40, 6, 12, 1, 4},        /* 0.225 is as far from 1/4 as from 1/5; 360 = 0.5*144*5 */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int c, r;
        image_tile_grid(cases[k].w, cases[k].h, 1, cases[k].max_num, cases[k].S, &c, &r);
        CHECK(c == cases[k].cols && r == cases[k].rows, "%d x %d max %d S %d: %dx%d, want %dx%d",
              cases[k].w, cases[k].h, cases[k].max_num, cases[k].S, c, r, cases[k].cols,
              cases[k].rows);
    }
}

/* ---- tiles */

/* expected (n, 3, S, S) floats from PIL's (n, S, S, 3) tile bytes and numpy's table */
static float *normalised(const unsigned char *bytes, int n, int S, const float *table) {
    float *t = tmalloc((size_t)n * 3 * S * S);
    for (int k = 0; k < n; k++)
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < S * S; p++)
                t[(((size_t)k * 3 + c) * S * S) + p] =
                    table[c * 256 + bytes[((size_t)k * S * S + p) * 3 + c]];
    return t;
}

TEST(test_tiles_match_the_reference_preprocessing_on_every_fixture) {
    load_fixtures();
    const float *table = norm_table();
    int cases = 0;
    for (int i = 0; i < g_nlines; i++) {
        char src[128];
        int S, mn, mx, dyn, thumb, n, cols, rows;
        long off;
        if (sscanf(g_lines[i], "tiles %127s %d %d %d %d %d %d %d %d %ld", src, &S, &mn, &mx,
                   &dyn, &thumb, &n, &cols, &rows, &off) != 10)
            continue;
        cases++;
        ImageConfig cfg = {S, mn, mx, dyn, thumb};
        Image img;
        source_image(src, &img);
        if (dyn) {
            int c, r;
            image_tile_grid(img.w, img.h, mn, mx, S, &c, &r);
            CHECK(c == cols && r == rows, "%s: grid %dx%d, reference %dx%d", src, c, r, cols,
                  rows);
        }
        CHECK(image_num_tiles(img.w, img.h, &cfg) == n, "%s: image_num_tiles != %d", src, n);
        float *got = tmalloc((size_t)(n + 1) * 3 * S * S);
        int got_n = image_preprocess(&img, &cfg, got, n + 1);
        if (CHECK(got_n == n, "%s S %d max %d dyn %d thumb %d: %d tiles, reference %d", src, S,
                  mx, dyn, thumb, got_n, n)) {
            float *want = normalised(blob(off, (size_t)n * S * S * 3), n, S, table);
            char what[200];
            snprintf(what, sizeof what, "%s tiles (S %d, max %d, dynamic %d, thumbnail %d)", src,
                     S, mx, dyn, thumb);
            EXPECT_SAME(what, got, want, (size_t)n * 3 * S * S);
            free(want);
        }
        free(got);
        image_free(&img);
    }
    CHECK(cases >= 70, "only %d tiling cases in the manifest", cases);
}

TEST(test_tiles_equal_torchvision_totensor_normalize_in_float32) {
    load_fixtures();
    int cases = 0;
    for (int i = 0; i < g_nlines; i++) {
        char src[128];
        int S, mn, mx, dyn, thumb, n;
        long off;
        if (sscanf(g_lines[i], "tilesf32 %127s %d %d %d %d %d %d %ld", src, &S, &mn, &mx, &dyn,
                   &thumb, &n, &off) != 8)
            continue;
        cases++;
        size_t count = (size_t)n * 3 * S * S;
        float *want = tmalloc(count), *got = tmalloc(count);
        memcpy(want, blob(off, count * sizeof(float)), count * sizeof(float));
        ImageConfig cfg = {S, mn, mx, dyn, thumb};
        Image img;
        source_image(src, &img);
        CHECK(image_preprocess(&img, &cfg, got, n) == n, "%s: %s", src, mmrm_last_error());
        EXPECT_SAME(src, got, want, count);
        free(want);
        free(got);
        image_free(&img);
    }
    CHECK(cases >= 2, "only %d float tile cases in the manifest", cases);
}

TEST(test_normalisation_of_every_byte_value_matches_numpy_float32) {
    load_fixtures();
    const float *table = norm_table();
    /* a 16 x 16 image whose channels each hold all 256 values, in different orders; at
     * S = 16 without tiling the resize is a copy */
    Image img = {16, 16, malloc(16 * 16 * 3)};
    for (int p = 0; p < 256; p++) {
        img.rgb[3 * p] = (unsigned char)p;
        img.rgb[3 * p + 1] = (unsigned char)(255 - p);
        img.rgb[3 * p + 2] = (unsigned char)(p * 7 + 3);
    }
    ImageConfig cfg = {16, 1, 6, 0, 1};
    float got[3 * 256];
    CHECK(image_preprocess(&img, &cfg, got, 1) == 1, "%s", mmrm_last_error());
    float *want = normalised(img.rgb, 1, 16, table);
    EXPECT_SAME("normalised bytes", got, want, 3 * 256);
    /* and the values are what the formula says, to float precision */
    static const double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
    double ref[3 * 256];
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 256; p++)
            ref[c * 256 + p] = (img.rgb[3 * p + c] / 255.0 - mean[c]) / std[c];
    EXPECT_CLOSE("normalised bytes vs double formula", got, ref, 3 * 256, 1e-6, 1e-6);
    free(want);
    image_free(&img);
}

TEST(test_thumbnail_is_appended_last_and_only_for_multi_tile_grids) {
    Image img;
    synth_image(300, 100, &img); /* aspect 3: a 3x1 grid */
    const int S = 32;
    float *tiles = tmalloc((size_t)8 * 3 * S * S), *single = tmalloc((size_t)3 * S * S);
    ImageConfig with = {S, 1, 6, 1, 1}, without = {S, 1, 6, 1, 0}, whole = {S, 1, 6, 0, 1};
    CHECK(image_preprocess(&img, &with, tiles, 8) == 4, "3x1 grid + thumbnail");
    CHECK(image_preprocess(&img, &whole, single, 1) == 1, "no tiling: one tile");
    EXPECT_SAME("thumbnail = the whole image at S x S", tiles + (size_t)3 * 3 * S * S, single,
                (size_t)3 * S * S);
    float *plain = tmalloc((size_t)8 * 3 * S * S);
    CHECK(image_preprocess(&img, &without, plain, 8) == 3, "3x1 grid without thumbnail");
    EXPECT_SAME("grid tiles do not depend on the thumbnail", plain, tiles, (size_t)3 * 3 * S * S);
    image_free(&img);

    synth_image(40, 40, &img); /* square and small: one tile, so no thumbnail */
    CHECK(image_preprocess(&img, &with, tiles, 8) == 1, "a 1x1 grid gets no thumbnail");
    CHECK(image_preprocess(&img, &whole, single, 1) == 1, "no tiling: one tile");
    EXPECT_SAME("1x1 grid = the whole image", tiles, single, (size_t)3 * S * S);
    image_free(&img);
    free(tiles);
    free(single);
    free(plain);
}

TEST(test_blank_image_tiles_are_normalised_white) {
    Image img;
    image_blank(IMAGE_BLANK_SIZE, IMAGE_BLANK_SIZE, &img);
    const int S = 448;
    ImageConfig cfgs[2] = {{S, 1, 12, 1, 1}, {S, 1, 6, 0, 1}};
    float *tiles = tmalloc((size_t)13 * 3 * S * S);
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int k = 0; k < 2; k++) {
        CHECK(image_preprocess(&img, &cfgs[k], tiles, 13) == 1, "the blank image is one tile");
        for (int c = 0; c < 3; c++) {
            float white = (1.0f - mean[c]) / std[c];
            size_t bad = 0;
            for (size_t p = 0; p < (size_t)S * S; p++) bad += tiles[(size_t)c * S * S + p] != white;
            CHECK(bad == 0, "channel %d: %zu values differ from (1 - mean)/std = %.9g", c, bad,
                  white);
            CHECK(fabs(white - (1 - (double)mean[c]) / std[c]) < 1e-6, "white of channel %d", c);
        }
    }
    free(tiles);
    image_free(&img);
}

TEST(test_preprocess_rejects_bad_configs_and_short_buffers) {
    Image img;
    synth_image(300, 100, &img);
    float *tiles = tmalloc((size_t)4 * 3 * 16 * 16);
    ImageConfig bad[] = {{16, 0, 6, 1, 1}, {16, 3, 2, 1, 1}, {16, 1, IMAGE_MAX_NUM + 1, 1, 1},
                         {0, 1, 6, 1, 1}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        CHECK(image_preprocess(&img, &bad[k], tiles, 4) == -1, "config %zu accepted", k);
        CHECK(strstr(mmrm_last_error(), "image config") != NULL, "%s", mmrm_last_error());
    }
    ImageConfig ok = {16, 1, 6, 1, 1};
    CHECK(image_preprocess(&img, &ok, tiles, 3) == -1, "4 tiles written into room for 3");
    CHECK(strstr(mmrm_last_error(), "buffer holds 3") != NULL, "%s", mmrm_last_error());
    free(tiles);
    image_free(&img);
}
