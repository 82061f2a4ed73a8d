#!/usr/bin/env bash
# mmrm score end to end on a tiny random model (mmrm init, configs/model/tiny.json) and fixture
# images (PNG, GIF, JPEG): one line per response with the input's fields echoed; a missing image
# and a corrupt one are reported as IN:line and counted, the others scored; a rerun scores
# nothing and leaves the output byte-identical; --grouped gives one line per record with the
# same scores; a run killed with SIGKILL mid-way plus a torn partial line, then rerun, holds
# every response exactly once with the scores of an uninterrupted run, and a second run is
# refused while one writes; a corrupt line inside the output stops the run.
# The JSON is written and checked with python3's json module (skipped without python3).
set -euo pipefail
if ! command -v python3 >/dev/null 2>&1; then
    echo "skipped: python3 not installed"
    exit 77
fi
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} # tiny forwards: spinning threads only slow them

"$MMRM" init --config configs/model/tiny.json --out "$tmp/model" >/dev/null
mkdir "$tmp/img"
for f in rgb_37x23.png rgb_61x113.png grey_45x30.png palette_50x31.gif rgb_300x7.png; do
    cp "tests/fixtures/images/$f" "$tmp/img/"
done
cp tests/fixtures/jpeg/s422_48x32.jpg "$tmp/img/" # JPEG goes through libjpeg-turbo
head -c 60 tests/fixtures/images/rgb_101x101.png >"$tmp/img/corrupt.png" # header, no pixels

# records.jsonl: N records of K responses (some text needs JSON escapes), then the bad ones
python3 - "$tmp" <<'EOF'
import json, random, sys
tmp = sys.argv[1]
random.seed(5)
imgs = ["rgb_37x23.png", "rgb_61x113.png", "grey_45x30.png", "palette_50x31.gif", "rgb_300x7.png",
        "s422_48x32.jpg"]
words = ["cat", "dog", "red", "blue", "tree", "два", "猫", "a \"quoted\" word", "tab\there", "line\nbreak"]
def records(n, k, tag):
    out = []
    for i in range(n):
        out.append({"prompt": f"{tag} question {i}: what is in the picture?",
                    "img_path": "img/" + imgs[i % len(imgs)],
                    "responses": [" ".join(random.choice(words) for _ in range(random.randint(1, 12)))
                                  + f" #{i}.{j}" for j in range(k)]})
    return out
small = records(12, 3, "small")
small.insert(4, {"prompt": "gone", "img_path": "img/missing.png", "responses": ["x", "y"]})
small.insert(8, {"prompt": "broken", "img_path": "img/corrupt.png", "responses": ["x", "y"]})
with open(f"{tmp}/small.jsonl", "w") as f:
    for r in small: f.write(json.dumps(r, ensure_ascii=False) + "\n")
with open(f"{tmp}/big.jsonl", "w") as f:
    for r in records(100, 3, "big"): f.write(json.dumps(r, ensure_ascii=False) + "\n")
EOF

# ---- a first run: lines, fields, failures reported and counted
"$MMRM" score --model "$tmp/model" --input "$tmp/small.jsonl" --output "$tmp/out.jsonl" \
    --batch-size 4 2>"$tmp/err1"
grep -q "small.jsonl:5: missing image" "$tmp/err1" || { cat "$tmp/err1"; echo "missing image not reported"; exit 1; }
grep -q "small.jsonl:9: .*corrupt.png" "$tmp/err1" || { cat "$tmp/err1"; echo "corrupt image not reported"; exit 1; }
grep -q "not loaded: 1 records: missing image" "$tmp/err1" || { cat "$tmp/err1"; echo "missing image not counted"; exit 1; }
grep -q "failed: 2 responses of 1 records: image unreadable" "$tmp/err1" || { cat "$tmp/err1"; echo "corrupt image not counted"; exit 1; }
grep -q "throughput: 36 responses" "$tmp/err1" || { cat "$tmp/err1"; echo "no throughput line"; exit 1; }
python3 - "$tmp/small.jsonl" "$tmp/out.jsonl" <<'EOF'
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
want = [(r["prompt"], r["img_path"], x) for r in recs
        if "missing" not in r["img_path"] and "corrupt" not in r["img_path"] for x in r["responses"]]
