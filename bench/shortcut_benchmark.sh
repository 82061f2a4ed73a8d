#!/usr/bin/env bash
# bench/shortcut_benchmark.sh - the synthetic shortcut benchmark over several seeds: for each
# seed, bench/demo.sh (standard vs shortcut-aware: i.i.d. and o.o.d. accuracy, SFD) and an
# oracle run (standard objective, cue uncorrelated in training: P_TRAIN = 0.5), which shows
# whether the task is learnable from the image at this scale. Prints per-seed rows and the
# mean and standard deviation of each column.
# Usage: bench/shortcut_benchmark.sh [SEED ...] (default 1 2 3); env MMRM, OUT, PAIRS, EXTRA as
# demo.sh (PAIRS and EXTRA apply to the oracle run too).
set -euo pipefail
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
mmrm=${MMRM:-build/mmrm}
base=${OUT:-build/shortcut_benchmark}
pairs=${PAIRS:-2000}
extra=${EXTRA:-}
rows="$base/rows.txt"
mkdir -p "$base"
: > "$rows"
field() { grep -o "\"$1\":[^,}]*" | head -n 1 | cut -d: -f2; }
for s in "${seeds[@]}"; do
    # shellcheck disable=SC2086
    OUT="$base/seed$s" MMRM="$mmrm" PAIRS="$pairs" EXTRA="$extra" bash bench/demo.sh "$s" | tee "$base/seed$s.txt"
    awk -v s="$s" '/^standard|^shortcut-aware/ { print s, $1, $2, $3, $4 }' "$base/seed$s.txt" >> "$rows"
    # oracle: the same recipe on data whose cue carries no information in training
    d="$base/seed$s/oracle_data"
    "$mmrm" synth --out "$d" --seed "$s" --pairs "$pairs" --cue-agreement 0.5 >/dev/null
    "$mmrm" train configs/demo_standard.ini seed="$s" dataset_path="$d/train.jsonl" \
        eval_dataset_path="$d/test_id.jsonl" output_dir="$base/seed$s/oracle" $extra 2> "$base/seed$s/train_oracle.log"
    ood=$("$mmrm" eval --model "$base/seed$s/oracle/checkpoint-last" --data "$base/seed$s/data/test_ood.jsonl" --json | field accuracy)
    iid=$("$mmrm" eval --model "$base/seed$s/oracle/checkpoint-last" --data "$base/seed$s/data/test_id.jsonl" --json | field accuracy)
    echo "$s oracle $iid $ood nan" >> "$rows"
done
echo
echo "per seed (seed, algorithm, i.i.d. acc, o.o.d. acc, SFD pp):"
cat "$rows"
echo
printf '%-16s %18s %18s %16s\n' algorithm "i.i.d. (mean±sd)" "o.o.d. (mean±sd)" "SFD pp (mean±sd)"
for a in standard shortcut-aware oracle; do
    awk -v a="$a" '$2 == a { n++; for (k = 3; k <= 5; k++) if ($k != "nan") { c[k]++; x[k] += $k; y[k] += $k * $k } }
        END { printf "%-16s", a
              for (k = 3; k <= 5; k++) { if (!c[k]) { printf " %18s", "n/a"; continue }
                  m = x[k] / c[k]; v = y[k] / c[k] - m * m; if (v < 0) v = 0
                  printf "    %6.3f ± %5.3f", m, sqrt(v) }
              printf "   (%d seeds)\n", n }' "$rows"
done
