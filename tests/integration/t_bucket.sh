#!/usr/bin/env bash
# t_bucket (padded T, and with share_prefix / packing the compact rows' length, rounded up to
# a multiple; the GPU default 64) changes no result: on the CPU, two training steps with
# t_bucket = 1 and t_bucket = 64 log the same losses and gradient norms and save bitwise the
# same model, shortcut-aware with the default layouts (prefix sharing and packing: the main
# and the blank rows' streams get a tail) and standard with packing alone. (That the stream
# is rounded, and the rewards and gradients of one forward, test_stream_bucket in
# build/test_unit. On the device the padded rows move the chunks of the bias gradient's
# column sum: build/gpu_parity's "t_bucket" checks hold the GPU to its parity tolerance
# instead; tests/integration/cuda_emu_train.sh compares device runs, which bucket by default,
# with the CPU.)
set -euo pipefail
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$MMRM" synth --out "$d/data" --pairs 24 --seed 3 > /dev/null
for run in "robust" "standard share_prefix=false packing=true"; do
    set -- $run
    algo=$1
    shift
    for tb in 1 64; do
        "$MMRM" train "configs/scratch_$algo.ini" dataset_path="$d/data/train.jsonl" eval_dataset_path= \
            output_dir="$d/$algo$tb" max_steps=2 per_device_train_batch_size=2 logging_steps=1 save_steps=0 \
            device=cpu precision=fp32 t_bucket=$tb report_to=none "$@" 2> "$d/$algo$tb.log" ||
            { tail -n 20 "$d/$algo$tb.log"; exit 1; }
    done
    n=$(grep -c '"loss"' "$d/${algo}64/metrics.jsonl")
    [ "$n" = 2 ] || { echo "FAIL $run: $n logged steps, want 2"; exit 1; }
    cmp "$d/${algo}1/metrics.jsonl" "$d/${algo}64/metrics.jsonl" ||
        { echo "FAIL $run: metrics differ with t_bucket=64"; diff "$d/${algo}1/metrics.jsonl" "$d/${algo}64/metrics.jsonl"; exit 1; }
    cmp "$d/${algo}1/checkpoint-last/model.safetensors" "$d/${algo}64/checkpoint-last/model.safetensors" ||
        { echo "FAIL $run: the saved models differ with t_bucket=64"; exit 1; }
    if [ -f "$d/${algo}1/checkpoint-last/bias/model.safetensors" ]; then
        cmp "$d/${algo}1/checkpoint-last/bias/model.safetensors" "$d/${algo}64/checkpoint-last/bias/model.safetensors" ||
            { echo "FAIL $run: the saved bias models differ with t_bucket=64"; exit 1; }
    fi
    echo "$run, t_bucket 1 vs 64: same losses, gradient norms and model bytes after 2 steps"
done
