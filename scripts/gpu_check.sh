#!/usr/bin/env bash
# On a machine with a CUDA GPU: the GPU-marked tests, then the benchmark on CUDA (both suites),
# in about 5 minutes. Results land in ${OUT:-gpu_check}/. Every step runs even when an earlier one
# fails (so one slow step still leaves the others' figures); the exit status is 1 if any failed.
# The MNIST suite reads $ROBUSTAI_MNIST_IDX (default: ../shared/data/mnist beside the repository).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"
mkdir -p "$out"
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py=python3
"$py" - <<'PY' || exit 1
import torch
assert torch.cuda.is_available(), "no CUDA device: scripts/gpu_check.sh needs a GPU"
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
PY
failed=()
step() {  # step NAME SECONDS COMMAND...: run with a time cap, log to $out/NAME.txt
  local name=$1 cap=$2 start=$SECONDS
  shift 2
  timeout "$cap" "$@" 2>&1 | tee "$out/$name.txt"
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - start)) s (cap $cap s)"
  [ "$rc" -eq 0 ] || failed+=("$name")
}
step gpu_tests 180 "$py" -m pytest -m gpu -q -p no:cacheprovider tests/gpu
step bench_mnist_cuda 60 "$py" scripts/bench.py --device cuda --repeats 3 \
  --out "$out/bench_mnist_cuda.json"
step bench_cifar_cuda 150 "$py" scripts/bench.py --device cuda --suite cifar --repeats 3 --amp \
  --channels-last --skip "DP-SGD" --out "$out/bench_cifar_cuda.json"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "gpu_check: failed: ${failed[*]}"
  exit 1
fi
echo "gpu_check: all steps passed"
