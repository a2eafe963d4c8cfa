"""Scale of the control plane: create N custom objects against the local API server with the real
operator running, at --rate creates per second (0: as fast as the client can), and measure
- when every object has converged (its first child exists and status.observedGeneration is current),
  counted from the last create,
- the latency from each create to its first child appearing (a Job; a DvDDeployment's Deployment),
  p50/p99, seen by raw watches in this process, and the server's parts of it: a create's round trip
  and the watch lag (an object's ADDED event after its create returned),
- the API requests the operator made per object, by verb (writes: creates, status patches, other
  patches, deletes, events), against the target of one create per child plus one status write,
- the operator's peak RSS and CPU seconds, and the API server's CPU seconds (a thread of this
  process: --profile samples both and splits this process's time by thread),
- then, converged, the operator's CPU share and API writes over --steady seconds of resync rounds.
Appends rows to bench/results.csv.

  python bench/create_observe.py                          # 1000 PretrainJobs, as fast as possible
  python bench/create_observe.py --rate 20                # 1000 PretrainJobs at 20 creates/s
  python bench/create_observe.py --count 10000 --rate 50 --example mixed --profile /tmp/prof
                                                          # the three kinds in turn, py-spy profiles"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import http.client
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import yaml

from vlmop.operator.localapi.cluster import LocalCluster, kind_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pyspy
import results as results_csv

ROOT = Path(__file__).resolve().parents[1]
OWNER = "vlmop.io/owner-name"
MIXED = ("pretrainjob", "cascaderljob", "dvddeployment")  # --example mixed: these in turn
# Where each kind's first child appears: the sign that the operator acted.
CHILDREN = ("/apis/batch/v1/namespaces/default/jobs", "/apis/apps/v1/namespaces/default/deployments")


def stream(url: str, path: str, on_event: Any, stop: threading.Event, **params: str) -> None:
    """A raw watch (one JSON event per line; no client models to build), reopened if it ends."""
    where = urlsplit(url)
    query = urlencode({"watch": "true", "timeoutSeconds": "3600", **params})
    while not stop.is_set():
        conn = http.client.HTTPConnection(where.hostname, where.port, timeout=5)
        try:
            conn.request("GET", f"{path}?{query}")
            response = conn.getresponse()
            while not stop.is_set():
                line = response.readline()
                if not line:
                    break
                if line.strip():
                    on_event(json.loads(line), time.monotonic())
        except OSError:  # a quiet watch times out its read: read again
            pass
        finally:
            conn.close()


class Observer:
    """First time each owner's first child is seen, and each object's status is current."""

    def __init__(self, url: str, plurals: set[str]) -> None:
        self.child: dict[str, float] = {}
        self.added: dict[str, float] = {}  # the object's own ADDED event: the server's watch lag
        self.observed: dict[str, float] = {}
        self.stop = threading.Event()
        watches = [(path, self.on_child, {"labelSelector": OWNER}) for path in CHILDREN]
        watches += [(f"/apis/vlmop.io/v1alpha1/namespaces/default/{p}", self.on_owner, {}) for p in plurals]
        for path, on_event, params in watches:
            args = (url, path, on_event, self.stop)
            threading.Thread(target=stream, args=args, kwargs=params, daemon=True).start()

    def on_child(self, event: dict[str, Any], at: float) -> None:
        owner = (event["object"]["metadata"].get("labels") or {}).get(OWNER)
        if owner:
            self.child.setdefault(owner, at)

    def on_owner(self, event: dict[str, Any], at: float) -> None:
        obj = event["object"]
        self.added.setdefault(obj["metadata"]["name"], at)
        if (obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get("generation"):
            self.observed.setdefault(obj["metadata"]["name"], at)

    def converged(self, name: str) -> float | None:
        if name in self.child and name in self.observed:
            return max(self.child[name], self.observed[name])
        return None


def classify(request: Any, plurals: set[str]) -> str:
    method, path = request.method.value, str(request.url).split("?")[0]
    if method == "GET":
        return "reads"
    if method == "POST" and path.rsplit("/", 1)[-1] in plurals:
        return "benchmark"  # this script's own creates
    if "/events" in path:
        return "events"
    if method == "POST":
        return f"creates {path.rsplit('/', 1)[-1]}"
    if method == "DELETE":
        return "deletes"
    if method == "PATCH" and path.endswith("/status"):
        return f"status_patches {path.split('/')[-3]}"
    if method == "PATCH" and any(f"/{plural}/" in path for plural in plurals):
        return "object_patches"  # kopf's bookkeeping on the custom object (annotations, finalizer)
    return "other_writes"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def peak_rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmHWM:")[1].split()[0]) / 1024


def load(example: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / f"{example}.yaml").read_text())
    doc["spec"].pop("scheduling", None)  # no gang scheduler here: no PodGroup
    if doc["kind"] == "DvDDeployment":
        doc["spec"]["autoscaling"] = {"mode": "disabled"}
    return doc


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(count: int, example: str, rate: float, steady: float, profile: Path | None) -> dict[str, float]:
    docs = [load(name) for name in (MIXED if example == "mixed" else (example,))]
    plurals = {kind_of(doc).plural for doc in docs}
    with LocalCluster() as cluster:
        cluster.start_operator(verbose=False)  # as deployed: no debug logs
        assert cluster.operator is not None
        pid = cluster.operator.pid
        observer = Observer(cluster.server.url, plurals)
        time.sleep(1)
        requests_before = len(cluster.server.api._requests)
        created: dict[str, float] = {}
        round_trips: list[float] = []  # the server's: each create's POST, as this client sees it
        cpu_before = cpu_seconds(pid), cpu_seconds(os.getpid())
        with contextlib.ExitStack() as profiling:
            if profile:
                profile.mkdir(parents=True, exist_ok=True)
                profiling.enter_context(pyspy.record(pid, profile / "operator.txt"))
                profiling.enter_context(pyspy.record(os.getpid(), profile / "server.txt"))
            start = time.monotonic()
            for i in range(count):
                if rate:
                    time.sleep(max(0.0, start + i / rate - time.monotonic()))
                item = copy.deepcopy(docs[i % len(docs)])
                item["metadata"]["name"] = f"bench-{i}"
                sent = time.monotonic()
                cluster.apply(item)
                created[item["metadata"]["name"]] = time.monotonic()
                round_trips.append(created[item["metadata"]["name"]] - sent)
            last_create = time.monotonic()
            cluster.wait(
                lambda: all(observer.converged(name) for name in created), 900, f"{count} objects to converge"
            )
        cpu = cpu_seconds(pid) - cpu_before[0], cpu_seconds(os.getpid()) - cpu_before[1]
        time.sleep(2)  # let the last writes land before counting
        kinds = collections.Counter(
            classify(r, plurals) for r in cluster.server.api._requests[requests_before:]
        )
        settled, steady_before = len(cluster.server.api._requests), cpu_seconds(pid)
        with pyspy.record(pid, profile / "operator-steady.txt") if profile else contextlib.nullcontext():
            time.sleep(steady)
        cpu_share = (cpu_seconds(pid) - steady_before) / steady
        steady_writes = sum(r.method.value != "GET" for r in cluster.server.api._requests[settled:])
        rss = peak_rss_mib(pid), peak_rss_mib(os.getpid())
        observer.stop.set()
    latencies = [observer.child[name] - at for name, at in created.items()]
    lags = [observer.added[name] - at for name, at in created.items()]
    last = max(t for name in created if (t := observer.converged(name)) is not None)
    out = {
        "create_seconds": last_create - start,
        "converged_after_last_create_seconds": last - last_create,
        "first_child_latency_p50_ms": 1000 * statistics.median(latencies),
        "first_child_latency_p99_ms": 1000 * percentile(latencies, 0.99),
        "first_child_latency_max_ms": 1000 * max(latencies),
        # The server's parts of that latency: a write's round trip, and a watch event's delay (an
        # object's ADDED reaching a watcher after its create returned); the operator's is the rest.
        "server_create_p99_ms": 1000 * percentile(round_trips, 0.99),
        "server_watch_lag_p50_ms": 1000 * statistics.median(lags),
        "server_watch_lag_p99_ms": 1000 * percentile(lags, 0.99),
        "operator_peak_rss_mib": rss[0],
        "operator_cpu_seconds": cpu[0],
        "bench_process_peak_rss_mib": rss[1],  # the API server, its stored history and this client
        "bench_process_cpu_seconds": cpu[1],
        "steady_cpu_percent": 100 * cpu_share,
        "steady_writes": steady_writes,
    }
    for verb in ("creates", "status_patches"):
        kinds[verb] = sum(n for k, n in kinds.items() if k.startswith(f"{verb} "))
    print("requests:", dict(sorted(kinds.items())))
    for name in ("creates", "status_patches", "object_patches", "deletes", "events", "other_writes", "reads"):
        out[f"{name}_per_object"] = kinds.get(name, 0) / count
    for doc in docs:  # by kind: one status write each is the target
        plural = kind_of(doc).plural
        out[f"status_patches_per_{doc['kind']}"] = kinds[f"status_patches {plural}"] / (count / len(docs))
    if profile:
        report(profile, out)
        rows = [(created[n] - start, observer.child[n] - created[n]) for n in created]
        (profile / "latencies.json").write_text(json.dumps(rows))  # (created at, first child after) s
    return out


def report(profile: Path, out: dict[str, float]) -> None:
    """Where each process's CPU went (shares of its samples at 100 Hz), printed and kept in `profile`."""
    server = pyspy.stacks(profile / "server.txt")
    threads = {"api server": pyspy.stacks(profile / "server.txt", "localapi"),
               "bench client": pyspy.stacks(profile / "server.txt", "!localapi")}  # fmt: skip
    lines = [f"bench process: {sum(server.values()) / 100:.1f} s sampled"]
    for name, samples in threads.items():
        lines.append(f"  {name}: {sum(samples.values()) / 100:.1f} s")
    operator, resyncs = pyspy.stacks(profile / "operator.txt"), pyspy.stacks(profile / "operator-steady.txt")
    for name, samples in (
        ("operator", operator),
        ("api server", threads["api server"]),
        ("resyncs", resyncs),
    ):
        lines.append(f"{name}: {sum(samples.values()) / 100:.1f} s sampled; top functions (self):")
        lines += [f"  {share:6.1%}  {fn}" for fn, share in pyspy.top(samples, 15)]
    out["api_server_cpu_seconds"] = sum(threads["api server"].values()) / 100
    text = "\n".join(lines)
    (profile / "summary.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--example", default="pretrainjob", help=f"an example, or mixed: {', '.join(MIXED)}")
    p.add_argument("--rate", type=float, default=0.0, help="creates per second; 0: as fast as possible")
    p.add_argument("--steady", type=float, default=30.0, help="seconds of converged resyncs to measure")
    p.add_argument("--profile", type=Path, help="a folder: py-spy profiles of the operator and the server")
    args = p.parse_args()
    variant = f"{args.example} x{args.count}" + (f" at {args.rate:g}/s" if args.rate else "")
    results_csv.append(
        "create_observe", variant, main(args.count, args.example, args.rate, args.steady, args.profile)
    )
