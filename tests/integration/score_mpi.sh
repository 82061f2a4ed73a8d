#!/usr/bin/env bash
# Multi-rank mmrm score on a tiny random model: 2 ranks write the byte-identical output of 1
# rank (per response and --grouped), with both ranks taking chunks; a rank slowed to a fifteenth of
# its speed takes fewer chunks (work is handed out on request, not split in advance); a
# 2-rank job frozen mid-run refuses a second job on the same output, and once killed (with a
# torn line in a part file) a 2-rank rerun completes the output: every response once, in
# input order, scores as an uninterrupted run's; a killed job resumed from a partial output
# and caught mid-merge is completed by a 1-rank rerun the same way; a finished merge's leftover
# folder is removed; a job whose ranks cannot load the model ends with the message, not a hang.
# The JSON is checked with python3's json module (skipped without python3 or mpirun).
set -euo pipefail
command -v mpirun >/dev/null || { echo "skipped: no mpirun"; exit 77; }
grep -q "multi-process: mpi" <<<"$("$MMRM" version)" || { echo "skipped: this mmrm was built without MPI"; exit 77; }
command -v python3 >/dev/null || { echo "skipped: python3 not installed"; exit 77; }
tmp=$(mktemp -d)
job= # the session (= pid of mpirun, started by setsid) of a background job
stop_job() { # SIGKILL to every process of the job's session, then wait until they are gone
    [ -n "$job" ] || return 0
    for _ in $(seq 1 200); do
        pids=$(ps -o pid= -s "$job" || true)
        [ -z "$pids" ] && break
        kill -9 $pids 2>/dev/null || true
        sleep 0.05
    done
    wait "$job" 2>/dev/null || true
    job=
}
trap 'stop_job; rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} # tiny forwards: spinning threads only slow them
mpi="mpirun --allow-run-as-root --oversubscribe -np 2"

"$MMRM" init --config configs/model/tiny.json --out "$tmp/model" >/dev/null 2>&1
"$MMRM" synth --out "$tmp/data" --pairs 40 --seed 2 >/dev/null 2>&1
# synth's 8 records repeated with distinct prompts: in.jsonl 160 records, small.jsonl 32
for i in $(seq 0 19); do
    sed "s/\"prompt\": *\"/&[copy $i] /" "$tmp/data/score_input.jsonl"
done >"$tmp/data/in.jsonl"
head -n 32 "$tmp/data/in.jsonl" >"$tmp/data/small.jsonl"
in="$tmp/data/in.jsonl"
opts=(--model "$tmp/model" --no-dynamic --batch-size 2)

# check.py IN REF GOT [grouped]: GOT holds every response of IN exactly once (grouped: every
# record), in IN's order, with REF's scores within 1e-5 relative
cat >"$tmp/check.py" <<'EOF'
import json, sys
from collections import Counter
inp, ref, got = ([json.loads(l) for l in open(p)] for p in sys.argv[1:4])
grouped = len(sys.argv) > 4
if grouped:
    want = [(r["prompt"], r["img_path"], tuple(r["responses"])) for r in inp]
    key = lambda l: (l["prompt"], l["img_path"], tuple(l["responses"]))
else:
    want = [(r["prompt"], r["img_path"], x) for r in inp for x in r["responses"]]
    key = lambda l: (l["prompt"], l["img_path"], l["response"])
assert len(set(want)) == len(want), "the input repeats a response: keys are not unique"
c = Counter(map(key, got))
dup = [k for k, v in c.items() if v > 1]
assert not dup, f"{len(dup)} responses twice, e.g. {dup[0]}"
assert set(c) == set(want), f"{len(set(want) - set(c))} missing, {len(set(c) - set(want))} foreign"
assert [key(l) for l in got] == want, "the lines are not in input order"
scores = lambda l: l["scores"] if grouped else [l["score"]]
r = {key(l): scores(l) for l in ref}
for l in got:
    for s, t in zip(scores(l), r[key(l)]):
        assert abs(s - t) <= 1e-5 * (1 + abs(t)), (l, t)
EOF
check() { python3 "$tmp/check.py" "$@" || { echo "check failed: $*"; exit 1; }; }
part_lines() { cat "$1".parts/rank-* 2>/dev/null | wc -l || true; }
chunks() { sed -n 's/.*chunks scored by ranks 0..1: //p' "$1"; }

