#!/usr/bin/env bash
# bench/grounding.sh - the demo's grounding phase alone, over several seeds: for each seed the
# benchmark (`mmrm synth --seed S`) and the grounding set (seed S + 1000, cue uncorrelated, no
# label noise) exactly as bench/demo.sh writes them, the grounding run of
# configs/demo_pretrain.ini (+ PRETRAIN_EXTRA), then `mmrm eval` of its checkpoint on the
# benchmark's test_id and test_ood (grounded: both >= 0.85) and the colour / shape accuracy on
# test_oracle. One line per seed with the run's CPU seconds (user + system, /usr/bin/time):
# for searching grounding recipes without the fine-tunings.
# Usage: bench/grounding.sh [SEED ...] (default 1 2 3); env MMRM, OUT (build/grounding),
# GROUND_PAIRS (demo.sh's default), PRETRAIN_EXTRA (key=value overrides of the grounding run),
# SYNTH_ARGS (both sets, as demo.sh), JOBS=N (N seeds at once, one OpenMP thread each).
set -euo pipefail
case ${1:-} in -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
mmrm=${MMRM:-build/mmrm}
base=${OUT:-build/grounding}
# demo.sh's default, read from its gpairs= line (the single quotes are sed's)
# shellcheck disable=SC2016
gpairs=${GROUND_PAIRS:-$(sed -n 's/^gpairs=\${GROUND_PAIRS:-\([0-9]*\)}$/\1/p' bench/demo.sh)}
[ -n "$gpairs" ] || { echo "bench/grounding.sh: no default GROUND_PAIRS in bench/demo.sh; set GROUND_PAIRS" >&2; exit 1; }
pextra=${PRETRAIN_EXTRA:-}
jobs=${JOBS:-1}
[ -x /usr/bin/time ] || { echo "bench/grounding.sh: needs /usr/bin/time (Debian package time)" >&2; exit 1; }
mkdir -p "$base"
field() { grep -o "\"$1\":[^,}]*" | head -n 1 | cut -d: -f2; }
cat_acc() { grep -o "\"$1\":{[^}]*" | grep -o '"accuracy":[^,}]*' | head -n 1 | cut -d: -f2; }
one_seed() {
    local s=$1 o="$base/seed$1"
    mkdir -p "$o"
    rm -f "$o/row.txt"
    # shellcheck disable=SC2086
    "$mmrm" synth --out "$o/data" --pairs 2000 --seed "$s" ${SYNTH_ARGS:-} > /dev/null
    # shellcheck disable=SC2086
    "$mmrm" synth --out "$o/pretrain_data" --pairs "$gpairs" --seed $((s + 1000)) \
        --cue-agreement 0.5 --label-noise 0 ${SYNTH_ARGS:-} > /dev/null
    # shellcheck disable=SC2086
    /usr/bin/time -f '%U %S' -o "$o/cpu.txt" "$mmrm" train configs/demo_pretrain.ini seed="$s" \
        output_dir="$o/pretrain" tokenizer_path="$o/pretrain_data" \
        dataset_path="$o/pretrain_data/train.jsonl" \
        eval_dataset_path="$o/pretrain_data/test_oracle.jsonl" $pextra 2> "$o/train.log" ||
        { echo "seed $s: grounding failed:"; tail -n 20 "$o/train.log"; return 1; }
    local split acc=()
    for split in test_id test_ood test_oracle; do
        "$mmrm" eval --model "$o/pretrain/checkpoint-last" --data "$o/data/$split.jsonl" --json \
            > "$o/eval_$split.json" 2>> "$o/eval.log"
        acc+=("$(field accuracy < "$o/eval_$split.json")")
    done
    awk -v s="$s" -v a="${acc[0]}" -v b="${acc[1]}" -v c="$(cat_acc colour < "$o/eval_test_oracle.json")" \
        -v d="$(cat_acc shape < "$o/eval_test_oracle.json")" -v u="$(cat "$o/cpu.txt")" \
        'BEGIN { split(u, t, " "); printf "%4d %8.3f %8.3f %8.3f %8.3f %8.1f %s\n", s, a, b, c, d,
                 t[1] + t[2], (a >= 0.85 && b >= 0.85) ? "yes" : "no" }' > "$o/row.txt"
}
if [ "$jobs" -le 1 ]; then
    for s in "${seeds[@]}"; do one_seed "$s" || true; done
else
    running=0
    for s in "${seeds[@]}"; do
        (OMP_NUM_THREADS=1 one_seed "$s" || true) &
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
    done
    wait
fi
echo "grounding: $gpairs pairs, configs/demo_pretrain.ini $pextra"
printf '%4s %8s %8s %8s %8s %8s %s\n' seed i.i.d. o.o.d. colour shape "CPU s" grounded
n=0
for s in "${seeds[@]}"; do
    [ -f "$base/seed$s/row.txt" ] || { printf '%4d failed (see %s)\n' "$s" "$base/seed$s"; continue; }
    cat "$base/seed$s/row.txt"
    if grep -q ' yes$' "$base/seed$s/row.txt"; then n=$((n + 1)); fi
done
echo "grounded (i.i.d. and o.o.d. >= 0.85): $n of ${#seeds[@]}"
