"""PretrainJob -> children, table-driven on plain dicts: names, torchrun env, volumes, security, gang
scheduling variants, the rendered ds_config, and the drift hash."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from vlmop.operator.api import PretrainJobSpec
from vlmop.operator.builders import pretrainjob as build
from vlmop.operator.builders.common import HASH, owner_labels
from vlmop.operator.builders.deepspeed import ds_config, merged


def owner(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["metadata"].update(namespace="ml", uid="uid-1")
    return doc


def kids(doc: dict[str, Any], attempt: int = 0, workers: bool = True, **spec: Any) -> dict[str, Any]:
    doc = owner(doc)
    doc["spec"] = merged(doc["spec"], spec)
    parsed = PretrainJobSpec.model_validate(doc["spec"])
    return {m["kind"]: m for m in build.children(doc, parsed, attempt, workers)}


def env(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_example_becomes_service_config_podgroup_and_indexed_job(
    examples: dict[str, Any], worker_command: Any
) -> None:
    children = kids(examples["pretrainjob"], attempt=2)
    assert set(children) == {"Service", "ConfigMap", "PodGroup", "Job"}
    svc, job = children["Service"], children["Job"]
    assert svc["metadata"]["name"] == "tiny-pretrain-workers" and svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert job["metadata"]["name"] == "tiny-pretrain-r2"
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == (
        "Indexed",
        2,
        2,
    )
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["suspend"] is False
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == "tiny-pretrain-workers" and pod["restartPolicy"] == "Never"
    assert env(job)["MASTER_ADDR"] == "tiny-pretrain-r2-0.tiny-pretrain-workers.ml.svc"
    assert env(job)["NNODES"] == "2" and env(job)["NPROC_PER_NODE"] == "1"
    assert env(job)["NODE_RANK"] == {
        "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
    }
    assert env(job)["WANDB_API_KEY"] == {
        "secretKeyRef": {"name": "wandb", "key": "api-key", "optional": True}
    }
    container = pod["containers"][0]
    supervisor, torchrun = worker_command(container)
    assert supervisor is not None and supervisor.port == 29501  # restartStrategy InPlace by default
    assert {"name": "supervisor", "containerPort": 29501} in container["ports"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "supervisor"}
    assert (torchrun.nnodes, torchrun.node_rank, torchrun.shutdown_timeout) == ("2", 0, 285)
    assert torchrun.module and torchrun.training_script == "vlmop.workloads.pretrain"
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["checkpoints"]["mountPath"] == "/checkpoints" and not mounts["checkpoints"]["readOnly"]
    assert mounts["data"]["readOnly"] and mounts["config"]["mountPath"] == "/etc/vlmop"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["checkpoints"]["persistentVolumeClaim"] == {"claimName": "pretrain-checkpoints"}


def test_children_are_owned_labelled_and_locked_down(examples: dict[str, Any]) -> None:
    for child in kids(examples["pretrainjob"]).values():
        meta = child["metadata"]
        assert meta["namespace"] == "ml"
        assert meta["ownerReferences"][0]["uid"] == "uid-1" and meta["ownerReferences"][0]["controller"]
        assert owner_labels(owner(examples["pretrainjob"])).items() <= meta["labels"].items()
        assert len(meta["annotations"][HASH]) == 16
    pod = kids(examples["pretrainjob"])["Job"]["spec"]["template"]
    assert pod["metadata"]["labels"]["vlmop.io/owner-name"] == "tiny-pretrain"
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    security = spec["containers"][0]["securityContext"]
    assert security == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@pytest.mark.parametrize(
    ("scheduling", "podgroup_api", "scheduler", "pod_label", "pod_annotation", "job_label", "suspend"),
    [
        ({"gang": "none"}, None, None, None, None, None, False),
        (
            {"gang": "volcano", "queueName": "research"},
            "scheduling.volcano.sh/v1beta1",
            "volcano",
            None,
            ("scheduling.k8s.io/group-name", "tiny-pretrain-r0"),
            None,
            False,
        ),
        (
            {"gang": "coscheduling"},
            "scheduling.x-k8s.io/v1alpha1",
            "scheduler-plugins-scheduler",
            ("scheduling.x-k8s.io/pod-group", "tiny-pretrain-r0"),
            None,
            None,
            False,
        ),
        (
            {"gang": "kueue", "queueName": "team-a", "priorityClassName": "high"},
            None,
            None,
            None,
            None,
            ("kueue.x-k8s.io/queue-name", "team-a"),
            True,
        ),
    ],
)
def test_gang_scheduling_variants(
    examples: dict[str, Any],
    scheduling: dict[str, Any],
    podgroup_api: str | None,
    scheduler: str | None,
    pod_label: tuple[str, str] | None,
    pod_annotation: tuple[str, str] | None,
    job_label: tuple[str, str] | None,
    suspend: bool,
) -> None:
    doc = owner(examples["pretrainjob"])
    doc["spec"]["scheduling"] = scheduling
    children = kids(doc)
    group = children.get("PodGroup")
    assert (group and group["apiVersion"]) == podgroup_api
    if group:
        assert group["spec"]["minMember"] == 2 and group["metadata"]["name"] == "tiny-pretrain-r0"
    job = children["Job"]
    template = job["spec"]["template"]
    assert template["spec"].get("schedulerName") == scheduler
    if pod_label:
        assert template["metadata"]["labels"][pod_label[0]] == pod_label[1]
    if pod_annotation:
        assert template["metadata"]["annotations"][pod_annotation[0]] == pod_annotation[1]
    if job_label:
        assert job["metadata"]["labels"][job_label[0]] == job_label[1]
        assert job_label[0] not in template["metadata"]["labels"]
    assert job["spec"]["suspend"] is suspend
    assert template["spec"].get("priorityClassName") == scheduling.get("priorityClassName")


def test_without_workers_only_the_service_and_config_remain(examples: dict[str, Any]) -> None:
    assert set(kids(examples["pretrainjob"], workers=False)) == {"Service", "ConfigMap"}


def test_hash_follows_the_spec_and_the_attempt(examples: dict[str, Any]) -> None:
    base = kids(examples["pretrainjob"])["Job"]["metadata"]["annotations"][HASH]
    assert kids(examples["pretrainjob"])["Job"]["metadata"]["annotations"][HASH] == base
    changed = kids(examples["pretrainjob"], topology={"image": "ghcr.io/vlmop/trainer:0.2.0"})
    assert changed["Job"]["metadata"]["annotations"][HASH] != base


def test_user_command_replaces_the_trainer(examples: dict[str, Any], worker_command: Any) -> None:
    job = kids(examples["pretrainjob"], topology={"command": ["train.py"], "args": ["--fast"]})["Job"]
    _, torchrun = worker_command(job["spec"]["template"]["spec"]["containers"][0])
    assert (torchrun.training_script, torchrun.training_script_args) == ("train.py", ["--fast"])


def test_recreate_runs_torchrun_first_and_no_probe(examples: dict[str, Any], worker_command: Any) -> None:
    job = kids(examples["pretrainjob"], runPolicy={"failurePolicy": {"restartStrategy": "Recreate"}})["Job"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    supervisor, torchrun = worker_command(container)
    assert supervisor is None and torchrun.training_script == "vlmop.workloads.pretrain"
    assert "readinessProbe" not in container and all(p["name"] != "supervisor" for p in container["ports"])


@pytest.mark.parametrize(
    ("deepspeed", "expect"),
    [
        ({}, {"zero_optimization": {"stage": 2, "overlap_comm": True, "contiguous_gradients": True}}),
        (
            {"zeroStage": 3, "offloadParams": True, "offloadOptimizer": True, "precision": "fp16"},
            {
                "zero_optimization": {
                    "stage": 3,
                    "offload_param": {"device": "cpu", "pin_memory": True},
                    "offload_optimizer": {"device": "cpu", "pin_memory": True},
                },
                "fp16": {"enabled": True},
                "bf16": {"enabled": False},
            },
        ),
        (
            {
                "zeroStage": 1,
                "config": {"zero_optimization": {"reduce_bucket_size": 5e8}, "gradient_clipping": 0.5},
            },
            {"zero_optimization": {"stage": 1, "reduce_bucket_size": 5e8}, "gradient_clipping": 0.5},
        ),
        ({"microBatchSize": 4, "gradientAccumulationSteps": 8}, {"train_micro_batch_size_per_gpu": 4}),
    ],
)
def test_ds_config(deepspeed: dict[str, Any], expect: dict[str, Any]) -> None:
    from vlmop.operator.api.training import DeepSpeed

    rendered = ds_config(DeepSpeed.model_validate(deepspeed))
    assert merged(rendered, expect) == rendered  # every expected key is there with that value
    assert "train_batch_size" not in rendered


def test_config_map_holds_the_rendered_ds_config(examples: dict[str, Any]) -> None:
    data = kids(examples["pretrainjob"])["ConfigMap"]["data"]
    rendered = json.loads(data["ds_config.json"])
    assert rendered["gradient_accumulation_steps"] == 2 and rendered["bf16"] == {"enabled": True}


def test_moe_settings_reach_the_trainer_through_its_parser(
    examples: dict[str, Any], worker_command: Any
) -> None:
    from vlmop.workloads.pretrain import config
    from vlmop.workloads.pretrain.moe import Experts

    def trainer_config(**spec: Any) -> config.TrainConfig:
        job = kids(examples["pretrainjob"], **spec)["Job"]
        _, torchrun = worker_command(job["spec"]["template"]["spec"]["containers"][0])
        return config.parse(torchrun.training_script_args)

    moe = {"experts": 8, "topK": 2, "expertParallelSize": 2, "capacityFactor": 1.25}
    moe["auxLossCoefficient"] = 0.01
    cfg = trainer_config(model={"preset": "tiny-moe"}, moe=moe)
    assert cfg.model_preset == "tiny-moe" and cfg.moe() == Experts(8, 2, 2, 1.25, 0.01)
    assert trainer_config(model={"preset": "tiny-moe"}, moe={}).moe() is None  # the preset's routing
    assert trainer_config().moe() is None
    assert not trainer_config().activation_checkpointing
    assert trainer_config(deepspeed={"activationCheckpointing": True}).activation_checkpointing
