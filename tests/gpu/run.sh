#!/usr/bin/env bash
# tests/gpu/run.sh - every GPU check in one script, for a short device window (about 8
# minutes; BUDGET=seconds, default 480). Cheapest and most informative first; every step
# runs under `timeout`, clipped to what is left of the budget (a step that no longer fits
# is listed as skipped); a trap writes $OUT/summary.txt whatever happens (a failure, a
# timeout, Ctrl-C, a kill of the whole script: the lines written so far stay, the last
# line says how it ended). Logs of each step: $OUT/NAME.log. Default OUT=build/gpu_out.
#
# It runs a CUDA build made here, not on the GPU machine (nvcc there costs minutes):
#     make -j2 cuda CUDA_ARCHS=90 NCCL=1 MPI=0          # H100/H200 only; NCCL for step 9
#     (run with carry: build/mmrm build/gpu_parity build/bench_cuda build/bench_step
#      build/lib build/.flags; the repository itself travels as the working tree)
# build/lib holds the shared libraries a bare machine lacks (cJSON, inih, stb, ...); the
# CUDA runtime, cuBLAS(Lt), NCCL and cuDNN come from the toolkit or from PyTorch's pip wheels
# (the nvidia.* packages), found through python3 and put on LD_LIBRARY_PATH. BIN=dir points
# at another folder of binaries (tests/integration/gpu_script.sh runs the control flow with
# stubs there).
#
# Steps (summary line per step: ok / FAIL / TIMEOUT / skipped, seconds, the key numbers):
#   0. device and libraries: nvidia-smi; ldd of the binaries; the CUDA libraries the
#      process actually loads (LD_DEBUG); PyTorch's CUDA/cuDNN/NCCL versions
#   1. build/gpu_parity --precision fp32: every op against the CPU, the model's rewards and
#      gradients (1e-5)
#   2. build/bench_cuda: GEMM/norm/attention throughput, the reward-model step
#   3. the same training step in PyTorch (bench/torch_baseline.py: transformers' Qwen2 with
#      sdpa, bf16 autocast, fused AdamW) and in mmrm (build/bench_step), InternVL2-1B shape,
#      frozen ViT, 1 tile + 512 text tokens, 8 pairs/step, standard and shortcut-aware;
#      bench_step with CUDA graphs off and on (--cuda-graphs both: a row each, 3 timed steps
#      after 2 warm-up), the pairs/s of both in the summary
#   4. tests/gpu/attention.sh when present (ATTENTION_SCRIPT= empty skips it: the control-flow
#      test, whose stubs time the other steps)
#   5. build/gpu_parity --precision bf16 (kernels, FA2 attention, model)
#   6. `mmrm train` on the GPU (fp32, 50 steps, both algorithms) against the CPU losses
#      precomputed in tests/gpu/cpu_losses.tsv (tests/gpu/make_cpu_losses.sh), within 1e-4;
#      bf16 runs reported
#   7. compute-sanitizer racecheck and synccheck on the kernels with shared memory
#      (attention, losses and optimizer reductions, tensor-core primitives)
#   8. compute-sanitizer memcheck on 3 training steps
#   9. NCCL at world size 1 (builds with NCCL): the bucketed path against the plain run
# Exit status: 0 every check passed, 1 some failed (or timed out), 2 no usable GPU, 3 no
# CUDA build to run.
set -u
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-build/gpu_out}
BIN=${BIN:-build}
BUDGET=${BUDGET:-480}
mkdir -p "$OUT"
summary="$OUT/summary.txt"
t0=$SECONDS
fails=()
ended="aborted (an unexpected exit)"
status=1
note() { echo "$*" >> "$summary"; echo "$*"; }
echo "# mmrm GPU checks, $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET}s" > "$summary"

finish() {
    trap - EXIT INT TERM
    {
        echo "failed: ${#fails[@]}${fails[*]:+ (${fails[*]})}"
        echo "ended: $ended after $((SECONDS - t0))s"
    } >> "$summary"
    echo "summary: $summary"
    exit "$status"
}
child=""
trap finish EXIT
# steps run in the background under `wait`, so a signal is handled at once (bash defers traps
# while a foreground child runs); the running step's timeout, and through it its process
# group, is stopped with it
trap 'ended="interrupted (signal)"; status=1; [ -n "$child" ] && kill -TERM "$child" 2> /dev/null; exit' INT TERM

left() { echo $((BUDGET - (SECONDS - t0))); }

