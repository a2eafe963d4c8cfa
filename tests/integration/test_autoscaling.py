"""The operator's autoscaler against a REAL Prometheus (Debian's `prometheus` package, started here on
127.0.0.1 with a generated config) scraping a small exporter that serves, for fake pods of the two
pools, DCGM-named GPU gauges and the serving metrics (vLLM's and vlmop's names, counters that grow
with time): a busy vision pool scales up and the language pool follows it, an idle one scales back down
after its window, and when the metrics vanish the pools hold; the SLO rule sizes the language pool from
vLLM's counts and says why; a Prometheus that never answers holds the pools without holding up the
work queue. Only the Deployments' replicas change; the DvDDeployment's spec (and generation) never
does."""

from __future__ import annotations

import copy
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes.client import ApiException, AppsV1Api

from vlmop.operator.api import DVDDEPLOYMENT, DvDDeploymentSpec
from vlmop.operator.autoscaler import prometheus as prometheus_api
from vlmop.operator.builders import autoscaling
from vlmop.operator.localapi.cluster import LocalCluster
from vlmop.operator.localapi.loopback import free_port, wait_ready

NS = "default"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class Exporter:
    """Serves DCGM_FI_DEV_GPU_UTIL per fake pod, as the DCGM exporter does with pod labels, and any other
    series (`series`: name{labels} -> value, or rate for a counter that grows from the first scrape)."""

    def __init__(self) -> None:
        self.utilisation: dict[str, float] = {}  # pod -> percent
        self.series: dict[str, float] = {}
        self.rates: dict[str, float] = {}  # counters: name{labels} -> increase per second
        self.start = time.monotonic()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                lines = [f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",namespace="{NS}",pod="{pod}"}} {value}'
                         for pod, value in sorted(exporter.utilisation.items())]  # fmt: skip
                elapsed = time.monotonic() - exporter.start
                lines += [f"{name} {value}" for name, value in exporter.series.items()]
                lines += [f"{name} {rate * elapsed}" for name, rate in exporter.rates.items()]
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
        "mode": "operator", "policy": "utilization", "prometheusUrl": url, "intervalSeconds": 1,
        "tolerance": 0.1,
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


def set_ready(apps: AppsV1Api, name: str) -> int:
    """Every replica of the Deployment ready (as the Deployment controller would say); its replicas."""
    count = replicas(apps, name)
    if count:
        status = {
            "replicas": count,
            "readyReplicas": count,
            "updatedReplicas": count,
            "availableReplicas": count,
        }
        apps.patch_namespaced_deployment_status(name, NS, {"status": status})
    return count


def test_the_slo_rule_sizes_the_language_pool_from_vllms_counts(
    cluster: LocalCluster, examples: dict[str, Any], prometheus: tuple[str, Exporter]
) -> None:
    url, exporter = prometheus
    apps = AppsV1Api(cluster.client)
    doc = copy.deepcopy(examples["dvddeployment"])
    doc["metadata"]["name"] = "slo"
    doc["spec"]["language"] |= {"maxNumSeqs": 32, "maxReplicas": 8}
    doc["spec"]["vision"] |= {"maxReplicas": 1}  # the fake serves one vision pod's series
    doc["spec"]["autoscaling"] = {
        "mode": "operator", "prometheusUrl": url, "intervalSeconds": 1, "cooldownSeconds": 0,
        "scaleDownStabilizationSeconds": 2, "slo": {"queueSeconds": 2, "timeToFirstTokenSeconds": 5},
        "rateWindowSeconds": 4,  # 4 scrapes: the series are only seconds old
    }  # fmt: skip
    lm, vision = f'namespace="{NS}",pod="slo-language-5c4b-a"', f'namespace="{NS}",pod="slo-vision-7d9f-a"'
    # vLLM: 12 requests/s finish with 8 of the replica's 32 slots in use and none queued: Little's law
    # makes a full replica worth 48/s, so 12/s (a quarter of a replica; with square-root staffing's
    # headroom 0.25 + 0.5) needs the one. The vision server: 12 req/s at a busy fraction of 0.25 (its
    # busy-seconds counter), 48/s per replica as well.
    exporter.utilisation = {"slo-vision-7d9f-a": 25.0, "slo-language-5c4b-a": 100.0}  # DCGM: vLLM "busy"
    exporter.series = {f"vllm:num_requests_running{{{lm}}}": 8, f"vllm:num_requests_waiting{{{lm}}}": 0,
                       f'vlmop_serving_in_flight{{{vision},component="vision"}}': 1}  # fmt: skip
    exporter.rates = {f"vllm:request_success_total{{{lm}}}": 12.0,
                      f'vlmop_serving_requests_total{{{vision},component="vision",code="200"}}': 12.0,
                      f'vlmop_serving_busy_seconds_total{{{vision},component="vision"}}': 0.25}  # fmt: skip
    cluster.apply(doc)

    def row(pool: str) -> dict[str, Any]:
        for deployment in ("slo-vision", "slo-language"):
            set_ready(apps, deployment)
        found: dict[str, Any] = cluster.get(DVDDEPLOYMENT, "slo").get("status", {}).get(pool, {})
        return found

    def settled() -> bool:  # the first rounds' rates (and so the forecast's trend) are still rising
        language = row("language")
        return (
            language.get("reason", "").startswith("Slo")
            and replicas(apps, "slo-language") == 1
            and abs(language.get("forecastRequestsPerSecond", 0) - 12) < 2
            and replicas(apps, "slo-vision") == 1
        )

    cluster.wait(settled, 30, "the SLO rule to measure and settle")
    language, vision_row = row("language"), row("vision")
    assert language["capacityPerReplica"] == pytest.approx(48.0, rel=0.2), language
    assert language["forecastRequestsPerSecond"] == pytest.approx(12.0, rel=0.2), language
    assert "forecast" in language["message"] and "in flight 8.00" in language["message"], language
    assert vision_row["capacityPerReplica"] == pytest.approx(48.0, rel=0.2), vision_row
    assert replicas(apps, "slo-language") == 1 == replicas(apps, "slo-vision")  # 100% "busy" GPU or not
    # KEDA's triggers (mode keda) are the same signals; Prometheus answers each with what the policy read.
    spec = DvDDeploymentSpec.model_validate(doc["spec"])
    answers = {
        pool: [prometheus_api.query(url, prometheus_api.fill(query, NS, f"slo-{pool}"))
               for query, _, _ in autoscaling.signals(spec, pool)]
        for pool in ("vision", "language")
    }  # fmt: skip
    assert answers["vision"] == [pytest.approx(0.25, rel=0.1), pytest.approx(0.25)]  # busy s/s, DCGM
    assert answers["language"] == [8.0]  # in flight, against 32 slots x 0.85

    # Overload: every slot taken and 60 requests queued. The jump in flight is demand the forecast sees,
    # and a queue behind the replica makes its 12/s a measurement of its capacity: the pool grows.
    exporter.series |= {f"vllm:num_requests_running{{{lm}}}": 32, f"vllm:num_requests_waiting{{{lm}}}": 60}
    cluster.wait(lambda: replicas(apps, "slo-language") >= 2, 30, "the language pool to grow")
    language = row("language")
    assert language["reason"].startswith("Slo") and "queued 60.00" in language["message"], language
    assert language["capacityPerReplica"] < 48
    events = cluster.core.list_namespaced_event(NS).items
    assert any(e.reason == "Scaled" and e.involved_object.name == "slo" and "forecast" in e.message
               for e in events)  # fmt: skip
    (available,) = [c for c in cluster.get(DVDDEPLOYMENT, "slo")["status"]["conditions"]
                    if c["type"] == "MetricsAvailable"]  # fmt: skip
    assert available["status"] == "True"
    exporter.series, exporter.rates, exporter.utilisation = {}, {}, {}


