#!/usr/bin/env python3
"""gen_jpeg_fixtures.py - writes the JPEG fixtures that tests/unit/test_image.c checks
models/image.c's libjpeg decoder against: Pillow's Image.open(f).convert('RGB') bytes.

Run from the repository root in a throwaway venv (the reference's Pillow, not the system's):

    python3 -m venv /tmp/pillow-venv && /tmp/pillow-venv/bin/pip install "pillow==10.4.0" numpy
    /tmp/pillow-venv/bin/python tests/oracle/gen_jpeg_fixtures.py

Pillow 10.4.0's manylinux wheel bundles libjpeg-turbo 3.0.3; Debian 12's libjpeg62-turbo is
2.1.5. Both run the same integer ISLOW IDCT, h2v1/h2v2 fancy upsampling and YCbCr->RGB tables
(their SIMD paths are bit-exact with the C code), so the bytes agree across the two versions;
the unit test is what shows it on the machine that runs it.

It (re)writes tests/fixtures/jpeg/:
  - the JPEG files (made with Pillow's encoder, some patched afterwards, see make_files; the
    YCCK one with libjpeg, which needs cc and libjpeg's headers);
  - expected.bin: PIL's decoded RGB bytes, (H, W, 3) uint8 each, that manifest.txt points into;
  - manifest.txt, one record per line:
      rgb NAME W H OFF      Image.open(NAME).convert('RGB') is W x H, bytes at OFF
      corrupt NAME W H OFF  the same for a file with corrupt entropy data, which Pillow decodes
                            (libjpeg only warns): the garbage coefficients are out of the IDCT's
                            range, where libjpeg-turbo's SIMD IDCT (16-bit lanes) and its C IDCT
                            wrap differently, so these bytes hold only for the same code path
                            (x86-64 SSE2/AVX2 here; with JSIMD_FORCENONE=1 both Pillow and mmrm
                            move 57 values, identically); the test requires the decode, not the
                            bytes
      error NAME WHAT       Pillow refuses NAME; WHAT is a word mmrm's message must contain
The random content is seeded, so a rerun with the same Pillow gives the same files.
"""
import io
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import PIL
from PIL import Image, features

OUT = os.path.join("tests", "fixtures", "jpeg")
PILLOW = "10.4.0"


