"""What kube-apiserver does to a custom object before storing it, from the CRD's structural schema:
prune unknown fields, apply defaults, validate the OpenAPI schema, then evaluate the CEL rules.

Errors come back as metav1.StatusCause dicts naming the field, e.g.
`spec.topology.nodes: Invalid value: 0: should be greater than or equal to 1`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import celpy
import celpy.adapter
import celpy.evaluation
import jsonschema

Schema = dict[str, Any]
Cause = dict[str, str]

_PRESERVE = "x-kubernetes-preserve-unknown-fields"


_BOUNDS = {  # kube-apiserver's wording, e.g. "should be greater than or equal to 1"
    "minimum": ("greater than or equal to", "greater than"),
    "maximum": ("less than or equal to", "less than"),
    "minLength": ("at least this many characters:",) * 2,
    "maxLength": ("at most this many characters:",) * 2,
    "minItems": ("at least this many items:",) * 2,
    "maxItems": ("at most this many items:",) * 2,
}


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def prune(obj: Any, schema: Schema, root: bool = True) -> None:
    """Drop fields the schema does not declare (in place), as the API server does; an object's
    metadata is the API server's own (the schema may only constrain its name)."""
    if isinstance(obj, dict):
        props = schema.get("properties")
        if props is not None and not schema.get(_PRESERVE):
            for key in [k for k in obj if k not in props]:
                del obj[key]
        for key, value in obj.items():
            sub = (props or {}).get(key) or _as_schema(schema.get("additionalProperties"))
            if sub is not None and not (root and key == "metadata"):
                prune(value, sub, root=False)
    elif isinstance(obj, list) and "items" in schema:
        for item in obj:
            prune(item, schema["items"], root=False)


