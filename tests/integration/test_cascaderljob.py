"""The real operator runs examples/cascaderljob.yaml stage by stage on the local API server: the MPO
gang, then — with no human step — the GSPO gang started from MPO's exported model beside its rollout
pool, the RL figures rank 0 reports (mean reward per source, clip fraction, policy version) in status,
and the pool gone once the job succeeds. The test plays the Job controller and kubelet (the emulator
runs neither); rank 0's progress comes from the trainer's real reporter."""

from __future__ import annotations

import copy
import itertools
import time
from typing import Any

import pytest
from kubernetes.client import ApiException, ApiextensionsV1Api, AppsV1Api, CustomObjectsApi, NetworkingV1Api

from vlmop.operator.api import CASCADERLJOB
from vlmop.operator.localapi.cluster import LocalCluster, podgroup_crd
from vlmop.workloads.common.progress import Progress, Reporter

NS = "default"


def command_flags(job: Any) -> dict[str, str]:
    command = job.spec.template.spec.containers[0].command
    return {a: b for a, b in itertools.pairwise(command) if a.startswith("--")}


def test_mpo_hands_over_to_gspo_and_the_job_succeeds(
    cluster: LocalCluster,
    examples: dict[str, Any],
    reporter: tuple[Reporter, int],
    kubelet: Any,
    wait_for: Any,
    owned: Any,
) -> None:
    progress_server, port = reporter
    doc = copy.deepcopy(examples["cascaderljob"])
    doc["metadata"]["name"] = "crl"
    doc["spec"]["metricsPort"] = port
    cluster.apply(doc)

    def deployments() -> list[str]:
        return sorted(name for kind, name in owned("crl") if kind == "Deployment")

    wait_for(CASCADERLJOB, "crl", "the mpo stage's gang", phase="Pending", currentStage="mpo")
    assert kubelet.jobs("crl") == ["crl-s0-r0"] and deployments() == []
    assert command_flags(kubelet.job("crl-s0-r0"))["--model-preset"] == "tiny"

    (mpo,) = kubelet.start("crl-s0-r0", nodes=1)
    wait_for(CASCADERLJOB, "crl", "mpo running", phase="Running")
    final = (
        '{"step": 10, "totalSteps": 10, "loss": 0.69, "latestCheckpoint": "/checkpoints/mpo/step-00000010"}'
    )
    kubelet.set(mpo, "Succeeded", final)

    # Hand-off: gspo starts from mpo's exported model, with the rollout pool beside it.
    handed = wait_for(CASCADERLJOB, "crl", "the hand-off to gspo", currentStage="gspo")
    rows = {r["name"]: r for r in handed["stages"]}
    assert rows["mpo"]["phase"] == "Succeeded" and rows["mpo"]["checkpoint"] == "/checkpoints/mpo/final"
    assert (rows["mpo"]["step"], rows["mpo"]["loss"]) == (10, 0.69)
    assert handed["phase"] in ("Pending", "Running") and "completionTime" not in handed
    cluster.wait(lambda: kubelet.jobs("crl") == ["crl-s0-r0", "crl-s1-r0"], 30, "the gspo gang (mpo's kept)")
    assert command_flags(kubelet.job("crl-s1-r0"))["--model-path"] == "/checkpoints/mpo/final"
    cluster.wait(
        lambda: deployments() == ["crl-rollout"],
        30,
        "the rollout pool",
    )
    assert cluster.core.read_namespaced_service("crl-rollout", NS).spec.cluster_ip == "None"
    # Only the gspo gang's pods reach the rollout servers (their weight-reload endpoint included).
    networking = NetworkingV1Api(cluster.client)
    policy = networking.read_namespaced_network_policy("crl-rollout", NS).spec
    rollout = AppsV1Api(cluster.client).read_namespaced_deployment("crl-rollout", NS)
    assert policy.pod_selector.match_labels == rollout.spec.selector.match_labels
    ((peer,),) = [rule._from for rule in policy.ingress]
    assert peer.pod_selector.match_labels == kubelet.job("crl-s1-r0").spec.template.metadata.labels

    # Rank 0 of gspo reports the RL figures while it runs.
    tallies = {
        "math": {"scored": 32, "failed": 0, "timedOut": 0, "fullScoreShare": 0.25, "meanReward": 0.25},
        "game24": {"scored": 0, "failed": 32, "timedOut": 0, "fullScoreShare": 0, "meanReward": 0},
    }
    figures = {"meanRewardBySource": {"gsm8k": 0.25, "bootcamp-24": 0.5}, "clipFraction": 0.02,
               "policyVersion": 6, "rewardsByVerifier": tallies}  # fmt: skip
    progress_server.update(Progress(step=6, total_steps=20, loss=0.01, extra=figures))
    (gspo,) = kubelet.start("crl-s1-r0", nodes=1)
    running = wait_for(CASCADERLJOB, "crl", "gspo's figures", phase="Running", policyVersion=6)
    assert running["meanRewardBySource"] == {"gsm8k": 0.25, "bootcamp-24": 0.5}
    assert running["rewardsByVerifier"] == tallies  # a verifier failing every sample shows within a step
    assert running["clipFraction"] == 0.02 and running["progress"] == "gspo: 6/20 steps (30%)"

    # Converged: resync ticks read the indexes and rank 0's endpoint, and write nothing.
    time.sleep(1)
    before = len(cluster.server.api._requests)
    time.sleep(3)  # six resyncs at --resync-seconds 0.5
    writes = [r for r in cluster.server.api._requests[before:] if r.method.value != "GET"]
    assert not writes, [(r.method, str(r.url)) for r in writes]

    progress_server.close()
    kubelet.set(gspo, "Succeeded", '{"step": 20, "totalSteps": 20, "policyVersion": 20}')
    done = wait_for(CASCADERLJOB, "crl", "success", phase="Succeeded", policyVersion=20)
    assert {c["type"]: c["status"] for c in done["conditions"]}["Succeeded"] == "True"
    assert [r["phase"] for r in done["stages"]] == ["Succeeded", "Succeeded"] and done["completionTime"]
    cluster.wait(lambda: deployments() == [], 30, "the rollout pool to go")
    selector = "vlmop.io/owner-name=crl"
    cluster.wait(
        lambda: not networking.list_namespaced_network_policy(NS, label_selector=selector).items,
        30,
        "the rollout pool's NetworkPolicy to go",
    )
    assert kubelet.jobs("crl") == ["crl-s0-r0", "crl-s1-r0"]  # kept for their logs
    events = cluster.core.list_namespaced_event(NS).items
    assert any(e.reason == "StageSucceeded" and e.involved_object.name == "crl" for e in events)


