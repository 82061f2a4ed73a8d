#!/usr/bin/env bash
# mmrm eval end to end on a tiny random model: the JSON's accuracy, margins, per-category
# accuracy, text-only accuracy and SFD equal what this script computes from `mmrm score`
# outputs of the same pairs (real images, and --blank-image for the text-only verdict); a
# ratings record gives its pairs; a missing image is left out; --text-only-model with the same
# model agrees with --text-only; the table prints the SFD definition. Checked with python3's
# json module (skipped without python3).
set -euo pipefail
source "$(dirname "$0")/../python_prelude.sh"

"$MMRM" init --config configs/model/tiny.json --out "$tmp/model" --seed 2 >/dev/null
mkdir "$tmp/img"
for f in rgb_37x23.png rgb_61x113.png grey_45x30.png palette_50x31.gif rgb_300x7.png; do
    cp "tests/fixtures/images/$f" "$tmp/img/"
done

# pairs.jsonl (30 pairwise records, some with a category, one ratings record, one missing
# image) and the same pairs as grouped scoring records [chosen, rejected] in pairs order
python3 - "$tmp" <<'EOF'
import json, random, sys
tmp = sys.argv[1]
random.seed(11)
imgs = ["rgb_37x23.png", "rgb_61x113.png", "grey_45x30.png", "palette_50x31.gif", "rgb_300x7.png"]
words = ["cat", "dog", "red", "blue", "tree", "sun", "car", "a", "the", "is", "two"]
text = lambda: " ".join(random.choice(words) for _ in range(random.randint(1, 8)))
recs, pairs, cats = [], [], []
for i in range(30):
    r = {"prompt": f"question {i}", "img_path": "img/" + imgs[i % 5], "chosen": text(), "rejected": text()}
    if i % 3: r["category"] = ["ocr", "counting"][i % 2]
    recs.append(r)
recs.insert(7, {"prompt": "gone", "img_path": "img/missing.png", "chosen": "a", "rejected": "b"})
ratings = ["4", 2, "3"]
recs.insert(12, {"prompt": "rate these", "img_path": "img/" + imgs[1], "category": "ratings",
                 "completions": {"annotations": [{"Helpfulness": {"Rating": x}} for x in ratings],
                                 "model": ["m1", "m2", "m3"], "response": ["first", "second", "third"]}})
for r in recs:
    if "missing" in r["img_path"]: continue
    if "completions" in r:
        c = r["completions"]; s = [float(x) for x in ratings]
        for i in range(3):
            for j in range(i + 1, 3):
                if s[i] == s[j]: continue
                hi, lo = (i, j) if s[i] > s[j] else (j, i)
                pairs.append((r["prompt"], r["img_path"], c["response"][hi], c["response"][lo], r.get("category")))
    else:
        pairs.append((r["prompt"], r["img_path"], r["chosen"], r["rejected"], r.get("category")))
with open(f"{tmp}/pairs.jsonl", "w") as f:
    for r in recs: f.write(json.dumps(r) + "\n")
with open(f"{tmp}/as_scoring.jsonl", "w") as f:
    for p in pairs: f.write(json.dumps({"prompt": p[0], "img_path": p[1], "responses": [p[2], p[3]]}) + "\n")
json.dump([p[4] for p in pairs], open(f"{tmp}/categories.json", "w"))
EOF

"$MMRM" eval --model "$tmp/model" --data "$tmp/pairs.jsonl" --text-only --json \
    --batch-size 5 >"$tmp/eval.json" 2>"$tmp/err"
grep -q "skipped 1 record: 1 missing image" "$tmp/err" || { cat "$tmp/err"; echo "missing image not counted"; exit 1; }
"$MMRM" score --model "$tmp/model" --input "$tmp/as_scoring.jsonl" --output "$tmp/mm.jsonl" \
    --grouped 2>/dev/null
"$MMRM" score --model "$tmp/model" --input "$tmp/as_scoring.jsonl" --output "$tmp/text.jsonl" \
    --grouped --blank-image 2>/dev/null
