#!/usr/bin/env bash
# Data-parallel training: 2 ranks with 2 pairs each equal 1 rank with 4 pairs (the same
# global batch) for both algorithms: per-step losses within 1e-5 relative, and the final
# models give the same scores within 1e-5 relative; ZeRO-1 (sharded AdamW moments) equals
# no sharding the same way; a resumed 2-rank run (also under ZeRO-1) equals the
# uninterrupted one; the bucketed all-reduce started during backward gives bitwise the same
# run; LoRA runs equal across 1 rank, 2 ranks and ZeRO-1; a failing job ends with a message
# instead of hanging.
set -euo pipefail
command -v mpirun >/dev/null || { echo "skipped: no mpirun"; exit 77; }
grep -q "multi-process: mpi" <<<"$("$MMRM" version)" || { echo "skipped: this mmrm was built without MPI"; exit 77; }
"$MMRM" version >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mpi="mpirun --allow-run-as-root --oversubscribe -np 2"
"$MMRM" synth --out "$tmp/data" --pairs 48 --seed 4 >/dev/null
common=(init_model_config=configs/model/tiny.json init_bias_model_config=configs/model/tiny.json
        dataset_path="$tmp/data/train.jsonl" freeze_backbone=false drop_path_rate=0
        dynamic_image_size=false max_length=512 max_steps=4 learning_rate=1e-3 warmup_steps=1
        save_steps=2 num_workers=0 logging_steps=1 seed=3)
cfg="$tmp/empty.ini"; : > "$cfg"

losses() { tr ',' '\n' < "$1/checkpoint-last/trainer_state.json" | grep '"loss":' | sed 's/.*"loss":[ ]*//'; }
close() { # close A B: every pair of numbers within 1e-5 relative
    paste <(echo "$1") <(echo "$2") | awk '{ d = $1 - $2; if (d < 0) d = -d; m = ($1 < 0 ? -$1 : $1);
        if (d > 1e-5 * (m > 1e-3 ? m : 1e-3)) { print "differ: " $1 " vs " $2; bad = 1 } n++ }
        END { if (n == 0) { print "nothing compared"; exit 1 } exit bad }'
}
scores() { "$MMRM" score --model "$1/checkpoint-last" --input "$tmp/data/score_input.jsonl" \
               --output "$2" >/dev/null 2>&1; sed 's/.*"score":[ ]*//; s/}//' "$2"; }

for algo in standard shortcut_aware; do
    "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo per_device_train_batch_size=4 \
        output_dir="$tmp/one_$algo" 2>"$tmp/log1" || { cat "$tmp/log1"; exit 1; }
    $mpi "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo per_device_train_batch_size=2 \
        output_dir="$tmp/two_$algo" 2>"$tmp/log2" || { cat "$tmp/log2"; exit 1; }
    grep -q "x 2 ranks" "$tmp/log2" || { echo "the 2-rank run did not run on 2 ranks"; cat "$tmp/log2"; exit 1; }
    close "$(losses "$tmp/one_$algo")" "$(losses "$tmp/two_$algo")"
    close "$(scores "$tmp/one_$algo" "$tmp/s1_$algo.jsonl")" "$(scores "$tmp/two_$algo" "$tmp/s2_$algo.jsonl")"
    $mpi "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo per_device_train_batch_size=2 \
        zero_stage=1 output_dir="$tmp/zero_$algo" 2>"$tmp/log5" || { cat "$tmp/log5"; exit 1; }
    grep -q "ZeRO-1: sharded" "$tmp/log5" || { echo "ZeRO-1 was not active"; cat "$tmp/log5"; exit 1; }
    close "$(losses "$tmp/two_$algo")" "$(losses "$tmp/zero_$algo")"
    close "$(scores "$tmp/two_$algo" "$tmp/s2_$algo.jsonl")" "$(scores "$tmp/zero_$algo" "$tmp/s3_$algo.jsonl")"
done

