"""Crash safety: the real operator is killed with SIGKILL at many points of its reconciles (right after
it comes up, while objects are being created, after a spec change) and started again; it then
converges: every object has exactly its children (none twice, none left over), its status is
written for its current generation, and the change made between two kills is not lost."""

from __future__ import annotations

import copy
import json
import random
import signal
import time
from typing import Any

from vlmop.operator.api import CASCADERLJOB, DVDDEPLOYMENT, PRETRAINJOB, KindInfo
from vlmop.operator.localapi.cluster import LocalCluster
from vlmop.workloads.common.progress import Progress, Reporter

G, V, NS = "vlmop.io", "v1alpha1", "default"


def named(doc: dict[str, Any], name: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["metadata"]["name"] = name
    return doc


def expected(kind: str, name: str) -> set[tuple[str, str]]:
    if kind == "PretrainJob":
        return {("Service", f"{name}-workers"), ("ConfigMap", f"{name}-config"), ("Job", f"{name}-r0")}
    if kind == "CascadeRLJob":
        return {("Service", f"{name}-workers"), ("ConfigMap", f"{name}-config"), ("Job", f"{name}-s0-r0")}
    return {
        (k, f"{name}-{pool}") for k in ("Deployment", "Service") for pool in ("vision", "language", "gateway")
    }


def restart_writes_nothing(cluster: LocalCluster) -> None:
    """A SIGKILLed and restarted operator writes nothing (Events aside): every status already holds."""
    before = len(cluster.server.api._requests)
    kill(cluster)
    cluster.start_operator()
    time.sleep(3)
    writes = [r for r in cluster.server.api._requests[before:] if r.method.value not in ("GET",)]
    assert not [w for w in writes if "/events" not in str(w.url)], [(w.method, str(w.url)) for w in writes]


def kill(cluster: LocalCluster) -> None:
    assert cluster.operator is not None
    cluster.operator.send_signal(signal.SIGKILL)
    cluster.operator.wait(10)


def test_sigkill_at_many_points_then_converge(
    cluster: LocalCluster, examples: dict[str, Any], owned: Any
) -> None:
    rng = random.Random(7)  # noqa: S311 (kill timings, not secrets)
    pretrain = named(examples["pretrainjob"], "x")
    pretrain["spec"]["scheduling"] = {"gang": "none"}
    dvd = named(examples["dvddeployment"], "x")
    dvd["spec"]["autoscaling"] = {"mode": "disabled"}
    docs = [named(pretrain, f"crash-p{i}") for i in range(6)]
    docs += [named(dvd, f"crash-d{i}") for i in range(3)]
    docs += [named(examples["cascaderljob"], f"crash-c{i}") for i in range(2)]
    kinds: dict[str, KindInfo] = {
        "PretrainJob": PRETRAINJOB,
        "DvDDeployment": DVDDEPLOYMENT,
        "CascadeRLJob": CASCADERLJOB,
    }

    pending = list(docs)
    for round_ in range(8):
        for doc in pending[:3]:  # objects arrive while the operator lives and dies
            cluster.apply(doc)
        pending = pending[3:]
        if round_ == 5:  # a change between two kills: suspend one job
            patch = {"spec": {"runPolicy": {"suspend": True}}}
            cluster.custom.patch_namespaced_custom_object(G, V, NS, PRETRAINJOB.plural, "crash-p1", patch)
        time.sleep(rng.uniform(0.0, 0.6))
        kill(cluster)
        cluster.start_operator()

    def converged() -> bool:
        for doc in docs:
            name, kind = doc["metadata"]["name"], doc["kind"]
            obj = cluster.get(kinds[kind], name)
            status = obj.get("status") or {}
            want = expected(kind, name)
            if name == "crash-p1":  # suspended: its workers are gone, the rest stays
                want = {c for c in want if c[0] != "Job"}
            if status.get("observedGeneration") != obj["metadata"]["generation"] or owned(name) != want:
                return False
        return True

    cluster.wait(converged, 90, "every object to converge after the kills")
    assert cluster.get(PRETRAINJOB, "crash-p1")["status"]["phase"] == "Suspended"
    assert cluster.get(PRETRAINJOB, "crash-p0")["status"]["phase"] == "Pending"
    assert cluster.get(CASCADERLJOB, "crash-c0")["status"]["currentStage"] == "mpo"
    restart_writes_nothing(cluster)  # converged and quiet


def test_a_job_resumed_at_its_last_step_ends_consistent_whatever_the_kills(
    cluster: LocalCluster, examples: dict[str, Any], kubelet: Any, reporter: tuple[Reporter, int]
) -> None:
    """The issue's run, with the Job controller and kubelet played by the test and rank 0's real
    reporter: the job trains to its last step (120) and checkpoints, then a worker is killed before its
    pod ends, so the group restarts and rank 0 resumes at step 120 with no step left to take. The
    operator is SIGKILLed at random moments all along (seeded). Whatever the order, the job ends
    Succeeded with one restart, only the current attempt's Job, and a status that says 120/120."""
    progress_server, port = reporter
    for seed in range(4):
        rng, name = random.Random(seed), f"resume-{seed}"  # noqa: S311 (kill timings)

        def maybe_kill(rng: random.Random = rng) -> None:
            if rng.random() < 0.6:
                time.sleep(rng.uniform(0.0, 0.5))
                kill(cluster)
                cluster.start_operator()

        doc = named(examples["pretrainjob"], name)
        doc["spec"].update(metricsPort=port, scheduling={"gang": "none"})
        cluster.apply(doc)
        maybe_kill()
        cluster.wait(lambda n=name: kubelet.jobs(n) == [f"{n}-r0"], 30, "attempt r0")
        first = Reporter()  # rank 0 of r0 at its last step, checkpointed
        first.update(Progress(step=120, total_steps=120, loss=2.0, latest_checkpoint=CHECKPOINT))
        progress_server.progress = first.progress
        pods = kubelet.start(f"{name}-r0")
        maybe_kill()
        kubelet.set(pods[1], "Failed", "", exit_code=137)  # SIGKILLed after the final checkpoint
        maybe_kill()
        cluster.wait(lambda n=name: kubelet.jobs(n) == [f"{n}-r1"], 30, "attempt r1 to replace r0")
        resumed = Reporter()  # rank 0 of r1, as the trainer does: resume, then say where it stands
        resumed.checkpointed(120, CHECKPOINT)
        resumed.resumed(120, 120)
        progress_server.progress = resumed.progress
        pods = kubelet.start(f"{name}-r1")
        maybe_kill()
        kubelet.set(pods[0], "Succeeded", json.dumps(resumed.snapshot()))
        kubelet.set(pods[1], "Succeeded", "")
        maybe_kill()
        cluster.wait(lambda n=name: phase(cluster, n) == "Succeeded", 30, f"{name} to succeed")
        status = cluster.get(PRETRAINJOB, name)["status"]
        assert (status["step"], status["totalSteps"], status["progress"]) == (
            120,
            120,
            "120/120 steps (100%)",
        ), seed
        assert (status["restarts"], status["latestCheckpoint"]) == (1, CHECKPOINT), seed
        assert kubelet.jobs(name) == [f"{name}-r1"], seed

    restart_writes_nothing(cluster)  # finished and consistent


CHECKPOINT = "/checkpoints/step-00000120"


def phase(cluster: LocalCluster, name: str) -> str | None:
    return (cluster.get(PRETRAINJOB, name).get("status") or {}).get("phase")