def patch(cluster: LocalCluster, name: str, spec: dict[str, Any]) -> None:
    body = {"spec": spec}
    cluster.custom.patch_namespaced_custom_object(
        "vlmop.io", "v1alpha1", NS, DVDDEPLOYMENT.plural, name, body
    )


class Silent:
    """A TCP port that accepts connections and never answers (a Prometheus that hangs)."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"


def test_a_prometheus_that_never_answers_holds_the_pools_and_not_the_queue(
    cluster: LocalCluster, examples: dict[str, Any], prometheus: tuple[str, Exporter]
) -> None:
    url, exporter = prometheus
    apps = AppsV1Api(cluster.client)
    doc = copy.deepcopy(examples["dvddeployment"])
    doc["metadata"]["name"] = "held"
    doc["spec"]["autoscaling"] = {
        "mode": "operator", "policy": "utilization", "prometheusUrl": url, "intervalSeconds": 1,
        "cooldownSeconds": 0,
        "scaleDownStabilizationSeconds": 2, "vision": {"targetUtilization": 0.5},
    }  # fmt: skip
    exporter.utilisation = {"held-vision-7d9f-a": 100.0, "held-language-5c4b-a": 50.0}
    cluster.apply(doc)
    cluster.wait(lambda: replicas(apps, "held-vision") >= 2, 30, "the vision pool to scale up")
    silent = Silent()
    exporter.utilisation = {"held-vision-7d9f-a": 0.0, "held-language-5c4b-a": 0.0}  # idle, were it read
    patch(cluster, "held", {"autoscaling": {"prometheusUrl": silent.url}})
    size = replicas(apps, "held-vision")

    def condition() -> dict[str, Any]:
        conditions = cluster.get(DVDDEPLOYMENT, "held")["status"].get("conditions", [])
        return next((c for c in conditions if c["type"] == "MetricsAvailable"), {})

    cluster.wait(lambda: condition().get("reason") == "PrometheusUnreachable", 30, "the condition to say why")
    assert condition()["status"] == "False" and silent.url in condition()["message"]
    # While every query waits out its 5 s timeout, the work queue goes on: a new object's pools appear
    # at once, and a gateway replica count changed in the spec reaches the Deployment.
    started = time.monotonic()
    other = copy.deepcopy(examples["dvddeployment"])
    other["metadata"]["name"] = "other"
    other["spec"]["autoscaling"] = {"mode": "disabled"}
    cluster.apply(other)
    cluster.wait(lambda: replicas(apps, "other-gateway") > 0, 10, "another object's pools")
    patch(cluster, "held", {"gateway": {"replicas": 3}})
    cluster.wait(lambda: replicas(apps, "held-gateway") == 3, 10, "the spec change to reach the gateway")
    assert time.monotonic() - started < 5
    time.sleep(3)  # longer than the 2 s scale-down window: an idle pool would have shrunk
    assert replicas(apps, "held-vision") == size >= 2
    assert cluster.get(DVDDEPLOYMENT, "held")["status"]["vision"]["reason"] == "PrometheusUnreachable"
    silent.socket.close()
    exporter.utilisation = {}
