"""End to end on this machine: the operator process creates the gang, the local kubelet runs its pods as
real `torchrun -> python -m vlmop.workloads.pretrain` processes (DeepSpeed on gloo), and the status
follows them. Killing a worker mid-run restarts the whole group from the last complete checkpoint."""

from __future__ import annotations

import copy
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import BatchV1Api

from vlmop.operator.api import PRETRAINJOB
from vlmop.operator.localapi.cluster import LocalCluster
from vlmop.operator.localapi.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    workdir = tmp_path_factory.mktemp("local")
    with LocalCluster(workdir, ["--resync-seconds", "0.5"], claims=ROOT / "examples" / "claims") as cluster:
        cluster.start_operator()
        cluster.start_kubelet()
        yield cluster
        assert not cluster.kubelet.errors


def cpu_job(examples: dict[str, Any], name: str, steps: int = 24) -> dict[str, Any]:
    doc = copy.deepcopy(examples["pretrainjob"])
    doc["metadata"]["name"] = name
    spec = doc["spec"]
    spec["data"]["seqLength"] = 64
    spec["optimization"].update(totalSteps=steps, warmupSteps=2, learningRate=0.003)
    spec["checkpoint"].update(intervalSteps=8, claimName=f"{name}-checkpoints")
    spec["deepspeed"]["gradientAccumulationSteps"] = 1
    spec["metricsPort"] = free_port()  # every rank 0 on this one host needs a port of its own
    return doc


def finished(cluster: LocalCluster, name: str, timeout: float = 240) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.update(cluster.get(PRETRAINJOB, name).get("status") or {})
        return seen.get("phase") in ("Succeeded", "Failed")

    cluster.wait(done, timeout, f"{name} to finish")
    return seen


def test_the_example_trains_to_completion(local: LocalCluster, examples: dict[str, Any]) -> None:
    local.apply(cpu_job(examples, "cpu-train"))
    status = finished(local, "cpu-train")
    assert status["phase"] == "Succeeded", status
    assert (status["step"], status["totalSteps"], status["restarts"]) == (24, 24, 0)
    checkpoints = local.workdir / "claims" / "cpu-train-checkpoints"
    assert status["latestCheckpoint"] == str(checkpoints / "step-00000024")  # mount rewritten locally
    assert sorted(p.name for p in checkpoints.glob("step-*")) == ["step-00000016", "step-00000024"]
    assert (checkpoints / "step-00000024" / "COMPLETE").is_file()
    assert 0 < status["loss"] < 5.0  # from ~6.2 (uniform over 512) on the sample corpus


def test_a_killed_worker_restarts_the_group_from_the_checkpoint(
    local: LocalCluster, examples: dict[str, Any]
) -> None:
    local.apply(cpu_job(examples, "cpu-crash", steps=80))
    local.wait(lambda: _saved(local, "cpu-crash", 8), 180, "the step-8 checkpoint")
    local.kubelet.kill("cpu-crash-r0-1")  # rank 1's container dies at once: no chance to save
    status = finished(local, "cpu-crash")
    assert status["phase"] == "Succeeded" and status["restarts"] == 1, status
    assert status["step"] == 80
    resumed = re.search(
        r"resumed from \S+ at step (\d+)", (local.workdir / "pods" / "cpu-crash-r1-0" / "log").read_text()
    )
    assert resumed and int(resumed.group(1)) % 8 == 0 and 8 <= int(resumed.group(1)) < 80


def test_a_crashed_trainer_restarts_every_worker_in_place(
    local: LocalCluster, examples: dict[str, Any]
) -> None:
    """restartStrategy InPlace: rank 1's trainer process dies (its pod lives, the supervisor first in
    it); the operator restarts every worker's processes in the same pods, from the checkpoint. The
    failure happens while no operator runs, and the operator that decides the restart is SIGKILLed
    as soon as it is on record: what a supervisor says, and the restart, are read again, not
    remembered."""
    local.apply(cpu_job(examples, "cpu-inplace", steps=80))
    local.wait(lambda: _saved(local, "cpu-inplace", 8), 180, "the step-8 checkpoint")
    rank1 = local.kubelet.pods["cpu-inplace-r0-1"]
    local.stop_operator()
    local.kubelet.crash(rank1.name, "vlmop.workloads.pretrain")
    local.wait(lambda: not rank1.ready, 30, "rank 1 not ready: its supervisor holds the failure")
    local.start_operator()
    local.wait(lambda: _status(local, "cpu-inplace").get("restarts") == 1, 60, "the restart on record")
    local.operator.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    local.operator.wait(10)  # type: ignore[union-attr]
    local.start_operator()
    local.wait(lambda: rank1.ready, 60, "rank 1 running again, in the same pod")
    assert local.kubelet.pods[rank1.name] is rank1  # the kubelet's own pod: never re-created
    status = finished(local, "cpu-inplace")
    assert status["phase"] == "Succeeded" and status["step"] == 80, status
    assert (status["restarts"], status["inPlaceRestarts"], status["restartsCounted"]) == (1, 1, 1)
    assert status["lastFailure"]["action"] == "Restart"
    logs = local.workdir / "pods"
    assert not (logs / "cpu-inplace-r1-0").exists()  # no pod was re-created: the same Job, the same pods
    resumed = re.search(r"resumed from \S+ at step (\d+)", (logs / "cpu-inplace-r0-0" / "log").read_text())
    assert resumed and int(resumed.group(1)) % 8 == 0 and 8 <= int(resumed.group(1)) < 80
    jobs = BatchV1Api(local.client).list_namespaced_job(
        "default", label_selector="vlmop.io/owner-name=cpu-inplace"
    )
    assert [j.metadata.name for j in jobs.items] == ["cpu-inplace-r0"]


def _status(cluster: LocalCluster, name: str) -> dict[str, Any]:
    return dict(cluster.get(PRETRAINJOB, name).get("status") or {})


def _saved(cluster: LocalCluster, name: str, step: int) -> bool:
    return (cluster.workdir / "claims" / f"{name}-checkpoints" / f"step-{step:08d}" / "COMPLETE").is_file()