# run NAME LIMIT CMD...: CMD under timeout (LIMIT seconds, at most what is left), output in
# $OUT/NAME.log; prints the result word (ok, FAIL rc N, TIMEOUT, skipped) into $res and
# the seconds into $secs; failures are recorded
run() {
    local name=$1 limit=$2 rc s
    shift 2
    local l
    l=$(left)
    secs=0
    if [ "$l" -lt 10 ]; then
        res="skipped (out of time)"
        fails+=("$name:skipped")
        return 1
    fi
    [ "$limit" -gt "$l" ] && limit=$l
    s=$SECONDS
    echo "=== $name (limit ${limit}s, $((SECONDS - t0))s elapsed)"
    timeout -k 5 "$limit" "$@" > "$OUT/$name.log" 2>&1 &
    child=$!
    wait "$child"
    rc=$?
    child=""
    secs=$((SECONDS - s))
    case $rc in
    0) res=ok ;;
    124 | 137) res="TIMEOUT after ${limit}s"; fails+=("$name:timeout") ;;
    *) res="FAIL rc $rc"; fails+=("$name") ;;
    esac
    tail -n 3 "$OUT/$name.log"
    return $rc
}
# the step's summary line
line() { note "- $1: $res (${secs}s)${2:+; $2}"; }

# ---------------------------------------------------------------- 0. device and libraries
if ! smi=$(timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>&1) ||
    [ -z "$smi" ]; then
    note "device: no usable GPU (nvidia-smi missing or failing: $(echo "$smi" | head -n 1))"
    ended="no GPU"
    status=2
    exit
fi
note "device: $(echo "$smi" | head -n 1)"
# shellcheck source=tests/gpu/nvidia_libs.sh
. tests/gpu/nvidia_libs.sh
libdirs=$(nvidia_lib_dirs python3 nvidia.cuda_runtime nvidia.cublas nvidia.nccl nvidia.cudnn nvidia.cu13)
[ -d "$BIN/lib" ] && libdirs="$(cd "$BIN/lib" && pwd)$libdirs"
export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    for b in mmrm gpu_parity bench_cuda bench_step; do
        echo "== ldd $BIN/$b"
        ldd "$BIN/$b" 2>&1 | grep -E "cuda|cublas|nccl|cudnn|not found|not a dynamic"
    done
    echo "== loaded by $BIN/mmrm version (LD_DEBUG=libs)"
    LD_DEBUG=libs timeout 20 "$BIN/mmrm" version 2>&1 | grep -E "calling init: .*(cuda|cublas|nccl|cudnn)" | sed 's/.*calling init: //' | sort -u
    echo "== $BIN/mmrm version"
    timeout 20 "$BIN/mmrm" version 2>&1
    echo "== PyTorch"
    timeout 60 python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'nccl', torch.cuda.nccl.version() if torch.cuda.is_available() else '-', 'transformers', transformers.__version__)" 2>&1 | tail -n 1
    echo "== compute-sanitizer"
    command -v compute-sanitizer && compute-sanitizer --version 2>&1 | tail -n 1
} > "$OUT/libraries.txt" 2>&1
note "loaded: $(sed -n '/^== loaded/,/^==/p' "$OUT/libraries.txt" | grep -v '^==' | xargs -r -n1 basename | tr '\n' ' ')"
note "missing libraries: $(grep -c 'not found' "$OUT/libraries.txt") (details in libraries.txt)"
note "pytorch: $(sed -n '/^== PyTorch/{n;p}' "$OUT/libraries.txt")"
if ! grep -q MMRM_CUDA "$BIN/.flags" 2> /dev/null || [ ! -x "$BIN/gpu_parity" ] || [ ! -x "$BIN/mmrm" ]; then
    note "no CUDA build in $BIN: build here with 'make -j2 cuda CUDA_ARCHS=90 NCCL=1 MPI=0' and carry build/mmrm build/gpu_parity build/bench_cuda build/bench_step build/lib build/.flags"
    ended="no CUDA build"
    status=3
    exit
fi
note "build: $(timeout 20 "$BIN/mmrm" version 2>&1 | tr '\n' ';' | cut -c1-200)"

parity_line() { # the parity log's verdict and worst ratio
    echo "$(tail -n 1 "$OUT/$1.log"); $(grep -E '^== precision .*worst' "$OUT/$1.log" | sed 's/^== //' | tr '\n' ' ')"
    grep "^FAIL" "$OUT/$1.log" | head -n 10 | sed 's/^/    /' >> "$summary"
}

