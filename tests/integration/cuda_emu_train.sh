#!/usr/bin/env bash
# The GPU code paths of the command line, end to end, on the CPU emulator (tests/cuda_emu):
# build/emu_mmrm is mmrm with the emulated CUDA backend. For both algorithms, 2 training
# steps with device = cuda (precision = fp32) must give the same per-step losses as
# device = cpu within 1e-4 relative (also with LoRA adapters, a bias model on the main
# model's base, and 3 micro-batches forwarded pair by pair, whose logged values the host
# reads as often as 1 forward's: once a step), and final weights within 1e-4 (models moved
# to the device, uploads of every op input, logging read back once a step after the last
# backward, checkpoints and optimizer state staged
# through the host); precision = bf16 (activations stored in bf16,
# GEMMs over bf16 weight copies kept by the fused AdamW) equals GEMMs over the fp32 master
# weights, alone and under ZeRO-1, and its losses stay within 1e-2 of fp32 on the CPU;
# a run resumed on the device from a checkpoint
# must end where the uninterrupted device run ends; `score --device cuda` must give the
# CPU's scores within 1e-4 (2e-2 with --precision bf16); 2 ranks on the device must equal 1 rank with the same global
# batch, both with two ranks sharing one GPU (gradients staged through the host) and with a
# GPU per rank (bucketed NCCL all-reduce overlapped with backward, NCCL emulated over MPI),
# and ZeRO-1 on the device must equal unsharded training (also with clipping active: the
# norm from the shards, all-reduced and applied on the device) and resume bitwise.
set -euo pipefail
emu="$(dirname "$MMRM")/emu_mmrm"
# under ASan/UBSan (build/san) the emulator runs 3-4x slower: the checks that only repeat
# code paths the sanitized run already covers (the ZeRO-1 resume and bf16 runs, the bf16
# twin run, one process through NCCL; the standard LoRA run, whose paths the shared-base
# LoRA run takes too; ZeRO-1 without clipping, whose paths the clipped ZeRO-1 run takes too;
# the host-read count's 1-forward run and CPU twin: the sanitized pass runs the 6-forward
# run only) run in the plain pass only
sanitized=0
case "$MMRM" in */san/*) sanitized=1 ;; esac
[ -x "$emu" ] || { echo "FAIL: $emu is missing (make $emu)"; exit 1; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$emu" synth --out "$d/data" --pairs 24 --seed 3 > /dev/null

train() { # algo device out [extra]
    local algo=$1 dev=$2 out=$3
    shift 3
    "$emu" train "configs/scratch_$algo.ini" dataset_path="$d/data/train.jsonl" eval_dataset_path= \
        output_dir="$out" max_steps=2 per_device_train_batch_size=2 logging_steps=1 save_steps=1 \
        device="$dev" precision=fp32 "$@" 2> "$out.log" || { tail -n 20 "$out.log"; exit 1; }
}
losses() { grep -o '"loss":[^,}]*' "$1/metrics.jsonl" | cut -d: -f2; }
# largest |a - b| / max(1, |a|) over paired numbers on stdin
worst() { awk '{ x = $1 - $2; if (x < 0) x = -x; m = $1 < 0 ? -$1 : $1; if (m < 1) m = 1; if (x / m > w) w = x / m } END { printf "%.3g", w + 0 }'; }
weights() { od -An -v -f -w4 "$1/model.safetensors" | tail -n +2 | awk 'NF'; }

for algo in standard robust; do
    train "$algo" cpu "$d/${algo}_cpu"
    train "$algo" cuda "$d/${algo}_gpu"
    n=$(losses "$d/${algo}_gpu" | wc -l)
    [ "$n" = 2 ] || { echo "FAIL $algo: $n logged steps on the device, want 2"; exit 1; }
    w=$(paste <(losses "$d/${algo}_cpu") <(losses "$d/${algo}_gpu") | worst)
    echo "$algo: per-step loss cpu vs cuda (emulated): worst rel $w"
    awk -v w="$w" 'BEGIN { exit !(w <= 1e-4) }' || { echo "FAIL $algo losses differ"; exit 1; }
    # the safetensors files hold the same tensors in the same order: compare them as floats
    # (the header bytes decode as garbage floats but are identical, so they compare equal)
    ww=$(paste <(weights "$d/${algo}_cpu/checkpoint-last") <(weights "$d/${algo}_gpu/checkpoint-last") | worst)
    echo "$algo: final weights cpu vs cuda: worst rel $ww"
    awk -v w="$ww" 'BEGIN { exit !(w <= 1e-4) }' || { echo "FAIL $algo weights differ"; exit 1; }
done

# the host reads a step's logged values (losses, rewards, shortcut weights) once, after its
# last micro-batch (train/step.c copies them on the device after each forward): the
# emulator's count of copies into host memory (EMU_STATS) is the same for 2 steps of 1
# forward and 2 steps of 3 micro-batches forwarded pair by pair (max_tokens_per_batch = 1:
# 6 forwards a step); the latter's losses equal the CPU's within 1e-4
sed 's/^{/{ "system_message": "Rate the answer.",/' configs/model/tiny.json > "$d/short.json"
short=(init_model_config="$d/short.json" init_bias_model_config="$d/short.json")
EMU_STATS=1 train robust cuda "$d/reads6" "${short[@]}" gradient_accumulation_steps=3 max_tokens_per_batch=1
fw=$(grep -o '"forwards":[0-9]*' "$d/reads6/metrics.jsonl" | cut -d: -f2 | sort -u | tr '\n' ' ')
[ "$fw" = "6 " ] || { echo "FAIL the pair-by-pair run did not forward 6 times a step: $fw"; exit 1; }
if [ $sanitized = 0 ]; then
    EMU_STATS=1 train robust cuda "$d/reads1" "${short[@]}"
    train robust cpu "$d/reads6_cpu" "${short[@]}" gradient_accumulation_steps=3 max_tokens_per_batch=1
    reads() { sed -n 's/.* \([0-9]*\) device-to-host copies.*/\1/p' "$1.log"; }
    r1=$(reads "$d/reads1") r6=$(reads "$d/reads6")
    echo "robust: device-to-host copies over 2 steps: $r1 with 1 forward a step, $r6 with ${fw% } (3 micro-batches)"
    [ -n "$r1" ] && [ "$r1" = "$r6" ] || { echo "FAIL the host reads grow with the forwards of a step"; exit 1; }
    w=$(paste <(losses "$d/reads6_cpu") <(losses "$d/reads6") | worst)
    echo "robust, 3 micro-batches pair by pair: per-step loss cpu vs cuda (emulated): worst rel $w"
    awk -v w="$w" 'BEGIN { exit !(w <= 1e-4) }' || { echo "FAIL pair-by-pair losses differ"; exit 1; }
