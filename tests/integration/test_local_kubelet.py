"""The local kubelet's Deployments and Services with real processes, no operator: replicas become
local servers each on its own loopback address, readiness comes from their probes, a ClusterIP Service
proxies to the ready ones and a headless one resolves to each, a rollout is surge-first (the Service
never goes dark), a crashing container restarts with back-off, and deleting the Deployment stops it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes.client import AppsV1Api, CoreV1Api

from vlmop.operator.localapi import monitoring
from vlmop.operator.localapi.cluster import LocalCluster
from vlmop.operator.localapi.podsite import resolver
from vlmop.operator.localapi.replicasets import Replica, rollout, strategy

NS = "default"
# A server that says which pod answered; ready once /ready exists, which it writes after START_DELAY.
SERVER = """
import http.server, os, sys, time, pathlib
time.sleep(float(os.environ.get("START_DELAY", "0")))
if os.environ.get("CRASH"):
    sys.exit(3)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (os.environ["POD_NAME"] + " " + os.environ.get("VERSION", "")).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
"""


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("kubelet")) as cluster:
        cluster.start_kubelet()
        cluster.kubelet.grace_seconds = 3
        yield cluster
        assert not cluster.kubelet.errors


def deployment(name: str, replicas: int, **env: str) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}
    container = {
        "name": "server",
        "image": "python",
        "command": ["python", "-c", SERVER],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                *({"name": k, "value": v} for k, v in env.items())],
        "ports": [{"name": "http", "containerPort": 8000}],
        "readinessProbe": probe,
    }  # fmt: skip
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def service(name: str, headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]}
    if headless:
        spec["clusterIP"] = "None"
    name = f"{name}-pods" if headless else name
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def resolve(local: LocalCluster, host: str, port: int) -> list[str]:
    """What a pod's resolver answers for `host` (the same sitecustomize, in a process of its own)."""
    script = "import socket, sys; print(sorted({a[4][0] for a in socket.getaddrinfo(*sys.argv[1:])}))"
    env = {**os.environ, **resolver(local.workdir / "hosts.json")}
    out = subprocess.run([sys.executable, "-c", script, host, str(port)], env=env, capture_output=True,
                         text=True, cwd="/", check=False)  # fmt: skip
    return list(json.loads(out.stdout.replace("'", '"'))) if out.returncode == 0 else []


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - a local pod
        return str(reply.read().decode())


def ready(apps: AppsV1Api, name: str) -> int:
    status = apps.read_namespaced_deployment(name, NS).status
    return int(status.ready_replicas or 0) if status else 0


def test_replicas_serve_behind_their_services(local: LocalCluster) -> None:
    apps, core = AppsV1Api(local.client), CoreV1Api(local.client)
    apps.create_namespaced_deployment(NS, deployment("web", 2))
    core.create_namespaced_service(NS, service("web"))
    core.create_namespaced_service(NS, service("web", headless=True))
    local.wait(lambda: ready(apps, "web") == 2, 30, "two ready replicas")
    pods = core.list_namespaced_pod(NS, label_selector="app=web").items
    ips = sorted(p.status.pod_ip for p in pods)
    assert len(set(ips)) == 2 and all(ip.startswith("127.") and ip != "127.0.0.1" for ip in ips)
    assert all(p.status.conditions[0].status == "True" for p in pods)
    local.wait(lambda: resolve(local, "web-pods.default.svc", 8000) == ips, 10, "headless DNS")
    (cluster_ip,) = resolve(local, "web.default.svc.cluster.local", 80)
    assert core.read_namespaced_service("web", NS).spec.cluster_ip == cluster_ip
    answers = {get(f"http://{cluster_ip}:80/").split()[0] for _ in range(8)}
    assert answers == {p.metadata.name for p in pods}  # the proxy spreads connections over both
    assert resolve(local, "nothing.default.svc", 80) == []  # an unknown cluster name does not resolve


def test_a_rollout_brings_new_pods_up_before_the_old_go(local: LocalCluster) -> None:
    apps, core = AppsV1Api(local.client), CoreV1Api(local.client)
    apps.create_namespaced_deployment(NS, deployment("roll", 1, VERSION="v1"))
    core.create_namespaced_service(NS, service("roll"))
    local.wait(lambda: ready(apps, "roll") == 1, 30, "the first replica")
    (cluster_ip,) = resolve(local, "roll.default.svc", 80)
    new = deployment("roll", 1, VERSION="v2", START_DELAY="2")
    apps.patch_namespaced_deployment("roll", NS, {"spec": new["spec"]})
    versions, deadline = [], time.monotonic() + 40
    while time.monotonic() < deadline and versions[-1:] != ["v2"]:
        versions.append(get(f"http://{cluster_ip}:80/").split()[1])  # fails if the pool goes dark
        time.sleep(0.2)
    assert versions[0] == "v1" and versions[-1] == "v2", versions
    local.wait(lambda: len(core.list_namespaced_pod(NS, label_selector="app=roll").items) == 1, 20, "v1 gone")


