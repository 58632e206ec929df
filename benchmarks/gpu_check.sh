#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one run, each part timed: the CUDA-marked tests, the whole
# test suite on the GPU (TORCH_DEVICE), every benchmark, and the full mode of every lesson.
# Usage: bash benchmarks/gpu_check.sh [--quick]   (after `make setup`; prints the figures to report)
#   --quick: tests and benchmarks only, no full-mode lessons.
# Writes a log to build/gpu_check.log as well as the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p build
exec > >(tee build/gpu_check.log) 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
step() {   # step "title" command...: run it, print its wall time, keep going on failure
    local title=$1; shift
    echo; echo "== $title"
    local start=$SECONDS
    if "$@"; then echo "-- $title: ok in $((SECONDS - start)) s"
    else echo "-- $title: FAILED (exit $?) after $((SECONDS - start)) s"; FAILED+=("$title"); fi
}
FAILED=()
step "CUDA tests" env TORCH_DEVICE=cuda $PY -m pytest -q -p no:cacheprovider -m cuda tests
step "test suite on the GPU" env TORCH_DEVICE=cuda $PY -m pytest -q -p no:cacheprovider -m "not notebooks" tests
step "loop overhead" $PY benchmarks/loop_overhead.py --device cuda --batch-size 256 --steps 50 --max-seconds 300
step "data throughput" $PY benchmarks/data_throughput.py --device cuda --mode full --chunk 4096
step "channels_last" $PY benchmarks/channels_last.py --device cuda --mode full
step "roofline (full sizes)" $PY benchmarks/roofline.py --device cuda --mode full --matmul 8192
if [[ "${1:-}" != "--quick" ]]; then
    # Every lesson in full mode (builds what it needs; caches under data/ keyed by config).
    step "prepare (full mode)" env COURSE_MODE=full $PY -m helpers.course prepare
    for nb in notebooks/[0-9][0-9]_*.py; do
        lesson=$(basename "$nb" .py)
        step "lesson $lesson (full mode)" env COURSE_MODE=full $PY -m helpers.course --only "${lesson:0:2}*" run
    done
fi
echo
if ((${#FAILED[@]})); then echo "FAILED: ${FAILED[*]}"; exit 1; fi
echo "all GPU checks passed"
