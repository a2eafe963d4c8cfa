"""One autoscaling round for a DvDDeployment (mode operator): read each scaled pool's signals from
Prometheus, run the policy, and record the decisions in the status rows the builders read the
replica counts from. Only the Deployments' replicas ever change, never the spec."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vlmop.operator.api.dvddeployment import DvDDeploymentSpec
from vlmop.operator.autoscaler import policy, prometheus
from vlmop.operator.builders import autoscaling
from vlmop.operator.lifecycle import stamp


@dataclass
class State:
    """What the policy remembers between rounds (in the operator's memory, per object)."""

    memory: dict[str, policy.Memory] = field(default_factory=dict)
    last_round: float | None = None


def desired(spec: DvDDeploymentSpec, status: Mapping[str, Any]) -> dict[str, int]:
    """The replica counts the autoscaler chose last, from status."""
    out = {}
    for pool in autoscaling.SCALED:
        value = (status.get(pool) or {}).get("desiredReplicas")
        if spec.autoscaling.mode == "operator" and isinstance(value, int):
            out[pool] = value
    return out


def run(
    spec: DvDDeploymentSpec,
    namespace: str,
    deployments: Mapping[str, str],  # pool -> Deployment name
    current: Mapping[str, int],  # pool -> the Deployment's replicas now
    ready: Mapping[str, int],  # pool -> its ready replicas (whose utilisation Prometheus has)
    status: dict[str, Any],
    state: State,
    clock: float,  # monotonic seconds
    now: datetime.datetime,
) -> list[tuple[str, str, str]]:
    """Updates `status` rows (desiredReplicas, metricValue, reason, lastScaleTime) when a round is due;
    returns the Events to post."""
    auto = spec.autoscaling
    if state.last_round is not None and clock - state.last_round < auto.interval_seconds:
        return []
    state.last_round = clock
    url = str(auto.prometheus_url)
    signals, bounds = {}, {}
    for pool in current:
        scaled = autoscaling.scaling(spec, pool)
        in_flight = autoscaling.in_flight_query(spec, pool)
        signals[pool] = prometheus.signal(
            url, namespace, deployments[pool], scaled.query, in_flight, ready.get(pool)
        )
        bounds[pool] = autoscaling.bounds(spec, pool)
        state.memory.setdefault(pool, policy.Memory())
    events = []
    for pool, decision in policy.plan(clock, current, signals, bounds, state.memory).items():
        row = dict(status.get(pool) or {})
        metric = None if decision.metric is None else round(decision.metric, 4)
        row.update(desiredReplicas=decision.desired, reason=decision.reason)
        if metric is None:  # absent rather than null: status holds no nulls, so no rewrite each round
            row.pop("metricValue", None)
        else:
            row["metricValue"] = metric
        if decision.changed:
            row["lastScaleTime"] = stamp(now)
            shown = "no metric" if metric is None else f"utilisation {metric:.2f}"
            message = (
                f"{pool} pool {decision.current} -> {decision.desired} replicas ({decision.reason}, {shown})"
            )
            events.append(("Normal", "Scaled", message))
        status[pool] = row
    return events
