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

    def two(big: int, big_unit: str, small: int, small_unit: str) -> str:
        return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"

    if m < 10:
        return two(m, "m", s % 60, "s")
    if h < 3:
        return f"{m}m"
    if h < 8:
        return two(h, "h", m % 60, "m")
    if h < 48:
        return f"{h}h"
    if d < 8:
        return two(d, "d", h % 24, "h")
    if d < 730:
        return f"{d}d"
    return two(d // 365, "y", d % 365, "d") if d < 2920 else f"{d // 365}y"


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


def _at(path: str) -> Cell:
    """A cell from a dotted path (None where the object has none)."""
    return lambda o: next(iter(jsonpath(o, "." + path)), None)


def _column(name: str, cell: Cell, description: str = "", priority: int = 0) -> Column:
    return _definition(name, "string", description, priority), cell


def service_ports(svc: Obj) -> str:
    ports = (svc.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def job_status(job: Obj) -> str:
    conditions = (job.get("status") or {}).get("conditions") or []
    done = [
        c["type"] for c in conditions if c.get("status") == "True" and c.get("type") in ("Complete", "Failed")
    ]
    return done[0] if done else "Running"


def event_object(event: Obj) -> str:
    involved = event.get("involvedObject") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


POD_COLUMNS: list[Column] = [
    NAME,
    _column("Ready", pod_ready, "Ready containers of all the pod's containers."),
    _column("Status", pod_status, "The aggregate status of the containers in this pod."),
    _column("Restarts", pod_restarts, "How often the pod's containers were restarted."),
    AGE,
    _column("IP", _at("status.podIP"), "The pod's IP address.", 1),
    _column("Node", _at("spec.nodeName"), "The node the pod runs on.", 1),
]
BUILTIN_COLUMNS = {
    ("", "pods"): POD_COLUMNS,
    ("", "services"): [
        NAME,
        _column("Type", lambda s: (s.get("spec") or {}).get("type") or "ClusterIP"),
        _column("Cluster-IP", lambda s: (s.get("spec") or {}).get("clusterIP") or "<none>"),
        _column("Port(s)", service_ports),
        AGE,
    ],
    ("apps", "deployments"): [
        NAME,
        _column("Ready", lambda d: f"{_at('status.readyReplicas')(d) or 0}/{_at('spec.replicas')(d) or 0}"),
        _column("Up-to-date", lambda d: _at("status.updatedReplicas")(d) or 0),
        _column("Available", lambda d: _at("status.availableReplicas")(d) or 0),
        AGE,
    ],
    ("batch", "jobs"): [
        NAME,
        _column("Status", job_status),
        _column(
            "Completions", lambda j: f"{_at('status.succeeded')(j) or 0}/{_at('spec.completions')(j) or 1}"
        ),
        AGE,
    ],
    ("", "events"): [
        _column(
            "Last Seen",
            lambda e: age(
                e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")
            ),
        ),
        _column("Type", _at("type")),
        _column("Reason", _at("reason")),
        _column("Object", event_object),
        _column("Message", _at("message")),
    ],
}


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
