"""CascadeRLJob -> children on plain dicts: a gang per stage, the hand-off of the model between stages,
the batch arithmetic in each stage's ds_config, the rollout and verifier pools of a gspo stage, and
what a pod may do (restricted security, no token, claims mounted as each needs them)."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

from vlmop.operator.api import CascadeRLJobSpec
from vlmop.operator.builders import cascaderljob as build
from vlmop.operator.builders.common import COMPONENT
from vlmop.operator.builders.deepspeed import merged
from vlmop.workloads.rl import mpo


def owner(doc: dict[str, Any], **spec: Any) -> tuple[dict[str, Any], CascadeRLJobSpec]:
    doc = copy.deepcopy(doc)
    doc["metadata"].update(namespace="ml", uid="uid-1")
    doc["spec"] = merged(doc["spec"], spec)
    return doc, CascadeRLJobSpec.model_validate(doc["spec"])


def by_name(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{m['kind']}/{m['metadata']['name']}": m for m in manifests}


def flags(args: list[str]) -> dict[str, str]:
    return {a: b for a, b in itertools.pairwise(args) if a.startswith("--")}


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["securityContext"]["runAsNonRoot"]
    (c,) = spec["containers"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    return dict(c)


def test_the_mpo_stage_is_a_gang_that_exports_for_the_next(
    examples: dict[str, Any], worker_command: Any
) -> None:
    doc, spec = owner(examples["cascaderljob"])
    kids = by_name(build.children(doc, spec, current=0, attempt=1, workers=True))
    assert set(kids) == {
        "Service/tiny-cascade-rl-workers",
        "ConfigMap/tiny-cascade-rl-config",
        "Job/tiny-cascade-rl-s0-r1",
    }  # fmt: skip  (no gang scheduler, no pools yet)
    trainer = container(kids["Job/tiny-cascade-rl-s0-r1"])
    supervisor, torchrun = worker_command(trainer)
    assert supervisor is not None and torchrun.module and torchrun.training_script == "vlmop.workloads.rl.mpo"
    f = flags(torchrun.training_script_args)
    assert f["--model-preset"] == "tiny" and "--model-path" not in f
    assert (f["--checkpoint-dir"], f["--export-dir"]) == ("/checkpoints/mpo", "/checkpoints/mpo/final")
    assert (f["--data"], f["--epochs"], f["--lr"]) == ("/data/preferences.jsonl", "1", "2e-07")
    assert f["--deepspeed-config"] == "/etc/vlmop/s0.ds_config.json"
    assert not mpo.parse(torchrun.training_script_args).activation_checkpointing
    doc, spec = owner(examples["cascaderljob"], deepspeed={"activationCheckpointing": True})
    job = by_name(build.children(doc, spec, current=0, attempt=1, workers=True))["Job/tiny-cascade-rl-s0-r1"]
    assert mpo.parse(worker_command(container(job))[1].training_script_args).activation_checkpointing
    mounts = {m["name"]: m for m in trainer["volumeMounts"]}
    assert mounts["checkpoints"]["mountPath"] == "/checkpoints" and not mounts["checkpoints"]["readOnly"]
    assert mounts["data"]["readOnly"]
    env = {e["name"]: e.get("value") for e in trainer["env"]}
    assert env["VLMOP_STAGE"] == "mpo" and env["MASTER_ADDR"].startswith("tiny-cascade-rl-s0-r1-0.")


def test_the_gspo_stage_starts_from_the_mpo_export_with_its_pools(examples: dict[str, Any]) -> None:
    doc, spec = owner(examples["cascaderljob"])
    kids = by_name(build.children(doc, spec, current=1, attempt=0, workers=True))
    f = flags(container(kids["Job/tiny-cascade-rl-s1-r0"])["command"])
    assert f["--model-path"] == "/checkpoints/mpo/final"  # the hand-off
    assert f["--rollout-url"] == "http://tiny-cascade-rl-rollout.ml.svc:8000"
    assert f["--weights-dir"] == "/checkpoints/weights/gspo"
    assert (f["--group-size"], f["--max-tokens"], f["--total-steps"]) == ("4", "48", "4")
    assert (f["--mini-batches"], f["--eps-low"], f["--eps-high"]) == ("2", "0.0003", "0.0004")
    assert f["--rewards"] == "/etc/vlmop/s1.rewards.json"
    assert "--keep-zero-variance" not in container(kids["Job/tiny-cascade-rl-s1-r0"])["command"]

    assert f["--rollout-engine"] == "vllm"

    rollout = kids["Deployment/tiny-cascade-rl-rollout"]
    server = container(rollout)
    # vLLM serves the stage's starting checkpoint; the trainer's published versions arrive by path on
    # the weights claim. Its parser and a run check the rest (tests/workloads/test_vllm_*.py).
    assert server["command"] == ["vllm", "serve", "/checkpoints/mpo/final"]
    assert flags(server["args"])["--served-model-name"] == "policy"
    assert {"name": "VLLM_SERVER_DEV_MODE", "value": "1"} in server["env"]
    assert server["startupProbe"]["exec"]["command"][0] == "python3"  # one sampled token, not /health
    assert server["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    assert {m["name"]: m["readOnly"] for m in server["volumeMounts"]} == {"checkpoints": True}
    assert rollout["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = rollout["spec"]["template"]["metadata"]["labels"]
    assert labels[COMPONENT] == "rollout" and "vlmop.io/owner-kind" not in labels  # not a worker pod
    assert kids["Service/tiny-cascade-rl-rollout"]["spec"]["clusterIP"] == "None"  # every replica


def test_the_stand_in_rollout_engine_is_a_named_fallback(examples: dict[str, Any]) -> None:
    doc = copy.deepcopy(examples["cascaderljob"])
    doc["spec"]["stages"][1]["rollout"]["engine"] = "vlmop"
    doc, spec = owner(doc)
    kids = by_name(build.children(doc, spec, current=1, attempt=0, workers=True))
    assert flags(container(kids["Job/tiny-cascade-rl-s1-r0"])["command"])["--rollout-engine"] == "vlmop"
    server = container(kids["Deployment/tiny-cascade-rl-rollout"])
    assert server["command"] == ["python", "-m", "vlmop.workloads.rl.rollout_server"]
    sf = flags(server["args"])
    assert (sf["--model-path"], sf["--weights-dir"]) == (
        "/checkpoints/mpo/final",
        "/checkpoints/weights/gspo",
    )
    assert server["startupProbe"]["httpGet"]["path"] == "/health"


def test_stage_batches_come_from_the_spec(examples: dict[str, Any]) -> None:
    example = copy.deepcopy(examples["cascaderljob"])
    example["spec"]["stages"][1]["gspo"].update(promptsPerStep=64, miniBatchPrompts=16)
    doc, spec = owner(example, topology={"nodes": 2, "gpusPerNode": 4}, deepspeed={"microBatchSize": 2})
    data = build.config_map(doc, spec)["data"]
    mpo, gspo = json.loads(data["s0.ds_config.json"]), json.loads(data["s1.ds_config.json"])
    # 32 pairs per step = 2 per micro-batch x 8 ranks x 2 accumulation steps.
    assert (mpo["train_micro_batch_size_per_gpu"], mpo["gradient_accumulation_steps"]) == (2, 2)
    # 64 prompts per rollout batch over 8 ranks: 8 each, one micro-batch, updated in mini-batches.
    assert (gspo["train_micro_batch_size_per_gpu"], gspo["gradient_accumulation_steps"]) == (8, 1)
    assert mpo["zero_optimization"]["stage"] == 3
    rewards = json.loads(data["s1.rewards.json"])
    assert {r["source"]: r["verifier"] for r in rewards["routes"]}["bootcamp-24"] == "game24"


def test_a_model_verifier_pool_is_run_and_routed_to(examples: dict[str, Any]) -> None:
    doc, spec = owner(examples["cascaderljob"])
    raw = copy.deepcopy(doc["spec"])
    pool = {"image": "ghcr.io/example/compass-verifier:1", "replicas": 2, "args": ["--port", "8000"]}
    raw["stages"][1]["rewards"]["verifiers"].append(
        {"name": "judge", "type": "model", "protocol": "compass-verifier", "pool": pool, "timeoutSeconds": 5}
    )
    raw["stages"][1]["rewards"]["routes"].append({"source": "open-qa", "verifier": "judge"})
    spec = CascadeRLJobSpec.model_validate(raw)
    kids = by_name(build.children(doc, spec, current=1, attempt=0, workers=True))
    judge = kids["Deployment/tiny-cascade-rl-verifier-3"]
    assert judge["spec"]["replicas"] == 2 and "command" not in container(judge)  # the image's own server
    assert kids["Service/tiny-cascade-rl-verifier-3"]["spec"].get("clusterIP") != "None"  # balanced
    table = json.loads(build.config_map(doc, spec)["data"]["s1.rewards.json"])
    entry = next(v for v in table["verifiers"] if v["name"] == "judge")
    assert entry["endpoint"] == "http://tiny-cascade-rl-verifier-3.ml.svc:8000" and "pool" not in entry
    assert entry["timeoutSeconds"] == 5


def test_skipped_stages_and_a_lone_gspo_stage(examples: dict[str, Any]) -> None:
    doc, spec = owner(examples["cascaderljob"])
    raw = copy.deepcopy(doc["spec"])
    raw["stages"][0]["skip"] = True
    raw["model"] = {"path": "/models/internvl-mpo", "claimName": "models"}
    spec = CascadeRLJobSpec.model_validate(raw)
    kids = by_name(build.children(doc, spec, current=1, attempt=0, workers=True))
    f = flags(container(kids["Job/tiny-cascade-rl-s1-r0"])["command"])
    assert f["--model-path"] == "/models/internvl-mpo"  # no earlier stage: the base model
    assert "s0.ds_config.json" not in build.config_map(doc, spec)["data"]
    server = container(kids["Deployment/tiny-cascade-rl-rollout"])
    assert {m["name"] for m in server["volumeMounts"]} == {"model", "checkpoints"}


def test_a_separate_weights_claim_is_mounted_where_both_sides_see_it(examples: dict[str, Any]) -> None:
    doc, spec = owner(examples["cascaderljob"])
    raw = copy.deepcopy(doc["spec"])
    raw["stages"][1]["weightSync"] = {"claimName": "fast-weights", "mountPath": "/weights"}
    spec = CascadeRLJobSpec.model_validate(raw)
    kids = by_name(build.children(doc, spec, current=1, attempt=0, workers=True))
    trainer, server = (
        container(kids["Job/tiny-cascade-rl-s1-r0"]),
        container(kids["Deployment/tiny-cascade-rl-rollout"]),
    )
    # vLLM reloads from the folder the trainer names: the same path on both sides.
    assert flags(trainer["command"])["--weights-dir"] == "/weights/gspo"
    for c in (trainer, server):
        assert {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["weights"] == "/weights"


def test_no_workers_means_no_gang_and_no_pools(examples: dict[str, Any]) -> None:
    doc, spec = owner(examples["cascaderljob"])
    kids = by_name(build.children(doc, spec, current=1, attempt=0, workers=False))
    assert {k.split("/")[0] for k in kids} == {"Service", "ConfigMap"}
    assert build.finished_jobs(doc, [(0, 2)]) == {"tiny-cascade-rl-s0-r2"}
