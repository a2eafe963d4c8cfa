"""The real operator process (`python -m vlmop.operator --standalone`) against the local API server:
valid CRs get observedGeneration and conditions, invalid ones are rejected at admission with the field
named, what only the operator can detect becomes Failed/InvalidSpec with an Event (and the operator
keeps serving), deletion cascades to children, and it exposes liveness and metrics.

The API server here is an emulator: it runs no Job/Deployment controllers and no kubelet, so pods
never run; e2e/ repeats these scenarios on a real cluster."""

from __future__ import annotations

import copy
import json
import time
import urllib.request
from typing import Any, cast

import pytest
from kmock._internal import references
from kmock._internal.enums import action
from kubernetes.client import ApiException, BatchV1Api

from vlmop.operator import kube
from vlmop.operator.api import KINDS, PRETRAINJOB, DvDDeploymentSpec
from vlmop.operator.builders import dvddeployment as build_dvd
from vlmop.operator.expectations import Expectations
from vlmop.operator.handlers import children
from vlmop.operator.localapi.cluster import LocalCluster

G, V, NS = "vlmop.io", "v1alpha1", "default"


def renamed(doc: dict[str, Any], name: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["metadata"]["name"] = name
    return doc


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj["status"]["conditions"]}


def test_a_missing_gang_scheduler_is_reported_not_crashed_on(
    cluster: LocalCluster, examples: dict[str, dict[str, Any]]
) -> None:
    """No PodGroup CRD in this API server: the coscheduling example waits, saying why."""
    doc = renamed(examples["pretrainjob"], "no-scheduler")
    cluster.apply(doc)
    obj = cluster.wait_observed(PRETRAINJOB, "no-scheduler")
    progressing = conditions(obj)["Progressing"]
    assert obj["status"]["phase"] == "Pending"
    assert (progressing["status"], progressing["reason"]) == ("False", "GangSchedulerMissing")
    assert "scheduling.x-k8s.io/v1alpha1 PodGroup is not served" in progressing["message"]
    assert conditions(obj)["Failed"]["status"] == "False"
    jobs = BatchV1Api(cluster.client).list_namespaced_job(
        NS, label_selector="vlmop.io/owner-name=no-scheduler"
    )
    assert not jobs.items  # no Job without its PodGroup: the gang would start piecemeal
    events = cluster.core.list_namespaced_event(NS).items
    assert any(
        e.reason == "GangSchedulerMissing" and e.involved_object.name == "no-scheduler" for e in events
    )


def test_spec_update_is_observed_and_status_left_alone_otherwise(
    cluster: LocalCluster, examples: dict[str, dict[str, Any]]
) -> None:
    doc = renamed(examples["pretrainjob"], "update-me")
    cluster.apply(doc)
    first = cluster.wait_observed(PRETRAINJOB, "update-me")
    cluster.custom.patch_namespaced_custom_object(
        G, V, NS, PRETRAINJOB.plural, "update-me", {"spec": {"topology": {"nodes": 4}}}
    )
    second = cluster.wait_observed(PRETRAINJOB, "update-me")
    assert second["metadata"]["generation"] == 2 and second["status"]["observedGeneration"] == 2
    ready_before, ready_after = conditions(first)["Progressing"], conditions(second)["Progressing"]
    assert ready_after["lastTransitionTime"] == ready_before["lastTransitionTime"]  # no flip, no new time
    assert ready_after["observedGeneration"] == 2


def test_invalid_cr_is_rejected_at_admission_naming_the_field(
    cluster: LocalCluster, examples: dict[str, dict[str, Any]]
) -> None:
    doc = renamed(examples["dvddeployment"], "too-few")
    doc["spec"]["vision"]["minReplicas"] = 10
    with pytest.raises(ApiException) as error:
        cluster.apply(doc)
    assert error.value.status == 422
    assert (
        "spec.vision.minReplicas: Invalid value: minReplicas must not exceed maxReplicas" in error.value.body
    )


def test_what_only_the_operator_detects_fails_the_cr_not_the_operator(
    cluster: LocalCluster, examples: dict[str, dict[str, Any]]
) -> None:
    # Stored without admission, as an object written under an older, looser CRD would be.
    doc = renamed(examples["pretrainjob"], "legacy")
    doc["metadata"]["namespace"] = NS
    doc["spec"]["topology"]["nodes"] = "many"
    resource = references.resource(group=G, version=V, plural=PRETRAINJOB.plural)
    cluster.server.call(cluster.server.api.inject(resource, doc))
    obj = cluster.wait_observed(PRETRAINJOB, "legacy")
    failed = conditions(obj)["Failed"]
    assert (obj["status"]["phase"], failed["status"], failed["reason"]) == ("Failed", "True", "InvalidSpec")
    assert "spec.topology.nodes" in failed["message"]
    events = cluster.core.list_namespaced_event(NS).items
    assert any(
        e.reason == "InvalidSpec" and e.involved_object.name == "legacy" and e.type == "Warning"
        for e in events
    )
    # The operator is still serving other objects.
    cluster.apply(renamed(examples["pretrainjob"], "after-legacy"))
    cluster.wait_observed(PRETRAINJOB, "after-legacy")
    assert cluster.operator is not None and cluster.operator.poll() is None


