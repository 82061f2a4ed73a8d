#!/usr/bin/env python3
"""gen_image_fixtures.py - writes the image fixtures that tests/unit/test_image.c checks
models/image.c against: what PIL and torchvision make of a handful of small images.

Run from the repository root with the Pillow of the reference's era (InternVL2, 2024) and numpy:

    pip install "pillow==10.4.0" numpy
    python3 tests/oracle/gen_image_fixtures.py

The candidate order relies on CPython >= 3.8 (tuple hash and set layout, as the reference).
Pillow 13 may run the vertical resampling pass before the horizontal one, which moves some
resized values by 1; Pillow 7 to 12 always run horizontal first, like the reference did and
models/image.c does. The script refuses Pillow >= 13.

It (re)writes tests/fixtures/images/:
  - the test images themselves (odd sizes and aspect ratios; RGB, grey, grey+alpha, RGBA,
    palette, palette with transparency, 1-bit, 16-bit PNGs; GIFs with transparency and with a
    first frame smaller than the screen; baseline, 4:4:4, grey, progressive and CMYK JPEGs; a
    BMP);
  - expected.bin: raw bytes and little-endian float32 arrays that manifest.txt points into;
  - manifest.txt: one record per line (offsets are byte offsets into expected.bin):
      image NAME W H OFF            PIL's Image.open(NAME).convert('RGB'), (H, W, 3) uint8;
                                    mmrm decodes every one bit-exactly, JPEGs included
                                    (libjpeg-turbo; gen_jpeg_fixtures.py has more of them)
      synth W H                     a source image built by a formula (synth_rgb below, and
                                    the same formula in the C test), too big to store
      resize SRC W H OFF            SRC.resize((W, H)) (PIL's default filter), (H, W, 3) uint8;
                                    SRC is an image NAME or synth:WxH
      tiles SRC S MIN MAX DYN THUMB N COLS ROWS OFF
                                    the reference tiling (dynamic_preprocess below) with
                                    image_size S: N tiles (grid COLS x ROWS), (N, S, S, 3) uint8
      tilesf32 SRC S MIN MAX DYN THUMB N OFF
                                    the same tiles after ToTensor + Normalize, (N, 3, S, S) float32
      norm OFF                      (x/255 - mean[c]) / std[c] in float32 for x = 0..255, (3, 256)
      candidates MIN MAX N i j i j ...
                                    the reference's candidate grids (Python set, sorted by i*j)
      grid W H MIN MAX S COLS ROWS  the grid the reference picks
The random content is seeded, so a rerun with the same Pillow gives the same files.
"""
import io
import os
import struct
import sys
import zlib

import numpy as np
import PIL
from PIL import Image

OUT = os.path.join("tests", "fixtures", "images")
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# ---- the reference's tiling (InternVL's dynamic_preprocess, as spec/data.md describes it)
def candidates(min_num, max_num):
    ratios = set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1)
                 for j in range(1, n + 1) if min_num <= i * j <= max_num)
    return sorted(ratios, key=lambda x: x[0] * x[1])


def closest_grid(width, height, min_num, max_num, image_size):
    aspect = width / height
    best_diff, best = float("inf"), (1, 1)
    area = width * height
    for ratio in candidates(min_num, max_num):
        diff = abs(aspect - ratio[0] / ratio[1])
        if diff < best_diff:
            best_diff, best = diff, ratio
        elif diff == best_diff and area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
            best = ratio
    return best


def dynamic_preprocess(img, image_size, min_num, max_num, dynamic, use_thumbnail):
    if not dynamic:
        return [img.resize((image_size, image_size))], (1, 1)
    cols, rows = closest_grid(img.width, img.height, min_num, max_num, image_size)
    resized = img.resize((image_size * cols, image_size * rows))
    tiles = []
    for i in range(cols * rows):
        x, y = (i % cols) * image_size, (i // cols) * image_size
        tiles.append(resized.crop((x, y, x + image_size, y + image_size)))
    if use_thumbnail and len(tiles) != 1:
        tiles.append(img.resize((image_size, image_size)))
    return tiles, (cols, rows)


def to_tensor_normalize(tile):
    """torchvision ToTensor + Normalize, op by op in float32: (3, S, S)"""
    x = np.asarray(tile, dtype=np.uint8).astype(np.float32) / np.float32(255)
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype="<f4")


# ---- test images
def synth_rgb(w, h):
    """a deterministic pattern with gradients, hard edges and fine detail (same formula in C)"""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    out = np.empty((h, w, 3), dtype=np.uint8)
    for c in range(3):
        v = (x * (3 + c) + y * (5 - c) + c * 85) & 255
        v ^= np.where(((x >> 4) + (y >> 4)) & 1, 0xA5, 0)
        v ^= (x * y) & 15
        out[..., c] = v
    return out


