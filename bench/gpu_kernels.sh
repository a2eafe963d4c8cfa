#!/usr/bin/env bash
# The kernels on a real GPU: their tests on compiled Triton (CI runs them in Triton's interpreter) and
# the log-prob benchmark against the naive path and Liger-Kernel. For a machine that has torch and
# triton but no package index (the device tool's): the repo is put on PYTHONPATH as the `vlmop`
# namespace, and a Liger wheel in .whl/ is installed when one is there.
#
#   bash bench/gpu_kernels.sh [OUT_DIR]      # results.csv rows are appended; a copy lands in OUT_DIR
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bench}
site=$(mktemp -d)
mkdir -p "$site/vlmop"
for d in operator workloads kernels integrations; do ln -s "$root/$d" "$site/vlmop/$d"; done
if ls "$root"/.whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$root"/.whl/*.whl
fi
export PYTHONPATH=$site PYTHONUNBUFFERED=1
cd "$root"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
# Only the kernels' conftest: the root one starts the local control plane (not installed here).
python3 -m pytest -q -p no:cacheprovider --tb=short --confcutdir=tests/kernels tests/kernels
python3 bench/linear_logprob.py --device cuda --dtype bf16 --tokens 16384 --hidden 4096 --vocab 32000 151936
# 64k tokens: the naive path's logits alone would need 19 GiB, and its float32 gradients more
python3 bench/linear_logprob.py --device cuda --dtype bf16 --tokens 65536 --hidden 4096 --vocab 151936 \
  --providers fused liger
cp bench/results.csv "$out/results.csv" 2>/dev/null || true
