#!/usr/bin/env bash
# Numerical faults: a NaN in a batch's pixel or an Inf in a gradient (MMRM_DEBUG_NONFINITE,
# train/step.c) makes that step's update skipped, counted and logged, and the run goes on; a
# NaN in a weight (injected, or in a crafted model directory) ends the run with an error
# instead of being saved; in every case no checkpoint ever holds a non-finite value (every
# tensor of every model.safetensors and optimizer.safetensors is read back), and a rerun
# resumes from the last finite checkpoint. The same faults on the emulated GPU (build/emu_mmrm).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
MMRM=$(cd "$(dirname "$MMRM")" && pwd)/$(basename "$MMRM")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$root"

"$MMRM" synth --out "$tmp/data" --pairs 48 --seed 4 >/dev/null
cfg="$tmp/empty.ini"; : > "$cfg"
common=(init_model_config=configs/model/tiny.json init_bias_model_config=configs/model/tiny.json
        dataset_path="$tmp/data/train.jsonl" freeze_backbone=false drop_path_rate=0
        dynamic_image_size=false max_length=512 max_steps=3 learning_rate=1e-3 warmup_steps=1
        save_steps=1 num_workers=0 logging_steps=1 seed=3 per_device_train_batch_size=4
        gradient_accumulation_steps=1 resume=true overwrite_output_dir=false)

# header length, then the data section as float32 (mmrm saves checkpoints in F32)
st_offset() { echo $((8 + $(od -An -t u8 -N 8 "$1" | tr -d ' '))); }
all_finite() { # every float of every safetensors file under DIR (one perl over all of them:
    # an exponent of all ones is a NaN or an Inf; od | grep in bash took minutes here)
    local files
    mapfile -t files < <(find "$1" -name '*.safetensors')
    [ "${#files[@]}" -gt 0 ] || { echo "no safetensors files under $1"; return 1; }
    perl -e '
        my $bad = 0;
        for my $f (@ARGV) {
            open(my $fh, "<:raw", $f) or die "$f: $!\n";
            local $/; my $b = <$fh>; close $fh;
            length($b) >= 8 or die "$f: shorter than a safetensors header\n";
            my $off = 8 + unpack("Q<", substr($b, 0, 8));
            $off <= length($b) or die "$f: header length past the end\n";
            my $n = grep { ($_ & 0x7f800000) == 0x7f800000 } unpack("V*", substr($b, $off));
            if ($n) { print "non-finite values in $f ($n)\n"; $bad = 1 }
        }
        exit $bad' "${files[@]}"
}

# standard: every fault; shortcut_aware (the bias model is saved too): an Inf gradient
for algo in standard shortcut_aware; do
    kinds="pixel grad"
    [ "$algo" = shortcut_aware ] && kinds=grad
    for kind in $kinds; do
        out=$tmp/${algo}_$kind
        MMRM_DEBUG_NONFINITE=$kind:2 "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo output_dir="$out" \
            2>"$tmp/log" || { echo "$algo, $kind: the run did not survive one non-finite step"; tail -n 5 "$tmp/log"; exit 1; }
        grep -q "injecting a non-finite $kind at step 2" "$tmp/log" || { echo "$kind was not injected"; exit 1; }
        grep -q "step 2: non-finite loss or gradients, update skipped (1 so far)" "$tmp/log" \
            || { echo "$algo, $kind: step 2 was not reported as skipped"; tail -n 8 "$tmp/log"; exit 1; }
        grep -q '"skipped_nonfinite":[[:space:]]*1,' "$out/checkpoint-last/trainer_state.json" \
            || { echo "$algo, $kind: trainer_state.json does not count the skipped step"; exit 1; }
        # a skipped step leaves the weights as they were
        cmp "$out/checkpoint-1/model.safetensors" "$out/checkpoint-2/model.safetensors"
        cmp -s "$out/checkpoint-2/model.safetensors" "$out/checkpoint-3/model.safetensors" \
            && { echo "$algo, $kind: training did not go on after the skipped step"; exit 1; }
        all_finite "$out"
        echo "$algo, $kind: step 2 skipped and counted, weights unchanged by it, training went on; every saved tensor finite"
    done

    [ "$algo" = standard ] || continue
    "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo output_dir="$tmp/ref_$algo" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
    out=$tmp/${algo}_weight
    rc=0
    MMRM_DEBUG_NONFINITE=weight:2 "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo output_dir="$out" 2>"$tmp/log" || rc=$?
    [ "$rc" = 1 ] || { echo "$algo, weight: exit $rc (an error expected)"; tail -n 5 "$tmp/log"; exit 1; }
    grep -q "error: the main model's weights hold a non-finite value (in vision_model.embeddings.patch_embedding.weight" "$tmp/log" \
        || { echo "$algo, weight: no clear error"; tail -n 5 "$tmp/log"; exit 1; }
    [ -d "$out/checkpoint-1" ] && [ ! -e "$out/checkpoint-2" ] && [ ! -e "$out/checkpoint-last" ] \
        || { echo "$algo, weight: wrong checkpoints left"; ls -a "$out"; exit 1; }
    all_finite "$out"
    "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo output_dir="$out" >"$tmp/log" 2>&1 || { tail -n 5 "$tmp/log"; exit 1; }
    grep -q "resuming from $out/checkpoint-1" "$tmp/log" || { echo "$algo, weight: the rerun did not resume from checkpoint-1"; exit 1; }
    cmp "$tmp/ref_$algo/checkpoint-last/model.safetensors" "$out/checkpoint-last/model.safetensors"
    echo "$algo, weight: the run stopped before saving the NaN weight; the rerun resumed from checkpoint-1 and ended bitwise equal to the run without the fault"
