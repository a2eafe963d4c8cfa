"""API faults: the local API server injects conflicts (409), throttling (429 with Retry-After), server
errors (500, 503), dropped watch streams and expired resourceVersions (410) into the operator's
requests; the operator retries with backoff, re-watches, and ends converged, every fault used up."""

from __future__ import annotations

import copy
from typing import Any

from vlmop.operator.api import DVDDEPLOYMENT, PRETRAINJOB, KindInfo
from vlmop.operator.localapi.cluster import LocalCluster
from vlmop.operator.localapi.server import Fault

NS = "default"


def test_faults_are_retried_and_the_operator_converges(
    cluster: LocalCluster, examples: dict[str, Any], owned: Any
) -> None:
    faults = [
        Fault(status=500, method="POST", plural="jobs", times=2),
        Fault(status=503, method="POST", plural="services", times=1),
        Fault(status=429, method="POST", plural="configmaps", times=1, retry_after=1),
        Fault(status=503, method="POST", plural="deployments", times=2),
        Fault(status=409, method="PATCH", plural="pretrainjobs", subresource="status", times=1),
        Fault(status=500, method="PATCH", plural="dvddeployments", times=1),
        Fault(status=0, plural="pods", watch=True, times=2),  # dropped streams
        Fault(status=410, plural="jobs", watch=True, times=1),  # resourceVersion expired
        Fault(status=410, plural="pretrainjobs", watch=True, times=1),
    ]
    cluster.stop_operator()  # its next watches meet the faults too
    cluster.server.api.faults.extend(faults)
    cluster.start_operator()

    docs: list[tuple[KindInfo, dict[str, Any], set[tuple[str, str]]]] = []
    for i in range(3):
        doc = copy.deepcopy(examples["pretrainjob"])
        doc["metadata"]["name"] = name = f"faulty-{i}"
        doc["spec"]["scheduling"] = {"gang": "none"}
        want = {("Service", f"{name}-workers"), ("ConfigMap", f"{name}-config"), ("Job", f"{name}-r0")}
        docs.append((PRETRAINJOB, doc, want))
    dvd = copy.deepcopy(examples["dvddeployment"])
    dvd["metadata"]["name"] = "faulty-dvd"
    dvd["spec"]["autoscaling"] = {"mode": "disabled"}
    pools = {
        (kind, f"faulty-dvd-{p}")
        for kind in ("Deployment", "Service")
        for p in ("vision", "language", "gateway")
    }
    docs.append((DVDDEPLOYMENT, dvd, pools))
    for _, doc, _ in docs:
        cluster.apply(doc)

    def converged() -> bool:
        for info, doc, want in docs:
            obj = cluster.get(info, doc["metadata"]["name"])
            if (obj.get("status") or {}).get("observedGeneration") != 1 or owned(
                doc["metadata"]["name"]
            ) != want:
                return False
        return True

    cluster.wait(converged, 180, "convergence through the injected faults")
    assert [f for f in faults if f.times] == [], "every fault was met"
    assert cluster.operator is not None and cluster.operator.poll() is None  # still running