lines = [json.loads(l) for l in open(sys.argv[2])]
assert len(lines) == len(want) == 36, (len(lines), len(want))
for l in lines:
    assert set(l) == {"prompt", "img_path", "response", "score"}, l.keys()
    assert isinstance(l["score"], float) and math.isfinite(l["score"]), l
got = sorted((l["prompt"], l["img_path"], l["response"]) for l in lines)
assert got == sorted(want), "the output's triples differ from the input's"
assert len({l["score"] for l in lines}) > 30, "scores barely differ"
EOF

# ---- a rerun scores nothing and changes nothing
cp "$tmp/out.jsonl" "$tmp/out.before"
"$MMRM" score --model "$tmp/model" --input "$tmp/small.jsonl" --output "$tmp/out.jsonl" \
    --batch-size 4 2>"$tmp/err2"
cmp "$tmp/out.jsonl" "$tmp/out.before" || { echo "the rerun changed the output"; exit 1; }
grep -q "0 responses scored now, 36 already in" "$tmp/err2" || { cat "$tmp/err2"; echo "rerun rescored"; exit 1; }

# ---- --grouped: one line per scorable record, the same scores in response order
"$MMRM" score --model "$tmp/model" --input "$tmp/small.jsonl" --output "$tmp/grouped.jsonl" \
    --grouped --batch-size 3 2>/dev/null
python3 - "$tmp/small.jsonl" "$tmp/out.jsonl" "$tmp/grouped.jsonl" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
flat = {(l["prompt"], l["img_path"], l["response"]): l["score"] for l in map(json.loads, open(sys.argv[2]))}
grouped = [json.loads(l) for l in open(sys.argv[3])]
good = [r for r in recs if "missing" not in r["img_path"] and "corrupt" not in r["img_path"]]
assert len(grouped) == len(good) == 12, len(grouped)
for g, r in zip(grouped, good):
    assert set(g) == {"prompt", "img_path", "responses", "scores"}, g.keys()
    assert (g["prompt"], g["img_path"], g["responses"]) == (r["prompt"], r["img_path"], r["responses"])
    for x, s in zip(g["responses"], g["scores"]):
        ref = flat[(g["prompt"], g["img_path"], x)]
        assert abs(s - ref) <= 1e-5 * (1 + abs(ref)), (s, ref)
EOF
set +e
"$MMRM" score --model "$tmp/model" --input "$tmp/small.jsonl" --output "$tmp/out.jsonl" --grouped \
    2>"$tmp/err3"
rc=$?
set -e
[ "$rc" = 1 ] && grep -q "per-response" "$tmp/err3" || { cat "$tmp/err3"; echo "--grouped on a per-response output: exit $rc"; exit 1; }

# ---- kill -9 mid-run, a torn line, rerun: every response exactly once, the same scores
"$MMRM" score --model "$tmp/model" --input "$tmp/big.jsonl" --output "$tmp/ref.jsonl" \
    --batch-size 8 2>/dev/null
"$MMRM" score --model "$tmp/model" --input "$tmp/big.jsonl" --output "$tmp/killed.jsonl" \
    --batch-size 2 2>/dev/null &
pid=$!
for _ in $(seq 1 600); do
    n=$( (wc -l <"$tmp/killed.jsonl") 2>/dev/null || echo 0)
    [ "$n" -ge 30 ] && break
    sleep 0.02
done
set +e # a second run on the same output is refused while the first one writes it
"$MMRM" score --model "$tmp/model" --input "$tmp/big.jsonl" --output "$tmp/killed.jsonl" 2>"$tmp/err6"
rc=$?
set -e
kill -9 "$pid" || { echo "the run ended before it could be killed"; exit 1; }
[ "$rc" = 1 ] && grep -q "being written by another process" "$tmp/err6" || { cat "$tmp/err6"; echo "a concurrent run was not refused (exit $rc)"; exit 1; }
wait "$pid" 2>/dev/null || true
pid=
n=$(wc -l <"$tmp/killed.jsonl")
[ "$n" -ge 30 ] && [ "$n" -lt 300 ] || { echo "killed with $n of 300 lines: not mid-run"; exit 1; }
printf '{"prompt": "big question 7: what is in the pic' >>"$tmp/killed.jsonl" # a crash mid-write
"$MMRM" score --model "$tmp/model" --input "$tmp/big.jsonl" --output "$tmp/killed.jsonl" \
    --batch-size 2 2>"$tmp/err4"
