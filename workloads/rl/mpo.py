"""Stage 1 of Cascade RL: the MPO trainer (`python -m vlmop.workloads.rl.mpo`, started by torchrun).

The pretraining trainer's machinery (DeepSpeed engine, step-addressed data order, COMPLETE-marked
checkpoints with RNG, SIGTERM save, progress endpoint) with preference pairs as data and MPO's loss.
The frozen reference is the starting model: its sequence log-probs are computed once per pair at start
(sharded over ranks) before any update, so no second model is kept. δ is checkpointed."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist

from vlmop.workloads.pretrain import config as pretrain_config
from vlmop.workloads.pretrain import data
from vlmop.workloads.pretrain.trainer import Trainer, launch
from vlmop.workloads.rl import preference
from vlmop.workloads.rl.logprobs import token_logps
from vlmop.workloads.rl.losses import MPOConfig, QualityBaseline, mpo_loss, sequence_logps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MPOTrainConfig(pretrain_config.TrainConfig):
    beta: float = 0.1
    preference_weight: float = 0.8
    quality_weight: float = 0.2
    generation_weight: float = 1.0
    epochs: int | None = None  # passes over the pairs; sets the step count from the data when given
    lr: float = 2e-7  # InternVL3.5's MPO learning rate

    def mpo(self) -> MPOConfig:
        return MPOConfig(self.beta, self.preference_weight, self.quality_weight, self.generation_weight)


def parse(argv: list[str] | None = None) -> MPOTrainConfig:
    p: argparse.ArgumentParser = pretrain_config.parser()
    p.prog = "python -m vlmop.workloads.rl.mpo"
    p.description = "MPO on JSONL preference pairs {prompt, chosen, rejected}."
    d = MPOTrainConfig(data=Path())
    p.set_defaults(lr=d.lr)
    p.add_argument("--beta", type=float, default=d.beta)
    p.add_argument("--preference-weight", type=float, default=d.preference_weight)
    p.add_argument("--quality-weight", type=float, default=d.quality_weight)
    p.add_argument("--generation-weight", type=float, default=d.generation_weight)
    p.add_argument("--epochs", type=int, help="passes over the pairs (instead of --total-steps)")
    args = vars(p.parse_args(argv))
    if args.get("model_path"):
        args["model_preset"] = None
    return MPOTrainConfig(**{f.name: args[f.name] for f in fields(MPOTrainConfig) if f.name in args})


class MPOTrainer(Trainer):
    cfg: MPOTrainConfig
    needs_starting_weights = True  # its reference log-probs are the starting model's

    def __init__(self, cfg: MPOTrainConfig) -> None:
        super().__init__(cfg)
        self.baseline = QualityBaseline(reduce=self._all_reduce)
        # ZeRO-3 partitions the LM head: read log-probs from the logits there, fused otherwise.
        self.fused = not self.stage3
        self.reference = self._reference_logps()
        self.parts: dict[str, float] = {}

    def planned(self, cfg: pretrain_config.TrainConfig) -> pretrain_config.TrainConfig:
        """With --epochs: as many steps as the pairs fill, at micro x accumulation x ranks per step."""
        epochs = cast(MPOTrainConfig, cfg).epochs
        if not epochs:
            return cfg
        per_step = (
            int(self.ds_config["train_micro_batch_size_per_gpu"])
            * int(self.ds_config.get("gradient_accumulation_steps", 1))
            * self.world
        )
        return dataclasses.replace(cfg, total_steps=max(1, math.ceil(epochs * len(self.data) / per_step)))

    def _build_data(self) -> preference.Pairs:  # type: ignore[override]
        return preference.Pairs(self.cfg.data, data.tokenizer_for(self.cfg.model_path), self.cfg.seq_length)

    @staticmethod
    def _all_reduce(stats: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(stats)
        return stats

    @property
    def pairs(self) -> preference.Pairs:
        return cast(preference.Pairs, self.data)

    def _batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = preference.collate([self.pairs[i] for i in indices], self.pairs.pad_id)
        return {k: v.to(self.engine.device) for k, v in batch.items()}

    @torch.no_grad()
    def _reference_logps(self) -> torch.Tensor:
        """(pairs, 2) sequence log-probs of chosen and rejected under the starting model."""
        reference = torch.zeros(len(self.data), 2, device=self.engine.device)
        mine = list(range(self.rank, len(self.data), self.world))
        micro = self.engine.train_micro_batch_size_per_gpu()
        for start in range(0, len(mine), micro):
            indices = mine[start : start + micro]
            batch = self._batch(indices)
            sums = sequence_logps(
                token_logps(self.engine.module, batch["input_ids"], batch["attention_mask"], self.fused),
                batch["answer_mask"],
            )
            reference[indices] = sums.view(2, -1).T.float()
        dist.all_reduce(reference)
        return reference

    def train_step(self) -> tuple[float, int]:
        losses, tokens = [], 0
        for indices in self.order.micro_batches(self.step, self.rank):
            batch = self._batch(indices)
            logps = token_logps(self.engine.module, batch["input_ids"], batch["attention_mask"], self.fused)
            mask, n = batch["answer_mask"], len(indices)
            ref = self.reference[indices]
            out = mpo_loss(
                logps[:n], mask[:n], logps[n:], mask[n:], ref[:, 0], ref[:, 1], self.baseline, self.cfg.mpo()
            )
            self.engine.backward(out.total)
            self.engine.step()
            losses.append(out.total.detach().float())
            self.parts = {"preference": float(out.preference), "quality": float(out.quality),
                          "generation": float(out.generation), "delta": out.delta}  # fmt: skip
            tokens += int(batch["attention_mask"].sum())
        return self.reduce_step(losses, tokens)

    def log_fields(self) -> dict[str, float]:
        return dict(self.parts)  # rank 0's last micro-batch

    def extra_state(self) -> dict[str, Any]:
        return {"quality_baseline": self.baseline.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "quality_baseline" in state:
            self.baseline.load_state_dict(state["quality_baseline"])


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    return launch(lambda: MPOTrainer(config))


if __name__ == "__main__":
    sys.exit(main())
