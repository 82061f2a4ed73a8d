/* test_image_hostile.c - models/image.c on awkward and hostile files against what Pillow does
 * with the same bytes: tests/oracle/gen_hostile_image_fixtures.py wrote them and recorded
 * Pillow's outcome (tests/fixtures/images_hostile/manifest.txt: the RGB pixels of
 * convert('RGB'), or the exception). mmrm must decode the same pixels where Pillow does and
 * refuse where Pillow refuses, except for the deliberate differences listed below, which are
 * held as exactly as the rest (so the table in the README stays true). Every refusal names the
 * file. Runs from the repository root; needs no Python. */
#include "../harness.h"
#include "../../models/image.h"
#include "../../runtime/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR "tests/fixtures/images_hostile/"

/* Where mmrm deliberately does not do what Pillow does, and what it does instead: `reason`
 * must appear in mmrm's error ("" where mmrm decodes a file Pillow refuses). */
typedef struct {
    const char *name;
    const char *mmrm_error; /* NULL: mmrm decodes it (Pillow refused) */
    const char *why;
} Difference;

static const Difference DIFFERENCES[] = {
    /* formats stb_image does not read */
    {"rgb_32x24.tiff", "cannot read an image header", "TIFF is not among mmrm's formats"},
    {"rgb_32x24.webp", "cannot read an image header", "WebP is not among mmrm's formats"},
    {"rle8_8x4.bmp", "cannot read an image header", "stb_image does not read RLE-compressed BMPs"},
    /* mmrm's size limit (IMAGE_MAX_SIDE) is stricter than Pillow's pixel-count bomb check */
    {"wide_16385x1.png", "over the limit", "a side over IMAGE_MAX_SIDE (16384)"},
    /* stb_image checks no PNG CRCs, so it reads past a bad IHDR checksum; the header and
     * pixels are still validated, and the file decodes as its bytes say */
    {"bad_ihdr_crc_8x6.png", NULL, "stb_image does not verify chunk CRCs"},
    /* a GIF screen with a zero side: Pillow grows the image to the first frame; stb_image
     * reads it as empty, and mmrm refuses an empty image (found by fuzz_image) */
    {"gif_screen_4x0.gif", "empty", "a zero-height GIF screen"},
};

static const Difference *difference(const char *name) {
    for (size_t i = 0; i < sizeof DIFFERENCES / sizeof *DIFFERENCES; i++)
        if (!strcmp(DIFFERENCES[i].name, name)) return &DIFFERENCES[i];
    return NULL;
}

TEST(test_hostile_images_get_pillows_outcome_or_a_listed_difference) {
    size_t n, blob_n;
    char *text = (char *)read_fixture(DIR "manifest.txt", &n);
    unsigned char *blob = read_fixture(DIR "expected.bin", &blob_n);
    int files = 0, decoded = 0, refused = 0, listed = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char name[128], outcome[16];
        int w = 0, h = 0;
        long off = 0;
        if (sscanf(line, "%127s %15s", name, outcome) != 2) continue;
        int pil_ok = !strcmp(outcome, "ok");
        if (pil_ok && sscanf(line, "%*s %*s %d %d %ld", &w, &h, &off) != 3) {
            CHECK(0, "bad manifest line: %s", line);
            continue;
        }
        files++;
        char path[256];
        snprintf(path, sizeof path, DIR "%s", name);
        Image img;
        int rc = image_load(path, &img);
        const char *msg = mmrm_last_error();
        const Difference *d = difference(name);
        if (d) listed++;
        int want_ok = d ? d->mmrm_error == NULL : pil_ok;
        if (!want_ok) {
            refused += rc != 0;
            CHECK(rc == -1, "%s: decoded (%d x %d), where %s", name, img.w, img.h,
                  d ? d->why : "Pillow refuses it");
            if (rc == -1) {
                CHECK(strstr(msg, path) != NULL, "%s: the error does not name the file: %s", name, msg);
                if (d) CHECK(strstr(msg, d->mmrm_error) != NULL, "%s: error lacks \"%s\": %s", name,
                             d->mmrm_error, msg);
                /* Pillow's reason, in mmrm's words */
                if (strstr(line, "DecompressionBomb"))
                    CHECK(strstr(msg, "over the limit") != NULL, "%s: %s", name, msg);
                if (strstr(line, "truncated"))
                    CHECK(strstr(msg, "truncated") != NULL, "%s: %s", name, msg);
                CHECK(img.rgb == NULL, "%s: a failed load left pixels behind", name);
            }
            image_free(&img);
            continue;
        }
        if (!CHECK(rc == 0, "%s: refused (%s), where %s", name, msg,
                   d ? d->why : "Pillow decodes it"))
            continue;
        decoded++;
        if (pil_ok && CHECK(img.w == w && img.h == h, "%s: %d x %d, Pillow %d x %d", name, img.w,
                            img.h, w, h)) {
            size_t bytes = (size_t)w * h * 3, differ = 0;
            if (!CHECK(off >= 0 && (size_t)off + bytes <= blob_n, "%s: manifest offset", name)) {
                image_free(&img);
                continue;
            }
            for (size_t k = 0; k < bytes; k++) differ += img.rgb[k] != blob[off + k];
            CHECK(differ == 0, "%s: %zu of %zu values differ from Pillow's", name, differ, bytes);
        }
        image_free(&img);
    }
    CHECK(files >= 50, "only %d files in the manifest", files);
    CHECK(listed == (int)(sizeof DIFFERENCES / sizeof *DIFFERENCES),
          "%d of the listed differences are in the manifest", listed);
    CHECK(decoded >= 15 && refused >= 25, "decoded %d, refused %d", decoded, refused);
    free(text);
    free(blob);
}

/* image_info (what record loading calls on every image) refuses what it can from the header
 * alone, before the decoder allocates anything, and never claims a size over the limits */
TEST(test_image_info_refuses_huge_headers_before_decoding) {
    const char *huge[] = {"header_100000x100000.png", "header_20000x20000.png",
                          "gif_screen_30000x30000.gif", "wide_16385x1.png"};
    for (int i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, DIR "%s", huge[i]);
        int w = 0, h = 0;
        int rc = image_info(path, &w, &h);
        if (rc == 0) {
            /* the header is readable; the limit applies in image_load */
            Image img;
            CHECK(image_load(path, &img) == -1 && strstr(mmrm_last_error(), "limit") != NULL,
                  "%s: %d x %d loaded: %s", huge[i], w, h, mmrm_last_error());
            image_free(&img);
        } else {
            CHECK(strstr(mmrm_last_error(), path) != NULL, "%s: %s", huge[i], mmrm_last_error());
        }
    }
}