fi

# LoRA (adapters on the LLM and the ViT, dropout on: the masks are drawn on the host): the
# adapter GEMMs go through the device's op table like every other linear
# (padded rows on both sides: the dropout masks are drawn per computed row)
lora=(lora_r=4 lora_alpha=8 lora_dropout=0.1 lora_target_modules=q_proj,v_proj,down_proj,qkv,fc1
      share_prefix=false packing=false)
if [ $sanitized = 0 ]; then
train standard cpu "$d/lora_cpu" "${lora[@]}"
train standard cuda "$d/lora_gpu" "${lora[@]}"
w=$(paste <(losses "$d/lora_cpu") <(losses "$d/lora_gpu") | worst)
echo "lora: per-step loss cpu vs cuda (emulated): worst rel $w"
[ "$(losses "$d/lora_gpu" | wc -l)" = 2 ] || { echo "FAIL lora: logged steps"; exit 1; }
awk -v w="$w" 'BEGIN { exit !(w <= 1e-4) }' || { echo "FAIL lora losses differ"; exit 1; }
aw=$(paste <(od -An -v -f -w4 "$d/lora_cpu/checkpoint-last/adapter_model.safetensors" | tail -n +2 | awk 'NF') \
           <(od -An -v -f -w4 "$d/lora_gpu/checkpoint-last/adapter_model.safetensors" | tail -n +2 | awk 'NF') | worst)
