"""The autoscaler's source: Prometheus' HTTP API (an instant PromQL query per signal). Per pool, matched
by namespace and pod-name prefix (`$namespace`, `$pool`: the pool's Deployment name, filled into every
query, including one the spec overrides):

- GPU utilisation: the DCGM exporter's DCGM_FI_DEV_GPU_UTIL (percent) averaged over the pool's pods, its
  age from the newest sample's timestamp (a custom query relies on Prometheus' own staleness);
- demand, for the SLO rule: requests completed per second, in flight, queued (vLLM), the percentile's
  queueing time and (vLLM) time to first token from their histograms, and (vlmop's servers) the busy
  fraction from the seconds spent computing batches.

A Prometheus that does not answer raises Unreachable (the round holds the pools); a query without data
is None (that signal is missing)."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request

from vlmop.operator.autoscaler.policy import Signal

POD = 'namespace="$namespace",pod=~"$pool-.*"'
UTILISATION = f"avg(DCGM_FI_DEV_GPU_UTIL{{{POD}}}) / 100"
AGE = f"time() - max(timestamp(DCGM_FI_DEV_GPU_UTIL{{{POD}}}))"
IN_FLIGHT = f"sum(vlmop_serving_in_flight{{{POD}}})"
VLLM_IN_FLIGHT = f"sum(vllm:num_requests_running{{{POD}}}) + sum(vllm:num_requests_waiting{{{POD}}})"
VLLM_WAITING = f"sum(vllm:num_requests_waiting{{{POD}}})"
# Rates over the spec's window ($window): at least four scrape intervals, and a series younger than it
# (a new pod's) counts only partly (rate() divides by the window), which errs towards more replicas.
COMPLETIONS = f'sum(rate(vlmop_serving_requests_total{{{POD},code="200"}}[$window]))'
VLLM_COMPLETIONS = f"sum(rate(vllm:request_success_total{{{POD}}}[$window]))"
BUSY = f"avg(rate(vlmop_serving_busy_seconds_total{{{POD}}}[$window]))"


def quantile(histogram: str, percentile: int) -> str:
    return f"histogram_quantile({percentile / 100}, sum by (le) (rate({histogram}_bucket{{{POD}}}[$window])))"


class Unreachable(Exception):
    """Prometheus did not answer (connection, timeout, HTTP error, not its API)."""


def fill(query: str, namespace: str, pool: str, window: int = 60) -> str:
    return query.replace("$namespace", namespace).replace("$pool", pool).replace("$window", f"{window}s")


def query(base_url: str, promql: str, timeout: float = 5.0) -> float | None:
    """The first value of an instant query; None when it has none or it is NaN."""
    url = f"{base_url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    if not url.startswith(("http://", "https://")):
        raise Unreachable(f"{base_url!r} is not an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 (checked above)
            body = json.loads(reply.read(1 << 20))
        data = body["data"]
    except urllib.error.HTTPError as error:
        if error.code == 400:  # Prometheus answered: the query is bad (a spec's override), not the server
            return None
        raise Unreachable(f"{base_url}: HTTP {error.code}") from error
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise Unreachable(f"{base_url}: {error}") from error
    try:
        if data["resultType"] == "scalar":
            value = float(data["result"][1])
        else:
            results = data["result"]
            if not results:
                return None
            value = float(results[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def signal(
    base_url: str,
    namespace: str,
    pool: str,
    utilisation_query: str | None = None,
    in_flight_query: str | None = None,
    ready: int | None = None,
    vllm: bool = False,
    percentile: int = 95,
    window: int = 60,
) -> Signal:
    """One pool's signals; raises Unreachable (at the first query that fails)."""

    def ask(promql: str | None) -> float | None:
        return None if promql is None else query(base_url, fill(promql, namespace, pool, window))

    value = ask(utilisation_query or UTILISATION)
    age = (ask(AGE) or 0.0) if value is not None and utilisation_query is None else 0.0
    in_flight = ask(in_flight_query or (VLLM_IN_FLIGHT if vllm else IN_FLIGHT))
    if vllm:
        completions, waiting, busy = ask(VLLM_COMPLETIONS), ask(VLLM_WAITING), None
        latency = ask(quantile("vllm:request_queue_time_seconds", percentile))
        ttft = ask(quantile("vllm:time_to_first_token_seconds", percentile))
    else:
        completions, waiting, busy = ask(COMPLETIONS), None, ask(BUSY)
        latency, ttft = ask(quantile("vlmop_serving_queue_seconds", percentile)), None
    return Signal(value, age, in_flight, ready, completions, waiting, latency, ttft, busy)
