"""Run by torchrun for test_zero3_init.py: builds models as the trainer does under ZeRO-3 and writes,
per rank, what it held: the growth of its peak RSS while building a large model, the parameter
elements it holds of it, and the tiny preset's weights (gathered) to compare with a plain build."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import deepspeed
import torch
import torch.distributed as dist

from vlmop.workloads.pretrain import models

ZERO3 = {
    "train_micro_batch_size_per_gpu": 1,
    "gradient_accumulation_steps": 1,
    "zero_optimization": {"stage": 3},
}


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(large: Path, out: Path) -> None:
    deepspeed.init_distributed(dist_backend="gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    tiny = models.build("tiny", None, zero3=ZERO3)
    with deepspeed.zero.GatheredParameters(list(tiny.parameters())):
        weights = {n: p.detach().double().sum().item() for n, p in tiny.named_parameters()}
    before = peak_mib()
    model = models.build(None, large, weights=False, zero3=ZERO3)  # from its config: initialised
    grown = peak_mib() - before
    held = sum(p.ds_tensor.numel() for p in model.parameters())
    whole = sum(p.ds_numel for p in model.parameters())
    layer = model.model.layers[0].mlp.up_proj.weight
    with deepspeed.zero.GatheredParameters([layer]):
        std = layer.detach().float().std().item()
    report = {"grown_mib": grown, "held": held, "whole": whole, "std": std, "tiny": weights}
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
