"""The Helm chart, rendered and linted with the Helm SDK (helm-python-sdk) under several value sets:
what it installs, how the operator pod is locked down, and an RBAC set equal to what the code needs,
which this test derives from the code itself (kopf's registered watches, the builders' children for
every example and mode, kube's write verbs), so a new API call without its rule, or a rule nothing
uses, fails here."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "vlmop"
Rule = tuple[str, str, str]  # (apiGroup, resource, verb)


@pytest.fixture(scope="module", autouse=True)
def quiet() -> None:
    helm.disable_logging()


def render(values: dict[str, Any] | None = None, namespace: str = "vlmop-system") -> list[dict[str, Any]]:
    out = helm.Chart.load(CHART).render(values or {}, name="vlmop", namespace=namespace)
    return [doc for text in out.values() for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def rules_of(role: dict[str, Any]) -> set[Rule]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group, resource, verb in itertools.product(rule["apiGroups"], rule["resources"], rule["verbs"])
    }


def needed(examples: dict[str, Any]) -> set[Rule]:
    """What the operator's code calls, derived from the code."""
    import kopf

    import vlmop.operator.handlers  # noqa: F401  (registers the handlers)
    from vlmop.operator import kube
    from vlmop.operator.api import (
        CASCADERLJOB,
        DVDDEPLOYMENT,
        KINDS,
        CascadeRLJobSpec,
        DvDDeploymentSpec,
        PretrainJobSpec,
    )
    from vlmop.operator.builders import cascaderljob, dvddeployment, gang, pretrainjob
    from vlmop.operator.builders.deepspeed import merged

    out: set[Rule] = {("", "events", "create")}  # kopf's posting and the handlers' kopf.event
    registry = kopf.get_default_registry()
    for handler in registry._indexing.get_all_handlers():  # kopf keeps them there
        out |= {(handler.selector.group or "", str(handler.selector.any_name), v) for v in ("list", "watch")}
    for info in KINDS:  # kopf watches (and lifts the finalizer older versions left), the queue writes status
        out |= {("vlmop.io", info.plural, v) for v in ("list", "watch", "patch")}
        out.add(("vlmop.io", f"{info.plural}/status", "patch"))
        if "run_policy" in info.spec.model_fields:  # ttlSecondsAfterFinished: kube.delete_owner
            out.add(("vlmop.io", info.plural, "delete"))

    def owned(doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        doc["metadata"].update(namespace="ns", uid="u")
        return doc

    children: list[dict[str, Any]] = []
    for gang_kind in ("none", "volcano", "coscheduling", "kueue", "kubernetes"):
        doc = owned(examples["pretrainjob"])
        doc["spec"] = merged(doc["spec"], {"scheduling": {"gang": gang_kind, "queueName": "q"}})
        spec = PretrainJobSpec.model_validate(doc["spec"])
        children += pretrainjob.children(doc, spec, 0, True)
        children += gang.pod_groups(pretrainjob.trainer_gang(doc, spec, 0))
        crl = owned(examples["cascaderljob"])
        crl["spec"] = merged(crl["spec"], {"scheduling": {"gang": gang_kind, "queueName": "q"}})
        crl_spec = CascadeRLJobSpec.model_validate(crl["spec"])
        children += cascaderljob.children(crl, crl_spec, 1, 0, True)
    for mode in ("operator", "keda", "hpa", "disabled"):
        dvd = owned(examples["dvddeployment"])
        dvd["spec"]["autoscaling"]["mode"] = mode
        children += dvddeployment.children(dvd, DvDDeploymentSpec.model_validate(dvd["spec"]))
    assert {CASCADERLJOB.kind, DVDDEPLOYMENT.kind} <= {
        c["metadata"]["ownerReferences"][0]["kind"] for c in children
    }
    for child in children:
        url = kube.path(child["apiVersion"], child["kind"], "ns")
        group = "" if child["apiVersion"] == "v1" else child["apiVersion"].split("/")[0]
        resource = url.rsplit("/", 1)[1]
        verbs = ["create", "delete"]  # kube.converge: create missing, delete orphans and replaced ones
        if child["kind"] not in kube.IMMUTABLE:
            verbs.append("patch")  # drifted children are merge-patched
        out |= {(group, resource, v) for v in verbs}
    return out


def test_default_install_is_cluster_wide_with_exactly_the_rules_the_code_needs(
    examples: dict[str, Any],
) -> None:
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    crds = ["CustomResourceDefinition"] * 3
    assert kinds == [
        "ClusterRole", "ClusterRoleBinding", "ConfigMap", *crds, "Deployment", "Service", "ServiceAccount"
    ]  # fmt: skip
    (role,) = by_kind(docs, "ClusterRole")
    granted = rules_of(role)
    assert not any("*" in part for rule in granted for part in rule), "no wildcards"
    assert granted == needed(examples)
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "vlmop", "namespace": "vlmop-system"}]


