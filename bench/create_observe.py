"""Create N CRs against the local API server with the real operator running; report how long until
the operator has observed them all, its peak RSS and the API requests served. Appends rows to
bench/results.csv.  Usage: python bench/create_observe.py [N] [example]"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import yaml

from vlmop.operator.localapi.cluster import LocalCluster, kind_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results as results_csv

ROOT = Path(__file__).resolve().parents[1]


def main(count: int, example: str) -> dict[str, float]:
    doc = yaml.safe_load((ROOT / "examples" / f"{example}.yaml").read_text())
    info = kind_of(doc)
    with LocalCluster() as cluster:
        cluster.start_operator()
        requests_before = len(cluster.server.api._requests)
        start = time.monotonic()
        for i in range(count):
            item = copy.deepcopy(doc)
            item["metadata"]["name"] = f"bench-{i}"
            cluster.apply(item)
        created = time.monotonic() - start

        def all_observed() -> bool:
            items = cluster.custom.list_namespaced_custom_object(
                "vlmop.io", "v1alpha1", "default", info.plural
            )["items"]
            done = [o for o in items if (o.get("status") or {}).get("observedGeneration") == 1]
            return len(done) == count

        cluster.wait(all_observed, 600, f"{count} {info.kind}s to be observed")
        observed = time.monotonic() - start
        assert cluster.operator is not None
        status = Path(f"/proc/{cluster.operator.pid}/status").read_text()
        rss_mib = int(status.split("VmHWM:")[1].split()[0]) / 1024
        requests = len(cluster.server.api._requests) - requests_before
    return {
        "create_seconds": created,
        "all_observed_seconds": observed,
        "operator_peak_rss_mib": rss_mib,
        "api_requests": requests,
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    example = sys.argv[2] if len(sys.argv) > 2 else "pretrainjob"
    results = main(n, example)
    results_csv.append("create_observe", f"{example} x{n}", results)
