"""The ReplicaSet controller's arithmetic for the local kubelet, pure: which template a pod belongs to,
how many pods a rollout may add and which it retires, by the Deployment's strategy."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

TEMPLATE_HASH = "pod-template-hash"


@dataclass(frozen=True)
class Replica:
    name: str
    current: bool  # of the Deployment's current template
    ready: bool


def template_hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def strategy(spec: dict[str, Any], want: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pod counts: numbers or percentages of `replicas` (surge rounds
    up, unavailable down), 25% each by default; Recreate retires every old pod first."""
    rolling = spec.get("strategy") or {}
    if rolling.get("type") == "Recreate":
        return 0, want
    values = rolling.get("rollingUpdate") or {}

    def count(key: str, up: bool) -> int:
        value = str(values.get(key, "25%"))
        if not value.endswith("%"):
            return int(value)
        share = want * int(value[:-1]) / 100
        return math.ceil(share) if up else math.floor(share)

    surge, unavailable = count("maxSurge", True), count("maxUnavailable", False)
    return (surge, unavailable) if surge or unavailable else (1, 0)


def rollout(want: int, surge: int, unavailable: int, pods: list[Replica]) -> tuple[int, list[str]]:
    """How many pods of the current template to create and which pods to remove: surplus current pods
    (not ready first), then old pods while the ready count stays at or above want - maxUnavailable (an
    old pod that is not ready costs nothing to remove); new pods never take the total over want + maxSurge."""
    new = sorted((p for p in pods if p.current), key=lambda p: p.ready)
    old = sorted((p for p in pods if not p.current), key=lambda p: p.ready)
    surplus = new[: max(0, len(new) - want)]
    new = new[len(surplus) :]
    ready = sum(p.ready for p in new + old)
    retired = []
    for pod in old:
        if not pod.ready or ready - 1 >= want - unavailable:
            retired.append(pod)
            ready -= pod.ready
    kept_old = len(old) - len(retired)
    create = max(0, min(want - len(new), want + surge - len(new) - kept_old))
    return create, [p.name for p in surplus + retired]