echo "lora: final adapters cpu vs cuda: worst rel $aw"
awk -v w="$aw" 'BEGIN { exit !(w <= 1e-4) }' || { echo "FAIL lora adapters differ"; exit 1; }
fi
# shortcut_aware with the bias model on the main model's base tensors on the device
"$emu" init --config configs/model/tiny.json --out "$d/lora_base" --seed 4 >/dev/null
shared=(model_name_or_path="$d/lora_base" bias_model_path="$d/lora_base")
train robust cpu "$d/lsh_cpu" "${lora[@]}" "${shared[@]}"
train robust cuda "$d/lsh_gpu" "${lora[@]}" "${shared[@]}"
grep -q "shares the main model's frozen base" "$d/lsh_gpu.log" || { echo "FAIL lora: no shared base"; exit 1; }
w=$(paste <(losses "$d/lsh_cpu") <(losses "$d/lsh_gpu") | worst)
echo "lora, shared bias base: per-step loss cpu vs cuda (emulated): worst rel $w"
awk -v w="$w" 'BEGIN { exit !(w <= 1e-4) }' || { echo "FAIL lora shared losses differ"; exit 1; }
aw=$(paste <(od -An -v -f -w4 "$d/lsh_cpu/checkpoint-last/bias/adapter_model.safetensors" | tail -n +2 | awk 'NF') \
           <(od -An -v -f -w4 "$d/lsh_gpu/checkpoint-last/bias/adapter_model.safetensors" | tail -n +2 | awk 'NF') | worst)
echo "lora, shared bias base: final bias adapters cpu vs cuda: worst rel $aw"
awk -v w="$aw" 'BEGIN { exit !(w <= 1e-4) }' || { echo "FAIL lora shared bias adapters differ"; exit 1; }

# precision = bf16: the GEMMs read bf16 copies of the weights that the fused AdamW kernel
# rewrites (kernels/cuda/bf16.cu). The emulator's GEMM over bf16 operands and its FAST_16BF
# GEMM over the fp32 weights (what matmul.cu falls back to; EMU_LT_REJECT=bf16io) round the
# same inputs and sum exactly, so the two runs end bitwise equal unless a copy lags its fp32
# master weights (warmup_ratio = 0: the first update is not a zero-lr step, so a lagging
# copy would change step 2); the losses stay within 1e-2 of the fp32 CPU run
train robust cpu "$d/robust_cpu_w0" warmup_ratio=0
train robust cuda "$d/bf16" precision=bf16 warmup_ratio=0
grep -q "bf16 copy" "$d/bf16.log" || { echo "FAIL precision=bf16 made no bf16 weight copy"; exit 1; }
grep -q "activations stored in bf16" "$d/bf16.log" || { echo "FAIL precision=bf16 kept fp32 activations"; exit 1; }
if [ $sanitized = 0 ]; then # the twin repeats code paths the sanitized run already covers
    (export EMU_LT_REJECT=bf16io; train robust cuda "$d/bf16_fast" precision=bf16 warmup_ratio=0)
    cmp <(weights "$d/bf16/checkpoint-last") <(weights "$d/bf16_fast/checkpoint-last") ||
        { echo "FAIL bf16: GEMMs over the weight copies differ from GEMMs over the master weights"; exit 1; }
    echo "robust bf16: weight-copy GEMMs bitwise equal to FAST_16BF over the master weights"
fi
w=$(paste <(losses "$d/robust_cpu_w0") <(losses "$d/bf16") | worst)
echo "robust bf16: losses vs fp32 CPU (same schedule) worst rel $w"
awk -v w="$w" 'BEGIN { exit !(w <= 1e-2) }' || { echo "FAIL bf16 losses far from fp32"; exit 1; }

# resume on the device: stop after step 1 (checkpoint-1), resume, compare with the full run
(export MMRM_DEBUG_ABORT_AT_MICRO=1; train standard cuda "$d/resume" > /dev/null) && {
    echo "FAIL the run meant to stop at step 2 finished"; exit 1; }
[ -d "$d/resume/checkpoint-1" ] || { echo "FAIL no checkpoint-1 before the stop"; exit 1; }
train standard cuda "$d/resume" resume=true overwrite_output_dir=false
cmp <(weights "$d/resume/checkpoint-last") <(weights "$d/standard_gpu/checkpoint-last") ||
    { echo "FAIL resumed device run differs from the uninterrupted one"; exit 1; }
echo "resume on the device: bitwise equal to the uninterrupted device run"

# MMRM_NCCL=1: one process through the NCCL path (buckets on the side stream, ncclAllReduce
# avg over one rank) ends bitwise where the plain device run ends
if [ $sanitized = 0 ] && grep -q "nccl" <<<"$("$emu" version)"; then
    (export MMRM_NCCL=1; train robust cuda "$d/nccl1" grad_bucket_mb=0.004)
    grep -q "through NCCL, overlapped with backward" "$d/nccl1.log" || { echo "FAIL MMRM_NCCL=1 did not use NCCL"; exit 1; }
    cmp <(weights "$d/nccl1/checkpoint-last") <(weights "$d/robust_gpu/checkpoint-last") ||
        { echo "FAIL the 1-rank NCCL run differs from the plain device run"; exit 1; }
    echo "1 rank through NCCL (MMRM_NCCL=1): bitwise equal to the plain device run"
