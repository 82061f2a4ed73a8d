#!/usr/bin/env bash
# share_prefix + packing vs both off on the CPU, side by side in one run (bench/bench_share_prefix.c):
# training pairs/s for both objectives, scoring 16 responses per prompt, padding-heavy packing;
# tokens computed vs tokens in the rows. Usage: bash bench/share_prefix.sh [--pairs N] [--reps N]
set -euo pipefail
cd "$(dirname "$0")/.."
make -s -j2 build/bench_share_prefix
build/bench_share_prefix "$@"