done

# a crafted model directory whose first stored weight is NaN, as the starting model
model=$tmp/nan_model
mkdir "$model"
cp "$tmp/ref_standard/checkpoint-1/"{config.json,model.safetensors,mmrm_tokenizer.json} "$model/"
printf '\x00\x00\xc0\x7f' | dd of="$model/model.safetensors" bs=1 seek="$(st_offset "$model/model.safetensors")" conv=notrunc status=none
bad=$(all_finite "$model") && { echo "the crafted model has no NaN"; exit 1; }
grep -qx "non-finite values in $model/model.safetensors (1)" <<<"$bad" || { echo "all_finite: '$bad' for one NaN"; exit 1; }
# and the reader goes to the end of the data section: one +Inf as the last float of a copy
mkdir "$tmp/last_inf"
cp "$tmp/ref_standard/checkpoint-1/model.safetensors" "$tmp/last_inf/"
all_finite "$tmp/last_inf"
printf '\x00\x00\x80\x7f' | dd of="$tmp/last_inf/model.safetensors" bs=1 seek=$(($(stat -c %s "$tmp/last_inf/model.safetensors") - 4)) conv=notrunc status=none
bad=$(all_finite "$tmp/last_inf") && { echo "all_finite missed an Inf as the last float"; exit 1; }
grep -qx "non-finite values in $tmp/last_inf/model.safetensors (1)" <<<"$bad" || { echo "all_finite: '$bad' for one Inf"; exit 1; }
for save in 1; do
    out=$tmp/crafted_$save
    rc=0
    "$MMRM" train "$cfg" dataset_path="$tmp/data/train.jsonl" model_name_or_path="$model" freeze_backbone=false \
        dynamic_image_size=false max_steps=3 save_steps=$save num_workers=0 logging_steps=1 \
        per_device_train_batch_size=4 output_dir="$out" 2>"$tmp/log" || rc=$?
    [ "$rc" = 1 ] || { echo "a NaN model trained to the end (exit $rc)"; tail -n 5 "$tmp/log"; exit 1; }
    grep "mmrm: error:" "$tmp/log" | grep -q "non-finite" || { echo "no clear error for a NaN model"; tail -n 5 "$tmp/log"; exit 1; }
    [ -z "$(compgen -G "$out/checkpoint-*")" ] || { echo "a checkpoint was written from a NaN model"; ls "$out"; exit 1; }
    echo "crafted NaN model, save_steps=$save: stopped with '$(grep "mmrm: error:" "$tmp/log" | sed 's/mmrm: error: //')'; no checkpoint written"
done

# The same faults on the GPU code path (build/emu_mmrm: the CUDA backend on the CPU emulator):
# the injected NaN/Inf lands in device memory; the skip decision and the finiteness check
# before a save read device memory back. fp32, and bf16 (activations in bf16, the GEMMs over
# bf16 weight copies that AdamW refreshes) for the gradient fault.
emu="$(dirname "$MMRM")/emu_mmrm"
[ -x "$emu" ] || { echo "FAIL: $emu is missing (make $emu)"; exit 1; }
# (under ASan/UBSan, build/san, where the emulator runs 3-4x slower: the gradient fault only)
cases="pixel:fp32 grad:fp32 grad:bf16 weight:fp32"
case "$MMRM" in */san/*) cases="grad:fp32" ;; esac
for case in $cases; do
    kind=${case%:*} prec=${case#*:}
    out=$tmp/emu_${kind}_$prec
    rc=0
    # (2 steps of 2 pairs: the fault at step 2 and the checkpoints around it are all this
    # checks; the emulated step is what makes this script slow)
    MMRM_DEBUG_NONFINITE=$kind:2 "$emu" train "$cfg" "${common[@]}" algorithm=standard device=cuda precision=$prec \
        max_steps=2 per_device_train_batch_size=2 output_dir="$out" 2>"$tmp/log" || rc=$?
    grep -q "injecting a non-finite $kind at step 2" "$tmp/log" || { echo "emulated GPU: $kind was not injected"; tail -n 5 "$tmp/log"; exit 1; }
    if [ "$kind" = weight ]; then
        [ "$rc" = 1 ] && grep -q "error: the main model's weights hold a non-finite value" "$tmp/log" \
            || { echo "emulated GPU, weight: exit $rc, no clear error"; tail -n 5 "$tmp/log"; exit 1; }
        [ -d "$out/checkpoint-1" ] && [ ! -e "$out/checkpoint-2" ] || { echo "emulated GPU, weight: wrong checkpoints"; ls "$out"; exit 1; }
    else
        [ "$rc" = 0 ] || { echo "emulated GPU, $kind/$prec: the run did not survive one non-finite step"; tail -n 5 "$tmp/log"; exit 1; }
        grep -q "step 2: non-finite loss or gradients, update skipped (1 so far)" "$tmp/log" \
            || { echo "emulated GPU, $kind/$prec: step 2 not reported as skipped"; tail -n 8 "$tmp/log"; exit 1; }
        cmp "$out/checkpoint-1/model.safetensors" "$out/checkpoint-2/model.safetensors"
    fi
    all_finite "$out"
    echo "emulated GPU ($prec), $kind: $([ "$kind" = weight ] && echo "stopped before saving the NaN" || echo "step 2 skipped, weights unchanged by it"); every saved tensor finite"
done
