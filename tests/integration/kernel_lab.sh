#!/usr/bin/env bash
# The kernel lab (bench/lab, README.md there) on the CPU emulator: build/emu_bench_cuda (next
# to $MMRM, built by `make test`) runs `--only FAMILY --check` for every family, which checks
# every variant (production through kernels_cuda and the lab's own kernels) against kernels_cpu
# on small odd shapes and exits 1 on any mismatch (the emulator itself stops a kernel that
# breaks a barrier or launch rule). Every family runs with the threads and blocks of each
# launch in forward, reverse and a seeded random order (a result that depends on the order:
# a missing __syncthreads, a race on shared memory). Finally `--variant` past a family's last
# variant must be refused.
set -euo pipefail
emu="$(dirname "$MMRM")/emu_bench_cuda"
[ -x "$emu" ] || { echo "FAIL: $emu is missing (make $emu)"; exit 1; }

families="matmul norm attention elementwise loss"
failed=0
for order in forward reverse random:1; do
    for f in $families; do
        rc=0
        log=$(mktemp)
        EMU_ORDER=$order "$emu" --only "$f" --check >"$log" 2>&1 || rc=$?
        last=$(tail -n 1 "$log")
        if [[ $rc == 0 && $last =~ ^lab\ $f:\ [1-9][0-9]*\ passed,\ 0\ failed$ ]]; then
            echo "ok   $f ($order): $last"
        else
            echo "FAIL $f ($order, exit $rc): $last"
            grep -E "; tol |^  FAIL|^       worst|^cuda_emu|^mmrm:|^bench_cuda:" "$log" | head -n 40 || true
            failed=1
        fi
        rm -f "$log"
    done
done

rc=0
"$emu" --only matmul --variant 99 --check >/dev/null 2>&1 || rc=$?
if [[ $rc == 2 ]]; then echo "ok   --variant 99 refused"; else echo "FAIL --variant 99: exit $rc, not 2"; failed=1; fi
exit "$failed"