def test_a_crashing_container_restarts_with_back_off(local: LocalCluster) -> None:
    apps, core = AppsV1Api(local.client), CoreV1Api(local.client)
    apps.create_namespaced_deployment(NS, deployment("crash", 1, CRASH="1"))

    def state() -> Any:
        pods = core.list_namespaced_pod(NS, label_selector="app=crash").items
        statuses = pods[0].status.container_statuses if pods and pods[0].status else None  # not yet written
        return statuses[0] if statuses else None

    local.wait(lambda: bool(state() and state().restart_count >= 1), 30, "a restart")
    status = state()
    assert status.state.waiting.reason == "CrashLoopBackOff"
    assert status.last_state.terminated.exit_code == 3 and not status.ready
    assert ready(apps, "crash") == 0


def test_deleting_a_deployment_stops_its_processes(local: LocalCluster) -> None:
    apps, core = AppsV1Api(local.client), CoreV1Api(local.client)
    apps.create_namespaced_deployment(NS, deployment("gone", 1))
    local.wait(lambda: ready(apps, "gone") == 1, 30, "the replica")
    (pod,) = [p for p in local.kubelet.pods.values() if p.name.startswith("gone-")]
    assert pod.process is not None
    apps.delete_namespaced_deployment("gone", NS)
    local.wait(lambda: pod.process.poll() is not None, 15, "the process to stop")
    local.wait(lambda: not core.list_namespaced_pod(NS, label_selector="app=gone").items, 10, "the pod gone")


@pytest.mark.parametrize(
    ("want", "pods", "expected"),
    [
        (2, [], (2, [])),  # scale from nothing
        (1, [Replica("a", False, True)], (1, [])),  # surge first: the old one stays
        (1, [Replica("a", False, True), Replica("b", True, False)], (0, [])),  # until the new is ready
        (1, [Replica("a", False, True), Replica("b", True, True)], (0, ["a"])),
        (1, [Replica("a", False, False)], (1, ["a"])),  # an old pod that is not ready goes at once
        (1, [Replica("a", True, True), Replica("b", True, False)], (0, ["b"])),  # surplus: not ready first
        (0, [Replica("a", True, True)], (0, ["a"])),
    ],
)
def test_rollout_steps(want: int, pods: list[Replica], expected: tuple[int, list[str]]) -> None:
    assert rollout(want, 1, 0, pods) == expected


def test_the_local_prometheus_manifests_pass_kubernetes_schema(tmp_path: Path) -> None:
    kinds = (("v1", "ConfigMap"), ("apps/v1", "Deployment"), ("v1", "Service"))
    for (version, kind), manifest in zip(kinds, monitoring.manifests(tmp_path / "targets.json"), strict=True):
        body = {"apiVersion": version, "kind": kind, **manifest}
        kubernetes_validate.validate(body, "1.37", strict=True)


def test_strategy_counts() -> None:
    assert strategy({}, 4) == (1, 1)  # 25% each
    assert strategy({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "50%"}}}, 3) == (0, 1)
    assert strategy({"strategy": {"type": "Recreate"}}, 3) == (0, 3)


# Serves /metrics with a request-seconds counter that grows half a second per second: 50% busy.
EXPORTER = """
import http.server, time
start = time.time()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        busy = (time.time() - start) / 2
        body = f'vlmop_serving_request_seconds_sum{{component="vision"}} {busy}\\n'.encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
"""


def test_the_local_prometheus_scrapes_pods_and_records_the_gpu_stand_in(local: LocalCluster) -> None:
    if not shutil.which("prometheus"):
        pytest.fail("Debian's prometheus is missing: bash .ci/test installs it")
    monitoring.install(local, local.kubelet.targets_file)
    app = deployment("busy", 1)
    app["spec"]["template"]["spec"]["containers"][0]["command"] = ["python", "-c", EXPORTER]
    AppsV1Api(local.client).create_namespaced_deployment(NS, app)
    local.wait(lambda: bool(resolve(local, f"{monitoring.SERVICE}.{monitoring.NAMESPACE}", 9090)), 30, "DNS")
    (address,) = resolve(local, f"{monitoring.SERVICE}.{monitoring.NAMESPACE}", 9090)
    query = urllib.parse.quote('DCGM_FI_DEV_GPU_UTIL{namespace="default",pod=~"busy-.*"}')
    seen: list[Any] = []

    def recorded() -> bool:
        with contextlib.suppress(OSError):
            seen[:] = json.loads(get(f"http://{address}:9090/api/v1/query?query={query}"))["data"]["result"]
        return bool(seen) and 40 < float(seen[0]["value"][1]) < 60  # percent, as DCGM reports it

    local.wait(recorded, 90, "a 50% utilisation recorded")
