#!/usr/bin/env bash
# `mmrm plot --results DEMO_DIR` (the demo's results.png): from a demo-shaped folder (nine
# eval JSONs with random fixed-seed accuracies, and a real tiny shortcut-aware run logged at
# every step) one PNG of the requested size that python3's zlib decodes (every chunk's CRC,
# the filters undone): each model's three bars are as tall as its accuracies say (bar
# height / accuracy the same for all nine bars, within 2 pixels), the w histogram is drawn,
# and the report counts every training pair's w (steps x batch) with the mean of
# metrics.jsonl's per-step w_mean. Bad inputs (a missing or malformed eval JSON, no train/w
# events, RUN_DIRs with --results) exit 1 or 2 with a message naming the file or option and
# leave no image.
set -euo pipefail
source "$(dirname "$0")/../python_prelude.sh"
fail() { echo "FAIL $*"; exit 1; }

"$MMRM" plot --help | grep -q -- "--results DEMO_DIR" || fail "--help does not describe --results"

demo="$tmp/demo"
"$MMRM" synth --out "$tmp/data" --pairs 48 --seed 6 >/dev/null
: >"$tmp/empty.ini"
"$MMRM" train "$tmp/empty.ini" init_model_config=configs/model/tiny.json init_bias_model_config=configs/model/tiny.json \
    algorithm=shortcut_aware dataset_path="$tmp/data/train.jsonl" freeze_backbone=false drop_path_rate=0 \
    dynamic_image_size=false max_length=512 max_steps=8 learning_rate=1e-3 warmup_steps=1 save_steps=0 \
    num_workers=0 logging_steps=1 seed=3 per_device_train_batch_size=4 gradient_accumulation_steps=1 \
    output_dir="$demo/robust" 2>"$tmp/log" || { tail -n 20 "$tmp/log"; fail "training"; }
python3 - "$demo" <<'EOF'
import json, os, random, sys
random.seed(11)
for m in ("pretrain", "standard", "robust"):
    for s in ("test_id", "test_ood", "test_oracle"):
        with open(os.path.join(sys.argv[1], f"eval_{m}_{s}.json"), "w") as f:
            json.dump({"data": s, "pairs": 50, "accuracy": round(random.uniform(0.2, 1.0), 3)}, f)
EOF

"$MMRM" plot --results "$demo" --out "$tmp/results.png" --width 1000 --height 460 --title "plot --results" \
    >"$tmp/report" || fail "plot --results"
cat "$tmp/report"
want_mean=$(python3 -c 'import json,sys; w=[json.loads(l)["w_mean"] for l in open(sys.argv[1]) if "w_mean" in l]; print(len(w), sum(w)/len(w))' \
    "$demo/robust/metrics.jsonl")
read -r steps mean <<<"$want_mean"
[ "$steps" = 8 ] || fail "metrics.jsonl has $steps w_mean entries, want 8"
grep -q "w histogram of 32 pairs (8 logged steps)" "$tmp/report" || fail "want the w of 8 steps x 4 pairs"
got=$(grep -o "mean w [0-9.]*" "$tmp/report" | cut -d' ' -f3)
awk -v a="$got" -v b="$mean" 'BEGIN { exit !(a - b < 1e-4 && b - a < 1e-4) }' ||
    fail "mean w $got, metrics.jsonl's steps say $mean"

# check.py PNG W H DEMO REPORT: decode, then the bars of each model's colour (the report's
# "#rrggbb", below the legend, left half) against the eval JSONs' accuracies, and the
# histogram (the third colour in the right half)
cat >"$tmp/check.py" <<'EOF'
import json, os, re, struct, sys, zlib
path, want_w, want_h, demo, report = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
data = open(path, "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
pos, idat, ihdr = 8, b"", None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0], f"bad CRC in {kind}"
    if kind == b"IHDR": ihdr = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT": idat += body
    pos += 12 + n
    if kind == b"IEND": break
w, h, depth, ctype, _, _, interlace = ihdr
assert (w, h) == (want_w, want_h), f"{w}x{h}, want {want_w}x{want_h}"
assert depth == 8 and ctype in (2, 6) and interlace == 0, f"unexpected PNG format {ihdr}"
bpp = 3 if ctype == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
rows, prev = [], bytearray(stride)
for y in range(h):
    ft, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    if ft == 1:
        for i in range(bpp, stride): line[i] = (line[i] + line[i - bpp]) & 255
    elif ft == 2:
        line = bytearray((a + b) & 255 for a, b in zip(line, prev))
    elif ft == 3:
        for i in range(stride): line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 255
    elif ft == 4:
        for i in range(stride):
            a, b, c = (line[i - bpp] if i >= bpp else 0), prev[i], (prev[i - bpp] if i >= bpp else 0)
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    else:
        assert ft == 0, f"row {y}: filter {ft}"
    rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
    prev = line
