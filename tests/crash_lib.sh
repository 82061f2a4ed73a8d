# tests/crash_lib.sh - shared by the crash campaigns (tests/integration/crash_*.sh): start a
# command in its own process group, kill -9 the whole group at a random moment, count.
# Sourced, not run (tests/run.sh runs tests/integration/*.sh only).
#
# TRIALS=N sets the number of trials per campaign (the scripts' defaults are the short form
# `make test` runs); CRASH_SEED seeds the random kill moments (printed, so a failing trial can
# be replayed).

CRASH_SEED=${CRASH_SEED:-$$}
RANDOM=$CRASH_SEED
echo "crash campaign: CRASH_SEED=$CRASH_SEED"

now_ms() { date +%s%3N; }

# kill_session SID: SIGKILL to every process of session SID (mpirun puts each rank in a process
# group of its own, but they stay in its session): mpirun and its ranks die together, as on a
# lost node. Twice, for a process forked while the first list was taken.
kill_session() {
    local pass pids
    for pass in 1 2; do
        pids=$(ps -eo pid=,sid= | awk -v s="$1" '$2 == s { print $1 }')
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    done
    return 0
}

# run_killed MS CMD...: runs CMD in a new session, kills the session with SIGKILL after MS
# milliseconds;
# returns 0 when the kill landed (the command was still running), 1 when it finished first
# (its output is in $CRASH_LOG)
CRASH_LOG=${CRASH_LOG:-$(mktemp)}
run_killed() {
    local ms=$1; shift
    setsid "$@" >"$CRASH_LOG" 2>&1 &
    local pid=$! rc=0
    sleep "$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')"
    kill_session "$pid"
    wait "$pid" 2>/dev/null || rc=$?
    [ "$rc" = 137 ] && return 0
    [ "$rc" = 0 ] || { echo "the command failed by itself (exit $rc):"; tail -n 20 "$CRASH_LOG"; exit 1; }
    return 1
}

# rand_ms MAX: a random delay in [0, MAX) milliseconds
rand_ms() { echo $(( (RANDOM * 32768 + RANDOM) % ($1 > 0 ? $1 : 1) )); }

# run_killed_in_write GLOB MS CMD...: like run_killed, but the kill comes MS milliseconds
# after a path matching GLOB (a checkpoint's hidden temporary directory) first appears, so
# that it lands inside a write; the same return values
run_killed_in_write() {
    local glob=$1 ms=$2; shift 2
    setsid "$@" >"$CRASH_LOG" 2>&1 &
    local pid=$! rc=0
    while kill -0 "$pid" 2>/dev/null && ! compgen -G "$glob" >/dev/null; do sleep 0.002; done
    sleep "$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')"
    kill_session "$pid"
    wait "$pid" 2>/dev/null || rc=$?
    [ "$rc" = 137 ] && return 0
    [ "$rc" = 0 ] || { echo "the command failed by itself (exit $rc):"; tail -n 20 "$CRASH_LOG"; exit 1; }
    return 1
}