def test_the_operator_pod_is_locked_down() -> None:
    (deployment,) = by_kind(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert (
        pod["securityContext"]["runAsNonRoot"]
        and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    )
    security = container["securityContext"]
    assert security == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["image"] == "ghcr.io/vlmop/operator:0.1.0" and "--standalone" in container["args"]
    assert (
        container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        and container["resources"]["limits"]["memory"]
    )
    assert {v["name"] for v in pod["volumes"]} == {"tmp"}  # the only writable path


def test_namespaced_ha_install() -> None:
    docs = render({"watchNamespaces": ["team-a", "team-b"], "replicas": 2})
    assert not by_kind(docs, "ClusterRole")
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert ("kopf.dev", "kopfpeerings", "patch") in rules_of(roles[0])
    (deployment,) = by_kind(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering=vlmop" in args and "--standalone" not in args
    assert {"--namespace=team-a", "--namespace=team-b"} <= set(args)
    assert deployment["spec"]["replicas"] == 2
    assert sorted(p["metadata"]["namespace"] for p in by_kind(docs, "KopfPeering")) == ["team-a", "team-b"]
    crds = {c["metadata"]["name"] for c in by_kind(docs, "CustomResourceDefinition")}
    assert "kopfpeerings.kopf.dev" in crds


def test_crds_are_gated_and_kept_on_uninstall() -> None:
    crds = by_kind(render(), "CustomResourceDefinition")
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in crds)
    committed = {p.name for p in (CHART.parents[1] / "crds").glob("*.yaml")}
    assert {f"{c['metadata']['name']}.yaml" for c in crds} == committed  # the generated ones, all of them
    unkept = by_kind(render({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert all("helm.sh/resource-policy" not in (c["metadata"].get("annotations") or {}) for c in unkept)
    assert not by_kind(render({"crds": {"enabled": False}}), "CustomResourceDefinition")


def test_service_monitor_and_metrics_service() -> None:
    docs = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    (monitor,) = by_kind(docs, "ServiceMonitor")
    (service,) = by_kind(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["honorLabels"]  # the autoscaler's `namespace` label survives
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["port"] == 9090


def test_grafana_dashboard_for_the_sidecar() -> None:
    (config_map,) = by_kind(render(), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(config_map["data"]["vlmop.json"])
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert panels and all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in panels)
    datasources = [p["datasource"] for p in panels] + [t["datasource"] for p in panels for t in p["targets"]]
    assert all(d == {"type": "prometheus", "uid": "${datasource}"} for d in datasources)
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "namespace"}
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])

    values = {"dashboards": {"label": "dashboard", "labelValue": "vlmop", "namespace": "monitoring"}}
    (moved,) = by_kind(render(values), "ConfigMap")
    assert moved["metadata"]["labels"]["dashboard"] == "vlmop"
    assert moved["metadata"]["namespace"] == "monitoring"
    assert not by_kind(render({"dashboards": {"enabled": False}}), "ConfigMap")


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"replicas": 0}, "minimum"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "pattern"),
        ({"typo": 1}, "typo"),
    ],
)
def test_the_values_schema_refuses_bad_values(values: dict[str, Any], words: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=words):
        render(values)


def test_lint_passes() -> None:
    report = helm.lint(CHART, strict=True)
    assert report["errors"] == [] and all(m["severity"] < 2 for m in report["messages"]), report
