"""One autoscaling round for a DvDDeployment (mode operator): read each scaled pool's signals from
Prometheus, run the policy, and record the decisions in the status rows the builders read the
replica counts from. Only the Deployments' replicas ever change, never the spec.

The queries never run on the work queue: a due round starts them on the sampler's threads and returns;
the reconcile that finds them answered (woken by their completion) runs the policy. A Prometheus that
does not answer holds every pool and says so in the MetricsAvailable condition."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vlmop.operator import metrics
from vlmop.operator import status as st
from vlmop.operator.api.dvddeployment import DvDDeploymentSpec
from vlmop.operator.autoscaler import policy, prometheus
from vlmop.operator.builders import autoscaling
from vlmop.operator.lifecycle import stamp

SAMPLER = ThreadPoolExecutor(4, thread_name_prefix="prometheus")
CONDITION = "MetricsAvailable"


@dataclass(frozen=True)
class Sample:
    signals: dict[str, policy.Signal]
    failed: str | None = None  # why there are no signals
    reason: str = "PrometheusUnreachable"


@dataclass
class State:
    """What the policy remembers between rounds (in the operator's memory, per object)."""

    memory: dict[str, policy.Memory] = field(default_factory=dict)
    last_round: float | None = None
    pending: Future[Sample] | None = None


def desired(spec: DvDDeploymentSpec, status: Mapping[str, Any]) -> dict[str, int]:
    """The replica counts the autoscaler chose last, from status."""
    out = {}
    for pool in autoscaling.SCALED:
        value = (status.get(pool) or {}).get("desiredReplicas")
        if spec.autoscaling.mode == "operator" and isinstance(value, int):
            out[pool] = value
    return out


def sample(
    spec: DvDDeploymentSpec, namespace: str, deployments: Mapping[str, str], ready: Mapping[str, int]
) -> Sample:
    """Every pool's signals (on a sampler thread)."""
    url, signals = str(spec.autoscaling.prometheus_url), {}
    try:
        for pool, deployment in deployments.items():
            signals[pool] = prometheus.signal(
                url, namespace, deployment, autoscaling.scaling(spec, pool).query,
                autoscaling.in_flight_query(spec, pool), ready.get(pool),
                vllm=pool == "language" and spec.language.engine == "vllm",
                percentile=spec.autoscaling.slo.percentile, window=spec.autoscaling.rate_window_seconds,
            )  # fmt: skip
    except prometheus.Unreachable as error:
        return Sample({}, str(error))
    except Exception as error:  # a bug here must not leave the round pending forever: said, and held
        return Sample({}, f"{type(error).__name__}: {error}", "QueryFailed")
    return Sample(signals)


def run(
    spec: DvDDeploymentSpec,
    namespace: str,
    name: str,
    deployments: Mapping[str, str],  # pool -> Deployment name
    current: Mapping[str, int],  # pool -> the Deployment's replicas now
    ready: Mapping[str, int],  # pool -> its ready replicas (whose utilisation Prometheus has)
    status: dict[str, Any],
    state: State,
    clock: float,  # monotonic seconds
    now: datetime.datetime,
    wake: Callable[[], None],  # runs the owner's reconcile again (the queries answered)
    sooner: Callable[[float], None],  # asks for the owner's next reconcile within this many seconds
) -> list[tuple[str, str, str]]:
    """Starts a due round's queries, or applies the answered ones: updates the `status` rows
    (desiredReplicas, metricValue, capacity, forecast, reason, message, lastScaleTime) and the
    MetricsAvailable condition; returns the Events to post."""
    interval = spec.autoscaling.interval_seconds
    if state.pending is None:
        if state.last_round is None or clock - state.last_round >= interval:
            state.last_round = clock
            state.pending = SAMPLER.submit(sample, spec, namespace, dict(deployments), dict(ready))
            state.pending.add_done_callback(lambda _: wake())
        else:
            sooner(state.last_round + interval - clock)
        return []
    if not state.pending.done():
        return []
    answered, state.pending = state.pending.result(), None
    sooner(max(state.last_round + interval - clock, 0.0) if state.last_round is not None else interval)
    if answered.failed is not None:
        metrics.AUTOSCALER_PROMETHEUS_UP.labels(namespace, name).set(0)
        update = st.condition(CONDITION, False, answered.reason,
                              f"holding every pool's replicas: {answered.failed}")  # fmt: skip
        for pool in current:
            status[pool] = {**(status.get(pool) or {}), "reason": answered.reason}
        set_condition(status, update, now)
        return []
    metrics.AUTOSCALER_PROMETHEUS_UP.labels(namespace, name).set(1)
    set_condition(status, st.condition(CONDITION, True, "PrometheusAnswered"), now)
    bounds = {pool: autoscaling.bounds(spec, pool) for pool in current}
    signals = {pool: answered.signals.get(pool, policy.Signal(None)) for pool in current}
    for pool in current:
        state.memory.setdefault(pool, policy.Memory())
    events = []
    for pool, decision in policy.plan(clock, current, signals, bounds, state.memory).items():
        row = record(status.get(pool) or {}, decision, signals[pool], now)
        status[pool] = row
        export(namespace, name, pool, decision, ready.get(pool, 0))
        if decision.changed:
            message = f"{pool} pool {decision.current} -> {decision.desired} replicas: {row['message']}"
            events.append(("Normal", "Scaled", message))
    return events


def record(
    previous: Mapping[str, Any], decision: policy.Decision, signal: policy.Signal, now: datetime.datetime
) -> dict[str, Any]:
    """The pool's status row after a decision; fields without a value are absent rather than null (status
    holds no nulls, so no rewrite each round)."""
    row = dict(previous)
    row.update(desiredReplicas=decision.desired, reason=decision.reason, message=explain(decision, signal))
    values = {"metricValue": decision.metric, "capacityPerReplica": decision.capacity,
              "forecastRequestsPerSecond": decision.forecast}  # fmt: skip
    for key, value in values.items():
        if value is None:
            row.pop(key, None)
        else:
            row[key] = round(value, 3)
    if decision.changed:
        row["lastScaleTime"] = stamp(now)
    return row


def explain(decision: policy.Decision, signal: policy.Signal) -> str:
    """What the decision read and estimated, in one line."""
    parts = [decision.reason]
    if decision.forecast is not None and decision.capacity is not None:
        parts.append(f"forecast {decision.forecast:.2f} req/s at {decision.capacity:.2f} req/s per replica")
    seen = {"completed": signal.completions, "in flight": signal.in_flight, "queued": signal.waiting,
            "queue s": signal.latency, "TTFT s": signal.ttft, "utilisation": signal.utilisation}  # fmt: skip
    parts += [f"{key} {value:.2f}" for key, value in seen.items() if value is not None]
    return "; ".join(parts)


def export(namespace: str, name: str, pool: str, decision: policy.Decision, ready: int) -> None:
    labels = (namespace, name, pool)
    for state, value in (("current", decision.current), ("ready", ready), ("desired", decision.desired)):
        metrics.AUTOSCALER_REPLICAS.labels(*labels, state).set(value)
    if decision.capacity is not None:
        metrics.AUTOSCALER_CAPACITY.labels(*labels).set(decision.capacity)
    if decision.forecast is not None:
        metrics.AUTOSCALER_FORECAST.labels(*labels).set(decision.forecast)
    if decision.changed:
        metrics.AUTOSCALER_DECISIONS.labels(*labels, decision.reason).inc()


def set_condition(status: dict[str, Any], update: dict[str, Any], now: datetime.datetime) -> None:
    previous = status.get("conditions", [])
    status["conditions"] = st.merge_conditions(
        previous, [update], status.get("observedGeneration"), stamp(now)
    )
