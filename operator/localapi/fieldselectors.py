"""Field selectors on the fields kube-apiserver allows per kind beyond metadata.name/namespace (those
are selectors.py's): events by their involved object (`kubectl describe` lists an object's events
so), pods by node, phase and IP."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vlmop.operator.localapi.selectors import Predicate, field_selector

FIELDS = {
    ("", "events"): {
        "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
        "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
        "reason", "reportingComponent", "source", "type",
    },
    ("", "pods"): {
        "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
        "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName",
    },
}  # fmt: skip
_PATHS = {"source": "source.component"}


def _value(obj: Mapping[str, Any], field: str) -> str:
    value: Any = obj
    for key in _PATHS.get(field, field).split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return str(value).lower() if isinstance(value, bool) else "" if value is None else str(value)


def kind_field_selector(text: str | None, group: str, plural: str) -> Predicate:
    """selectors.field_selector plus the fields this kind allows; raises SelectorError likewise."""
    allowed = FIELDS.get((group, plural), set())
    common, own = [], []
    for term in filter(None, (t.strip() for t in (text or "").split(","))):
        field, *rest = re.split(r"!=|==|=", term, maxsplit=1)
        if field.strip() in allowed:
            own.append((field.strip(), rest[0].strip() if rest else "", "!=" in term))
        else:
            common.append(term)
    check = field_selector(",".join(common))
    return lambda obj: check(obj) and all((_value(obj, f) == v) != negate for f, v, negate in own)
