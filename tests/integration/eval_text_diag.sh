#!/usr/bin/env bash
# `mmrm eval` text-only diagnostics on a small trained model: a shortcut-aware run of a few steps
# on `mmrm synth --task mixed --cue hedge` data (categories colour/shape/count/position/size),
# then eval with its bias model as the text-only verdict. The JSON's accuracy, the text-only
# model's own accuracy (ties wrong, and ties 0.5) and SFD overall and per category equal what
# python3 recomputes from the per-pair scores file (--scores); the table shows the per-category
# SFD; --scores is written atomically (no temporary file left) and names each pair's line.
set -euo pipefail
source "$(dirname "$0")/../python_prelude.sh"

"$MMRM" synth --out "$tmp/data" --pairs 80 --seed 4 --task mixed --cue hedge >/dev/null 2>&1
"$MMRM" train configs/scratch_robust.ini dataset_path="$tmp/data/train.jsonl" eval_dataset_path= \
    output_dir="$tmp/run" max_steps=12 logging_steps=4 report_to=none seed=3 2> "$tmp/train.log" ||
    { tail -n 20 "$tmp/train.log"; exit 1; }
m="$tmp/run/checkpoint-last"
"$MMRM" eval --model "$m" --data "$tmp/data/test_oracle.jsonl" --text-only-model "$m/bias" --json \
    --scores "$tmp/scores.jsonl" > "$tmp/eval.json" 2> "$tmp/eval.log" || { cat "$tmp/eval.log"; exit 1; }
"$MMRM" eval --model "$m" --data "$tmp/data/test_oracle.jsonl" --text-only-model "$m/bias" \
    > "$tmp/table.txt" 2>> "$tmp/eval.log"
[ -z "$(find "$tmp" -maxdepth 1 -name 'scores.jsonl?*')" ] || { echo "temporary scores file left behind"; exit 1; }
grep -q "SFD by category" "$tmp/table.txt" || { echo "the table lacks SFD by category"; cat "$tmp/table.txt"; exit 1; }
for c in colour count position size; do
    grep -Eq "^    $c +[0-9.]+% +[0-9.]+% +([+-][0-9.]+ pp|n/a)" "$tmp/table.txt" ||
        { echo "the table's SFD by category lacks $c"; cat "$tmp/table.txt"; exit 1; }
done

python3 - "$tmp" <<'PY'
import json, math, sys
tmp = sys.argv[1]
rep = json.load(open(f"{tmp}/eval.json"))
rows = [json.loads(l) for l in open(f"{tmp}/scores.jsonl")]
recs = [json.loads(l) for l in open(f"{tmp}/data/test_oracle.jsonl")]
assert len(rows) == len(recs) == rep["pairs"], (len(rows), len(recs), rep["pairs"])
for r in rows:  # every pair names its record's line and category
    assert recs[r["line"] - 1]["category"] == r["category"], r
credit = lambda c, r: 1.0 if c > r else 0.5 if c == r else 0.0
def stats(rs):
    acc = sum(credit(r["chosen"], r["rejected"]) for r in rs) / len(rs)
    right = [r for r in rs if r["text_chosen"] > r["text_rejected"]]
    wrong = [r for r in rs if not r["text_chosen"] > r["text_rejected"]]
    ar = sum(credit(r["chosen"], r["rejected"]) for r in right) / len(right) if right else None
    aw = sum(credit(r["chosen"], r["rejected"]) for r in wrong) / len(wrong) if wrong else None
    return {"accuracy": acc, "text_accuracy": len(right) / len(rs),
            "text_ties_half": sum(credit(r["text_chosen"], r["text_rejected"]) for r in rs) / len(rs),
            "sfd": None if ar is None or aw is None else 100 * (ar - aw), "right": len(right), "wrong": len(wrong)}
def same(a, b, what):
    if a is None or b is None:
        assert a is None and b is None, (what, a, b)
    else:
        assert math.isclose(a, b, rel_tol=0, abs_tol=1e-9), (what, a, b)
s = stats(rows)
t = rep["text_only"]
same(rep["accuracy"], s["accuracy"], "accuracy")
same(t["accuracy"], s["text_accuracy"], "text-only accuracy")
same(t["accuracy_ties_half"], s["text_ties_half"], "text-only accuracy, ties 0.5")
same(t["sfd_pp"], s["sfd"], "SFD")
cats = sorted({r["category"] for r in rows})
assert sorted(rep["categories"]) == cats == ["colour", "count", "position", "shape", "size"], (rep["categories"], cats)
for c in cats:
    cs, got = stats([r for r in rows if r["category"] == c]), rep["categories"][c]
    same(got["accuracy"], cs["accuracy"], c + " accuracy")
    same(got["text_accuracy"], cs["text_accuracy"], c + " text-only accuracy")
    same(got["sfd_pp"], cs["sfd"], c + " SFD")
    assert got["text_right"] == cs["right"] and got["text_wrong"] == cs["wrong"], (c, got, cs)
# a trained run: the verdicts are not all one way, so SFD is defined overall
assert s["sfd"] is not None and 0 < s["right"] < len(rows), s
PY

# unwritable --scores: exit 1 naming the file
rc=0
"$MMRM" eval --model "$m" --data "$tmp/data/test_id.jsonl" --scores "$tmp/no/such/dir/s.jsonl" \
    > /dev/null 2> "$tmp/err" || rc=$?
if [ "$rc" != 1 ] || ! grep -q "no/such/dir/s.jsonl" "$tmp/err"; then
    echo "unwritable --scores: exit $rc"; cat "$tmp/err"; exit 1
fi
