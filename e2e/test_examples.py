"""The integration scenarios against a real cluster named by KUBECONFIG, with the vlmop CRDs and
operator installed (helm install, or `kubectl apply -f crds/` plus a running operator). Without a
KUBECONFIG there is no cluster to test, so these are skipped and say so."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.skipif(
    not os.environ.get("KUBECONFIG"), reason="no real cluster: set KUBECONFIG to run the e2e scenarios"
)

ROOT = Path(__file__).resolve().parents[1]
PLURALS = {"PretrainJob": "pretrainjobs", "CascadeRLJob": "cascaderljobs", "DvDDeployment": "dvddeployments"}


@pytest.fixture(scope="module")
def api() -> Any:
    import kubernetes

    kubernetes.config.load_kube_config()
    return kubernetes.client


@pytest.fixture(scope="module")
def namespace(api: Any) -> Any:
    name = f"vlmop-e2e-{uuid.uuid4().hex[:6]}"
    api.CoreV1Api().create_namespace({"metadata": {"name": name}})
    yield name
    api.CoreV1Api().delete_namespace(name)


@pytest.mark.parametrize("example", ["pretrainjob", "cascaderljob", "dvddeployment"])
def test_example_is_accepted_and_observed(api: Any, namespace: str, example: str) -> None:
    doc = yaml.safe_load((ROOT / "examples" / f"{example}.yaml").read_text())
    custom, plural = api.CustomObjectsApi(), PLURALS[doc["kind"]]
    custom.create_namespaced_custom_object("vlmop.io", "v1alpha1", namespace, plural, doc)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        obj = custom.get_namespaced_custom_object(
            "vlmop.io", "v1alpha1", namespace, plural, doc["metadata"]["name"]
        )
        if (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]:
            break
        time.sleep(1)
    else:
        pytest.fail(f"{doc['kind']} was not observed by the operator within 120 s")
    expected = {"Progressing", "Failed"} if doc["kind"] == "PretrainJob" else {"Ready", "Failed"}
    assert {c["type"] for c in obj["status"]["conditions"]} >= expected
    custom.delete_namespaced_custom_object("vlmop.io", "v1alpha1", namespace, plural, doc["metadata"]["name"])


def test_invalid_example_is_rejected_by_the_real_api_server(api: Any, namespace: str) -> None:
    doc = yaml.safe_load((ROOT / "examples" / "pretrainjob.yaml").read_text())
    doc["metadata"]["name"] = "invalid"
    doc["spec"]["topology"]["nodes"] = 0
    with pytest.raises(api.ApiException) as error:
        api.CustomObjectsApi().create_namespaced_custom_object(
            "vlmop.io", "v1alpha1", namespace, "pretrainjobs", doc
        )
    assert error.value.status == 422 and "spec.topology.nodes" in error.value.body


def test_pretrainjob_children_on_a_real_cluster(api: Any, namespace: str) -> None:
    """The real Job controller takes the operator's Indexed Job: two pods with completion indexes.
    (Without the example's claims the pods stay Pending; their creation is what is checked here.)"""
    doc = yaml.safe_load((ROOT / "examples" / "pretrainjob.yaml").read_text())
    doc["metadata"]["name"] = "children"
    doc["spec"]["scheduling"] = {"gang": "none"}
    api.CustomObjectsApi().create_namespaced_custom_object(
        "vlmop.io", "v1alpha1", namespace, "pretrainjobs", doc
    )
    core, batch = api.CoreV1Api(), api.BatchV1Api()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(namespace, label_selector="vlmop.io/owner-name=children").items
        if len(pods) == 2:
            break
        time.sleep(1)
    else:
        pytest.fail("the Indexed Job's two worker pods did not appear within 120 s")
    job = batch.read_namespaced_job("children-r0", namespace)
    assert job.spec.completion_mode == "Indexed" and job.spec.completions == 2
    assert core.read_namespaced_service("children-workers", namespace).spec.cluster_ip == "None"
    indexes = sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert indexes == ["0", "1"]
