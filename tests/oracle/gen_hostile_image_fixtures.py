#!/usr/bin/env python3
"""gen_hostile_image_fixtures.py - writes tests/fixtures/images_hostile/: awkward and hostile
image files (animated GIF and PNG, Adam7 interlacing, 16-bit, bad checksums, truncations at
several points, huge or zero dimensions in a header, formats mmrm does not read) and what
Pillow makes of each, for tests/unit/test_image_hostile.c.

Run from the repository root with Pillow 10.4.0 (the reference's era) and numpy:

    python3 -m venv /tmp/jpegvenv && /tmp/jpegvenv/bin/pip install "pillow==10.4.0" "numpy==2.4.6"
    /tmp/jpegvenv/bin/python tests/oracle/gen_hostile_image_fixtures.py

manifest.txt, one line per file:
    NAME ok W H OFF     Image.open(NAME).convert('RGB') succeeded: (H, W, 3) uint8 at byte OFF
                        of expected.bin
    NAME error TEXT     it raised; TEXT is the exception's class and message (one line)
Pillow runs with its defaults (LOAD_TRUNCATED_IMAGES off, MAX_IMAGE_PIXELS 89,478,485: a
DecompressionBombWarning above it, DecompressionBombError above twice that), as the
reference's loader did. The C test holds mmrm to the same outcome, except for the cases it
lists as deliberate differences (with the reason).
"""
import io
import re
import os
import struct
import sys
import zlib

import numpy as np
import PIL
from PIL import Image

