#!/usr/bin/env bash
# mmrm eval --format on the public benchmark layouts (tests/fixtures/benchmarks/): for each
# fixture the JSON's "benchmark" metrics (overall, macro and per-category accuracy, Acc+ for
# mmrlhf, under each benchmark's tie rule) equal what this script computes from `mmrm score`
# outputs of the same responses, read from the raw records by its own parser that follows the
# official scripts (VL-RewardBench cal.py, Multimodal RewardBench scripts/2_get_accuracy.py,
# MM-RLHF cal_performance_mmreweard_bench.py); --format auto detects each layout; malformed
# records stop the run naming file:line and the field. python3 stdlib only (json).
set -euo pipefail
source "$(dirname "$0")/../python_prelude.sh"
fx=tests/fixtures/benchmarks

"$MMRM" init --config configs/model/tiny.json --out "$tmp/model" --seed 2 >/dev/null

check() { # name data
    local name=$1 data=$2
    "$MMRM" eval --model "$tmp/model" --data "$data" --format "$name" --json --batch-size 3 \
        >"$tmp/$name.json" 2>"$tmp/$name.err" || { cat "$tmp/$name.err"; exit 1; }
    "$MMRM" eval --model "$tmp/model" --data "$data" --format auto --json \
        >"$tmp/$name.auto.json" 2>/dev/null
    # the pairs as scoring records [chosen, rejected], absolute image paths
    python3 - "$name" "$data" "$tmp/$name.scoring.jsonl" <<'EOF'
import json, os, sys
name, data, out = sys.argv[1:]
base = os.path.dirname(os.path.abspath(data))
with open(out, "w") as f:
    for line in open(data):
        r = json.loads(line)
        if name == "vlrewardbench":
            best = 0 if r["human_ranking"][0] < r["human_ranking"][1] else 1
            p = (r["query"], r["image_path"], r["response"][best], r["response"][1 - best])
        elif name == "mmrewardbench":
            o = (r["Output1"], r["Output2"]) if r["Better"] == "Output1" else (r["Output2"], r["Output1"])
            p = (r["Text"], r["Image"]) + o
        else:
            if "image" not in r: continue  # video
            p = (r["prompt"], r["image"], r["chosen"], r["rejected"])
        f.write(json.dumps({"prompt": p[0], "img_path": os.path.join(base, p[1]), "responses": [p[2], p[3]]}) + "\n")
EOF
    "$MMRM" score --model "$tmp/model" --input "$tmp/$name.scoring.jsonl" \
        --output "$tmp/$name.scores.jsonl" --grouped 2>/dev/null
    python3 - "$name" "$data" "$tmp/$name.scores.jsonl" "$tmp/$name.json" "$tmp/$name.auto.json" <<'EOF'
import json, sys
from collections import defaultdict
name, data, scores_path, eval_path, auto_path = sys.argv[1:]
recs = [json.loads(l) for l in open(data)]
scores = [json.loads(l)["scores"] for l in open(scores_path)]
e = json.load(open(eval_path))
b = e["benchmark"]
assert json.load(open(auto_path))["benchmark"] == b, "--format auto differs"
close = lambda a, x: abs(a - x) <= 1e-9 + 1e-6 * abs(x)
if name == "vlrewardbench":
    # cal.py: group from the image folder; overall = correct / total over the three groups,
    # macro = mean of the three; a tie does not pick the preferred response: wrong
    groups = {"vlfeedback": "general", "wildvision-battle": "general", "povid": "hallucination",
              "rlhf-v": "hallucination", "rlaif-v": "hallucination", "reasoning_tasks": "reasoning"}
    cats = [r.get("category") or groups[r["image_path"].split("/")[1]] for r in recs]
    credit = [1.0 if c > r else 0.0 for c, r in scores]
    qid = list(range(len(recs)))
elif name == "mmrewardbench":
    # 2_get_accuracy.py: safety and reasoning split by the ID's prefix; an undecided verdict is
    # a fair coin: a tie counts 0.5
    def cat(r):
        c = r["Category"]
        if c == "safety": return "safety/bias" if r["ID"].lower().startswith("pairs") else "safety/toxicity"
        if c == "reasoning": return "reasoning/math" if r["ID"].lower().startswith("math") else "reasoning/coding"
        return c
    cats = [cat(r) for r in recs]
    credit = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in scores]
    qid = list(range(len(recs)))
else:
    # cal_performance_mmreweard_bench.py: category by keyword in the image path, correct when
    # reward_0 > reward_1, Acc+ per id
    recs = [r for r in recs if "image" in r]
    cats = [next((k for k in ["mcq", "long", "short", "safety", "video"] if k in r["image"]), None) for r in recs]
    credit = [1.0 if c > r else 0.0 for c, r in scores]
    qid = [r["id"] for r in recs]
assert len(scores) == len(recs) == b["pairs"], (len(scores), len(recs), b["pairs"])
ties = sum(c == r for c, r in scores)
assert ties >= 1 and b["ties"] == ties, ("the fixture's identical responses must tie", ties, b["ties"])
n = len(credit)
assert close(b["accuracy"], sum(credit) / n), (b["accuracy"], sum(credit) / n)
per = defaultdict(list)
for k, c in zip(cats, credit): per[k].append(c)
assert set(b["categories"]) == set(per), (b["categories"].keys(), per.keys())
for k, v in per.items():
    got = b["categories"][k]
    assert got["n"] == len(v) and close(got["accuracy"], sum(v) / len(v)), (k, got, v)
