"""The trainer's configuration: one typed dataclass, filled from the command line the operator renders
(vlmop.operator.builders.pretrainjob.program) or a person types."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vlmop.operator.api.training import DeepSpeed
from vlmop.operator.builders.deepspeed import ds_config
from vlmop.workloads.pretrain.moe import Experts


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    model_preset: str | None = "tiny"
    model_path: Path | None = None
    data_format: str = "text"
    seq_length: int = 512
    packing: bool = True
    deepspeed_config: Path | None = None  # rendered by the operator into a ConfigMap
    zero_stage: int = 2  # the rest are used only without --deepspeed-config
    precision: str = "bf16"
    activation_checkpointing: bool = False  # recompute each layer's activations in the backward pass
    micro_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    lr: float = 3e-4
    min_lr: float = 0.0
    lr_schedule: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.1
    total_steps: int = 1000
    seed: int = 42
    checkpoint_dir: Path = Path("/checkpoints")
    checkpoint_interval: int = 500
    keep_last: int = 3
    resume_from: str = "latest"
    metrics_port: int = 9400
    log_file: Path | None = None  # rank 0 appends one JSON line per step
    export_dir: Path | None = None  # the finished model as a Hugging Face checkpoint (the next stage's start)
    experts: int | None = None  # Mixture-of-Experts presets: experts per layer (else the preset's)
    top_k: int | None = None
    expert_parallel_size: int = 1
    capacity_factor: float | None = None  # None: dropless
    aux_loss_coef: float = Experts.aux_loss_coef

    def moe(self) -> Experts | None:
        """The expert settings, None when all are defaults (a MoE preset then routes as it says)."""
        experts = Experts(
            self.experts, self.top_k, self.expert_parallel_size, self.capacity_factor, self.aux_loss_coef
        )
        return None if experts == Experts() else experts

    def deepspeed(self) -> dict[str, Any]:
        if self.deepspeed_config:
            loaded: dict[str, Any] = json.loads(self.deepspeed_config.read_text())
            return loaded
        spec = DeepSpeed(
            zero_stage=self.zero_stage,
            precision=self.precision,
            micro_batch_size=self.micro_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
        )
        return ds_config(spec)


def parser(data_required: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vlmop.workloads.pretrain", description=__doc__)
    d = TrainConfig(data=Path())
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model-preset", default=d.model_preset, help="named config built from scratch")
    model.add_argument("--model-path", type=Path, help="Hugging Face checkpoint directory (safetensors)")
    p.add_argument("--data", type=Path, required=data_required, help="dataset file or directory")
    p.add_argument("--data-format", choices=["text", "image-text"], default=d.data_format)
    p.add_argument("--seq-length", type=int, default=d.seq_length)
    p.add_argument("--no-packing", dest="packing", action="store_false", help="one sample per sequence")
    p.add_argument("--deepspeed-config", type=Path, help="ds_config JSON (else rendered from the flags)")
    p.add_argument("--zero-stage", type=int, choices=[0, 1, 2, 3], default=d.zero_stage)
    p.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default=d.precision)
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="recompute each layer's activations in the backward pass")  # fmt: skip
    p.add_argument("--micro-batch-size", type=int, default=d.micro_batch_size)
    p.add_argument("--gradient-accumulation-steps", type=int, default=d.gradient_accumulation_steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--min-lr", type=float, default=d.min_lr)
    p.add_argument("--lr-schedule", choices=["cosine", "linear", "constant"], default=d.lr_schedule)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--total-steps", type=int, default=d.total_steps)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--checkpoint-dir", type=Path, default=d.checkpoint_dir)
    p.add_argument("--checkpoint-interval", type=int, default=d.checkpoint_interval)
    p.add_argument("--keep-last", type=int, default=d.keep_last)
    p.add_argument("--resume-from", default=d.resume_from, help="latest, none, or a checkpoint directory")
    p.add_argument("--metrics-port", type=int, default=d.metrics_port, help="rank 0's endpoint; 0: off")
    p.add_argument("--log-file", type=Path, help="rank 0 appends one JSON line per step")
    p.add_argument("--export-dir", type=Path, help="write the finished model here (config + safetensors)")
    moe = p.add_argument_group("Mixture-of-Experts presets")
    moe.add_argument("--experts", type=int, help="experts per sparse layer (default: the preset's)")
    moe.add_argument("--top-k", type=int, help="experts per token (default: the preset's)")
    moe.add_argument("--expert-parallel-size", type=int, default=d.expert_parallel_size,
                     help="ranks sharing one copy of each layer's experts")  # fmt: skip
    moe.add_argument("--capacity-factor", type=float, help="an expert's capacity over an even share; "
                     "tokens beyond it are dropped (default: dropless)")  # fmt: skip
    moe.add_argument("--aux-loss-coef", type=float, default=d.aux_loss_coef,
                     help="weight of the load-balancing loss")  # fmt: skip
    return p


def parse(argv: list[str] | None = None) -> TrainConfig:
    args = vars(parser().parse_args(argv))
    if args.get("model_path"):
        args["model_preset"] = None
    return TrainConfig(**{f.name: args[f.name] for f in fields(TrainConfig) if f.name in args})
