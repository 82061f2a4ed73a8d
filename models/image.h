/* image.h - the image half of the processor (spec/data.md "Images"): decode a file to 8-bit
 * RGB as PIL's Image.open(...).convert('RGB') does, resize exactly as PIL's default
 * Image.resize (antialiased bicubic), pick the InternVL dynamic tiling grid, and write the
 * ImageNet-normalised tiles that the ViT reads.
 *
 * S is the tile side (image_size, 448 for InternVL2). Tiles are fp32 (3, S, S), channel-major,
 * each value (v/255 - mean[c]) / std[c] in float32, the rounding of torchvision's ToTensor +
 * Normalize. The tile order is row-major over the grid, then the thumbnail (if any).
 */
#ifndef MMRM_IMAGE_H
#define MMRM_IMAGE_H

#include <stddef.h>

/* Decoding refuses larger images before allocating pixels: a corrupt or hostile header must
 * not make the loader allocate gigabytes. */
#define IMAGE_MAX_SIDE 16384
#define IMAGE_MAX_PIXELS 100000000LL
/* Bound on max_num (tiles per image), so the candidate list stays small. */
#define IMAGE_MAX_NUM 64
/* Side of the blank white image fed to the bias branch of the shortcut-aware objective. */
#define IMAGE_BLANK_SIZE 224

typedef struct {
    int w, h;
    unsigned char *rgb; /* (h, w, 3) */
} Image;

typedef struct {
    int image_size;       /* S, 1..1024 */
    int min_num, max_num; /* grid tiles allowed: 1 <= min_num <= max_num <= IMAGE_MAX_NUM */
    int dynamic;          /* 0: one tile, the whole image at S x S */
    int use_thumbnail;    /* append the whole image at S x S when the grid has > 1 tile */
} ImageConfig;

/* Decodes JPEG, PNG, BMP, GIF (first frame), TGA, PSD, PNM to RGB as PIL's convert('RGB')
 * does, bit for bit: grey is replicated, alpha dropped (not composited), 16-bit channels keep
 * their high byte except 16-bit grey, which clips at 255 (PIL's I;16 -> RGB); a GIF's
 * transparent pixels and the screen outside its first frame take the palette colour PIL gives
 * them. JPEG goes through libjpeg-turbo with Pillow's settings (ISLOW IDCT, fancy upsampling;
 * 4-component files read as Adobe-inverted CMYK and converted with PIL's formula); the EXIF
 * orientation is not applied (Image.open does not apply it either). As in Pillow, a JPEG whose
 * data ends early is an error, while corrupt entropy data inside a complete file decodes to
 * what libjpeg makes of it. 0, or -1 with mmrm_last_error() naming the file and the reason
 * (missing, not an image, truncated, corrupt, too large). */
int image_load(const char *path, Image *img);
/* the same from bytes in memory; name is only used in messages */
int image_decode(const unsigned char *data, size_t n, const char *name, Image *img);
void image_free(Image *img);
/* The size in path's header, read by the decoder image_load uses for that format (libjpeg for
 * JPEG, stb_image for the rest) without decoding pixels: the cheap check of every record at
 * load time. 0, or -1 with mmrm_last_error() naming the file and the reason. */
int image_info(const char *path, int *w, int *h);

/* dst = src resized to w x h with PIL's Image.resize((w, h)) on an RGB image: bicubic
 * (a = -0.5), support widened by the downscale factor, horizontal pass then vertical, 8-bit
 * fixed point in between. Same size gives a copy. Bitwise equal to Pillow 7 to 12 (Pillow 13
 * may run the vertical pass first, which moves some values by 1). */
void image_resize(const Image *src, int w, int h, Image *dst);

/* The candidate grids (cols, rows) with min_num <= cols*rows <= max_num, in the reference's
 * order: Python set iteration order, then a stable sort by cols*rows. Writes at most cap
 * pairs and returns how many there are. */
int image_tile_candidates(int min_num, int max_num, int *grids /* (cap, 2) */, int cap);
/* The grid the reference picks for a w x h image: the candidate whose cols/rows is nearest
 * to w/h, first wins, except that on an exact tie a later candidate replaces the best when
 * w*h > 0.5 * S*S * cols*rows. */
void image_tile_grid(int w, int h, int min_num, int max_num, int image_size,
                     int *cols, int *rows);
/* tiles image_preprocess writes for a w x h image: cols*rows (+1 thumbnail), or 1 */
int image_num_tiles(int w, int h, const ImageConfig *cfg);

/* Writes the normalised tiles of img; returns their number, or -1 (invalid config, or more
 * tiles than max_tiles) with mmrm_last_error() set. */
int image_preprocess(const Image *img, const ImageConfig *cfg,
                     float *tiles /* (max_tiles, 3, S, S) */, int max_tiles);

/* a w x h all-white image (the bias branch's blank input goes through image_preprocess) */
void image_blank(int w, int h, Image *img);

#endif
