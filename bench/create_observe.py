"""Scale of the control plane: create N custom objects against the local API server with the real
operator running, at --rate creates per second (0: as fast as the client can), and measure
- the time until every object has its children and its status (converged),
- the latency from each create to its worker Job appearing (p50/p99; a watch in this process),
- the API requests the operator made per object, by verb (writes: creates, status patches, other
  patches, deletes, events), against the target of one create per child plus one status write,
- the operator's peak RSS,
- then, converged, its CPU share and API writes over --steady seconds of resync rounds (every object
  reconciled every 10 s: each a read of the indexes, no request).
Appends rows to bench/results.csv.

  python bench/create_observe.py                          # 1000 PretrainJobs, as fast as possible
  python bench/create_observe.py --rate 20                # 1000 PretrainJobs at 20 creates/s
  python bench/create_observe.py --count 200 --example dvddeployment"""

from __future__ import annotations

import argparse
import collections
import copy
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from vlmop.operator.localapi.cluster import LocalCluster, kind_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results as results_csv

ROOT = Path(__file__).resolve().parents[1]
OWNER = "vlmop.io/owner-name"
# The child whose appearance means "the operator acted", and how many children an object gets.
FIRST_CHILD = {
    "PretrainJob": ("batch", "jobs"),
    "CascadeRLJob": ("batch", "jobs"),
    "DvDDeployment": ("apps", "deployments"),
}


def watch_children(cluster: LocalCluster, kind: str, seen: dict[str, float], stop: threading.Event) -> None:
    """First time each owner's first child is seen (ADDED on a watch)."""
    group, _ = FIRST_CHILD[kind]
    api = (
        kubernetes.client.BatchV1Api(cluster.client)
        if group == "batch"
        else kubernetes.client.AppsV1Api(cluster.client)
    )
    lister = api.list_namespaced_job if group == "batch" else api.list_namespaced_deployment
    while not stop.is_set():
        stream = kubernetes.watch.Watch()
        try:
            for event in stream.stream(lister, "default", label_selector=OWNER, timeout_seconds=5):
                owner = (event["object"].metadata.labels or {}).get(OWNER)
                if owner and owner not in seen:
                    seen[owner] = time.monotonic()
                if stop.is_set():
                    break
        except Exception:  # the watch reconnects; the bench goes on
            time.sleep(0.1)


def classify(request: Any, plural: str) -> str:
    method, path = request.method.value, str(request.url)
    if method == "GET":
        return "reads"
    if method == "POST" and path.split("?")[0].endswith(f"/{plural}"):
        return "benchmark"  # this script's own creates
    if "/events" in path:
        return "events"
    if method == "POST":
        return "creates"
    if method == "DELETE":
        return "deletes"
    if method == "PATCH" and path.split("?")[0].endswith("/status"):
        return "status_patches"
    if method == "PATCH" and f"/{plural}/" in path:
        return "object_patches"  # kopf's bookkeeping on the custom object (annotations, finalizer)
    return "other_writes"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main(count: int, example: str, rate: float, steady: float) -> dict[str, float]:
    doc = yaml.safe_load((ROOT / "examples" / f"{example}.yaml").read_text())
    doc["spec"].pop("scheduling", None)  # no gang scheduler here: no PodGroup
    if doc["kind"] == "DvDDeployment":
        doc["spec"]["autoscaling"] = {"mode": "disabled"}
    info = kind_of(doc)
    with LocalCluster() as cluster:
        cluster.start_operator()
        seen: dict[str, float] = {}
        stop = threading.Event()
        watcher = threading.Thread(
            target=watch_children, args=(cluster, doc["kind"], seen, stop), daemon=True
        )
        watcher.start()
        time.sleep(1)
        requests_before = len(cluster.server.api._requests)
        created: dict[str, float] = {}
        start = time.monotonic()
        for i in range(count):
            if rate:
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
            item = copy.deepcopy(doc)
            item["metadata"]["name"] = f"bench-{i}"
            cluster.apply(item)
            created[item["metadata"]["name"]] = time.monotonic()
        create_seconds = time.monotonic() - start

        def converged() -> bool:
            items = cluster.custom.list_namespaced_custom_object(
                "vlmop.io", "v1alpha1", "default", info.plural
            )["items"]
            done = [o for o in items if (o.get("status") or {}).get("observedGeneration") == 1]
            return len(done) == count and len(seen) >= count

        cluster.wait(converged, 900, f"{count} {info.kind}s to converge")
        converged_seconds = time.monotonic() - start
        time.sleep(2)  # let the last writes land before counting
        stop.set()
        assert cluster.operator is not None
        pid = cluster.operator.pid
        kinds = collections.Counter(
            classify(r, info.plural) for r in cluster.server.api._requests[requests_before:]
        )
        settled, cpu_before = len(cluster.server.api._requests), cpu_seconds(pid)
        time.sleep(steady)
        cpu_share = (cpu_seconds(pid) - cpu_before) / steady
        steady_writes = sum(r.method.value != "GET" for r in cluster.server.api._requests[settled:])
        status = Path(f"/proc/{pid}/status").read_text()
        rss_mib = int(status.split("VmHWM:")[1].split()[0]) / 1024
    latencies = sorted(seen[name] - at for name, at in created.items() if name in seen)
    out = {
        "create_seconds": create_seconds,
        "converged_seconds": converged_seconds,
        "children_latency_p50_ms": 1000 * statistics.median(latencies),
        "children_latency_p99_ms": 1000
        * latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "operator_peak_rss_mib": rss_mib,
        "steady_cpu_percent": 100 * cpu_share,
        "steady_writes": steady_writes,
    }
    for name in ("creates", "status_patches", "object_patches", "deletes", "events", "other_writes", "reads"):
        out[f"{name}_per_object"] = kinds.get(name, 0) / count
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--example", default="pretrainjob")
    p.add_argument("--rate", type=float, default=0.0, help="creates per second; 0: as fast as possible")
    p.add_argument("--steady", type=float, default=30.0, help="seconds of converged resyncs to measure")
    args = p.parse_args()
    variant = f"{args.example} x{args.count}" + (f" at {args.rate:g}/s" if args.rate else "")
    results_csv.append("create_observe", variant, main(args.count, args.example, args.rate, args.steady))