# bucketed all-reduce started during backward (overlap_grad_reduce = true, buckets of ~2 KiB:
# dozens per model): the host reduction is elementwise, so the result is bitwise that of one
# all-reduce per model after backward, and most buckets must start before backward ends
for algo in standard shortcut_aware; do
    $mpi "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo per_device_train_batch_size=2 \
        overlap_grad_reduce=true grad_bucket_mb=0.002 output_dir="$tmp/ov_$algo" 2>"$tmp/log7" \
        || { cat "$tmp/log7"; exit 1; }
    line=$(grep "bucket(s) per step started during backward" "$tmp/log7") || { cat "$tmp/log7"; exit 1; }
    echo "$algo: ${line#mmrm: }"
    awk '{ for (i = 1; i <= NF; i++) if ($i == "of") { early = $(i - 1); all = $(i + 1) } }
         END { exit !(all >= 10 && early >= 0.75 * all) }' <<<"$line" || { echo "buckets did not start early"; exit 1; }
    [ "$(losses "$tmp/ov_$algo")" = "$(losses "$tmp/two_$algo")" ] || { echo "bucketed losses differ"; exit 1; }
    cmp "$tmp/ov_$algo/checkpoint-last/model.safetensors" "$tmp/two_$algo/checkpoint-last/model.safetensors"
done
cmp "$tmp/ov_shortcut_aware/checkpoint-last/bias/model.safetensors" \
    "$tmp/two_shortcut_aware/checkpoint-last/bias/model.safetensors"

# ZeRO-1 resume: killed in step 4, rerun from checkpoint-2 (the gathered moments)
set +e
MMRM_DEBUG_ABORT_AT_MICRO=7 timeout 120 $mpi "$MMRM" train "$cfg" "${common[@]}" algorithm=shortcut_aware \
    per_device_train_batch_size=2 zero_stage=1 output_dir="$tmp/zcut" >/dev/null 2>&1
set -e
[ -d "$tmp/zcut/checkpoint-2" ] && [ ! -d "$tmp/zcut/checkpoint-last" ] || { echo "ZeRO interruption"; exit 1; }
$mpi "$MMRM" train "$cfg" "${common[@]}" algorithm=shortcut_aware per_device_train_batch_size=2 \
    zero_stage=1 output_dir="$tmp/zcut" 2>"$tmp/log6" || { cat "$tmp/log6"; exit 1; }
[ "$(losses "$tmp/zcut")" = "$(losses "$tmp/zero_shortcut_aware")" ] || { echo "ZeRO resumed losses differ"; exit 1; }
cmp "$tmp/zcut/checkpoint-last/model.safetensors" "$tmp/zero_shortcut_aware/checkpoint-last/model.safetensors"
cmp "$tmp/zcut/checkpoint-last/bias/model.safetensors" "$tmp/zero_shortcut_aware/checkpoint-last/bias/model.safetensors"

# resume: a 2-rank run dies in the middle of step 4's gradient accumulation (micro-batch 7
# of 2 per step; the last checkpoint is at step 2); the rerun continues from checkpoint-2
set +e
MMRM_DEBUG_ABORT_AT_MICRO=7 timeout 120 $mpi "$MMRM" train "$cfg" "${common[@]}" algorithm=standard \
    per_device_train_batch_size=2 output_dir="$tmp/cut" >/dev/null 2>&1
set -e
[ -d "$tmp/cut/checkpoint-2" ] || { echo "no checkpoint-2 after the interrupted run"; exit 1; }
[ ! -d "$tmp/cut/checkpoint-last" ] || { echo "the interrupted run finished"; exit 1; }
$mpi "$MMRM" train "$cfg" "${common[@]}" algorithm=standard per_device_train_batch_size=2 \
    output_dir="$tmp/cut" 2>"$tmp/log3" || { cat "$tmp/log3"; exit 1; }
grep -q "resuming from" "$tmp/log3"
[ "$(losses "$tmp/cut")" = "$(losses "$tmp/two_standard")" ] || { echo "resumed losses differ"; exit 1; }
cmp "$tmp/cut/checkpoint-last/model.safetensors" "$tmp/two_standard/checkpoint-last/model.safetensors"