# ---------------------------------------------------------------- 1. fp32 parity
run parity_fp32 150 "$BIN/gpu_parity" --precision fp32
line "kernel + model parity fp32 (gpu_parity)" "$(parity_line parity_fp32)"

# ---------------------------------------------------------------- 2. kernel benchmarks
run bench_cuda 120 "$BIN/bench_cuda"
line "bench_cuda"
grep -A4 -E "^reward model step" "$OUT/bench_cuda.log" | sed 's/^/    /' >> "$summary"

# ---------------------------------------------------------------- 3. PyTorch vs mmrm, one step
shape=(--pairs 8 --text 512 --tiles 1 --steps 5 --warmup 2)
if timeout 60 python3 -c "import torch, transformers; assert torch.cuda.is_available()" > /dev/null 2>&1; then
    run torch_baseline 200 python3 bench/torch_baseline.py --device cuda "${shape[@]}"
    line "PyTorch baseline (bench/torch_baseline.py)"
    grep -E "^(objective|standard|shortcut_aware|  )" "$OUT/torch_baseline.log" | sed 's/^/    /' >> "$summary"
else
    note "- PyTorch baseline: skipped (python3 with torch + transformers and a visible GPU not found)"
fi
if [ -x "$BIN/bench_step" ]; then
    run bench_step 150 "$BIN/bench_step" --device cuda --precision bf16 "${shape[@]}" --steps 3 --warmup 2 --cuda-graphs both
    # pairs/s of each objective with graphs off and on (rows "... off" / "... on: C/R/E")
    graphs=$(awk '/^(standard|shortcut_aware) / { m = / on: / ? "on" : "off"; r[$1 " " m] = $3; if (!($1 in seen)) { seen[$1] = 1; o[++n] = $1 } }
                  END { for (i = 1; i <= n; i++) { k = o[i]; printf "%s%s %s -> %s pairs/s", (i > 1 ? "; " : ""), k, r[k " off"] ? r[k " off"] : "?", r[k " on"] ? r[k " on"] : "?"
                                                   if (r[k " off"] > 0 && r[k " on"] > 0) printf " (x%.2f)", r[k " on"] / r[k " off"] } }' "$OUT/bench_step.log")
    line "mmrm step (bench_step, bf16)" "cuda graphs off -> on: ${graphs:-no rows}"
    grep -E "^(objective|standard|shortcut_aware|  )" "$OUT/bench_step.log" | sed 's/^/    /' >> "$summary"
else
    res="FAIL (not built)"; secs=0; fails+=(bench_step); line "mmrm step (bench_step)"
fi

# ---------------------------------------------------------------- 4. attention (another script)
attention_script=${ATTENTION_SCRIPT-tests/gpu/attention.sh}
if [ -n "$attention_script" ] && [ -f "$attention_script" ]; then
    run attention 120 env BIN="$BIN" OUT="$OUT/attention" bash "$attention_script"
    line "tests/gpu/attention.sh" "$(tail -n 1 "$OUT/attention.log")"
fi

# ---------------------------------------------------------------- 5. bf16 parity
run parity_bf16 150 "$BIN/gpu_parity" --precision bf16
line "kernel + model parity bf16 (gpu_parity)" "$(parity_line parity_bf16)"

# ---------------------------------------------------------------- 6. training vs CPU losses
ref=tests/gpu/cpu_losses.tsv
data="$OUT/data"
synth_args=$(sed -n 's/^# synth: //p' "$ref" 2> /dev/null)
train_args=$(sed -n 's/^# train: //p' "$ref" 2> /dev/null)
gpu_train() { # algo precision -> $OUT/train_algo_precision
    local d="$OUT/train_$1_$2"
    rm -rf "$d"
    # shellcheck disable=SC2086
    "$BIN/mmrm" train "configs/scratch_$1.ini" dataset_path="$data/train.jsonl" output_dir="$d" $train_args \
        device=cuda precision="$2"
}
losses() { grep -o '"loss":[^,}]*' "$1/metrics.jsonl" 2> /dev/null | cut -d: -f2; }
if [ -z "$train_args" ]; then
    res="FAIL ($ref missing or without its arguments)"; secs=0; fails+=(train); line "training vs CPU"
else
    # shellcheck disable=SC2086
    run synth 60 "$BIN/mmrm" synth --out "$data" $synth_args
    for algo in standard robust; do
        run "train_${algo}_fp32" 90 bash -c "$(declare -f gpu_train); BIN='$BIN' OUT='$OUT' data='$data' train_args='$train_args' gpu_train $algo fp32"
        paste <(awk -v a="$algo" '$1 == a { print $3 }' "$ref") <(losses "$OUT/train_${algo}_fp32") > "$OUT/loss_${algo}_fp32.tsv"
        # every step's loss within 1e-4 relative to max(1, |loss|), all 50 steps present
        cmp=$(awk 'NF == 2 { d = $1 - $2; if (d < 0) d = -d; m = $1 < 0 ? -$1 : $1; if (m < 1) m = 1; if (d / m > w) w = d / m; n++ }
                   END { printf "%d %.2e", n, w + 0 }' "$OUT/loss_${algo}_fp32.tsv")
        set -- $cmp
        if [ "$res" = ok ] && ! awk -v n="$1" -v w="$2" 'BEGIN { exit !(n == 50 && w <= 1e-4) }'; then
            res="FAIL (parity)"; fails+=("train_${algo}_fp32:parity")
        fi
        line "train $algo fp32, GPU vs precomputed CPU losses" "$1 steps compared, worst relative difference $2"
        run "train_${algo}_bf16" 90 bash -c "$(declare -f gpu_train); BIN='$BIN' OUT='$OUT' data='$data' train_args='$train_args' gpu_train $algo bf16"
        paste <(awk -v a="$algo" '$1 == a { print $3 }' "$ref") <(losses "$OUT/train_${algo}_bf16") > "$OUT/loss_${algo}_bf16.tsv"
        line "train $algo bf16 (reported)" "cpu/gpu loss at step 1: $(head -n 1 "$OUT/loss_${algo}_bf16.tsv" | tr '\t' /), step 50: $(sed -n 50p "$OUT/loss_${algo}_bf16.tsv" | tr '\t' /); $(grep -o 'activation arena per rank: .*' "$OUT/train_${algo}_bf16.log" 2> /dev/null | head -n 1)"
    done
fi

# ---------------------------------------------------------------- 7-8. compute-sanitizer
if command -v compute-sanitizer > /dev/null; then
    for tool in racecheck synccheck; do
        for group in attention loss mma; do
            run "${tool}_$group" 60 compute-sanitizer --tool "$tool" --error-exitcode 9 "$BIN/gpu_parity" --quick \
                --precision both --only "$group"
            line "compute-sanitizer $tool, gpu_parity --only $group" "$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/${tool}_$group.log" | tail -n 1)"
        done
    done
    run memcheck 120 compute-sanitizer --tool memcheck --error-exitcode 9 "$BIN/mmrm" train configs/scratch_robust.ini \
        dataset_path="$data/train.jsonl" eval_dataset_path= output_dir="$OUT/memcheck" max_steps=3 save_steps=0 \
        report_to=none device=cuda precision=bf16
    line "compute-sanitizer memcheck, 3 training steps (robust, bf16)" "$(grep 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -n 1)"
else
    note "- compute-sanitizer: not installed (racecheck, synccheck, memcheck not run)"
fi

# ---------------------------------------------------------------- 9. NCCL at world size 1
if timeout 20 "$BIN/mmrm" version 2>&1 | grep -q nccl; then
    run nccl1 90 env MMRM_NCCL=1 "$BIN/mmrm" train configs/scratch_robust.ini dataset_path="$data/train.jsonl" \
        output_dir="$OUT/train_nccl1" $train_args device=cuda precision=fp32
    w=$(paste <(losses "$OUT/train_robust_fp32") <(losses "$OUT/train_nccl1") |
        awk 'NF == 2 { d = $1 - $2; if (d < 0) d = -d; if (d > w) w = d; n++ } END { printf "%d %.2e", n, w + 0 }')
    set -- $w
    if [ "$res" = ok ] && ! awk -v n="$1" -v w="$2" 'BEGIN { exit !(n == 50 && w <= 1e-6) }'; then
        res="FAIL (parity)"; fails+=("nccl1:parity")
    fi
    line "NCCL world size 1 vs the plain GPU run (robust fp32)" "$1 steps, worst loss difference $2"
else
    note "- NCCL: this build has no NCCL (make cuda NCCL=1)"
fi

ended="completed"
[ ${#fails[@]} = 0 ] && status=0 || status=1
