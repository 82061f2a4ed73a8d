#!/usr/bin/env bash
# Replays the fuzz targets' seed corpus and every committed reproducer of a bug the fuzzers
# found (tests/fuzz/regressions/TARGET/) once, through the targets built with gcc and
# tests/fuzz/driver.c (BUILD/fuzz_replay_TARGET, beside $MMRM): a crash, a sanitizer report
# (under SANITIZE=1) or a failed check in the target fails the test.
set -euo pipefail
here=$(cd "$(dirname "$0")/../fuzz" && pwd)
build=$(dirname "${MMRM:-build/mmrm}")
n=0
for dir in "$here"/corpus/*/; do
    t=$(basename "$dir")
    bin="$build/fuzz_replay_$t"
    [ -x "$bin" ] || { echo "missing $bin (make $bin)"; exit 1; }
    args=("$dir")
    [ -d "$here/regressions/$t" ] && args+=("$here/regressions/$t")
    "$bin" "${args[@]}"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "no corpus under $here/corpus"; exit 1; }
echo "fuzz_regressions: $n targets replayed"
