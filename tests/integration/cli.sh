#!/usr/bin/env bash
# The command line: help and version succeed; an unknown command fails with a message.
set -euo pipefail
grep -q "usage: mmrm COMMAND" <<<"$("$MMRM" help)"
"$MMRM" --help >/dev/null
grep -q "backends: cpu" <<<"$("$MMRM" version)"
err=$(mktemp)
trap 'rm -f "$err"' EXIT
set +e
"$MMRM" frobnicate 2>"$err"
rc=$?
set -e
[ "$rc" = 2 ] || { echo "unknown command exited $rc, want 2"; exit 1; }
grep -q "unknown command 'frobnicate'" "$err"