# ---- 2 ranks = 1 rank, byte for byte, per response and --grouped
"$MMRM" score "${opts[@]}" --input "$in" --output "$tmp/one.jsonl" 2>"$tmp/log1" || { cat "$tmp/log1"; exit 1; }
check "$in" "$tmp/one.jsonl" "$tmp/one.jsonl"
$mpi "$MMRM" score "${opts[@]}" --input "$in" --output "$tmp/two.jsonl" 2>"$tmp/log2" || { cat "$tmp/log2"; exit 1; }
cmp "$tmp/one.jsonl" "$tmp/two.jsonl" || { echo "2 ranks wrote another output than 1"; exit 1; }
[ ! -e "$tmp/two.jsonl.parts" ] || { echo "the part files were not removed"; exit 1; }
read -r a b < <(chunks "$tmp/log2" | tr ',' ' ') || true
[ "${a:-0}" -gt 0 ] && [ "${b:-0}" -gt 0 ] || { cat "$tmp/log2"; echo "a rank took no chunk"; exit 1; }
grep -q "320 responses scored now" "$tmp/log2" || { cat "$tmp/log2"; echo "counts not summed"; exit 1; }
"$MMRM" score --model "$tmp/model" --no-dynamic --input "$tmp/data/small.jsonl" --grouped \
    --output "$tmp/g1.jsonl" 2>/dev/null
$mpi "$MMRM" score --model "$tmp/model" --no-dynamic --input "$tmp/data/small.jsonl" --grouped \
    --output "$tmp/g2.jsonl" 2>/dev/null
check "$tmp/data/small.jsonl" "$tmp/g1.jsonl" "$tmp/g1.jsonl" grouped
cmp "$tmp/g1.jsonl" "$tmp/g2.jsonl" || { echo "--grouped: 2 ranks wrote another output than 1"; exit 1; }

# ---- a slow rank takes fewer chunks: rank 1 runs a fifteenth of the time (SIGSTOP/SIGCONT),
# over the 160-chunk input (small.jsonl's 32 chunks were over in a few stop/run cycles, so the
# split depended on where the first windows fell: 21 vs 11 chunks once in CI)
cat >"$tmp/slow.sh" <<'EOF'
"$@" &
p=$!
while kill -0 "$p" 2>/dev/null; do
    sleep 0.02; kill -STOP "$p" 2>/dev/null; sleep 0.28; kill -CONT "$p" 2>/dev/null
done
wait "$p"
EOF
mpirun --allow-run-as-root --oversubscribe -np 1 "$MMRM" score "${opts[@]}" \
    --input "$in" --output "$tmp/slow.jsonl" : -np 1 bash "$tmp/slow.sh" \
    "$MMRM" score "${opts[@]}" --input "$in" --output "$tmp/slow.jsonl" \
    2>"$tmp/log3" || { cat "$tmp/log3"; exit 1; }
read -r a b < <(chunks "$tmp/log3" | tr ',' ' ') || true
[ "${a:-0}" -gt $((2 * ${b:-0})) ] || { echo "chunks by rank: $a, $b: the slow rank was not left behind"; exit 1; }
check "$in" "$tmp/one.jsonl" "$tmp/slow.jsonl"
echo "chunks taken by a fast and a slowed rank: $a, $b"

# ---- a job frozen mid-run refuses a second job; killed, plus a torn part line, rerun on 2 ranks
setsid $mpi "$MMRM" score "${opts[@]}" --input "$in" --output "$tmp/k.jsonl" 2>/dev/null &
job=$!
disown "$job" # no "Killed" notice from bash when it is ended
for _ in $(seq 1 600); do
    [ "$(part_lines "$tmp/k.jsonl")" -ge 40 ] && break
    sleep 0.02
done
kill -STOP $(ps -o pid= -s "$job")
set +e
timeout 120 $mpi "$MMRM" score "${opts[@]}" --input "$in" --output "$tmp/k.jsonl" >"$tmp/log4" 2>&1
rc=$?
set -e
stop_job
[ "$rc" != 0 ] && [ "$rc" != 124 ] && grep -q "being written by another process" "$tmp/log4" ||
    { cat "$tmp/log4"; echo "a second job on the same output: exit $rc"; exit 1; }
