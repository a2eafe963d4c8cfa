"""What the integration tests share: the pods' side of the cluster (the emulator runs no Job
controller and no kubelet, so a test plays both) and rank 0's real progress endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes.client import AppsV1Api, BatchV1Api, CoreV1Api

from vlmop.operator.api import KindInfo
from vlmop.operator.localapi.cluster import LocalCluster
from vlmop.operator.localapi.loopback import free_port
from vlmop.workloads.common.progress import Reporter

NS = "default"


@pytest.fixture
def kubelet(cluster: LocalCluster) -> Kubelet:
    return Kubelet(cluster)


@pytest.fixture
def reporter() -> Iterator[tuple[Reporter, int]]:
    """The trainer's real progress endpoint, standing in for rank 0 at the pod IP 127.0.0.1."""
    reporter, port = Reporter(), free_port()
    reporter.serve(port, "127.0.0.1")
    yield reporter, port
    reporter.close()


class Kubelet:
    """Creates and updates the pods an Indexed Job would have, as the Job controller and kubelet do."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.core, self.batch = CoreV1Api(cluster.client), BatchV1Api(cluster.client)

    def job(self, name: str) -> Any:
        return self.batch.read_namespaced_job(name, NS)

    def start(self, job_name: str, nodes: int = 2, phase: str = "Running") -> list[str]:
        job = self.job(job_name)
        template = job.spec.template.metadata
        names = []
        for index in range(nodes):
            pod = {
                "metadata": {
                    "name": f"{job_name}-{index}-abcde",
                    "labels": dict(template.labels),
                    "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": job_name,
                            "uid": job.metadata.uid,
                            "controller": True,
                        }
                    ],
                },
                "spec": {"containers": [{"name": "trainer", "image": "x"}]},
            }
            self.core.create_namespaced_pod(NS, pod)
            self.set(pod["metadata"]["name"], phase)
            names.append(pod["metadata"]["name"])
        return names

    def set(
        self,
        pod: str,
        phase: str,
        message: str | None = None,
        exit_code: int = 0,
        reason: str | None = None,
        conditions: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """`reason`: the pod's status reason (Evicted); `conditions`: True (type, reason) pairs."""
        status: dict[str, Any] = {"phase": phase, "podIP": "127.0.0.1"}
        if reason:
            status["reason"] = reason
        if conditions:
            status["conditions"] = [{"type": t, "status": "True", "reason": r} for t, r in conditions]
        if message is not None:
            terminated = {
                "exitCode": exit_code,
                "reason": "Error" if exit_code else "Completed",
                "message": message,
            }
            status["containerStatuses"] = [
                {
                    "name": "trainer",
                    "image": "x",
                    "imageID": "x",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ]
        self.core.patch_namespaced_pod_status(pod, NS, {"status": status})

    def jobs(self, owner: str) -> list[str]:
        items = self.batch.list_namespaced_job(NS, label_selector=f"vlmop.io/owner-name={owner}").items
        return sorted(j.metadata.name for j in items)


@pytest.fixture
def wait_for(cluster: LocalCluster) -> Callable[..., dict[str, Any]]:
    """wait_for(kind, name, what, **expected): the status once every `expected` field has its value."""
    return lambda info, name, what, **expected: status_when(cluster, info, name, what, **expected)


def status_when(
    cluster: LocalCluster, info: KindInfo, name: str, what: str, **expected: Any
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def check() -> bool:
        seen.update(dict(cluster.get(info, name).get("status") or {}))
        return all(seen.get(k) == v for k, v in expected.items())

    cluster.wait(check, 30, f"{name}: {what} ({expected}); last status {seen}")
    return seen


@pytest.fixture
def owned(cluster: LocalCluster) -> Callable[[str], set[tuple[str, str]]]:
    """owned(owner): the (kind, name) of the Jobs, Deployments, Services and ConfigMaps it owns."""

    def children(owner: str) -> set[tuple[str, str]]:
        selector = f"vlmop.io/owner-name={owner}"
        batch, apps, core = BatchV1Api(cluster.client), AppsV1Api(cluster.client), cluster.core
        found = {
            ("Job", j.metadata.name) for j in batch.list_namespaced_job(NS, label_selector=selector).items
        }
        found |= {
            ("Deployment", d.metadata.name)
            for d in apps.list_namespaced_deployment(NS, label_selector=selector).items
        }
        found |= {
            ("Service", v.metadata.name)
            for v in core.list_namespaced_service(NS, label_selector=selector).items
        }
        found |= {
            ("ConfigMap", c.metadata.name)
            for c in core.list_namespaced_config_map(NS, label_selector=selector).items
        }
        return found

    return children