def test_deleting_a_cr_deletes_its_children(
    cluster: LocalCluster, examples: dict[str, dict[str, Any]]
) -> None:
    owner = cluster.apply(renamed(examples["pretrainjob"], "parent"))
    ref = {
        "apiVersion": f"{G}/{V}",
        "kind": "PretrainJob",
        "name": "parent",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    labels = {
        "app.kubernetes.io/managed-by": "vlmop",
        "vlmop.io/owner-kind": "PretrainJob",
        "vlmop.io/owner-name": "parent",
    }
    for name in ("parent-token", "parent-hostfile"):  # Secrets: a kind the operator never prunes itself
        cluster.core.create_namespaced_secret(
            NS, {"metadata": {"name": name, "labels": labels, "ownerReferences": [ref]}}
        )
    cluster.wait_observed(PRETRAINJOB, "parent")
    handled = cluster.get(PRETRAINJOB, "parent")["metadata"]
    assert not handled.get("finalizers")  # nothing for the operator to do on deletion
    assert not [a for a in handled.get("annotations") or {} if a.startswith("vlmop.io/")]  # no bookkeeping
    cluster.custom.delete_namespaced_custom_object(G, V, NS, PRETRAINJOB.plural, "parent")
    selector = "vlmop.io/owner-name=parent"
    cluster.wait(
        lambda: not cluster.core.list_namespaced_secret(NS, label_selector=selector).items,
        10,
        "the children to be garbage-collected",
    )
    with pytest.raises(ApiException):
        cluster.get(PRETRAINJOB, "parent")  # no finalizer holds the CR


def test_the_finalizer_older_versions_left_is_lifted(
    cluster: LocalCluster, examples: dict[str, dict[str, Any]]
) -> None:
    legacy = renamed(examples["pretrainjob"], "upgraded")
    legacy["metadata"]["finalizers"] = ["vlmop.io/finalizer"]  # what kopf's timers put on every object
    cluster.apply(legacy)
    cluster.wait_observed(PRETRAINJOB, "upgraded")
    cluster.custom.delete_namespaced_custom_object(G, V, NS, PRETRAINJOB.plural, "upgraded")
    gone = "the operator to lift the old finalizer and the object to go"
    cluster.wait(lambda: not cluster.exists(PRETRAINJOB, "upgraded"), 15, gone)


def test_liveness_and_metrics_endpoints(cluster: LocalCluster, examples: dict[str, dict[str, Any]]) -> None:
    cluster.apply(renamed(examples["cascaderljob"], "metered"))
    cluster.wait_observed(KINDS[1], "metered")
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.liveness_port}/healthz", timeout=5) as r:
        assert r.status == 200 and isinstance(json.loads(r.read()), dict)
    kind = {"kind": "CascadeRLJob"}
    assert metric(cluster, "vlmop_reconcile_total", **kind, result="success") >= 1
    assert metric(cluster, "vlmop_reconcile_duration_seconds_count", **kind) >= 1
    assert metric(cluster, "vlmop_status_writes_total", **kind) >= 1


