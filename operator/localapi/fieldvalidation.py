"""Server-side field validation (?fieldValidation=Ignore|Warn|Strict), as kube-apiserver does it:
the fields of a written object that its kind does not declare. Custom resources are checked against
their CRD's structural schema (what pruning would drop) and metadata against ObjectMeta; built-in
kinds against the kubernetes client's models of them (models.py)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from vlmop.operator.localapi import models
from vlmop.operator.localapi.admission import prune

Obj = dict[str, Any]
DIRECTIVES = ("Ignore", "Warn", "Strict")
DEFAULT = "Warn"  # kube-apiserver's default when the request names none


def _walk(value: Any, kind: str, path: str) -> Iterator[str]:
    """The unknown fields in `value` of the client's type `kind` (a model name, List[..], Dict[str, ..])."""
    if kind.startswith("List[") and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, kind[5:-1], f"{path}[{index}]")
    elif kind.startswith("Dict[str, ") and isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, kind[10:-1], f"{path}.{key}")
    elif isinstance(value, dict) and (fields := models.fields(kind)):
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if key not in fields:
                yield child
            else:
                yield from _walk(item, fields[key], child)


def unknown_builtin(obj: Obj, model: str) -> list[str]:
    return list(_walk(obj, model, ""))


def _dropped(before: Any, after: Any, path: str) -> Iterator[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        for key, value in before.items():
            child = f"{path}.{key}" if path else key
            yield from _dropped(value, after[key], child) if key in after else [child]
    elif isinstance(before, list) and isinstance(after, list):
        for index, (a, b) in enumerate(zip(before, after, strict=False)):
            yield from _dropped(a, b, f"{path}[{index}]")


def unknown_custom(obj: Obj, schema: Obj) -> list[str]:
    """The fields of a custom object that its CRD's schema would prune, plus unknown metadata
    (metadata is ObjectMeta whatever the schema says of it, as in kube-apiserver)."""
    body = {key: value for key, value in obj.items() if key != "metadata"}
    pruned = copy.deepcopy(body)
    prune(pruned, schema)
    metadata = list(_walk(obj.get("metadata"), "V1ObjectMeta", "metadata"))
    return metadata + list(_dropped(body, pruned, ""))


def strict_error(kind: str, version: str, unknown: list[str]) -> str:
    fields = ", ".join(f'unknown field "{field}"' for field in unknown)
    return f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: {fields}'


def warnings(unknown: list[str]) -> list[str]:
    return [f'unknown field "{field}"' for field in unknown]
