#!/usr/bin/env bash
# attention_impl (train key) and --attention-impl (scoring commands): documented in --help,
# unknown values refused with the valid ones named, the CPU accepting and logging the key as
# ignored (training unchanged: the same losses with auto and mmrm), and on the emulated GPU
# (build/emu_mmrm, which has no cuDNN) cudnn refused with the reason while mmrm runs,
# bf16 included (the tensor-core path chosen by precision).
set -euo pipefail
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$MMRM" score --help 2>&1 | grep -q -- "--attention-impl" || fail "score --help does not list --attention-impl"
"$MMRM" eval --help 2>&1 | grep -- "--attention-impl" >/dev/null || fail "eval --help does not list --attention-impl"

"$MMRM" synth --out "$d/data" --pairs 16 --seed 4 > /dev/null 2>&1 || fail "synth"
train() { # mmrm out [key=value ...]
    local bin=$1 out=$2
    shift 2
    "$bin" train configs/scratch_standard.ini dataset_path="$d/data/train.jsonl" eval_dataset_path= \
        output_dir="$out" max_steps=2 per_device_train_batch_size=2 logging_steps=1 save_steps=0 "$@" \
        2> "$out.log"
}
losses() { grep -o '"loss":[^,}]*' "$1/metrics.jsonl" | cut -d: -f2; }

if train "$MMRM" "$d/bogus" device=cpu attention_impl=flash; then fail "attention_impl=flash accepted"; fi
grep -q "attention_impl.*auto, mmrm, cudnn" "$d/bogus.log" || { cat "$d/bogus.log"; fail "no list of valid values"; }

train "$MMRM" "$d/cpu_auto" device=cpu || { tail -n 5 "$d/cpu_auto.log"; fail "cpu train"; }
train "$MMRM" "$d/cpu_cudnn" device=cpu attention_impl=cudnn || { tail -n 5 "$d/cpu_cudnn.log"; fail "cpu train, cudnn"; }
grep -q "attention_impl = cudnn is ignored on the cpu" "$d/cpu_cudnn.log" || fail "the CPU does not log the key as ignored"
grep -q "^attention_impl = cudnn" "$d/cpu_cudnn/train_config.ini" || fail "attention_impl not saved in train_config.ini"
[ "$(losses "$d/cpu_auto")" = "$(losses "$d/cpu_cudnn")" ] || fail "attention_impl changed the CPU's losses"
[ -n "$(losses "$d/cpu_auto")" ] || fail "no losses"

m="$d/cpu_auto/checkpoint-last"
if "$MMRM" score --model "$m" --input "$d/data/score_input.jsonl" --output "$d/s.jsonl" --device cpu \
    --attention-impl fast 2> "$d/score_bogus.log"; then fail "--attention-impl fast accepted"; fi
grep -q "valid values are auto, mmrm, cudnn" "$d/score_bogus.log" || fail "score: no list of valid values"

emu="$(dirname "$MMRM")/emu_mmrm"
if [ -x "$emu" ]; then
    if train "$emu" "$d/emu_cudnn" device=cuda precision=bf16 attention_impl=cudnn; then
        fail "attention_impl = cudnn accepted by a build without cuDNN"
    fi
    grep -q "this build has no cuDNN" "$d/emu_cudnn.log" || { cat "$d/emu_cudnn.log"; fail "no reason given"; }
    train "$emu" "$d/emu_mmrm" device=cuda precision=bf16 attention_impl=mmrm || { tail -n 5 "$d/emu_mmrm.log"; fail "emulated GPU train"; }
    grep -q "attention: mmrm" "$d/emu_mmrm.log" || fail "the device's attention implementation is not logged"
    [ "$(losses "$d/emu_mmrm" | wc -l)" = 2 ] || fail "emulated GPU run: expected 2 losses"
else
    echo "note: $emu missing: the emulated GPU part is not run"
fi
echo "ok"
