"""Pure status helpers: conditions per the Kubernetes API conventions, and the one status patch a
reconcile writes (only the fields that changed; nothing when nothing did)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

Status = dict[str, Any]

# Reasons are CamelCase constants, as in metav1.Condition.
INVALID_SPEC = "InvalidSpec"


def now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(type_: str, status: bool | None, reason: str, message: str = "") -> dict[str, Any]:
    """A condition without timestamps; `merge_conditions` stamps it."""
    value = "Unknown" if status is None else ("True" if status else "False")
    return {"type": type_, "status": value, "reason": reason, "message": message}


def merge_conditions(
    previous: list[Mapping[str, Any]], updates: list[dict[str, Any]], generation: int | None, at: str
) -> list[dict[str, Any]]:
    """Apply `updates` over `previous`: lastTransitionTime moves only when status flips; conditions
    not mentioned are kept, so each controller can own its own condition types."""
    merged = {c["type"]: dict(c) for c in previous}
    for update in updates:
        old = merged.get(update["type"])
        stamp = old["lastTransitionTime"] if old and old["status"] == update["status"] else at
        merged[update["type"]] = {**update, "lastTransitionTime": stamp, "observedGeneration": generation}
    return list(merged.values())


def diff(current: Mapping[str, Any], desired: Mapping[str, Any]) -> Status:
    """A merge patch turning `current` into `desired` at the top level ({} when they agree)."""
    patch: Status = {key: value for key, value in desired.items() if current.get(key) != value}
    patch.update({key: None for key in current if key not in desired})
    return patch


# kstatus (Flux, kubectl wait --for, cli-utils) reads these two "abnormal-true" conditions.
RECONCILING_PHASES = frozenset({"Pending", "Running", "Restarting", "Progressing"})
STALLED_PHASES = frozenset({"Failed", "Degraded"})


def with_kstatus(
    desired: Mapping[str, Any], stored: Mapping[str, Any], generation: int | None, at: str
) -> Status:
    """`desired` plus Reconciling (work still under way) and Stalled (failed or degraded, needing a
    person), derived from its phase and merged with the `stored` ones (so their times move only when
    they flip), so kstatus reads InProgress, Failed or Current."""
    phase = desired.get("phase")
    why = next((c.get("message", "") for c in desired.get("conditions", [])
                if c["type"] in ("Failed", "Degraded") and c["status"] == "True"), "")  # fmt: skip
    updates = [
        condition("Reconciling", phase in RECONCILING_PHASES, str(phase or "Unknown")),
        condition(
            "Stalled",
            phase in STALLED_PHASES,
            str(phase or "Unknown"),
            why if phase in STALLED_PHASES else "",
        ),
    ]
    kinds = {u["type"] for u in updates}
    before = [c for c in stored.get("conditions", []) if c["type"] in kinds]
    own = [c for c in desired.get("conditions", []) if c["type"] not in kinds]
    return {**desired, "conditions": own + merge_conditions(before, updates, generation, at)}
