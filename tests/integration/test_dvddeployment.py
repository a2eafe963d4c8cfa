"""The real operator turns examples/dvddeployment.yaml into its three pools on the local API server and
follows their readiness: Pending → Ready once every Deployment reports its replicas ready (the test
writes Deployment status, as the Deployment controller would; the emulator runs none), Degraded when
a pool loses every replica, and a spec change rolls the pool it touches (and only that one)."""

from __future__ import annotations

import copy
import time
from typing import Any

from kubernetes.client import AppsV1Api, NetworkingV1Api

from vlmop.operator.api import DVDDEPLOYMENT
from vlmop.operator.localapi.cluster import LocalCluster

G, V, NS = "vlmop.io", "v1alpha1", "default"


def set_ready(apps: AppsV1Api, name: str, ready: int) -> None:
    replicas = apps.read_namespaced_deployment(name, NS).spec.replicas
    status = {
        "replicas": replicas,
        "readyReplicas": ready,
        "updatedReplicas": replicas,
        "availableReplicas": ready,
    }
    apps.patch_namespaced_deployment_status(name, NS, {"status": status})


def test_pools_come_up_degrade_and_roll(
    cluster: LocalCluster, examples: dict[str, Any], wait_for: Any
) -> None:
    apps = AppsV1Api(cluster.client)
    doc = copy.deepcopy(examples["dvddeployment"])
    doc["metadata"]["name"] = "serve"
    doc["spec"]["autoscaling"] = {"mode": "disabled"}  # the autoscaler has its own test
    cluster.apply(doc)
    pending = wait_for(DVDDEPLOYMENT, "serve", "the pools to be created", phase="Progressing")
    assert pending["endpoint"] == "http://serve-gateway.default.svc:8080"
    names = sorted(
        d.metadata.name
        for d in apps.list_namespaced_deployment(NS, label_selector="vlmop.io/owner-name=serve").items
    )
    assert names == ["serve-gateway", "serve-language", "serve-vision"]
    assert cluster.core.read_namespaced_service("serve-gateway", NS).spec.ports[0].port == 8080

    # Only the gateway's pods (and the example's Prometheus namespace) reach the vision and language
    # pools; anyone reaches the gateway, on its port. (The emulator stores them; a CNI enforces them.)
    policies = {
        p.metadata.name: p.spec
        for p in NetworkingV1Api(cluster.client)
        .list_namespaced_network_policy(NS, label_selector="vlmop.io/owner-name=serve")
        .items
    }
    assert sorted(policies) == names
    gateway_pods = apps.read_namespaced_deployment("serve-gateway", NS).spec.template.metadata.labels
    for name in names:
        deployment, (rule,) = apps.read_namespaced_deployment(name, NS), policies[name].ingress
        assert policies[name].pod_selector.match_labels == deployment.spec.selector.match_labels
        assert policies[name].policy_types == ["Ingress"]
        assert [p.port for p in rule.ports] == [
            deployment.spec.template.spec.containers[0].ports[0].container_port
        ]
        if name == "serve-gateway":
            assert rule._from is None  # any source
        else:
            pods, monitoring = rule._from
            assert pods.pod_selector.match_labels == gateway_pods and pods.namespace_selector is None
            assert monitoring.namespace_selector.match_labels == {"kubernetes.io/metadata.name": "monitoring"}

    for name, ready in (("serve-vision", 1), ("serve-language", 1), ("serve-gateway", 2)):
        set_ready(apps, name, ready)
    ready = wait_for(DVDDEPLOYMENT, "serve", "every pool ready", phase="Ready")
    assert ready["vision"] == {"replicas": 1, "readyReplicas": 1} and ready["gateway"]["readyReplicas"] == 2
    assert {c["type"]: c["status"] for c in ready["conditions"]}["Ready"] == "True"
    assert ready["progress"] == "3/3 pools ready"
    reconciling = {c["type"]: c["status"] for c in ready["conditions"]}
    assert (reconciling["Reconciling"], reconciling["Stalled"]) == ("False", "False")  # kstatus: Current

    # Converged: resync ticks read the indexes only, and write nothing.
    before = len(cluster.server.api._requests)
    time.sleep(3)
    writes = [r for r in cluster.server.api._requests[before:] if r.method.value != "GET"]
    assert not writes, [(r.method, str(r.url)) for r in writes]

    set_ready(apps, "serve-language", 0)
    degraded = wait_for(DVDDEPLOYMENT, "serve", "the language pool to go", phase="Degraded")
    message = next(c["message"] for c in degraded["conditions"] if c["type"] == "Degraded")
    assert "language" in message
    set_ready(apps, "serve-language", 1)
    wait_for(DVDDEPLOYMENT, "serve", "recovery", phase="Ready")

    # Turning ViR off rolls the vision pool only: its template changes, the others keep theirs.
    before = {n: apps.read_namespaced_deployment(n, NS).metadata.resource_version for n in names}
    patch = {"spec": {"vision": {"vir": {"enabled": False}}}}
    cluster.custom.patch_namespaced_custom_object(G, V, NS, DVDDEPLOYMENT.plural, "serve", patch)

    def rolled() -> bool:
        args = apps.read_namespaced_deployment("serve-vision", NS).spec.template.spec.containers[0].args
        return "--no-vir" in args

    cluster.wait(rolled, 30, "the vision pool to roll")
    after = {n: apps.read_namespaced_deployment(n, NS).metadata.resource_version for n in names}
    assert (
        after["serve-gateway"] == before["serve-gateway"]
        and after["serve-language"] == before["serve-language"]
    )
