#!/usr/bin/env bash
# --t-bucket N (score, eval, bon, serve: a forward's padded T, and with share_prefix / packing
# the compact rows' length, rounded up to a multiple of N, at most --max-length) changes no
# score: padding is never read. On the CPU, --t-bucket 7, 64 and --max-length (every forward
# padded to max_length) write bitwise the scores of --t-bucket 1 in the three layouts (packed,
# prefix-shared padded groups, plain padded rows) over rows of varying lengths, and the
# throughput line shows the rounding took effect (more slots padded and computed). Bad values
# (-1, x, more than --max-length) are refused naming the option.
# With build/emu_mmrm next to $MMRM (the CUDA backend emulated on the CPU): the auto bucket
# (64 on a GPU) logs fewer GEMM plan-cache misses (`plans: H hits, M misses`) than
# --t-bucket 1 over the same input, and both give the CPU's scores within 1e-4 (the
# tolerance of tests/integration/cuda_emu_train.sh's score check).
set -euo pipefail
source "$(dirname "$0")/../python_prelude.sh"
fail() { echo "FAIL $*"; exit 1; }

"$MMRM" init --config configs/model/tiny.json --out "$tmp/model" >/dev/null
mkdir "$tmp/img"
for f in rgb_37x23.png rgb_61x113.png grey_45x30.png rgb_300x7.png; do
    cp "tests/fixtures/images/$f" "$tmp/img/"
done
# in.jsonl: 10 records of 3 responses of 1 to 30 words; small.jsonl (the emulator's): 8 of 2
# of 1 to 12 words. The images' tile counts and the text move each forward's longest row.
python3 - "$tmp" <<'EOF'
import json, random, sys
random.seed(11)
imgs = ["rgb_37x23.png", "rgb_61x113.png", "grey_45x30.png", "rgb_300x7.png"]
words = ["cat", "dog", "red", "blue", "tree", "sky", "round", "small"]
for name, n, k, most in (("in", 10, 3, 30), ("small", 8, 2, 12)):
    with open(f"{sys.argv[1]}/{name}.jsonl", "w") as f:
        for i in range(n):
            rs = [" ".join(random.choice(words) for _ in range(random.randint(1, most))) for _ in range(k)]
            f.write(json.dumps({"prompt": f"question {i}: what is shown?", "img_path": "img/" + imgs[i % 4],
                                "responses": rs}) + "\n")
EOF
score() { # BIN INPUT OUT LOG options...
    local bin=$1 in=$2 out=$3 log=$4
    shift 4
    "$bin" score --model "$tmp/model" --input "$tmp/$in.jsonl" --output "$out" "$@" 2>"$log" ||
        { tail -n 5 "$log"; fail "score $*"; }
}
# "<computed> <padded>" from the throughput line
slots() { sed -nE 's/.* ([0-9]+) tokens computed for [0-9]+ in the rows \(([0-9]+) padded\).*/\1 \2/p' "$1"; }

# ---- the CPU: bitwise the same scores, more slots
L=1024
for layout in packed: shared:--no-packing padded:--no-share-prefix,--no-packing; do
    name=${layout%%:*}
    layout=${layout#*:}
    layout=${layout//,/ }
    for tb in 1 7 64 $L; do
        # shellcheck disable=SC2086
        score "$MMRM" in "$tmp/cpu$name$tb.jsonl" "$tmp/cpu$name$tb.log" --batch-size 4 --device cpu \
            --max-length $L --t-bucket $tb $layout
    done
    read -r c1 p1 < <(slots "$tmp/cpu${name}1.log")
    for tb in 7 64 $L; do
        cmp "$tmp/cpu${name}1.jsonl" "$tmp/cpu$name$tb.jsonl" ||
            fail "$name: the scores of --t-bucket $tb differ from those of --t-bucket 1"
        read -r c p < <(slots "$tmp/cpu$name$tb.log")
        [ "$p" -gt "$p1" ] && [ "$c" -gt "$c1" ] ||
            fail "$name: --t-bucket $tb padded $p and computed $c slots, --t-bucket 1 $p1 and $c1 (not rounded?)"
    done
    # every forward (batches of 4 of 30 responses) padded to --max-length
    [ "$p" = $((30 * L)) ] || fail "$name: --t-bucket $L padded $p slots, want 30 x $L"
    echo "cpu $name: --t-bucket 7, 64, $L give the scores of --t-bucket 1 bitwise ($p1 -> $p slots padded, $c1 -> $c computed)"
done

# ---- bad values name the option (exit 2: a usage error; 1: the model's max_length)
for cmd in score eval bon serve; do
    for v in -1 x; do
        rc=0
        "$MMRM" $cmd --t-bucket $v >/dev/null 2>"$tmp/bad.log" || rc=$?
        [ "$rc" = 2 ] && grep -q -- "--t-bucket $v" "$tmp/bad.log" ||
            { cat "$tmp/bad.log"; fail "$cmd --t-bucket $v: exit $rc"; }
    done
done
rc=0
"$MMRM" score --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/big.jsonl" --max-length 600 \
    --t-bucket 601 2>"$tmp/bad.log" || rc=$?
[ "$rc" != 0 ] && grep -q -- "--t-bucket" "$tmp/bad.log" && [ ! -s "$tmp/big.jsonl" ] ||
    { cat "$tmp/bad.log"; fail "--t-bucket 601 over --max-length 600: exit $rc"; }
echo "--t-bucket -1, x (score, eval, bon, serve) and 601 > --max-length 600 refused"

# ---- the emulated GPU: fewer plan-cache misses, the CPU's scores
emu="$(dirname "$MMRM")/emu_mmrm"
if [ ! -x "$emu" ]; then
    echo "emulator part skipped: $emu not built (make $emu)"
    exit 0
fi
misses() { sed -nE 's/.*plans: ([0-9]+) hits, ([0-9]+) misses.*/\2/p' "$1" | tail -n 1; }
for tb in 0 1; do
    score "$emu" small "$tmp/gpu$tb.jsonl" "$tmp/gpu$tb.log" --batch-size 2 --device cuda --t-bucket $tb
done
score "$MMRM" small "$tmp/cpu.jsonl" "$tmp/cpu.log" --batch-size 2 --device cpu
m0=$(misses "$tmp/gpu0.log")
m1=$(misses "$tmp/gpu1.log")
[ -n "$m0" ] && [ -n "$m1" ] || fail "no plans line on the emulated GPU"
[ "$m0" -lt "$m1" ] || fail "the auto bucket missed the plan cache $m0 times, --t-bucket 1 $m1 times"
w=$(python3 - "$tmp/cpu.jsonl" "$tmp/gpu0.jsonl" "$tmp/gpu1.jsonl" <<'EOF'
import json, sys
cpu = [json.loads(l)["score"] for l in open(sys.argv[1])]
worst = []
for p in sys.argv[2:]:
    gpu = [json.loads(l)["score"] for l in open(p)]
    assert len(gpu) == len(cpu) == 16, (p, len(gpu), len(cpu))
    w = max(abs(g - c) / max(abs(c), 1.0) for g, c in zip(gpu, cpu))
    assert w <= 1e-4, f"{p}: worst relative difference from the CPU {w}"
    worst.append(f"{w:.3g}")
print(" and ".join(worst))
EOF
) || fail "the emulated GPU's scores differ from the CPU's"
echo "emulated GPU: plan-cache misses $m0 with the auto bucket, $m1 with --t-bucket 1; scores vs the CPU's: worst rel $w (tol 1e-4)"
