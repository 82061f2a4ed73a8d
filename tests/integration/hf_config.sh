#!/usr/bin/env bash
# What mmrm writes as config.json, read by transformers (tests/oracle/check_hf_config.py): each
# published InternVL2 config (sizes reduced) through `mmrm init` keeps every key, value and JSON
# type, and Qwen2Config / LlamaConfig read its llm_config as they read the published one.
# Needs MMRM (the binary) and a Python with transformers 4.44.2: HF_PYTHON, default python3
# (the venv of tests/oracle/README.md). Skipped without it (CI has no Python ML stack;
# tests/unit/test_hf_config.c checks the kept keys without Python).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${HF_PYTHON:-python3}
if ! "$py" -c "import transformers, sys; sys.exit(transformers.__version__ != '4.44.2')" 2>/dev/null; then
    echo "skipped: $py has no transformers 4.44.2 (set HF_PYTHON)"
    exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" "$here/../oracle/check_hf_config.py" "${MMRM:?set MMRM to the mmrm binary}" "$work" 2>&1 |
    grep -v "^Unrecognized keys in \`rope_scaling\`"
