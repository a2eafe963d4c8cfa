"""PretrainJob -> its children: the rendezvous Service, the ds_config ConfigMap, the gang's PodGroup
and the Indexed Job of the current attempt (absent while suspended or after failing)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from vlmop.operator.api.common import Volume
from vlmop.operator.api.pretrainjob import PretrainJobSpec
from vlmop.operator.builders import gang as gangs
from vlmop.operator.builders.common import Manifest, owned
from vlmop.operator.builders.deepspeed import ds_config

COMPONENT = "trainer"
DS_CONFIG = "ds_config.json"


def trainer_gang(owner: Mapping[str, Any], spec: PretrainJobSpec, attempt: int) -> gangs.Gang:
    return gangs.Gang(
        owner=owner,
        component=COMPONENT,
        topology=spec.topology,
        scheduling=spec.scheduling,
        program=program(spec),
        attempt=attempt,
        config_map=config_map_name(owner),
        mounts=mounts(spec),
        ports={"metrics": spec.metrics_port},
        supervised=spec.run_policy.failure_policy.restart_strategy == "InPlace",
        # Where a program of the user's own (topology.command, torchx) finds what the spec configured.
        env={
            "VLMOP_DEEPSPEED_CONFIG": f"{gangs.CONFIG_DIR}/{DS_CONFIG}",
            "VLMOP_CHECKPOINT_DIR": spec.checkpoint.path,
        },
    )


def children(owner: Mapping[str, Any], spec: PretrainJobSpec, attempt: int, workers: bool) -> list[Manifest]:
    gang = trainer_gang(owner, spec, attempt)
    out = [gangs.headless_service(gang), config_map(owner, spec)]
    if workers:
        out += [*gangs.pod_groups(gang), gangs.worker_job(gang)]
    return out


def config_map_name(owner: Mapping[str, Any]) -> str:
    return f"{owner['metadata']['name']}-config"


def config_map(owner: Mapping[str, Any], spec: PretrainJobSpec) -> Manifest:
    rendered = json.dumps(ds_config(spec.deepspeed), indent=2, sort_keys=True)
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_map_name(owner)},
        "data": {DS_CONFIG: rendered},
    }
    return owned(owner, manifest, COMPONENT)


def mounts(spec: PretrainJobSpec) -> list[Volume]:
    out = []
    if spec.data and spec.data.claim_name:
        out.append(Volume(name="data", claim_name=spec.data.claim_name, mount_path="/data", read_only=True))
    if spec.model and spec.model.claim_name:
        out.append(
            Volume(name="model", claim_name=spec.model.claim_name, mount_path="/models", read_only=True)
        )
    if spec.checkpoint.claim_name:  # referenced, never owned: deleting the job keeps the checkpoints
        out.append(
            Volume(name="checkpoints", claim_name=spec.checkpoint.claim_name, mount_path=spec.checkpoint.path)
        )
    return out


def program(spec: PretrainJobSpec) -> list[str]:
    """What torchrun starts: the user's command when given, else the vlmop trainer with the spec."""
    if spec.topology.command:
        return [*spec.topology.command, *spec.topology.args]
    if spec.model is None or spec.data is None:  # admission (CEL) rejects this; the type needs it said
        raise ValueError("spec.model and spec.data are required without spec.topology.command")
    model = (
        ["--model-path", spec.model.path] if spec.model.path else ["--model-preset", str(spec.model.preset)]
    )
    opt, ckpt, data = spec.optimization, spec.checkpoint, spec.data
    return [
        "-m",
        "vlmop.workloads.pretrain",
        "--deepspeed-config",
        f"{gangs.CONFIG_DIR}/{DS_CONFIG}",
        *model,
        "--data",
        data.path or "/data",
        "--data-format",
        data.format,
        "--seq-length",
        str(data.seq_length),
        *([] if data.packing else ["--no-packing"]),
        "--lr",
        str(opt.learning_rate),
        "--min-lr",
        str(opt.min_learning_rate),
        "--lr-schedule",
        opt.lr_schedule,
        "--warmup-steps",
        str(opt.warmup_steps),
        "--weight-decay",
        str(opt.weight_decay),
        "--total-steps",
        str(opt.total_steps),
        "--seed",
        str(opt.seed),
        "--checkpoint-dir",
        ckpt.path,
        "--checkpoint-interval",
        str(ckpt.interval_steps),
        "--keep-last",
        str(ckpt.keep_last),
        "--resume-from",
        ckpt.resume_from,
        "--metrics-port",
        str(spec.metrics_port),
        *(["--activation-checkpointing"] if spec.deepspeed.activation_checkpointing else []),
        *experts(spec),
        *spec.topology.args,
    ]


def experts(spec: PretrainJobSpec) -> list[str]:
    """The trainer's flags for a Mixture-of-Experts spec (its preset's defaults where unset)."""
    moe = spec.moe
    if moe is None:
        return []
    flags = {"--experts": moe.experts, "--top-k": moe.top_k, "--capacity-factor": moe.capacity_factor}
    return [
        "--expert-parallel-size",
        str(moe.expert_parallel_size),
        "--aux-loss-coef",
        str(moe.aux_loss_coefficient),
        *(part for flag, value in flags.items() if value is not None for part in (flag, str(value))),
    ]
