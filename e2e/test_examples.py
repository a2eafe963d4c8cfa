"""The scenarios of each kind against a real cluster named by KUBECONFIG, with the vlmop CRDs and
operator installed (`e2e/kind-up.sh` makes one with Docker and kind; or `helm install` / `python
e2e/install.py` on any cluster). Each applies its example, waits for the children and conditions the
operator builds, checks what the real controllers did with them, deletes the object and checks that
garbage collection took the children. Without a KUBECONFIG there is no cluster: skipped, saying so."""

from __future__ import annotations

import copy
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.skipif(
    not os.environ.get("KUBECONFIG"), reason="no real cluster: set KUBECONFIG to run the e2e scenarios"
)

ROOT = Path(__file__).resolve().parents[1]
G, V = "vlmop.io", "v1alpha1"
PLURALS = {"PretrainJob": "pretrainjobs", "CascadeRLJob": "cascaderljobs", "DvDDeployment": "dvddeployments"}


@pytest.fixture(scope="module")
def api() -> Any:
    import kubernetes

    kubernetes.config.load_kube_config()
    return kubernetes.client


@pytest.fixture(scope="module")
def namespace(api: Any) -> Iterator[str]:
    name = f"vlmop-e2e-{uuid.uuid4().hex[:6]}"
    api.CoreV1Api().create_namespace({"metadata": {"name": name}})
    yield name
    api.CoreV1Api().delete_namespace(name)


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())
    return copy.deepcopy(doc)


def until(what: str, check: Callable[[], Any], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def status(api: Any, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    obj = api.CustomObjectsApi().get_namespaced_custom_object(
        G, V, namespace, PLURALS[doc["kind"]], doc["metadata"]["name"]
    )
    return dict(obj.get("status") or {})


def children(api: Any, namespace: str, owner: str) -> list[tuple[str, str]]:
    selector = f"vlmop.io/owner-name={owner}"
    out = [
        ("Job", j.metadata.name)
        for j in api.BatchV1Api().list_namespaced_job(namespace, label_selector=selector).items
    ]
    out += [
        ("Deployment", d.metadata.name)
        for d in api.AppsV1Api().list_namespaced_deployment(namespace, label_selector=selector).items
    ]
    core = api.CoreV1Api()
    out += [
        ("Service", s.metadata.name)
        for s in core.list_namespaced_service(namespace, label_selector=selector).items
    ]
    out += [
        ("ConfigMap", c.metadata.name)
        for c in core.list_namespaced_config_map(namespace, label_selector=selector).items
    ]
    return sorted(out)


def apply(api: Any, namespace: str, doc: dict[str, Any]) -> None:
    api.CustomObjectsApi().create_namespaced_custom_object(G, V, namespace, PLURALS[doc["kind"]], doc)


def delete_and_check_cleanup(api: Any, namespace: str, doc: dict[str, Any]) -> None:
    name = doc["metadata"]["name"]
    api.CustomObjectsApi().delete_namespaced_custom_object(G, V, namespace, PLURALS[doc["kind"]], name)
    until(f"{name}'s children to be garbage-collected", lambda: not children(api, namespace, name))


def claim(api: Any, namespace: str, name: str) -> None:
    api.CoreV1Api().create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip


def test_pretrainjob(api: Any, namespace: str) -> None:
    """The real Job controller takes the operator's Indexed Job: two worker pods with completion
    indexes. (Without the trainer image and data they do not train; their creation is what counts.)"""
    doc = example("pretrainjob")
    doc["spec"]["scheduling"] = {"gang": "none"}
    apply(api, namespace, doc)
    name = doc["metadata"]["name"]
    gang = {("Job", f"{name}-r0"), ("Service", f"{name}-workers"), ("ConfigMap", f"{name}-config")}
    until("the gang's Job, Service and ConfigMap", lambda: gang <= set(children(api, namespace, name)))
    until("both pods", lambda: len(api.CoreV1Api().list_namespaced_pod(
        namespace, label_selector=f"vlmop.io/owner-name={name}").items) == 2)  # fmt: skip
    pods = api.CoreV1Api().list_namespaced_pod(namespace, label_selector=f"vlmop.io/owner-name={name}").items
    indexes = sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert indexes == ["0", "1"]
    assert {c["type"] for c in status(api, namespace, doc)["conditions"]} >= {
        "Progressing",
        "Succeeded",
        "Failed",
    }
    delete_and_check_cleanup(api, namespace, doc)


def test_cascaderljob(api: Any, namespace: str) -> None:
    doc = example("cascaderljob")
    for name in ("rl-checkpoints", "rl-data"):
        claim(api, namespace, name)
    apply(api, namespace, doc)
    name = doc["metadata"]["name"]
    until("the mpo stage", lambda: status(api, namespace, doc).get("currentStage") == "mpo")
    until("the mpo gang", lambda: ("Job", f"{name}-s0-r0") in children(api, namespace, name))
    stages = {r["name"]: r["phase"] for r in status(api, namespace, doc)["stages"]}
    assert stages["gspo"] == "Waiting"
    delete_and_check_cleanup(api, namespace, doc)


def test_dvddeployment(api: Any, namespace: str) -> None:
    """The pools' Deployments and Services exist and the status follows their readiness (without the
    images pulled they do not become ready: Progressing, as kstatus and Argo CD read it)."""
    doc = example("dvddeployment")
    doc["spec"]["autoscaling"] = {"mode": "disabled"}
    apply(api, namespace, doc)
    name = doc["metadata"]["name"]
    expected = [
        (kind, f"{name}-{pool}")
        for kind in ("Deployment", "Service")
        for pool in ("gateway", "language", "vision")
    ]
    until("the three pools", lambda: set(expected) <= set(children(api, namespace, name)))
    found = until(
        "a status",
        lambda: (
            status(api, namespace, doc).get("phase") in ("Progressing", "Ready")
            and status(api, namespace, doc)
        ),
    )
    assert found["endpoint"] == f"http://{name}-gateway.{namespace}.svc:8080"
    delete_and_check_cleanup(api, namespace, doc)


def test_invalid_example_is_rejected_by_the_real_api_server(api: Any, namespace: str) -> None:
    doc = example("pretrainjob")
    doc["metadata"]["name"] = "invalid"
    doc["spec"]["topology"]["nodes"] = 0
    with pytest.raises(api.ApiException) as error:
        apply(api, namespace, doc)
    assert error.value.status == 422 and "spec.topology.nodes" in error.value.body