OUT = os.path.join("tests", "fixtures", "images_hostile")
PILLOW = "10.4.0"


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_raw(w, h, rows, colour_type=2, depth=8, interlace=0, extra=b""):
    """a PNG from already filtered scanline bytes (rows: the zlib input)"""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra +
            chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def png_adam7(px):
    """an interlaced (Adam7) RGB PNG of px (H, W, 3) uint8; Pillow cannot write one"""
    h, w, _ = px.shape
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
              (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = px[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        for row in sub:
            raw += b"\x00" + row.tobytes()
    return png_raw(w, h, raw, interlace=1)


def png_rgb16(px16):
    """a 16-bit RGB PNG (big-endian samples) of px16 (H, W, 3) uint16"""
    h, w, _ = px16.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in px16)
    return png_raw(w, h, raw, colour_type=2, depth=16)


def png_header_only(w, h):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def save(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def main():
    if PIL.__version__ != PILLOW:
        sys.exit(f"needs Pillow {PILLOW} (found {PIL.__version__}): pip install pillow=={PILLOW}")
    rng = np.random.default_rng(21)
    os.makedirs(OUT, exist_ok=True)

    def rgb(w, h):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    files = {}
    # animated GIF: three frames of different sizes and palettes; convert('RGB') is frame 0
    frames = [Image.fromarray(rgb(19, 13)).quantize(16 + 8 * i) for i in range(3)]
    files["anim_3frames_19x13.gif"] = save(frames[0], "GIF", save_all=True,
                                           append_images=frames[1:], duration=[50, 60, 70],
                                           loop=0, disposal=2)
    # animated PNG (APNG): the default image is the first frame
    apng = [Image.fromarray(rgb(17, 11)) for _ in range(3)]
    files["anim_apng_17x11.png"] = save(apng[0], "PNG", save_all=True, append_images=apng[1:],
                                        duration=40, loop=0)
    files["interlaced_adam7_23x19.png"] = png_adam7(rgb(23, 19))
    files["rgb16_11x7.png"] = png_rgb16(rng.integers(0, 65536, (7, 11, 3), dtype=np.uint16))
    files["rgba16_9x5.png"] = save(Image.fromarray(rgb(9, 5)).convert("RGBA"), "PNG")
    # a bad CRC on IDAT, and on IHDR
    good = png_raw(8, 6, b"".join(b"\x00" + r.tobytes() for r in rgb(8, 6)))
    i = good.index(b"IDAT")
    n = struct.unpack(">I", good[i - 4:i])[0]
    files["bad_idat_crc_8x6.png"] = good[:i + 4 + n] + b"\0\0\0\0" + good[i + 8 + n:]
    files["bad_ihdr_crc_8x6.png"] = good[:29] + b"\0\0\0\0" + good[33:]
    # progressive and CMYK JPEG, BMP (plain and RLE8), TIFF and WebP (formats mmrm refuses)
    photo = Image.fromarray(rgb(32, 24))
    files["progressive_32x24.jpg"] = save(photo, "JPEG", quality=90, progressive=True)
    files["cmyk_32x24.jpg"] = save(photo.convert("CMYK"), "JPEG", quality=90)
    files["rgb_32x24.bmp"] = save(photo, "BMP")
    files["rgb_32x24.tiff"] = save(photo, "TIFF")
    files["rgb_32x24.webp"] = save(photo, "WEBP", lossless=True)
    files["rgb_32x24.tga"] = save(photo, "TGA")
    files["rgb_32x24.ppm"] = save(photo, "PPM")
    # an RLE8 BMP by hand (Pillow cannot write one): 8x4, palette of 4 grey levels, runs of 2
    pal = b"".join(bytes([v, v, v, 0]) for v in (0, 85, 170, 255)) + b"\0" * 4 * 252
    rle = b""
    for y in range(4):
        for x in range(0, 8, 2):
            rle += bytes([2, (x // 2 + y) % 4])
        rle += b"\x00\x00"
    rle += b"\x00\x01"
    off = 14 + 40 + len(pal)
    bih = struct.pack("<IiiHHIIiiII", 40, 8, 4, 1, 8, 1, len(rle), 2835, 2835, 256, 0)
    files["rle8_8x4.bmp"] = b"BM" + struct.pack("<IHHI", off + len(rle), 0, 0, off) + bih + pal + rle
    # truncations: header only, 1/4, 1/2, 3/4 and the last byte cut, per format
    base = {"png": save(photo, "PNG"), "gif": save(photo.quantize(64), "GIF"),
            "jpg": save(photo, "JPEG", quality=90), "bmp": files["rgb_32x24.bmp"],
            "progressive.jpg": files["progressive_32x24.jpg"],
            "interlaced.png": files["interlaced_adam7_23x19.png"]}
    for ext, data in base.items():
        files[f"full.{ext}"] = data
        for frac, tag in ((0.25, "q1"), (0.5, "half"), (0.75, "q3")):
            files[f"trunc_{tag}.{ext}"] = data[:int(len(data) * frac)]
        files[f"trunc_lastbyte.{ext}"] = data[:-1]
    files["trunc_header_only.png"] = base["png"][:33]
    # huge or empty dimensions in headers (no pixel data behind them)
    for w, h in ((100000, 100000), (20000, 20000), (16385, 2), (0, 10), (10, 0)):
        files[f"header_{w}x{h}.png"] = png_header_only(w, h)
    # a real PNG just over mmrm's side limit (Pillow reads it), and one at it
    for w in (16384, 16385):
        files[f"wide_{w}x1.png"] = png_raw(w, 1, b"\x00" + (bytes(range(256)) * (3 * w // 256 + 1))[:3 * w])
    # a GIF whose logical screen is huge but whose frame is tiny
    g = bytearray(save(Image.fromarray(rgb(4, 4)).quantize(4), "GIF"))
    g[6:10] = struct.pack("<HH", 30000, 30000)
    files["gif_screen_30000x30000.gif"] = bytes(g)
    # a GIF whose screen is 4 x 0 (stb_image reads it as an empty image; found by fuzz_image)
    g[6:10] = struct.pack("<HH", 4, 0)
    files["gif_screen_4x0.gif"] = bytes(g)
    files["empty.png"] = b""
    files["text.png"] = b"not an image at all\n"

    manifest, blob = [], bytearray()
    for name in sorted(files):
        data = files[name]
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        try:
            with Image.open(io.BytesIO(data)) as im:
                px = np.asarray(im.convert("RGB"))
            manifest.append(f"{name} ok {px.shape[1]} {px.shape[0]} {len(blob)}")
            blob += px.tobytes()
        except Exception as e:  # noqa: BLE001 - every failure is an outcome to record
            msg = " ".join(f"{type(e).__name__}: {e}".split())
            msg = re.sub(r"<_io.BytesIO object at 0x[0-9a-f]+>", "<file>", msg)
            manifest.append(f"{name} error {msg}")
    with open(os.path.join(OUT, "expected.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write(f"# Pillow {PIL.__version__}: tests/oracle/gen_hostile_image_fixtures.py\n")
        f.write("\n".join(manifest) + "\n")
    print(f"{len(files)} files, {len(blob)} bytes of expected pixels")


if __name__ == "__main__":
    main()
