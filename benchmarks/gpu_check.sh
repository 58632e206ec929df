#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one short run: the CUDA-marked tests (and the whole suite
# on the GPU via TORCH_DEVICE), both benchmarks, and lesson 01 in full mode.
# Usage: bash benchmarks/gpu_check.sh   (after `make setup`; prints figures to report)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "== CUDA tests"
TORCH_DEVICE=cuda $PY -m pytest -q -p no:cacheprovider -m "not notebooks" tests
echo "== loop overhead on CUDA"
$PY benchmarks/loop_overhead.py --device cuda --batch-size 256 --steps 50
echo "== data throughput on CUDA"
$PY benchmarks/data_throughput.py --device cuda --mode full --chunk 4096
echo "== lesson 01 in full mode"
COURSE_MODE=full $PY -m helpers.course run --only '01*'
