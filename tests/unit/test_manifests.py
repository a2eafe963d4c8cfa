"""Every manifest the builders and the chart emit, validated by Kubernetes' own published 1.37 schema
(kubernetes-validate, strict: an unknown or misplaced field is an error, as the API server's strict
field validation makes it): each kind's example under every gang scheduler, both CascadeRLJob stages,
every DvDDeployment autoscaling mode and policy, and the chart under several value sets. Kinds that
Kubernetes does not define (other projects' CRDs) are named in FOREIGN; any other kind a builder
makes is validated from the start."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

from vlmop.operator.api import CascadeRLJobSpec, DvDDeploymentSpec, PretrainJobSpec
from vlmop.operator.builders import cascaderljob, dvddeployment, pretrainjob
from vlmop.operator.localapi.cluster import podgroup_crd

from .test_chart import CHART

VERSION = "1.37"
# (apiVersion, kind) of other projects' custom resources: their schemas are their CRDs'.
FOREIGN = {
    ("scheduling.volcano.sh/v1beta1", "PodGroup"),
    ("scheduling.x-k8s.io/v1alpha1", "PodGroup"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("kopf.dev/v1", "KopfPeering"),
}


def owned(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["metadata"].update(namespace="team", uid="0b4c7a52-1c0e-4c1e-9d55-4c7b3a0e2f11")
    return doc


def builders(examples: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for gang in ("none", "volcano", "coscheduling", "kueue", "kubernetes"):
        doc = owned(examples["pretrainjob"])
        doc["spec"]["scheduling"] = {"gang": gang, "queueName": "q"}
        spec = PretrainJobSpec.model_validate(doc["spec"])
        for attempt in (0, 2):
            for m in pretrainjob.children(doc, spec, attempt, workers=True):
                yield f"PretrainJob gang={gang} attempt={attempt}", m
    for gang in ("none", "kubernetes"):
        doc = owned(examples["cascaderljob"])
        doc["spec"]["scheduling"] = {"gang": gang}
        spec = CascadeRLJobSpec.model_validate(doc["spec"])
        for stage in range(len(spec.stages)):
            for m in cascaderljob.children(doc, spec, stage, 1, workers=True):
                yield f"CascadeRLJob gang={gang} stage={stage}", m
    for mode in ("operator", "keda", "hpa", "disabled"):
        for policy in ("slo", "utilization"):
            doc = owned(examples["dvddeployment"])
            doc["spec"]["autoscaling"].update(mode=mode, policy=policy)
            spec = DvDDeploymentSpec.model_validate(doc["spec"])
            for m in dvddeployment.children(doc, spec, {"vision": 2, "language": 3}):
                yield f"DvDDeployment mode={mode} policy={policy}", m


CHART_VALUES = [
    {},
    {"watchNamespaces": ["team-a", "team-b"], "replicas": 2},
    {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}},
    {"dashboards": {"namespace": "monitoring", "annotations": {"grafana_folder": "vlmop"}}},
]


def chart() -> Iterator[tuple[str, dict[str, Any]]]:
    helm.disable_logging()
    for values in CHART_VALUES:
        rendered = helm.Chart.load(CHART).render(values, name="vlmop", namespace="vlmop-system")
        for text in rendered.values():
            for doc in yaml.safe_load_all(text):
                if doc:
                    yield f"chart {values}", doc


def check(where: str, manifest: dict[str, Any]) -> None:
    key = (manifest["apiVersion"], manifest["kind"])
    if key in FOREIGN:  # not Kubernetes' own (the schema looks kinds up by name: a PodGroup is
        return  # scheduling.k8s.io's there)
    try:
        kubernetes_validate.validate(manifest, VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise AssertionError(f"{where}: {manifest['kind']}/{manifest['metadata']['name']}: {error}") from None


def test_every_builder_manifest_is_valid_kubernetes(examples: dict[str, Any]) -> None:
    seen = set()
    for where, manifest in builders(examples):
        check(where, manifest)
        seen.add(manifest["kind"])
    # Every kind the builders make was among them (a builder's new kind is validated from the start).
    assert {"Job", "Service", "ConfigMap", "Deployment", "NetworkPolicy", "HorizontalPodAutoscaler",
            "ScaledObject", "PodGroup", "Workload", "CompositePodGroup"} <= seen  # fmt: skip


def test_every_chart_manifest_is_valid_kubernetes() -> None:
    seen = set()
    for where, manifest in chart():
        check(where, manifest)
        seen.add(manifest["kind"])
    assert {"CustomResourceDefinition", "ClusterRole", "Role", "Deployment", "ServiceMonitor"} <= seen


def test_the_test_clusters_podgroup_crds_are_valid_kubernetes() -> None:
    check("localapi", podgroup_crd("scheduling.x-k8s.io", "v1alpha1"))