macro = sum(sum(v) / len(v) for v in per.values()) / len(per)
assert close(b["macro_accuracy"], macro), (b["macro_accuracy"], macro)
if name == "mmrlhf":
    by_id = defaultdict(list)
    for q, c in zip(qid, credit): by_id[q].append(c)
    plus = {q: all(c == 1.0 for c in v) for q, v in by_id.items()}
    assert b["questions"] == len(by_id) and close(b["acc_plus"], sum(plus.values()) / len(by_id)), (b, plus)
    first_cat = {}
    for q, k in zip(qid, cats): first_cat.setdefault(q, k)
    for k in per:
        qs = [q for q in by_id if first_cat[q] == k]
        got = b["categories"][k]
        assert got["questions"] == len(qs) and close(got["acc_plus"], sum(plus[q] for q in qs) / len(qs)), (k, got)
else:
    assert b["acc_plus"] is None
# the usual eval metrics are still there, over the same pairs (ties 0.5)
assert e["pairs"] == n and close(e["accuracy"], sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in scores) / n)
print(f"{name}: {n} pairs, accuracy {b['accuracy']:.4f}, macro {b['macro_accuracy']:.4f}"
      + (f", Acc+ {b['acc_plus']:.4f}" if b["acc_plus"] is not None else "") + ": eval matches score")
EOF
}

check vlrewardbench "$fx/vlrewardbench/data.jsonl"
check mmrewardbench "$fx/mmrewardbench/all_data.jsonl"
check mmrlhf "$fx/mmrlhf/mm_reward_bench.jsonl"
grep -q "1 video records skipped" "$tmp/mmrlhf.err" || { cat "$tmp/mmrlhf.err"; echo "video record not counted"; exit 1; }

# the table shows the benchmark's part
"$MMRM" eval --model "$tmp/model" --data "$fx/mmrlhf/mm_reward_bench.jsonl" --format mmrlhf \
    2>/dev/null >"$tmp/table"
grep -q "Acc+ " "$tmp/table" && grep -q "macro accuracy" "$tmp/table" ||
    { cat "$tmp/table"; echo "table lacks the benchmark metrics"; exit 1; }

# malformed records: exit 1, the message names file:line and the field
bad() { # format, line number, field, python expression editing record r
    local fmt=$1 line=$2 field=$3 edit=$4 src
    case $fmt in
        vlrewardbench) src=$fx/vlrewardbench/data.jsonl ;;
        mmrewardbench) src=$fx/mmrewardbench/all_data.jsonl ;;
        mmrlhf) src=$fx/mmrlhf/mm_reward_bench.jsonl ;;
    esac
    python3 - "$src" "$tmp/bad.jsonl" "$line" "$edit" <<'EOF'
import json, sys
src, dst, line, edit = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
lines = open(src).read().splitlines()
r = json.loads(lines[line - 1]); exec(edit); lines[line - 1] = json.dumps(r)
open(dst, "w").write("\n".join(lines) + "\n")
EOF
    set +e
    "$MMRM" eval --model "$tmp/model" --data "$tmp/bad.jsonl" --format "$fmt" >/dev/null 2>"$tmp/bad.err"
    local rc=$?
    set -e
    [ "$rc" = 1 ] || { echo "$fmt: malformed line $line exited $rc, want 1"; exit 1; }
    grep -q "bad.jsonl:$line: .*\"$field\"" "$tmp/bad.err" ||
        { cat "$tmp/bad.err"; echo "$fmt: the error does not name line $line and $field"; exit 1; }
}
bad vlrewardbench 3 human_ranking 'del r["human_ranking"]'
bad vlrewardbench 2 response 'r["response"] = ["only one"]'
bad vlrewardbench 4 human_ranking 'r["human_ranking"] = [1, 1]'
bad mmrewardbench 5 Better 'r["Better"] = "Output3"'
bad mmrewardbench 2 Output2 'del r["Output2"]'
bad mmrlhf 7 rejected 'del r["rejected"]'
bad mmrlhf 1 prompt 'r["prompt"] = 5'
# an unknown subset folder without a category: the message asks for "category"
bad vlrewardbench 6 category 'r["image_path"] = "images/mystery/x.png"'

# auto on records of no known layout, and an unknown format name
echo '{"question": "q", "answers": ["a", "b"]}' >"$tmp/odd.jsonl"
set +e
"$MMRM" eval --model "$tmp/model" --data "$tmp/odd.jsonl" --format auto >/dev/null 2>"$tmp/odd.err"
rc_auto=$?
"$MMRM" eval --model "$tmp/model" --data "$tmp/odd.jsonl" --format nope >/dev/null 2>"$tmp/nope.err"
rc_nope=$?
set -e
[ "$rc_auto" = 1 ] && grep -q "odd.jsonl:1: --format auto cannot tell" "$tmp/odd.err" ||
    { cat "$tmp/odd.err"; echo "auto on an unknown layout: rc $rc_auto"; exit 1; }
[ "$rc_nope" = 2 ] && grep -q "unknown --format 'nope'" "$tmp/nope.err" ||
    { cat "$tmp/nope.err"; echo "unknown format: rc $rc_nope"; exit 1; }
# auto on mmrm's own pairwise records: the usual evaluation, no benchmark part
printf '{"prompt": "q", "img_path": "%s", "chosen": "a cat", "rejected": "a dog"}\n' \
    "$PWD/tests/fixtures/images/rgb_37x23.png" >"$tmp/own.jsonl"
"$MMRM" eval --model "$tmp/model" --data "$tmp/own.jsonl" --format auto --json 2>/dev/null |
    python3 -c "import json, sys; e = json.load(sys.stdin); assert e['benchmark'] is None and e['pairs'] == 1, e"
"$MMRM" eval --help | grep -- "--format F" >/dev/null
echo "bench formats: 3 layouts match score, 8 malformed records rejected with file:line and field"
