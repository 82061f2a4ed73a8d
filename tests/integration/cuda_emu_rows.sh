#!/usr/bin/env bash
# The decoder's last layer at the rewarded rows on the CUDA backend (attention_rows,
# kernels/cuda/attention_rows.cu), end to end on the CPU emulator (build/emu_mmrm, the
# emulated backend; tests/cuda_emu): with share_prefix and packing (the defaults) and with
# each alone, 2 training steps with device = cuda launch the rows kernels (EMU_KERNELS) and
# give device = cpu's per-step losses and final weights within 1e-4 relative (the tolerance
# of cuda_emu_train.sh); with both off no rows kernel runs; precision = bf16 (the rows
# kernels' bf16 rounding) stays within 1e-2 of the fp32 CPU losses; `score --device cuda`
# launches them and gives the CPU's scores within 1e-4 (2e-2 with --precision bf16).
set -euo pipefail
# Under ASan/UBSan (build/san, where the emulator runs ~3x slower) a representative subset:
# both layouts on (standard) and prefix sharing alone (shortcut-aware), the bf16 run and
# scoring; packing alone and the no-rows-kernel run (whose full attention op the sanitized
# cuda_emu_train.sh runs) only in the plain pass, which runs every case.
variants=("standard on" "robust share packing=false" "robust pack share_prefix=false")
sanitized=0
case "$MMRM" in */san/*) sanitized=1; variants=("standard on" "robust share packing=false") ;; esac
emu="$(dirname "$MMRM")/emu_mmrm"
[ -x "$emu" ] || { echo "FAIL: $emu is missing (make $emu)"; exit 1; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$emu" synth --out "$d/data" --pairs 24 --seed 5 > /dev/null 2> "$d/synth.log" || { cat "$d/synth.log"; exit 1; }

train() { # algo device out [extra]
    local algo=$1 dev=$2 out=$3
    shift 3
    EMU_KERNELS=1 "$emu" train "configs/scratch_$algo.ini" dataset_path="$d/data/train.jsonl" \
        eval_dataset_path= output_dir="$out" max_steps=2 per_device_train_batch_size=2 \
        logging_steps=1 save_steps=0 device="$dev" precision=fp32 "$@" 2> "$out.log" ||
        { tail -n 20 "$out.log"; exit 1; }
}
losses() { grep -o '"loss":[^,}]*' "$1/metrics.jsonl" | cut -d: -f2; }
# largest |a - b| / max(1, |a|) over paired numbers on stdin
worst() { awk '{ x = $1 - $2; if (x < 0) x = -x; m = $1 < 0 ? -$1 : $1; if (m < 1) m = 1; if (x / m > w) w = x / m } END { printf "%.3g", w + 0 }'; }
weights() { od -An -v -f -w4 "$1/model.safetensors" | tail -n +2 | awk 'NF'; }
# launches of the rows kernels in a log (EMU_KERNELS lines)
rows_launches() { grep -o 'kernel rows_[a-z]*_kernel[^:]*attention_rows.cu:[0-9]*): [0-9]*' "$1" | awk '{ n += $NF } END { print n + 0 }'; }
need_rows() { # log what
    for k in rows_fwd_kernel rows_dq_kernel rows_dkdv_kernel rows_rowdot_kernel; do
        grep -q "kernel $k" "$1" || { echo "FAIL $2: $k never launched"; exit 1; }
    done
}

for v in "${variants[@]}"; do
    set -- $v
    algo=$1 name=$2
    shift 2
    train "$algo" cpu "$d/${name}_cpu" "$@"
    train "$algo" cuda "$d/${name}_gpu" "$@"
    need_rows "$d/${name}_gpu.log" "$name"
    [ "$(losses "$d/${name}_gpu" | wc -l)" = 2 ] || { echo "FAIL $name: logged steps"; exit 1; }
    w=$(paste <(losses "$d/${name}_cpu") <(losses "$d/${name}_gpu") | worst)
    ww=$(paste <(weights "$d/${name}_cpu/checkpoint-last") <(weights "$d/${name}_gpu/checkpoint-last") | worst)
    echo "$algo $name: $(rows_launches "$d/${name}_gpu.log") rows-kernel launches; loss cpu vs cuda worst rel $w, final weights $ww"
    awk -v w="$w" -v x="$ww" 'BEGIN { exit !(w <= 1e-4 && x <= 1e-4) }' || { echo "FAIL $name differs"; exit 1; }
done

if [ $sanitized = 0 ]; then
    train standard cuda "$d/off_gpu" share_prefix=false packing=false
    [ "$(rows_launches "$d/off_gpu.log")" = 0 ] || { echo "FAIL share_prefix=false packing=false ran rows kernels"; exit 1; }
    grep -q "kernel attn_fwd_kernel" "$d/off_gpu.log" || { echo "FAIL off: no EMU_KERNELS report"; exit 1; }
    echo "share_prefix=false packing=false: no rows-kernel launch"
fi

# the tiny model's LLM with head dim 64 (hidden 128, 2 heads), where a bf16 precision takes
# the tensor-core path of the full op and the rows kernels' bf16 rounding
sed -e 's/"hidden_size": 64,/"hidden_size": 128,/' -e 's/"num_attention_heads": 4,/"num_attention_heads": 2,/' \
    configs/model/tiny.json > "$d/hd64.json"
grep -q '"hidden_size": 128' "$d/hd64.json" || { echo "FAIL: configs/model/tiny.json changed shape"; exit 1; }
train robust cpu "$d/w0_cpu" warmup_ratio=0 init_model_config="$d/hd64.json"
train robust cuda "$d/bf16_gpu" precision=bf16 warmup_ratio=0 init_model_config="$d/hd64.json"
need_rows "$d/bf16_gpu.log" bf16
grep -q "kernel rows_rowdot_kernel<true>" "$d/bf16_gpu.log" || { echo "FAIL bf16: the rows kernels did not round to bf16"; exit 1; }
w=$(paste <(losses "$d/w0_cpu") <(losses "$d/bf16_gpu") | worst)
echo "robust bf16, head dim 64: loss vs fp32 cpu worst rel $w"
awk -v w="$w" 'BEGIN { exit !(w <= 1e-2) }' || { echo "FAIL bf16 losses far from fp32"; exit 1; }

m="$d/on_cpu/checkpoint-last"
sc() { grep -o '"score":[^,}]*' "$1" | cut -d: -f2; }
"$emu" score --model "$m" --input "$d/data/score_input.jsonl" --output "$d/s_cpu.jsonl" --device cpu 2>/dev/null
for p in fp32 bf16; do
    EMU_KERNELS=1 "$emu" score --model "$m" --input "$d/data/score_input.jsonl" --output "$d/s_$p.jsonl" \
        --device cuda --precision $p 2> "$d/s_$p.log" || { tail -n 20 "$d/s_$p.log"; exit 1; }
    grep -q "kernel rows_fwd_kernel" "$d/s_$p.log" || { echo "FAIL score $p: no rows kernel"; exit 1; }
    [ "$(sc "$d/s_$p.jsonl" | wc -l)" = "$(sc "$d/s_cpu.jsonl" | wc -l)" ] && [ "$(sc "$d/s_cpu.jsonl" | wc -l)" -gt 0 ] ||
        { echo "FAIL score $p: line counts differ"; exit 1; }
    w=$(paste <(sc "$d/s_cpu.jsonl") <(sc "$d/s_$p.jsonl") | worst)
    tol=$([ $p = fp32 ] && echo 1e-4 || echo 2e-2)
    echo "score --device cuda --precision $p vs cpu: worst rel $w (tol $tol)"
    awk -v w="$w" -v t="$tol" 'BEGIN { exit !(w <= t) }' || { echo "FAIL score $p differs"; exit 1; }
done
echo "cuda_emu_rows: all checks passed"
