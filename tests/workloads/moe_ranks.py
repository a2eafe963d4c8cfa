"""Run by torchrun for test_moe.py: the tiny-moe preset with its experts split over 2 ranks (EP = 2,
dropless), under deepspeed.initialize as the trainer runs it. Every rank takes a different batch (so
tokens cross ranks to their experts); each writes its logits and the experts it holds, and the model
is exported as a Qwen3-MoE checkpoint for the test to load with transformers."""

from __future__ import annotations

import sys
from pathlib import Path

import deepspeed
import torch
import torch.distributed as dist
from safetensors.torch import save_file

from vlmop.workloads.pretrain import models, moe

EXPERTS = moe.Experts(parallel_size=2)
CONFIG = {"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": 2}}


def batch(rank: int) -> torch.Tensor:
    return torch.randint(3, 500, (2, 24), generator=torch.Generator().manual_seed(100 + rank))


def main(out: Path) -> None:
    deepspeed.init_distributed(dist_backend="gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = models.build("tiny-moe", None, experts=EXPERTS)
    groups = moe.optimizer_groups([{"params": list(model.parameters())}])
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(groups), config=CONFIG)
    engine.eval()
    with torch.no_grad():
        logits = engine(input_ids=batch(rank)).logits
    held = {n: p.detach().clone() for n, p in engine.module.named_parameters() if moe.EXPERTS in n}
    save_file({"logits": logits.contiguous(), **held}, str(out / f"rank{rank}.safetensors"))
    moe.export(engine.module, EXPERTS, out / "export")
    dist.barrier()
    # Read back as the trainer's --model-path reads it: each rank only its own experts.
    reloaded = models.build(None, out / "export", experts=EXPERTS).eval()
    for block in moe.blocks(reloaded):
        block.moe.set_deepspeed_parallelism()  # the EP group the engine made for the first model
    with torch.no_grad():
        again = reloaded(input_ids=batch(rank)).logits
    save_file({"logits": again.contiguous()}, str(out / f"reloaded{rank}.safetensors"))
    dist.barrier()
    dist.destroy_process_group()  # left to the interpreter's exit, gloo's threads may abort it


if __name__ == "__main__":
    main(Path(sys.argv[1]))
