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