def test_a_lone_gspo_stage_needs_a_claim_to_share_weights(
    cluster: LocalCluster, examples: dict[str, Any]
) -> None:
    doc = copy.deepcopy(examples["cascaderljob"])
    doc["metadata"]["name"] = "no-claim"
    doc["spec"]["stages"][0]["skip"] = True
    del doc["spec"]["checkpoint"]["claimName"]
    del doc["spec"]["stages"][1]["weightSync"]
    with pytest.raises(ApiException) as error:
        cluster.apply(doc)
    assert error.value.status == 422
    assert "set weightSync.claimName or checkpoint.claimName" in str(error.value.body)


def test_a_gspo_stage_is_one_composite_kubernetes_gang_with_its_rollout_pool(
    cluster: LocalCluster, examples: dict[str, Any], kubelet: Any, wait_for: Any
) -> None:
    # CRDs stand in for Kubernetes 1.37's built-in kinds, which this API server does not serve.
    extensions = ApiextensionsV1Api(cluster.client)
    for version, kind in (
        ("v1beta1", "Workload"),
        ("v1beta1", "PodGroup"),
        ("v1alpha3", "CompositePodGroup"),
    ):
        extensions.create_custom_resource_definition(podgroup_crd("scheduling.k8s.io", version, kind))  # type: ignore[arg-type]
    doc = copy.deepcopy(examples["cascaderljob"])
    doc["metadata"]["name"] = "gang"
    doc["spec"]["scheduling"] = {"gang": "kubernetes"}
    doc["spec"]["stages"][0]["skip"] = True  # straight to gspo, from a checkpoint vLLM can serve
    doc["spec"]["model"] = {"path": "/models/tiny"}
    cluster.apply(doc)
    wait_for(CASCADERLJOB, "gang", "the gspo stage's gang", currentStage="gspo")
    cluster.wait(lambda: kubelet.jobs("gang") == ["gang-s1-r0"], 30, "attempt r0")
    custom = CustomObjectsApi(cluster.client)

    def native(version: str, plural: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = custom.get_namespaced_custom_object(
            "scheduling.k8s.io", version, NS, plural, name
        )
        return found

    replicas = doc["spec"]["stages"][1]["rollout"].get("replicas", 1)
    (composite,) = native("v1beta1", "workloads", "gang-s1-r0")["spec"]["compositePodGroupTemplates"]
    assert composite["schedulingPolicy"] == {"gang": {"minGroupCount": 2}}
    groups = [(t["name"], t["schedulingPolicy"]["gang"]["minCount"]) for t in composite["podGroupTemplates"]]
    assert groups == [("workers", 1), ("rollout", replicas)]
    assert (
        native("v1alpha3", "compositepodgroups", "gang-s1-r0")["spec"]["workloadRef"]["templateName"]
        == "gang"
    )
    for group in ("gang-s1-r0", "gang-s1-r0-rollout"):
        assert native("v1beta1", "podgroups", group)["spec"]["parentCompositePodGroupName"] == "gang-s1-r0"
    assert kubelet.job("gang-s1-r0").spec.template.spec.scheduling_group.pod_group_name == "gang-s1-r0"
    rollout = AppsV1Api(cluster.client).read_namespaced_deployment("gang-rollout", NS)
    assert rollout.spec.template.spec.scheduling_group.pod_group_name == "gang-s1-r0-rollout"

    # The trainer fails: the next attempt's composite gang replaces this one's, every piece of it.
    (trainer,) = kubelet.start("gang-s1-r0", nodes=1)
    kubelet.set(trainer, "Failed", "RuntimeError: NCCL timeout", exit_code=1)
    cluster.wait(lambda: kubelet.jobs("gang") == ["gang-s1-r1"], 30, "attempt r1")
    assert (
        native("v1beta1", "podgroups", "gang-s1-r1-rollout")["spec"]["parentCompositePodGroupName"]
        == "gang-s1-r1"
    )
    gone = [
        ("v1beta1", "workloads", "gang-s1-r0"),
        ("v1beta1", "podgroups", "gang-s1-r0"),
        ("v1beta1", "podgroups", "gang-s1-r0-rollout"),
        ("v1alpha3", "compositepodgroups", "gang-s1-r0"),
    ]
    for version, plural, name in gone:
        with pytest.raises(ApiException, match="Not Found"):
            native(version, plural, name)
