"""A DvDDeployment's status from its three Deployments, as a pure function: each pool's replicas and
ready replicas, and the conditions GitOps tools read (kstatus: Ready; Argo CD: Progressing/Degraded).
Ready when every pool has all its replicas ready; Degraded when a pool that served has no ready
replica left; Progressing while the pools come up or roll."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vlmop.operator import status as st
from vlmop.operator.builders.common import COMPONENT
from vlmop.operator.lifecycle import stamp

OWNED_CONDITIONS = (
    "Ready",
    "Progressing",
    "Degraded",
    "Failed",
    "MetricsAvailable",
)  # the last: the autoscaler's


@dataclass(frozen=True)
class DeploymentView:
    """What the operator indexes about one pool's Deployment."""

    name: str
    component: str
    replicas: int  # desired, as the Deployment's spec says (the autoscaler may have changed it)
    ready: int
    updated: int  # replicas on the current template


def with_created(
    seen: Mapping[str, DeploymentView], desired: list[dict[str, Any]], present: Callable[[str, str], bool]
) -> dict[str, DeploymentView]:
    """`seen` (the deployments index) plus the Deployments that exist (`present`: written, or in
    another index) but are not in it yet, as created: none of their replicas ready. The first status
    then says what the next round will."""
    out = dict(seen)
    for m in desired:
        meta = m["metadata"]
        if m["kind"] == "Deployment" and present("Deployment", meta["name"]):
            component = meta["labels"][COMPONENT]
            replicas = m["spec"].get("replicas", 1)  # none given (an HPA or KEDA owns it): the API's 1
            out.setdefault(component, DeploymentView(meta["name"], component, replicas, 0, 0))
    return out


def decide(
    pools: tuple[str, ...],
    seen: Mapping[str, DeploymentView],
    status: Mapping[str, Any],
    generation: int | None,
    endpoint: str,
    now: datetime.datetime,
) -> dict[str, Any]:
    current = dict(status)
    for pool in pools:
        view = seen.get(pool)
        row = dict(current.get(pool) or {})
        row.update(replicas=view.replicas if view else 0, readyReplicas=view.ready if view else 0)
        current[pool] = row
    missing = [p for p in pools if p not in seen]
    short = [
        p
        for p in pools
        if p in seen and (seen[p].ready < seen[p].replicas or seen[p].updated < seen[p].replicas)
    ]
    down = [p for p in pools if p in seen and seen[p].ready == 0 and seen[p].replicas > 0]
    served = current.get("phase") in ("Ready", "Degraded")
    if not missing and not short:
        phase, updates = (
            "Ready",
            [
                st.condition("Ready", True, "PoolsReady", "every pool has all its replicas ready"),
                st.condition("Progressing", False, "Available", ""),
                st.condition("Degraded", False, "Available", ""),
            ],
        )
    elif served and down:
        message = f"no ready replica in pool(s) {', '.join(down)}"
        phase, updates = (
            "Degraded",
            [
                st.condition("Ready", False, "PoolUnavailable", message),
                st.condition("Progressing", True, "PoolUnavailable", message),
                st.condition("Degraded", True, "PoolUnavailable", message),
            ],
        )
    else:
        waiting = ", ".join(f"{p} {seen[p].ready}/{seen[p].replicas}" if p in seen else f"{p} not created"
                            for p in [*missing, *short])  # fmt: skip
        phase = "Progressing" if served or not missing else "Pending"
        updates = [
            st.condition("Ready", False, "RollingOut", f"waiting for {waiting}"),
            st.condition("Progressing", True, "RollingOut", f"waiting for {waiting}"),
            st.condition("Degraded", False, "RollingOut", ""),
        ]
    updates.append(st.condition("Failed", False, phase))
    previous = [c for c in current.get("conditions", []) if c["type"] in OWNED_CONDITIONS]
    current["conditions"] = st.merge_conditions(previous, updates, generation, stamp(now))
    ready = sum(1 for p in pools if p in seen and seen[p].ready >= max(seen[p].replicas, 1))
    current.update(observedGeneration=generation, phase=phase, endpoint=endpoint,
                   progress=f"{ready}/{len(pools)} pools ready")  # fmt: skip
    return current
