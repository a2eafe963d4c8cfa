"""The chart's Grafana dashboard against a REAL Prometheus (Debian's `prometheus`, started here on
127.0.0.1): every panel's query, its Grafana variables filled in, must be accepted and return data.
Prometheus scrapes a small exporter whose "pods" serve the real metric families, filled by the real
code: a pretraining and a GSPO trainer's Reporter (with RewardMetrics), the serving metrics of a
vision and a gateway pod, the operator's metrics, and vLLM's families under vLLM's own names. Each
scrape advances them by one step, so that rates and quantiles have something to say."""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python as helm
import prometheus_client
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from vlmop.operator import metrics as operator_metrics
from vlmop.operator.localapi.loopback import free_port, wait_ready
from vlmop.workloads.common.progress import Progress, Reporter
from vlmop.workloads.rl.gspo import RewardMetrics
from vlmop.workloads.rl.rewards.mixture import Tally
from vlmop.workloads.serving import metrics as serving_metrics

CHART = Path(__file__).resolve().parents[2] / "helm" / "vlmop"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
NS = "team-a"
# What Grafana puts in for its variables (one namespace chosen; 1 s scrapes).
VARIABLES = {"namespace": NS, "__rate_interval": "5s", "__interval": "1s", "__range": "1m"}


def dashboard() -> dict[str, Any]:
    out = helm.Chart.load(CHART).render({}, name="vlmop", namespace="vlmop-system")
    docs = [doc for text in out.values() for doc in yaml.safe_load_all(text) if doc]
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap" and "vlmop.json" in d.get("data", {})]
    board: dict[str, Any] = json.loads(config_map["data"]["vlmop.json"])
    return board


def fill(expr: str) -> str:
    """Grafana's `$name` / `${name}` variables (an unknown one fails); label_replace's `$1` stays."""
    return re.sub(r"\$\{?([A-Za-z_]\w*)\}?", lambda m: VARIABLES[m[1]], expr)


class Pod(Collector):
    """What one pod exports of a module's metrics (they live on the default registry): every family
    the module defines, only the samples of `component` when given."""

    def __init__(self, module: ModuleType, component: str | None = None) -> None:
        self.metrics = [m for m in vars(module).values() if isinstance(m, MetricWrapperBase)]
        self.component = component

    def collect(self) -> Iterable[Metric]:
        for family in itertools.chain.from_iterable(m.collect() for m in self.metrics):
            if self.component:
                family.samples = [s for s in family.samples if s.labels.get("component") == self.component]
            yield family


def registry_of(collector: Collector) -> prometheus_client.CollectorRegistry:
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def vllm_registry() -> tuple[prometheus_client.CollectorRegistry, Callable[[], None]]:
    """vLLM's families as its PrometheusStatLogger declares them (prometheus_client, label names
    model_name and engine): names checked against vllm 0.32.0, vllm/v1/metrics/loggers.py."""
    registry = prometheus_client.CollectorRegistry()
    names, engine = ["model_name", "engine"], ("internvl", "0")
    buckets = (0.02, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0)
    running, waiting, kv_cache = (
        prometheus_client.Gauge(name, name, names, registry=registry).labels(*engine)
        for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")
    )
    ttft, e2e, queue = (
        prometheus_client.Histogram(name, name, names, buckets=buckets, registry=registry).labels(*engine)
        for name in ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds",
                     "vllm:request_queue_time_seconds")
    )  # fmt: skip

    def step() -> None:
        running.set(4)
        waiting.set(2)
        kv_cache.set(0.35)
        ttft.observe(0.08)
        e2e.observe(1.7)
        queue.observe(0.03)

    return registry, step


def trainer(job: str, rl: bool) -> tuple[prometheus_client.CollectorRegistry, Callable[[], None]]:
    """Rank 0's registry as the trainer fills it, one optimizer step per call."""
    reporter = Reporter(job)
    rewards = RewardMetrics(reporter.registry) if rl else None  # as GSPOTrainer does
    steps = itertools.count(1)

    def step() -> None:
        n = next(steps)
        routing = {} if rl else {"auxLoss": 1.02, "expertLoadImbalance": 1.3}  # a MoE pretraining run
        progress = Progress(n, 1000, loss=2.0 / n, tokens_per_second=1.2e5, mfu=0.41, extra=routing)
        reporter.update(progress, tokens=n * 4096)
        reporter.checkpointed(n - n % 5, f"/ckpt/step-{n - n % 5}")
        if rewards:
            rewards.add("math", Tally(scored=58, failed=1, timed_out=1, full=16, total=30.5))
            rewards.add("code", Tally(scored=30, failed=2, timed_out=0, full=9, total=12.0))
            rewards.clip_fraction.set(0.02)

    return reporter.registry, step


def serving_step() -> None:
    for component, seconds in (("vision", 0.2), ("gateway", 1.9)):
        pool = serving_metrics.Metrics(component)
        pool.latency.observe(seconds)
        pool.queue.observe(seconds / 10)
        pool.busy.inc(0.4)
        pool.in_flight.set(3)
        pool.count(200)


