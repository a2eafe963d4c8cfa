"""The operator's own Prometheus metrics: reconcile counts, durations, outcomes and status writes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import prometheus_client

RECONCILES = prometheus_client.Counter(
    "vlmop_reconcile_total", "Reconciles by kind and result (success, invalid, error).", ["kind", "result"]
)
DURATION = prometheus_client.Histogram(
    "vlmop_reconcile_duration_seconds",
    "Time spent in one reconcile.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STATUS_WRITES = prometheus_client.Counter(
    "vlmop_status_writes_total", "Status patches written (one per reconcile at most).", ["kind"]
)
CHILD_WRITES = prometheus_client.Counter(
    "vlmop_child_writes_total", "Children created, replaced or deleted to converge an owner.", ["kind"]
)
IDLE_OBJECTS = prometheus_client.Gauge(
    "vlmop_workqueue_idle_objects",
    "Objects with nothing time-driven left (finished jobs without a TTL): no resync, events only.",
    ["kind"],
)

# The autoscaler's view of each DvD pool (mode operator), per object: what it read, estimated and chose.
_POOL = ["namespace", "name", "pool"]
AUTOSCALER_REPLICAS = prometheus_client.Gauge(
    "vlmop_autoscaler_replicas", "A pool's replicas: current, ready and desired (the last decision).",
    [*_POOL, "state"],
)  # fmt: skip
AUTOSCALER_CAPACITY = prometheus_client.Gauge(
    "vlmop_autoscaler_capacity_per_replica", "Requests/s one replica serves, estimated online.", _POOL
)
AUTOSCALER_FORECAST = prometheus_client.Gauge(
    "vlmop_autoscaler_forecast_requests_per_second", "Arrival rate forecast one start-up delay ahead.", _POOL
)
AUTOSCALER_DECISIONS = prometheus_client.Counter(
    "vlmop_autoscaler_scaling_decisions", "Scaling actions taken, by reason.", [*_POOL, "reason"]
)
AUTOSCALER_PROMETHEUS_UP = prometheus_client.Gauge(
    "vlmop_autoscaler_prometheus_up", "1 when the last round's Prometheus queries answered, else 0.",
    ["namespace", "name"],
)  # fmt: skip


@dataclass
class Outcome:
    result: str = "success"


@contextlib.contextmanager
def reconciling(kind: str) -> Iterator[Outcome]:
    """Count and time one reconcile; an escaping exception counts as an error and is re-raised."""
    outcome, start = Outcome(), time.perf_counter()
    try:
        yield outcome
    except Exception:
        outcome.result = "error"
        raise
    finally:
        DURATION.labels(kind).observe(time.perf_counter() - start)
        RECONCILES.labels(kind, outcome.result).inc()


def serve(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from other pods
    prometheus_client.start_http_server(port, addr)
