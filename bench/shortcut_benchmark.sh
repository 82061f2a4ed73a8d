#!/usr/bin/env bash
# bench/shortcut_benchmark.sh - the synthetic shortcut benchmark over several seeds: for each
# seed, bench/demo.sh (the grounding run = the oracle, cue uncorrelated in training: P_TRAIN =
# 0.5, which shows that the task is learnable from the image; then standard vs shortcut-aware
# fine-tuned from it: i.i.d. and o.o.d. accuracy, SFD). Prints per-seed rows and the mean and
# standard deviation of each column.
# Usage: bench/shortcut_benchmark.sh [SEED ...] (default 1 2 3); env MMRM, OUT, PAIRS,
# GROUND_PAIRS, EXTRA, PRETRAIN_EXTRA as demo.sh; JOBS=N runs N seeds at once (one OpenMP
# thread each; the default 1 runs them one after another with all threads).
set -euo pipefail
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
mmrm=${MMRM:-build/mmrm}
base=${OUT:-build/shortcut_benchmark}
pairs=${PAIRS:-2000}
extra=${EXTRA:-}
pextra=${PRETRAIN_EXTRA:-}
rows="$base/rows.txt"
mkdir -p "$base"
: > "$rows"
field() { grep -o "\"$1\":[^,}]*" | head -n 1 | cut -d: -f2; }
jobs=${JOBS:-1}
one_seed() {
    # shellcheck disable=SC2086
    OUT="$base/seed$1" MMRM="$mmrm" PAIRS="$pairs" EXTRA="$extra" PRETRAIN_EXTRA="$pextra" \
        bash bench/demo.sh "$1" > "$base/seed$1.txt" 2>&1 || { echo "seed $1 failed:"; tail -n 20 "$base/seed$1.txt"; }
}
if [ "$jobs" -le 1 ]; then
    for s in "${seeds[@]}"; do one_seed "$s"; cat "$base/seed$s.txt"; done
else # JOBS seeds at a time, one OpenMP thread each
    running=0
    for s in "${seeds[@]}"; do
        OMP_NUM_THREADS=1 one_seed "$s" &
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
    done
    wait
    for s in "${seeds[@]}"; do cat "$base/seed$s.txt"; done
fi
for s in "${seeds[@]}"; do
    awk -v s="$s" '/^oracle \(P_TRAIN/ { print s, "oracle", $5, $6, "nan" }
        /^standard|^shortcut-aware/ { print s, $1, $2, $3, $4 }' "$base/seed$s.txt" >> "$rows"
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
