"""API discovery documents, as kube-apiserver serves them, built from the served resources.

Legacy discovery (/api, /apis, /api/v1, /apis/<group>/<version>) and the aggregated discovery
(apidiscovery.k8s.io/v2 APIGroupDiscoveryList at /api and /apis) that kubectl >= 1.30 asks for first.
Subresources are listed as subresources (`pods/status` with its own verbs, no short names or
categories), so that short names and categories resolve to the resources themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from kmock._internal import references

Doc = dict[str, Any]
Resources = Mapping[references.resource, references.ResourceInfo]

_RW = ("get", "patch", "update")
_SUBRESOURCE_VERBS = {  # kube-apiserver's verbs per subresource; the rest (status, scale, ...) _RW
    "log": ("get",),
    "binding": ("create",),
    "eviction": ("create",),
    "token": ("create",),
    "exec": ("create", "get"),
    "attach": ("create", "get"),
    "portforward": ("create", "get"),
    "proxy": ("create", "delete", "get", "patch", "update"),
    "finalize": ("update",),
}


def version_key(version: str) -> tuple[int, int, int, str]:
    """kube-apiserver's version priority: GA > beta > alpha, then the higher number first."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0, version)  # not kube-like: after all kube-like versions, by name
    stability = {None: 0, "beta": 1, "alpha": 2}[match[2]]
    return (stability, -int(match[1]), -int(match[3] or 0), version)


def _versions(resources: Resources) -> dict[str, list[str]]:
    """group -> its versions, the preferred one first."""
    groups: dict[str, set[str]] = {}
    for resource in resources:
        if resource.group is not None and resource.version and resource.plural:
            groups.setdefault(resource.group, set()).add(resource.version)
    return {group: sorted(versions, key=version_key) for group, versions in sorted(groups.items())}


def served(resources: Resources, group: str, version: str) -> list[tuple[str, references.ResourceInfo]]:
    return sorted(
        (str(r.plural), info)
        for r, info in resources.items()
        if r.group == group and r.version == version and r.plural
    )


Kind = tuple[str, str, bool, tuple[str, ...]]


def kinds(resources: Resources, group: str, version: str) -> tuple[Kind, ...]:
    """(plural, kind, namespaced, subresources) of each resource of a group version."""
    return tuple(
        (plural, info.kind or "", bool(info.namespaced), tuple(sorted(info.subresources)))
        for plural, info in served(resources, group, version)
    )


def _group_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def api_versions() -> Doc:
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}


def api_group(group: str, versions: list[str]) -> Doc:
    listed = [{"groupVersion": _group_version(group, v), "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": listed,
            "preferredVersion": listed[0]}  # fmt: skip


def group_list(resources: Resources) -> Doc:
    groups = [api_group(g, vs) for g, vs in _versions(resources).items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def find_group(resources: Resources, group: str) -> Doc | None:
    versions = _versions(resources).get(group)
    return api_group(group, versions) if versions and group else None


def resource_list(resources: Resources, group: str, version: str) -> Doc | None:
    """The APIResourceList of one group version (None: not served)."""
    listed = served(resources, group, version)
    if not listed:
        return None
    entries: list[Doc] = []
    for plural, info in listed:
        kind = info.kind or plural.capitalize()
        entries.append({
            "name": plural, "singularName": info.singular or "", "namespaced": bool(info.namespaced),
            "kind": kind, "verbs": sorted(info.verbs),
            **({"shortNames": sorted(info.shortnames)} if info.shortnames else {}),
            **({"categories": sorted(info.categories)} if info.categories else {}),
        })  # fmt: skip
        entries += [
            {"name": f"{plural}/{sub}", "singularName": "", "namespaced": bool(info.namespaced),
             "kind": _subresource_kind(sub, kind), "verbs": list(_SUBRESOURCE_VERBS.get(sub, _RW))}
            for sub in sorted(info.subresources)
        ]  # fmt: skip
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": _group_version(group, version), "resources": entries}  # fmt: skip


def _subresource_kind(sub: str, kind: str) -> str:
    return "Scale" if sub == "scale" else kind


def _response_kind(group: str, version: str, sub: str, kind: str) -> Doc:
    if sub == "scale":
        return {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    return {"group": group, "version": version, "kind": kind}


def aggregated(resources: Resources, core: bool) -> Doc:
    """The APIGroupDiscoveryList: of the core group for /api (core), of all others for /apis."""
    items = [
        {"metadata": {"name": group}, "versions": [_version_discovery(resources, group, v) for v in versions]}
        for group, versions in _versions(resources).items()
        if (group == "") == core
    ]
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": items}  # fmt: skip


def _version_discovery(resources: Resources, group: str, version: str) -> Doc:
    entries: list[Doc] = []
    for plural, info in served(resources, group, version):
        kind = info.kind or plural.capitalize()
        entries.append({
            "resource": plural, "responseKind": _response_kind(group, version, "", kind),
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "singularResource": info.singular or plural, "verbs": sorted(info.verbs),
            **({"shortNames": sorted(info.shortnames)} if info.shortnames else {}),
            **({"categories": sorted(info.categories)} if info.categories else {}),
            "subresources": [
                {"subresource": sub, "responseKind": _response_kind(group, version, sub, kind),
                 "verbs": list(_SUBRESOURCE_VERBS.get(sub, _RW))}
                for sub in sorted(info.subresources)
            ],
        })  # fmt: skip
    return {"version": version, "resources": entries, "freshness": "Current"}


def group_versions(resources: Resources) -> Iterable[tuple[str, str]]:
    """Every served (group, version), the core group's as ("", "v1")."""
    for group, versions in _versions(resources).items():
        for version in versions:
            yield group, version
