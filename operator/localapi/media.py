"""Content negotiation as kube-apiserver does it: which representation an Accept header asks for
(an object, a meta.k8s.io Table, the aggregated discovery), and which bodies the server can read."""

from __future__ import annotations

import functools
from collections.abc import Mapping

MediaType = tuple[str, dict[str, str]]

JSON = "application/json"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
STRATEGIC = "application/strategic-merge-patch+json"
# The patch formats kube-apiserver accepts; custom resources have no strategic merge patch.
PATCHES = {
    "application/json-patch+json",
    "application/merge-patch+json",
    STRATEGIC,
    "application/apply-patch+yaml",
}
OBJECTS = {JSON, "application/yaml"}
READABLE = OBJECTS | PATCHES


def header(headers: Mapping[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), "")


def content_type(headers: Mapping[str, str]) -> str:
    """The type/subtype of a request's body (JSON when it names none)."""
    return next(iter(parse(header(headers, "Content-Type"))), (JSON, {}))[0]


@functools.lru_cache(maxsize=256)  # a client sends the same few headers with every request
def parse(value: str) -> tuple[MediaType, ...]:
    """An Accept (or Content-Type) header -> ((type/subtype, {param: value}), ...), in order."""
    types = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        kind, *params = (p.strip() for p in item.split(";"))
        pairs = (p.partition("=") for p in params if "=" in p)
        types.append((kind.lower(), {k.strip(): v.strip().strip('"') for k, _, v in pairs}))
    return tuple(types)


def first_known(accept: str, offers: Mapping[str, MediaType]) -> str | None:
    """The name of the first offer that the Accept header lists, in the header's order. An offer
    matches a listed type with the same type/subtype and as/g/v parameters; */* (and no header at
    all) matches the first offer without parameters, plain JSON."""
    listed: tuple[MediaType, ...] = parse(accept) or (("*/*", {}),)
    for kind, params in listed:
        for name, (offer_kind, offer_params) in offers.items():
            if kind in ("*/*", "application/*") and not offer_params:
                return name
            wanted = {k: v for k, v in params.items() if k in ("as", "g", "v")}
            if kind == offer_kind and wanted == offer_params:
                return name
    return None


OBJECT_OFFERS = {
    "table": (JSON, {"as": "Table", "g": "meta.k8s.io", "v": "v1"}),
    "table-v1beta1": (JSON, {"as": "Table", "g": "meta.k8s.io", "v": "v1beta1"}),
    "json": (JSON, {}),
}
DISCOVERY_OFFERS = {
    "aggregated": (
        JSON,
        {"as": "APIGroupDiscoveryList", "g": "apidiscovery.k8s.io", "v": "v2"},
    ),
    "json": (JSON, {}),
}
