"""The serving pools' Prometheus metrics, labelled by component (vision, language, gateway), and GPU
utilisation from NVML when a GPU and pynvml are present (the DCGM exporter is the cluster's source)."""

from __future__ import annotations

import contextlib

import prometheus_client
from aiohttp import web

_REQUESTS = prometheus_client.Counter(
    "vlmop_serving_requests_total", "Requests by HTTP status.", ["component", "code"]
)
_LATENCY = prometheus_client.Histogram(
    "vlmop_serving_request_seconds",
    "Latency of successful requests.",
    ["component"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
_IN_FLIGHT = prometheus_client.Gauge("vlmop_serving_in_flight", "Requests being served.", ["component"])
_TOKENS = prometheus_client.Counter("vlmop_serving_tokens_total", "Tokens produced.", ["component"])
_BATCH = prometheus_client.Histogram(
    "vlmop_serving_batch_tiles",
    "Tiles per vision forward pass.",
    ["component"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
# What the autoscaler reads of a batching server: how long requests wait for a batch, and how much of
# the time the encoder computes (its busy fraction, the share of its capacity in use).
_QUEUE = prometheus_client.Histogram(
    "vlmop_serving_queue_seconds",
    "Time requests wait before their batch starts.",
    ["component"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
_BUSY = prometheus_client.Counter(
    "vlmop_serving_busy_seconds", "Seconds spent computing batches.", ["component"]
)
_GPU = prometheus_client.Gauge("vlmop_serving_gpu_utilization", "GPU utilisation (NVML), 0-1.", ["gpu"])


class Metrics:
    def __init__(self, component: str) -> None:
        self.component = component
        self.latency = _LATENCY.labels(component)
        self.in_flight = _IN_FLIGHT.labels(component)
        self.tokens = _TOKENS.labels(component)
        self.batch_tiles = _BATCH.labels(component)
        self.queue = _QUEUE.labels(component)
        self.busy = _BUSY.labels(component)

    def count(self, code: int | str) -> None:
        _REQUESTS.labels(self.component, str(code)).inc()


def _gpu_utilisation() -> None:
    with contextlib.suppress(Exception):  # no pynvml, no driver, no GPU: nothing to report
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        for i in range(pynvml.nvmlDeviceGetCount()):
            rates = pynvml.nvmlDeviceGetUtilizationRates(pynvml.nvmlDeviceGetHandleByIndex(i))
            _GPU.labels(str(i)).set(rates.gpu / 100)


async def metrics_handler(_: web.Request) -> web.Response:
    _gpu_utilisation()
    return web.Response(body=prometheus_client.generate_latest(), content_type="text/plain")
