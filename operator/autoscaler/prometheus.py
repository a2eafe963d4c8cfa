"""The autoscaler's source: Prometheus' HTTP API (an instant PromQL query per signal). By default the
DCGM exporter's DCGM_FI_DEV_GPU_UTIL (percent) averaged over the pool's pods, matched by namespace and
pod-name prefix; `$namespace` and `$pool` (the pool's Deployment name) are filled into a query the
spec overrides. The sample age comes from the newest DCGM sample's timestamp (a custom query relies
on Prometheus' own staleness: a series gone for 5 minutes is missing)."""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request

from vlmop.operator.autoscaler.policy import Signal

UTILISATION = 'avg(DCGM_FI_DEV_GPU_UTIL{namespace="$namespace",pod=~"$pool-.*"}) / 100'
AGE = 'time() - max(timestamp(DCGM_FI_DEV_GPU_UTIL{namespace="$namespace",pod=~"$pool-.*"}))'
IN_FLIGHT = 'sum(vlmop_serving_in_flight{namespace="$namespace",pod=~"$pool-.*"})'
VLLM_IN_FLIGHT = (
    'sum(vllm:num_requests_running{namespace="$namespace",pod=~"$pool-.*"})'
    ' + sum(vllm:num_requests_waiting{namespace="$namespace",pod=~"$pool-.*"})'
)


def fill(query: str, namespace: str, pool: str) -> str:
    return query.replace("$namespace", namespace).replace("$pool", pool)


def query(base_url: str, promql: str, timeout: float = 5.0) -> float | None:
    """The first value of an instant query; None when it has none, is NaN, or Prometheus fails."""
    url = f"{base_url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    if not url.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 (checked above)
            body = json.loads(reply.read(1 << 20))
        data = body["data"]
        if data["resultType"] == "scalar":
            value = float(data["result"][1])
        else:
            results = data["result"]
            if not results:
                return None
            value = float(results[0]["value"][1])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return value if math.isfinite(value) else None


def signal(
    base_url: str,
    namespace: str,
    pool: str,
    utilisation_query: str | None = None,
    in_flight_query: str | None = None,
    ready: int | None = None,
) -> Signal:
    value = query(base_url, fill(utilisation_query or UTILISATION, namespace, pool))
    age = 0.0
    if value is not None and utilisation_query is None:
        age = query(base_url, fill(AGE, namespace, pool)) or 0.0
    in_flight = query(base_url, fill(in_flight_query, namespace, pool)) if in_flight_query else None
    return Signal(value, age, in_flight, ready)
