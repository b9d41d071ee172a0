#!/usr/bin/env bash
# On a machine with a CUDA GPU: the GPU-marked tests, then the benchmark on CUDA (both suites),
# in well under 5 minutes. Results land in ${OUT:-gpu_check}/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"
mkdir -p "$out"
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py=python3
"$py" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device: scripts/gpu_check.sh needs a GPU"
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
PY
timeout 150 "$py" -m pytest -m gpu -q -p no:cacheprovider tests/gpu 2>&1 | tee "$out/gpu_tests.txt"
timeout 60 "$py" scripts/bench.py --device cuda --repeats 3 --out "$out/bench_mnist_cuda.json" \
  2>&1 | tee "$out/bench_mnist_cuda.txt"
timeout 120 "$py" scripts/bench.py --device cuda --suite cifar --repeats 3 --amp --channels-last \
  --skip "DP-SGD" --out "$out/bench_cifar_cuda.json" 2>&1 | tee "$out/bench_cifar_cuda.txt"
