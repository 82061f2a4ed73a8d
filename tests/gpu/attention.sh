#!/usr/bin/env bash
# tests/gpu/attention.sh - issue 19's attention targets in one device call (under 5 minutes on
# an H100/H200): the kernel lab (`build/bench_cuda --only attention`: mmrm fp32, mmrm FA2,
# cuDNN, checks against the CPU and FA2 vs cuDNN, then TFLOP/s at the model shapes) and
# PyTorch's scaled_dot_product_attention (bench/torch_sdpa.py, flash and cuDNN backends) at
# the same shapes. Every step runs under `timeout`; $OUT/summary.txt (default
# build/gpu_attention) is written whatever happens: device, libraries (ldd of bench_cuda,
# the libcudnn files the process loaded), the tables, and the targets at head dim 128,
# T >= 1024: FA2 forward >= 80% and backward >= 70% of cuDNN, forward >= 300 TFLOP/s (H200).
# Then gpu_parity's bf16 attention groups when build/gpu_parity is carried too (cuDNN's native
# bf16 entries vs its staged ones and FA2: tests/gpu/parity_attention.c).
# Build: a carried CUDA build (build/bench_cuda with build/.flags naming MMRM_CUDA; build it
# here with `make cuda MPI=0` and carry build/bench_cuda, build/gpu_parity, build/lib, build/.flags), else
# `make CUDA=1 MPI=0 build/bench_cuda build/gpu_parity` on the machine. TORCH_PYTHON: the interpreter with
# torch (default python3; its torch part is skipped when torch is missing). tests/gpu/run.sh
# may call this script. Exit status: 0 when the lab's checks (and the parity) passed (the targets are reported,
# not enforced).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-build/gpu_attention}
mkdir -p "$OUT"
summary="$OUT/summary.txt"
py=${TORCH_PYTHON:-python3}
rc=0
say() { echo "$*" | tee -a "$summary"; }
: > "$summary"
trap 'say "finished with status $rc after $SECONDS s"' EXIT
say "# issue 19 attention targets ($(date -u +%Y-%m-%dT%H:%MZ))"
say "device: $(timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 1)"

# cuDNN / CUDA libraries from pip wheels when the toolkit has none (as tests/gpu/run.sh)
# shellcheck source=tests/gpu/nvidia_libs.sh
. tests/gpu/nvidia_libs.sh
libdirs=$(nvidia_lib_dirs "$py" nvidia.cudnn nvidia.cuda_runtime nvidia.cublas)
[ -d build/lib ] && libdirs="$PWD/build/lib$libdirs"
export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

if [ -x build/bench_cuda ] && grep -q MMRM_CUDA build/.flags 2>/dev/null; then
    say "build: carried build/bench_cuda"
else
    say "build: make CUDA=1 MPI=0 build/bench_cuda build/gpu_parity"
    timeout 240 make -j"$(nproc)" CUDA=1 MPI=0 build/bench_cuda build/gpu_parity > "$OUT/build.log" 2>&1 ||
        { say "BUILD FAILED: $(tail -n 3 "$OUT/build.log" | tr '\n' ' ')"; rc=1; exit 1; }
    grep -q "no cuDNN under" "$OUT/build.log" && say "build: $(grep -m1 'no cuDNN under' "$OUT/build.log")"
fi
ldd build/bench_cuda > "$OUT/ldd.txt" 2>&1
say "ldd: $(grep -E 'cudnn|cublas|cudart' "$OUT/ldd.txt" | sed 's/ (0x.*//' | tr -s ' \t\n' ' ')"

# the lab; LD_DEBUG records every library the process opens (cuDNN dlopens its engines)
LD_DEBUG=files LD_DEBUG_OUTPUT="$OUT/lddebug" timeout 200 build/bench_cuda --only attention \
    > "$OUT/lab.log" 2>&1
