"""The one place that talks to the API server besides kopf itself: converge an owner's children to the
desired manifests (create missing, replace drifted, delete orphans), write an owner's status, post its
Events, and delete a finished owner.

Reads come from kopf indexes (handlers/children.py), so a converged reconcile makes no API call."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from vlmop.operator import status
from vlmop.operator.builders.common import COMPANION_OF, HASH, Manifest
from vlmop.operator.expectations import Expectations

_client: kubernetes.client.ApiClient | None = None
# Kinds whose spec cannot be patched in place (a Job's pod template is immutable): replaced instead.
IMMUTABLE = frozenset({"Job", "PodGroup", "Workload", "CompositePodGroup"})
# An API found missing is asked for again only after this long.
MISSING_RECHECK_SECONDS = 60.0
_missing: dict[str, float] = {}
# Kinds the operator does not index (their CRDs may be absent): created with their Job, deleted with it.
# A companion belongs to the Job its COMPANION_OF annotation names, else to the Job of its own name.
COMPANIONS = frozenset({"PodGroup", "Workload", "CompositePodGroup"})
# Kinds an add-on serves, and what to do when it is missing.
OPTIONAL = {
    "PodGroup": "install its scheduler (Volcano or scheduler-plugins), enable Kubernetes' GenericWorkload "
    "feature gate (scheduling.k8s.io/v1beta1), or change spec.scheduling.gang",
    "Workload": "enable Kubernetes' GenericWorkload feature gate (scheduling.k8s.io/v1beta1) or change "
    "spec.scheduling.gang",
    "CompositePodGroup": "enable Kubernetes' CompositePodGroup feature gate (scheduling.k8s.io/v1alpha3) or "
    "change spec.scheduling.gang",
    "ScaledObject": "install KEDA or change spec.autoscaling.mode",
}


class MissingAPI(Exception):
    """A child's API is not installed (e.g. no PodGroup CRD): the owner waits, it does not crash."""


@dataclass(frozen=True)
class ChildRef:
    api_version: str
    kind: str
    name: str
    hash: str | None = None


def client() -> kubernetes.client.ApiClient:
    global _client
    if _client is None:
        try:
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
        _client = kubernetes.client.ApiClient()
    return _client


def path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    lower = kind.lower()  # Service, ConfigMap, Job, PodGroup, NetworkPolicy
    plural = lower[:-1] + "ies" if lower.endswith("y") else lower + ("es" if lower.endswith("s") else "s")
    return f"{base}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


def request(
    method: str,
    url: str,
    body: Any = None,
    content_type: str = "application/json",
    api: kubernetes.client.ApiClient | None = None,
) -> Any:
    api = api or client()
    headers = {"Accept": "application/json", "Content-Type": content_type}
    params = api.param_serialize(method, url, header_params=headers, body=body, auth_settings=["BearerToken"])
    response = api.call_api(*params, _request_timeout=30)
    response.read()  # type: ignore[no-untyped-call]
    if not 200 <= response.status < 300:
        raise ApiException(http_resp=response)
    return json.loads(response.data) if response.data else None


def create(manifest: Manifest) -> None:
    meta = manifest["metadata"]
    try:
        request("POST", path(manifest["apiVersion"], manifest["kind"], meta["namespace"]), manifest)
    except ApiException as error:
        if error.status != 409:  # already there: a reconcile raced ours, or the index lags behind
            raise


def create_optional(manifest: Manifest) -> None:
    """Create a child whose API an add-on serves (a gang scheduler's PodGroup, KEDA's ScaledObject):
    its absence is MissingAPI, asked again only after MISSING_RECHECK_SECONDS."""
    api = f"{manifest['apiVersion']} {manifest['kind']}"
    message = f"{api} is not served by this cluster: {OPTIONAL[manifest['kind']]}"
    if time.monotonic() - _missing.get(api, -MISSING_RECHECK_SECONDS) < MISSING_RECHECK_SECONDS:
        raise MissingAPI(message)  # known missing: a thousand waiting jobs make no requests for it
    try:
        create(manifest)
    except ApiException as error:
        if error.status != 404:
            raise
        _missing[api] = time.monotonic()
        raise MissingAPI(message) from error
    _missing.pop(api, None)


def replace(manifest: Manifest) -> None:
    meta = manifest["metadata"]
    url = path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
    request("PATCH", url, manifest, "application/merge-patch+json")


def delete(api_version: str, kind: str, namespace: str, name: str) -> None:
    """Background propagation: a Job's pods go with it (the batch API's default would orphan them)."""
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
    try:
        request("DELETE", path(api_version, kind, namespace, name), body)
    except ApiException as error:
        if error.status != 404:
            raise


