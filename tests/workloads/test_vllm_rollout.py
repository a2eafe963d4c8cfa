"""The Cascade RL rollout pool on vLLM's real server (CPU build), started with the command line and
environment the operator writes for `rollout.engine: vllm` on a tiny random InternVL checkpoint:
a published version is served exactly (greedy ids equal transformers' on the new weights, the
version is reported, a server on another version is caught), and GSPO under `torchrun
--nproc_per_node 2` with vLLM rollouts raises the mean reward as the stand-in test does."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from vlmop.operator.api import CascadeRLJobSpec
from vlmop.operator.builders import cascaderljob
from vlmop.operator.builders import pool as pools
from vlmop.operator.localapi.loopback import free_port
from vlmop.workloads.rl import rollout
from vlmop.workloads.serving.model import save_tiny, tiny_config

ROOT = Path(__file__).resolve().parents[2]
STEPS = 12


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, vllm: Any) -> Iterator[tuple[str, Path, Path]]:
    """(URL, checkpoint, weights folder) of the example's gspo rollout pool switched to vLLM."""
    work = tmp_path_factory.mktemp("rollout-vllm")
    model = save_tiny(work / "model")
    doc = copy.deepcopy(yaml.safe_load((ROOT / "examples" / "cascaderljob.yaml").read_text()))
    doc["spec"]["model"] = {"path": str(model)}
    for stage in doc["spec"]["stages"]:
        stage["skip"] = stage["kind"] != "gspo"  # the gspo stage starts from the checkpoint itself
        if stage["kind"] == "gspo":
            stage["rollout"].update(engine="vllm", port=free_port(), dtype="float32")  # as transformers
    spec = CascadeRLJobSpec.model_validate(doc["spec"])
    index = next(i for i, s in enumerate(spec.stages) if not s.skip)
    owner = {"metadata": {"name": "rl", "namespace": "ns", "uid": "u"}, "apiVersion": "vlmop.io/v1alpha1",
             "kind": "CascadeRLJob"}  # fmt: skip
    pool = cascaderljob.rollout_pool(owner, spec, index)
    container = pools.deployment(pool)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["vllm", "serve", str(model)]
    with vllm.server(container, work / "vllm.log"):
        yield f"http://127.0.0.1:{pool.port}", model, work / "weights"


def greedy(model: torch.nn.Module, prompt: list[int], tokens: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=tokens, do_sample=False)  # type: ignore[operator]
    return list(out[0, len(prompt) :].tolist())


def test_a_published_version_is_served_exactly(served: tuple[str, Path, Path]) -> None:
    from transformers import InternVLForConditionalGeneration

    url, _, weights = served
    prompts = [[1, *range(40, 40 + n)] for n in (3, 17, 60)]
    requests = [rollout.Request("", p, 1, 0.0, 12, 1.0, None) for p in prompts]
    before = [rollout.sample(url, r, "vllm")[0].token_ids for r in requests]  # the checkpoint's weights
    torch.manual_seed(7)
    config = tiny_config()
    config.tie_word_embeddings = False
    policy = InternVLForConditionalGeneration(config).eval()
    rollout.publish(policy, weights, 1, [url], engine="vllm")
    assert rollout.served_version(url) == 1
    after = rollout.sample_all([url], requests, "vllm", version=1)
    assert [g[0].token_ids for g in after] == [greedy(policy, p, 12) for p in prompts]
    assert [g[0].token_ids for g in after] != before and all(g[0].version == 1 for g in after)
    with pytest.raises(RuntimeError, match="other policy versions than 2"):
        rollout.sample_all([url], requests, "vllm", version=2)
    assert rollout.stale([url], 2, "vllm") == [url] and rollout.stale([url], 1, "vllm") == []


def test_gspo_with_vllm_rollouts_raises_the_mean_reward(
    served: tuple[str, Path, Path], tmp_path: Path
) -> None:
    url, model, weights = served
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
        "--master-port", str(free_port()), "-m", "vlmop.workloads.rl.gspo", "--rollout-url", url,
        "--rollout-engine", "vllm", "--model-path", str(model), "--weights-dir", str(weights),
        "--task", "letters", "--group-size", "8", "--max-tokens", "4", "--micro-batch-size", "4",
        "--mini-batches", "2",
        "--total-steps", str(STEPS), "--lr", "3e-3", "--warmup-steps", "0", "--lr-schedule", "constant",
        "--min-accuracy", "0", "--max-accuracy", "1", "--precision", "fp32", "--checkpoint-dir",
        str(tmp_path / "ckpt"), "--checkpoint-interval", "100", "--metrics-port", "0",
        "--log-file", str(tmp_path / "steps.jsonl"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLMOP_TERMINATION_LOG": str(tmp_path / "termination-log")}
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    rewards = [s["reward_mean"] for s in steps]
    assert len(steps) == STEPS and all(s["staleness"] == 0 for s in steps)
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.15, rewards
    assert rollout.served_version(url) == STEPS  # the last update reached the pool
    assert json.loads((tmp_path / "termination-log").read_text())["policyVersion"] == STEPS
