# shellcheck shell=bash
# tests/gpu/nvidia_libs.sh - sourced by run.sh and attention.sh: nvidia_lib_dirs PYTHON MODULE...
# prints ":DIR" for each pip wheel (nvidia.cudnn, nvidia.cublas, ...) that PYTHON can import
# and that has a lib or lib64 folder, so the scripts can put the CUDA libraries of PyTorch's
# wheels on LD_LIBRARY_PATH on a machine whose toolkit lacks them.
nvidia_lib_dirs() {
    local py=$1 mod d
    shift
    command -v "$py" > /dev/null || return 0
    for mod in "$@"; do
        d=$(timeout 20 "$py" -c "import importlib, os, sys
try:
    m = importlib.import_module('$mod')
except Exception:
    sys.exit(0)
for p in list(m.__path__):
    for sub in ('lib', 'lib64'):
        if os.path.isdir(os.path.join(p, sub)): print(os.path.join(p, sub))" 2> /dev/null | head -n 1)
        [ -n "$d" ] && printf ':%s' "$d"
    done
    return 0
}
