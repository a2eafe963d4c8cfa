"""What every kind's reconcile shares: validate the spec with the typed model, and write one status
(only the fields that changed; nothing when nothing did) with one PATCH of the status subresource.

What the CRD schema rejects never reaches here; what only the operator can detect becomes
Failed/InvalidSpec plus a Warning Event, never an exception loop."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import kopf
import pydantic

from vlmop.operator import kube, metrics, status
from vlmop.operator.api import KindInfo
from vlmop.operator.api.common import ApiModel

SpecT = TypeVar("SpecT", bound=ApiModel)
Written = dict[str, Any] | None  # the object as a status write left it; None when nothing was written


def spec_errors(info: KindInfo, spec: Mapping[str, Any]) -> str | None:
    """None when the spec parses; otherwise one line naming each bad field (spec.a.b: why)."""
    return _parse(info.spec, spec)[1]


def _parse(model: type[SpecT], spec: Mapping[str, Any]) -> tuple[SpecT | None, str | None]:
    try:
        return model.model_validate(dict(spec)), None
    except pydantic.ValidationError as error:
        return None, "; ".join(
            "spec." + ".".join(str(part) for part in e["loc"]) + f": {e['msg']}" for e in error.errors()
        )


def typed(info: KindInfo, fn: Callable[..., Written]) -> Callable[..., Written]:
    """`fn` called with the spec parsed once (`spec=`), counted and timed per kind; an invalid spec
    marks the object Failed/InvalidSpec instead of calling it."""

    def reconcile(body: kopf.Body, logger: Any, **kwargs: Any) -> Written:
        with metrics.reconciling(info.kind) as outcome:
            spec, errors = _parse(info.spec, body.get("spec") or {})
            if errors:
                outcome.result = "invalid"
                return reject(info, body, errors, logger)
            return fn(body=body, spec=spec, logger=logger, **kwargs)

    return reconcile


def invalid_status(body: Mapping[str, Any], errors: str, at: str) -> status.Status:
    """Failed/InvalidSpec, naming each bad field; the rest of the status is kept."""
    current = dict(body.get("status") or {})
    generation = body.get("metadata", {}).get("generation")
    updates = [
        status.condition("Failed", True, status.INVALID_SPEC, errors),
        status.condition("Ready", False, status.INVALID_SPEC, errors),
    ]
    conditions = status.merge_conditions(current.get("conditions", []), updates, generation, at)
    return {**current, "observedGeneration": generation, "phase": "Failed", "conditions": conditions}


def write_status(info: KindInfo, body: kopf.Body, desired: Mapping[str, Any]) -> Written:
    """Patch the changed top-level status fields (with kstatus' conditions) in one request; nothing
    when nothing changed."""
    stored = dict(body.get("status") or {})
    desired = status.with_kstatus(desired, stored, body.get("metadata", {}).get("generation"), status.now())
    changes = status.diff(stored, desired)
    if not changes:
        return None
    metrics.STATUS_WRITES.labels(info.kind).inc()
    return kube.patch_status(body, info.plural, changes)


def reject(info: KindInfo, body: kopf.Body, errors: str, logger: Any) -> Written:
    """Failed/InvalidSpec with a Warning Event (once), never an exception loop."""
    logger.warning("invalid spec: %s", errors)
    was_failed = (body.get("status") or {}).get("phase") == "Failed"
    written = write_status(info, body, invalid_status(body, errors, status.now()))
    if written and not was_failed:
        kube.event(body, "Warning", status.INVALID_SPEC, errors)
    return written
