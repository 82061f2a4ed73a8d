#!/usr/bin/env bash
# Crash campaign, scoring: `mmrm score` killed with SIGKILL at random moments, up to 3 times
# a trial, each time rerun with the same command. After every kill, each complete line of the
# output is one of the uninterrupted run's lines and none is there twice (a torn last line
# is allowed: the rerun repairs it); at the end the output holds every response exactly once,
# with the uninterrupted run's score.
# TRIALS=N trials (default 1: the short form `make test` runs); RANKS=2 runs under mpirun with
# 2 ranks (crash_score_mpi.sh: parts per rank, merged by rank 0 or by the rerun).
set -euo pipefail
RANKS=${RANKS:-1}
TRIALS=${TRIALS:-1}
if [ "$RANKS" -gt 1 ]; then
    command -v mpirun >/dev/null || { echo "skipped: no mpirun"; exit 77; }
    grep -q "multi-process: mpi" <<<"$("$MMRM" version)" || { echo "skipped: this mmrm was built without MPI"; exit 77; }
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
MMRM=$(cd "$(dirname "$MMRM")" && pwd)/$(basename "$MMRM")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CRASH_LOG=$tmp/run.log
source "$root/tests/crash_lib.sh"
cd "$root"

"$MMRM" synth --out "$tmp/data" --pairs 16 --seed 5 >/dev/null
"$MMRM" init --config configs/model/tiny.json --out "$tmp/model" --seed 2 >/dev/null
# 24 copies of the 8 records, each copy's prompts made distinct: 384 responses
for i in $(seq 1 24); do sed "s/\"prompt\": *\"/&#$i /" "$tmp/data/score_input.jsonl"; done > "$tmp/data/in.jsonl"
launch=()
[ "$RANKS" -gt 1 ] && launch=(mpirun --allow-run-as-root --oversubscribe -np "$RANKS")
score=("$MMRM" score --model "$tmp/model" --input "$tmp/data/in.jsonl" --batch-size 2)

t0=$(now_ms)
"${launch[@]}" "${score[@]}" --output "$tmp/ref.jsonl" 2>"$tmp/ref.log" || { cat "$tmp/ref.log"; exit 1; }
span=$(( $(now_ms) - t0 ))
sort "$tmp/ref.jsonl" > "$tmp/ref.sorted"
n=$(wc -l < "$tmp/ref.sorted")
[ "$n" = 384 ] && [ -z "$(uniq -d "$tmp/ref.sorted")" ] || { echo "the uninterrupted run wrote $n lines (384 distinct expected)"; exit 1; }

# check_partial OUT: complete lines are the reference's, none twice
check_partial() {
    [ -e "$1" ] || return 0
    local complete
    complete=$(sed '$!b; /}$/!d' "$1" | sort)   # the last line only if it looks complete
    [ -z "$complete" ] && return 0
    [ -z "$(uniq -d <<<"$complete")" ] || { echo "duplicated lines in $1"; uniq -d <<<"$complete" | head -3; return 1; }
    local extra
    extra=$(comm -23 <(echo "$complete") "$tmp/ref.sorted")
    # a last line that ends in } but is torn inside a value is cut by the rerun as well
    if [ -n "$extra" ] && [ "$extra" != "$(tail -n 1 "$1")" ]; then
        echo "lines in $1 that the uninterrupted run did not write:"; head -3 <<<"$extra"; return 1
    fi
}

kills=0; unkilled=0; torn=0; lines_at_kill=0
for trial in $(seq 1 "$TRIALS"); do
    out=$tmp/out.jsonl; rm -rf "$out" "$out.parts"
    for attempt in 1 2 3; do
        ms=$(rand_ms $((span * 3 / 4)))
        if run_killed "$ms" "${launch[@]}" "${score[@]}" --output "$out"; then
            kills=$((kills + 1))
            [ -s "$out" ] && [ -n "$(tail -c 1 "$out")" ] && torn=$((torn + 1))
            [ -e "$out" ] && lines_at_kill=$((lines_at_kill + $(wc -l < "$out")))
            check_partial "$out" || { echo "trial $trial: after a kill at $ms ms"; exit 1; }
        else
            [ "$attempt" = 1 ] && unkilled=$((unkilled + 1))
            break
        fi
    done
    "${launch[@]}" "${score[@]}" --output "$out" >"$tmp/rerun.log" 2>&1 \
        || { echo "trial $trial: the rerun failed"; cat "$tmp/rerun.log"; exit 1; }
    sort "$out" | cmp -s - "$tmp/ref.sorted" || {
        echo "trial $trial: the output is not the uninterrupted run's lines, each once:"
        diff <(sort "$out") "$tmp/ref.sorted" | head -5; exit 1; }
done
echo "score, $RANKS rank(s): $TRIALS trials ($unkilled finished before the first kill), $kills kills" \
     "($torn left a torn last line, $lines_at_kill lines already in the output in all), every output complete and exact"