# LoRA (adapters on the LLM and the ViT; no dropout, as drop_path_rate = 0): 2 ranks and ZeRO-1 equal 1 rank (also
# shortcut_aware with the bias model on the main model's base); the
# checkpoints hold adapters, scored on top of the same base (`mmrm init` with the run's seed)
"$MMRM" init --config configs/model/tiny.json --out "$tmp/lbase" --seed 3 >/dev/null
lora=(lora_r=4 lora_alpha=8 lora_dropout=0 lora_target_modules=q_proj,v_proj,down_proj,qkv,fc1)
ascores() { "$MMRM" score --model "$tmp/lbase" --adapter "$1/checkpoint-last" --input "$tmp/data/score_input.jsonl" \
               --output "$2" >/dev/null 2>&1; sed 's/.*"score":[ ]*//; s/}//' "$2"; }
"$MMRM" train "$cfg" "${common[@]}" "${lora[@]}" per_device_train_batch_size=4 output_dir="$tmp/l1" 2>"$tmp/log8" \
    || { cat "$tmp/log8"; exit 1; }
$mpi "$MMRM" train "$cfg" "${common[@]}" "${lora[@]}" per_device_train_batch_size=2 output_dir="$tmp/l2" 2>"$tmp/log8" \
    || { cat "$tmp/log8"; exit 1; }
$mpi "$MMRM" train "$cfg" "${common[@]}" "${lora[@]}" per_device_train_batch_size=2 zero_stage=1 output_dir="$tmp/lz" \
    2>"$tmp/log8" || { cat "$tmp/log8"; exit 1; }
[ -f "$tmp/l2/checkpoint-last/adapter_model.safetensors" ] || { echo "no LoRA adapter saved"; exit 1; }
close "$(losses "$tmp/l1")" "$(losses "$tmp/l2")"
close "$(losses "$tmp/l2")" "$(losses "$tmp/lz")"
close "$(ascores "$tmp/l1" "$tmp/ls1.jsonl")" "$(ascores "$tmp/l2" "$tmp/ls2.jsonl")"
close "$(ascores "$tmp/l2" "$tmp/ls2.jsonl")" "$(ascores "$tmp/lz" "$tmp/ls3.jsonl")"
# shortcut_aware with the bias model on the main model's base (bias_model_path = model_name_or_path)
shared=(algorithm=shortcut_aware model_name_or_path="$tmp/lbase" bias_model_path="$tmp/lbase")
"$MMRM" train "$cfg" "${common[@]}" "${lora[@]}" "${shared[@]}" per_device_train_batch_size=4 output_dir="$tmp/ls1" \
    2>"$tmp/log8" || { cat "$tmp/log8"; exit 1; }
grep -q "shares the main model's frozen base" "$tmp/log8" || { echo "the bias model did not share the base"; exit 1; }
$mpi "$MMRM" train "$cfg" "${common[@]}" "${lora[@]}" "${shared[@]}" per_device_train_batch_size=2 zero_stage=1 \
    output_dir="$tmp/ls2" 2>"$tmp/log8" || { cat "$tmp/log8"; exit 1; }
close "$(losses "$tmp/ls1")" "$(losses "$tmp/ls2")"

# one rank fails: a missing dataset under on_bad_record = fail stops the job, no hang
set +e
timeout 120 $mpi "$MMRM" train "$cfg" "${common[@]}" per_device_train_batch_size=2 \
    dataset_path="$tmp/missing.jsonl" output_dir="$tmp/fail" >"$tmp/log4" 2>&1
rc=$?
set -e
[ "$rc" != 0 ] && [ "$rc" != 124 ] || { echo "failing job exit status $rc"; cat "$tmp/log4"; exit 1; }
grep -q "missing.jsonl" "$tmp/log4" || { cat "$tmp/log4"; exit 1; }