def smooth_noise(rng, h, w, ch):
    """random colours with some smooth structure, so JPEG and resampling see both"""
    base = rng.integers(0, 256, (h, w, ch)).astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = (128 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0))[..., None]
    return np.clip(0.5 * base + 0.5 * ramp, 0, 255).astype(np.uint8)


def png16(path, arr, color_type):
    """a 16-bit PNG (Pillow cannot write 16-bit RGB): arr is (h, w, ch) uint16"""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) +
                chunk(b"IEND", b""))


def gif_in_larger_screen(path, img, screen, left, top, **kw):
    """a GIF whose first frame covers only part of its logical screen: PIL fills the rest with
    the transparent index, else index 0 (Pillow cannot write one, so the header is patched)"""
    img.save(path, **kw)
    d = bytearray(open(path, "rb").read())
    d[6:10] = struct.pack("<HH", *screen)
    pos = 13 + (3 << ((d[10] & 7) + 1) if d[10] & 0x80 else 0)
    while d[pos] == 0x21:  # skip extensions: label, then sub-blocks up to a zero length
        pos += 2
        while d[pos]:
            pos += 1 + d[pos]
        pos += 1
    assert d[pos] == 0x2C
    d[pos + 1:pos + 5] = struct.pack("<HH", left, top)
    with open(path, "wb") as f:
        f.write(bytes(d))


def make_images(rng):
    """writes the test images; returns their names"""
    out = []

    def save(name, img, **kw):
        img.save(os.path.join(OUT, name), **kw)
        out.append(name)

    for w, h in [(37, 23), (61, 113), (300, 7), (8, 200), (101, 101)]:
        save(f"rgb_{w}x{h}.png", Image.fromarray(smooth_noise(rng, h, w, 3), "RGB"))
    save("grey_45x30.png", Image.fromarray(smooth_noise(rng, 30, 45, 1)[..., 0], "L"))
    save("greyalpha_33x20.png", Image.fromarray(smooth_noise(rng, 20, 33, 2), "LA"))
    rgba = smooth_noise(rng, 52, 40, 4)
    rgba[::3, ::2, 3] = 0  # fully transparent pixels keep their colour in convert('RGB')
    save("rgba_40x52.png", Image.fromarray(rgba, "RGBA"))
    pal = Image.fromarray(smooth_noise(rng, 31, 50, 3), "RGB").quantize(colors=64)
    save("palette_50x31.gif", pal)
    tgif = Image.fromarray(smooth_noise(rng, 17, 23, 3), "RGB").quantize(colors=32)
    save("palette_trns_23x17.gif", tgif, transparency=5)  # transparent: the palette colour
    for name, kw in [("framed_trns_14x12.gif", {"transparency": 1}), ("framed_14x12.gif", {})]:
        frame = Image.fromarray(smooth_noise(rng, 8, 10, 3), "RGB").quantize(colors=8)
        gif_in_larger_screen(os.path.join(OUT, name), frame, (14, 12), 2, 3, **kw)
        out.append(name)
    ptr = Image.fromarray(smooth_noise(rng, 19, 23, 3), "RGB").quantize(colors=16)
    save("palette_trns_23x19.png", ptr, transparency=3)
    save("bilevel_30x10.png", Image.fromarray(rng.integers(0, 2, (10, 30)).astype(bool)))
    save("bgr_29x17.bmp", Image.fromarray(smooth_noise(rng, 17, 29, 3), "RGB"))
    save("photo_64x48.jpg", Image.fromarray(smooth_noise(rng, 48, 64, 3), "RGB"),
         quality=90)
    save("photo444_27x41.jpg", Image.fromarray(smooth_noise(rng, 41, 27, 3), "RGB"),
         quality=95, subsampling=0)
    save("grey_40x30.jpg", Image.fromarray(smooth_noise(rng, 30, 40, 1)[..., 0], "L"),
         quality=90)
    save("progressive_40x30.jpg", Image.fromarray(smooth_noise(rng, 30, 40, 3), "RGB"),
         quality=90, progressive=True)
    save("cmyk_32x24.jpg", Image.fromarray(smooth_noise(rng, 24, 32, 3), "RGB").convert("CMYK"),
         quality=95)
    # 16-bit grey: PIL's I;16 -> RGB clips at 255; 16-bit RGB keeps the high byte
    g16 = rng.integers(0, 600, (11, 20, 1)).astype(np.uint16)
    g16[0, :4, 0] = [0, 255, 256, 65535]
    png16(os.path.join(OUT, "grey16_20x11.png"), g16, 0)
    out.append("grey16_20x11.png")
    png16(os.path.join(OUT, "rgb16_13x9.png"), rng.integers(0, 65536, (9, 13, 3)).astype(np.uint16), 2)
    out.append("rgb16_13x9.png")
    png16(os.path.join(OUT, "greyalpha16_9x7.png"),
          rng.integers(0, 65536, (7, 9, 2)).astype(np.uint16), 4)
    out.append("greyalpha16_9x7.png")
    return out


