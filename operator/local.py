"""`vlmop local`: the whole control plane on this machine, no cluster needed. Starts the API server
on loopback, installs the CRDs, runs the real operator process, applies the given CRs and prints
what the operator reported for each."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from vlmop.operator.localapi.cluster import LocalCluster, kind_of


def documents(paths: Iterable[Path]) -> list[dict[str, Any]]:
    files = [f for p in paths for f in (sorted(p.glob("*.yaml")) if p.is_dir() else [p])]
    return [doc for f in files for doc in yaml.safe_load_all(f.read_text()) if doc]


def summary(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    ready: dict[str, Any] = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
    return (
        f"{obj['kind']:<14} {obj['metadata']['name']:<24} {status.get('phase', '-'):<10} "
        f"Ready={ready.get('status', '-')} ({ready.get('reason', '-')}): {ready.get('message', '')}"
    )


def main(paths: Iterable[Path], serve: bool = False, timeout: float = 60) -> None:
    docs = documents(paths or [Path("examples")])
    with LocalCluster() as cluster:
        cluster.start_operator()
        print(f"API server {cluster.server.url}; operator log {cluster.log_path}")
        for doc in docs:
            cluster.apply(doc)
        for doc in docs:
            print(summary(cluster.wait_observed(kind_of(doc), doc["metadata"]["name"], timeout)))
        if serve:
            print(f"serving; try: KUBECONFIG={cluster.kubeconfig} kubectl get vlmop  (Ctrl-C stops)")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
