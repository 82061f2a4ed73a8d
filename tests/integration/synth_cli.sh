#!/usr/bin/env bash
# `mmrm synth`: --help; a small benchmark has every file with the documented line counts, every
# referenced image, no temporary files, and the same bytes for the same seed; bad arguments exit
# 2 (a file in the way of --out exits 1) with a message naming the option.
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

grep -q "usage: mmrm synth --out DIR" <<<"$("$MMRM" synth --help)"

"$MMRM" synth --out "$tmp/a" --pairs 100 --seed 3 >"$tmp/summary"
for split in train test_id test_ood test_oracle; do
    grep -Eq "^ +$split +[0-9]+" "$tmp/summary" || { echo "summary lacks $split"; cat "$tmp/summary"; exit 1; }
done
want() { # file, line count
    local n
    n=$(wc -l <"$tmp/a/$1")
    [ "$n" = "$2" ] || { echo "$1: $n lines, want $2"; exit 1; }
}
want train.jsonl 100
want test_id.jsonl 50 # max(100 / 4, 50)
want test_ood.jsonl 50
want test_oracle.jsonl 50
want score_input.jsonl 8
grep -q "seed 3" "$tmp/a/README.txt"
n=$(find "$tmp/a/images" -name '*.png' | wc -l)
[ "$n" = 250 ] || { echo "$n images, want 250"; exit 1; }
# every img_path names a PNG that exists
grep -ho '"img_path":"[^"]*"' "$tmp/a"/*.jsonl | sed 's/"img_path":"//; s/"$//' | sort -u >"$tmp/paths"
[ "$(wc -l <"$tmp/paths")" = 250 ] || { echo "$(wc -l <"$tmp/paths") distinct img_path values, want 250"; exit 1; }
while read -r p; do [ -f "$tmp/a/$p" ] || { echo "missing image $p"; exit 1; }; done <"$tmp/paths"
# both training formats occur; exactly one response per pairwise record carries the cue
grep -q '"completions":' "$tmp/a/train.jsonl"
grep -q '"chosen":' "$tmp/a/train.jsonl"
cues=$(grep -o 'Hope this helps!' "$tmp/a/test_id.jsonl" | wc -l)
[ "$cues" = 50 ] || { echo "$cues cues in test_id.jsonl, want one per pair (50)"; exit 1; }
[ -z "$(find "$tmp/a" -name '*.tmp.*')" ] || { echo "temporary files left behind"; exit 1; }

"$MMRM" synth --out "$tmp/b" --pairs=100 --seed=3 >/dev/null
diff -r "$tmp/a" "$tmp/b" >/dev/null || { echo "same seed, different output"; exit 1; }
"$MMRM" synth --out "$tmp/c" --pairs 100 --seed 4 >/dev/null
! cmp -s "$tmp/a/train.jsonl" "$tmp/c/train.jsonl" || { echo "seeds 3 and 4 gave the same train.jsonl"; exit 1; }

fails() { # want-status, text the message must hold, args...
    local want=$1 text=$2 rc=0
    shift 2
    "$MMRM" synth "$@" >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" = "$want" ] || { echo "synth $*: exit $rc, want $want"; cat "$tmp/err"; exit 1; }
    grep -qF -- "$text" "$tmp/err" || { echo "synth $*: message lacks '$text':"; cat "$tmp/err"; exit 1; }
}
fails 2 "--pairs" --out "$tmp/x" --pairs -5
fails 2 "--pairs" --out "$tmp/x" --pairs 0
fails 2 "--pairs" --out "$tmp/x" --pairs 12abc
fails 2 "--cue-agreement" --out "$tmp/x" --cue-agreement 1.5
fails 2 "--ood-cue-agreement" --out "$tmp/x" --ood-cue-agreement -0.1
fails 2 "--label-noise" --out "$tmp/x" --label-noise nan
fails 2 "--image-size-range" --out "$tmp/x" --image-size-range 50
fails 2 "--image-size-range" --out "$tmp/x" --image-size-range 80,40
fails 2 "--seed" --out "$tmp/x" --seed -1
fails 2 "--out DIR is required" --pairs 10
fails 2 "unknown option '--frobnicate'" --out "$tmp/x" --frobnicate 1
fails 2 "--seed needs a value" --out "$tmp/x" --seed
[ ! -e "$tmp/x" ] || { echo "bad arguments still created the output folder"; exit 1; }
touch "$tmp/file"
fails 1 "cannot create output folder" --out "$tmp/file" --pairs 10