def operator_step() -> None:
    m = operator_metrics
    with m.reconciling("DvDDeployment"):
        m.STATUS_WRITES.labels("DvDDeployment").inc()
        m.CHILD_WRITES.labels("DvDDeployment").inc(2)
    for pool, replicas in (("vision", 3), ("language", 2)):
        for state in ("current", "ready", "desired"):
            m.AUTOSCALER_REPLICAS.labels(NS, "chat", pool, state).set(replicas)
        m.AUTOSCALER_CAPACITY.labels(NS, "chat", pool).set(4.0)
        m.AUTOSCALER_FORECAST.labels(NS, "chat", pool).set(9.5)
        m.AUTOSCALER_DECISIONS.labels(NS, "chat", pool, "AboveTarget").inc()
    m.AUTOSCALER_PROMETHEUS_UP.labels(NS, "chat").set(1)


class Exporter:
    """One HTTP server, a path per pod; a scrape advances that pod by one step."""

    def __init__(self) -> None:
        vllm, vllm_step = vllm_registry()
        self.paths: dict[str, tuple[prometheus_client.CollectorRegistry, Callable[[], None]]] = {
            "/pretrain": trainer("pretrain", rl=False),
            "/gspo": trainer("pretrain", rl=True),
            "/vision": (registry_of(Pod(serving_metrics, "vision")), serving_step),
            "/gateway": (registry_of(Pod(serving_metrics, "gateway")), serving_step),
            "/language": (vllm, vllm_step),
            "/operator": (registry_of(Pod(operator_metrics)), operator_step),
        }
        lock, paths = threading.Lock(), self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry, step = paths[self.path]
                with lock:  # the serving and operator metrics are shared between paths
                    step()
                    body = prometheus_client.generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def scrape_config(port: int) -> str:
    """Target labels as kubernetes_sd gives them. Pods as a PodMonitor scrapes them (the trainer's own
    `job` label becomes exported_job); the operator as the chart's ServiceMonitor does (honorLabels:
    the autoscaler's series keep the DvDDeployment's namespace)."""

    def target(path: str, namespace: str, pod: str) -> str:
        labels = f"{{__metrics_path__: {path}, namespace: {namespace}, pod: {pod}}}"
        return f"      - {{targets: ['127.0.0.1:{port}'], labels: {labels}}}\n"

    return (
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: pods\n"
        "    static_configs:\n"
        + target("/pretrain", NS, "base-pretrain-0-x7k2p")
        + target("/gspo", NS, "cascade-gspo-0-q9w4r")
        + target("/vision", NS, "chat-vision-7d9f6c5b4-x2x4z")
        + target("/gateway", NS, "chat-gateway-6b8c9d7f5-q8w2e")
        + target("/language", NS, "chat-language-5c4b8f9d6-m3n7p")
        + "  - job_name: vlmop-operator\n"
        "    honor_labels: true\n"
        "    static_configs:\n" + target("/operator", "vlmop-system", "vlmop-5f8d9c7b6-abcde")
    )


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work, exporter, port = tmp_path_factory.mktemp("prometheus"), Exporter(), free_port()
    config = work / "prometheus.yml"
    config.write_text(scrape_config(exporter.port))
    command = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    log = (work / "prometheus.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/-/ready", process, work / "prometheus.log")
    yield url
    process.terminate()
    process.wait(10)
    exporter.server.shutdown()


def api(url: str, path: str, **params: str) -> dict[str, Any]:
    """Prometheus' JSON answer; a refused query (HTTP 400/422) answers with its error, not raises."""
    try:
        with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params)}", timeout=5) as reply:  # noqa: S310
            body: dict[str, Any] = json.loads(reply.read())
    except urllib.error.HTTPError as error:
        body = json.loads(error.read())
    return body


def problem(url: str, expr: str) -> str | None:
    """Why an instant query is no good (refused, empty, or no finite value); None when it is."""
    body = api(url, "/api/v1/query", query=expr)
    if body["status"] != "success":
        return f"refused: {body.get('error')}"
    values = [float(r["value"][1]) for r in body["data"]["result"]]
    if not values:
        return "empty"
    return None if any(math.isfinite(v) for v in values) else f"no finite value: {values}"


def test_every_panel_query_answers_from_the_real_metric_families(prometheus: str) -> None:
    board = dashboard()
    queries = {
        f"{panel['title']} [{target['refId']}]": fill(target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    }
    assert len(queries) >= 20
    deadline = time.monotonic() + 25  # counters need two scrapes (1 s apart) inside the rate window
    while True:
        problems = {name: why for name, expr in queries.items() if (why := problem(prometheus, expr))}
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not problems, "\n".join(f"{name}: {why}\n  {queries[name]}" for name, why in problems.items())

    # The $namespace variable's label_values(selector, label) lists the namespace (not the operator's).
    (variable,) = [v for v in board["templating"]["list"] if v["name"] == "namespace"]
    parts = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
    assert parts, variable["query"]
    selector, label = parts.groups()
    found = api(prometheus, f"/api/v1/label/{label}/values", **{"match[]": selector})
    assert found["status"] == "success" and found["data"] == [NS]
