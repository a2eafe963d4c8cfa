#!/usr/bin/env bash
# The checks that need a GPU, for a machine that has torch and triton but no package index (the device
# tool's): the repo goes on PYTHONPATH as the `vlmop` namespace, and wheels in .whl/ (Liger-Kernel,
# pytest-asyncio, DeepSpeed and pydantic) are installed when there.
#   kernels: the kernel tests on compiled Triton (CI runs them in Triton's interpreter), and the
#            log-prob benchmark against the naive path and Liger-Kernel;
#   serving: the serving tests with the models on the GPU, and the DvD serving benchmark;
#   trainer: the trainer's tokens/s and MFU against a fair plain loop (fp32 master weights, bf16
#            autocast, fused AdamW), bf16: Qwen2.5-0.5B's and Qwen3-1.7B's shapes (dense), and a small
#            MoE (Qwen3-30B-A3B's layers with 8 experts, top-2: ~3.3B parameters, ~1.1B active).
#
#   bash bench/gpu_checks.sh [OUT_DIR] [kernels] [serving] [trainer]   # default: all; results.csv to OUT_DIR
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bench}
shift || true
parts=${*:-kernels serving trainer}
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
# --confcutdir: only the suite's own conftest (the root one starts the local control plane, whose
# dependencies are not installed here).
if [[ " $parts " == *" kernels "* ]]; then
  python3 -m pytest -q -p no:cacheprovider --tb=short --confcutdir=tests/kernels tests/kernels
  python3 bench/linear_logprob.py --device cuda --dtype bf16 --tokens 16384 --hidden 4096 --vocab 32000 151936
  # 64k tokens: the naive path's logits alone would need 19 GiB, and its float32 gradients more
  python3 bench/linear_logprob.py --device cuda --dtype bf16 --tokens 65536 --hidden 4096 --vocab 151936 \
    --providers fused liger
fi
if [[ " $parts " == *" serving "* ]]; then
  python3 -m pytest -q -p no:cacheprovider --tb=short --confcutdir=tests/workloads tests/workloads/test_serving.py
  python3 bench/dvd_serving.py --stacks standin,standin-coupled  # no vLLM venv on the device machine
fi
if [[ " $parts " == *" trainer "* ]]; then
  python3 bench/pretrain_overhead.py --preset qwen2.5-0.5b --precision bf16 --seq-length 2048 \
    --micro-batch-size 8 --zero-stage 2 --steps 30 --measure 10
  python3 bench/pretrain_overhead.py --preset qwen3-1.7b --precision bf16 --seq-length 2048 \
    --micro-batch-size 4 --zero-stage 2 --steps 30 --measure 10
  python3 bench/pretrain_overhead.py --preset qwen3-30b-a3b --experts 8 --top-k 2 --precision bf16 \
    --seq-length 2048 --micro-batch-size 2 --activation-checkpointing --zero-stage 2 --steps 30 --measure 10
fi
cp bench/results.csv "$out/results.csv" 2>/dev/null || true
