#!/usr/bin/env bash
# TensorBoard output of `mmrm train` (report_to = tensorboard, the default), read by
# TensorBoard's own EventAccumulator (tests/oracle/tensorboard_read.py): tiny runs of both
# algorithms with evaluations; the scalars equal metrics.jsonl, each step once, the w
# histogram at every shortcut_aware step. Then resumes: a run that dies after logging a step
# past its newest checkpoint (MMRM_DEBUG_ABORT_AT_MICRO), its event file also given a torn
# tail, and a run killed with SIGKILL right after a checkpoint, each resumed: the reader sees
# the uninterrupted run's steps, each once, with its values (histograms included), and
# metrics.jsonl is the uninterrupted run's byte for byte (evaluations included); a first
# run without TensorBoard output resumed with it: the history's steps and the earlier
# metrics.jsonl's evaluations are replayed (without throughput or histogram). Also: report_to = none writes no runs/, an unknown value is an
# error naming the key, a second event file is caught by the reader, and (with mpirun) a
# 2-rank run's histogram holds every rank's pairs.
# Needs a Python with tensorboard: TB_PYTHON (default python3), e.g. a venv made as
# tests/oracle/tfevents_fixture.py says; without it: skipped.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
MMRM=$(cd "$(dirname "$MMRM")" && pwd)/$(basename "$MMRM")
py=${TB_PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CRASH_LOG=$tmp/run.log
source "$root/tests/crash_lib.sh"
cd "$root"

"$MMRM" synth --out "$tmp/data" --pairs 32 --seed 4 >/dev/null
cfg="$tmp/empty.ini"; : > "$cfg"
# 5 steps of 4 pairs, checkpoints at 2 and 4, evaluations at 2, 4 and 5
common=(init_model_config=configs/model/tiny.json init_bias_model_config=configs/model/tiny.json
        dataset_path="$tmp/data/train.jsonl" eval_dataset_path="$tmp/data/test_id.jsonl"
        freeze_backbone=false drop_path_rate=0 dynamic_image_size=false max_length=512 max_steps=5
        learning_rate=1e-3 warmup_steps=1 save_steps=2 eval_steps=2 num_workers=0 logging_steps=1 seed=3
        per_device_train_batch_size=2 gradient_accumulation_steps=2 resume=true overwrite_output_dir=false)
train() { "$MMRM" train "$cfg" "${common[@]}" "$@"; }

# the checks that need no Python
train max_steps=1 report_to=none output_dir="$tmp/none" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
[ ! -e "$tmp/none/runs" ] || { echo "report_to = none wrote $tmp/none/runs"; exit 1; }
if train report_to=wandb output_dir="$tmp/bad" 2>"$tmp/log"; then echo "report_to = wandb was accepted"; exit 1; fi
grep -q "report_to" "$tmp/log" || { echo "the error does not name report_to:"; cat "$tmp/log"; exit 1; }

"$py" -c "import tensorboard.backend.event_processing.event_accumulator, numpy" 2>/dev/null \
    || { echo "skipped: $py cannot import tensorboard (set TB_PYTHON to a venv's python with tensorboard==2.18.0)"; exit 77; }
check() { "$py" tests/oracle/tensorboard_read.py "$@"; }

for algo in standard shortcut_aware; do
    a=(algorithm=$algo)
    ref=$tmp/ref_$algo
    train "${a[@]}" output_dir="$ref" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
    check "$ref" --algorithm $algo --pairs-per-step 4

    # dies at the start of step 4 (micro-batch 3 x 2): step 3 is logged, the newest
    # checkpoint is 2; then a torn record at the end of the event file
    out=$tmp/abort_$algo
    if MMRM_DEBUG_ABORT_AT_MICRO=6 train "${a[@]}" output_dir="$out" 2>"$tmp/log"; then
        echo "the run did not abort"; exit 1
    fi
    grep -q '"step":3,' "$out/metrics.jsonl" || { echo "step 3 was not logged before the abort"; exit 1; }
    printf '\x2a\x00\x00\x00\x00\x00\x00\x00\x01\x02' >> "$(ls "$out"/runs/events.out.tfevents.*)"
    train "${a[@]}" output_dir="$out" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
    check "$out" --algorithm $algo --pairs-per-step 4 --same-as "$ref"
    cmp "$ref/metrics.jsonl" "$out/metrics.jsonl" || { echo "metrics.jsonl differs from the uninterrupted run's"; exit 1; }

    # SIGKILL 0-300 ms after checkpoint-4 appears
    out=$tmp/kill_$algo
    if run_killed_in_write "$out/checkpoint-4" "$(rand_ms 300)" "$MMRM" train "$cfg" "${common[@]}" "${a[@]}" output_dir="$out"; then
        echo "$algo: killed after checkpoint-4 at step $(grep -c '"loss"' "$out/metrics.jsonl") of metrics.jsonl"
    else
        echo "$algo: the run finished before the kill"
    fi
    train "${a[@]}" output_dir="$out" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
    check "$out" --algorithm $algo --pairs-per-step 4 --same-as "$ref"
    cmp "$ref/metrics.jsonl" "$out/metrics.jsonl" || { echo "metrics.jsonl differs from the uninterrupted run's"; exit 1; }
done

# a first run without TensorBoard output, resumed with it: steps 1-2 come from the history
out=$tmp/late
if MMRM_DEBUG_ABORT_AT_MICRO=6 train algorithm=shortcut_aware report_to=none output_dir="$out" 2>"$tmp/log"; then
    echo "the run did not abort"; exit 1
fi
train algorithm=shortcut_aware output_dir="$out" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
check "$out" --algorithm shortcut_aware --pairs-per-step 4 --replayed-steps 2
cmp "$tmp/ref_shortcut_aware/metrics.jsonl" "$out/metrics.jsonl" || { echo "metrics.jsonl differs from the uninterrupted run's"; exit 1; }

# the reader must see a step written twice: a second copy of the file
f=$(ls "$tmp/ref_standard"/runs/events.out.tfevents.*)
cp "$f" "${f%.0}.1"
if check "$tmp/ref_standard" >"$tmp/dup.log"; then echo "a duplicated event file went unnoticed"; exit 1; fi
grep -q "more than once" "$tmp/dup.log" || { cat "$tmp/dup.log"; exit 1; }

if command -v mpirun >/dev/null && grep -q "multi-process: mpi" <<<"$("$MMRM" version)"; then
    mpirun --allow-run-as-root --oversubscribe -np 2 "$MMRM" train "$cfg" "${common[@]}" algorithm=shortcut_aware \
        per_device_train_batch_size=1 max_steps=3 output_dir="$tmp/mpi" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
    check "$tmp/mpi" --algorithm shortcut_aware --pairs-per-step 4
else
    echo "(no mpirun: the 2-rank histogram is not checked)"
fi
echo "tensorboard_read: all checks passed"
