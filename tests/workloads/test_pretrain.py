"""The real trainer on CPU: `torchrun --nproc_per_node 2` (gloo) with DeepSpeed ZeRO-2 and ZeRO-3 on a
tiny random Llama. Loss falls; ZeRO-3 reproduces ZeRO-2's curve; a run killed with SIGKILL resumes
from its last complete checkpoint onto the uninterrupted curve; SIGTERM saves, exits 143, and resumes;
rank 0's /progress is what the operator reads. A tiny LLaVA loads from a saved checkpoint directory and
trains on image-text pairs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vlmop.operator import failures, progress
from vlmop.operator.localapi.loopback import free_port

STEPS = 12
COMMON = [
    "--seq-length", "64", "--precision", "fp32", "--micro-batch-size", "2",
    "--gradient-accumulation-steps", "2", "--total-steps", str(STEPS), "--checkpoint-interval", "4",
    "--keep-last", "2", "--lr", "3e-3", "--warmup-steps", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Repeating token patterns (learnable) as .npy, plus a text file through the byte tokenizer."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for i in range(4):
        np.save(root / f"doc{i}.npy", np.tile(rng.integers(3, 200, size=16), 150).astype(np.int32))
    (root / "notes.txt").write_text("the quick brown fox jumps over the lazy dog. " * 60)
    return root


def launch(workdir: Path, *args: str, nproc: int = 2, metrics_port: int = 0) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--master-port",
        str(free_port()), "-m", "vlmop.workloads.pretrain", "--checkpoint-dir", str(workdir / "ckpt"),
        "--log-file", str(workdir / "steps.jsonl"), "--metrics-port", str(metrics_port), *args,
    ]  # fmt: skip
    env = {**os.environ, "VLMOP_TERMINATION_LOG": str(workdir / "termination-log"), "OMP_NUM_THREADS": "1"}
    log = (workdir / "train.log").open("ab")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def finish(workdir: Path, proc: subprocess.Popen[bytes], timeout: float = 240) -> int:
    code = proc.wait(timeout)
    if code not in (0, 1) or not (workdir / "steps.jsonl").exists():
        tail = (workdir / "train.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"trainer exited {code}:\n{tail}")
    return code


def losses(workdir: Path) -> dict[int, float]:
    """Loss per step; a step run twice (before a kill and after resuming) keeps the last value."""
    lines = (workdir / "steps.jsonl").read_text().splitlines()
    return {row["step"]: row["loss"] for row in map(json.loads, lines)}


def wait_for_step(workdir: Path, step: int, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (workdir / "steps.jsonl").exists() and max(losses(workdir), default=0) >= step:
            return
        if proc.poll() is not None:
            raise AssertionError((workdir / "train.log").read_text(errors="replace")[-3000:])
        time.sleep(0.1)
    raise TimeoutError(f"step {step} not reached")


def checkpoints(workdir: Path) -> list[str]:
    return sorted(p.name for p in (workdir / "ckpt").glob("step-*") if (p / "COMPLETE").exists())


@pytest.fixture(scope="module")
def zero2(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("zero2")
    assert finish(workdir, launch(workdir, "--data", str(corpus), "--zero-stage", "2", *COMMON)) == 0
    return workdir


def test_zero2_loss_falls_and_checkpoints_rotate(zero2: Path) -> None:
    curve = losses(zero2)
    assert sorted(curve) == list(range(1, STEPS + 1))
    assert curve[STEPS] < curve[1] - 0.5, curve
    assert checkpoints(zero2) == ["step-00000008", "step-00000012"]  # keep-last 2: step 4 pruned
    final = json.loads((zero2 / "termination-log").read_text())
    assert final["step"] == STEPS and final["totalSteps"] == STEPS
    assert final["latestCheckpoint"].endswith("step-00000012")
    assert progress.parse((zero2 / "termination-log").read_text())  # what the operator accepts


def test_sigkill_then_resume_follows_the_uninterrupted_curve(
    corpus: Path, zero2: Path, tmp_path: Path
) -> None:
    args = ["--data", str(corpus), "--zero-stage", "2", *COMMON]
    proc = launch(tmp_path, *args)
    wait_for_step(tmp_path, 6, proc)  # past the step-4 checkpoint
    os.killpg(proc.pid, signal.SIGKILL)  # no chance to save: resume must use the last complete one
    proc.wait()
    assert checkpoints(tmp_path)[-1] in ("step-00000004", "step-00000008")
    assert finish(tmp_path, launch(tmp_path, *args)) == 0
    resumed, reference = losses(tmp_path), losses(zero2)
    assert sorted(resumed) == list(range(1, STEPS + 1))
    assert resumed == pytest.approx(reference, rel=1e-4)


def test_activation_checkpointing_recomputes_onto_the_same_curve(
    corpus: Path, zero2: Path, tmp_path: Path
) -> None:
    args = ["--data", str(corpus), "--zero-stage", "2", "--activation-checkpointing", *COMMON]
    assert finish(tmp_path, launch(tmp_path, *args)) == 0
    assert "activation checkpointing: 2 layers recompute" in (tmp_path / "train.log").read_text()
    assert losses(tmp_path) == pytest.approx(losses(zero2), rel=1e-6)


def test_zero3_matches_zero2_and_sigterm_saves_then_resumes(
    corpus: Path, zero2: Path, tmp_path: Path
) -> None:
    port = free_port()
    args = ["--data", str(corpus), "--zero-stage", "3", *COMMON]
    proc = launch(tmp_path, *args, metrics_port=port)
    wait_for_step(tmp_path, 5, proc)
    live = progress.read("127.0.0.1", port)  # exactly how the operator reads rank 0
    assert live and live["totalSteps"] == STEPS and live["step"] >= 5 and live["loss"] > 0
    proc.send_signal(signal.SIGTERM)  # torchrun forwards it to every rank
    assert proc.wait(120) != 0  # 143: the pod fails, so the operator restarts the group
    message = json.loads((tmp_path / "termination-log").read_text())
    stopped = message["step"]
    assert message["message"] == f"stopped by SIGTERM after saving step {stopped}"
    # ... and says it saved: the operator's failure policy restarts without counting it.
    assert message["reason"] == "SavedOnSigterm"
    assert failures.of_pod(json.dumps(message), 1, "Error", None, frozenset()).disruption
    assert f"step-{stopped:08d}" in checkpoints(tmp_path)  # saved at the step it stopped on
    assert finish(tmp_path, launch(tmp_path, *args)) == 0
    assert losses(tmp_path) == pytest.approx(losses(zero2), rel=1e-4)


def test_a_requested_checkpoint_is_saved_by_every_rank_at_the_next_step(corpus: Path, tmp_path: Path) -> None:
    # As the operator asks for the vlmop.io/checkpoint-request annotation: a save off the interval (none
    # is due in 40 steps), at the end of one step on every rank, and rank 0 says which request it was.
    port = free_port()
    args = [
        "--data",
        str(corpus),
        "--zero-stage",
        "2",
        *COMMON,
        "--total-steps",
        "40",
        "--checkpoint-interval",
        "100",
    ]
    proc = launch(tmp_path, *args, metrics_port=port)
    try:
        wait_for_step(tmp_path, 2, proc)
        assert progress.ask_checkpoint("127.0.0.1", port, "before-drain")
        deadline = time.monotonic() + 120
        while (now := progress.read("127.0.0.1", port) or {}).get("checkpointRequest") != "before-drain":
            assert time.monotonic() < deadline and proc.poll() is None, (
                "the requested checkpoint was not saved"
            )
            time.sleep(0.1)
        saved = Path(now["latestCheckpoint"]).name  # the request's step (training has gone on since)
        assert saved in checkpoints(tmp_path) and 2 <= int(saved.removeprefix("step-")) < 40
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_run_resumed_at_its_last_step_says_it_is_done(corpus: Path, zero2: Path, tmp_path: Path) -> None:
    # The group restarted after the final checkpoint (a worker killed before its pod ended): rank 0
    # resumes at the last step, trains none, and its report still says where the run stands.
    shutil.copytree(zero2 / "ckpt", tmp_path / "ckpt")
    proc = launch(tmp_path, "--data", str(corpus), "--zero-stage", "2", *COMMON)
    assert proc.wait(240) == 0, (tmp_path / "train.log").read_text(errors="replace")[-3000:]
    final = progress.parse((tmp_path / "termination-log").read_text())
    assert final and (final["step"], final["totalSteps"]) == (STEPS, STEPS)
    assert final["latestCheckpoint"].endswith(f"step-{STEPS:08d}")


def test_vision_language_model_loads_from_a_checkpoint_and_trains_on_image_text(tmp_path: Path) -> None:
    from vlmop.workloads.pretrain import models

    model_dir = tmp_path / "tiny-vl"
    torch.manual_seed(0)  # the random start is the test's: a lucky or unlucky one would make it flaky
    models.build("tiny-vl", None).save_pretrained(model_dir)  # safetensors, loaded back by the trainer
    data = tmp_path / "pairs"
    data.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        np.save(data / f"img{i}.npy", rng.integers(0, 255, size=(40, 40, 3), dtype=np.uint8))
        rows.append({"image": f"img{i}.npy", "text": f"a picture of pattern {i % 2}"})
    (data / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    args: list[Any] = [
        "--model-path", str(model_dir), "--data", str(data), "--data-format", "image-text",
        "--seq-length", "96", "--precision", "fp32", "--micro-batch-size", "2", "--total-steps", "6",
        "--checkpoint-interval", "3", "--lr", "3e-3", "--zero-stage", "1",
    ]  # fmt: skip
    assert finish(tmp_path, launch(tmp_path, *args, nproc=1)) == 0  # 2 pairs (2 images) per sequence
    curve = losses(tmp_path)
    assert curve[6] < curve[1], curve
    assert checkpoints(tmp_path) == ["step-00000003", "step-00000006"]


# -- Mixture-of-Experts: tiny-moe (a 2-layer Qwen3-MoE, 4 experts, top-2), its experts split over the
# 2 ranks (EP = 2: each rank holds 2 experts of each layer; tokens reach them by all-to-all).
MOE = ["--model-preset", "tiny-moe", "--expert-parallel-size", "2", "--zero-stage", "2", *COMMON]


@pytest.fixture(scope="module")
def moe_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("moe")
    proc = launch(workdir, "--data", str(corpus), *MOE, "--export-dir", str(workdir / "export"))
    assert finish(workdir, proc) == 0
    return workdir


def test_moe_with_expert_parallelism_learns_and_reports_its_routing(moe_run: Path) -> None:
    curve = losses(moe_run)
    assert sorted(curve) == list(range(1, STEPS + 1))
    assert curve[STEPS] < curve[1] - 0.5, curve
    rows = [json.loads(line) for line in (moe_run / "steps.jsonl").read_text().splitlines()]
    # Every token of every rank routed to top-2 of 4 experts in each of the 2 layers: 2 ranks x 2
    # micro-batches x 2 sequences x 64 tokens x 2 routes per layer.
    assert all([sum(layer) for layer in row["tokens_per_expert"]] == [1024, 1024] for row in rows)
    for row in rows:
        share = 1024 / 4
        assert row["expertLoadImbalance"] == pytest.approx(max(map(max, row["tokens_per_expert"])) / share)
        assert 0.9 < row["auxLoss"] < 2.0  # DeepSpeed's top-2 loss: 1.0 when perfectly balanced
    final = progress.parse((moe_run / "termination-log").read_text())  # what the operator takes
    assert final and final["auxLoss"] == pytest.approx(rows[-1]["auxLoss"], abs=1e-4)
    assert final["expertLoadImbalance"] == pytest.approx(rows[-1]["expertLoadImbalance"], abs=1e-4)
    # One file per expert of each layer (written by the rank that holds it), beside the shared weights.
    saved = {p.name for p in (moe_run / "ckpt" / "step-00000012").iterdir()}
    assert {f"layer_{i}_expert_{e}_mp_rank_00_model_states.pt" for i in (0, 1) for e in range(4)} <= saved


def test_moe_resumes_exactly_after_sigkill(corpus: Path, moe_run: Path, tmp_path: Path) -> None:
    args = ["--data", str(corpus), *MOE]
    proc = launch(tmp_path, *args)
    wait_for_step(tmp_path, 6, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoints(tmp_path)[-1] in ("step-00000004", "step-00000008")
    assert finish(tmp_path, launch(tmp_path, *args)) == 0
    steps = [json.loads(line)["step"] for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert steps.count(1) == 1 and steps.count(STEPS) == 1  # resumed, not started again
    assert losses(tmp_path) == losses(moe_run)  # bit for bit: experts, router, optimizer, data, RNG


def test_moe_export_is_a_qwen3_moe_checkpoint_of_the_same_model(tmp_path: Path) -> None:
    """Experts split over 2 ranks compute what transformers' own Qwen3-MoE computes from the export
    (all experts in one process, its own routing), and what the same seed builds with EP = 1; the
    export read back (--model-path) over 2 ranks computes the same again."""
    import transformers
    from safetensors.torch import load_file

    from vlmop.workloads.pretrain import models, moe

    helper = Path(__file__).with_name("moe_ranks.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-port",
               str(free_port()), str(helper), str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(2)]
    for rank, held in enumerate(ranks):  # the export read back with its experts split over 2 ranks
        assert torch.equal(load_file(tmp_path / f"reloaded{rank}.safetensors")["logits"], held["logits"])
    exported = transformers.Qwen3MoeForCausalLM.from_pretrained(tmp_path / "export").eval()
    assert exported.config.num_experts == 4 and exported.config.norm_topk_prob
    torch.manual_seed(0)
    whole = models.build("tiny-moe", None).eval()  # EP = 1: every expert here
    for rank, held in enumerate(ranks):
        ids = torch.randint(3, 500, (2, 24), generator=torch.Generator().manual_seed(100 + rank))
        with torch.no_grad():
            assert torch.allclose(exported(input_ids=ids).logits, held["logits"], atol=1e-5)
            assert torch.allclose(whole(input_ids=ids).logits, held["logits"], atol=1e-5)
    mine = {moe.hf_name(n, 0): p for n, p in whole.named_parameters()}
    for rank, held in enumerate(ranks):  # rank r holds experts 2r and 2r+1 of each layer
        for name, tensor in held.items():
            if name != "logits":
                assert torch.equal(mine[moe.hf_name(name, 2 * rank)], tensor), name
