#!/bin/bash
# cpu_vs_torch.sh - mmrm's CPU training against PyTorch eager on the CPU (bench/torch_cpu_baseline.py),
# side by side: the tiny and small models (configs/model/), 1 and 2 threads, the standard and the
# shortcut-aware (robust) objective, REPS interleaved runs each (mmrm, torch, mmrm, torch, ...);
# prints the median pairs/s of each and the ratio. Both skip 2 warm-up steps: mmrm's number is
# from its per-step log lines (steps 3.., harmonic mean), torch's from the steps it times.
# Torch gets mmrm's mean tokens per row (tokens/s over pairs/s) with no padding. Not a test:
# nothing is asserted.
#
#   bash bench/cpu_vs_torch.sh [--help]
# Environment: MMRM (build/mmrm), PY (/tmp/hfvenv/bin/python, torch 2.4.1), REPS (3), MODELS
# ("tiny small"), THREADS ("1 2"), OBJECTIVES ("standard robust"; robust = shortcut_aware),
# STEPS_tiny (12), STEPS_small (4): steps per run, the first 2 not timed on either side;
# MMRM_EXTRA: key=value overrides for mmrm's runs (e.g. "share_prefix=false packing=false":
# the same rows computed whole and padded, as torch computes them).
set -euo pipefail
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then sed -n 2,15p "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
mmrm=${MMRM:-build/mmrm}
py=${PY:-/tmp/hfvenv/bin/python}
reps=${REPS:-3}
[ -x "$mmrm" ] || { echo "skipped: $mmrm not built (make)"; exit 77; }
"$py" -c 'import torch' 2>/dev/null || { echo "skipped: $py has no torch"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$mmrm" synth --out "$work/data" --pairs 300 --seed 1 > /dev/null 2>&1
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
train() { # model steps threads objective outdir -> "pairs/s tokens-per-row" over steps 3..
    local extra=()
    [ "$4" = robust ] && extra=(algorithm=shortcut_aware bias_model_path="$work/bias_$1/checkpoint-last")
    # shellcheck disable=SC2086 # MMRM_EXTRA: words on purpose
    OMP_NUM_THREADS=$3 "$mmrm" train configs/scratch_standard.ini init_model_config="configs/model/$1.json" \
        dataset_path="$work/data/train.jsonl" eval_dataset_path="$work/data/test_id.jsonl" \
        output_dir="$5" max_steps="$2" logging_steps=1 "${extra[@]}" ${MMRM_EXTRA:-} 2>&1 |
        sed -n 's/.*step \([0-9]*\)\/[0-9]* .*| \([0-9.]*\) pairs\/s | \([0-9]*\) tok\/s.*/\1 \2 \3/p' |
        awk '$1 > 2 { n++; inv += 1 / $2; tpr += $3 / $2 / 2 } END { printf "%.3f %d\n", n / inv, tpr / n + 0.5 }'
}
printf '%-6s %-8s %-9s %12s %12s %7s %s\n' model threads objective "mmrm pairs/s" "torch pairs/s" ratio tokens/row
for model in ${MODELS:-tiny small}; do
    sv=STEPS_$model
    steps=${!sv:-$([ "$model" = tiny ] && echo 12 || echo 4)}
    train "$model" 1 1 standard "$work/bias_$model" > /dev/null # the bias model's checkpoint
    for th in ${THREADS:-1 2}; do
        for obj in ${OBJECTIVES:-standard robust}; do
            : > "$work/m"; : > "$work/t"
            for _ in $(seq "$reps"); do
                read -r ps ts < <(train "$model" "$steps" "$th" "$obj" "$work/run")
                echo "$ps" >> "$work/m"
                tok=$ts
                "$py" bench/torch_cpu_baseline.py --model "$model" --tokens "$tok" --threads "$th" \
                    --steps $((steps - 2)) --objective "$obj" | sed -n 's/^pairs\/s \([0-9.]*\).*/\1/p' >> "$work/t"
            done
            m=$(median < "$work/m"); t=$(median < "$work/t")
            printf '%-6s %-8s %-9s %12s %12s %7s %s\n' "$model" "$th" "$obj" "$m" "$t" \
                "$(awk -v m="$m" -v t="$t" 'BEGIN { printf "%.2fx", m / t }')" "$tok"
        done
    done
done
"$py" bench/torch_cpu_baseline.py --model tiny --tokens 40 --steps 1 > "$work/v"
head -n 1 "$work/v"
