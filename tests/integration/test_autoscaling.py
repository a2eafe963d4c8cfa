"""The operator's autoscaler against a REAL Prometheus (Debian's `prometheus` package, started here on
127.0.0.1 with a generated config) scraping a small exporter that serves DCGM-named GPU gauges for
fake pods of the two pools: a busy vision pool scales up and the language pool follows it, an idle
one scales back down after its window, and when the metrics vanish the pools hold. Only the
Deployments' replicas change; the DvDDeployment's spec (and generation) never does."""

from __future__ import annotations

import copy
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes.client import ApiException, AppsV1Api

from vlmop.operator.api import DVDDEPLOYMENT
from vlmop.operator.localapi.cluster import LocalCluster
from vlmop.operator.localapi.loopback import free_port, wait_ready

NS = "default"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class Exporter:
    """Serves DCGM_FI_DEV_GPU_UTIL per fake pod, as the DCGM exporter does with pod labels."""

    def __init__(self) -> None:
        self.utilisation: dict[str, float] = {}  # pod -> percent
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                lines = [f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",namespace="{NS}",pod="{pod}"}} {value}'
                         for pod, value in sorted(exporter.utilisation.items())]  # fmt: skip
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Exporter]]:
    work, exporter, port = tmp_path_factory.mktemp("prometheus"), Exporter(), free_port()
    config = work / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: dcgm\n"
        "    honor_labels: true\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n"
    )
    command = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    log = (work / "prometheus.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/-/ready", process, work / "prometheus.log")
    yield url, exporter
    process.terminate()
    process.wait(10)
    exporter.server.shutdown()


def replicas(apps: AppsV1Api, name: str) -> int:
    """The Deployment's replicas; 0 before it exists."""
    try:
        return int(apps.read_namespaced_deployment(name, NS).spec.replicas)
    except ApiException as error:
        if error.status == 404:
            return 0
        raise


def test_pools_follow_gpu_utilisation_from_prometheus(
    cluster: LocalCluster, examples: dict[str, Any], prometheus: tuple[str, Exporter]
) -> None:
    url, exporter = prometheus
    apps = AppsV1Api(cluster.client)
    doc = copy.deepcopy(examples["dvddeployment"])
    doc["metadata"]["name"] = "scaled"
    doc["spec"]["autoscaling"] = {
        "mode": "operator", "prometheusUrl": url, "intervalSeconds": 1, "tolerance": 0.1,
        "scaleUpStabilizationSeconds": 0, "scaleDownStabilizationSeconds": 4, "maxStep": 2,
        "cooldownSeconds": 0, "metricStaleSeconds": 30,
        "vision": {"targetUtilization": 0.5}, "language": {"targetUtilization": 0.5},
    }  # fmt: skip
    # Vision busy (90% > 50%), language on target: vision doubles and language follows it.
    exporter.utilisation = {"scaled-vision-7d9f-a": 90.0, "scaled-language-5c4b-a": 50.0}
    cluster.apply(doc)
    cluster.wait(lambda: replicas(apps, "scaled-vision") >= 2, 30, "the vision pool to scale up")
    cluster.wait(lambda: replicas(apps, "scaled-language") >= 2, 30, "the language pool to follow")
    status = cluster.get(DVDDEPLOYMENT, "scaled")["status"]
    assert status["vision"]["reason"] in ("AboveTarget", "CoolingDown") and status["vision"]["lastScaleTime"]
    assert status["vision"]["metricValue"] == pytest.approx(0.9)
    events = cluster.core.list_namespaced_event(NS).items
    assert any(e.reason == "Scaled" and e.involved_object.name == "scaled" and "FollowsVision" in e.message
               for e in events)  # fmt: skip

    # Idle: after the 4 s scale-down window both go back to their minimum of 1.
    exporter.utilisation = {"scaled-vision-7d9f-a": 5.0, "scaled-language-5c4b-a": 5.0}
    cluster.wait(lambda: replicas(apps, "scaled-vision") == 1 == replicas(apps, "scaled-language"), 60,
                 "the pools to scale down")  # fmt: skip

    # The metrics vanish (the exporter lost its pods): the pools hold, saying why.
    exporter.utilisation = {}

    def vision() -> dict[str, Any]:
        row: dict[str, Any] = cluster.get(DVDDEPLOYMENT, "scaled")["status"]["vision"]
        return row

    cluster.wait(lambda: vision().get("reason") == "MetricsMissing", 30, "the autoscaler to see no metrics")
    held = {"vision": vision()}
    assert held["vision"]["desiredReplicas"] == 1 and replicas(apps, "scaled-vision") == 1
    obj = cluster.get(DVDDEPLOYMENT, "scaled")
    assert obj["metadata"]["generation"] == 1 and obj["spec"]["vision"]["minReplicas"] == 1  # spec untouched
