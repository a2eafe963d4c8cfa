"""Strategic merge patches of built-in kinds: a JSON merge patch whose lists of the Kubernetes API's
mergeable fields (containers by name, conditions by type, finalizers as a set, ...) merge by their
key, with the directives kubectl sends: $patch (delete, replace, merge), $setElementOrder/<list>,
$deleteFromPrimitiveList/<list> and $retainKeys. Other directives are refused, not guessed at."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

# Field name -> its patchMergeKey in the Kubernetes API (None: a set of primitives). The names are
# unique enough across the built-in kinds; `ports` merge by containerPort in containers and by
# port in services.
MERGE_KEYS: dict[str, str | None] = {
    "finalizers": None,
    "ownerReferences": "uid",
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "resourceClaims": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "hostAliases": "ip",
    "podIPs": "ip",
    "hostIPs": "ip",
    "conditions": "type",
    "topologySpreadConstraints": "topologyKey",
    "ports": "port",
}
_ORDER, _DELETE_FROM = "$setElementOrder/", "$deleteFromPrimitiveList/"


class UnsupportedPatch(ValueError):
    pass


def strategic_merge(current: Obj, patch: Obj) -> Obj:
    if not isinstance(patch, dict):
        raise ValueError("a strategic merge patch is a JSON object")
    return _merge(current, patch)


def _merge(current: Obj, patch: Obj) -> Obj:
    directive = patch.get("$patch", "merge")
    if directive == "replace":
        return _merge({}, {k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return {}
    result = dict(current)
    for key, value in patch.items():
        old = current.get(key)
        if key in ("$patch", "$retainKeys") or key.startswith(_ORDER):
            continue
        if key.startswith(_DELETE_FROM):
            field = key.removeprefix(_DELETE_FROM)
            result[field] = [v for v in result.get(field) or [] if v not in value]
        elif key.startswith("$"):
            raise UnsupportedPatch(
                f"the strategic merge patch directive {key} is not supported by the local API server"
            )
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = _merge(old if isinstance(old, dict) else {}, value)
        elif isinstance(value, list) and key in MERGE_KEYS:
            result[key] = _merge_list(old if isinstance(old, list) else [], value, MERGE_KEYS[key])
        else:
            result[key] = value
    for key, order in patch.items():
        if key.startswith(_ORDER) and isinstance(result.get(key.removeprefix(_ORDER)), list):
            result[key.removeprefix(_ORDER)] = _ordered(result[key.removeprefix(_ORDER)], order)
    if "$retainKeys" in patch:
        result = {k: v for k, v in result.items() if k in patch["$retainKeys"]}
    return result


def _merge_list(current: list[Any], patch: list[Any], key: str | None) -> list[Any]:
    if key is None or not all(isinstance(item, dict) for item in current + patch):
        return current + [item for item in patch if item not in current]
    if key == "port" and any("containerPort" in item for item in current + patch):
        key = "containerPort"
    if any(item.get("$patch") == "replace" for item in patch):
        return [_merge({}, item) for item in patch if item.get("$patch") != "replace"]
    result = list(current)
    for item in patch:
        at = next((i for i, old in enumerate(result) if old.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            result = [old for old in result if old.get(key) != item.get(key)]
        elif at is None:
            result.append(_merge({}, item))
        else:
            result[at] = _merge(result[at], item)
    return result


def _ordered(items: list[Any], order: list[Any]) -> list[Any]:
    """$setElementOrder: the listed elements in that order, then the others as they were."""
    rank = [o if not isinstance(o, dict) else next(iter(o.items()), None) for o in order]

    def position(item: Any) -> int:
        probe = item if not isinstance(item, dict) else next((kv for kv in item.items() if kv in rank), None)
        return rank.index(probe) if probe in rank else len(rank)

    return sorted(items, key=position)