grep -q "removed a torn last line" "$tmp/err4" || { cat "$tmp/err4"; echo "torn line not reported"; exit 1; }
python3 - "$tmp/ref.jsonl" "$tmp/killed.jsonl" "$n" <<'EOF'
import json, sys
from collections import Counter
ref = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
key = lambda l: (l["prompt"], l["img_path"], l["response"])
assert len(ref) == 300, len(ref)
c = Counter(map(key, got))
dup = [k for k, v in c.items() if v > 1]
assert not dup, f"{len(dup)} responses twice, e.g. {dup[0]}"
assert set(c) == set(map(key, ref)), f"{len(set(map(key, ref)) - set(c))} responses missing"
r = {key(l): l["score"] for l in ref}
for l in got:
    assert abs(l["score"] - r[key(l)]) <= 1e-5 * (1 + abs(r[key(l)])), (l, r[key(l)])
print(f"killed at {sys.argv[3]} of 300 lines; resumed to 300, each once, scores equal")
EOF

# ---- a corrupt line inside the output (not a torn end) stops the run and keeps the file
sed -i '3s/.*/not json/' "$tmp/out.jsonl"
cp "$tmp/out.jsonl" "$tmp/out.before"
set +e
"$MMRM" score --model "$tmp/model" --input "$tmp/small.jsonl" --output "$tmp/out.jsonl" 2>"$tmp/err5"
rc=$?
set -e
[ "$rc" = 1 ] && grep -q "out.jsonl:3: not a line of a score output" "$tmp/err5" || { cat "$tmp/err5"; echo "corrupt middle line: exit $rc"; exit 1; }
cmp "$tmp/out.jsonl" "$tmp/out.before"
# ---- --max-tokens: forwards cut by the rows' tokens as well as by --batch-size; same scores
tp() { grep -o 'throughput: .*' "$1"; }
counts() { tp "$1" | sed -E 's/.*\| ([0-9]+) forwards of .* computed for ([0-9]+) in the rows.*/\1 \2/'; }
"$MMRM" score --model "$tmp/model" --input "$tmp/big.jsonl" --output "$tmp/mt0.jsonl" \
    --batch-size 16 --no-dynamic 2>"$tmp/mt0.err"
read -r f0 rows0 < <(counts "$tmp/mt0.err")
m=$(( rows0 * 3 / 300 ))  # three mean rows (one tile each: rows are within 2x of the mean)
"$MMRM" score --model "$tmp/model" --input "$tmp/big.jsonl" --output "$tmp/mt1.jsonl" \
    --batch-size 16 --no-dynamic --max-tokens "$m" 2>"$tmp/mt1.err"
read -r f1 rows1 < <(counts "$tmp/mt1.err")
[ "$rows1" = "$rows0" ] && [ "$f1" -gt "$f0" ] && [ $(( rows1 / f1 )) -le "$m" ] &&
    [ "$f1" -ge $(( (rows1 + m - 1) / m )) ] ||
    { tp "$tmp/mt0.err"; tp "$tmp/mt1.err"; echo "--max-tokens $m: $f1 forwards for $rows1 tokens (unlimited: $f0 for $rows0)"; exit 1; }
python3 - "$tmp/mt0.jsonl" "$tmp/mt1.jsonl" <<'EOF'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
assert len(a) == len(b) == 300, (len(a), len(b))
for x, y in zip(a, b):
    assert abs(x["score"] - y["score"]) <= 1e-5 * (1 + abs(x["score"])), (x, y)
EOF
rc=0
"$MMRM" score --model "$tmp/model" --input "$tmp/big.jsonl" --output "$tmp/mtx.jsonl" --max-tokens 0 2>"$tmp/mtx.err" || rc=$?
[ "$rc" = 2 ] && grep -q -- "--max-tokens" "$tmp/mtx.err" && [ ! -e "$tmp/mtx.jsonl" ] ||
    { cat "$tmp/mtx.err"; echo "--max-tokens 0: exit $rc"; exit 1; }
echo "--max-tokens $m: $f1 forwards (unlimited: $f0), $rows1 tokens, scores equal"
"$MMRM" score --help | grep -q "usage: mmrm score"
