#!/usr/bin/env bash
# bench/torch_baseline.py runs (the PyTorch side of tests/gpu/run.sh's step comparison, which
# gets one try in a device window): --device cpu --tiny must print a result row with finite
# numbers for both objectives, and bench_step must print the same columns at its --quick
# shape. Needs a Python with torch 2.4.1 and transformers 4.44.2: HF_PYTHON, default python3
# (the venv of tests/oracle/README.md); skipped without it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${HF_PYTHON:-python3}
if ! "$py" -c "import torch, transformers" 2> /dev/null; then
    echo "skipped: $py has no torch + transformers (set HF_PYTHON)"
    exit 77
fi
out=$("$py" "$here/../../bench/torch_baseline.py" --device cpu --tiny 2> /dev/null)
echo "$out"
# objective, step ms, pairs/s, tokens/s, MFU, 4 phases, memory: every number finite and > 0
# except the phases (>= 0)
for obj in standard shortcut_aware; do
    echo "$out" | awk -v o="$obj" '$1 == o { n++; for (i = 2; i <= 10; i++) if (i != 5 && !($i + 0 >= 0 && $i != "nan" && $i != "inf")) bad = 1;
        if (!($2 > 0 && $3 > 0 && $4 > 0 && $10 > 0)) bad = 1 }
        END { exit !(n == 1 && !bad) }' || { echo "FAIL: no valid $obj row"; exit 1; }
done
head=$(echo "$out" | grep "^objective")
bs="$(dirname "${MMRM:?set MMRM to the mmrm binary}")/bench_step"
if [ -x "$bs" ]; then
    ours=$("$bs" --quick --objective standard --device cpu | grep "^objective")
    # the same columns up to bench_step's extra plan-cache column
    [ "$(echo "$head" | awk '{ NF = 10; print }')" = "$(echo "$ours" | awk '{ NF = 10; print }')" ] ||
        { echo "FAIL: column headers differ: '$head' vs '$ours'"; exit 1; }
fi
echo "torch_baseline: both objectives ran on the CPU with finite results; same columns as bench_step"
