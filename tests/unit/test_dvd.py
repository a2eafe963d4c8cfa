"""DvDDeployment on plain dicts: the three pools' Deployments and Services (commands, probes, rolling
updates, the API key by reference only, the model claim) and the status table of their readiness."""

from __future__ import annotations

import copy
import datetime
import itertools
from typing import Any

import kubernetes_validate
import pytest

from vlmop.operator import availability
from vlmop.operator.api import DvDDeploymentSpec
from vlmop.operator.availability import DeploymentView
from vlmop.operator.builders import dvddeployment as build

NOW = datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC)


def children(doc: dict[str, Any], **changes: Any) -> dict[str, dict[str, Any]]:
    doc = copy.deepcopy(doc)
    doc["metadata"].update(namespace="serve", uid="u")
    for key, value in changes.items():
        doc["spec"][key].update(value)
    spec = DvDDeploymentSpec.model_validate(doc["spec"])
    return {f"{m['kind']}/{m['metadata']['name']}": m for m in build.children(doc, spec)}


def pod(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def flags(args: list[str]) -> dict[str, str]:
    return {a: b for a, b in itertools.pairwise(args) if a.startswith("--")}


def test_the_example_becomes_three_pools_behind_services(examples: dict[str, Any]) -> None:
    kids = children(examples["dvddeployment"])
    assert sorted(kids) == [f"{kind}/tiny-dvd-{pool}" for kind in ("Deployment", "NetworkPolicy", "Service")
                            for pool in ("gateway", "language", "vision")]  # fmt: skip
    vision = pod(kids["Deployment/tiny-dvd-vision"])["containers"][0]
    assert vision["command"] == ["python", "-m", "vlmop.workloads.serving.vision"]
    assert flags(vision["args"])["--model"] == "/models/internvl-tiny" and "--no-vir" not in vision["args"]
    assert vision["volumeMounts"] == [{"name": "model", "mountPath": "/models", "readOnly": True}]
    assert vision["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert vision["resources"]["limits"]["nvidia.com/gpu"] == "1"

    language = pod(kids["Deployment/tiny-dvd-language"])["containers"][0]
    assert language["command"] == ["vllm", "serve", "/models/internvl-tiny"]
    assert (
        "--enable-mm-embeds" in language["args"] and flags(language["args"])["--tensor-parallel-size"] == "1"
    )

    gateway = kids["Deployment/tiny-dvd-gateway"]
    container = pod(gateway)["containers"][0]
    f = flags(container["args"])
    assert f["--vision-url"] == "http://tiny-dvd-vision.serve.svc:8001"
    assert f["--language-url"] == "http://tiny-dvd-language.serve.svc:8000"
    assert f["--language-protocol"] == "vllm"
    key = next(e for e in container["env"] if e["name"] == "VLMOP_API_KEY")
    reference = {"name": "dvd-api-key", "key": "token", "optional": False}
    assert key == {"name": "VLMOP_API_KEY", "valueFrom": {"secretKeyRef": reference}}
    assert gateway["spec"]["replicas"] == 2 and "nvidia.com/gpu" not in str(container["resources"])
    assert gateway["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    for name in ("vision", "language", "gateway"):
        spec = pod(kids[f"Deployment/tiny-dvd-{name}"])
        assert spec["automountServiceAccountToken"] is False and spec["securityContext"]["runAsNonRoot"]
        assert kids[f"Service/tiny-dvd-{name}"]["spec"].get("clusterIP") != "None"


def test_vir_off_and_the_cpu_stand_in(examples: dict[str, Any]) -> None:
    kids = children(
        examples["dvddeployment"], vision={"vir": {"enabled": False}}, language={"engine": "vlmop"}
    )
    assert "--no-vir" in pod(kids["Deployment/tiny-dvd-vision"])["containers"][0]["args"]
    language = pod(kids["Deployment/tiny-dvd-language"])["containers"][0]
    assert language["command"] == ["python", "-m", "vlmop.workloads.serving.language"]
    gateway = pod(kids["Deployment/tiny-dvd-gateway"])["containers"][0]
    assert flags(gateway["args"])["--language-protocol"] == "vlmop"


def view(component: str, replicas: int, ready: int, updated: int | None = None) -> DeploymentView:
    return DeploymentView(
        f"d-{component}", component, replicas, ready, replicas if updated is None else updated
    )


def pools(
    vision: tuple[int, int], language: tuple[int, int], gateway: tuple[int, int] = (2, 2)
) -> dict[str, Any]:
    return {"vision": view("vision", *vision), "language": view("language", *language),
            "gateway": view("gateway", *gateway)}  # fmt: skip


@pytest.mark.parametrize(
    ("before", "seen", "phase", "ready"),
    [
        (None, {}, "Pending", "False"),
        (None, pools((1, 0), (1, 1)), "Progressing", "False"),
        (None, pools((1, 1), (1, 1)), "Ready", "True"),
        ("Ready", pools((2, 1), (1, 1)), "Progressing", "False"),  # scaling up: not every replica yet
        ("Ready", pools((1, 0), (1, 1)), "Degraded", "False"),  # a pool that served has none left
        ("Degraded", pools((1, 1), (1, 1)), "Ready", "True"),
    ],
)
def test_status_follows_the_pools(before: str | None, seen: dict[str, Any], phase: str, ready: str) -> None:
    status = availability.decide(build.POOLS, seen, {"phase": before} if before else {}, 3, "http://gw", NOW)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (status["phase"], conditions["Ready"]["status"]) == (phase, ready)
    assert conditions["Degraded"]["status"] == ("True" if phase == "Degraded" else "False")
    assert status["endpoint"] == "http://gw" and status["observedGeneration"] == 3
    if "vision" in seen:
        assert status["vision"] == {
            "replicas": seen["vision"].replicas,
            "readyReplicas": seen["vision"].ready,
        }


def test_the_first_status_counts_the_pools_just_created(examples: dict[str, Any]) -> None:
    """The round that creates the pools reports them as the next round (its index showing them, no
    replica ready) will: one status write, not a "not created" one and then another."""
    desired = list(children(examples["dvddeployment"]).values())
    names = {m["metadata"]["name"] for m in desired if m["kind"] == "Deployment"}
    created = availability.with_created(
        {}, desired, lambda kind, name: kind == "Deployment" and name in names
    )
    indexed = {c: view(c, created[c].replicas, 0, 0) for c in build.POOLS}
    first = availability.decide(build.POOLS, created, {}, 1, "http://gw", NOW)
    assert first == availability.decide(build.POOLS, indexed, {}, 1, "http://gw", NOW)
    assert first["phase"] == "Progressing" and "not created" not in first["conditions"][0]["message"]
    assert availability.with_created({}, desired, lambda kind, name: False) == {}  # not written: missing


def test_keda_and_hpa_modes_leave_the_replicas_to_them(examples: dict[str, Any]) -> None:
    auto = {"prometheusUrl": "http://prom:9090", "scaleDownStabilizationSeconds": 120, "maxStep": 2}
    keda = children(examples["dvddeployment"], autoscaling={**auto, "mode": "keda"})
    scaled = keda["ScaledObject/tiny-dvd-vision"]
    assert "replicas" not in keda["Deployment/tiny-dvd-vision"]["spec"]  # KEDA's HPA owns the count
    assert keda["Deployment/tiny-dvd-gateway"]["spec"]["replicas"] == 2  # the gateway is not scaled
    # The signals the operator's slo policy reads: the vision server's busy seconds per second at the
    # 0.85 target load, with DCGM's utilisation beside it; vLLM's requests in flight at 256 slots x 0.85.
    busy, utilisation = (t["metadata"] for t in scaled["spec"]["triggers"])
    pods = 'namespace="serve",pod=~"tiny-dvd-vision-.*"'
    assert (busy["query"], busy["threshold"]) == (
        f"sum(rate(vlmop_serving_busy_seconds_total{{{pods}}}[60s]))",
        "0.85",
    )
    assert utilisation["query"] == f"sum(DCGM_FI_DEV_GPU_UTIL{{{pods}}}) / 100"
    assert (utilisation["threshold"], scaled["spec"]["maxReplicaCount"]) == ("0.7", 4)
    (in_flight,) = (t["metadata"] for t in keda["ScaledObject/tiny-dvd-language"]["spec"]["triggers"])
    assert "vllm:num_requests_running" in in_flight["query"] and in_flight["threshold"] == "217.6"
    down = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] == 120 and down["policies"][0]["value"] == 2

    hpa = children(examples["dvddeployment"], autoscaling={**auto, "mode": "hpa"})[
        "HorizontalPodAutoscaler/tiny-dvd-language"
    ]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "tiny-dvd-language",
    }
    ((running),) = hpa["spec"]["metrics"]
    assert running["pods"]["metric"]["name"] == "vllm_num_requests_running"
    assert running["pods"]["target"] == {"type": "AverageValue", "averageValue": "217600m"}
    legacy = children(examples["dvddeployment"], autoscaling={**auto, "mode": "hpa", "policy": "utilization"})
    (gpu,) = legacy["HorizontalPodAutoscaler/tiny-dvd-language"]["spec"]["metrics"]
    assert gpu["pods"]["target"] == {"type": "AverageValue", "averageValue": "70"}
    for made in (hpa, legacy["HorizontalPodAutoscaler/tiny-dvd-vision"]):  # Kubernetes' own schema says so
        kubernetes_validate.validate(made, "1.37", strict=True)

    operator = children(examples["dvddeployment"])  # mode operator: replicas from its choice in status
    assert operator["Deployment/tiny-dvd-vision"]["spec"]["replicas"] == 1
    spec = DvDDeploymentSpec.model_validate(examples["dvddeployment"]["spec"])
    doc = {**examples["dvddeployment"], "metadata": {"name": "tiny-dvd", "namespace": "serve", "uid": "u"}}
    chosen = {f"{m['kind']}/{m['metadata']['name']}": m for m in build.children(doc, spec, {"vision": 3})}
    assert chosen["Deployment/tiny-dvd-vision"]["spec"]["replicas"] == 3
    assert not any(k.startswith(("ScaledObject", "HorizontalPodAutoscaler")) for k in chosen)
