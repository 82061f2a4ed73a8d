#!/bin/bash
# cpu_vs_torch.sh - mmrm's CPU training against PyTorch eager on the CPU (bench/torch_cpu_baseline.py),
# side by side: the tiny and small models (configs/model/), 1 and 2 threads, the standard and the
# shortcut-aware (robust) objective, REPS interleaved runs each (mmrm, torch, mmrm, torch, ...);
# prints the median pairs/s of each and the ratio. mmrm's number is its training log's pairs/s over
# all steps (the step line; no evaluation or start-up), torch's is over its steps after 2 warm-up steps. Torch gets mmrm's mean tokens per row (from
# mmrm's tokens/s over pairs/s) with no padding. Not a test: nothing is asserted.
#
#   bash bench/cpu_vs_torch.sh [--help]
# Environment: MMRM (build/mmrm), PY (/tmp/hfvenv/bin/python, torch 2.4.1), REPS (3), MODELS
# ("tiny small"), THREADS ("1 2"), OBJECTIVES ("standard robust"; robust = shortcut_aware), STEPS_tiny (10), STEPS_small (2).
set -euo pipefail
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then sed -n 2,10p "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
mmrm=${MMRM:-build/mmrm}
py=${PY:-/tmp/hfvenv/bin/python}
reps=${REPS:-3}
[ -x "$mmrm" ] || { echo "skipped: $mmrm not built (make)"; exit 77; }
"$py" -c 'import torch' 2>/dev/null || { echo "skipped: $py has no torch"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$mmrm" synth --out "$work/data" --pairs 300 --seed 1 > /dev/null 2>&1
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
train() { # model steps threads objective outdir -> "pairs/s tokens/s"
    local extra=()
    [ "$4" = robust ] && extra=(algorithm=shortcut_aware bias_model_path="$work/bias_$1/checkpoint-last")
    OMP_NUM_THREADS=$3 "$mmrm" train configs/scratch_standard.ini init_model_config="configs/model/$1.json" \
        dataset_path="$work/data/train.jsonl" eval_dataset_path="$work/data/test_id.jsonl" \
        output_dir="$5" max_steps="$2" logging_steps="$2" "${extra[@]}" 2>&1 |
        sed -n "s/.*step $2\/$2 .*| \([0-9.]*\) pairs\/s | \([0-9]*\) tok\/s.*/\1 \2/p"
}
printf '%-6s %-8s %-9s %12s %12s %7s %s\n' model threads objective "mmrm pairs/s" "torch pairs/s" ratio tokens/row
for model in ${MODELS:-tiny small}; do
    sv=STEPS_$model
    steps=${!sv:-$([ "$model" = tiny ] && echo 10 || echo 2)}
    train "$model" 1 1 standard "$work/bias_$model" > /dev/null # the bias model's checkpoint
    for th in ${THREADS:-1 2}; do
        for obj in ${OBJECTIVES:-standard robust}; do
            : > "$work/m"; : > "$work/t"
            for _ in $(seq "$reps"); do
                read -r ps ts < <(train "$model" "$steps" "$th" "$obj" "$work/run")
                echo "$ps" >> "$work/m"
                tok=$(awk -v p="$ps" -v t="$ts" 'BEGIN { printf "%d", t / p / 2 + 0.5 }')
                "$py" bench/torch_cpu_baseline.py --model "$model" --tokens "$tok" --threads "$th" \
                    --steps "$steps" --objective "$obj" | sed -n 's/^pairs\/s \([0-9.]*\).*/\1/p' >> "$work/t"
            done
            m=$(median < "$work/m"); t=$(median < "$work/t")
            printf '%-6s %-8s %-9s %12s %12s %7s %s\n' "$model" "$th" "$obj" "$m" "$t" \
                "$(awk -v m="$m" -v t="$t" 'BEGIN { printf "%.2fx", m / t }')" "$tok"
        done
    done
done
"$py" bench/torch_cpu_baseline.py --model tiny --tokens 40 --steps 1 > "$work/v"
head -n 1 "$work/v"
