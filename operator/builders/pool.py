"""A pool of identical HTTP servers (rollout servers, verifier models, later the DvD pools): a
Deployment whose pods pass the restricted Pod Security Standard, probed on a health path, and the
Service in front of it. A headless Service lets a client reach every replica by itself (the trainer
publishes new weights to each rollout server); a ClusterIP one balances requests over them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vlmop.operator.api.common import Placement, Volume
from vlmop.operator.builders.common import (
    COMPONENT,
    MANAGED_BY,
    OWNER_NAME,
    Manifest,
    owned,
    restricted_security,
)
from vlmop.operator.builders.gang import environment_from


@dataclass(frozen=True)
class Pool:
    owner: Mapping[str, Any]
    name: str  # of the Deployment and the Service
    component: str
    placement: Placement
    replicas: int | None  # None: an HPA (or KEDA) owns the count, the manifest leaves it out
    gpus: int
    command: list[str]  # empty: the image's entry point, with `args`
    args: list[str]
    port: int
    health_path: str = "/health"
    # An exec startup probe (a first real request) where /health alone does not mean it serves.
    startup_command: list[str] = field(default_factory=list)
    headless: bool = False
    mounts: list[Volume] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    scheduling_group: str | None = None  # a Kubernetes PodGroup its pods belong to (a composite gang)


def selector(pool: Pool) -> dict[str, str]:
    return {OWNER_NAME: str(pool.owner["metadata"]["name"]), COMPONENT: pool.component}


def deployment(pool: Pool) -> Manifest:
    place = pool.placement
    pod_security, container_security = restricted_security()
    probe = {"httpGet": {"path": pool.health_path, "port": "http"}, "periodSeconds": 10}
    startup = {"exec": {"command": pool.startup_command}, "periodSeconds": 10, "timeoutSeconds": 60}
    startup = startup if pool.startup_command else probe
    limits = {k: str(v) for k, v in place.resources.limits.items()}
    if pool.gpus:
        limits[place.gpu_resource_name] = str(pool.gpus)
    resources = {"requests": {k: str(v) for k, v in place.resources.requests.items()}, "limits": limits}
    mounts = [*pool.mounts, *place.volumes]
    container: dict[str, Any] = {
        "name": pool.component,
        "image": place.image,
        "imagePullPolicy": place.image_pull_policy,
        "args": pool.args,
        "env": [{"name": k, "value": v} for k, v in sorted(pool.env.items())] + environment_from(place.env),
        "ports": [{"name": "http", "containerPort": pool.port}],
        # A model takes a while to load: readiness gates traffic, liveness only catches a hung server.
        "startupProbe": {**startup, "failureThreshold": 90},
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 6},
        "resources": {k: v for k, v in resources.items() if v},
        "volumeMounts": [
            {"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only} for v in mounts
        ],
        "securityContext": container_security,
        # Endpoints drop a terminating pod a moment after SIGTERM: keep serving until they have.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
    }
    if pool.command:
        container["command"] = pool.command
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security,
        "containers": [container],
        "volumes": [{"name": v.name, "persistentVolumeClaim": {"claimName": v.claim_name}} for v in mounts],
    }
    optional = {
        "nodeSelector": place.node_selector or None,
        "tolerations": [t.model_dump(by_alias=True, exclude_none=True) for t in place.tolerations] or None,
        "serviceAccountName": place.service_account_name,
        "schedulingGroup": {"podGroupName": pool.scheduling_group} if pool.scheduling_group else None,
    }
    pod_spec.update({k: v for k, v in optional.items() if v})
    labels = {**selector(pool), MANAGED_BY: "vlmop"}  # no owner-kind: not in the worker-pods index
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": pool.name},
        "spec": {
            "selector": {"matchLabels": selector(pool)},
            # A new replica serves before an old one stops: no request finds the pool empty.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    if pool.replicas is not None:
        manifest["spec"]["replicas"] = pool.replicas
    return owned(pool.owner, manifest, pool.component)


def service(pool: Pool) -> Manifest:
    spec: dict[str, Any] = {
        "selector": selector(pool),
        "ports": [{"name": "http", "port": pool.port, "targetPort": "http"}],
    }
    if pool.headless:
        spec["clusterIP"] = "None"
    manifest = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": pool.name}, "spec": spec}
    return owned(pool.owner, manifest, pool.component)


def url(pool: Pool) -> str:
    return service_url(pool.name, str(pool.owner["metadata"]["namespace"]), pool.port)


def service_url(name: str, namespace: str, port: int) -> str:
    return f"http://{name}.{namespace}.svc:{port}"


def vllm_args(name: str, port: int, tensor_parallel: int, max_model_len: int | None, dtype: str) -> list[str]:
    """What follows `vllm serve MODEL` for a pool (checked by vLLM's own parser in the tests)."""
    args = ["--host", "0.0.0.0", "--port", str(port), "--served-model-name", name,  # noqa: S104
            "--tensor-parallel-size", str(tensor_parallel), "--dtype", dtype]  # fmt: skip
    return args + (["--max-model-len", str(max_model_len)] if max_model_len else [])


def first_completion(port: int, name: str) -> list[str]:
    """A startup probe that samples one token: vLLM answers /health before its engine has served a
    request, and an engine that cannot run the model (e.g. CPU attention under head_dim 64) dies on
    the first one. The prompt is token ids, so it works without a tokenizer (--skip-tokenizer-init)."""
    body = json.dumps({"model": name, "prompt": [1], "max_tokens": 1})
    script = ("import sys, urllib.request as u; r = u.Request(sys.argv[1], data=sys.argv[2].encode(), "
              "headers={'Content-Type': 'application/json'}); u.urlopen(r, timeout=50)")  # fmt: skip
    return ["python3", "-c", script, f"http://127.0.0.1:{port}/v1/completions", body]
