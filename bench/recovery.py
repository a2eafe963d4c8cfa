"""Time to recover from a worker's failure on the local cluster: the real operator, the local kubelet
and real `torchrun -> python -m vlmop.workloads.pretrain` processes (DeepSpeed on gloo, this CPU).
A PretrainJob (the example, shrunk: 64-token sequences, a checkpoint every 8 steps) trains; once the
step-8 checkpoint is complete and rank 0 is a couple of steps further, rank 1 fails, and the clock
runs until rank 0 reports its first step after the restart. Scenarios:

  pod-lost        rank 1's container is SIGKILLed whole (a lost node, an OOM kill of the container):
                  the pod is gone, so the group gets new pods whatever the restart strategy
  crash-recreate  rank 1's trainer process dies (SIGKILL), restartStrategy Recreate: new pods
  crash-in-place  the same crash, restartStrategy InPlace (the default): the supervisors restart every
                  worker's processes in the same pods

Phases, from the failure:

  restarted   the operator saw the failure and wrote the restart (status.restarts)
  started     the next attempt's programs run (new pods running, or every supervisor on the new attempt)
  resumed     rank 0 loaded the checkpoint (its "resumed from" log line: imports, model, DeepSpeed,
              rendezvous and the load are behind it)
  first step  rank 0's /progress reports a step past the checkpoint

  python bench/recovery.py [--runs 3] [--scenario NAME ...] [--record]"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results

from vlmop.operator.api import PRETRAINJOB
from vlmop.operator.builders.gang import SUPERVISOR_PORT
from vlmop.operator.localapi.cluster import LocalCluster
from vlmop.operator.localapi.loopback import free_port

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("restarted", "started", "resumed", "first_step")
SCENARIOS = ("pod-lost", "crash-recreate", "crash-in-place")


def job(name: str, strategy: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "pretrainjob.yaml").read_text())
    doc = copy.deepcopy(doc)
    doc["metadata"]["name"] = name
    spec = doc["spec"]
    spec["data"]["seqLength"] = 64
    spec["optimization"].update(totalSteps=400, warmupSteps=2)
    spec["checkpoint"].update(intervalSteps=8, claimName=f"{name}-checkpoints")
    spec["deepspeed"]["gradientAccumulationSteps"] = 1
    spec["metricsPort"] = free_port()
    spec.setdefault("runPolicy", {})["failurePolicy"] = {"restartStrategy": strategy}
    return doc


def until(predicate: Any, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)
    return time.monotonic()


def step_of(cluster: LocalCluster, pod: str, port: int) -> int:
    local = cluster.kubelet.pods.get(pod)
    if local is None:
        return -1
    try:
        with urllib.request.urlopen(f"http://{local.ip}:{port}/progress", timeout=1) as reply:
            return int(json.loads(reply.read()).get("step", -1))
    except (OSError, ValueError):
        return -1


def restarts(cluster: LocalCluster, name: str) -> int:
    return int((cluster.get(PRETRAINJOB, name).get("status") or {}).get("restarts") or 0)


def running(cluster: LocalCluster, pod: str) -> bool:
    local = cluster.kubelet.pods.get(pod)
    return bool(local and local.process and local.process.poll() is None)


def logged_after(path: Path, pattern: str, after: datetime.datetime) -> datetime.datetime | None:
    """When the trainer first logged a line matching `pattern` after `after` (its logging stamps)."""
    if not path.exists():
        return None
    for line in path.read_text(errors="replace").splitlines():
        if re.search(pattern, line):
            at = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            if at > after:
                return at
    return None


def supervisor_attempt(cluster: LocalCluster, pod: str) -> int:
    local = cluster.kubelet.pods.get(pod)
    try:
        url = f"http://{local.ip}:{SUPERVISOR_PORT}/status" if local else ""
        with urllib.request.urlopen(url, timeout=1) as reply:  # noqa: S310 - http, built here
            said = json.loads(reply.read())
            return int(said["attempt"]) if said["state"] == "Running" else -1
    except (OSError, ValueError, KeyError):
        return -1


def once(cluster: LocalCluster, name: str, scenario: str) -> dict[str, float]:
    in_place = scenario == "crash-in-place"
    doc = job(name, "InPlace" if in_place or scenario == "pod-lost" else "Recreate")
    port = doc["spec"]["metricsPort"]
    cluster.apply(doc)
    saved = cluster.workdir / "claims" / f"{name}-checkpoints" / "step-00000008" / "COMPLETE"
    until(saved.is_file, 300, "the step-8 checkpoint")
    until(lambda: step_of(cluster, f"{name}-r0-0", port) >= 10, 120, "step 10")
    killed, wall = time.monotonic(), datetime.datetime.now()
    if scenario == "pod-lost":
        cluster.kubelet.kill(f"{name}-r0-1")
    else:
        cluster.kubelet.crash(f"{name}-r0-1", "vlmop.workloads.pretrain")
    restarted = until(lambda: restarts(cluster, name) == 1, 120, "the restart")
    attempt = "r0" if in_place else "r1"
    if in_place:
        started = until(lambda: all(supervisor_attempt(cluster, f"{name}-r0-{i}") == 1 for i in (0, 1)), 120,
                        "every supervisor on attempt 1")  # fmt: skip
    else:
        started = until(lambda: all(running(cluster, f"{name}-r1-{i}") for i in (0, 1)), 120, "the new pods")
    log = cluster.workdir / "pods" / f"{name}-{attempt}-0" / "log"
    until(lambda: logged_after(log, "resumed from", wall) is not None, 300, "the resume")
    resumed_at = logged_after(log, "resumed from", wall)
    step = int(re.findall(r"resumed from \S+ at step (\d+)", log.read_text())[-1])
    first = until(lambda: step_of(cluster, f"{name}-{attempt}-0", port) > step, 300, "the first step")
    cluster.custom.delete_namespaced_custom_object(
        "vlmop.io", "v1alpha1", "default", PRETRAINJOB.plural, name
    )
    assert resumed_at is not None
    return {
        "restarted": restarted - killed,
        "started": started - killed,
        "resumed": (resumed_at - wall).total_seconds(),
        "first_step": first - killed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--record", action="store_true", help="append the medians to bench/results.csv")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in args.scenario}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with LocalCluster(
            workdir, ["--resync-seconds", "0.5"], claims=ROOT / "examples" / "claims"
        ) as cluster:
            cluster.start_operator()
            cluster.start_kubelet()
            for i in range(args.runs):
                for scenario in args.scenario:
                    run = once(cluster, f"recover-{scenario}-{i}", scenario)
                    runs[scenario].append(run)
                    print(scenario, " ".join(f"{k}={v:.2f}s" for k, v in run.items()), flush=True)
    for scenario, done in runs.items():
        medians = {f"{phase}_s": statistics.median(r[phase] for r in done) for phase in PHASES}
        print(f"median {scenario}: " + " ".join(f"{k}={v:.2f}" for k, v in medians.items()))
        if args.record:
            results.append("recovery", scenario, medians, where="local cluster, 2-core CPU")


if __name__ == "__main__":
    main()
