"""DvDDeployment -> its children: the vision pool, the language pool and the gateway, each a
Deployment (restricted pods, probes, surge-first rolling updates) behind a ClusterIP Service. The
gateway reaches the pools by their Services; the API key reaches it only as a secret reference."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from vlmop.operator.api.common import EnvVar, Volume
from vlmop.operator.api.dvddeployment import DvDDeploymentSpec
from vlmop.operator.builders import autoscaling, networkpolicy
from vlmop.operator.builders import pool as pools
from vlmop.operator.builders.common import Manifest

POOLS = ("vision", "language", "gateway")
NONE: Mapping[str, int] = MappingProxyType({})  # no autoscaler choice yet
MODEL_MOUNT = "/models"
SERVED_NAME = "vlm"  # the model name the gateway asks the language pool for


def pool_name(owner: Mapping[str, Any], pool: str) -> str:
    """The Deployment and Service of a pool: <name>-vision, -language, -gateway."""
    return f"{owner['metadata']['name']}-{pool}"


def endpoint(owner: Mapping[str, Any], spec: DvDDeploymentSpec) -> str:
    """The gateway's in-cluster URL (status.endpoint)."""
    return pools.service_url(
        pool_name(owner, "gateway"), str(owner["metadata"]["namespace"]), spec.gateway.port
    )


def model_mounts(spec: DvDDeploymentSpec) -> list[Volume]:
    if not spec.model_claim_name:
        return []
    return [Volume(name="model", claim_name=spec.model_claim_name, mount_path=MODEL_MOUNT, read_only=True)]


def replicas(spec: DvDDeploymentSpec, pool: str, desired: Mapping[str, int]) -> int | None:
    """The operator's autoscaler's choice (kept in status), else the minimum; None where an HPA or
    KEDA owns the count."""
    mode = spec.autoscaling.mode
    if pool in autoscaling.SCALED and mode in ("keda", "hpa"):
        return None
    if pool in desired and mode == "operator":
        return desired[pool]
    return max(int(getattr(spec, pool).min_replicas), 1)


def vision_pool(
    owner: Mapping[str, Any], spec: DvDDeploymentSpec, desired: Mapping[str, int] = NONE
) -> pools.Pool:
    v = spec.vision
    args = ["--model", spec.model, "--port", str(v.port), "--max-tiles", str(v.max_tiles),
            "--batch-size", str(v.batch_size), "--vir-threshold", str(v.vir.threshold),
            "--max-image-bytes", str(spec.gateway.max_image_bytes),
            "--max-image-pixels", str(spec.gateway.max_image_pixels)]  # fmt: skip
    if not v.vir.enabled:
        args.append("--no-vir")
    return pools.Pool(
        owner=owner,
        name=pool_name(owner, "vision"),
        component="vision",
        placement=v,
        replicas=replicas(spec, "vision", desired),
        gpus=v.gpus_per_replica,
        command=["python", "-m", "vlmop.workloads.serving.vision"],
        args=args,
        port=v.port,
        mounts=model_mounts(spec),
    )


def language_pool(
    owner: Mapping[str, Any], spec: DvDDeploymentSpec, desired: Mapping[str, int] = NONE
) -> pools.Pool:
    lm = spec.language
    startup: list[str] = []
    if lm.engine == "vllm":
        command = ["vllm", "serve", spec.model]
        args = pools.vllm_args(SERVED_NAME, lm.port, lm.tensor_parallel, lm.max_model_len, lm.dtype)
        args += [
            "--max-num-seqs",
            str(lm.max_num_seqs),
            "--enable-mm-embeds",
        ]  # the vision pool's features, as image_embeds parts
        startup = pools.first_completion(lm.port, SERVED_NAME)
    else:
        command = ["python", "-m", "vlmop.workloads.serving.language"]
        args = ["--model", spec.model, "--port", str(lm.port)]
    return pools.Pool(
        owner=owner,
        name=pool_name(owner, "language"),
        component="language",
        placement=lm,
        replicas=replicas(spec, "language", desired),
        gpus=lm.gpus_per_replica,
        command=command,
        args=[*args, *lm.args],
        port=lm.port,
        mounts=model_mounts(spec),
        startup_command=startup,
    )


def gateway_pool(owner: Mapping[str, Any], spec: DvDDeploymentSpec) -> pools.Pool:
    g = spec.gateway
    vision, language = vision_pool(owner, spec), language_pool(owner, spec)
    args = ["--vision-url", pools.url(vision), "--language-url", pools.url(language),
            "--language-protocol", spec.language.engine, "--model-config", f"{spec.model}/config.json",
            "--port", str(g.port),
            "--max-image-bytes", str(g.max_image_bytes), "--max-image-pixels", str(g.max_image_pixels),
            "--max-images", str(g.max_images_per_request),
            "--request-timeout", str(g.request_timeout_seconds)]  # fmt: skip
    if g.allow_remote_images:
        args.append("--allow-remote-images")
    placement = g
    if g.auth_secret_ref:  # by reference only: the key never appears in the manifest
        key = EnvVar(name="VLMOP_API_KEY", secret_key_ref=g.auth_secret_ref)
        placement = g.model_copy(update={"env": [*g.env, key]})
    return pools.Pool(
        owner=owner,
        name=pool_name(owner, "gateway"),
        component="gateway",
        placement=placement,
        replicas=g.replicas,
        gpus=0,
        command=["python", "-m", "vlmop.workloads.serving.gateway"],
        args=args,
        port=g.port,
        mounts=model_mounts(spec),  # config.json only: the language model's width
    )


def all_pools(
    owner: Mapping[str, Any], spec: DvDDeploymentSpec, desired: Mapping[str, int] = NONE
) -> dict[str, pools.Pool]:
    return {"vision": vision_pool(owner, spec, desired), "language": language_pool(owner, spec, desired),
            "gateway": gateway_pool(owner, spec)}  # fmt: skip


def children(
    owner: Mapping[str, Any], spec: DvDDeploymentSpec, desired: Mapping[str, int] = NONE
) -> list[Manifest]:
    """The pools at `desired` replicas (the operator's autoscaler's, by pool), with a ScaledObject or
    HPA per scaled pool in the keda and hpa modes; NetworkPolicies that let only the gateway reach the
    vision and language pools, and anyone the gateway."""
    out = []
    served = all_pools(owner, spec, desired)
    for name, p in served.items():
        out += [pools.deployment(p), pools.service(p)]
        scaler = autoscaling.scaler(owner, spec, name, p.name) if name in autoscaling.SCALED else None
        out += [scaler] if scaler else []
    gateway = networkpolicy.pods_of(pools.deployment(served["gateway"]))
    out += networkpolicy.policies(spec.network_policy, [served["vision"], served["language"]], [gateway])
    out += networkpolicy.policies(spec.network_policy, [served["gateway"]], None)
    return out