def default(obj: Any, schema: Schema) -> None:
    """Fill in absent fields that have schema defaults (in place), outermost first."""
    if isinstance(obj, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                default(obj[key], sub)
        extra = _as_schema(schema.get("additionalProperties"))
        if extra is not None:
            for value in obj.values():
                default(value, extra)
    elif isinstance(obj, list) and "items" in schema:
        for item in obj:
            default(item, schema["items"])


_MISSING = object()


def _at(obj: Any, field: str) -> Any:
    """The value at a cause's field path such as spec.stages[1].rollout (_MISSING when absent)."""
    for part in filter(None, field.replace("[", ".").replace("]", "").split(".")):
        if isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            return _MISSING
    return obj


INT64 = (-(2**63), 2**63 - 1)


def _out_of_int64(obj: Any, path: str) -> Iterator[Cause]:
    if isinstance(obj, bool):
        return
    if isinstance(obj, int) and not INT64[0] <= obj <= INT64[1]:
        yield {
            "reason": "FieldValueInvalid",
            "field": path,
            "message": f"Invalid value: {obj}: out of int64 range",
        }
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _out_of_int64(value, _join(path, str(key)))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from _out_of_int64(value, _join(path, index))


def _duplicates(obj: Any, schema: Schema, path: str) -> Iterator[Cause]:
    """Entries that repeat a key of an x-kubernetes-list-type map (or a value of a set): kube-apiserver
    refuses them as Duplicate value, naming the later entry."""
    if isinstance(obj, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in obj:
                yield from _duplicates(obj[key], sub, _join(path, key))
        return
    if not isinstance(obj, list):
        return
    kind, keys = schema.get("x-kubernetes-list-type"), schema.get("x-kubernetes-list-map-keys", [])
    seen: list[Any] = []
    for index, item in enumerate(obj):
        identity = {k: item.get(k) for k in keys} if kind == "map" and isinstance(item, dict) else item
        if kind in ("map", "set") and identity in seen:
            shown = json.dumps(identity, sort_keys=True)
            yield {
                "reason": "FieldValueDuplicate",
                "field": _join(path, index),
                "message": f"Duplicate value: {shown}",
            }
        seen.append(identity)
        if "items" in schema:
            yield from _duplicates(item, schema["items"], _join(path, index))


def _as_schema(value: Any) -> Schema | None:
    return value if isinstance(value, dict) else None


class StructuralSchema:
    """One version's openAPIV3Schema, with its validator and compiled CEL programs cached."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._validators: dict[str | None, Any] = {None: jsonschema.Draft4Validator(schema)}
        self._env = celpy.Environment()
        self._programs: dict[str, Any] = {}

    def admit(
        self, obj: dict[str, Any], root: str | None = None, old: dict[str, Any] | None = None
    ) -> list[Cause]:
        """Prune and default `obj` in place; return the validation failures (empty when valid).
        With `root`, only that top-level field is checked (the status subresource). With `old` (an
        update), failures on values left unchanged are ratcheted away, as kube-apiserver >= 1.30
        does, so objects stored under an older schema can still be labelled and given status; a
        subtree equal to the old one is not evaluated again (CEL is the costly part of a write)."""
        prune(obj, self.schema)
        default(obj, self.schema)
        causes = list(_out_of_int64(obj, ""))  # what kube-apiserver cannot even decode
        checked = _at(obj, root or "")  # with `root`, only its subtree (absent: nothing to check)
        if checked is not _MISSING:
            causes += [self._schema_cause(e, root) for e in self._validator_of(root).iter_errors(checked)]
        if not causes:  # CEL sees only well-typed objects (its int64 cannot hold the rest)
            causes += list(_duplicates(obj, self.schema, ""))
            top = {root: self.schema["properties"][root]} if root else self.schema.get("properties", {})
            causes += list(self._cel_causes(obj, {**self.schema, "properties": top}, "", old))
        if root is not None:
            causes = [c for c in causes if c["field"] == root or c["field"].startswith(root + ".")]
        if old is not None:
            causes = [c for c in causes if _at(obj, c["field"]) != _at(old, c["field"])]
        return sorted(causes, key=lambda c: c["field"])

    def _validator_of(self, root: str | None) -> Any:
        """The whole schema's validator, or the one of a top-level field's schema (cached)."""
        if root not in self._validators:
            self._validators[root] = jsonschema.Draft4Validator(self.schema["properties"][root])
        return self._validators[root]

    @staticmethod
    def _schema_cause(error: jsonschema.ValidationError, root: str | None = None) -> Cause:
        field = root or ""
        for key in error.absolute_path:
            field = _join(field, key)
        if error.validator == "required":
            missing = str(error.message).split("'")[1]
            return {
                "reason": "FieldValueRequired",
                "field": _join(field, missing),
                "message": "Required value",
            }
        detail = str(error.message)
        if error.validator in _BOUNDS:
            exclusive = error.schema.get("exclusive" + str(error.validator).capitalize()) is True
            detail = f"should be {_BOUNDS[str(error.validator)][exclusive]} {error.validator_value}"
        elif error.validator == "enum":
            options = ", ".join(f'"{v}"' for v in error.validator_value)
            detail = f"Unsupported value: {error.instance!r}: supported values: {options}"
        return {
            "reason": "FieldValueInvalid",
            "field": field,
            "message": f"Invalid value: {error.instance!r}: {detail}",
        }

    def _cel_causes(self, obj: Any, schema: Schema, path: str, old: Any = _MISSING) -> Iterator[Cause]:
        if obj is None or obj == old:  # unchanged: its rules held before (or are ratcheted away)
            return
        value = None  # converted for CEL once per node, however many rules it has
        for rule in schema.get("x-kubernetes-validations", []):
            value = celpy.adapter.json_to_cel(obj) if value is None else value
            if not self._holds(rule["rule"], value):
                field = (path + rule["fieldPath"]).lstrip(".") if rule.get("fieldPath") else path
                yield {
                    "reason": "FieldValueInvalid",
                    "field": field,
                    "message": f"Invalid value: {rule.get('message') or rule['rule']}",
                }
        if isinstance(obj, dict):
            for key, sub in schema.get("properties", {}).items():
                if key in obj:
                    before = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
                    yield from self._cel_causes(obj[key], sub, _join(path, key), before)
        elif isinstance(obj, list) and "items" in schema:
            for index, item in enumerate(obj):  # list items are compared by position
                before = old[index] if isinstance(old, list) and index < len(old) else _MISSING
                yield from self._cel_causes(item, schema["items"], _join(path, index), before)

    def _holds(self, rule: str, value: Any) -> bool:
        if rule not in self._programs:
            self._programs[rule] = self._env.program(self._env.compile(rule))
        try:
            return bool(self._programs[rule].evaluate({"self": value}))
        except celpy.evaluation.CELEvalError:
            return False  # a rule that cannot evaluate on this value rejects it, as kube-apiserver does
