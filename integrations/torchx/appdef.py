"""Pure translations between torchx and PretrainJob: an AppDef's role → a PretrainJob manifest, and a
PretrainJob (with its pods) → torchx's app and replica states.

The operator starts every worker with its own `torchrun` (NNODES, NODE_RANK, MASTER_ADDR from the
gang), so a role that itself runs torchrun (torchx's `dist.ddp`/`dist.torchrun`: `bash -c "torchrun
--rdzv... --nproc_per_node 8 train.py ..."`) contributes only its program (`train.py ...`) and its
process count; a `python` role contributes its arguments; any other executable runs through
torchrun's `--no-python`."""

from __future__ import annotations

import json
import re
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchx.schedulers.api import StructuredOpts
from torchx.specs import AppDef, AppState, BindMount, DeviceMount, Role, VolumeMount, macros

from vlmop.operator.api import GROUP, PRETRAINJOB, VERSION

# torchrun options that take a value (both spellings); the program starts at the first other token.
_VALUED = [
    "nnodes",
    "nproc_per_node",
    "rdzv_backend",
    "rdzv_endpoint",
    "rdzv_id",
    "rdzv_conf",
    "node_rank",
    "master_addr",
    "master_port",
    "max_restarts",
    "monitor_interval",
    "start_method",
    "role",
    "log_dir",
    "redirects",
    "tee",
    "local_addr",
    "logs_specs",
    "local_ranks_filter",
    "shutdown_timeout",
]
TORCHRUN_VALUE_OPTIONS = (
    {f"--{n}" for n in _VALUED} | {f"--{n.replace('_', '-')}" for n in _VALUED} | {"-r", "-t"}
)
TORCHRUN_PROGRAM_FLAGS = {"-m", "--module", "--no-python", "--no_python"}  # kept: they shape the program
PYTHON = re.compile(r"^(.*/)?python(3(\.\d+)?)?$")
PHASE_TO_STATE = {
    "Pending": AppState.PENDING,
    "Running": AppState.RUNNING,
    "Restarting": AppState.RUNNING,  # the gang restarts from its checkpoint; num_restarts says so
    "Succeeded": AppState.SUCCEEDED,
    "Failed": AppState.FAILED,
    "Suspended": AppState.CANCELLED,  # `torchx cancel` suspends: pods stop, checkpoints stay
}
POD_TO_STATE = {
    "Pending": AppState.PENDING,
    "Running": AppState.RUNNING,
    "Succeeded": AppState.SUCCEEDED,
    "Failed": AppState.FAILED,
}


@dataclass
class Submission(StructuredOpts):
    """The vlmop scheduler's run options (`torchx runopts vlmop`; `-cfg namespace=...,queue=...`)."""

    namespace: str = "default"
    """Namespace of the PretrainJob."""

    queue: str | None = None
    """Kueue LocalQueue or Volcano queue; with it `gang` defaults to kueue."""

    gang: str | None = None
    """Gang scheduling: none, volcano, coscheduling or kueue (default: kueue with a queue, else none)."""

    priority_class: str | None = None
    """PriorityClass of the workers."""

    checkpoint_claim: str | None = None
    """PersistentVolumeClaim for checkpoints (never deleted with the job)."""

    checkpoint_path: str = "/checkpoints"
    """Where the checkpoint claim is mounted in the workers."""

    deepspeed_config: str | None = None
    """DeepSpeed config: inline JSON or a path to a .json file, rendered into the job's ConfigMap."""

    gpu_resource_name: str = "nvidia.com/gpu"
    """Extended resource the GPUs are requested as."""


def program(role: Role) -> tuple[list[str], int | None]:
    """(what torchrun should start, the role's --nproc_per_node if it ran torchrun itself)."""
    if Path(role.entrypoint).name in ("bash", "sh") and len(role.args) == 2 and role.args[0] == "-c":
        words = shlex.split(role.args[1])
        for start, word in enumerate(words):
            if Path(word).name == "torchrun" or words[start : start + 2] == ["-m", "torch.distributed.run"]:
                return _after_torchrun(words[start + (1 if Path(word).name == "torchrun" else 2) :])
        return ["--no-python", role.entrypoint, *role.args], None
    if PYTHON.match(role.entrypoint):
        return list(role.args), None
    return ["--no-python", role.entrypoint, *role.args], None


def _after_torchrun(words: list[str]) -> tuple[list[str], int | None]:
    out: list[str] = []
    nproc: int | None = None
    i = 0
    while i < len(words):
        word = words[i]
        name, has_value, value = word.partition("=")
        if name in TORCHRUN_VALUE_OPTIONS:
            if not has_value:
                i, value = i + 1, words[i + 1] if i + 1 < len(words) else ""
            if name.startswith("--nproc") and value.isdigit():
                nproc = int(value)
        elif word in TORCHRUN_PROGRAM_FLAGS:
            out.append("--no-python" if word == "--no_python" else word)
        elif word.startswith("--") and word not in ("--",):  # a flag without a value (--standalone)
            pass
        else:
            return out + words[i:], nproc
        i += 1
    raise ValueError("the role runs torchrun without a script or module")


