"""The pools' NetworkPolicies on plain dicts: each selects exactly its pool's pods (compared with the
Deployments' pod templates), admits only its clients (the trainer gang's pods, compared with the Job's
pod template; the DvD gateway's pods) and the spec's metricsFrom peers on the pool's port, the
gateway admits anyone on its port, and `enabled: false` emits none. Every policy validates strictly
against Kubernetes' published schema (kubernetes-validate)."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from vlmop.operator.api import CascadeRLJobSpec, DvDDeploymentSpec
from vlmop.operator.builders import cascaderljob, dvddeployment, networkpolicy
from vlmop.operator.builders.common import MANAGED_BY, OWNER_KIND, OWNER_NAME
from vlmop.operator.builders.deepspeed import merged
from vlmop.operator.builders.pool import Pool

# The oldest Kubernetes the chart supports, and the newest schema the package has.
KUBERNETES = ("1.30", "1.37")
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
SCRAPER = {"podSelector": {"matchLabels": {"app": "prometheus"}}, **MONITORING}


def owned(doc: dict[str, Any], **spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["metadata"].update(namespace="ns", uid="uid-1")
    doc["spec"] = merged(doc["spec"], spec)
    return doc


def by_name(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{m['kind']}/{m['metadata']['name']}": m for m in manifests}


def dvd(doc: dict[str, Any], **spec: Any) -> dict[str, dict[str, Any]]:
    doc = owned(doc, **spec)
    return by_name(dvddeployment.children(doc, DvDDeploymentSpec.model_validate(doc["spec"])))


def crl(doc: dict[str, Any], current: int = 1, **spec: Any) -> dict[str, dict[str, Any]]:
    doc = owned(doc, **spec)
    kids = cascaderljob.children(doc, CascadeRLJobSpec.model_validate(doc["spec"]), current, 2, True)
    return by_name(kids)


def template_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return bool(selector["matchLabels"]) and selector["matchLabels"].items() <= labels.items()


def policies(kids: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {k.split("/", 1)[1]: m for k, m in kids.items() if m["kind"] == "NetworkPolicy"}
    for policy in out.values():
        for version in KUBERNETES:
            kubernetes_validate.validate(policy, version, strict=True)
    return out


def assert_guards_its_pool(
    policy: dict[str, Any], kids: dict[str, dict[str, Any]], owner: dict[str, Any]
) -> dict[str, Any]:
    """The policy selects its own pool's pods and no other pods of the owner; returns its one rule."""
    name = policy["metadata"]["name"]
    spec = policy["spec"]
    pods = {
        k.split("/", 1)[1]: template_labels(m) for k, m in kids.items() if m["kind"] in ("Deployment", "Job")
    }
    assert {n for n, labels in pods.items() if selects(spec["podSelector"], labels)} == {name}
    deployment = kids[f"Deployment/{name}"]
    assert spec["podSelector"] == deployment["spec"]["selector"]  # what the pool's ReplicaSets select
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    (port,) = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port["containerPort"]}]
    meta = policy["metadata"]
    assert meta["ownerReferences"][0]["uid"] == owner["metadata"]["uid"] and meta["namespace"] == "ns"
    assert meta["labels"][MANAGED_BY] == "vlmop" and meta["labels"][OWNER_KIND] == owner["kind"]
    assert meta["labels"][OWNER_NAME] == owner["metadata"]["name"]
    return dict(rule)


def test_only_the_gateway_reaches_the_dvd_pools_and_anyone_the_gateway(examples: dict[str, Any]) -> None:
    kids = dvd(examples["dvddeployment"])
    found = policies(kids)
    assert sorted(found) == ["tiny-dvd-gateway", "tiny-dvd-language", "tiny-dvd-vision"]
    gateway_pods = template_labels(kids["Deployment/tiny-dvd-gateway"])
    owner = owned(examples["dvddeployment"])
    for pool in ("vision", "language"):
        rule = assert_guards_its_pool(found[f"tiny-dvd-{pool}"], kids, owner)
        gateway, *extra = rule["from"]
        assert gateway == {"podSelector": {"matchLabels": gateway_pods}}
        assert extra == [MONITORING]  # the example's Prometheus namespace, for /metrics
        others = [template_labels(m) for k, m in kids.items() if k.startswith("Deployment/")]
        assert [labels for labels in others if selects(gateway["podSelector"], labels)] == [gateway_pods]
    rule = assert_guards_its_pool(found["tiny-dvd-gateway"], kids, owner)
    assert "from" not in rule  # any source, on the gateway's port only


def test_only_the_current_trainer_gang_reaches_the_rollout_and_verifier_pools(
    examples: dict[str, Any],
) -> None:
    doc = owned(examples["cascaderljob"])
    stage = doc["spec"]["stages"][1]
    pool = {"image": "ghcr.io/example/compass-verifier:1", "port": 8100}
    stage["rewards"]["verifiers"].append({"name": "judge", "type": "model", "pool": pool})
    kids = crl(doc, networkPolicy={"metricsFrom": [SCRAPER]})
    found = policies(kids)
    assert sorted(found) == ["tiny-cascade-rl-rollout", "tiny-cascade-rl-verifier-3"]
    trainers = template_labels(kids["Job/tiny-cascade-rl-s1-r2"])
    for policy in found.values():
        rule = assert_guards_its_pool(policy, kids, doc)
        assert rule["from"] == [{"podSelector": {"matchLabels": trainers}}, SCRAPER]
    # The peer is this attempt's gang: an earlier attempt's pods (still terminating) do not match.
    peer = found["tiny-cascade-rl-rollout"]["spec"]["ingress"][0]["from"][0]["podSelector"]
    assert selects(peer, trainers) and not selects(peer, trainers | {"vlmop.io/attempt": "1"})


def test_an_mpo_stage_has_no_pools_and_no_policies(examples: dict[str, Any]) -> None:
    assert not policies(crl(examples["cascaderljob"], current=0))


@pytest.mark.parametrize("kind", ["dvddeployment", "cascaderljob"])
def test_disabled_emits_none(examples: dict[str, Any], kind: str) -> None:
    build = dvd if kind == "dvddeployment" else crl
    kids = build(examples[kind], networkPolicy={"enabled": False})
    assert not policies(kids) and any(k.startswith("Deployment/") for k in kids)


def test_no_sources_is_no_rule_not_an_open_one(examples: dict[str, Any]) -> None:
    doc = owned(examples["dvddeployment"])
    pool = dvddeployment.vision_pool(doc, DvDDeploymentSpec.model_validate(doc["spec"]))
    assert isinstance(pool, Pool)
    closed = networkpolicy.policy(pool, [])
    assert closed["spec"]["ingress"] == []  # an empty `from` would have admitted every source
    kubernetes_validate.validate(closed, KUBERNETES[-1], strict=True)
