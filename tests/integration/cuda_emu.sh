#!/usr/bin/env bash
# The CUDA backend's real kernels (kernels/cuda/*.cu, unmodified) run on the CPU by the
# emulator in tests/cuda_emu (README.md there): the GPU parity suite (tests/gpu) checks every
# CUDA op against the CPU backend. build/emu_parity (next to $MMRM) is built by `make test`.
#   1. every group in fp32 mode, threads and blocks in forward order;
#   2. matmul in bf16 mode (the fake cuBLASLt rounds the GEMM inputs to bf16);
#   3. attention and norm with every launch's threads and blocks in reverse order, loss in a
#      seeded random order: a result that depends on the order (a missing barrier, a race
#      between threads) fails the comparison in one of the orders;
#   4. matmul with the fake cuBLASLt finding no algorithm for the bias epilogue or for bf16,
#      so matmul.cu's fallbacks (add_bias_kernel, fp32 GEMMs in bf16 mode) run; the kernels
#      over bf16 activations (group bf16act) in reverse order, and with no bf16-D algorithm
#      (a bf16 GEMM output then goes through fp32 scratch).
# --quick runs the model group on the tiny config only (the small one is for real GPUs).
#   5. the model group in bf16 mode (its tolerance is 5e-2: bf16 GEMM inputs alone move the
#      whole model's rewards and gradients by 1-3e-2; tests/cuda_emu/README.md).
#   6. attention in bf16 mode: the FlashAttention-2 forward on the emulated tensor cores
#      (kernels/cuda/attention_fa2.cu, mma.cuh) against the CPU on bf16-rounded inputs, also
#      with EMU_ORDER=warps (each warp runs ahead to its barrier: a missing __syncthreads
#      around a cp.async prefetch reads the poisoned buffer), and the mma primitives so.
# Under ASan/UBSan (build/san, an emulated thread ~3x slower) the reruns of the attention
# groups in another thread order (reverse; warps skewed: ~40% of the sanitized time) run
# in the plain pass only: they look for order dependence, the sanitizer finds nothing there
# that the forward-order runs of the same kernels miss; the cheap reorderings (norm, loss,
# bf16act, mma with warps skewed) still run, so every EMU_ORDER mode runs sanitized.
set -euo pipefail
sanitized=0
case "$MMRM" in */san/*) sanitized=1 ;; esac
emu="$(dirname "$MMRM")/emu_parity"
[ -x "$emu" ] || { echo "FAIL: $emu is missing (make $emu)"; exit 1; }

failed=0
check() {
    local what=$1 rc=0 log last t0=$SECONDS
    shift
    log=$(mktemp)
    "$@" >"$log" 2>&1 || rc=$?
    last=$(tail -n 1 "$log")
    if [[ $rc == 0 && $last =~ ^[0-9]+\ passed,\ 0\ failed$ ]]; then
        echo "ok   $what: $last ($((SECONDS - t0)) s)"
    else
        echo "FAIL $what (exit $rc): $last"
        grep -E "^FAIL|^     worst|cuda_emu|mmrm:" "$log" | head -n 40 || true
        failed=1
    fi
    rm -f "$log"
}

check "all groups, fp32" "$emu" --quick --precision fp32
check "matmul, bf16" "$emu" --quick --precision bf16 --only matmul
[ $sanitized = 1 ] || check "attention, reverse order" env EMU_ORDER=reverse "$emu" --quick --precision fp32 --only attention
check "norm, reverse order" env EMU_ORDER=reverse "$emu" --quick --precision fp32 --only norm
check "loss, random order" env EMU_ORDER=random:1 "$emu" --quick --precision fp32 --only loss
check "model, bf16" "$emu" --quick --precision bf16 --only model
check "attention bf16 (FA2 tensor-core forward and backward)" "$emu" --quick --precision bf16 --only attention
[ $sanitized = 1 ] || check "attention bf16, warps skewed" env EMU_ORDER=warps "$emu" --quick --precision bf16 --only attention
check "mma primitives, warps skewed" env EMU_ORDER=warps "$emu" --quick --precision fp32 --only mma
check "matmul, cuBLASLt fallbacks" env EMU_LT_REJECT=bias,bgrad,bf16 "$emu" --quick --precision both --only matmul
check "bf16 activation kernels, reverse order" env EMU_ORDER=reverse "$emu" --quick --precision fp32 --only bf16act
check "bf16 activation kernels, no bf16 D or bias epilogue" env EMU_LT_REJECT=bf16out,bias "$emu" --quick --precision fp32 --only bf16act
exit "$failed"
