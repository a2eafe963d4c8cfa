"""Tokens/s of the vlmop trainer (torchrun + DeepSpeed, one rank) against a plain PyTorch loop on the
same model, data shape, optimizer (fused AdamW), precision regime (fp32 master weights; bf16/fp16
compute) and thread count; the ratio is the trainer's overhead. On a GPU it also reports MFU against
the dense bf16 peak (bench/gpu_checks.sh trainer: dense 0.5B and 1.7B shapes, and a small MoE).

  python bench/pretrain_overhead.py [--zero-stage 3]      # CPU: tiny preset, fp32
  python bench/pretrain_overhead.py --preset tiny-moe      # CPU: the MoE path (one rank, EP 1)
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

from vlmop.workloads.pretrain import cpu, models, moe
from vlmop.workloads.pretrain.trainer import PEAK_FLOPS, param_groups


def corpus(directory: Path, tokens: int, vocab: int) -> Path:
    rng = np.random.default_rng(0)
    np.save(directory / "tokens.npy", rng.integers(3, min(vocab, 30000), size=tokens).astype(np.int32))
    return directory


def experts(args: argparse.Namespace) -> moe.Experts | None:
    return moe.Experts(args.experts, args.top_k) if args.experts or args.top_k else None


def plain(args: argparse.Namespace) -> tuple[float, float]:
    """The baseline, a bare loop with no framework at all (forward, backward, clip, AdamW step), in the
    trainer's precision regime: fp32 master weights, the forward and backward under autocast to
    bf16/fp16 (PyTorch's mixed precision), fused AdamW. Returns (tokens/s, training FLOPs per token)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = models.build(args.preset, None, experts=experts(args)).to(device)
    if args.activation_checkpointing:
        model.activation_checkpointing_enable()  # type: ignore[operator]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.precision]
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95), fused=True)
    scaler = torch.amp.GradScaler(device, enabled=args.precision == "fp16")
    blocks = moe.blocks(model)
    vocab = models.config_of(model).vocab_size
    times = []
    for _ in range(args.steps):
        ids = torch.randint(3, min(vocab, 30000), (args.micro_batch_size, args.seq_length), device=device)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device, dtype=dtype, enabled=args.precision != "fp32"):
            loss = model(input_ids=ids, labels=ids).loss
            if blocks:  # as the trainer adds it
                loss = loss + moe.Experts.aux_loss_coef * moe.aux_loss(blocks)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        loss.detach().item()  # the trainer reads its loss every step too
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    measured = times[-args.measure :]
    flops = models.flops_per_token(model, args.seq_length)
    return args.micro_batch_size * args.seq_length * len(measured) / sum(measured), flops


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
        *(["--activation-checkpointing"] if args.activation_checkpointing else []),
        *(["--experts", str(args.experts)] if args.experts else []),
        *(["--top-k", str(args.top_k)] if args.top_k else []),
    ]  # fmt: skip
    # The final save is not part of the loop's throughput: it happens after the last logged step.
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ))
    rows = [json.loads(line) for line in log.read_text().splitlines()][-args.measure :]
    return float(np.mean([r["tokens_per_second"] for r in rows]))


def mfu(tokens_per_second: float, flops_per_token: float) -> float | None:
    """Against the dense bf16 peak (989 TFLOP/s on an H100 or H200), not the sparse figure."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    return None if peak is None else 100 * tokens_per_second * flops_per_token / peak


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
    p.add_argument("--activation-checkpointing", action="store_true", help="both sides recompute activations")
    p.add_argument("--experts", type=int, help="a MoE preset's experts per layer (else the preset's)")
    p.add_argument("--top-k", type=int, help="a MoE preset's experts per token (else the preset's)")
    args = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    if not torch.cuda.is_available():
        cpu.keep_freed_memory()  # the allocator settings the trainer makes on CPU, for both sides
    base, flops = plain(args)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # what the baseline's allocator keeps, the trainer's process needs
    with tempfile.TemporaryDirectory() as tmp:
        ours = trainer(args, Path(tmp))
    shape = f"seq{args.seq_length} mbs{args.micro_batch_size} zero{args.zero_stage}"
    routing = f" experts{args.experts or ''} top{args.top_k or ''}" if args.experts or args.top_k else ""
    checkpointed = " ac" if args.activation_checkpointing else ""
    variant = f"{args.preset}{routing} {args.precision} {shape}{checkpointed}"
    metrics = {
        "plain_tokens_per_second": base,
        "trainer_tokens_per_second": ours,
        "overhead_ratio_plain_over_trainer": base / ours,
    }
    for name, value in (("plain_mfu_percent", mfu(base, flops)), ("trainer_mfu_percent", mfu(ours, flops))):
        if value is not None:
            metrics[name] = value
    results.append("pretrain_overhead", variant, metrics)


if __name__ == "__main__":
    main()
