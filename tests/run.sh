#!/usr/bin/env bash
# tests/run.sh BUILD_DIR - runs the unit tests and every integration script, then prints
# one total line "N passed, N failed" (exit 1 on any failure).
set -u
build=${1:-build}
# Finite-difference tests run thousands of tiny parallel regions; spinning idle threads
# make them crawl on a loaded 2-core machine.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
here=$(cd "$(dirname "$0")" && pwd)
passed=0; failed=0

# (no `tee /dev/stderr`: reopening a redirected stderr file would truncate it)
unit_log=$(mktemp)
"$build/test_unit" 2>&1 | tee "$unit_log"
out=$(tail -n 1 "$unit_log")
rm -f "$unit_log"
if [[ $out =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    passed=$((passed + BASH_REMATCH[1])); failed=$((failed + BASH_REMATCH[2]))
else
    echo "FAIL unit test binary did not finish (last line: $out)" >&2; failed=$((failed + 1))
fi

# OpenMPI leaks in MPI_Init; the suppressions keep sanitizer runs of mpirun jobs readable
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/lsan.supp:fast_unwind_on_malloc=0:print_suppressions=0}
for t in "$here"/integration/*.sh; do
    [ -e "$t" ] || continue
    name=$(basename "$t" .sh)
    log=$(mktemp)
    t0=$SECONDS
    if MMRM="$build/mmrm" bash "$t" >"$log" 2>&1; then
        echo "PASS $name ($((SECONDS - t0)) s)"; passed=$((passed + 1))
    else
        echo "FAIL $name ($((SECONDS - t0)) s)"; sed 's/^/    /' "$log" | tail -n 30; failed=$((failed + 1))
    fi
    rm -f "$log"
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
