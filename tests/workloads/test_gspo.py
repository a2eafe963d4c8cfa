"""GSPO for real on CPU: a rollout server process with a tiny random VLM (LLaVA-style), the trainer under
`torchrun --nproc_per_node 2` (gloo, ZeRO-2) on the generated `letters` task. The trainer publishes
its weights before the first step and after each update; samples are on-policy (staleness 0); the
mean reward rises; with two updates per rollout batch the second one is clipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from vlmop.operator.localapi.loopback import free_port, wait_ready
from vlmop.workloads.rl.gspo import RewardMetrics
from vlmop.workloads.rl.rewards.mixture import Tally

STEPS = 12
PRESET = "tiny-vl"  # the LLaVA-style tiny VLM (ViT + projector + LM), sampling on text prompts


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    weights, port = tmp_path / "weights", free_port()
    weights.mkdir()
    command = [sys.executable, "-m", "vlmop.workloads.rl.rollout_server", "--weights-dir", str(weights),
               "--model-preset", PRESET,
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/health", process, tmp_path / "server.log")
    yield url, weights
    process.terminate()
    process.wait(10)


def gspo(url: str, weights: Path, tmp_path: Path, steps: int, *extra: str) -> list[dict[str, Any]]:
    """Run the trainer on 2 ranks; its per-step log lines."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
        "--master-port", str(free_port()), "-m", "vlmop.workloads.rl.gspo", "--rollout-url", url,
        "--rollout-engine", "vlmop",
        "--model-preset", PRESET,
        "--weights-dir", str(weights),
        "--task", "letters", "--group-size", "8", "--max-tokens", "4", "--micro-batch-size", "4",
        "--mini-batches", "2",
        "--total-steps", str(steps), "--lr", "3e-3", "--warmup-steps", "0", "--lr-schedule", "constant",
        "--min-accuracy", "0", "--max-accuracy", "1", "--precision", "fp32", "--checkpoint-dir",
        str(tmp_path / "ckpt"), "--checkpoint-interval", "100", "--metrics-port", "0",
        "--log-file", str(tmp_path / "steps.jsonl"), *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLMOP_TERMINATION_LOG": str(tmp_path / "termination-log")}
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]


def test_gspo_raises_the_mean_reward_on_a_generated_task(server: tuple[str, Path], tmp_path: Path) -> None:
    url, weights = server
    steps = gspo(url, weights, tmp_path, STEPS)
    rewards = [s["reward_mean"] for s in steps]
    assert len(steps) == STEPS and all(s["staleness"] == 0 for s in steps)
    # The 2nd mini-batch of each rollout batch is off-policy: GSPO's tight clip (3e-4/4e-4) binds there.
    assert max(s["clip_fraction"] for s in steps) > 0
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.15, rewards
    with urllib.request.urlopen(f"{url}/health") as reply:  # noqa: S310 (loopback)
        assert json.loads(reply.read())["version"] == STEPS  # the last update reached the pool
    assert sorted(p.name for p in weights.iterdir()) == [f"v{STEPS - 1:08d}", f"v{STEPS:08d}"]
    # What the operator reads into the CascadeRLJob's status: the figures of the last step.
    report = json.loads((tmp_path / "termination-log").read_text())
    assert report["policyVersion"] == STEPS and report["clipFraction"] == steps[-1]["clip_fraction"]
    assert report["meanRewardBySource"] == {"letters": pytest.approx(rewards[-1])}
    # 2 ranks x 4 prompts x 8 samples, all scored (in the reward worker processes), summed over ranks.
    tally = report["rewardsByVerifier"]["letters"]
    assert {k: tally[k] for k in ("scored", "failed", "timedOut")} == {
        "scored": 64,
        "failed": 0,
        "timedOut": 0,
    }
    assert tally["meanReward"] == pytest.approx(rewards[-1], abs=1e-4)
    assert steps[-1]["rewards_by_verifier"] == {"letters": tally}


def test_gspo_under_zero3_publishes_the_gathered_model(server: tuple[str, Path], tmp_path: Path) -> None:
    """ZeRO-3 partitions every parameter: publication gathers them, so the pool loads a whole model."""
    url, weights = server
    steps = gspo(url, weights, tmp_path, 2, "--zero-stage", "3")
    assert len(steps) == 2 and all(s["staleness"] == 0 for s in steps)
    with urllib.request.urlopen(f"{url}/health") as reply:  # noqa: S310 (loopback)
        assert json.loads(reply.read())["version"] == 2


def test_reward_counters_add_up_every_step() -> None:
    registry = prometheus_client.CollectorRegistry()
    metrics = RewardMetrics(registry)
    metrics.add("math", Tally(scored=30, failed=1, timed_out=1, full=12, total=12.0))
    metrics.add("math", Tally(scored=32, full=4, total=4.0))
    text = prometheus_client.generate_latest(registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert samples[("vlmop_reward_samples_total", (("outcome", "scored"), ("verifier", "math")))] == 62
    assert samples[("vlmop_reward_samples_total", (("outcome", "timed_out"), ("verifier", "math")))] == 1
    assert samples[("vlmop_reward_full_score_samples_total", (("verifier", "math"),))] == 16