def converge(
    namespace: str,
    desired: Sequence[Manifest],
    actual: Iterable[ChildRef],
    keep: Iterable[str] = (),
    expected: Expectations | None = None,
) -> int:
    """Make the children match `desired`, leaving the children named in `keep` as they are; returns
    how many writes it took (0 when converged). With `expected`, the writes of earlier rounds that
    the index (`actual`) does not show yet count as done, and this round's are added to it."""
    kept = set(keep)
    expected = expected if expected is not None else Expectations()
    have = {(c.kind, c.name): c for c in expected.merge(actual) if c.name not in kept}
    want = {(m["kind"], m["metadata"]["name"]): m for m in desired}
    companions = [m for m in desired if m["kind"] in COMPANIONS]
    writes = 0
    for key, child in have.items():
        if key not in want:
            for companion in companions if child.kind == "Job" else []:  # named as the new Job's are
                job, name = companion_of(companion), companion["metadata"]["name"]
                delete(companion["apiVersion"], companion["kind"], namespace, child.name + name[len(job) :])
            delete(child.api_version, child.kind, namespace, child.name)
            expected.removed(child.kind, child.name)
            writes += 1
    for key, manifest in want.items():
        if manifest["kind"] in COMPANIONS:
            continue
        current = have.get(key)
        if current and current.hash == manifest["metadata"]["annotations"][HASH]:
            continue
        if current and manifest["kind"] not in IMMUTABLE:
            replace(manifest)
        else:
            if current:
                delete(current.api_version, current.kind, namespace, current.name)
            for companion in companions if manifest["kind"] == "Job" else []:
                if companion_of(companion) == manifest["metadata"]["name"]:
                    create_optional(companion)  # before the Job, so its pods find their group
            if manifest["kind"] in OPTIONAL:
                create_optional(manifest)
            else:
                create(manifest)
        expected.wrote(ref_of(manifest))
        writes += 1
    return writes


def ref_of(manifest: Manifest) -> ChildRef:
    """The ChildRef the index will hold for this manifest once its watch shows it."""
    meta = manifest["metadata"]
    return ChildRef(manifest["apiVersion"], manifest["kind"], meta["name"], meta["annotations"].get(HASH))


def companion_of(manifest: Manifest) -> str:
    """The Job a companion is created before and deleted with."""
    meta = manifest["metadata"]
    return str((meta.get("annotations") or {}).get(COMPANION_OF, meta["name"]))


# Statuses worth another try soon: conflicts, throttling, server errors.
TRANSIENT = frozenset({409, 429, 500, 502, 503, 504})


def retry_delay(error: Exception, failures: int) -> float:
    """How long until the next try after `failures` failures in a row: a throttled request waits the
    server's Retry-After; anything else 1, 2, 4 ... 60 s."""
    if isinstance(error, ApiException) and error.status == 429:
        after = (error.headers or {}).get("Retry-After")
        if after and after.isdigit():
            return float(after)
    return float(min(60, 2 ** (failures - 1)))


class Gone(Exception):
    """The owner itself is not there any more (its status write found nothing)."""


def patch_status(owner: Mapping[str, Any], plural: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Merge-patch the owner's status subresource; returns the object as written."""
    group, version = str(owner["apiVersion"]).split("/")
    meta = owner["metadata"]
    url = f"/apis/{group}/{version}/namespaces/{meta['namespace']}/{plural}/{meta['name']}/status"
    try:
        return dict(request("PATCH", url, {"status": changes}, "application/merge-patch+json"))
    except ApiException as error:
        if error.status == 404:
            raise Gone(f"{plural} {meta['namespace']}/{meta['name']}") from error
        raise


def event(owner: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Post a core/v1 Event about the owner; a failure to post is logged, never fatal."""
    meta, at = owner["metadata"], status.now()
    ref = {k: meta.get(k) for k in ("name", "namespace", "uid", "resourceVersion")}
    body = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": owner["apiVersion"], "kind": owner["kind"], **ref},
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "vlmop"},
        "reportingComponent": "vlmop",
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }
    try:
        request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body)
    except (ApiException, OSError) as error:
        logging.getLogger("vlmop.operator").warning("could not post event %s: %s", reason, error)


def delete_owner(owner: Mapping[str, Any], plural: str) -> None:
    """Delete a finished custom object (ttlSecondsAfterFinished); its children follow by GC."""
    group, version = str(owner["apiVersion"]).split("/")
    meta = owner["metadata"]
    try:
        request("DELETE", f"/apis/{group}/{version}/namespaces/{meta['namespace']}/{plural}/{meta['name']}")
    except ApiException as error:
        if error.status != 404:
            raise
