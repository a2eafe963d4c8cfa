"""HA: replicas run without --standalone and elect through kopf's peering object. The real operator
acts while it is the only live peer (so it knows its own entry there), and stands aside while a live
peer of higher priority is there: kopf's watchers pause, and so does the work queue, whose time-driven
rounds (here ttlSecondsAfterFinished) kopf's pause alone would not stop."""

from __future__ import annotations

import copy
import datetime
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiException, ApiextensionsV1Api

from vlmop.operator.api import PRETRAINJOB
from vlmop.operator.localapi.cluster import LocalCluster

PEERING = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "clusterkopfpeerings.kopf.dev"},
    "spec": {
        "group": "kopf.dev",
        "scope": "Cluster",
        "names": {"kind": "ClusterKopfPeering", "plural": "clusterkopfpeerings",
                  "singular": "clusterkopfpeering"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}  # fmt: skip
PEERINGS = ("kopf.dev", "v1", "clusterkopfpeerings")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """This module's control plane: the operator as an HA replica (the chart's peering object)."""
    with LocalCluster(tmp_path_factory.mktemp("peering"), ["--resync-seconds", "0.5"]) as cluster:
        ApiextensionsV1Api(cluster.client).create_custom_resource_definition(PEERING)
        cluster.wait(lambda: _served(cluster), 10, "the peering kind to be served")
        body = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "vlmop"}}
        cluster.custom.create_cluster_custom_object(*PEERINGS, body)
        cluster.start_operator(standalone=False)
        yield cluster


def _served(cluster: LocalCluster) -> bool:
    try:
        cluster.custom.list_cluster_custom_object(*PEERINGS)
    except ApiException:
        return False
    return True


def peers(cluster: LocalCluster) -> dict[str, Any]:
    return dict(cluster.custom.get_cluster_custom_object(*PEERINGS, "vlmop").get("status") or {})


def set_peer(cluster: LocalCluster, name: str, info: dict[str, Any] | None) -> None:
    cluster.custom.patch_cluster_custom_object(*PEERINGS, "vlmop", {"status": {name: info}})


def job(examples: dict[str, Any], name: str, **run_policy: Any) -> dict[str, Any]:
    doc = copy.deepcopy(examples["pretrainjob"])
    doc["metadata"]["name"] = name
    doc["spec"].pop("scheduling", None)  # no PodGroup kind here
    doc["spec"]["runPolicy"].update(run_policy)
    return doc


def test_a_replica_stands_aside_while_a_higher_priority_peer_lives(
    cluster: LocalCluster, examples: dict[str, Any], kubelet: Any, wait_for: Any
) -> None:
    cluster.apply(job(examples, "first", ttlSecondsAfterFinished=6))
    wait_for(PRETRAINJOB, "first", "workers created", phase="Pending")
    assert len(peers(cluster)) == 1  # only itself, as kopf's keepalive wrote it
    for pod in kubelet.start("first-r0"):
        kubelet.set(pod, "Succeeded", "")
    wait_for(PRETRAINJOB, "first", "finished", phase="Succeeded")

    now = datetime.datetime.now(datetime.UTC).isoformat()
    set_peer(cluster, "higher", {"priority": 100, "lifetime": 60, "lastseen": now})
    time.sleep(3)  # kopf's peering watch and the queue's gate (CHECK_SECONDS) have both seen it
    cluster.apply(job(examples, "second"))
    time.sleep(5)  # first's TTL passes while this replica stands aside
    assert cluster.exists(PRETRAINJOB, "first")  # the queue's TTL round did not run
    assert not (cluster.get(PRETRAINJOB, "second").get("status") or {})  # kopf's watch paused

    set_peer(cluster, "higher", None)  # the peer is gone: this replica acts again
    cluster.wait(lambda: not cluster.exists(PRETRAINJOB, "first"), 30, "the TTL deletion to run")
    wait_for(PRETRAINJOB, "second", "reconciled", observedGeneration=1)
