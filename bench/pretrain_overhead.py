"""Tokens/s of the vlmop trainer (torchrun + DeepSpeed, one rank) against a plain PyTorch loop on the
same model, data shape, optimizer and thread count; the ratio is the trainer's overhead. On a GPU the
same script measures a ~0.5B model (preset qwen2.5-0.5b, bf16) and reports MFU.

  python bench/pretrain_overhead.py                       # CPU: tiny preset, fp32
  python bench/pretrain_overhead.py --preset qwen2.5-0.5b --precision bf16 --seq-length 2048 \
      --micro-batch-size 8 --zero-stage 2                  # one H100

Both sides run `--steps` optimizer steps and report the mean of the last `--measure` steps."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results

from vlmop.workloads.pretrain import models
from vlmop.workloads.pretrain.trainer import PEAK_FLOPS, param_groups


def corpus(directory: Path, tokens: int, vocab: int) -> Path:
    rng = np.random.default_rng(0)
    np.save(directory / "tokens.npy", rng.integers(3, min(vocab, 30000), size=tokens).astype(np.int32))
    return directory


def plain(args: argparse.Namespace) -> float:
    """The baseline: a bare loop (forward, backward, clip, AdamW step) with no framework at all."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = models.build(args.preset, None).to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.precision]
    model = model.to(dtype)
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95))
    vocab = models.config_of(model).vocab_size
    times = []
    for _ in range(args.steps):
        ids = torch.randint(3, min(vocab, 30000), (args.micro_batch_size, args.seq_length), device=device)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.detach().item()  # the trainer reads its loss every step too
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    measured = times[-args.measure :]
    return args.micro_batch_size * args.seq_length * len(measured) / sum(measured)


def trainer(args: argparse.Namespace, workdir: Path) -> float:
    """The vlmop trainer as a pod runs it: torchrun -> python -m vlmop.workloads.pretrain."""
    vocab = models.preset_config(args.preset)
    vocab_size = getattr(getattr(vocab, "text_config", vocab), "vocab_size", 512)
    data = corpus(workdir, args.micro_batch_size * args.seq_length * (args.steps + 2), vocab_size)
    log = workdir / "steps.jsonl"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=1", "-m", "vlmop.workloads.pretrain",
        "--model-preset", args.preset, "--data", str(data), "--seq-length", str(args.seq_length),
        "--precision", args.precision, "--micro-batch-size", str(args.micro_batch_size),
        "--zero-stage", str(args.zero_stage), "--total-steps", str(args.steps), "--lr", "1e-4",
        "--lr-schedule", "constant", "--checkpoint-dir", str(workdir / "ckpt"),
        "--checkpoint-interval", str(10 * args.steps), "--metrics-port", "0", "--log-file", str(log),
    ]  # fmt: skip
    # The final save is not part of the loop's throughput: it happens after the last logged step.
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ))
    rows = [json.loads(line) for line in log.read_text().splitlines()][-args.measure :]
    return float(np.mean([r["tokens_per_second"] for r in rows]))


def mfu(args: argparse.Namespace, tokens_per_second: float) -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    if peak is None:
        return None
    model = models.build(args.preset, None)
    return 100 * tokens_per_second * models.flops_per_token(model, args.seq_length) / peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--precision", default="fp32", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--seq-length", type=int, default=256)
    p.add_argument("--micro-batch-size", type=int, default=8)
    p.add_argument("--zero-stage", type=int, default=2)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--measure", type=int, default=10, help="mean over the last this many steps")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for both sides")
    args = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    base = plain(args)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # what the baseline's allocator keeps, the trainer's process needs
    with tempfile.TemporaryDirectory() as tmp:
        ours = trainer(args, Path(tmp))
    shape = f"seq{args.seq_length} mbs{args.micro_batch_size} zero{args.zero_stage}"
    variant = f"{args.preset} {args.precision} {shape}"
    metrics = {
        "plain_tokens_per_second": base,
        "trainer_tokens_per_second": ours,
        "overhead_ratio_plain_over_trainer": base / ours,
    }
    for name, value in (("plain_mfu_percent", mfu(args, base)), ("trainer_mfu_percent", mfu(args, ours))):
        if value is not None:
            metrics[name] = value
    results.append("pretrain_overhead", variant, metrics)


if __name__ == "__main__":
    main()
