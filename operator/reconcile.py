"""The reconcile every kind shares until its own controller lands: validate the spec with the typed
model, then write one status (observedGeneration, phase, conditions) only when it changed.

What the CRD schema rejects never reaches here; what only the operator can detect becomes
Failed/InvalidSpec plus a Warning Event, never an exception loop."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
import pydantic

from vlmop.operator import metrics, status
from vlmop.operator.api import KindInfo


def spec_errors(info: KindInfo, spec: Mapping[str, Any]) -> str | None:
    """None when the spec parses; otherwise one line naming each bad field (spec.a.b: why)."""
    try:
        info.spec.model_validate(dict(spec))
    except pydantic.ValidationError as error:
        return "; ".join(
            "spec." + ".".join(str(part) for part in e["loc"]) + f": {e['msg']}" for e in error.errors()
        )
    return None


def desired_status(info: KindInfo, body: Mapping[str, Any], errors: str | None, at: str) -> status.Status:
    current = dict(body.get("status") or {})
    generation = body.get("metadata", {}).get("generation")
    if errors:
        phase, updates = (
            "Failed",
            [
                status.condition("Failed", True, status.INVALID_SPEC, errors),
                status.condition("Ready", False, status.INVALID_SPEC, errors),
            ],
        )
    else:
        message = f"spec is valid; no children are built until the {info.kind} controller lands"
        phase, updates = (
            "Pending",
            [
                status.condition("Failed", False, status.AWAITING_CONTROLLER, ""),
                status.condition("Ready", False, status.AWAITING_CONTROLLER, message),
            ],
        )
    conditions = status.merge_conditions(current.get("conditions", []), updates, generation, at)
    return {**current, "observedGeneration": generation, "phase": phase, "conditions": conditions}


def write_status(info: KindInfo, body: kopf.Body, patch: kopf.Patch, desired: Mapping[str, Any]) -> bool:
    """Put the changed top-level status fields into kopf's one patch; False when nothing changed."""
    changes = status.diff(dict(body.get("status") or {}), desired)
    if changes:
        patch.status.update(changes)
        metrics.STATUS_WRITES.labels(info.kind).inc()
    return bool(changes)


def reject(info: KindInfo, body: kopf.Body, patch: kopf.Patch, errors: str, logger: Any) -> None:
    """Failed/InvalidSpec with a Warning Event (once), never an exception loop."""
    logger.warning("invalid spec: %s", errors)
    was_failed = (body.get("status") or {}).get("phase") == "Failed"
    if write_status(info, body, patch, desired_status(info, body, errors, status.now())) and not was_failed:
        kopf.warn(body, reason=status.INVALID_SPEC, message=errors)


def accept(info: KindInfo, body: kopf.Body, patch: kopf.Patch, logger: logging.Logger | Any) -> None:
    with metrics.reconciling(info.kind) as outcome:
        errors = spec_errors(info, body.get("spec") or {})
        if errors:
            outcome.result = "invalid"
            reject(info, body, patch, errors, logger)
        else:
            write_status(info, body, patch, desired_status(info, body, None, status.now()))