def metric(cluster: LocalCluster, name: str, **labels: str) -> float:
    """One sample from the operator's /metrics (0 when the series does not exist yet)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{selector}}} "):
            return float(line.split()[-1])
    return 0.0


def test_restart_resumes_without_rewriting_status(
    cluster: LocalCluster, examples: dict[str, dict[str, Any]]
) -> None:
    cluster.apply(renamed(examples["dvddeployment"], "survivor"))
    cluster.wait_observed(KINDS[2], "survivor")

    # Converged: its pools exist (not ready: nothing runs them here) and the autoscaler, finding no
    # Prometheus at the example's address, holds them (PrometheusUnreachable): the status has settled.
    def settled() -> bool:
        found = cluster.get(KINDS[2], "survivor").get("status") or {}
        return (
            found.get("phase") == "Progressing"
            and (found.get("vision") or {}).get("reason") == "PrometheusUnreachable"
        )

    cluster.wait(settled, 60, "the DvDDeployment's status to settle")
    time.sleep(1)  # two more resyncs: nothing left to write
    before = cluster.get(KINDS[2], "survivor")
    existing = len(cluster.custom.list_namespaced_custom_object(G, V, NS, KINDS[2].plural)["items"])
    cluster.stop_operator()
    cluster.start_operator()  # a fresh process: its metrics start at zero
    kind = {"kind": "DvDDeployment"}
    cluster.wait(
        lambda: metric(cluster, "vlmop_reconcile_total", **kind, result="success") >= existing,
        30,
        "the resumed operator to reconcile every DvDDeployment",
    )
    assert metric(cluster, "vlmop_status_writes_total", **kind) == 0  # nothing changed, nothing written
    after = cluster.get(KINDS[2], "survivor")
    assert after["status"] == before["status"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_the_operator_receives_only_its_own_children(cluster: LocalCluster) -> None:
    """Server-side label selectors (runtime.configure): with many foreign pods and a foreign Job in the
    cluster, every list and watch the operator makes of a kind it owns carries our selector, and the
    API server answers those queries without any foreign object."""
    for i in range(300):
        pod = {"metadata": {"name": f"foreign-{i}", "labels": {"app": "someone-else"}},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}  # fmt: skip
        cluster.core.create_namespaced_pod(NS, cast(Any, pod))
    job = {"metadata": {"name": "foreign-job", "labels": {"app.kubernetes.io/managed-by": "someone-else"}},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "busybox"}]}}}}  # fmt: skip
    BatchV1Api(cluster.client).create_namespaced_job(NS, cast(Any, job))
    owned = {("", k[1]) if len(k) == 2 else (k[0], k[2]) for k in children.OWNED}
    reads = [(r, (r.resource.group or "", r.resource.plural)) for r in cluster.server.api._requests
             if r.action in (action.LIST, action.WATCH) and r.resource is not None
             and "kopf" in r.headers.get("User-Agent", "")]  # the operator's reads only  # fmt: skip
    reads = [(r, kind) for r, kind in reads if kind in owned]
    seen = {kind for _, kind in reads}
    assert {("", "pods"), ("batch", "jobs"), ("apps", "deployments"), ("", "services")} <= seen
    assert {r.params.get("labelSelector") for r, _ in reads} == {children.SERVER_SELECTOR}
    pods = cluster.core.list_pod_for_all_namespaces(label_selector=children.SERVER_SELECTOR).items
    jobs = BatchV1Api(cluster.client).list_job_for_all_namespaces(label_selector=children.SERVER_SELECTOR)
    assert not [p for p in pods if p.metadata.name.startswith("foreign-")]
    assert not [j for j in jobs.items if j.metadata.name == "foreign-job"]
    assert len(cluster.core.list_namespaced_pod(NS, label_selector="app=someone-else").items) == 300


def test_children_written_but_not_yet_indexed_are_not_written_again(
    cluster: LocalCluster, examples: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The indexes lag behind the operator's own writes: a round that runs before they catch up counts
    what earlier rounds wrote as done (expectations), so each child is written once, not 409'd again."""
    monkeypatch.setattr(kube, "_client", cluster.client)  # kube's requests, in this process
    doc = renamed(examples["dvddeployment"], "lagging")
    owner = {**doc, "metadata": {**doc["metadata"], "namespace": NS, "uid": "a-uid", "generation": 1}}
    spec = DvDDeploymentSpec.model_validate(doc["spec"])
    desired, expected = build_dvd.children(owner, spec), Expectations()
    before = len(cluster.server.api._requests)
    assert kube.converge(NS, desired, [], expected=expected) == len(desired)
    assert kube.converge(NS, desired, [], expected=expected) == 0  # the index still shows nothing
    bigger = build_dvd.children(owner, spec, {"vision": 3})  # one pool changed: replaced once
    assert kube.converge(NS, bigger, [], expected=expected) == 1
    assert kube.converge(NS, bigger, [], expected=expected) == 0
    writes = [r for r in cluster.server.api._requests[before:] if r.method.value != "GET"]
    assert len(writes) == len(desired) + 1
    assert [r.method.value for r in writes].count("POST") == len(desired)
    # Once the index shows the children as written, the expectations are confirmed and dropped.
    assert kube.converge(NS, bigger, [kube.ref_of(m) for m in bigger], expected=expected) == 0
    assert not expected.written
    # Without expectations, the same stale index makes a round write every child again.
    again = len(cluster.server.api._requests)
    assert kube.converge(NS, bigger, []) == len(bigger)
    assert sum(r.method.value != "GET" for r in cluster.server.api._requests[again:]) == len(bigger)
