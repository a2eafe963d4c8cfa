"""DvDDeployment: the vision encoder and the language model served on separate GPU pools behind one
gateway, each pool autoscaled from GPU utilisation."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from vlmop.operator.api.common import (
    NO_SPACE,
    ApiModel,
    BaseStatus,
    KindInfo,
    NetworkPolicy,
    Placement,
    SecretKeyRef,
    cel,
    sub,
    subdomain,
    url,
)

_REPLICA_BOUNDS = cel(
    "self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas", ".minReplicas"
)


class ViR(ApiModel):
    enabled: bool = Field(True, description="Route each tile to 1/4 or 1/16 token compression.")
    threshold: float = Field(
        0.5, ge=0, le=1, description="Router score above which a tile keeps the finer 1/4 compression."
    )


class VisionPool(Placement):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_REPLICA_BOUNDS]})

    min_replicas: int = Field(1, ge=0, description="Fewest vision servers the autoscaler keeps.")
    max_replicas: int = Field(4, ge=1, description="Most vision servers the autoscaler runs.")
    gpus_per_replica: int = Field(1, ge=0, description="GPUs per vision server.")
    vir: ViR = sub(ViR, "Visual Resolution Router.")
    max_tiles: int = Field(12, ge=1, le=64, description="Most 448x448 tiles per image (dynamic tiling).")
    batch_size: int = Field(16, ge=1, description="Most tiles encoded in one batch.")
    port: int = Field(8001, ge=1024, le=65535, description="HTTP port of the vision server.")


class LanguagePool(Placement):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _REPLICA_BOUNDS,
                cel(
                    "self.gpusPerReplica == 0 || self.gpusPerReplica >= self.tensorParallel",
                    "gpusPerReplica must cover tensorParallel",
                    ".gpusPerReplica",
                ),
            ]
        }
    )

    engine: Literal["vllm", "vlmop"] = Field(
        "vllm",
        description="vllm (`vllm serve` in the image; the gateway sends image features as vLLM's "
        "image_embeds) or vlmop (vlmop's transformers stand-in, for CPU and tests).",
    )
    min_replicas: int = Field(1, ge=0, description="Fewest vLLM servers the autoscaler keeps.")
    max_replicas: int = Field(4, ge=1, description="Most vLLM servers the autoscaler runs.")
    gpus_per_replica: int = Field(1, ge=0, description="GPUs per vLLM server.")
    tensor_parallel: int = Field(1, ge=1, description="vLLM --tensor-parallel-size.")
    max_model_len: int | None = Field(
        None, ge=16, description="vLLM --max-model-len: longest prompt + answer; the model's when empty."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="vLLM --dtype of the weights and activations (auto: the checkpoint's, float32 "
        "weights served in bfloat16).",
    )
    max_num_seqs: int = Field(
        256,
        ge=1,
        description="vLLM --max-num-seqs: most requests one server runs at once (a smaller batch keeps "
        "the time per output token down); the autoscaler's measure of how busy a server is.",
    )
    args: list[str] = Field(default_factory=list, description="Extra vLLM arguments.")
    port: int = Field(8000, ge=1024, le=65535, description="HTTP port of the vLLM server.")


class Gateway(Placement):
    replicas: int = Field(2, ge=1, description="Gateway replicas.")
    auth_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret key holding the API key clients must send; no auth when empty."
    )
    max_image_bytes: int = Field(20 * 2**20, ge=1, description="Largest decoded image file accepted.")
    max_image_pixels: int = Field(
        64 * 2**20, ge=1, description="Largest width x height accepted (decompression-bomb limit)."
    )
    max_images_per_request: int = Field(8, ge=1, description="Most images in one request.")
    request_timeout_seconds: float = Field(120.0, gt=0, description="End-to-end request timeout.")
    allow_remote_images: bool = Field(False, description="Fetch http(s) image URLs (off: data URIs only).")
    port: int = Field(8080, ge=1024, le=65535, description="HTTP port of the gateway.")


class Slo(ApiModel):
    queue_seconds: float = Field(
        2.0,
        gt=0,
        description="Longest queueing time (vision + language pool) of the percentile's requests; each "
        "pool is held to half of it.",
    )
    time_to_first_token_seconds: float | None = Field(
        None, gt=0, description="Longest time to first token at the language pool (vLLM's); none when empty."
    )
    percentile: int = Field(95, ge=50, le=99, description="The percentile both bounds apply to.")


class PoolScaling(ApiModel):
    query: str | None = Field(
        None,
        description="PromQL giving the pool's utilisation (0-1), overriding the DCGM default; $namespace "
        "and $pool (the pool's Deployment name) are filled in.",
        min_length=1,
    )
    target_utilization: float = Field(0.7, gt=0, le=1, description="Target GPU utilisation (0-1).")
    queue_target: float | None = Field(
        None,
        gt=0,
        description="In-flight requests per replica; when set, a deeper queue scales the pool up even "
        "when utilisation (capped at 100%) cannot say how far over capacity it is.",
    )
    queue_query: str | None = Field(
        None,
        description="PromQL giving the pool's in-flight requests; default: vlmop's serving gauge, or "
        "vLLM's running + waiting requests for the language pool on vLLM.",
        min_length=1,
    )


class Autoscaling(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.mode != 'operator' || has(self.prometheusUrl)",
                    "prometheusUrl is required when mode is operator",
                    ".prometheusUrl",
                )
            ]
        }
    )

    mode: Literal["operator", "keda", "hpa", "disabled"] = Field(
        "disabled", description="operator (built-in timer), keda (ScaledObject), hpa, or disabled."
    )
    prometheus_url: str | None = url("Base URL of the Prometheus HTTP API (http or https).")
    policy: Literal["slo", "utilization"] = Field(
        "slo",
        description="slo: hold the SLO below from each pool's measured capacity, forecast arrivals and "
        "start-up delay (GPU utilisation and queue targets only while a pool exports no request counts or "
        "no capacity is measured yet); utilization: HPA's rule on GPU utilisation (and queue targets).",
    )
    slo: Slo = sub(Slo, "The latency objective the slo policy holds (mode operator).")
    target_load: float = Field(
        0.85, gt=0, le=1, description="Share of a replica's measured capacity the SLO rule plans to use."
    )
    rate_window_seconds: int = Field(
        60, ge=2, description="Window of the request and busy-time rates (at least 4 scrape intervals)."
    )
    startup_seconds: int = Field(
        120, ge=0, description="A new replica's start-up delay until measured (the forecast's horizon)."
    )
    vision: PoolScaling = sub(PoolScaling, "Scaling signal of the vision pool.")
    language: PoolScaling = sub(PoolScaling, "Scaling signal of the language pool.")
    tolerance: float = Field(0.1, ge=0, lt=1, description="Relative deviation ignored around the target.")
    interval_seconds: int = Field(15, ge=1, description="How often the policy runs.")
    scale_up_stabilization_seconds: int = Field(0, ge=0, description="Window before scaling up.")
    scale_down_stabilization_seconds: int | None = Field(
        None,
        ge=0,
        description="A lower recommendation must hold this long before scaling down; default 60 (slo "
        "policy) or 120 (utilization).",
    )
    max_step: int = Field(4, ge=1, description="Most replicas added or removed per interval.")
    cooldown_seconds: int | None = Field(
        None, ge=0, description="Quiet time after scaling; default 15 (slo policy) or 60 (utilization)."
    )
    metric_stale_seconds: int = Field(120, ge=1, description="Older samples are missing: hold replicas.")


class DvDDeploymentSpec(ApiModel):
    model: str = Field(
        description="Hugging Face checkpoint directory (or name) of the InternVL model.",
        min_length=1,
        pattern=NO_SPACE,
    )
    model_claim_name: str | None = subdomain("PVC mounted read-only at /models.")
    vision: VisionPool = Field(description="Vision encoder pool: ViT + projector + ViR.")
    language: LanguagePool = Field(description="Language model pool on vLLM.")
    gateway: Gateway = Field(description="OpenAI-compatible front door.")
    autoscaling: Autoscaling = sub(Autoscaling, "How the two pools are scaled.")
    network_policy: NetworkPolicy = sub(
        NetworkPolicy,
        "Who may reach the pools: only the gateway's pods the vision and language pools, anyone the "
        "gateway's port.",
    )


class PoolStatus(ApiModel):
    replicas: int = Field(0, description="Replicas the pool's Deployment has.")
    ready_replicas: int = Field(0, description="Replicas passing readiness.")
    desired_replicas: int | None = Field(None, description="Replicas the autoscaler last chose.")
    metric_value: float | None = Field(None, description="GPU utilisation the last decision read.")
    capacity_per_replica: float | None = Field(
        None, description="Requests/s one replica serves, as the slo policy measured it."
    )
    forecast_requests_per_second: float | None = Field(
        None, description="Arrival rate the slo policy planned for (one start-up delay ahead)."
    )
    reason: str | None = Field(None, description="Why the last decision was taken.")
    message: str | None = Field(None, description="What the last decision read and estimated.")
    last_scale_time: str | None = Field(None, description="When the pool was last scaled (RFC 3339).")


class DvDDeploymentStatus(BaseStatus):
    phase: Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"] | None = Field(
        None, description="Pending, Progressing, Ready, Degraded or Failed."
    )
    endpoint: str | None = Field(None, description="In-cluster URL of the gateway.")
    vision: PoolStatus = Field(default_factory=PoolStatus, description="Vision pool.")
    language: PoolStatus = Field(default_factory=PoolStatus, description="Language pool.")
    gateway: PoolStatus = Field(default_factory=PoolStatus, description="Gateway.")


DVDDEPLOYMENT = KindInfo(
    kind="DvDDeployment",
    plural="dvddeployments",
    short_name="dvd",
    description="Serves a VLM with the vision encoder and language model on separate autoscaled pools.",
    spec=DvDDeploymentSpec,
    status=DvDDeploymentStatus,
    printer_columns=(
        ("Phase", "string", ".status.phase"),
        ("Progress", "string", ".status.progress"),
        ("Endpoint", "string", ".status.endpoint"),
    ),
)
