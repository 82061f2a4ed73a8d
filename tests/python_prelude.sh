# tests/python_prelude.sh - sourced first (after set -euo pipefail) by the integration scripts
# whose inputs or oracle are python3 scripts (stdlib only): without python3 the script is
# skipped (exit 77, which tests/run.sh counts as skipped); else $tmp is a new directory removed
# on exit (kept with KEEP=1, for a look at a failure) and OpenMP's idle threads wait passively
# (tests/run.sh runs scripts side by side).
# Sourced, not run (tests/run.sh runs tests/integration/*.sh only).
if ! command -v python3 >/dev/null 2>&1; then
    echo "skipped: python3 not installed"
    exit 77
fi
tmp=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
