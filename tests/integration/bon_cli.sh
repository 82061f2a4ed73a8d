#!/usr/bin/env bash
# mmrm bon (best-of-N) on a tiny random model: every pick is the argmax of the scores `mmrm
# score --grouped` gives the same records (and of --blank-image's for --text-only); identical
# responses tie, and --ties first|all|random pick the first, all, or a seeded member of the
# tied set (reproducible for a seed); --compare-text-only reports both picks and the agreement;
# bad options exit 2, a missing input 1 with no output written. python3 stdlib json checks.
set -euo pipefail
source "$(dirname "$0")/../python_prelude.sh"

"$MMRM" init --config configs/model/tiny.json --out "$tmp/model" --seed 3 >/dev/null
mkdir "$tmp/img"
for f in rgb_37x23.png grey_45x30.png palette_50x31.gif rgb_61x113.png; do
    cp "tests/fixtures/images/$f" "$tmp/img/"
done
python3 - "$tmp" <<'EOF'
import json, random, sys
tmp = sys.argv[1]
random.seed(17)
imgs = ["rgb_37x23.png", "grey_45x30.png", "palette_50x31.gif", "rgb_61x113.png"]
words = ["cat", "dog", "red", "blue", "tree", "sun", "car", "a", "the", "is", "two", "three"]
text = lambda: " ".join(random.choice(words) for _ in range(random.randint(1, 8)))
with open(f"{tmp}/in.jsonl", "w") as f:
    for i in range(14):
        n = random.randint(2, 6)
        resp = [text() for _ in range(n)]
        if i % 3 == 0:  # copies of one response tie with it
            resp += [resp[0]] * 2
            random.shuffle(resp)
        f.write(json.dumps({"prompt": f"question {i}", "img_path": "img/" + imgs[i % 4], "responses": resp}) + "\n")
        if i == 5:
            f.write(json.dumps({"prompt": "gone", "img_path": "img/missing.png", "responses": ["a", "b"]}) + "\n")
EOF

"$MMRM" bon --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/first.jsonl" --batch-size 4 2>"$tmp/err"
"$MMRM" bon --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/all.jsonl" --ties all 2>/dev/null
"$MMRM" bon --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/rand1.jsonl" --ties random --seed 5 2>/dev/null
"$MMRM" bon --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/rand2.jsonl" --ties random --seed 5 2>/dev/null
"$MMRM" bon --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/text.jsonl" --text-only 2>/dev/null
"$MMRM" bon --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/cmp.jsonl" --compare-text-only \
    2>"$tmp/cmp.err"
"$MMRM" score --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/mm.jsonl" --grouped 2>/dev/null
"$MMRM" score --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/blank.jsonl" --grouped \
    --blank-image 2>/dev/null
grep -q "missing.png" "$tmp/err" || { cat "$tmp/err"; echo "the missing image is not reported"; exit 1; }
grep -q "text-only pick agrees with the pick on" "$tmp/cmp.err" ||
    { cat "$tmp/cmp.err"; echo "no agreement line"; exit 1; }

python3 - "$tmp" <<'EOF'
import json, sys
tmp = sys.argv[1]
load = lambda name: [json.loads(l) for l in open(f"{tmp}/{name}")]
first, allp, r1, r2, text, cmp = (load(n) for n in ["first.jsonl", "all.jsonl", "rand1.jsonl", "rand2.jsonl", "text.jsonl", "cmp.jsonl"])
mm, blank = load("mm.jsonl"), load("blank.jsonl")
n = len(mm)
assert n == 14 and all(len(x) == n for x in (first, allp, r1, r2, text, cmp)), [len(x) for x in (mm, first, allp, r1, r2, text, cmp)]
close = lambda a, b: abs(a - b) <= 1e-6 * (1 + abs(b))
def top(scores):
    best = max(s for s in scores if s is not None)
    return [j for j, s in enumerate(scores) if s == best]
tied = 0
for i in range(n):
    s = mm[i]["scores"]
    t = top(s)
    tied += len(t) > 1
    for o in (first, allp, r1, text, cmp):
        assert o[i]["prompt"] == mm[i]["prompt"] and o[i]["responses"] == mm[i]["responses"], i
    assert all(close(a, b) for a, b in zip(first[i]["scores"], s)), (first[i]["scores"], s)
    assert first[i]["chosen_index"] == t[0], (i, first[i], t)
    assert first[i]["chosen"] == mm[i]["responses"][t[0]]
    assert allp[i]["chosen_index"] == t and allp[i]["chosen"] == [mm[i]["responses"][j] for j in t], (i, allp[i], t)
    assert r1[i]["chosen_index"] in t and r1[i] == r2[i], (i, r1[i], t)
    tt = top(blank[i]["scores"])
    assert text[i]["chosen_index"] == tt[0] and all(close(a, b) for a, b in zip(text[i]["scores"], blank[i]["scores"])), (i, text[i], tt)
    assert cmp[i]["chosen_index"] == t[0] and cmp[i]["text_only_chosen_index"] == tt[0], (i, cmp[i])
    assert cmp[i]["agree"] == (t[0] == tt[0]), i
assert tied >= 3, f"only {tied} records with tied top scores: the ties rules were not exercised"
print(f"bon: {n} records ({tied} with tied top scores) pick the argmax of score's scores; "
      f"text-only agrees on {sum(c['agree'] for c in cmp)}/{n}")
EOF

# some seed picks another member of a tied set than --ties first does
differs=0
for seed in 1 2 3 4 5 6; do
    "$MMRM" bon --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/r.jsonl" --ties random \
        --seed $seed 2>/dev/null
    cmp -s "$tmp/r.jsonl" "$tmp/first.jsonl" || differs=1
done
[ "$differs" = 1 ] || { echo "--ties random never differs from --ties first over 6 seeds"; exit 1; }

# errors
expect() { # rc, args...
    local want=$1
    shift
    set +e
    "$MMRM" bon "$@" >/dev/null 2>"$tmp/e.err"
    local rc=$?
    set -e
    [ "$rc" = "$want" ] || { cat "$tmp/e.err"; echo "bon $*: exit $rc, want $want"; exit 1; }
}
expect 2 --model "$tmp/model" --input "$tmp/in.jsonl"
expect 2 --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/x.jsonl" --ties most
expect 2 --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/x.jsonl" --text-only --compare-text-only
expect 2 --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/x.jsonl" --seed -1
expect 1 --model "$tmp/model" --input "$tmp/absent.jsonl" --output "$tmp/x.jsonl"
[ ! -e "$tmp/x.jsonl" ] || { echo "a failed run left an output"; exit 1; }
expect 1 --model "$tmp/model" --input "$tmp/in.jsonl" --output "$tmp/no/such/dir/x.jsonl"
"$MMRM" bon --help | grep -q "usage: mmrm bon"