lab=$?
[ $lab -eq 0 ] || rc=1
say "lab: exit $lab$([ $lab -eq 124 ] && echo ' (timed out)'); $(grep -E '^lab attention' "$OUT/lab.log" | tail -n 1)"
say "libcudnn loaded: $(cat "$OUT"/lddebug.* 2>/dev/null | grep -o 'file=[^ ]*cudnn[^ ]*' | sort -u | sed 's/file=//' | tr '\n' ' ')"
rm -f "$OUT"/lddebug.*
grep -E "^  (FAIL|fail)" "$OUT/lab.log" | head -n 10 | tee -a "$summary"
grep -E "^mmrm: " "$OUT/lab.log" | head -n 5 | tee -a "$summary"
say ""
sed -n '/^attention at the model shapes/,$p' "$OUT/lab.log" | grep -v "^  ok " | tee -a "$summary"

# the bf16 attention parity: FA2 and cuDNN against the CPU, cuDNN's native bf16 entries
# against its staged ones (bitwise) and FA2, the op over bf16 activations against the staged op
if [ -x build/gpu_parity ] && grep -q MMRM_CUDA build/.flags 2>/dev/null; then
    for group in attention bf16act; do
        timeout 150 build/gpu_parity --precision bf16 --only $group > "$OUT/parity_$group.log" 2>&1
        r=$?
        [ $r -eq 0 ] || rc=1
        say "gpu_parity bf16 $group: exit $r$([ $r -eq 124 ] && echo ' (timed out)'); $(tail -n 1 "$OUT/parity_$group.log")"
        grep -E "^FAIL|^note" "$OUT/parity_$group.log" | head -n 10 | tee -a "$summary"
    done
else
    say "gpu_parity: skipped: no CUDA build/gpu_parity (carry it with build/bench_cuda)"
fi

# the targets: head dim 128, T >= 1024, FA2 (v3) against cuDNN (v4) from the lab's table
say ""
awk '
    /^[A-Za-z0-9-]+ +B=/ { hd = 0; t = 0
        for (i = 1; i <= NF; i++) { if ($i ~ /^HD=/) hd = substr($i, 4) + 0; if ($i ~ /^T=/) t = substr($i, 3) + 0 }
        shape = $1 " T=" t; next }
    /FA2 bf16 \(v3\)/ && hd == 128 && t >= 1024 {
        f = "n/a"; fp = "n/a"; b = "n/a"; bp = "n/a"; side = ""
        for (i = 1; i <= NF; i++) {
            if ($i == "fwd" || $i == "bwd") side = $i
            if ($i == "TF/s") { if (side == "fwd") { f = $(i - 1); fp = $(i + 1) } else { b = $(i - 1); bp = $(i + 1) } }
        }
        okf = (fp ~ /%$/) ? ((fp + 0 >= 80) ? "met" : "NOT met") : "no cuDNN number"
        okb = (bp ~ /%$/) ? ((bp + 0 >= 70) ? "met" : "NOT met") : "no cuDNN number"
        okt = (f != "n/a") ? ((f + 0 >= 300) ? "met" : "NOT met") : "n/a"
        printf "target %-18s FA2 fwd %s TF/s = %s of cuDNN (>= 80%%: %s; >= 300 TF/s on an H200: %s) | bwd %s TF/s = %s of cuDNN (>= 70%%: %s)\n",
               shape, f, fp, okf, okt, b, bp, okb
    }' "$OUT/lab.log" | tee -a "$summary"

# PyTorch at the same shapes
if timeout 60 "$py" -c "import torch; assert torch.cuda.is_available()" > /dev/null 2>&1; then
    for be in flash cudnn; do
        timeout 100 "$py" bench/torch_sdpa.py --backend "$be" > "$OUT/torch_$be.log" 2>&1
        r=$?
        say ""
        say "torch sdpa ($be): exit $r$([ $r -eq 124 ] && echo ' (timed out)')"
        grep -E "^(torch |InternViT|Qwen2|InternLM2|torch_sdpa)" "$OUT/torch_$be.log" | tee -a "$summary"
    done
else
    say ""
    say "torch sdpa: skipped: $py has no torch with CUDA ($(timeout 30 "$py" -c 'import torch; print(torch.__version__)' 2>&1 | tail -n 1))"
fi
exit $rc
