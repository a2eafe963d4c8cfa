"""The real operator turns examples/pretrainjob.yaml into its children on the local API server, follows
the worker pods through a failure (whole-group restart), suspension and success, reads rank 0's live
progress from the trainer's own reporter, and never deletes the checkpoint claim.

The emulator runs no Job controller and no kubelet, so the test plays both: it creates the pods an
Indexed Job would (owned by it, with the completion-index annotation) and writes their status."""

from __future__ import annotations

import copy
import re
import time
import urllib.request
from typing import Any

import pytest
from kubernetes.client import ApiException, ApiextensionsV1Api, CustomObjectsApi

from vlmop.operator.api import PRETRAINJOB
from vlmop.operator.localapi.cluster import LocalCluster, podgroup_crd
from vlmop.workloads.common.progress import Progress, Reporter

G, V, NS = "vlmop.io", "v1alpha1", "default"


@pytest.fixture(scope="module")
def podgroups(cluster: LocalCluster) -> None:
    # What installing scheduler-plugins adds, so the coscheduling example gets its PodGroup.
    crd = podgroup_crd("scheduling.x-k8s.io", "v1alpha1")
    ApiextensionsV1Api(cluster.client).create_custom_resource_definition(crd)  # type: ignore[arg-type]


def job_doc(examples: dict[str, Any], name: str, port: int = 9400, **run_policy: Any) -> dict[str, Any]:
    doc = copy.deepcopy(examples["pretrainjob"])
    doc["metadata"]["name"] = name
    doc["spec"]["metricsPort"] = port
    doc["spec"]["runPolicy"].update(run_policy)
    return doc


def status_of(cluster: LocalCluster, name: str) -> dict[str, Any]:
    return dict(cluster.get(PRETRAINJOB, name).get("status") or {})


