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

# device selection: an impossible or unknown device is refused up front, naming what to do
# (on a machine without a GPU; with one, tests/gpu/run.sh covers the GPU side)
if ! "$MMRM" version | grep -q "gpus visible: [1-9]"; then
    set +e
    "$MMRM" train configs/scratch_standard.ini device=cuda output_dir="$(mktemp -d)/x" 2>"$err"
    rc=$?
    set -e
    [ "$rc" != 0 ] || { echo "train device=cuda without a GPU succeeded"; exit 1; }
    grep -Eq "make cuda|no GPU is visible" "$err" || { cat "$err"; exit 1; }
    set +e
    "$MMRM" score --model x --input y --output z --device cuda:1 2>"$err"
    rc=$?
    set -e
    [ "$rc" != 0 ] || { echo "score --device cuda:1 without a GPU succeeded"; exit 1; }
    grep -Eq "make cuda|no GPU is visible" "$err" || { cat "$err"; exit 1; }
fi
set +e
"$MMRM" score --model x --input y --output z --device tpu 2>"$err"
rc=$?
set -e
[ "$rc" != 0 ] && grep -q "valid values are auto, cpu, cuda, cuda:N" "$err" || { cat "$err"; exit 1; }
