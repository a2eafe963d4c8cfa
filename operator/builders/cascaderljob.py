"""CascadeRLJob -> its children. Stages run one after another, each as a gang (Job <name>-s<i>-r<attempt>)
sharing the rendezvous Service and one ConfigMap (every stage's ds_config, and a gspo stage's reward
table). Stage i trains from stage i-1's exported model (<checkpoint>/<stage>/final on the checkpoint
claim), or from spec.model for the first. While a gspo stage runs, its rollout pool (a Deployment
behind a headless Service, so the trainer can publish weights to every replica) and its verifier
model pools run beside the gang; they go when the stage ends."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from vlmop.operator.api.cascaderljob import CascadeRLJobSpec, Stage
from vlmop.operator.api.common import Volume
from vlmop.operator.builders import gang as gangs
from vlmop.operator.builders import networkpolicy
from vlmop.operator.builders import pool as pools
from vlmop.operator.builders.common import Manifest, owned
from vlmop.operator.builders.deepspeed import ds_config

COMPONENT = "trainer"
ROLLOUT = "rollout"
MODULES = {"mpo": "vlmop.workloads.rl.mpo", "gspo": "vlmop.workloads.rl.gspo"}
ROLLOUT_SERVER = ["python", "-m", "vlmop.workloads.rl.rollout_server"]
ROLLOUT_NAME = "policy"  # vLLM's --served-model-name (workloads.rl.rollout.SERVED_NAME)


def config_map_name(owner: Mapping[str, Any]) -> str:
    return f"{owner['metadata']['name']}-config"


def ds_config_key(index: int) -> str:
    return f"s{index}.ds_config.json"


def rewards_key(index: int) -> str:
    return f"s{index}.rewards.json"


def world(spec: CascadeRLJobSpec) -> int:
    return spec.topology.nodes * max(spec.topology.gpus_per_node, 1)


def active(spec: CascadeRLJobSpec) -> list[int]:
    return [i for i, stage in enumerate(spec.stages) if not stage.skip]


def stage_dir(spec: CascadeRLJobSpec, stage: Stage) -> str:
    return f"{spec.checkpoint.path}/{stage.name}"


def export_dir(spec: CascadeRLJobSpec, stage: Stage) -> str:
    """Where a stage writes its final model: the next stage's (and its rollout pool's) --model-path."""
    return f"{stage_dir(spec, stage)}/final"


def model_args(spec: CascadeRLJobSpec, index: int) -> list[str]:
    before = [i for i in active(spec) if i < index]
    if before:
        return ["--model-path", export_dir(spec, spec.stages[before[-1]])]
    if spec.model.path:
        return ["--model-path", spec.model.path]
    return ["--model-preset", str(spec.model.preset)]


def stage_deepspeed(spec: CascadeRLJobSpec, stage: Stage) -> dict[str, Any]:
    """MPO: accumulation that makes up globalBatchSize pairs per step. GSPO: every rank takes its share
    of promptsPerStep as one micro-batch, updated in mini-batches (no accumulation)."""
    ranks = world(spec)
    if stage.kind == "mpo":
        micro = spec.deepspeed.micro_batch_size
        update = {"gradient_accumulation_steps": max(1, stage.mpo.global_batch_size // (micro * ranks))}
    else:
        update = {"micro_batch_size": math.ceil(stage.gspo.prompts_per_step / ranks),
                  "gradient_accumulation_steps": 1}  # fmt: skip
    return ds_config(spec.deepspeed.model_copy(update=update))


def weights_dir(spec: CascadeRLJobSpec, stage: Stage) -> str:
    sync = stage.weight_sync
    if sync.claim_name and sync.claim_name != spec.checkpoint.claim_name:
        return f"{sync.mount_path}/{stage.name}"
    return f"{spec.checkpoint.path}/weights/{stage.name}"


def mounts(spec: CascadeRLJobSpec, stage: Stage, read_only: bool = False) -> list[Volume]:
    out = []
    if stage.data.claim_name and not read_only:
        out.append(Volume(name="data", claim_name=stage.data.claim_name, mount_path="/data", read_only=True))
    if spec.model.claim_name:
        out.append(
            Volume(name="model", claim_name=spec.model.claim_name, mount_path="/models", read_only=True)
        )
    if spec.checkpoint.claim_name:  # referenced, never owned: deleting the job keeps the checkpoints
        out.append(Volume(name="checkpoints", claim_name=spec.checkpoint.claim_name,
                          mount_path=spec.checkpoint.path, read_only=read_only))  # fmt: skip
    sync = stage.weight_sync
    if stage.kind == "gspo" and sync.claim_name and sync.claim_name != spec.checkpoint.claim_name:
        out.append(Volume(name="weights", claim_name=sync.claim_name, mount_path=sync.mount_path))
    return out


def rollout_pool(owner: Mapping[str, Any], spec: CascadeRLJobSpec, index: int) -> pools.Pool:
    stage = spec.stages[index]
    if stage.rollout is None:  # admission (CEL) requires it for gspo; the type needs it said
        raise ValueError(f"stage {stage.name} has no rollout pool")
    rollout = stage.rollout
    command, env, startup = ROLLOUT_SERVER, {}, []
    args = [*model_args(spec, index), "--weights-dir", weights_dir(spec, stage), "--port", str(rollout.port)]
    if rollout.engine == "vllm":  # admission (CEL) makes sure the stage starts from a checkpoint
        command = ["vllm", "serve", model_args(spec, index)[1]]
        args = pools.vllm_args(
            ROLLOUT_NAME, rollout.port, rollout.tensor_parallel, rollout.max_model_len, rollout.dtype
        )
        env = {
            "VLLM_SERVER_DEV_MODE": "1"
        }  # pause/reload/reset/resume; the NetworkPolicy admits the trainer only
        startup = pools.first_completion(rollout.port, ROLLOUT_NAME)
    return pools.Pool(
        owner=owner,
        name=f"{owner['metadata']['name']}-{ROLLOUT}",
        component=ROLLOUT,
        placement=rollout,
        replicas=rollout.replicas,
        gpus=rollout.gpus_per_replica,
        command=command,
        args=[*args, *rollout.args],
        port=rollout.port,
        env=env,
        startup_command=startup,
        headless=True,  # the trainer resolves every replica, to publish new weights to each
        mounts=[m for m in mounts(spec, stage, read_only=True) if m.name != "weights"]
        + [m for m in mounts(spec, stage) if m.name == "weights"],
    )


def verifier_pools(owner: Mapping[str, Any], stage: Stage) -> dict[str, pools.Pool]:
    """The model verifiers the operator runs, by verifier name."""
    out = {}
    for i, verifier in enumerate(stage.rewards.verifiers if stage.rewards else []):
        if verifier.pool is None:
            continue
        p = verifier.pool
        out[verifier.name] = pools.Pool(
            owner=owner,
            name=f"{owner['metadata']['name']}-verifier-{i}",
            component=f"verifier-{i}",
            placement=p,
            replicas=p.replicas,
            gpus=p.gpus_per_replica,
            command=[],
            args=p.args,
            port=p.port,
        )
    return out


def rewards_table(owner: Mapping[str, Any], stage: Stage) -> dict[str, Any]:
    """The Mixture-of-Rewards spec the trainer reads: pool verifiers point at their Service."""
    if stage.rewards is None:
        return {}
    served = verifier_pools(owner, stage)
    verifiers = []
    for v in stage.rewards.verifiers:
        entry = v.model_dump(by_alias=True, exclude_none=True, exclude={"pool"})
        if v.name in served:
            entry["endpoint"] = pools.url(served[v.name])
        verifiers.append(entry)
    return {"verifiers": verifiers, "routes": [r.model_dump(by_alias=True) for r in stage.rewards.routes]}


def config_map(owner: Mapping[str, Any], spec: CascadeRLJobSpec) -> Manifest:
    data = {}
    for i in active(spec):
        stage = spec.stages[i]
        data[ds_config_key(i)] = json.dumps(stage_deepspeed(spec, stage), indent=2, sort_keys=True)
        if stage.kind == "gspo":
            data[rewards_key(i)] = json.dumps(rewards_table(owner, stage), indent=2, sort_keys=True)
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": config_map_name(owner)},
                "data": data}  # fmt: skip
    return owned(owner, manifest, COMPONENT)


def program(owner: Mapping[str, Any], spec: CascadeRLJobSpec, index: int) -> list[str]:
    stage, ckpt = spec.stages[index], spec.checkpoint
    first = index == active(spec)[0]
    # An explicit resume path belongs to the first stage; later stages resume within their own folder.
    resume = ckpt.resume_from if first or ckpt.resume_from in ("latest", "none") else "latest"
    common = [
        "-m", MODULES[stage.kind],
        "--deepspeed-config", f"{gangs.CONFIG_DIR}/{ds_config_key(index)}",
        *model_args(spec, index),
        "--data", stage.data.path or "/data",
        "--seq-length", str(stage.data.seq_length),
        "--checkpoint-dir", stage_dir(spec, stage),
        "--checkpoint-interval", str(ckpt.interval_steps),
        "--keep-last", str(ckpt.keep_last),
        "--resume-from", resume,
        "--export-dir", export_dir(spec, stage),
        "--metrics-port", str(spec.metrics_port),
        *(["--activation-checkpointing"] if spec.deepspeed.activation_checkpointing else []),
    ]  # fmt: skip
    if stage.kind == "mpo":
        m = stage.mpo
        return [
            *common,
            "--lr", str(m.learning_rate), "--lr-schedule", m.lr_schedule, "--epochs", str(m.epochs),
            "--beta", str(m.beta), "--preference-weight", str(m.preference_weight),
            "--quality-weight", str(m.quality_weight), "--generation-weight", str(m.generation_weight),
        ]  # fmt: skip
    g, sampling, keep = stage.gspo, stage.rollout.sampling if stage.rollout else None, stage.prompt_filter
    assert sampling is not None  # admission (CEL) requires a rollout pool for gspo
    out = [
        *common,
        "--lr", str(g.learning_rate), "--lr-schedule", "constant", "--total-steps", str(g.total_steps),
        "--rollout-url", pools.url(rollout_pool(owner, spec, index)),
        "--rollout-engine", stage.rollout.engine if stage.rollout else "vlmop",
        "--weights-dir", weights_dir(spec, stage),
        "--rewards", f"{gangs.CONFIG_DIR}/{rewards_key(index)}",
        "--group-size", str(sampling.group_size), "--temperature", str(sampling.temperature),
        "--top-p", str(sampling.top_p), "--max-tokens", str(sampling.max_tokens),
        "--loss-mode", g.loss_mode,
        "--min-accuracy", str(keep.min_accuracy), "--max-accuracy", str(keep.max_accuracy),
        "--mini-batches", str(max(1, g.prompts_per_step // g.mini_batch_prompts)),
    ]  # fmt: skip
    if not keep.drop_zero_variance:
        out.append("--keep-zero-variance")
    if g.loss_mode == "gspo":  # GRPO keeps its own clip (0.2/0.28) unless the spec moved it
        out += ["--eps-low", str(g.clip_low), "--eps-high", str(g.clip_high)]
    return out


def stage_job(owner: Mapping[str, Any], index: int, attempt: int) -> str:
    return gangs.job_name(str(owner["metadata"]["name"]), attempt, f"s{index}")


def stage_gang(owner: Mapping[str, Any], spec: CascadeRLJobSpec, index: int, attempt: int) -> gangs.Gang:
    stage = spec.stages[index]
    return gangs.Gang(
        owner=owner,
        component=COMPONENT,
        topology=spec.topology,
        scheduling=spec.scheduling,
        program=program(owner, spec, index),
        attempt=attempt,
        group=f"s{index}",
        config_map=config_map_name(owner),
        mounts=mounts(spec, stage),
        ports={"metrics": spec.metrics_port},
        env={"VLMOP_STAGE": stage.name},
        supervised=spec.run_policy.failure_policy.restart_strategy == "InPlace",
    )


def finished_jobs(owner: Mapping[str, Any], done: Sequence[tuple[int, int]]) -> set[str]:
    """Names of the Jobs of finished stages ((index, last attempt)): left as they are, for their logs."""
    return {stage_job(owner, i, attempt) for i, attempt in done}


def children(
    owner: Mapping[str, Any], spec: CascadeRLJobSpec, current: int | None, attempt: int, workers: bool
) -> list[Manifest]:
    """The shared Service and ConfigMap; the current stage's gang (and its pools) when `workers`."""
    out = [gangs.headless_service(stage_gang(owner, spec, active(spec)[0], 0)), config_map(owner, spec)]
    if current is None or not workers:
        return out
    gang = stage_gang(owner, spec, current, attempt)
    stage = spec.stages[current]
    # A gspo stage's trainer and rollout pool start together or not at all (one composite gang), so
    # neither holds GPUs waiting for the other.
    members = {ROLLOUT: stage.rollout.replicas} if stage.kind == "gspo" and stage.rollout else {}
    native = spec.scheduling.gang == "kubernetes"
    out += gangs.pod_groups(gang, members)
    job = gangs.worker_job(gang)
    out.append(job)
    if stage.kind == "gspo":
        rollout = rollout_pool(owner, spec, current)
        if native:
            rollout = dataclasses.replace(rollout, scheduling_group=f"{gang.job}-{ROLLOUT}")
        served = [rollout, *verifier_pools(owner, stage).values()]
        for p in served:
            out += [pools.deployment(p), pools.service(p)]
        # Only this gang's pods may publish weights to the rollout servers or call the verifiers.
        out += networkpolicy.policies(spec.network_policy, served, [networkpolicy.pods_of(job)])
    return out