def test_example_runs_fails_restarts_and_succeeds(
    cluster: LocalCluster,
    examples: dict[str, Any],
    podgroups: None,
    reporter: tuple[Reporter, int],
    kubelet: Any,
    wait_for: Any,
) -> None:
    progress_server, port = reporter
    cluster.apply(job_doc(examples, "lifecycle", port))
    wait_for(PRETRAINJOB, "lifecycle", "workers created", phase="Pending", restarts=0)
    assert kubelet.jobs("lifecycle") == ["lifecycle-r0"]
    assert cluster.core.read_namespaced_service("lifecycle-workers", NS).spec.cluster_ip == "None"
    assert "ds_config.json" in cluster.core.read_namespaced_config_map("lifecycle-config", NS).data
    custom = CustomObjectsApi(cluster.client)
    group = custom.get_namespaced_custom_object(
        "scheduling.x-k8s.io", "v1alpha1", NS, "podgroups", "lifecycle-r0"
    )
    assert group["spec"]["minMember"] == 2

    # Both workers run; rank 0's reporter says how far it got.
    progress_server.update(Progress(step=40, total_steps=200, loss=3.5, tokens_per_second=1200.0))
    progress_server.checkpointed(40, "/checkpoints/step-00000040")
    pods = kubelet.start("lifecycle-r0")
    running = wait_for(PRETRAINJOB, "lifecycle", "running with progress", phase="Running", step=40)
    assert (running["totalSteps"], running["loss"], running["tokensPerSecond"]) == (200, 3.5, 1200.0)
    assert running["latestCheckpoint"] == "/checkpoints/step-00000040"
    assert running["progress"] == "40/200 steps (20%)" and running["startTime"]

    # Converged: resync ticks read the indexes and rank 0's endpoint, and write nothing.
    before = len(cluster.server.api._requests)
    time.sleep(3)  # six resyncs at --resync-seconds 0.5
    writes = [r for r in cluster.server.api._requests[before:] if r.method.value != "GET"]
    assert not writes, [(r.method, str(r.url)) for r in writes]

    # Worker 1 dies: the whole group restarts as attempt r1; r0, its pods and its PodGroup go.
    kubelet.set(pods[1], "Failed", "RuntimeError: NCCL watchdog timeout", exit_code=1)
    restarting = wait_for(PRETRAINJOB, "lifecycle", "the group to restart", phase="Restarting", restarts=1)
    progressing = next(c for c in restarting["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "Restarting" and "NCCL watchdog timeout" in progressing["message"]
    cluster.wait(lambda: kubelet.jobs("lifecycle") == ["lifecycle-r1"], 30, "attempt r1 to replace r0")
    cluster.wait(
        lambda: not cluster.core.list_namespaced_pod(NS, label_selector="vlmop.io/attempt=0").items,
        30,
        "r0's pods to be collected",
    )
    with pytest.raises(ApiException, match="Not Found"):
        custom.get_namespaced_custom_object(
            "scheduling.x-k8s.io", "v1alpha1", NS, "podgroups", "lifecycle-r0"
        )
    env = {e.name: e.value for e in kubelet.job("lifecycle-r1").spec.template.spec.containers[0].env}
    assert env["MASTER_ADDR"].startswith("lifecycle-r1-0.lifecycle-workers.")

    # The new attempt runs to completion; rank 0's termination message carries the final progress.
    progress_server.close()
    pods = kubelet.start("lifecycle-r1")
    wait_for(PRETRAINJOB, "lifecycle", "running again", phase="Running")
    final = '{"step": 200, "totalSteps": 200, "loss": 2.25, "latestCheckpoint": "/checkpoints/step-00000200"}'
    kubelet.set(pods[0], "Succeeded", final)
    kubelet.set(pods[1], "Succeeded", "")
    done = wait_for(PRETRAINJOB, "lifecycle", "success", phase="Succeeded")
    assert (done["step"], done["loss"], done["restarts"], done["progress"]) == (
        200,
        2.25,
        1,
        "200/200 steps (100%)",
    )
    assert (
        done["completionTime"] and {c["type"]: c["status"] for c in done["conditions"]}["Succeeded"] == "True"
    )
    assert kubelet.jobs("lifecycle") == ["lifecycle-r1"]  # kept after success, for its logs
    events = cluster.core.list_namespaced_event(NS).items
    assert any(e.reason == "Restarting" and e.involved_object.name == "lifecycle" for e in events)


def test_backoff_limit_exceeded_fails_with_the_pod_message(
    cluster: LocalCluster, examples: dict[str, Any], podgroups: None, kubelet: Any, wait_for: Any
) -> None:
    cluster.apply(job_doc(examples, "fragile", backoffLimit=0))
    wait_for(PRETRAINJOB, "fragile", "workers created", phase="Pending")
    pods = kubelet.start("fragile-r0")
    kubelet.set(pods[0], "Failed", "torch.OutOfMemoryError: CUDA out of memory", exit_code=1)
    failed = wait_for(PRETRAINJOB, "fragile", "failure", phase="Failed")
    condition = next(c for c in failed["conditions"] if c["type"] == "Failed")
    assert condition["status"] == "True" and condition["reason"] == "BackoffLimitExceeded"
    assert "CUDA out of memory" in condition["message"] and failed["restarts"] == 0
    cluster.wait(lambda: kubelet.jobs("fragile") == [], 30, "the failed attempt's workers to stop")
    # Finished without a TTL: parked until an event, no resync rounds.
    cluster.wait(lambda: idle_jobs(cluster) >= 1, 30, "the finished job to be parked")


def idle_jobs(cluster: LocalCluster) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    found = re.search(r'^vlmop_workqueue_idle_objects\{kind="PretrainJob"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_failure_policy_disruptions_are_free_a_repeated_failure_fails_fast_a_rule_fails_at_once(
    cluster: LocalCluster, examples: dict[str, Any], podgroups: None, kubelet: Any, wait_for: Any
) -> None:
    cluster.apply(job_doc(examples, "policy", backoffLimit=1))
    wait_for(PRETRAINJOB, "policy", "workers created", phase="Pending")

    # Preempted (the scheduler's DisruptionTarget): a restart that costs no budget.
    pods = kubelet.start("policy-r0")
    kubelet.set(
        pods[1], "Failed", "", exit_code=143, conditions=(("DisruptionTarget", "PreemptionByScheduler"),)
    )
    wait_for(PRETRAINJOB, "policy", "a free restart", phase="Restarting", restarts=1, restartsCounted=0)
    # Evicted by the kubelet (memory pressure): free again.
    cluster.wait(lambda: kubelet.jobs("policy") == ["policy-r1"], 30, "attempt r1")
    pods = kubelet.start("policy-r1")
    kubelet.set(pods[0], "Failed", "", exit_code=137, reason="Evicted")
    status = wait_for(PRETRAINJOB, "policy", "another free restart", restarts=2, restartsCounted=0)
    assert (
        status["lastFailure"]["reason"] == "Evicted"
        and status["lastFailure"]["action"] == "RestartIgnoringBudget"
    )

    # A bad flag: counted once, then the same message fails the job (not another backoffLimit's worth).
    for attempt in ("policy-r2", "policy-r3"):
        cluster.wait(lambda a=attempt: kubelet.jobs("policy") == [a], 30, attempt)  # type: ignore[misc]
        pods = kubelet.start(attempt)
        pid = f"4{attempt[-1]}1"
        report = '{"step": 0, "message": "ValueError: unknown flag --lr-shedule (pid %s)"}'.replace("%s", pid)
        kubelet.set(pods[0], "Failed", report, exit_code=1)
    failed = wait_for(PRETRAINJOB, "policy", "failed fast", phase="Failed")
    condition = next(c for c in failed["conditions"] if c["type"] == "Failed")
    assert (
        condition["reason"] == "FailurePolicy"
        and "the same failure as the attempt before" in condition["message"]
    )
    assert (failed["restarts"], failed["restartsCounted"]) == (3, 1)
    assert (
        failed["lastFailure"]["message"].startswith("ValueError: unknown flag")
        and failed["lastFailure"]["exitCode"] == 1
    )

    # A rule: exit code 3 (the user's "data is corrupt") fails at once.
    rules = {"rules": [{"action": "Fail", "onExitCodes": [3]}]}
    cluster.apply(job_doc(examples, "strict", failurePolicy=rules))
    wait_for(PRETRAINJOB, "strict", "workers created", phase="Pending")
    kubelet.set(kubelet.start("strict-r0")[1], "Failed", "corrupt shard 17", exit_code=3)
    failed = wait_for(PRETRAINJOB, "strict", "failed by the rule", phase="Failed", restarts=0)
    assert "failed by rule 0" in next(c for c in failed["conditions"] if c["type"] == "Failed")["message"]
    assert failed["lastFailure"]["reason"] == "Error" and failed["lastFailure"]["action"] == "Fail"


def test_kubernetes_gang_waits_for_its_api_then_makes_a_workload_and_podgroup_per_attempt(
    cluster: LocalCluster, examples: dict[str, Any], kubelet: Any, wait_for: Any
) -> None:
    doc = job_doc(examples, "native")
    doc["spec"]["scheduling"] = {"gang": "kubernetes", "priorityClassName": "training"}
    cluster.apply(doc)
    waiting = wait_for(PRETRAINJOB, "native", "the missing API said", phase="Pending")
    cluster.wait(lambda: "GenericWorkload" in progressing(cluster, "native"), 30, "GangSchedulerMissing")
    assert kubelet.jobs("native") == []  # no Job without its gang: it would start piecemeal
    assert waiting["restarts"] == 0

    # The API appears (CRDs stand in for the built-in scheduling.k8s.io/v1beta1 kinds here); a fresh
    # operator creates the Workload, then its PodGroup, then the Job whose pods name the group.
    extensions = ApiextensionsV1Api(cluster.client)
    for kind in ("Workload", "PodGroup"):
        extensions.create_custom_resource_definition(podgroup_crd("scheduling.k8s.io", "v1beta1", kind))  # type: ignore[arg-type]
    cluster.stop_operator()
    cluster.start_operator()
    cluster.wait(lambda: kubelet.jobs("native") == ["native-r0"], 30, "attempt r0")
    custom = CustomObjectsApi(cluster.client)

    def native(plural: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = custom.get_namespaced_custom_object(
            "scheduling.k8s.io", "v1beta1", NS, plural, name
        )
        return found

    workload, group = native("workloads", "native-r0"), native("podgroups", "native-r0")
    (template,) = workload["spec"]["podGroupTemplates"]
    assert template == {"name": "workers", "schedulingPolicy": {"gang": {"minCount": 2}},
                        "priorityClassName": "training"}  # fmt: skip
    assert group["spec"]["schedulingPolicy"] == {"gang": {"minCount": 2}}
    assert group["spec"]["workloadRef"] == {"workloadName": "native-r0", "templateName": "workers"}
    pod_spec = kubelet.job("native-r0").spec.template.spec
    assert pod_spec.scheduling_group.pod_group_name == "native-r0"

    # A restart replaces the gang with the attempt: r1's Workload and PodGroup, r0's gone.
    pods = kubelet.start("native-r0")
    kubelet.set(pods[0], "Failed", "RuntimeError: NCCL timeout", exit_code=1)
    cluster.wait(lambda: kubelet.jobs("native") == ["native-r1"], 30, "attempt r1")
    assert native("podgroups", "native-r1")["spec"]["workloadRef"]["workloadName"] == "native-r1"
    for plural in ("workloads", "podgroups"):
        with pytest.raises(ApiException, match="Not Found"):
            native(plural, "native-r0")


def progressing(cluster: LocalCluster, name: str) -> str:
    found = status_of(cluster, name).get("conditions") or []
    return next((f"{c['reason']}: {c['message']}" for c in found if c["type"] == "Progressing"), "")


def test_a_checkpoint_request_reaches_rank0_and_is_followed_until_saved(
    cluster: LocalCluster,
    examples: dict[str, Any],
    podgroups: None,
    reporter: tuple[Reporter, int],
    kubelet: Any,
    wait_for: Any,
) -> None:
    rank0, port = reporter
    cluster.apply(job_doc(examples, "drain", port))
    wait_for(PRETRAINJOB, "drain", "workers created", phase="Pending")
    rank0.update(Progress(step=10, total_steps=200))
    kubelet.start("drain-r0")
    wait_for(PRETRAINJOB, "drain", "running", phase="Running", step=10)

    # Before a planned drain: `kubectl annotate ptj drain vlmop.io/checkpoint-request=before-drain`.
    annotation = {"metadata": {"annotations": {"vlmop.io/checkpoint-request": "before-drain"}}}
    cluster.custom.patch_namespaced_custom_object(G, V, NS, PRETRAINJOB.plural, "drain", annotation)
    cluster.wait(lambda: rank0.requested == "before-drain", 30, "rank 0 to be asked")
    asked = {"token": "before-drain", "state": "Requested", "attempt": 0}
    cluster.wait(lambda: status_of(cluster, "drain").get("checkpointRequest") == asked, 30, "Requested")

    # Rank 0 saves at the end of its step (the trainer's loop, played here) and says so.
    token = rank0.take_request()
    assert token == "before-drain"
    rank0.update(Progress(step=11, total_steps=200, latest_checkpoint="/checkpoints/step-00000011"))
    rank0.request_saved(token)
    saved = {**asked, "state": "Saved", "step": 11, "checkpoint": "/checkpoints/step-00000011"}
    cluster.wait(lambda: status_of(cluster, "drain").get("checkpointRequest") == saved, 30, "Saved")
    time.sleep(1.5)  # resyncs: rank 0 is not asked again for the same token
    assert rank0.take_request() is None


def test_suspend_stops_workers_and_resume_starts_them(
    cluster: LocalCluster, examples: dict[str, Any], podgroups: None, kubelet: Any, wait_for: Any
) -> None:
    cluster.apply(job_doc(examples, "pausable"))
    wait_for(PRETRAINJOB, "pausable", "workers created", phase="Pending")
    kubelet.start("pausable-r0")
    wait_for(PRETRAINJOB, "pausable", "running", phase="Running")
    patch = {"spec": {"runPolicy": {"suspend": True}}}
    cluster.custom.patch_namespaced_custom_object(G, V, NS, PRETRAINJOB.plural, "pausable", patch)
    wait_for(PRETRAINJOB, "pausable", "suspension", phase="Suspended")
    cluster.wait(lambda: kubelet.jobs("pausable") == [], 30, "the workers to stop")
    patch["spec"]["runPolicy"]["suspend"] = False
    cluster.custom.patch_namespaced_custom_object(G, V, NS, PRETRAINJOB.plural, "pausable", patch)
    resumed = wait_for(PRETRAINJOB, "pausable", "resumption", phase="Pending", restarts=0)
    assert {c["type"]: c["reason"] for c in resumed["conditions"]}["Suspended"] == "Resumed"
    cluster.wait(lambda: kubelet.jobs("pausable") == ["pausable-r0"], 30, "the workers to start again")
    # The old pods (still listed: nothing deletes them here) belong to the deleted Job: they do not
    # count, so the resumed job waits for its new pods instead of calling itself Running.
    assert status_of(cluster, "pausable")["phase"] == "Pending"


def test_deleting_the_job_keeps_the_checkpoint_claim(
    cluster: LocalCluster, examples: dict[str, Any], podgroups: None, kubelet: Any, wait_for: Any
) -> None:
    claim = {
        "metadata": {"name": "keep-me-checkpoints"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    cluster.core.create_namespaced_persistent_volume_claim(NS, claim)
    doc = job_doc(examples, "keep-me")
    doc["spec"]["checkpoint"]["claimName"] = "keep-me-checkpoints"
    cluster.apply(doc)
    wait_for(PRETRAINJOB, "keep-me", "workers created", phase="Pending")
    cluster.custom.delete_namespaced_custom_object(G, V, NS, PRETRAINJOB.plural, "keep-me")
    cluster.wait(lambda: kubelet.jobs("keep-me") == [], 30, "the children to be collected")
    assert cluster.core.read_namespaced_persistent_volume_claim("keep-me-checkpoints", NS).metadata.name


def test_a_long_name_is_rejected_at_admission(cluster: LocalCluster, examples: dict[str, Any]) -> None:
    with pytest.raises(ApiException) as error:
        cluster.apply(job_doc(examples, "x" * 41))
    assert error.value.status == 422 and "metadata.name may have at most 40 characters" in str(
        error.value.body
    )


def test_ttl_after_finished_deletes_the_finished_job(
    cluster: LocalCluster, examples: dict[str, Any], podgroups: None, kubelet: Any, wait_for: Any
) -> None:
    cluster.apply(job_doc(examples, "short-lived", ttlSecondsAfterFinished=0))
    wait_for(PRETRAINJOB, "short-lived", "workers created", phase="Pending")
    for pod in kubelet.start("short-lived-r0"):
        kubelet.set(pod, "Succeeded", "")
    gone = "the finished job to be deleted by its TTL"
    cluster.wait(lambda: not cluster.exists(PRETRAINJOB, "short-lived"), 30, gone)
    cluster.wait(lambda: kubelet.jobs("short-lived") == [], 30, "its children to be collected")