cols = re.findall(r"#([0-9a-f]{6})", open(report).read())
assert len(cols) == 3, f"want 3 model colours in the report, got {cols}"
rgb = [tuple(int(c[i:i + 2], 16) for i in (0, 2, 4)) for c in cols]
# the legend: the first 6x6 block of a model colour from the top is a swatch; it ends where
# its colour does
y0, x0 = next((y, x) for y in range(h - 6) for x in range(w - 6) if rows[y][x] in rgb
              and all(rows[y + j][x + i] == rows[y][x] for j in range(6) for i in range(6)))
legend = y0
while rows[legend][x0] == rows[y0][x0]: legend += 1
ratios = []
for m, name in enumerate(("pretrain", "standard", "robust")):
    acc = [json.load(open(os.path.join(demo, f"eval_{name}_{s}.json")))["accuracy"]
           for s in ("test_id", "test_ood", "test_oracle")]
    # the bars: runs of columns (left half) holding the colour; height = its pixels in the run's middle column
    xs = [x for x in range(w // 2) if any(rows[y][x] == rgb[m] for y in range(legend + 4, h))]
    bars, start = [], None
    for i, x in enumerate(xs):
        if start is None: start = x
        if i + 1 == len(xs) or xs[i + 1] != x + 1:
            bars.append((start + x) // 2)
            start = None
    assert len(bars) == 3, f"{name}: {len(bars)} bars of #{cols[m]}, want 3"
    for x, a in zip(bars, acc):
        ratios.append((sum(rows[y][x] == rgb[m] for y in range(legend + 4, h)), a, name))
k = sorted(r[0] / r[1] for r in ratios)[len(ratios) // 2]
for px, a, name in ratios:
    assert abs(px - a * k) <= 2, f"{name}: a bar of {px} pixels for accuracy {a} (scale {k:.1f} px per unit)"
hist = sum(rows[y][x] == rgb[2] for y in range(legend + 4, h) for x in range(w // 2, w))
assert hist >= 200, f"{hist} pixels of the histogram's colour in the right half"
print(f"{path}: {w}x{h}, 9 bars in proportion to the accuracies ({k:.1f} px per unit), histogram {hist} px")
EOF
python3 "$tmp/check.py" "$tmp/results.png" 1000 460 "$demo" "$tmp/report"

# errors: no image is written, and none is left half-written
err() { # exit want args...
    local code=$1 want=$2
    shift 2
    local rc=0
    "$MMRM" plot "$@" >"$tmp/err.log" 2>&1 || rc=$?
    [ "$rc" = "$code" ] || { cat "$tmp/err.log"; fail "exit $rc, want $code: $*"; }
    grep -q -- "$want" "$tmp/err.log" || { cat "$tmp/err.log"; fail "no '$want' in the error"; }
    [ ! -e "$tmp/bad.png" ] || fail "an image was written: $*"
    for f in "$tmp"/*.tmp*; do [ ! -e "$f" ] || fail "a temporary file was left ($f): $*"; done
}
err 2 "takes no RUN_DIR" --results "$demo" "$demo/robust" --out "$tmp/bad.png"
err 2 "takes no RUN_DIR" --results "$demo" --smooth 3 --out "$tmp/bad.png"
mv "$demo/eval_standard_test_ood.json" "$tmp/keep.json"
err 1 "eval_standard_test_ood.json" --results "$demo" --out "$tmp/bad.png"
echo '{"accuracy": "high"}' >"$demo/eval_standard_test_ood.json"
err 1 "eval_standard_test_ood.json: field \"accuracy\" is missing or not a number" --results "$demo" --out "$tmp/bad.png"
mv "$tmp/keep.json" "$demo/eval_standard_test_ood.json"
mv "$demo/robust/runs" "$tmp/runs"
err 1 "robust/runs: no train/w histogram" --results "$demo" --out "$tmp/bad.png"
echo "plot --results: bars in proportion to the accuracies, every pair's w in the histogram; errors name the file"
