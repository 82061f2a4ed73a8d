#!/usr/bin/env bash
# The communicator across processes: builds tests/comm_mpi_check.c with runtime/comm.c
# against MPI and runs it under mpirun with 2 and 3 ranks (fixed-order sums, mean,
# reduce-scatter/all-gather, metrics sum, broadcast: each rank regenerates every rank's
# inputs and compares bitwise; the work queue runs every task once), then checks that a rank failing through comm_abort or
# through MMRM_FATAL ends the whole job with a message naming it instead of hanging, and
# that a build without MPI refuses a multi-process launch with a hint. Under a sanitizer
# build ($MMRM in build/san) the check is built with ASan+UBSan and OpenMPI's own leaks are
# suppressed (tests/lsan.supp). Skipped when mpirun or mpicc is missing.
set -euo pipefail
command -v mpirun >/dev/null 2>&1 || { echo "skipped: no mpirun"; exit 77; }
command -v mpicc >/dev/null 2>&1 || { echo "skipped: no mpicc (install libopenmpi-dev)"; exit 77; }

root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

flags=(-std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I"$root")
if [[ ${MMRM:-} == */san/* ]]; then
    flags+=(-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined
            -fno-omit-frame-pointer)
    # the slow unwinder gives full stacks, so leaks inside OpenMPI's dlopen'ed components
    # still show the libmpi frames the suppressions name
    LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:fast_unwind_on_malloc=0"
    export LSAN_OPTIONS="$LSAN_OPTIONS:print_suppressions=0"
fi
src=("$root/tests/comm_mpi_check.c" "$root/runtime/comm.c" "$root/runtime/error.c")
mpicc "${flags[@]}" -DMMRM_MPI "${src[@]}" -lm -o "$tmp/check"
# mpicc's own compiler, without MPI: the build a machine without OpenMPI would get
"$(mpicc --showme:command)" "${flags[@]}" "${src[@]}" -lm -o "$tmp/check_nompi"

run() { timeout 60 mpirun --allow-run-as-root --oversubscribe "$@"; }

# a plain process: world 1, no MPI, every check still holds
"$tmp/check" >"$tmp/out" || { cat "$tmp/out"; echo "single process check failed"; exit 1; }
grep -q "rank 0/1 (single): [0-9]* checks, 0 failed" "$tmp/out"

for np in 2 3; do
    if ! run -np "$np" "$tmp/check" >"$tmp/out" 2>&1; then
        cat "$tmp/out"; echo "mpirun -np $np check failed"; exit 1
    fi
    n=$(grep -c "(mpi): [0-9]* checks, 0 failed" "$tmp/out" || true)
    [ "$n" = "$np" ] || { cat "$tmp/out"; echo "$n of $np ranks reported success"; exit 1; }
done

# expect_failure MODE PATTERN: the job ends non-zero before the timeout, naming rank 1
expect_failure() {
    local rc=0
    run -np 3 "$tmp/check" "$1" >"$tmp/out" 2>&1 || rc=$?
    if [ "$rc" = 0 ] || [ "$rc" = 124 ]; then
        cat "$tmp/out"; echo "$1: mpirun exited $rc (want a non-zero exit, 124 = hung)"; exit 1
    fi
    grep -q "$2" "$tmp/out" || { cat "$tmp/out"; echo "$1: no message '$2'"; exit 1; }
    if grep -q "finished without rank 1" "$tmp/out"; then
        cat "$tmp/out"; echo "$1: a collective completed without the failed rank"; exit 1
    fi
}
expect_failure fail-abort "mmrm: error: rank 1/3: injected failure through comm_abort"
expect_failure fail-fatal "mmrm: error: rank 1/3 exited with status 1; aborting every rank"

# a build without MPI launched as two processes stops with the rebuild hint
rc=0
OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=1 "$tmp/check_nompi" >"$tmp/out" 2>&1 || rc=$?
if [ "$rc" != 1 ]; then
    cat "$tmp/out"; echo "no-MPI build under a 2-rank launch exited $rc, want 1"; exit 1
fi
want="rank 1: launched as 2 processes by mpirun, but this mmrm was built without MPI;"
want="$want rebuild with OpenMPI installed (apt-get install libopenmpi-dev) or run one process"
grep -qF "$want" "$tmp/out"
echo "comm_mpi: ok"
