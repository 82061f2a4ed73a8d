#!/usr/bin/env bash
# tests/gpu/make_cpu_losses.sh - the CPU side of tests/gpu/run.sh's training check, computed
# once here so that the GPU window spends no time on it: 50 steps of `mmrm train` on the
# CPU (fp32) for both algorithms on `mmrm synth --seed 5` data, per-step losses written to
# tests/gpu/cpu_losses.tsv (atomically) with the synth and train arguments in its header,
# which run.sh reads back and repeats with device=cuda. Rerun and commit the file whenever
# the model, the data generator, the trainer or these arguments change (a stale file fails
# run.sh's comparison rather than passing it).
#   MMRM=build/mmrm bash tests/gpu/make_cpu_losses.sh      (about a minute on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
MMRM=${MMRM:-build/mmrm}
synth_args="--pairs 400 --seed 5"
train_args="max_steps=50 logging_steps=1 save_steps=0 per_device_train_batch_size=8 eval_dataset_path= report_to=none"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
# shellcheck disable=SC2086
"$MMRM" synth --out "$d/data" $synth_args > /dev/null
out=tests/gpu/cpu_losses.tsv
{
    echo "# per-step training losses on the CPU (fp32), made by tests/gpu/make_cpu_losses.sh; $("$MMRM" version | head -n 1), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "# synth: $synth_args"
    echo "# train: $train_args"
    printf 'algorithm\tstep\tloss\n'
} > "$d/out.tsv"
for algo in standard robust; do
    # shellcheck disable=SC2086
    "$MMRM" train "configs/scratch_$algo.ini" dataset_path="$d/data/train.jsonl" output_dir="$d/$algo" \
        $train_args device=cpu precision=fp32 2> "$d/$algo.log" || { tail -n 20 "$d/$algo.log"; exit 1; }
    grep -o '"step":[0-9]*,"loss":[^,}]*' "$d/$algo/metrics.jsonl" |
        sed 's/"step":\([0-9]*\),"loss":\(.*\)/\1\t\2/' | awk -v a="$algo" '{ print a "\t" $0 }' >> "$d/out.tsv"
done
n=$(grep -c -v '^#\|^algorithm' "$d/out.tsv")
[ "$n" = 100 ] || { echo "make_cpu_losses: $n loss lines, want 100"; exit 1; }
cp "$d/out.tsv" "$out.tmp" && mv "$out.tmp" "$out"
echo "wrote $out ($n losses)"
