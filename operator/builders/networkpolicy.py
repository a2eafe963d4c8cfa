"""A NetworkPolicy per server pool. A pool's one port serves more than inference: the rollout server's
weight reload (/v1/load_weights; vLLM's dev-mode /collective_rpc, /pause), and /metrics. So a pool
admits only its own clients (a stage's trainer pods, the DvD gateway's pods) plus the peers the spec
names for scraping; the DvD gateway is the front door and admits anyone, on its port only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vlmop.operator.api.common import NetworkPeer, NetworkPolicy
from vlmop.operator.builders.common import Manifest, owned
from vlmop.operator.builders.pool import Pool, selector

API_VERSION = "networking.k8s.io/v1"


def pods_of(workload: Manifest) -> dict[str, Any]:
    """The peer that is a Job's or Deployment's pods: its pod template's labels."""
    return {"podSelector": {"matchLabels": dict(workload["spec"]["template"]["metadata"]["labels"])}}


def peer(spec: NetworkPeer) -> dict[str, Any]:
    chosen = {"namespaceSelector": spec.namespace_selector, "podSelector": spec.pod_selector}
    return {k: {"matchLabels": dict(v.match_labels)} for k, v in chosen.items() if v is not None}


def policy(pool: Pool, sources: Sequence[Mapping[str, Any]] | None) -> Manifest:
    """Ingress to the pool's pods on its port from `sources` alone (None: from anywhere); every other
    port of those pods, and every other source, is refused."""
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": pool.port}]}
    if sources is not None:
        rule["from"] = [dict(s) for s in sources]
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": {"name": pool.name},
        "spec": {
            "podSelector": {"matchLabels": selector(pool)},
            "policyTypes": ["Ingress"],
            # An empty `from` would mean any source: no sources at all is no rule at all.
            "ingress": [rule] if sources is None or sources else [],
        },
    }
    return owned(pool.owner, manifest, pool.component)


def policies(
    settings: NetworkPolicy, served: Iterable[Pool], clients: Sequence[Mapping[str, Any]] | None
) -> list[Manifest]:
    """One policy per pool in `served`, admitting `clients` and the spec's metricsFrom peers (None:
    anyone); none when the spec turns them off."""
    if not settings.enabled:
        return []
    sources = None if clients is None else [*clients, *(peer(p) for p in settings.metrics_from)]
    return [policy(p, sources) for p in served]
