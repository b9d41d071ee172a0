#!/usr/bin/env bash
# On a machine with a CUDA GPU: the GPU-marked tests, then the benchmark on CUDA (both suites, and
# the MNIST one with torch.compile), in about 5 minutes (296 s on one H200: tests 125 s, MNIST
# suite 45 s, CIFAR suite 79 s, compile step 40 s; 322 s with the CUDA resume test added in a
# form that ran it twice, tests 183 s; it now runs once). Results land in
# ${OUT:-gpu_check}/. Every step runs even when an earlier one fails (so one slow step still
# leaves the others' figures); the exit status is 1 if any failed. The MNIST suite reads
# $ROBUSTAI_MNIST_IDX (default: ../shared/data/mnist beside the repository).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"
if [ -n "${PYTHON:-}" ]; then py=$PYTHON  # a path or a command name, used as given
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3; fi
"$py" - <<'PY' || exit 2
import sys

try:
    import torch
except ImportError:
    sys.exit(f"gpu_check.sh: {sys.executable} cannot import torch; set PYTHON to robustai's python")
if not torch.cuda.is_available():
    sys.exit("gpu_check.sh: torch sees no CUDA device; run this on a machine with a GPU")
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
PY
mkdir -p "$out"
failed=()
step() {  # step NAME SECONDS COMMAND...: run with a time cap, log to $out/NAME.txt
  local name=$1 cap=$2 start=$SECONDS
  shift 2
  timeout "$cap" "$@" 2>&1 | tee "$out/$name.txt"
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - start)) s (cap $cap s)"
  [ "$rc" -eq 0 ] || failed+=("$name")
}
step gpu_tests 300 "$py" -m pytest -m gpu -q -p no:cacheprovider tests/gpu
step bench_mnist_cuda 60 "$py" scripts/bench.py --device cuda --repeats 3 \
  --out "$out/bench_mnist_cuda.json"
# the synthetic classes stay separable at eps 8/255: the AT-model rows would repeat the others
step bench_cifar_cuda 150 "$py" scripts/bench.py --device cuda --suite cifar --repeats 3 --amp \
  --channels-last --skip "DP-SGD" "AT model" --at-epochs 1 --out "$out/bench_cifar_cuda.json"
# torch.compile, measured on robustai's own eager rows (the baselines, DP and CUDA graphs left out)
step bench_mnist_cuda_compile 100 "$py" scripts/bench.py --device cuda --compile --repeats 3 \
  --skip torchattacks DP-SGD "AT model" "CUDA graph" --at-epochs 1 \
  --out "$out/bench_mnist_cuda_compile.json"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "gpu_check: failed: ${failed[*]}"
  exit 1
fi
echo "gpu_check: all steps passed"
