/* fuzz_image.c - libFuzzer target: arbitrary bytes as an image file, decoded as mmrm decodes
 * record images (image_decode: JPEG through libjpeg, the other formats through stb_image,
 * with mmrm's size limits checked before pixels are allocated) and measured as the record
 * loader measures them (image_info on the file). A decoded image must have the header's size;
 * a small one is also tiled, the path from pixels to the ViT's input. */
#include <stdint.h>
#include <stdlib.h>

#include "models/image.h"
#include "runtime/error.h"
#include "tests/fuzz/fuzz.h"

static const char *const g_names[] = {"image"};
static const char *g_dir;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    mmrm_set_quiet(1);
    g_dir = fuzz_tmpdir(g_names, 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int w = 0, h = 0;
    int info = image_info(fuzz_write(g_dir, g_names[0], data, size), &w, &h);
    Image img;
    if (image_decode(data, size, "fuzz", &img)) return 0;
    if (img.w < 1 || img.h < 1 || img.w > IMAGE_MAX_SIDE || img.h > IMAGE_MAX_SIDE ||
        (long long)img.w * img.h > IMAGE_MAX_PIXELS || !img.rgb)
        abort();
    if (info == 0 && (w != img.w || h != img.h)) abort();
    if ((long long)img.w * img.h <= 256 * 256) {
        enum { S = 16, MAX_NUM = 4 };
        static float tiles[(MAX_NUM + 1) * 3 * S * S];
        ImageConfig cfg = {.image_size = S, .min_num = 1, .max_num = MAX_NUM, .dynamic = 1,
                           .use_thumbnail = 1};
        int n = image_preprocess(&img, &cfg, tiles, MAX_NUM + 1);
        if (n != image_num_tiles(img.w, img.h, &cfg)) abort();
    }
    image_free(&img);
    return 0;
}
