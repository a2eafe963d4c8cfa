"""What every child shares: owner labels, the owner reference, and the desired-state hash that lets the
operator see drift without reading the child back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

Manifest = dict[str, Any]

MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER_KIND = "vlmop.io/owner-kind"
OWNER_NAME = "vlmop.io/owner-name"
COMPONENT = "app.kubernetes.io/component"
HASH = "vlmop.io/desired-hash"
COMPANION_OF = "vlmop.io/companion-of"  # the Job a gang object is created before and deleted with


def owner_labels(owner: Mapping[str, Any]) -> dict[str, str]:
    return {MANAGED_BY: "vlmop", OWNER_KIND: owner["kind"], OWNER_NAME: owner["metadata"]["name"]}


def owned(owner: Mapping[str, Any], manifest: Manifest, component: str) -> Manifest:
    """`manifest` in the owner's namespace, labelled, controller-referenced and stamped with the hash
    of everything the builder chose (so a changed spec shows up as a changed hash)."""
    meta = manifest.setdefault("metadata", {})
    meta["namespace"] = owner["metadata"]["namespace"]
    meta["labels"] = {**owner_labels(owner), COMPONENT: component, **meta.get("labels", {})}
    meta["ownerReferences"] = [
        {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    meta.setdefault("annotations", {})[HASH] = desired_hash(manifest)
    return manifest


def desired_hash(manifest: Mapping[str, Any]) -> str:
    body = {**manifest, "metadata": {**manifest.get("metadata", {}), "annotations": None}}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def restricted_security() -> tuple[Manifest, Manifest]:
    """Pod and container security contexts that pass the `restricted` Pod Security Standard."""
    pod = {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return pod, container
