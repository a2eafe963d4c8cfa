"""The autoscaling half of a DvDDeployment: each pool's policy bounds (from the spec) for the
operator's own autoscaler, or, for clusters that prefer them, a KEDA ScaledObject or an
autoscaling/v2 HorizontalPodAutoscaler per pool with the same target and behaviour."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlmop.operator.api.dvddeployment import DvDDeploymentSpec, PoolScaling
from vlmop.operator.autoscaler import prometheus
from vlmop.operator.autoscaler.policy import Bounds
from vlmop.operator.builders.common import Manifest, owned

SCALED = ("vision", "language")  # the gateway's replicas are fixed by its spec


def scaling(spec: DvDDeploymentSpec, pool: str) -> PoolScaling:
    scaled: PoolScaling = getattr(spec.autoscaling, pool)
    return scaled


def windows(spec: DvDDeploymentSpec) -> tuple[int, int]:
    """The scale-down stabilisation window and cool-down: the spec's, else the policy's defaults (the
    slo policy smooths its own inputs; HPA's rule on raw utilisation needs the longer ones)."""
    a, slo = spec.autoscaling, spec.autoscaling.policy == "slo"
    down, cooldown = a.scale_down_stabilization_seconds, a.cooldown_seconds
    down = (60 if slo else 120) if down is None else down
    return down, (15 if slo else 60) if cooldown is None else cooldown


def bounds(spec: DvDDeploymentSpec, pool: str) -> Bounds:
    a, p, s = spec.autoscaling, getattr(spec, pool), scaling(spec, pool)
    vllm = pool == "language" and spec.language.engine == "vllm"
    return Bounds(
        min_replicas=p.min_replicas,
        max_replicas=p.max_replicas,
        target=s.target_utilization,
        tolerance=a.tolerance,
        up_window=a.scale_up_stabilization_seconds,
        down_window=windows(spec)[0],
        max_step=a.max_step,
        cooldown=windows(spec)[1],
        stale_after=a.metric_stale_seconds,
        queue_target=s.queue_target,
        slo=a.slo.queue_seconds / 2 if a.policy == "slo" else None,  # each pool's share of the end-to-end
        ttft_slo=a.slo.time_to_first_token_seconds if pool == "language" else None,
        target_load=a.target_load,
        startup=a.startup_seconds,
        interval=a.interval_seconds,
        slots=spec.language.max_num_seqs if vllm else None,
    )


def in_flight_query(spec: DvDDeploymentSpec, pool: str) -> str | None:
    s = scaling(spec, pool)
    if s.queue_target is None:
        return None
    if s.queue_query:
        return s.queue_query
    return (
        prometheus.VLLM_IN_FLIGHT
        if pool == "language" and spec.language.engine == "vllm"
        else prometheus.IN_FLIGHT
    )


def behavior(spec: DvDDeploymentSpec) -> dict[str, Any]:
    a = spec.autoscaling
    step = [{"type": "Pods", "value": a.max_step, "periodSeconds": a.interval_seconds}]
    return {
        "scaleUp": {"stabilizationWindowSeconds": a.scale_up_stabilization_seconds, "policies": step},
        "scaleDown": {"stabilizationWindowSeconds": windows(spec)[0], "policies": step},
    }


def signals(spec: DvDDeploymentSpec, pool: str) -> list[tuple[str, str, float]]:
    """What KEDA and an HPA scale a pool on, as (PromQL summed over the pool, prometheus-adapter's Pods
    metric name, per-replica target): the signals the operator's policy reads. Under the slo policy, the
    vision server's busy seconds per second at the target load and the DCGM utilisation beside it; vLLM's
    requests in flight at its batch slots x the target load, without DCGM (a duty cycle: 100% busy
    whenever a request runs, so as a maximum it would always ask for more)."""
    a, s = spec.autoscaling, scaling(spec, pool)
    utilisation = (s.query or f"sum(DCGM_FI_DEV_GPU_UTIL{{{prometheus.POD}}}) / 100", "DCGM_FI_DEV_GPU_UTIL",
                   s.target_utilization)  # fmt: skip
    vllm = pool == "language" and spec.language.engine == "vllm"
    out = []
    if a.policy == "slo" and vllm:
        slots = spec.language.max_num_seqs * a.target_load
        out.append((prometheus.VLLM_IN_FLIGHT, "vllm_num_requests_running", slots))
    elif a.policy == "slo":
        busy = f"sum(rate(vlmop_serving_busy_seconds_total{{{prometheus.POD}}}[{a.rate_window_seconds}s]))"
        out += [(busy, "vlmop_serving_busy_seconds", a.target_load), utilisation]
    else:
        out.append(utilisation)
    query = in_flight_query(spec, pool)
    if query and s.queue_target:
        out.append((query, "vlmop_serving_in_flight", s.queue_target))
    return out


def quantity(value: float) -> str:
    """A Kubernetes quantity (milli-units: HPA targets below 1)."""
    return f"{round(value * 1000)}m"


def scaler(owner: Mapping[str, Any], spec: DvDDeploymentSpec, pool: str, deployment: str) -> Manifest | None:
    """The KEDA ScaledObject or HPA of a pool, in those modes (the same signals as the operator's
    policy, each against its per-replica target; both take the largest count any asks for); None
    otherwise."""
    mode, p = spec.autoscaling.mode, getattr(spec, pool)
    namespace = str(owner["metadata"]["namespace"])
    if mode == "keda":
        # KEDA divides each query's value (a sum over the pods) by its threshold.
        triggers = [{"type": "prometheus", "metadata": {
            "serverAddress": str(spec.autoscaling.prometheus_url),
            "query": prometheus.fill(query, namespace, deployment),
            "threshold": str(round(target, 3))}} for query, _, target in signals(spec, pool)]  # fmt: skip
        body: dict[str, Any] = {
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": deployment},
            "spec": {"scaleTargetRef": {"name": deployment}, "minReplicaCount": p.min_replicas,
                     "maxReplicaCount": p.max_replicas, "pollingInterval": spec.autoscaling.interval_seconds,
                     "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(spec)}},
                     "triggers": triggers},
        }  # fmt: skip
    elif mode == "hpa":
        # Pods metrics as prometheus-adapter serves them (DCGM's in percent; the counters as rates).
        metrics = [{"type": "Pods", "pods": {
            "metric": {"name": name},
            "target": {"type": "AverageValue",
                       "averageValue": str(round(100 * target)) if name == "DCGM_FI_DEV_GPU_UTIL"
                       else quantity(target)}}} for _, name, target in signals(spec, pool)]  # fmt: skip
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment}
        body = {
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": deployment},
            "spec": {"scaleTargetRef": target, "minReplicas": max(p.min_replicas, 1),
                     "maxReplicas": p.max_replicas, "metrics": metrics, "behavior": behavior(spec)},
        }  # fmt: skip
    else:
        return None
    return owned(owner, body, pool)
