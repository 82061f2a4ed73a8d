#!/usr/bin/env bash
# `mmrm plot`: --help; from two tiny real runs (standard and shortcut-aware, with evaluations)
# and a synthetic metrics.jsonl (random fixed-seed values, null values, unknown fields), one PNG
# of the requested size that a decoder other than cairo's (python3's zlib: every chunk's CRC,
# the filters undone) reads, that is not blank, whose legend holds a swatch of each run's
# printed colour and whose curve area (below the legend) holds that colour too; a run left out
# leaves its colour out; panels follow the data (no w or eval panel without w or eval
# entries); --smooth and --label work. Bad inputs exit 1 (missing run, no metrics.jsonl,
# malformed line, non-numeric field, no data, an image too small for its panels) or 2 (usage)
# with a message naming the file and line or option, and leave no output and no temporary
# file; a failed plot leaves an older image in place.
set -euo pipefail
source "$(dirname "$0")/../python_prelude.sh"

grep -q "usage: mmrm plot RUN_DIR" <<<"$("$MMRM" plot --help)"

"$MMRM" synth --out "$tmp/data" --pairs 48 --seed 4 >/dev/null
: >"$tmp/empty.ini"
common=(init_model_config=configs/model/tiny.json init_bias_model_config=configs/model/tiny.json
        dataset_path="$tmp/data/train.jsonl" eval_dataset_path="$tmp/data/test_id.jsonl" eval_steps=3
        freeze_backbone=false drop_path_rate=0 dynamic_image_size=false max_length=512 max_steps=8
        learning_rate=1e-3 warmup_steps=1 save_steps=100 num_workers=0 logging_steps=1 seed=3
        per_device_train_batch_size=4 gradient_accumulation_steps=1)
for algo in standard shortcut_aware; do
    "$MMRM" train "$tmp/empty.ini" "${common[@]}" algorithm=$algo output_dir="$tmp/runs/$algo" \
        2>"$tmp/log" || { tail -n 20 "$tmp/log"; exit 1; }
done

# synthetic: 300 logged steps of a noisy falling loss, a NaN step (null), fields plot does not
# know, an eval entry every 50 steps
python3 - "$tmp/runs/synthetic" <<'EOF'
import json, math, os, random, sys
random.seed(5)
os.makedirs(sys.argv[1])
with open(os.path.join(sys.argv[1], "metrics.jsonl"), "w") as f:
    for step in range(1, 301):
        loss = 0.7 * math.exp(-step / 120) + random.uniform(0, 0.15)
        e = {"step": step, "loss": None if step == 77 else loss,
             "accuracy": min(1, 0.5 + step / 600 + random.uniform(-0.1, 0.1)),
             "lr": 1e-4, "grad_norm": random.uniform(0.1, 2), "tokens_per_s": 1e4, "note": "x"}
        f.write(json.dumps(e) + "\n")
        if step % 50 == 0:
            f.write(json.dumps({"step": step, "eval_accuracy": random.uniform(0.5, 0.9),
                                "eval_mean_margin": 0.1, "eval_pairs": 48}) + "\n")
EOF

