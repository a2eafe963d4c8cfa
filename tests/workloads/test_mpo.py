"""The MPO trainer for real on CPU: `torchrun --nproc_per_node 2` (gloo), DeepSpeed ZeRO-2, a tiny random
Llama, preference pairs whose chosen answers differ from the rejected ones. At the first step the
policy is the reference, so the preference loss is exactly log 2 and δ is 0; the preference loss then
falls; δ is all-reduced over ranks, checkpointed, and carried on by a resumed run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from vlmop.operator.localapi.loopback import free_port
from vlmop.workloads.common import checkpoint
from vlmop.workloads.pretrain import models

COMMON = [
    "--model-preset", "tiny", "--seq-length", "64", "--precision", "fp32", "--micro-batch-size", "2",
    "--lr", "2e-3", "--warmup-steps", "0", "--lr-schedule", "constant", "--checkpoint-interval", "6",
    "--metrics-port", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    colours = ["red", "green", "blue", "pink"]
    lines = [
        {"prompt": f"Q{i}: what colour is a {c} ball?", "chosen": f"It is {c}.", "rejected": "I do not know."}
        for i, c in enumerate(colours * 4)
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines))
    return path


def train(workdir: Path, data: Path, steps: int, *extra: str) -> list[dict[str, Any]]:
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
        "--master-port", str(free_port()), "-m", "vlmop.workloads.rl.mpo", "--data", str(data),
        "--checkpoint-dir", str(workdir / "ckpt"), "--log-file", str(workdir / "steps.jsonl"),
        "--total-steps", str(steps), *COMMON, *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLMOP_TERMINATION_LOG": str(workdir / "termination-log")}
    env.pop("TRITON_INTERPRET", None)  # the torch path of the fused log-prob, as on any CPU pod
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(line) for line in (workdir / "steps.jsonl").read_text().splitlines()]


def state(workdir: Path, step: int) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((workdir / "ckpt" / f"step-{step:08d}" / "COMPLETE").read_text())
    return loaded


def test_mpo_starts_at_log_2_learns_the_preference_and_resumes_delta(pairs: Path, tmp_path: Path) -> None:
    # Three epochs of 16 pairs at 2 per micro-batch on 2 ranks: 12 steps (--epochs wins over the 99).
    steps = train(tmp_path, pairs, 99, "--epochs", "3", "--export-dir", str(tmp_path / "export"))
    first, last = steps[0], steps[-1]
    assert len(steps) == 12
    assert first["preference"] == pytest.approx(0.693147, abs=1e-4)  # policy == reference at step 1
    assert first["delta"] == pytest.approx(0.0, abs=1e-6)
    assert last["preference"] < 0.5 < first["preference"]
    assert last["generation"] < first["generation"]
    # δ saw every reward of every rank: 12 steps x 2 ranks x 2 pairs x (chosen, rejected)
    assert state(tmp_path, 12)["quality_baseline"]["count"] == 96

    # The finished policy is exported for the next stage (GSPO, the rollout servers) to load.
    exported = models.build(None, tmp_path / "export")
    final = checkpoint.state(tmp_path / "ckpt" / "step-00000012")
    assert final["step"] == 12 and sum(p.numel() for p in exported.parameters()) > 0
    assert not any(
        torch.equal(a, b)
        for a, b in zip(exported.parameters(), models.build("tiny", None).parameters(), strict=True)
    )  # trained, not the fresh init

    resumed = train(tmp_path, pairs, 14)
    assert [row["step"] for row in resumed[-2:]] == [13, 14]
    assert state(tmp_path, 14)["quality_baseline"]["count"] == 96 + 16