fi

# data parallel on the device: 2 ranks x 1 pair (device = auto: both on the one emulated GPU) (gradients staged through the host and MPI
# in a build without NCCL) equal 1 rank x 2 pairs, per-step losses within 1e-5
if command -v mpirun > /dev/null && grep -q "multi-process: mpi" <<<"$("$emu" version)"; then
    (export OMPI_MCA_rmaps_base_oversubscribe=1
     mpirun --allow-run-as-root --oversubscribe -np 2 "$emu" train configs/scratch_standard.ini \
        dataset_path="$d/data/train.jsonl" eval_dataset_path= output_dir="$d/two" max_steps=2 \
        per_device_train_batch_size=1 logging_steps=1 save_steps=0 device=auto precision=fp32 \
        2> "$d/two.log") || { tail -n 20 "$d/two.log"; exit 1; }
    grep -q "x 2 ranks" "$d/two.log" || { echo "FAIL the 2-rank run did not run on 2 ranks"; exit 1; }
    w=$(paste <(losses "$d/standard_gpu") <(losses "$d/two") | worst)
    echo "2 ranks x 1 pair vs 1 rank x 2 pairs on the device: worst rel $w"
    awk -v w="$w" 'BEGIN { exit !(w <= 1e-5) }' || { echo "FAIL 2-rank device run differs"; exit 1; }
    # the NCCL path (the emulated build has NCCL over MPI, tests/cuda_emu/nccl_emu.c): two
    # emulated GPUs, one per rank; gradients averaged in buckets (~4 KiB here: dozens) by
    # ncclAllReduce on the second stream, started during backward; both algorithms equal
    # 1 rank x 2 pairs within 1e-5 (losses and final weights)
    for algo in robust; do # two stores (main and bias): what the single-store run does and more
        (export OMPI_MCA_rmaps_base_oversubscribe=1 EMU_DEVICES=2
         mpirun --allow-run-as-root --oversubscribe -np 2 "$emu" train "configs/scratch_$algo.ini" \
            dataset_path="$d/data/train.jsonl" eval_dataset_path= output_dir="$d/nccl_$algo" max_steps=2 \
            per_device_train_batch_size=1 logging_steps=1 save_steps=0 device=cuda precision=fp32 \
            grad_bucket_mb=0.004 2> "$d/nccl_$algo.log") || { tail -n 20 "$d/nccl_$algo.log"; exit 1; }
        grep -q "through NCCL, overlapped with backward" "$d/nccl_$algo.log" ||
            { echo "FAIL $algo: the NCCL path was not taken"; tail -n 20 "$d/nccl_$algo.log"; exit 1; }
        line=$(grep "bucket(s) per step started during backward" "$d/nccl_$algo.log")
        awk '{ for (i = 1; i <= NF; i++) if ($i == "of") { early = $(i - 1); all = $(i + 1) } }
             END { exit !(all >= 10 && early >= 0.75 * all) }' <<<"$line" ||
            { echo "FAIL $algo: buckets did not start during backward: $line"; exit 1; }
        w=$(paste <(losses "$d/${algo}_gpu") <(losses "$d/nccl_$algo") | worst)
        ww=$(paste <(weights "$d/${algo}_gpu/checkpoint-last") <(weights "$d/nccl_$algo/checkpoint-last") | worst)
        echo "$algo: 2 ranks (NCCL, ${line#mmrm: gradient all-reduce: }) vs 1 rank: losses worst rel $w, weights $ww"
        awk -v w="$w" -v ww="$ww" 'BEGIN { exit !(w <= 1e-5 && ww <= 1e-5) }' ||
            { echo "FAIL $algo: the NCCL 2-rank device run differs"; exit 1; }
    done
    # ZeRO-1 on the device (NCCL reduce-scatter into the shards, AdamW on the shard, NCCL
    # all-gather): equals the unsharded NCCL run within 1e-5; killed after checkpoint-1 and
    # resumed (moments gathered into the checkpoint, re-sliced) it ends bitwise where the
    # uninterrupted ZeRO-1 run ends
    zero() { # out [extra]
        local out=$1
        shift
        (export OMPI_MCA_rmaps_base_oversubscribe=1 EMU_DEVICES=2
         mpirun --allow-run-as-root --oversubscribe -np 2 "$emu" train configs/scratch_robust.ini \
            dataset_path="$d/data/train.jsonl" eval_dataset_path= output_dir="$out" max_steps=2 \
            per_device_train_batch_size=1 logging_steps=1 save_steps=1 device=cuda precision=fp32 \
            zero_stage=1 "$@" 2> "$out.log")
    }
    if [ $sanitized = 0 ]; then
    zero "$d/zero" || { tail -n 20 "$d/zero.log"; exit 1; }
    grep -q "ZeRO-1: sharded" "$d/zero.log" || { echo "FAIL ZeRO-1 was not active on the device"; exit 1; }
    w=$(paste <(losses "$d/nccl_robust") <(losses "$d/zero") | worst)
    ww=$(paste <(weights "$d/nccl_robust/checkpoint-last") <(weights "$d/zero/checkpoint-last") | worst)
    echo "robust: ZeRO-1 on 2 emulated GPUs vs unsharded NCCL: losses worst rel $w, weights $ww"
    awk -v w="$w" -v ww="$ww" 'BEGIN { exit !(w <= 1e-5 && ww <= 1e-5) }' || { echo "FAIL ZeRO-1 differs"; exit 1; }
    fi
    # with clipping active (max_grad_norm = 0.01, below every step's norm): the norm from the
    # shards' sums of squares, all-reduced by NCCL and applied on the device, equals the
    # unsharded run's (its own device-side norm) within 1e-7
    zero "$d/zclip" max_grad_norm=0.01 save_steps=0 || { tail -n 20 "$d/zclip.log"; exit 1; }
    grep -q "ZeRO-1: sharded" "$d/zclip.log" || { echo "FAIL ZeRO-1 was not active on the device (clipping run)"; exit 1; }
    (export OMPI_MCA_rmaps_base_oversubscribe=1 EMU_DEVICES=2
     mpirun --allow-run-as-root --oversubscribe -np 2 "$emu" train configs/scratch_robust.ini \
        dataset_path="$d/data/train.jsonl" eval_dataset_path= output_dir="$d/nclip" max_steps=2 \
        per_device_train_batch_size=1 logging_steps=1 save_steps=0 device=cuda precision=fp32 \
        max_grad_norm=0.01 2> "$d/nclip.log") || { tail -n 20 "$d/nclip.log"; exit 1; }
    norms() { grep -o '"grad_norm":[^,}]*' "$1/metrics.jsonl" | cut -d: -f2; }
    awk '{ if ($1 <= 0.01) bad = 1 } END { exit bad }' <(norms "$d/zclip") || { echo "FAIL the clip test did not clip"; exit 1; }
    wn=$(paste <(norms "$d/nclip") <(norms "$d/zclip") | worst)
    ww=$(paste <(weights "$d/nclip/checkpoint-last") <(weights "$d/zclip/checkpoint-last") | worst)
    echo "robust, clipping active: ZeRO-1 vs unsharded NCCL: grad norms worst rel $wn, weights $ww"
    awk -v w="$wn" -v ww="$ww" 'BEGIN { exit !(w <= 1e-7 && ww <= 1e-7) }' || { echo "FAIL ZeRO-1 clipping differs"; exit 1; }
    if [ $sanitized = 0 ]; then
    MMRM_DEBUG_ABORT_AT_MICRO=1 zero "$d/zcut" && { echo "FAIL the ZeRO-1 run meant to stop finished"; exit 1; }
    [ -d "$d/zcut/checkpoint-1" ] || { echo "FAIL no ZeRO-1 checkpoint-1"; tail -n 20 "$d/zcut.log"; exit 1; }
    zero "$d/zcut" resume=true || { tail -n 20 "$d/zcut.log"; exit 1; }
    for f in model.safetensors bias/model.safetensors optimizer.safetensors; do
        cmp "$d/zcut/checkpoint-last/$f" "$d/zero/checkpoint-last/$f" || { echo "FAIL resumed ZeRO-1 $f differs"; exit 1; }
    done
    echo "ZeRO-1 on the device resumed from checkpoint-1: bitwise equal to the uninterrupted run"
    # bf16 under ZeRO-1: each rank's AdamW rewrites its shard of the weight copy, the rest is
    # refreshed after the all-gather; bitwise equal to GEMMs over the master weights
    zero "$d/zbf16" precision=bf16 warmup_ratio=0 save_steps=0 || { tail -n 20 "$d/zbf16.log"; exit 1; }
    EMU_LT_REJECT=bf16io zero "$d/zbf16_fast" precision=bf16 warmup_ratio=0 save_steps=0 || { tail -n 20 "$d/zbf16_fast.log"; exit 1; }
    cmp <(weights "$d/zbf16/checkpoint-last") <(weights "$d/zbf16_fast/checkpoint-last") ||
        { echo "FAIL bf16 ZeRO-1: weight-copy GEMMs differ from GEMMs over the master weights"; exit 1; }
    echo "bf16 ZeRO-1 on 2 emulated GPUs: weight-copy GEMMs bitwise equal to FAST_16BF over the master weights"
    fi
    # device = cuda on 2 ranks with one GPU: rank 1 (GPU 1) fails before training while rank 0
    # would train; the job must end with rank 1's message, not leave rank 0 waiting
    rc=0
    timeout 300 mpirun --allow-run-as-root --oversubscribe -np 2 "$emu" train configs/scratch_standard.ini \
        dataset_path="$d/data/train.jsonl" eval_dataset_path= output_dir="$d/bad" max_steps=2 \
        per_device_train_batch_size=1 save_steps=0 device=cuda precision=fp32 > "$d/bad.log" 2>&1 || rc=$?
    [ "$rc" != 0 ] && [ "$rc" != 124 ] || { echo "FAIL one failing rank: exit status $rc"; exit 1; }
    grep -q "GPU 1 requested but 1 visible" "$d/bad.log" || { tail -n 20 "$d/bad.log"; exit 1; }
    echo "one rank failing before training ends the job (exit $rc) with its message"
