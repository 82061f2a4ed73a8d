#!/usr/bin/env bash
# tests/run.sh BUILD_DIR - runs the unit tests and every integration script, then prints
# "N skipped: name (why), ..." and one total line "N passed, N failed" (exit 1 on any failure;
# CI parses the last line, so it stays exactly that).
#
# The unit binary and the scripts run MMRM_TEST_JOBS at a time (default: the CPU count; 1
# runs them one after another), the longest known ones first; each result line (with the
# log's last 30 lines on a failure) is printed when it ends. The scripts in SERIAL check
# timings that a loaded machine would skew: they run afterwards, alone.
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
jobs=${MMRM_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "tests/run.sh: MMRM_TEST_JOBS=$jobs (a positive integer expected)" >&2; exit 2; }
# the longest scripts (minutes on the emulator) start first so that the others fill the gaps
LONG="cuda_emu_train cuda_graphs cuda_emu cuda_emu_rows max_tokens train_mpi tokenize_cli nonfinite disk_full"
# relative timings: score_mpi (a slowed rank takes fewer chunks), gpu_script (SIGTERM within 5 s)
SERIAL="score_mpi gpu_script"
# OpenMPI leaks in MPI_Init; the suppressions keep sanitizer runs of mpirun jobs readable
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/lsan.supp:fast_unwind_on_malloc=0:print_suppressions=0}

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

# start NAME: run it in the background; its output goes to $work/NAME.log, its exit status
# to $work/NAME.rc when it ends (renamed into place, so reap never reads a half-written one)
declare -A t0
done_rc() { echo "$2" >"$work/$1.rc.part" && mv "$work/$1.rc.part" "$work/$1.rc"; }
start() {
    local name=$1
    t0[$name]=$SECONDS
    if [ "$name" = unit ]; then
        ( "$build/test_unit" >"$work/unit.log" 2>&1; done_rc unit $? ) &
    else
        ( rc=0; MMRM="$build/mmrm" bash "$here/integration/$name.sh" >"$work/$name.log" 2>&1 || rc=$?
          done_rc "$name" $rc ) &
    fi
}

# report NAME: count and print one finished job
report() {
    local name=$1 rc why out log=$work/$1.log
    rc=$(cat "$work/$name.rc")
    local took=$((SECONDS - t0[$name]))
    if [ "$name" = unit ]; then
        cat "$log"
        out=$(tail -n 1 "$log")
        if [[ $out =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
            passed=$((passed + BASH_REMATCH[1])); failed=$((failed + BASH_REMATCH[2]))
        else
            echo "FAIL unit test binary did not finish (exit $rc, last line: $out)"; failed=$((failed + 1))
        fi
        return
    fi
    why=$(grep '^skipped: ' "$log" | tail -n 1 | sed 's/^skipped: //')
    if [ "$rc" = 0 ]; then
        echo "PASS $name ($took s)"; passed=$((passed + 1))
    elif [ "$rc" = 77 ] && [[ $required != *" $name "* ]]; then
        echo "SKIP $name (${why:-no reason given})"; skipped=$((skipped + 1))
        skip_list="$skip_list${skip_list:+, }$name (${why:-no reason given})"
    elif [ "$rc" = 77 ]; then
        echo "FAIL $name: skipped (${why:-no reason given}) but MMRM_REQUIRE_TESTS requires it"
        failed=$((failed + 1))
    else
        echo "FAIL $name ($took s)"; sed 's/^/    /' "$log" | tail -n 30; failed=$((failed + 1))
    fi
}

# run_all N NAME...: at most N at a time, in the order given
running=()
reap() { # report the jobs that ended; keep the rest
    local still=() n
    for n in "${running[@]}"; do
        if [ -e "$work/$n.rc" ]; then report "$n"; else still+=("$n"); fi
    done
    running=("${still[@]}")
}
run_all() {
    local n=$1 name; shift
    for name in "$@"; do
        while [ "${#running[@]}" -ge "$n" ]; do wait -n 2>/dev/null; reap; done
        start "$name"; running+=("$name")
    done
    while [ "${#running[@]}" -gt 0 ]; do wait -n 2>/dev/null; reap; done
}

all=()
for t in "$here"/integration/*.sh; do [ -e "$t" ] && all+=("$(basename "$t" .sh)"); done
is_in() { [[ " $2 " == *" $1 "* ]]; }
order=()
for name in $LONG; do is_in "$name" "${all[*]}" && ! is_in "$name" "$SERIAL" && order+=("$name"); done
order+=(unit)
for name in "${all[@]}"; do is_in "$name" "$LONG $SERIAL" || order+=("$name"); done
serial=()
for name in $SERIAL; do is_in "$name" "${all[*]}" && serial+=("$name"); done

echo "running the unit tests and ${#all[@]} integration scripts, $jobs at a time (MMRM_TEST_JOBS)"
run_all "$jobs" "${order[@]}"
run_all 1 "${serial[@]}"

# a required name with no script is a typo in the list, not a pass
for name in $required; do
    [ -e "$here/integration/$name.sh" ] || { echo "FAIL $name: required by MMRM_REQUIRE_TESTS but no such script"; failed=$((failed + 1)); }
done

echo "$skipped skipped${skip_list:+: $skip_list}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
