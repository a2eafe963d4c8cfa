"""The Cascade RL losses against values worked out by hand from ../shared/specs/cascade-rl.md."""

from __future__ import annotations

import math

import pytest
import torch

from vlmop.workloads.rl.losses import (
    QualityBaseline,
    group_advantages,
    informative,
    keep_prompt,
    mpo_loss,
    policy_loss,
)

T = torch.tensor


def test_mpo_first_batch_by_hand() -> None:
    # chosen: token log-probs -1 -2 -3 -4 (sum -10), reference -12   → Δc = 2
    # rejected: -5 -5 -5 (a 4th token masked out) (sum -15), ref -13 → Δr = -2
    # L_p = -log σ(0.1·(2 - (-2))) = log(1 + e^-0.4)                        = 0.513015
    # δ = mean(0.1·2, 0.1·(-2)) = 0 (first batch: the batch's own mean)
    # L_q = -log σ(0.2 - 0) - log σ(-(-0.2 - 0)) = 2·log(1 + e^-0.2)        = 1.196278
    # L_g = (1 + 2 + 3 + 4) / 4                                              = 2.5
    # L = 0.8·0.513015 + 0.2·1.196278 + 1.0·2.5                              = 3.149668
    baseline = QualityBaseline()
    chosen = T([[-1.0, -2.0, -3.0, -4.0]], requires_grad=True)
    rejected = T([[-5.0, -5.0, -5.0, -99.0]], requires_grad=True)
    out = mpo_loss(
        chosen, T([[1, 1, 1, 1.0]]), rejected, T([[1, 1, 1, 0.0]]), T([-12.0]), T([-13.0]), baseline
    )
    assert out.preference.item() == pytest.approx(0.513015, abs=1e-6)
    assert out.quality.item() == pytest.approx(1.196278, abs=1e-6)
    assert out.generation.item() == pytest.approx(2.5)
    assert out.total.item() == pytest.approx(3.149668, abs=1e-6)
    assert out.delta == 0.0
    out.total.backward()
    assert rejected.grad is not None and rejected.grad[0, 3] == 0  # the masked token gets nothing

    # Second batch: Δc = Δr = 1 → rewards 0.1, 0.1; δ = (0.2 - 0.2 + 0.1 + 0.1) / 4 = 0.05 (updated
    # BEFORE the loss); L_q = -log σ(0.1 - 0.05) - log σ(-(0.1 - 0.05)) = 1.386919
    second = mpo_loss(T([[-1.0]]), T([[1.0]]), T([[-1.0]]), T([[1.0]]), T([-2.0]), T([-2.0]), baseline)
    assert second.delta == pytest.approx(0.05)
    assert second.quality.item() == pytest.approx(1.386919, abs=1e-6)


def test_quality_baseline_is_trainer_state() -> None:
    baseline = QualityBaseline()
    baseline.update(T([0.2, -0.2, 0.1, 0.1]))
    restored = QualityBaseline()
    restored.load_state_dict(baseline.state_dict())
    assert restored.update(T([0.4, 0.4])) == pytest.approx((0.2 + 0.8) / 6)


def test_group_advantages_use_the_unbiased_std() -> None:
    # rewards (1, 0): mean 0.5, unbiased std √0.5 → ±0.5 / (0.707107 + 1e-6) = ±0.707106
    adv = group_advantages(T([[1.0, 0.0], [3.0, 3.0]]))
    assert adv[0].tolist() == pytest.approx([0.707106, -0.707106], abs=1e-6)
    assert adv[1].tolist() == [0.0, 0.0]
    assert informative(T([[1.0, 0.0], [3.0, 3.0]])).tolist() == [True, False]


def test_gspo_by_hand() -> None:
    # Â = ±0.707106 (above). Sequence 1: log-ratio mean (0.1 + 0.3)/2 = 0.2 → s = e^0.2 = 1.221403,
    # clipped to 1 + 4e-4: min(1.221403·Â, 1.0004·Â) = 0.707389 (the clip binds).
    # Sequence 2: log-ratios ±1e-4 → mean 0 → s = 1: -0.707106 (no clip).
    # L = -(0.707389 - 0.707106) / 2 = -0.000141; one of two sequences clipped.
    adv = group_advantages(T([[1.0, 0.0]])).flatten()
    logps = T([[0.1, 0.3], [-1e-4, 1e-4]])
    out = policy_loss(logps, torch.zeros(2, 2), torch.ones(2, 2), adv, "gspo")
    assert out.loss.item() == pytest.approx(-0.000141, abs=2e-6)
    assert out.clip_fraction == 0.5


def test_grpo_by_hand() -> None:
    # Token ratios, clip (0.8, 1.28). Sequence 1 (Â = +1): e^0.5 = 1.6487 → clipped 1.28 → -1.28;
    # e^0 = 1 → -1. Sequence 2 (Â = -1): 0.5 → clipped up to 0.8 → +0.8; its 2nd token masked.
    # token-mean: (-1.28 - 1 + 0.8) / 3 = -0.493333; 2 of 3 tokens clipped.
    logps = T([[0.5, 0.0], [math.log(0.5), 7.0]])
    out = policy_loss(logps, torch.zeros(2, 2), T([[1, 1], [1, 0.0]]), T([1.0, -1.0]), "grpo")
    assert out.loss.item() == pytest.approx(-0.493333, abs=1e-6)
    assert out.clip_fraction == pytest.approx(2 / 3)


def test_gspo_gradient_flows_only_through_unclipped_sequences() -> None:
    logps = T([[0.1, 0.3], [-1e-4, 1e-4]], requires_grad=True)
    policy_loss(logps, torch.zeros(2, 2), torch.ones(2, 2), T([0.7, -0.7]), "gspo").loss.backward()
    assert logps.grad is not None
    assert logps.grad[0].abs().sum() == 0 and logps.grad[1].abs().sum() > 0


@pytest.mark.parametrize(
    ("accuracy", "kept"), [(0.0, False), (0.2, True), (0.5, True), (0.8, True), (0.9, False)]
)
def test_prompt_filter_keeps_accuracy_between_0_2_and_0_8(accuracy: float, kept: bool) -> None:
    assert keep_prompt(accuracy) is kept