# check.py PNG WIDTH HEIGHT REPORT [ABSENT_COLOUR]: decodes the PNG with zlib (every CRC
# checked), then: the size; not blank; for each "#rrggbb" of the report a legend swatch (a
# 6x6 block of exactly that colour) and >= 100 pixels near it below the legend; ABSENT_COLOUR
# nowhere near below the legend.
cat >"$tmp/check.py" <<'EOF'
import re, struct, sys, zlib
path, want_w, want_h, report = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
absent = sys.argv[5] if len(sys.argv) > 5 else None
data = open(path, "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
pos, idat, ihdr = 8, b"", None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
    assert zlib.crc32(kind + body) == crc, f"bad CRC in chunk {kind}"
    if kind == b"IHDR": ihdr = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT": idat += body
    pos += 12 + n
    if kind == b"IEND": break
w, h, depth, ctype, _, _, interlace = ihdr
assert (w, h) == (want_w, want_h), f"{w}x{h}, want {want_w}x{want_h}"
assert depth == 8 and ctype in (2, 6) and interlace == 0, f"unexpected PNG format {ihdr}"
bpp = 3 if ctype == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
assert len(raw) == h * (stride + 1), "IDAT size does not match the header"
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
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    else:
        assert ft == 0, f"row {y}: filter {ft}"
    rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
    prev = line
colours = {}
for r in rows:
    for px in r: colours[px] = colours.get(px, 0) + 1
background = max(colours, key=colours.get)
assert len(colours) >= 50, f"{len(colours)} distinct colours: not an antialiased plot"
ink = w * h - colours[background]
assert ink >= 0.05 * w * h, f"{ink} pixels differ from the background: blank"
runs = re.findall(r"#([0-9a-f]{6})", open(report).read())
assert runs, "the report names no colour"
def rgb(hexs): return tuple(int(hexs[i:i + 2], 16) for i in (0, 2, 4))
def near(p, c): return max(abs(a - b) for a, b in zip(p, c)) <= 40
swatch_bottom = 0
for hexs in runs:
    c = rgb(hexs)
    blocks = [(x, y) for y in range(h - 6) for x in range(w - 6) if rows[y][x] == c
              and all(rows[y + j][x + i] == c for j in range(6) for i in range(6))]
    assert blocks, f"no legend swatch of #{hexs}"
    swatch_bottom = max(swatch_bottom, max(y for _, y in blocks) + 6)
for hexs in runs:
    c = rgb(hexs)
    n = sum(near(p, c) for r in rows[swatch_bottom + 4:] for p in r)
    assert n >= 100, f"#{hexs}: {n} pixels near it in the curve area, want >= 100"
if absent:
    c = rgb(absent)
    n = sum(near(p, c) for r in rows[swatch_bottom + 4:] for p in r)
    assert n == 0, f"#{absent} (a run not plotted): {n} pixels near it in the curve area"
print(f"{path}: {w}x{h}, {len(colours)} colours, {100 * ink / (w * h):.0f}% ink, {len(runs)} runs found")
EOF

runs="$tmp/runs"
"$MMRM" plot "$runs/standard" "$runs/shortcut_aware" --out "$tmp/all.png" \
    --width 1000 --height 640 --title "plot_cli" >"$tmp/report"
grep -q "5 panels, 2 runs" "$tmp/report" || { echo "want 5 panels for 2 runs:"; cat "$tmp/report"; exit 1; }
for algo in standard shortcut_aware; do # the counts of metrics.jsonl's entries
    f="$runs/$algo/metrics.jsonl"
    grep -Eq "$algo +#[0-9a-f]{6} +$(grep -c '"loss"' "$f") training entries, $(grep -c '"eval_accuracy"' "$f") eval entries" \
        "$tmp/report" || { echo "$algo miscounted:"; cat "$tmp/report"; exit 1; }
done
python3 "$tmp/check.py" "$tmp/all.png" 1000 640 "$tmp/report"
absent=$(grep -o '#[0-9a-f]\{6\}' "$tmp/report" | sed -n 2p | tr -d '#')

# one run (the standard one): its colour only; the second colour of the plot above is absent
"$MMRM" plot "$runs/standard" --out "$tmp/one.png" --width 700 --height 400 --label base >"$tmp/report1"
grep -Eq "^  base +#" "$tmp/report1" || { echo "--label not used:"; cat "$tmp/report1"; exit 1; }
grep -q "3 panels, 1 run" "$tmp/report1" || { echo "standard run with eval: want 3 panels"; cat "$tmp/report1"; exit 1; }
python3 "$tmp/check.py" "$tmp/one.png" 700 400 "$tmp/report1" "$absent"

# default size, smoothing; without eval entries or w: 2 panels, with the synthetic run's: 3
mkdir "$runs/noeval"
grep -v eval_accuracy "$runs/synthetic/metrics.jsonl" >"$runs/noeval/metrics.jsonl"
"$MMRM" plot "$runs/noeval/" --out "$tmp/smooth.png" --smooth 20 >"$tmp/report2"
grep -q "2 panels, 1 run" "$tmp/report2" || { echo "want 2 panels:"; cat "$tmp/report2"; exit 1; }
grep -Eq "noeval +#[0-9a-f]{6} +300 training entries, 0 eval entries" "$tmp/report2" ||
    { echo "noeval run miscounted (or a trailing slash lost its name):"; cat "$tmp/report2"; exit 1; }
read -r w h < <(sed -nE '1s/.*: ([0-9]+)x([0-9]+) pixels.*/\1 \2/p' "$tmp/report2")
python3 "$tmp/check.py" "$tmp/smooth.png" "$w" "$h" "$tmp/report2"
"$MMRM" plot "$runs/synthetic" "$runs/noeval/metrics.jsonl" --out "$tmp/two.png" --smooth 10 \
    --width 900 --height 360 >"$tmp/report3"
grep -q "3 panels, 2 runs" "$tmp/report3" || { echo "want 3 panels:"; cat "$tmp/report3"; exit 1; }
grep -Eq "synthetic +#[0-9a-f]{6} +300 training entries, 6 eval entries" "$tmp/report3" ||
    { echo "synthetic run miscounted:"; cat "$tmp/report3"; exit 1; }
python3 "$tmp/check.py" "$tmp/two.png" 900 360 "$tmp/report3"

fails() { # want-status, text the message must hold, args...
    local want=$1 text=$2 rc=0
    shift 2
    "$MMRM" plot "$@" --out "$tmp/bad.png" >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" = "$want" ] || { echo "plot $*: exit $rc, want $want"; cat "$tmp/err"; exit 1; }
    grep -qF -- "$text" "$tmp/err" || { echo "plot $*: message lacks '$text':"; cat "$tmp/err"; exit 1; }
    [ ! -e "$tmp/bad.png" ] || { echo "plot $*: failed but wrote its output"; exit 1; }
}
mkdir "$tmp/nometrics" "$tmp/malformed" "$tmp/badfield" "$tmp/nodata" "$tmp/nostep"
printf '{"step":1,"loss":0.5,"accuracy":1}\n\n{"step":2,"loss":0.4,\n' >"$tmp/malformed/metrics.jsonl"
printf '{"step":1,"loss":0.5}\n{"step":2,"loss":"low"}\n' >"$tmp/badfield/metrics.jsonl"
printf '{"step":1,"lr":0.5}\n{"step":2,"loss":null}\n' >"$tmp/nodata/metrics.jsonl"
printf '{"loss":0.5}\n' >"$tmp/nostep/metrics.jsonl"
fails 1 "$tmp/missing" "$tmp/missing"
fails 1 "$tmp/nometrics/metrics.jsonl" "$runs/standard" "$tmp/nometrics"
fails 1 "$tmp/malformed/metrics.jsonl:3" "$tmp/malformed"
fails 1 "metrics.jsonl:2: field \"loss\" is not a number" "$tmp/badfield"
fails 1 "metrics.jsonl:1: field \"step\" is missing" "$tmp/nostep"
fails 1 "no data to plot" "$tmp/nodata"
fails 1 "too small for 3 panels" "$runs/standard" --width 200 --height 200
fails 2 "--width" "$runs/standard" --width 10
fails 2 "--height" "$runs/standard" --height 12x
fails 2 "--smooth" "$runs/standard" --smooth 0
fails 2 "--label" "$runs/standard" "$runs/synthetic" --label one
fails 2 "unknown option '--colour'" "$runs/standard" --colour red
fails 2 "no RUN_DIR" --width 400
rc=0
"$MMRM" plot "$runs/standard" 2>"$tmp/err" >/dev/null || rc=$?
[ "$rc" = 2 ] && grep -q -- "--out" "$tmp/err" || { echo "no --out: exit $rc"; cat "$tmp/err"; exit 1; }
rc=0
"$MMRM" plot "$runs/standard" --out "$tmp/no/such/dir/x.png" 2>"$tmp/err" >/dev/null || rc=$?
[ "$rc" = 1 ] && grep -q "$tmp/no/such/dir" "$tmp/err" || { echo "unwritable --out: exit $rc"; cat "$tmp/err"; exit 1; }
# a failed plot leaves the older image in place
cp "$tmp/one.png" "$tmp/keep.png"
"$MMRM" plot "$tmp/malformed" --out "$tmp/one.png" 2>/dev/null && { echo "malformed input plotted"; exit 1; }
cmp -s "$tmp/one.png" "$tmp/keep.png" || { echo "a failed plot changed the older image"; exit 1; }
[ -z "$(find "$tmp" -maxdepth 1 -name '*.tmp.*')" ] || { echo "temporary files left behind"; exit 1; }
echo "plot: PNGs decoded and checked; bad inputs rejected with no output"