class Blob:
    def __init__(self):
        self.buf = io.BytesIO()

    def put(self, data):
        off = self.buf.tell()
        self.buf.write(data)
        return off


def main():
    if int(PIL.__version__.split(".")[0]) >= 13:
        sys.exit(f"gen_image_fixtures.py: Pillow {PIL.__version__} changes the resize pass order; "
                 'install the reference\'s: pip install "pillow==10.4.0"')
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240607)
    blob, lines = Blob(), []
    sources = {}
    for name in make_images(rng):
        img = Image.open(os.path.join(OUT, name)).convert("RGB")
        sources[name] = img
        off = blob.put(np.asarray(img, dtype=np.uint8).tobytes())
        lines.append(f"image {name} {img.width} {img.height} {off}")
    for w, h in [(1000, 700), (33, 1200)]:
        sources[f"synth:{w}x{h}"] = Image.fromarray(synth_rgb(w, h), "RGB")
        lines.append(f"synth {w} {h}")

    for src, img in sources.items():
        w, h = img.size
        sizes = [(28, 28), (17, 5), (1, 1)]
        if w * h < 20000:
            sizes += [(max(1, w // 3), max(1, h // 2))]
        else:  # large downscale factors: wide filter support
            sizes += [(w // 40 + 1, h // 30 + 1)]
        if w * h < 5000:  # one-axis passes (upscale): PIL skips the other pass
            sizes += [(2 * w + 1, h), (w, 2 * h + 3), (w, h)]
        for rw, rh in sizes:
            off = blob.put(np.asarray(img.resize((rw, rh)), dtype=np.uint8).tobytes())
            lines.append(f"resize {src} {rw} {rh} {off}")

    configs = [(28, 1, 6, 1, 1), (14, 1, 12, 1, 0), (28, 1, 6, 0, 1), (14, 2, 9, 1, 1)]
    for src, img in sources.items():
        for S, mn, mx, dyn, thumb in configs:
            tiles, (cols, rows) = dynamic_preprocess(img, S, mn, mx, dyn, thumb)
            data = b"".join(np.asarray(t, dtype=np.uint8).tobytes() for t in tiles)
            off = blob.put(data)
            lines.append(f"tiles {src} {S} {mn} {mx} {dyn} {thumb} {len(tiles)} {cols} {rows} {off}")
    for src in ["rgba_40x52.png", "photo_64x48.jpg"]:
        S, mn, mx, dyn, thumb = configs[0]
        tiles, _ = dynamic_preprocess(sources[src], S, mn, mx, dyn, thumb)
        off = blob.put(b"".join(to_tensor_normalize(t).tobytes() for t in tiles))
        lines.append(f"tilesf32 {src} {S} {mn} {mx} {dyn} {thumb} {len(tiles)} {off}")

    values = np.repeat(np.arange(256, dtype=np.uint8).reshape(1, 256, 1), 3, axis=2)
    norm = to_tensor_normalize(values)  # (3, 1, 256)
    lines.append(f"norm {blob.put(norm.tobytes())}")

    for mn, mx in [(1, m) for m in range(1, 41)] + [(2, 6), (3, 12), (4, 9), (5, 40)]:
        flat = " ".join(f"{i} {j}" for i, j in candidates(mn, mx))
        lines.append(f"candidates {mn} {mx} {len(candidates(mn, mx))} {flat}")

    grid_rng = np.random.default_rng(7)
    cases = [(w, h, 1, mx, 448) for mx in (1, 6, 12)
             for w, h in [(448, 448), (100, 100), (1000, 1000), (1500, 1500), (896, 448),
                          (1344, 448), (600, 400), (300, 200), (1200, 800), (224, 224)]]
    for _ in range(300):
        w, h = (int(v) for v in grid_rng.integers(1, 4000, 2))
        mn = int(grid_rng.integers(1, 4))
        cases.append((w, h, mn, int(grid_rng.integers(mn, 41)), int(grid_rng.choice([28, 224, 448]))))
    for w, h, mn, mx, S in cases:
        cols, rows = closest_grid(w, h, mn, mx, S)
        lines.append(f"grid {w} {h} {mn} {mx} {S} {cols} {rows}")

    with open(os.path.join(OUT, "expected.bin"), "wb") as f:
        f.write(blob.buf.getvalue())
    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(lines)} records, {len(os.listdir(OUT))} files, {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main()
