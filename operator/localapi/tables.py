"""meta.k8s.io/v1 Table responses, what `kubectl get` prints: Name, then a custom resource's
additionalPrinterColumns (JSONPath cells typed as kube-apiserver types them), or for built-in kinds
the columns of kube-apiserver's printers that matter here (pods: Ready, Status, Restarts), then Age."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

Obj = dict[str, Any]
Cell = Callable[[Obj], Any]
Column = tuple[Obj, Cell]

_STEP = re.compile(r"\.([\w-]+)|\['([^']+)'\]|\[(\d+|\*)\]|\[\?\(@\.([\w-]+)\s*==\s*['\"]([^'\"]*)['\"]\)\]")


def jsonpath(obj: Any, path: str) -> list[Any]:
    """The values at a printer column's JSONPath: fields, ['quoted'] fields, [n], [*] and
    [?(@.key=="value")] filters, the subset additionalPrinterColumns use."""
    path = path.strip().removeprefix("{").removesuffix("}")
    values, pos = [obj], 0
    while pos < len(path):
        step = _STEP.match(path, pos)
        if step is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {path[pos:]!r}")
        pos = step.end()
        field, quoted, index, key, value = step.groups()
        found: list[Any] = []
        for v in values:
            if (field or quoted) and isinstance(v, dict) and (field or quoted) in v:
                found.append(v[field or quoted])
            elif index == "*" and isinstance(v, list):
                found += v
            elif index and index != "*" and isinstance(v, list) and int(index) < len(v):
                found.append(v[int(index)])
            elif key and isinstance(v, list):
                found += [i for i in v if isinstance(i, dict) and str(i.get(key)) == value]
        values = found
    return values


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: 45s, 5m3s, 3h20m, 2d4h, 400d, 3y10d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 120:
        return f"{max(s, 0)}s"
    m, h, d = s // 60, s // 3600, s // 86400
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 192:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 730:
        return f"{d}d"
    if d < 2920:
        return f"{d // 365}y{d % 365}d" if d % 365 else f"{d // 365}y"
    return f"{d // 365}y"


def age(timestamp: str | None, now: datetime.datetime | None = None) -> str | None:
    if not isinstance(timestamp, str):
        return None
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    return human_duration(((now or datetime.datetime.now(tz=datetime.UTC)) - then).total_seconds())


def _typed(kind: str, value: Any) -> Any:
    """A cell as kube-apiserver's CRD table convertor types it (None when it does not fit)."""
    if kind == "string":
        return value if isinstance(value, str) else json.dumps(value) if value is not None else None
    if kind == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "date":
        return age(value)
    return None


def _definition(name: str, kind: str, description: str, priority: int = 0) -> Obj:
    return {"name": name, "type": kind, "format": "", "description": description, "priority": priority}


NAME: Column = (
    {**_definition("Name", "string", "Name must be unique within a namespace."), "format": "name"},
    lambda o: o["metadata"].get("name"),
)
AGE: Column = (
    _definition("Age", "date", "CreationTimestamp is the time the object was created."),
    lambda o: age(o["metadata"].get("creationTimestamp")),
)


def crd_columns(version: Obj) -> list[Column]:
    """Name plus one CRD version's additionalPrinterColumns (Age alone when it declares none)."""
    declared = version.get("additionalPrinterColumns")
    if not declared:
        return [NAME, AGE]

    def column(c: Obj) -> Column:
        definition = _definition(c["name"], c["type"], c.get("description", ""), c.get("priority", 0))
        definition["format"] = c.get("format", "")
        return definition, lambda o: next((_typed(c["type"], v) for v in jsonpath(o, c["jsonPath"])), None)

    return [NAME] + [column(c) for c in declared]


def _containers(pod: Obj) -> list[Obj]:
    return list((pod.get("status") or {}).get("containerStatuses") or [])


def pod_ready(pod: Obj) -> str:
    ready = sum(bool(c.get("ready")) for c in _containers(pod))
    return f"{ready}/{len((pod.get('spec') or {}).get('containers') or [])}"


def pod_status(pod: Obj) -> str:
    """kubectl's STATUS of a pod: Terminating, a waiting/terminated container's reason, or the phase."""
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    reason = str(status.get("reason") or status.get("phase") or "Pending")
    for container in _containers(pod):
        state = container.get("state") or {}
        for key in ("waiting", "terminated"):
            if (state.get(key) or {}).get("reason"):
                reason = state[key]["reason"]
    return reason


def pod_restarts(pod: Obj) -> str:
    return str(sum(int(c.get("restartCount") or 0) for c in _containers(pod)))


POD_COLUMNS: list[Column] = [
    NAME,
    (_definition("Ready", "string", "Ready containers of all the pod's containers."), pod_ready),
    (_definition("Status", "string", "The aggregate status of the containers in this pod."), pod_status),
    (_definition("Restarts", "string", "How often the pod's containers were restarted."), pod_restarts),
    AGE,
    (_definition("IP", "string", "The pod's IP address.", 1), lambda p: (p.get("status") or {}).get("podIP")),
    (
        _definition("Node", "string", "The node the pod runs on.", 1),
        lambda p: (p.get("spec") or {}).get("nodeName"),
    ),
]
BUILTIN_COLUMNS = {("", "pods"): POD_COLUMNS}


def _row_object(obj: Obj, include: str, version: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": obj["metadata"],
    }


def table(
    objects: Iterable[Obj],
    columns: list[Column],
    resource_version: str | None = None,
    include: str = "Metadata",
    headers: bool = True,
    version: str = "v1",
) -> Obj:
    """A Table of the objects; `include` is ?includeObject= (None, Metadata (default) or Object)."""
    rows = []
    for obj in objects:
        row: Obj = {"cells": [cell(obj) for _, cell in columns]}
        embedded = _row_object(obj, include, version)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    doc: Obj = {"kind": "Table", "apiVersion": f"meta.k8s.io/{version}", "metadata": {}}
    if resource_version is not None:
        doc["metadata"]["resourceVersion"] = resource_version
    if headers:
        doc["columnDefinitions"] = [definition for definition, _ in columns]
    doc["rows"] = rows
    return doc
