"""The built-in kinds' schemas, from the kubernetes client's models of Kubernetes 1.37 (the same
API, field by field, with its descriptions): which fields a kind declares, and its OpenAPI schemas."""

from __future__ import annotations

import functools
import re
from typing import Any

import kubernetes.client

Doc = dict[str, Any]
_PRIMITIVES: dict[str, Doc] = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "double"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "bytes": {"type": "string", "format": "byte"},
    "object": {"x-kubernetes-preserve-unknown-fields": True},
}


def model(name: str) -> type[Any] | None:
    found = getattr(kubernetes.client, name, None)
    return found if isinstance(found, type) and hasattr(found, "openapi_types") else None


def builtin_model(group: str, version: str, kind: str) -> type[Any] | None:
    """The client model of a built-in kind: CoreV1Event, EventsV1Event, V1Pod, V2HorizontalPodAutoscaler."""
    prefix = (group.split(".")[0] or "core").capitalize()
    return model(f"{prefix}{version.capitalize()}{kind}") or model(f"{version.capitalize()}{kind}")


@functools.cache
def fields(name: str) -> dict[str, str]:
    """A model's fields: JSON name -> the client's type (a model name, List[..], Dict[str, ..], str, ...)."""
    found = model(name)
    if found is None:
        return {}
    return {json: found.openapi_types[attr] for attr, json in found.attribute_map.items()}


def _schema(kind: str, schemas: dict[str, Doc]) -> Doc:
    if kind.startswith("List["):
        return {"type": "array", "items": _schema(kind[5:-1], schemas)}
    if kind.startswith("Dict[str, "):
        return {"type": "object", "additionalProperties": _schema(kind[10:-1], schemas)}
    if kind in _PRIMITIVES:
        return dict(_PRIMITIVES[kind])
    return {"allOf": [{"$ref": f"#/components/schemas/{add_schemas(kind, schemas)}"}]}


def component(name: str) -> str:
    """A model's schema name, kube-apiserver-like: V1ContainerPort -> io.k8s.v1.ContainerPort."""
    match = re.match(r"([A-Za-z]*?V\d+(?:alpha\d+|beta\d+)?)(?=[A-Z])", name)
    return f"io.k8s.{match[1].lower()}.{name[match.end() :]}" if match else f"io.k8s.{name}"


def add_schemas(name: str, schemas: dict[str, Doc]) -> str:
    """Add the component schema of a model and of every model it refers to; its schema name."""
    found, key = model(name), component(name)
    if key in schemas or found is None:
        return key
    schemas[key] = {}  # placeholder: models refer to themselves (JSONSchemaProps)
    properties, required = {}, []
    for attr, json in found.attribute_map.items():
        info = found.model_fields.get(attr)
        properties[json] = _schema(found.openapi_types[attr], schemas)
        if info is not None and info.description:
            properties[json]["description"] = info.description
        if info is not None and info.is_required():
            required.append(json)
    description = " ".join((found.__doc__ or "").strip().split("\n\n")[0].split())
    schemas[key] = {"type": "object", "description": description, "properties": properties}
    if required:
        schemas[key]["required"] = required
    return key
