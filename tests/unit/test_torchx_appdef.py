"""torchx AppDef → PretrainJob, table-driven; every manifest must pass the CRD's admission."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from torchx.components.dist import torchrun
from torchx.specs import AppDef, AppState, Resource, Role

from vlmop.integrations.torchx import appdef
from vlmop.integrations.torchx.appdef import Submission
from vlmop.integrations.torchx.components import gspo, mpo, pretrain
from vlmop.operator import crdgen
from vlmop.operator.api import PRETRAINJOB
from vlmop.operator.localapi.admission import StructuralSchema

SCHEMA = StructuralSchema(crdgen.kind_schema(PRETRAINJOB))


def role(entrypoint: str, *args: str, gpu: int = 0, **kw: Any) -> AppDef:
    resource = Resource(cpu=4, gpu=gpu, memMB=2048)
    return AppDef(
        "my app",
        [Role("trainer", image="img:1", entrypoint=entrypoint, args=list(args), resource=resource, **kw)],
    )


def translate(app: AppDef, **opts: Any) -> dict[str, Any]:
    job = appdef.pretrainjob(app, Submission(**opts), "my-app-abc123")
    assert SCHEMA.admit(job) == [], "the translation must pass the PretrainJob CRD"
    return job


CASES = [
    # (app, expected command, nodes, GPUs per node)
    (torchrun("--lr", "0.1", script="train.py", j="2x8", gpu=8), ["train.py", "--lr", "0.1"], 2, 8),
    (torchrun(script="train.py", j="2x8"), ["train.py"], 2, 8),  # -j NxM alone asks for M GPUs
    (torchrun("--x", m="pkg.train", j="3x1"), ["-m", "pkg.train", "--x"], 3, 0),
    (role("python", "-u", "train.py", "--epochs", "2"), ["-u", "train.py", "--epochs", "2"], 1, 0),
    (role("/usr/bin/python3.11", "-m", "mod"), ["-m", "mod"], 1, 0),
    (role("./run.sh", "a", gpu=4, num_replicas=2), ["--no-python", "./run.sh", "a"], 2, 4),
    (role("bash", "-c", "echo hi"), ["--no-python", "bash", "-c", "echo hi"], 1, 0),
    (
        role(
            "bash",
            "-c",
            "python -m torch.distributed.run --nnodes=2 --nproc-per-node=2 --standalone "
            "--no-python ./bin/train --rank ${replica_id}",
            gpu=2,
        ),
        ["--no-python", "./bin/train", "--rank", "$(NODE_RANK)"],
        1,
        2,
    ),
]


@pytest.mark.parametrize(("app", "command", "nodes", "gpus"), CASES)
def test_roles_become_the_program_torchrun_starts(
    app: AppDef, command: list[str], nodes: int, gpus: int
) -> None:
    topology = translate(app)["spec"]["topology"]
    assert topology["command"] == command
    assert (topology["nodes"], topology["gpusPerNode"]) == (nodes, gpus)
    assert topology["image"] == app.roles[0].image


def test_resources_env_mounts_retries_and_options() -> None:
    app = torchrun(
        script="t.py",
        j="2x4",
        gpu=4,
        cpu=8,
        memMB=4096,
        env={"WANDB_MODE": "offline"},
        mounts=["type=volume", "src=datasets", "dst=/data", "readonly"],
        max_retries=2,
    )
    app.roles[0].resource.capabilities["node.kubernetes.io/instance-type"] = "p5.48xlarge"
    ds = {"zero_optimization": {"stage": 3}}
    job = translate(
        app,
        namespace="ml",
        queue="team-a",
        priority_class="high",
        checkpoint_claim="ckpt",
        deepspeed_config=json.dumps(ds),
    )
    spec, topology = job["spec"], job["spec"]["topology"]
    assert job["metadata"]["namespace"] == "ml"
    assert topology["resources"] == {"requests": {"cpu": "8", "memory": "4096Mi"}}
    assert {"name": "WANDB_MODE", "value": "offline"} in topology["env"]
    assert topology["volumes"] == [
        {"name": "torchx-0", "claimName": "datasets", "mountPath": "/data", "readOnly": True}
    ]
    assert topology["nodeSelector"] == {"node.kubernetes.io/instance-type": "p5.48xlarge"}
    assert (
        spec["scheduling"].items()
        >= {"gang": "kueue", "queueName": "team-a", "priorityClassName": "high"}.items()
    )
    assert spec["runPolicy"]["backoffLimit"] == 2
    assert spec["checkpoint"].items() >= {"path": "/checkpoints", "claimName": "ckpt"}.items()
    assert spec["deepspeed"]["config"] == ds
    assert "model" not in spec and "data" not in spec  # the role brings its own program


def test_deepspeed_config_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "ds.json"
    path.write_text('{"train_micro_batch_size_per_gpu": 4}')
    job = translate(role("python", "t.py"), deepspeed_config=str(path), gang="volcano", queue="q")
    assert job["spec"]["deepspeed"]["config"] == {"train_micro_batch_size_per_gpu": 4}
    assert job["spec"]["scheduling"]["gang"] == "volcano"


@pytest.mark.parametrize(
    ("app", "opts", "message"),
    [
        (AppDef("two", [Role("a", "i", "python"), Role("b", "i", "python")]), {}, "one role"),
        (role("python", "t.py"), {"deepspeed_config": "[1]"}, "must be a JSON object"),
        (role("python", "t.py"), {"deepspeed_config": "ds.json"}, "neither a JSON object nor a JSON file"),
        (torchrun(script="t.py", j="1x2", gpu=8), {}, "runs 2 processes per node on 8 GPUs"),
        (torchrun(script="t.py", mounts=["type=bind", "src=/etc", "dst=/x"]), {}, "only volume mounts"),
        (role("bash", "-c", "torchrun --nnodes 2"), {}, "without a script or module"),
    ],
)
def test_what_cannot_run_as_a_pretrainjob_is_named(app: AppDef, opts: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        appdef.pretrainjob(app, Submission(**opts), "x")


def test_names_are_unique_and_fit_the_crd() -> None:
    names = {appdef.job_name("My_Very.Long App Name " * 4) for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert len(name) <= 40 and name[0].isalnum() and name[-1].isalnum()
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


@pytest.mark.parametrize(
    ("phase", "state"),
    [
        (None, AppState.SUBMITTED),
        ("Pending", AppState.PENDING),
        ("Running", AppState.RUNNING),
        ("Restarting", AppState.RUNNING),
        ("Succeeded", AppState.SUCCEEDED),
        ("Failed", AppState.FAILED),
        ("Suspended", AppState.CANCELLED),
    ],
)
def test_phases_map_to_torchx_states(phase: str | None, state: AppState) -> None:
    assert appdef.app_state({"status": {"phase": phase}} if phase else {}) == state


def test_the_message_is_the_failure_or_the_progress() -> None:
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "rank 1 died"}
    running = {"type": "Progressing", "status": "True", "reason": "Running", "message": "2/2 workers running"}
    assert appdef.message({"status": {"conditions": [running, failed]}}) == "rank 1 died"
    assert appdef.message({"status": {"conditions": [running], "progress": "5/10 steps"}}) == (
        "2/2 workers running; 5/10 steps"
    )


def test_the_pretrain_component_runs_the_vlmop_trainer() -> None:
    job = translate(pretrain(preset="tiny-vl", total_steps=5, j="2x1"))
    command = job["spec"]["topology"]["command"]
    assert command[:2] == ["-m", "vlmop.workloads.pretrain"]
    assert command[command.index("--model-preset") + 1] == "tiny-vl"
    assert command[command.index("--total-steps") + 1] == "5"


def test_the_mpo_component_runs_the_mpo_trainer() -> None:
    job = translate(mpo(data="/data/pairs.jsonl", model_path="/models/base", beta=0.2, j="2x1"))
    command = job["spec"]["topology"]["command"]
    assert command[:2] == ["-m", "vlmop.workloads.rl.mpo"]
    assert command[command.index("--model-path") + 1] == "/models/base"
    assert command[command.index("--beta") + 1] == "0.2" and job["spec"]["topology"]["nodes"] == 2


def test_the_gspo_component_runs_the_gspo_trainer_against_its_rollout_pool() -> None:
    app = gspo(rollout_url="http://rollout-0:8000,http://rollout-1:8000", weights_dir="/weights",
               task="sorting,letters", group_size=8, j="2x1")  # fmt: skip
    command = translate(app)["spec"]["topology"]["command"]
    assert command[:2] == ["-m", "vlmop.workloads.rl.gspo"]
    pairs = list(itertools.pairwise(command))
    assert [v for k, v in pairs if k == "--rollout-url"] == ["http://rollout-0:8000", "http://rollout-1:8000"]
    assert [v for k, v in pairs if k == "--task"] == ["sorting", "letters"]
    assert ("--group-size", "8") in pairs and ("--weights-dir", "/weights") in pairs
    assert ("--rollout-engine", "vllm") in pairs