def job_name(app_name: str) -> str:
    """A unique CR name (≤ 40 characters, DNS-1123) from the app's name, as torchx's make_unique."""
    base = re.sub(r"[^a-z0-9-]+", "-", app_name.lower()).strip("-")[:33].strip("-") or "app"
    return f"{base}-{secrets.token_hex(3)}"


def pretrainjob(app: AppDef, opts: Submission, name: str) -> dict[str, Any]:
    """The PretrainJob that runs `app`'s single role as a gang of `num_replicas` workers."""
    if len(app.roles) != 1:
        raise ValueError(
            f"a PretrainJob runs one role (a gang of identical workers); {app.name} has "
            f"{len(app.roles)}: {[r.name for r in app.roles]}"
        )
    role = macros.Values(img_root="", app_id=name, replica_id="$(NODE_RANK)", rank0_env="MASTER_ADDR").apply(
        app.roles[0]
    )
    command, nproc = program(role)
    resource = role.resource
    # A PretrainJob runs one process per GPU (one without GPUs): `-j 2x8` without --gpu asks for 8.
    gpus = max(int(resource.gpu or 0), 0) or (nproc if nproc and nproc > 1 else 0)
    if nproc is not None and nproc != max(gpus, 1):
        raise ValueError(
            f"the role runs {nproc} processes per node on {gpus} GPUs: a PretrainJob runs one process "
            f"per GPU; ask for {nproc} GPUs or {max(gpus, 1)} processes per node"
        )
    requests = {"cpu": str(resource.cpu), "memory": f"{resource.memMB}Mi"} if resource.cpu >= 0 else {}
    topology: dict[str, Any] = {
        "nodes": role.num_replicas,
        "gpusPerNode": gpus,
        "gpuResourceName": opts.gpu_resource_name,
        "image": role.image,
        "command": command,
        "resources": {"requests": requests},
        "env": [{"name": k, "value": str(v)} for k, v in sorted(role.env.items())],
        "volumes": [_volume(m, i) for i, m in enumerate(role.mounts)],
        "nodeSelector": {str(k): str(v) for k, v in resource.capabilities.items()},
    }
    scheduling: dict[str, Any] = {"gang": opts.gang or ("kueue" if opts.queue else "none")}
    if opts.queue:
        scheduling["queueName"] = opts.queue
    if opts.priority_class:
        scheduling["priorityClassName"] = opts.priority_class
    spec: dict[str, Any] = {
        "topology": topology,
        "scheduling": scheduling,
        "runPolicy": {"backoffLimit": role.max_retries},
        "checkpoint": {"path": opts.checkpoint_path},
    }
    if opts.checkpoint_claim:
        spec["checkpoint"]["claimName"] = opts.checkpoint_claim
    if opts.deepspeed_config:
        spec["deepspeed"] = {"config": _json_object(opts.deepspeed_config)}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": PRETRAINJOB.kind,
        "metadata": {
            "name": name,
            "namespace": opts.namespace,
            "labels": {"app.kubernetes.io/created-by": "torchx"},
            "annotations": {"vlmop.io/torchx-app": app.name, "vlmop.io/torchx-role": role.name},
        },
        "spec": spec,
    }


def _volume(mount: VolumeMount | BindMount | DeviceMount, index: int) -> dict[str, Any]:
    if not isinstance(mount, VolumeMount):  # host paths and devices bypass the pod's sandbox
        raise ValueError(
            f"mount {index} ({type(mount).__name__}): only volume mounts of a PersistentVolumeClaim "
            "are allowed (type=volume,src=<claim>,dst=<path>)"
        )
    return {
        "name": f"torchx-{index}",
        "claimName": mount.src,
        "mountPath": mount.dst_path,
        "readOnly": mount.read_only,
    }


def _json_object(text: str) -> dict[str, Any]:
    if text.lstrip()[:1] in ("{", "["):
        source = text
    elif Path(text).is_file():
        source = Path(text).read_text()
    else:
        raise ValueError(f"deepspeed_config {text!r} is neither a JSON object nor a JSON file")
    try:
        value = json.loads(source)
    except ValueError as error:
        raise ValueError(f"deepspeed_config is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError("deepspeed_config must be a JSON object")
    return value


def app_state(job: dict[str, Any]) -> AppState:
    phase = (job.get("status") or {}).get("phase")
    return PHASE_TO_STATE.get(phase, AppState.SUBMITTED) if phase else AppState.SUBMITTED


def message(job: dict[str, Any]) -> str:
    """The job's own account: its Failed or Progressing condition message, and its progress."""
    status = job.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    for kind in ("Failed", "Succeeded", "Progressing"):
        condition = conditions.get(kind, {})
        if condition.get("status") == "True" or (kind == "Progressing" and condition):
            text = condition.get("message") or condition.get("reason", "")
            return f"{text}; {status['progress']}" if status.get("progress") else text
    return ""