python3 - "$tmp" <<'EOF'
import json, sys
tmp = sys.argv[1]
e = json.load(open(f"{tmp}/eval.json"))
mm = [json.loads(l)["scores"] for l in open(f"{tmp}/mm.jsonl")]
tx = [json.loads(l)["scores"] for l in open(f"{tmp}/text.jsonl")]
cats = json.load(open(f"{tmp}/categories.json"))
n = len(mm)
assert n == 33 and len(tx) == n, (n, len(tx))  # 30 pairwise + 3 from the ratings record
credit = lambda c, r: 1.0 if c > r else 0.5 if c == r else 0.0
acc = sum(credit(c, r) for c, r in mm) / n
margins = [c - r for c, r in mm]
mean = sum(margins) / n
std = (sum((m - mean) ** 2 for m in margins) / n) ** 0.5
right = [i for i in range(n) if tx[i][0] > tx[i][1]]
wrong = [i for i in range(n) if not tx[i][0] > tx[i][1]]
acc_on = lambda idx: sum(credit(*mm[i]) for i in idx) / len(idx)
assert right and wrong, "one side of the text-only split is empty: SFD would not be checked"
sfd = 100 * (acc_on(right) - acc_on(wrong))
close = lambda a, b, tol=1e-6: abs(a - b) <= tol * (1 + abs(b))
assert e["pairs"] == n and e["scored"] == n and e["unscored"] == 0, e
assert 0 <= e["accuracy"] <= 1 and close(e["accuracy"], acc), (e["accuracy"], acc)
assert close(e["margin_mean"], mean, 1e-4) and close(e["margin_std"], std, 1e-4), (e, mean, std)
for name in set(c for c in cats if c):
    idx = [i for i in range(n) if cats[i] == name]
    got = e["categories"][name]
    assert got["n"] == len(idx) and close(got["accuracy"], acc_on(idx)), (name, got, acc_on(idx))
assert set(e["categories"]) == set(c for c in cats if c), e["categories"].keys()
t = e["text_only"]
assert t["right"] == len(right) and t["wrong"] == len(wrong) and t["n"] == n, t
assert close(t["accuracy"], len(right) / n), t
assert close(t["acc_given_text_right"], acc_on(right)) and close(t["acc_given_text_wrong"], acc_on(wrong)), t
assert close(t["sfd_pp"], sfd), (t["sfd_pp"], sfd)
assert "SFD = acc(MM-RM | text-only right)" in t["sfd_definition"]
print(f"accuracy {acc:.4f}, text-only {len(right)}/{n}, SFD {sfd:+.2f} pp: eval matches score")
EOF

# the same model named as the text-only model gives the same verdicts (the same batch size:
# with share_prefix/packing the rows a forward shares change the scores' rounding)
"$MMRM" eval --model "$tmp/model" --data "$tmp/pairs.jsonl" --text-only-model "$tmp/model" \
    --batch-size 5 --json 2>/dev/null >"$tmp/eval2.json"
python3 -c "
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert a == b, (a, b)" "$tmp/eval.json" "$tmp/eval2.json"

# the table, and no text-only part without a verdict
"$MMRM" eval --model "$tmp/model" --data "$tmp/pairs.jsonl" --text-only 2>/dev/null >"$tmp/table"
grep -q "^  accuracy " "$tmp/table" && grep -q "SFD = acc(MM-RM | text-only right)" "$tmp/table" ||
    { cat "$tmp/table"; echo "table lacks accuracy or the SFD definition"; exit 1; }
"$MMRM" eval --model "$tmp/model" --data "$tmp/pairs.jsonl" --json 2>/dev/null |
    python3 -c "import json, sys; e = json.load(sys.stdin); assert e['text_only'] is None, e"
set +e
"$MMRM" eval --model "$tmp/model" --data "$tmp/pairs.jsonl" --text-only \
    --text-only-model "$tmp/model" 2>/dev/null
rc=$?
set -e
[ "$rc" = 2 ] || { echo "--text-only with --text-only-model exited $rc, want 2"; exit 1; }
"$MMRM" eval --help | grep "usage: mmrm eval" >/dev/null
