#!/usr/bin/env bash
# tests/gpu/run.sh's control flow without a GPU (it must never exit 77): with stubs on PATH
# and in BIN it has to write $OUT/summary.txt and end cleanly
#   1. when nvidia-smi fails (no driver): exit 2, "no usable GPU", "ended: no GPU";
#   2. when there is no CUDA build: exit 3 and the build command to carry;
#   3. with a fake GPU and stub binaries: a passing step is "ok", a failing one "FAIL rc N",
#      a hanging one "TIMEOUT" within the budget, the steps after the budget "skipped", a
#      missing tool is reported, exit 1, "ended: completed";
#   4. SIGTERM during a step: it stops at once (the step's process with it), exit 1,
#      "ended: interrupted".
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
d=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done; rm -rf "$d"' EXIT
fail() { echo "FAIL: $*"; echo "--- summary:"; cat "$1" 2> /dev/null || true; exit 1; }

mkdir -p "$d/nodriver" "$d/gpu" "$d/bin" "$d/nobuild"
printf '#!/bin/sh\necho "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2\nexit 9\n' > "$d/nodriver/nvidia-smi"
printf '#!/bin/sh\necho "NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15, 9.0"\n' > "$d/gpu/nvidia-smi"
# stub binaries: fp32 parity passes, bf16 parity hangs, bench_cuda fails, mmrm knows only version
cat > "$d/bin/gpu_parity" <<'STUB'
#!/bin/sh
case "$*" in
*bf16*) exec sleep 1237 ;;
esac
echo "ok   stub check"
echo "== precision fp32: 1 passed, 0 failed, worst rel/tol 0.100"
echo "1 passed, 0 failed"
STUB
printf '#!/bin/sh\necho "bench stub failing"\nexit 4\n' > "$d/bin/bench_cuda"
# bench_step: a row per objective with graphs off and on (--cuda-graphs both), pairs/s third
cat > "$d/bin/bench_step" <<'STUB'
#!/bin/sh
case "$*" in
*"--cuda-graphs both"*) ;;
*) echo "bench_step stub: run without --cuda-graphs both"; exit 5 ;;
esac
echo "objective  step ms  pairs/s"
echo "standard   100.0    8.00   off"
echo "standard   80.0     10.00  on: 0/3/0"
STUB
printf '#!/bin/sh\n[ "$1" = version ] && { echo "mmrm 0.1.0"; echo "backends: cpu cuda"; exit 0; }\nexit 1\n' > "$d/bin/mmrm"
echo "MMRM_CUDA" > "$d/bin/.flags"
cp "$d/bin/mmrm" "$d/nobuild/mmrm"
chmod +x "$d"/*/*

# 1. no driver
rc=0
PATH="$d/nodriver:$PATH" OUT="$d/out1" BIN="$d/bin" ATTENTION_SCRIPT= bash "$root/tests/gpu/run.sh" > "$d/log1" 2>&1 || rc=$?
s="$d/out1/summary.txt"
[ "$rc" = 2 ] || fail "$s" "no driver: exit $rc, want 2"
grep -q "^device: no usable GPU" "$s" && grep -q "^ended: no GPU" "$s" || fail "$s" "no driver: summary"

# 2. a GPU but no CUDA build in BIN
rc=0
PATH="$d/gpu:$PATH" OUT="$d/out2" BIN="$d/nobuild" ATTENTION_SCRIPT= bash "$root/tests/gpu/run.sh" > "$d/log2" 2>&1 || rc=$?
s="$d/out2/summary.txt"
[ "$rc" = 3 ] || fail "$s" "no build: exit $rc, want 3"
grep -q "make -j2 cuda CUDA_ARCHS=90" "$s" && grep -q "^ended: no CUDA build" "$s" || fail "$s" "no build: summary"

# 3. stubs; a budget of 25 s runs out inside the hanging bf16 parity
rc=0
start=$SECONDS
PATH="$d/gpu:$PATH" OUT="$d/out3" BIN="$d/bin" BUDGET=25 ATTENTION_SCRIPT= bash "$root/tests/gpu/run.sh" > "$d/log3" 2>&1 || rc=$?
took=$((SECONDS - start))
s="$d/out3/summary.txt"
[ "$rc" = 1 ] || fail "$s" "stubs: exit $rc, want 1"
[ "$took" -le 40 ] || fail "$s" "stubs: took ${took}s with a 25 s budget"
grep -q "^device: NVIDIA H100" "$s" || fail "$s" "device line"
grep -q "^- kernel + model parity fp32 (gpu_parity): ok" "$s" || fail "$s" "the passing step"
grep -q "^- bench_cuda: FAIL rc 4" "$s" || fail "$s" "the failing step"
grep -q "^- mmrm step (bench_step, bf16): ok .*cuda graphs off -> on: standard 8.00 -> 10.00 pairs/s (x1.25)" "$s" ||
    fail "$s" "bench_step's graphs off/on line"
grep -q "^- kernel + model parity bf16 (gpu_parity): TIMEOUT" "$s" || fail "$s" "the hanging step"
grep -q "skipped (out of time)" "$s" || fail "$s" "steps past the budget"
grep -q "^ended: completed" "$s" && grep -q "^failed: [1-9]" "$s" || fail "$s" "last lines"
sleep 1
pgrep -f "sleep 1237" > /dev/null && fail "$s" "the timed-out step's process survived"

# 4. SIGTERM while the bf16 parity hangs
OUT="$d/out4" BIN="$d/bin" BUDGET=300 PATH="$d/gpu:$PATH" ATTENTION_SCRIPT= bash "$root/tests/gpu/run.sh" > "$d/log4" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 1 200); do
    [ -e "$d/out4/parity_bf16.log" ] && break
    sleep 0.1
done
[ -e "$d/out4/parity_bf16.log" ] || fail "$d/out4/summary.txt" "the bf16 parity step never started"
start=$SECONDS
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
s="$d/out4/summary.txt"
[ $((SECONDS - start)) -le 5 ] || fail "$s" "SIGTERM took $((SECONDS - start))s to stop the script"
[ "$rc" = 1 ] || fail "$s" "SIGTERM: exit $rc, want 1"
grep -q "^ended: interrupted" "$s" || fail "$s" "SIGTERM: last line"
echo "gpu_script: no driver -> exit 2, no build -> exit 3, stubs -> ok/FAIL/TIMEOUT/skipped in ${took}s, SIGTERM -> interrupted; summary written each time"
