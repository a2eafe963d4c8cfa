"""The Cascade RL objectives exactly as ../shared/specs/cascade-rl.md states them: MPO's three losses
(stage 1) and GSPO's sequence-level clipped objective with GRPO's token-level one as a mode (stage 2).

Inputs are per-token log-probs (from vlmop.kernels.linear_logprob) with a mask of the answer tokens;
nothing here touches a model, so each loss is checked against hand-computed values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

# ---- stage 1: MPO ----


@dataclass(frozen=True)
class MPOConfig:
    beta: float = 0.1
    preference_weight: float = 0.8  # InternVL's w_p, w_q, w_g
    quality_weight: float = 0.2
    generation_weight: float = 1.0


@dataclass
class QualityBaseline:
    """δ of the BCO quality loss: the running mean of every reward βΔ seen so far (chosen and
    rejected alike), updated with the current batch before the loss. Part of the trainer state."""

    total: float = 0.0
    count: int = 0
    # Sums [Σ rewards, count] over data-parallel ranks (an all-reduce), so every rank keeps one δ.
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None

    def update(self, rewards: torch.Tensor) -> float:
        stats = torch.stack([rewards.detach().float().sum(), rewards.new_tensor(float(rewards.numel()))])
        if self.reduce is not None:
            stats = self.reduce(stats)
        self.total += float(stats[0])
        self.count += int(stats[1])
        return self.value

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else 0.0

    def state_dict(self) -> dict[str, float]:
        return {"total": self.total, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.total, self.count = float(state["total"]), int(state["count"])


@dataclass(frozen=True)
class MPOLoss:
    total: torch.Tensor
    preference: torch.Tensor
    quality: torch.Tensor
    generation: torch.Tensor
    delta: float


def sequence_logps(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log π(y|x): the answer's token log-probs summed (B, T) → (B,)."""
    return (token_logps * mask).sum(-1)


def mpo_loss(
    chosen: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected: torch.Tensor,
    rejected_mask: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    baseline: QualityBaseline,
    config: MPOConfig = MPOConfig(),
) -> MPOLoss:
    """chosen/rejected: the policy's per-token log-probs (B, T) with answer masks; ref_*: the frozen
    reference's sequence log-probs (B,), precomputed once per pair."""
    beta = config.beta
    delta_c = sequence_logps(chosen, chosen_mask) - ref_chosen
    delta_r = sequence_logps(rejected, rejected_mask) - ref_rejected
    preference = -F.logsigmoid(beta * (delta_c - delta_r)).mean()
    delta = baseline.update(torch.cat([beta * delta_c, beta * delta_r]))
    quality = (-F.logsigmoid(beta * delta_c - delta) - F.logsigmoid(-(beta * delta_r - delta))).mean()
    generation = -(chosen * chosen_mask).sum() / chosen_mask.sum().clamp_min(1)
    total = (
        config.preference_weight * preference
        + config.quality_weight * quality
        + config.generation_weight * generation
    )
    return MPOLoss(total, preference.detach(), quality.detach(), generation.detach(), delta)


# ---- stage 2: GSPO (and GRPO) ----

LossMode = Literal["gspo", "grpo"]
CLIP = {"gspo": (3e-4, 4e-4), "grpo": (0.2, 0.28)}  # (ε_low, ε_high): GSPO paper, DAPO's clip-higher


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(P, G) rewards → Â = (r - mean) / (std + 1e-6) per group, std unbiased (as verl)."""
    return (rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, keepdim=True) + 1e-6)


def informative(rewards: torch.Tensor) -> torch.Tensor:
    """(P,) which groups carry a signal: all-equal rewards give zero advantage and are dropped."""
    return (rewards != rewards[:, :1]).any(-1)


def keep_prompt(accuracy: float, low: float = 0.2, high: float = 0.8) -> bool:
    """The prompt filter: prompts the policy solves sometimes, neither never nor always."""
    return low <= accuracy <= high


@dataclass(frozen=True)
class PolicyLoss:
    loss: torch.Tensor
    clip_fraction: float  # share of sequences (GSPO) or tokens (GRPO) whose clipped term was taken


def policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    mode: LossMode = "gspo",
    eps_low: float | None = None,
    eps_high: float | None = None,
) -> PolicyLoss:
    """logps/old_logps/mask (N, T) per answer token, advantages (N,) (flattened groups).

    gspo: s_i = exp(mean_t(log πθ - log π_old)) per sequence; loss = -mean_i min(s_i Â_i,
    clip(s_i) Â_i) (the mean over G, then over prompts, is the mean over all N with equal G).
    grpo: the same with a per-token ratio, averaged over all answer tokens (verl's token-mean)."""
    low, high = CLIP[mode]
    low, high = eps_low if eps_low is not None else low, eps_high if eps_high is not None else high
    mask = mask.to(logps.dtype)
    log_ratio = (logps - old_logps) * mask
    if mode == "gspo":
        ratio = torch.exp(log_ratio.sum(-1) / mask.sum(-1).clamp_min(1))
        weights, adv = torch.ones_like(ratio), advantages
    else:
        ratio, weights, adv = torch.exp(log_ratio), mask, advantages.unsqueeze(-1)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1 - low, 1 + high)
    per_item = torch.maximum(unclipped, clipped)
    loss = (per_item * weights).sum() / weights.sum().clamp_min(1)
    took_clip = ((clipped > unclipped).to(weights.dtype) * weights).sum() / weights.sum().clamp_min(1)
    return PolicyLoss(loss, float(took_clip))
