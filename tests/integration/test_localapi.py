"""The local API server over real HTTP with the official kubernetes client: the gaps of kmock 0.8
that it fills. No operator runs here."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiException

from vlmop.operator.api import PRETRAINJOB
from vlmop.operator.localapi.cluster import LocalCluster

G, V, NS = "vlmop.io", "v1alpha1", "default"


def http(
    cluster: LocalCluster, method: str, path: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(  # noqa: S310 - loopback only
        cluster.server.url + path, data=data, method=method, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def job(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "PretrainJob",
        "metadata": {"name": name, "labels": labels},
        "spec": {"model": {"preset": "tiny"}, "data": {"path": "/d"}, "topology": {"image": "img"}},
    }


def configmap(name: str, owner: dict[str, Any] | None = None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": f"{G}/{V}",
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]
    return {"metadata": meta, "data": {"k": "v"}}


def test_create_answers_201_with_server_fields(apiserver: LocalCluster) -> None:
    code, obj = http(apiserver, "POST", f"/apis/{G}/{V}/namespaces/{NS}/pretrainjobs", job("meta"))
    assert code == 201
    meta = obj["metadata"]
    assert len(meta["uid"]) == 36 and meta["generation"] == 1 and meta["namespace"] == NS
    assert meta["creationTimestamp"].endswith("Z") and int(meta["resourceVersion"]) > 0
    code, again = http(apiserver, "POST", f"/apis/{G}/{V}/namespaces/{NS}/pretrainjobs", job("meta"))
    assert (code, again["reason"]) == (409, "AlreadyExists")


def test_generate_name(apiserver: LocalCluster) -> None:
    made = [
        apiserver.core.create_namespaced_config_map(NS, {"metadata": {"generateName": "gen-"}})
        for _ in range(3)
    ]
    names = {m.metadata.name for m in made}
    assert len(names) == 3 and all(n.startswith("gen-") and len(n) == 9 for n in names)


def test_generation_moves_with_spec_not_metadata_or_status(apiserver: LocalCluster) -> None:
    custom = apiserver.custom
    created = custom.create_namespaced_custom_object(G, V, NS, "pretrainjobs", job("gen"))
    labelled = custom.patch_namespaced_custom_object(
        G, V, NS, "pretrainjobs", "gen", {"metadata": {"labels": {"a": "b"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    assert int(labelled["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    changed = custom.patch_namespaced_custom_object(
        G, V, NS, "pretrainjobs", "gen", {"spec": {"topology": {"nodes": 4}}}
    )
    assert changed["metadata"]["generation"] == 2
    noop = custom.patch_namespaced_custom_object(
        G, V, NS, "pretrainjobs", "gen", {"spec": {"topology": {"nodes": 4}}}
    )
    assert noop["metadata"]["resourceVersion"] == changed["metadata"]["resourceVersion"]


def test_status_subresource_separates_spec_and_status(apiserver: LocalCluster) -> None:
    custom = apiserver.custom
    custom.create_namespaced_custom_object(G, V, NS, "pretrainjobs", job("sub"))
    main = custom.patch_namespaced_custom_object(
        G, V, NS, "pretrainjobs", "sub", {"status": {"phase": "Running"}}
    )
    assert "status" not in main
    status = custom.patch_namespaced_custom_object_status(
        G, V, NS, "pretrainjobs", "sub", {"status": {"phase": "Running"}, "spec": {"topology": {"nodes": 9}}}
    )
    assert status["status"]["phase"] == "Running" and status["spec"]["topology"]["nodes"] == 1
    assert status["metadata"]["generation"] == 1
    with pytest.raises(ApiException) as error:
        custom.patch_namespaced_custom_object_status(
            G, V, NS, "pretrainjobs", "sub", {"status": {"phase": "Bogus"}}
        )
    assert error.value.status == 422 and "status.phase" in error.value.body


def test_put_requires_the_current_resource_version(apiserver: LocalCluster) -> None:
    custom = apiserver.custom
    obj = custom.create_namespaced_custom_object(G, V, NS, "pretrainjobs", job("put"))
    obj["spec"]["topology"]["nodes"] = 2
    replaced = custom.replace_namespaced_custom_object(G, V, NS, "pretrainjobs", "put", obj)
    assert replaced["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as error:
        custom.replace_namespaced_custom_object(G, V, NS, "pretrainjobs", "put", obj)  # stale version
    assert (error.value.status, json.loads(error.value.body)["reason"]) == (409, "Conflict")


def test_invalid_custom_object_is_rejected_naming_the_field(apiserver: LocalCluster) -> None:
    bad = job("bad")
    bad["spec"]["topology"]["nodes"] = 0
    with pytest.raises(ApiException) as error:
        apiserver.custom.create_namespaced_custom_object(G, V, NS, "pretrainjobs", bad)
    body = json.loads(error.value.body)
    assert (error.value.status, body["reason"]) == (422, "Invalid")
    assert 'PretrainJob.vlmop.io "bad" is invalid: spec.topology.nodes' in body["message"]
    assert body["details"]["causes"][0]["field"] == "spec.topology.nodes"
    with pytest.raises(ApiException):
        apiserver.custom.get_namespaced_custom_object(G, V, NS, "pretrainjobs", "bad")


def test_malformed_requests_get_4xx_and_the_server_keeps_serving(apiserver: LocalCluster) -> None:
    base = f"/apis/{G}/{V}/namespaces/{NS}/pretrainjobs"
    assert http(apiserver, "POST", base, b"{not json")[0] == 400
    assert http(apiserver, "GET", f"/apis/{G}/{V}/namespaces/{NS}/nothings")[0] == 404
    assert http(apiserver, "GET", base + "/missing")[0] == 404
    assert http(apiserver, "GET", base + "?labelSelector=a%3D(")[0] == 400
    assert http(apiserver, "PATCH", base + "/missing", {"spec": {}}, "application/merge-patch+json")[0] == 404
    assert http(apiserver, "GET", base)[0] == 200


def test_label_and_field_selectors(apiserver: LocalCluster) -> None:
    core = apiserver.core
    for name, role in (("sel-a", "vision"), ("sel-b", "language"), ("sel-c", "gateway")):
        core.create_namespaced_config_map(NS, configmap(name, tier="sel", role=role))
    names = lambda **kw: sorted(c.metadata.name for c in core.list_namespaced_config_map(NS, **kw).items)  # noqa: E731
    assert names(label_selector="tier=sel,role in (vision,gateway)") == ["sel-a", "sel-c"]
    assert names(label_selector="tier=sel,role!=vision") == ["sel-b", "sel-c"]
    assert names(label_selector="tier=sel", field_selector="metadata.name=sel-b") == ["sel-b"]
    assert names(label_selector="tier=sel", _request_timeout=5) == ["sel-a", "sel-b", "sel-c"]


def test_watch_resumes_from_a_resource_version(apiserver: LocalCluster) -> None:
    core = apiserver.core
    listed = core.list_namespaced_config_map(NS, label_selector="tier=watch")
    since = listed.metadata.resource_version
    core.create_namespaced_config_map(NS, configmap("w-1", tier="watch"))
    core.create_namespaced_config_map(NS, configmap("w-other", tier="other"))
    core.delete_namespaced_config_map("w-1", NS)
    events = [
        (e["type"], e["object"].metadata.name)
        for e in kubernetes.watch.Watch().stream(
            core.list_namespaced_config_map,
            NS,
            label_selector="tier=watch",
            resource_version=since,
            timeout_seconds=1,
        )
    ]
    assert events == [("ADDED", "w-1"), ("DELETED", "w-1")]


def test_watch_streams_live_events(apiserver: LocalCluster) -> None:
    core, seen = apiserver.core, []

    def watch() -> None:
        for event in kubernetes.watch.Watch().stream(
            core.list_namespaced_config_map, NS, label_selector="tier=live", timeout_seconds=3
        ):
            seen.append((event["type"], event["object"].metadata.name))

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(0.5)
    core.create_namespaced_config_map(NS, configmap("live-1", tier="live"))
    core.patch_namespaced_config_map("live-1", NS, {"data": {"k": "changed"}})
    thread.join(10)
    assert seen == [("ADDED", "live-1"), ("MODIFIED", "live-1")]


def test_garbage_collection_follows_owner_references(apiserver: LocalCluster) -> None:
    custom, core = apiserver.custom, apiserver.core
    owner = custom.create_namespaced_custom_object(G, V, NS, "pretrainjobs", job("owner"))
    other = custom.create_namespaced_custom_object(G, V, NS, "pretrainjobs", job("other-owner"))
    core.create_namespaced_config_map(NS, configmap("child", owner))
    shared = configmap("shared-child", owner)
    shared["metadata"]["ownerReferences"] += configmap("x", other)["metadata"]["ownerReferences"]
    core.create_namespaced_config_map(NS, shared)
    custom.delete_namespaced_custom_object(G, V, NS, "pretrainjobs", "owner")
    left = {c.metadata.name for c in core.list_namespaced_config_map(NS).items}
    assert "child" not in left and "shared-child" in left  # a second live owner keeps it

    orphaning = custom.create_namespaced_custom_object(G, V, NS, "pretrainjobs", job("orphaning"))
    core.create_namespaced_config_map(NS, configmap("orphan", orphaning))
    custom.delete_namespaced_custom_object(
        G, V, NS, "pretrainjobs", "orphaning", body={"propagationPolicy": "Orphan"}
    )
    orphan = core.read_namespaced_config_map("orphan", NS)
    assert not orphan.metadata.owner_references


def test_server_side_apply_creates_then_merges(apiserver: LocalCluster) -> None:
    core, apply = apiserver.core, {"field_manager": "vlmop", "_content_type": "application/apply-patch+yaml"}
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}}
    created = core.patch_namespaced_config_map("applied", NS, body, **apply)
    assert created.metadata.uid and created.data == {"a": "1"}
    body["data"] = {"a": "2", "b": "3"}
    merged = core.patch_namespaced_config_map("applied", NS, body, **apply)
    assert merged.metadata.uid == created.metadata.uid and merged.data == {"a": "2", "b": "3"}
    with pytest.raises(ApiException) as error:  # a plain merge patch never creates
        core.patch_namespaced_config_map("not-there", NS, {"data": {"a": "1"}})
    assert error.value.status == 404


def test_finalizers_hold_deletion_until_removed(apiserver: LocalCluster) -> None:
    core = apiserver.core
    core.create_namespaced_config_map(NS, {"metadata": {"name": "fin", "finalizers": ["vlmop.io/test"]}})
    core.delete_namespaced_config_map("fin", NS)
    held = core.read_namespaced_config_map("fin", NS)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("fin", NS, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as error:
        core.read_namespaced_config_map("fin", NS)
    assert error.value.status == 404


def test_discovery_serves_our_kinds(apiserver: LocalCluster) -> None:
    code, resources = http(apiserver, "GET", f"/apis/{G}/{V}")
    assert code == 200
    entry = next(r for r in resources["resources"] if r["name"] == PRETRAINJOB.plural)
    assert (entry["kind"], entry["shortNames"], entry["categories"]) == ("PretrainJob", ["ptj"], ["vlmop"])
    assert any(r["name"] == "pretrainjobs/status" for r in resources["resources"])


def test_kmock_reactions_still_answer_first(apiserver: LocalCluster) -> None:
    # Last in this module: once a test adds a reaction, every request takes kmock's slower matcher.
    # kmock slices count over the whole request log, so the fault is scoped to an unused namespace.
    import kmock

    async def inject_one_503() -> None:
        (
            apiserver.server.api[
                kmock.action.LIST, kmock.resource("v1/configmaps"), kmock.namespace("faulty")
            ][:1]
            << 503
        )

    apiserver.server.call(inject_one_503())
    with pytest.raises(ApiException) as error:
        apiserver.core.list_namespaced_config_map("faulty")
    assert error.value.status == 503
    apiserver.core.create_namespaced_config_map("faulty", configmap("after-fault"))
    served = apiserver.core.list_namespaced_config_map("faulty").items  # the reaction is spent
    assert [c.metadata.name for c in served] == ["after-fault"]