fi

m="$d/standard_cpu/checkpoint-last"
"$emu" score --model "$m" --input "$d/data/score_input.jsonl" --output "$d/s_cpu.jsonl" --device cpu 2>/dev/null
"$emu" score --model "$m" --input "$d/data/score_input.jsonl" --output "$d/s_gpu.jsonl" --device cuda 2> "$d/s_gpu.log"
# the device shares each record's prefix (share_prefix, packing: the CUDA attention's segment
# mask) as the CPU does: fewer tokens computed than the rows hold
read -r done_t rows_t < <(grep -o '[0-9]* tokens computed for [0-9]*' "$d/s_gpu.log" | awk '{ print $1, $5 }')
[ -n "${done_t:-}" ] && [ "$done_t" -lt "$rows_t" ] ||
    { echo "FAIL score --device cuda computed ${done_t:-?} tokens for ${rows_t:-?} in the rows (no prefix sharing)"; exit 1; }
sc() { grep -o '"score":[^,}]*' "$1" | cut -d: -f2; }
[ "$(sc "$d/s_gpu.jsonl" | wc -l)" = "$(sc "$d/s_cpu.jsonl" | wc -l)" ] && [ "$(sc "$d/s_cpu.jsonl" | wc -l)" -gt 0 ] ||
    { echo "FAIL score: line counts differ"; exit 1; }
