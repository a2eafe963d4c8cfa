"""Time to recover from a worker's failure on the local cluster: the real operator, the local kubelet
and real `torchrun -> python -m vlmop.workloads.pretrain` processes (DeepSpeed on gloo, this CPU).
A PretrainJob (the example, shrunk: 64-token sequences, a checkpoint every 8 steps) trains; once the
step-8 checkpoint is complete and rank 0 is a couple of steps further, rank 1's container is
SIGKILLed, and the clock runs until the next attempt's rank 0 reports its first step. Phases, from
the kill:

  restarted   the operator saw the failure and wrote the restart (status.restarts)
  pods        the next attempt's pods run (the Job re-created, its pods started by the kubelet)
  resumed     rank 0 loaded the checkpoint (its "resumed from" log line: imports, model, DeepSpeed,
              rendezvous and the load are behind it)
  first step  rank 0's /progress reports a step past the checkpoint

  python bench/recovery.py [--runs 3] [--record]"""

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
from vlmop.operator.localapi.cluster import LocalCluster
from vlmop.operator.localapi.loopback import free_port

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("restarted", "pods", "resumed", "first_step")


def job(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "pretrainjob.yaml").read_text())
    doc = copy.deepcopy(doc)
    doc["metadata"]["name"] = name
    spec = doc["spec"]
    spec["data"]["seqLength"] = 64
    spec["optimization"].update(totalSteps=400, warmupSteps=2)
    spec["checkpoint"].update(intervalSteps=8, claimName=f"{name}-checkpoints")
    spec["deepspeed"]["gradientAccumulationSteps"] = 1
    spec["metricsPort"] = free_port()
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


def logged_at(path: Path, pattern: str) -> datetime.datetime | None:
    """When the trainer logged a line matching `pattern` (its logging timestamps)."""
    if not path.exists():
        return None
    for line in path.read_text(errors="replace").splitlines():
        if re.search(pattern, line):
            return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return None


def once(cluster: LocalCluster, name: str) -> dict[str, float]:
    doc = job(name)
    port = doc["spec"]["metricsPort"]
    cluster.apply(doc)
    saved = cluster.workdir / "claims" / f"{name}-checkpoints" / "step-00000008" / "COMPLETE"
    until(saved.is_file, 300, "the step-8 checkpoint")
    until(lambda: step_of(cluster, f"{name}-r0-0", port) >= 10, 120, "step 10")
    killed, wall = time.monotonic(), datetime.datetime.now()
    cluster.kubelet.kill(f"{name}-r0-1")
    restarted = until(lambda: restarts(cluster, name) == 1, 120, "the restart")
    pods = until(
        lambda: all(running(cluster, f"{name}-r1-{i}") for i in (0, 1)), 120, "the next attempt's pods"
    )
    log = cluster.workdir / "pods" / f"{name}-r1-0" / "log"
    until(lambda: logged_at(log, "resumed from") is not None, 300, "the resume")
    resumed_at = logged_at(log, "resumed from")
    step = int(re.search(r"at step (\d+)", log.read_text()).group(1))  # type: ignore[union-attr]
    first = until(lambda: step_of(cluster, f"{name}-r1-0", port) > step, 300, "the first step")
    cluster.custom.delete_namespaced_custom_object(
        "vlmop.io", "v1alpha1", "default", PRETRAINJOB.plural, name
    )
    assert resumed_at is not None
    return {
        "restarted": restarted - killed,
        "pods": pods - killed,
        "resumed": (resumed_at - wall).total_seconds(),
        "first_step": first - killed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append the medians to bench/results.csv")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with LocalCluster(
            workdir, ["--resync-seconds", "0.5"], claims=ROOT / "examples" / "claims"
        ) as cluster:
            cluster.start_operator()
            cluster.start_kubelet()
            for i in range(args.runs):
                run = once(cluster, f"recover-{i}")
                runs.append(run)
                print(" ".join(f"{k}={v:.2f}s" for k, v in run.items()), flush=True)
    medians = {f"{phase}_s": statistics.median(r[phase] for r in runs) for phase in PHASES}
    print("median " + " ".join(f"{k}={v:.2f}" for k, v in medians.items()))
    if args.record:
        results.append("recovery", "whole-group re-creation", medians, where="local cluster, 2-core CPU")


if __name__ == "__main__":
    main()