def smooth_noise(rng, h, w, ch):
    """random colours with some smooth structure and saturated corners, so that the IDCT's
    overshoot gets clipped at 0 and 255 somewhere"""
    base = rng.integers(0, 256, (h, w, ch)).astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = (128 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0))[..., None]
    out = np.clip(0.5 * base + 0.5 * ramp, 0, 255).astype(np.uint8)
    out[: h // 4, : w // 4] = 255
    out[-(h // 4):, -(w // 4):] = 0
    return out


def rgb(rng, w, h):
    return Image.fromarray(smooth_noise(rng, h, w, 3), "RGB")


def exif_orientation(value):
    """a minimal little-endian EXIF block with one IFD0 entry: Orientation = value"""
    ifd = struct.pack("<HHHIHH", 1, 0x0112, 3, 1, value, 0) + struct.pack("<I", 0)
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd


# Pillow cannot write YCCK (Adobe transform 2, CMYK stored as YCbCr + K); libjpeg can. Built
# with the system's cc and libjpeg (the packages mmrm's build needs anyway).
YCCK_C = r"""
#include <stdio.h>
#include <jpeglib.h>
int main(int argc, char **argv) {
    enum { W = 33, H = 17 };
    static unsigned char px[H][W * 4];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W * 4; x++) px[y][x] = (unsigned char)((x * 29 + y * 53 + x * y) % 256);
    FILE *f = fopen(argv[1], "wb");
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = W;
    c.image_height = H;
    c.input_components = 4;
    c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, JCS_YCCK);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    for (int y = 0; y < H; y++) {
        JSAMPROW row = px[y];
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    fclose(f);
    return 0;
}
"""


def ycck_jpeg(path):
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "ycck.c"), "w") as f:
            f.write(YCCK_C)
        exe = os.path.join(d, "ycck")
        subprocess.run(["cc", os.path.join(d, "ycck.c"), "-o", exe, "-ljpeg"], check=True)
        subprocess.run([exe, path], check=True)


def make_files(rng):
    """writes the JPEGs; returns their names"""
    files = []

    def save(name, img, **kw):
        buf = io.BytesIO()
        img.save(buf, "JPEG", **kw)
        put(name, buf.getvalue())
        return buf.getvalue()

    def put(name, data):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        files.append(name)

    base = save("baseline420_64x48.jpg", rgb(rng, 64, 48), quality=90)
    save("s420_33x17.jpg", rgb(rng, 33, 17), quality=85, subsampling=2)
    save("s422_48x32.jpg", rgb(rng, 48, 32), quality=90, subsampling=1)
    save("s422_35x19.jpg", rgb(rng, 35, 19), quality=75, subsampling=1)
    save("s444_27x41.jpg", rgb(rng, 27, 41), quality=95, subsampling=0)
    save("q20_420_57x31.jpg", rgb(rng, 57, 31), quality=20)
    save("q100_444_16x16.jpg", rgb(rng, 16, 16), quality=100, subsampling=0)
    save("progressive420_40x30.jpg", rgb(rng, 40, 30), quality=90, progressive=True)
    save("progressive444_33x17.jpg", rgb(rng, 33, 17), quality=90, progressive=True,
         subsampling=0)
    save("grey_40x30.jpg", Image.fromarray(smooth_noise(rng, 30, 40, 1)[..., 0], "L"),
         quality=90)
    save("grey_33x17.jpg", Image.fromarray(smooth_noise(rng, 17, 33, 1)[..., 0], "L"),
         quality=60, progressive=True)
    # Pillow writes CMYK inverted with an Adobe marker (transform 0), as Photoshop does
    save("cmyk_adobe_32x24.jpg", rgb(rng, 32, 24).convert("CMYK"), quality=95)
    cmyk = Image.fromarray(rng.integers(0, 256, (17, 33, 4)).astype(np.uint8), "CMYK")
    save("cmyk_adobe_33x17.jpg", cmyk, quality=90)
    ycck_jpeg(os.path.join(OUT, "ycck_adobe_33x17.jpg"))
    files.append("ycck_adobe_33x17.jpg")
    # RGB stored without the colour transform (Adobe transform 0, components R, G, B)
    save("rgb_keep_30x20.jpg", rgb(rng, 30, 20), quality=90, keep_rgb=True)
    save("restart_64x48.jpg", rgb(rng, 64, 48), quality=90, restart_marker_blocks=3)
    save("restart_rows_50x40.jpg", rgb(rng, 50, 40), quality=80, restart_marker_rows=1)
    # EXIF Orientation 6 (rotate 90 CW to view): Image.open does not apply it, nor does mmrm
    save("exif_rot6_40x24.jpg", rgb(rng, 40, 24), quality=90, exif=exif_orientation(6))

    # corrupt entropy data: libjpeg warns ("Corrupt JPEG data") and Pillow keeps the pixels
    sos = base.rfind(b"\xff\xda")
    scan = sos + 2 + struct.unpack(">H", base[sos + 2:sos + 4])[0]
    bad = bytearray(base)
    for k in range(scan + 40, scan + 48):
        if bad[k] != 0xFF and bad[k - 1] != 0xFF:
            bad[k] ^= 0x5A
    put("corrupt_data_64x48.jpg", bytes(bad))
    # junk bytes before a marker: libjpeg warns "extraneous bytes", Pillow decodes
    eoi = base.rfind(b"\xff\xd9")
    put("extraneous_64x48.jpg", base[:eoi] + b"\x00\x13\x37" + base[eoi:])
    # truncated: half the scan data, and a file that only lacks its EOI marker
    put("truncated_64x48.jpg", base[: (scan + len(base)) // 2])
    put("no_eoi_64x48.jpg", base[:eoi])
    prog = open(os.path.join(OUT, "progressive420_40x30.jpg"), "rb").read()
    put("truncated_progressive_40x30.jpg", prog[: len(prog) * 3 // 4])
    return files


def main():
    if PIL.__version__ != PILLOW:
        sys.exit(f"gen_jpeg_fixtures.py: Pillow {PIL.__version__}; the fixtures pin {PILLOW}: "
                 f'pip install "pillow=={PILLOW}" (in a venv)')
    print(f"Pillow {PIL.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}")
    os.makedirs(OUT, exist_ok=True)
    for n in os.listdir(OUT):
        os.remove(os.path.join(OUT, n))
    rng = np.random.default_rng(20241205)
    blob, lines = io.BytesIO(), []
    for name in make_files(rng):
        try:
            with Image.open(os.path.join(OUT, name)) as im:
                img = im.convert("RGB")
        except OSError as e:
            what = "truncated" if "truncated" in str(e) else "corrupt"
            lines.append(f"error {name} {what}")
            print(f"  {name}: Pillow refuses it ({e})")
            continue
        off = blob.tell()
        blob.write(np.asarray(img, dtype=np.uint8).tobytes())
        kind = "corrupt" if name.startswith("corrupt_") else "rgb"
        lines.append(f"{kind} {name} {img.width} {img.height} {off}")
    with open(os.path.join(OUT, "expected.bin"), "wb") as f:
        f.write(blob.getvalue())
    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(lines)} records, {len(os.listdir(OUT))} files, {total / 1e3:.1f} kB in {OUT}")


if __name__ == "__main__":
    main()