n=$(part_lines "$tmp/k.jsonl")
[ "$n" -ge 40 ] && [ "$n" -lt 320 ] || { echo "killed with $n of 320 lines: not mid-run"; exit 1; }
printf '17 0 {"prompt": "[copy 2] What' >>"$tmp/k.jsonl.parts/rank-1" # a crash mid-write
$mpi "$MMRM" score "${opts[@]}" --input "$in" --output "$tmp/k.jsonl" 2>"$tmp/log5" || { cat "$tmp/log5"; exit 1; }
grep -q "rank-1:.*removed a torn last line" "$tmp/log5" || { cat "$tmp/log5"; echo "torn part line not reported"; exit 1; }
grep -q "part files of an interrupted run hold $n lines" "$tmp/log5" || { cat "$tmp/log5"; echo "leftover parts not counted"; exit 1; }
check "$in" "$tmp/one.jsonl" "$tmp/k.jsonl"
[ ! -e "$tmp/k.jsonl.parts" ] || { echo "the part files were not removed"; exit 1; }
echo "killed at $n of 320 lines; resumed on 2 ranks to 320, each once, in order"

# ---- resumed from 50 lines, killed, then killed again mid-merge: a 1-rank rerun completes it
head -n 50 "$tmp/one.jsonl" >"$tmp/m.jsonl"
setsid $mpi "$MMRM" score "${opts[@]}" --input "$in" --output "$tmp/m.jsonl" 2>/dev/null &
job=$!
disown "$job" # no "Killed" notice from bash when it is ended
for _ in $(seq 1 600); do
    [ "$(part_lines "$tmp/m.jsonl")" -ge 40 ] && break
    sleep 0.02
done
stop_job
n=$(part_lines "$tmp/m.jsonl")
[ "$n" -ge 40 ] && [ "$n" -lt 270 ] || { echo "killed with $n of 270 lines: not mid-run"; exit 1; }
# what a merge leaves when killed while appending: OUT's size before it in base, the folder
# renamed, some part lines (untagged) and a torn one appended
python3 - "$tmp/m.jsonl" <<'EOF'
import os, sys
out = sys.argv[1]
parts = [os.path.join(out + ".parts", f) for f in sorted(os.listdir(out + ".parts"))]
lines = [l.split(" ", 2)[2] for p in parts for l in open(p)]
with open(out + ".parts/base", "w") as f: f.write(f"{os.path.getsize(out)}\n")
os.rename(out + ".parts", out + ".parts.merging")
with open(out, "a") as f: f.write("".join(lines[: len(lines) // 2]) + lines[-1][:30])
EOF
"$MMRM" score "${opts[@]}" --input "$in" --output "$tmp/m.jsonl" 2>"$tmp/log6" || { cat "$tmp/log6"; exit 1; }
grep -q "a merge of part files was interrupted" "$tmp/log6" || { cat "$tmp/log6"; echo "interrupted merge not undone"; exit 1; }
check "$in" "$tmp/one.jsonl" "$tmp/m.jsonl"
[ -z "$(ls -d "$tmp"/m.jsonl.parts* 2>/dev/null)" ] || { echo "part folders left"; exit 1; }
echo "resumed at 50 lines, killed at $((50 + n)), merge cut short: completed on 1 rank, each once, in order"

# ---- the folder of a merge that completed before its removal is removed; nothing rescored
mkdir "$tmp/m.jsonl.parts.merged" && echo '3 0 {}' >"$tmp/m.jsonl.parts.merged/rank-0"
cp "$tmp/m.jsonl" "$tmp/m.before"
$mpi "$MMRM" score "${opts[@]}" --input "$in" --output "$tmp/m.jsonl" 2>"$tmp/log7" || { cat "$tmp/log7"; exit 1; }
grep -q "0 responses scored now, 320 already in" "$tmp/log7" || { cat "$tmp/log7"; echo "rerun rescored"; exit 1; }
cmp "$tmp/m.jsonl" "$tmp/m.before"
[ -z "$(ls -d "$tmp"/m.jsonl.parts* 2>/dev/null)" ] || { echo "the merged folder was left"; exit 1; }

# ---- ranks that fail (no model there) end the job with the message instead of hanging
set +e
timeout 120 $mpi "$MMRM" score --model "$tmp/nomodel" --input "$in" --output "$tmp/f.jsonl" \
    >"$tmp/log8" 2>&1
rc=$?
set -e
[ "$rc" != 0 ] && [ "$rc" != 124 ] && grep -q "nomodel" "$tmp/log8" ||
    { cat "$tmp/log8"; echo "failing job: exit $rc"; exit 1; }
