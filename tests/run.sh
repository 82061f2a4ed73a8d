#!/usr/bin/env bash
# tests/run.sh BUILD_DIR - runs the unit tests and every integration script, then prints
# "N skipped: name (why), ..." and one total line "N passed, N failed" (exit 1 on any failure;
# CI parses the last line, so it stays exactly that).
#
# An integration script that cannot run here (no mpirun, an mmrm without MPI, no python3, ...)
# says so by printing "skipped: WHY" and exiting 77 (automake's convention): it is counted as
# skipped, neither passed nor failed. MMRM_REQUIRE_TESTS (names, comma- or space-separated,
# e.g. "comm_mpi,train_mpi") lists the scripts that must run on this machine: .ci/run sets it,
# and a required script that skips counts as failed.
set -u
build=${1:-build}
# Finite-difference tests run thousands of tiny parallel regions; spinning idle threads
# make them crawl on a loaded 2-core machine.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
here=$(cd "$(dirname "$0")" && pwd)
passed=0; failed=0; skipped=0; skip_list=""
required=" $(echo "${MMRM_REQUIRE_TESTS:-}" | tr ',' ' ') "

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
    rc=0
    MMRM="$build/mmrm" bash "$t" >"$log" 2>&1 || rc=$?
    why=$(grep '^skipped: ' "$log" | tail -n 1 | sed 's/^skipped: //')
    if [ "$rc" = 0 ]; then
        echo "PASS $name ($((SECONDS - t0)) s)"; passed=$((passed + 1))
    elif [ "$rc" = 77 ] && [[ $required != *" $name "* ]]; then
        echo "SKIP $name (${why:-no reason given})"; skipped=$((skipped + 1))
        skip_list="$skip_list${skip_list:+, }$name (${why:-no reason given})"
    elif [ "$rc" = 77 ]; then
        echo "FAIL $name: skipped (${why:-no reason given}) but MMRM_REQUIRE_TESTS requires it"
        failed=$((failed + 1))
    else
        echo "FAIL $name ($((SECONDS - t0)) s)"; sed 's/^/    /' "$log" | tail -n 30; failed=$((failed + 1))
    fi
    rm -f "$log"
done

# a required name with no script is a typo in the list, not a pass
for name in $required; do
    [ -e "$here/integration/$name.sh" ] || { echo "FAIL $name: required by MMRM_REQUIRE_TESTS but no such script"; failed=$((failed + 1)); }
done

echo "$skipped skipped${skip_list:+: $skip_list}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
