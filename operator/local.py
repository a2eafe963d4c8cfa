"""`vlmop local`: the whole thing on this machine, no cluster needed. Starts the API server on
loopback, installs the CRDs, runs the real operator process and a local kubelet (the pods of the Jobs
the operator creates run as local processes), applies the given CRs, and follows them: jobs until they
finish, everything else until the operator has observed it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from vlmop.operator.localapi.cluster import LocalCluster, kind_of

JOB_KINDS = ("PretrainJob",)  # kinds whose pods the local kubelet runs to completion
TERMINAL = ("Succeeded", "Failed")


def documents(paths: Iterable[Path]) -> list[dict[str, Any]]:
    files = [f for p in paths for f in (sorted(p.glob("*.yaml")) if p.is_dir() else [p])]
    return [doc for f in files for doc in yaml.safe_load_all(f.read_text()) if doc]


def summary(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    shown: dict[str, Any] = next(
        (conditions[t] for t in ("Failed", "Succeeded", "Progressing", "Ready") if t in conditions and (
            conditions[t]["status"] == "True" or t in ("Progressing", "Ready"))),
        {},
    )  # fmt: skip
    return (
        f"{obj['kind']:<14} {obj['metadata']['name']:<20} {status.get('phase', '-'):<10} "
        f"{status.get('progress') or '':<22} {loss(status):<12}"
        f"{shown.get('type', '-')}={shown.get('status', '-')} ({shown.get('reason', '-')}): "
        f"{shown.get('message', '')}"
    )


def loss(status: dict[str, Any]) -> str:
    return f"loss={status['loss']:.3f}" if isinstance(status.get("loss"), float) else ""


def follow(cluster: LocalCluster, doc: dict[str, Any], timeout: float) -> dict[str, Any]:
    info, name = kind_of(doc), doc["metadata"]["name"]
    obj = cluster.wait_observed(info, name, timeout)
    if doc["kind"] not in JOB_KINDS:
        return obj
    deadline, last = time.monotonic() + timeout, ""
    while (obj.get("status") or {}).get("phase") not in TERMINAL and time.monotonic() < deadline:
        line = summary(obj)
        if line != last:
            print(line, flush=True)
            last = line
        time.sleep(1)
        obj = cluster.get(info, name)
    return obj


def main(paths: Iterable[Path], serve: bool = False, timeout: float = 600, claims: Path | None = None) -> int:
    """Returns the exit code: 1 when a job failed or did not finish in time."""
    paths = list(paths) or [Path("examples")]
    if claims is None:  # examples/claims/<claim name>/ holds the sample data the examples mount
        claims = next((p / "claims" for p in paths if (p / "claims").is_dir()), None)
    docs = documents(paths)
    failed = False
    with LocalCluster(operator_args=["--resync-seconds", "2"], claims=claims) as cluster:
        cluster.start_operator()
        cluster.start_kubelet()
        print(f"API server {cluster.server.url}; operator log {cluster.log_path}")
        print(f"pods run in {cluster.workdir}/pods; claims in {claims or cluster.workdir / 'claims'}")
        for doc in docs:
            cluster.apply(doc)
        for doc in docs:
            obj = follow(cluster, doc, timeout)
            print(summary(obj), flush=True)
            failed |= doc["kind"] in JOB_KINDS and (obj.get("status") or {}).get("phase") != "Succeeded"
        if serve:
            print(f"serving; try: KUBECONFIG={cluster.kubeconfig} kubectl get vlmop  (Ctrl-C stops)")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 1 if failed else 0