w=$(paste <(sc "$d/s_cpu.jsonl") <(sc "$d/s_gpu.jsonl") | worst)
echo "score cpu vs cuda (emulated): worst rel $w"
awk -v w="$w" 'BEGIN { exit !(w <= 1e-4) }' || { echo "FAIL scores differ"; exit 1; }
# --precision bf16: GEMMs over the bf16 weight copy; scores within 2e-2 of the CPU's fp32
"$emu" score --model "$m" --input "$d/data/score_input.jsonl" --output "$d/s_bf16.jsonl" --device cuda \
    --precision bf16 2> "$d/s_bf16.log" || { cat "$d/s_bf16.log"; exit 1; }
grep -q "bf16 GEMMs over a bf16 weight copy, bf16 activations" "$d/s_bf16.log" || { echo "FAIL score --precision bf16 made no copy or kept fp32 activations"; exit 1; }
w=$(paste <(sc "$d/s_cpu.jsonl") <(sc "$d/s_bf16.jsonl") | worst)
echo "score cuda --precision bf16 vs cpu fp32: worst rel $w"
awk -v w="$w" 'BEGIN { exit !(w <= 2e-2) }' || { echo "FAIL bf16 scores differ"; exit 1; }
if "$emu" score --model "$m" --input "$d/data/score_input.jsonl" --output "$d/s_x.jsonl" --device cpu \
    --precision bf16 2> "$d/s_x.log"; then echo "FAIL --precision bf16 on the CPU was accepted"; exit 1; fi
grep -q "needs a GPU" "$d/s_x.log" || { cat "$d/s_x.log"; exit 1; }
[ ! -e "$d/s_x.jsonl" ] || { echo "FAIL a refused run created its output"; exit 1; }
