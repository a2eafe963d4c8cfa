"""kopf indexes of what the operator owns, keyed by (namespace, owner kind, owner name): the children
(for drift checks without reading them back) and the worker pods (for the gang's lifecycle). Handlers
receive them as the `children` and `worker_pods` keyword arguments. A change of a Job, pod or
Deployment also wakes its owner in the work queue (kopf indexes an event before its handlers run)."""

from __future__ import annotations

from typing import Any

import kopf

from vlmop.operator.availability import DeploymentView
from vlmop.operator.builders.common import COMPONENT, HASH, MANAGED_BY, OWNER_KIND, OWNER_NAME
from vlmop.operator.kube import ChildRef
from vlmop.operator.lifecycle import JobView, PodView
from vlmop.operator.workqueue import QUEUE

SELECTOR: dict[str, Any] = {
    MANAGED_BY: "vlmop",
    OWNER_KIND: kopf.PRESENT,
    OWNER_NAME: kopf.PRESENT,
}
Key = tuple[str, str, str]
# The kinds whose objects the operator watches only to know its own children; the API server filters
# them (runtime.configure): kopf's `labels=` filters only what it has already received, so without
# this the operator would receive, and hold for a moment, every pod of the cluster.
OWNED = (
    ("v1", "services"),
    ("v1", "configmaps"),
    ("v1", "pods"),
    ("batch", "v1", "jobs"),
    ("apps", "v1", "deployments"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("keda.sh", "v1alpha1", "scaledobjects"),
)
SERVER_SELECTOR = f"{MANAGED_BY}=vlmop,{OWNER_KIND},{OWNER_NAME}"


def owner_key(body: kopf.Body) -> Key:
    labels = body.metadata.labels
    return (str(body.metadata.namespace), labels[OWNER_KIND], labels[OWNER_NAME])


@kopf.index("v1", "services", id="children", labels=SELECTOR)
@kopf.index("v1", "configmaps", id="children", labels=SELECTOR)
@kopf.index("batch", "v1", "jobs", id="children", labels=SELECTOR)
@kopf.index("apps", "v1", "deployments", id="children", labels=SELECTOR)
@kopf.index("autoscaling", "v2", "horizontalpodautoscalers", id="children", labels=SELECTOR)
@kopf.index("networking.k8s.io", "v1", "networkpolicies", id="children", labels=SELECTOR)
@kopf.index("keda.sh", "v1alpha1", "scaledobjects", id="children", labels=SELECTOR)
def children(body: kopf.Body, **_: Any) -> dict[Key, ChildRef]:
    meta = body.metadata
    ref = ChildRef(body["apiVersion"], body["kind"], str(meta.name), meta.annotations.get(HASH))
    return {owner_key(body): ref}


@kopf.index("batch", "v1", "jobs", id="worker_jobs", labels=SELECTOR)
def worker_jobs(body: kopf.Body, status: kopf.Status, **_: Any) -> dict[Key, JobView]:
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    failed = conditions.get("Failed")
    view = JobView(
        name=str(body.metadata.name),
        uid=str(body.metadata.uid),
        failed=(failed.get("message") or failed.get("reason") or "failed") if failed else None,
        complete="Complete" in conditions,
    )
    return {owner_key(body): view}


@kopf.index("v1", "pods", id="worker_pods", labels=SELECTOR)
def worker_pods(body: kopf.Body, status: kopf.Status, **_: Any) -> dict[Key, PodView]:
    meta = body.metadata
    controller: dict[str, Any] = next((r for r in meta.get("ownerReferences", []) if r.get("controller")), {})
    index = meta.annotations.get("batch.kubernetes.io/job-completion-index")
    return {
        owner_key(body): PodView(
            name=str(meta.name),
            job_uid=controller.get("uid"),
            index=int(index) if index and index.isdigit() else None,
            phase=str(status.get("phase") or "Pending"),
            ip=status.get("podIP"),
            deleting=meta.get("deletionTimestamp") is not None,
            ready=any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
            ),
            **termination(status),
        )
    }


USUAL_CONDITIONS = frozenset(
    {"PodScheduled", "Initialized", "ContainersReady", "Ready", "PodReadyToStartContainers"}
)


def termination(status: kopf.Status) -> dict[str, Any]:
    """How the pod ended, as the PodView holds it: the first terminated container's message, exit code
    and reason, the pod's status reason (Evicted, Preempted...) and its unusual True conditions
    (DisruptionTarget) with their reasons (what the failure policy matches)."""
    done: dict[str, Any] = next(
        (
            c["state"]["terminated"]
            for c in status.get("containerStatuses") or []
            if (c.get("state") or {}).get("terminated")
        ),
        {},
    )
    conditions = set()
    for c in status.get("conditions") or []:
        if c.get("status") == "True" and c.get("type") not in USUAL_CONDITIONS:
            conditions |= {c["type"], *([c["reason"]] if c.get("reason") else [])}
    return {
        "message": termination_message(done) if done else "",
        "exit_code": done.get("exitCode"),
        "reason": done.get("reason"),
        "pod_reason": status.get("reason"),
        "conditions": frozenset(conditions),
    }


def termination_message(done: dict[str, Any]) -> str:
    """A terminated container's message, capped for status. A trainer's message is its progress JSON;
    it stays whole (the operator reads progress from it), and a crash's log tail is cut to its last
    lines."""
    text = str(done.get("message") or "")
    if not text:
        return f"{done.get('reason', 'Error')} (exit code {done.get('exitCode')})"
    return text if text.lstrip().startswith("{") else "\n".join(text.splitlines()[-8:])[-1024:]


@kopf.on.event("batch", "v1", "jobs", labels=SELECTOR)
@kopf.on.event("v1", "pods", labels=SELECTOR)
@kopf.on.event("apps", "v1", "deployments", labels=SELECTOR)
async def wake_owner(body: kopf.Body, **_: Any) -> None:
    QUEUE.wake(owner_key(body))


@kopf.on.event("v1", "services", labels=SELECTOR)
@kopf.on.event("v1", "configmaps", labels=SELECTOR)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=SELECTOR)
@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels=SELECTOR)
@kopf.on.event("keda.sh", "v1alpha1", "scaledobjects", labels=SELECTOR)
async def wake_owner_of_deleted(type: str, body: kopf.Body, **_: Any) -> None:
    """A child deleted by someone: its owner makes it again now, not at its next resync (an owner with
    nothing running has none for minutes: lifecycle.QUIET_SECONDS)."""
    if type == "DELETED":
        QUEUE.wake(owner_key(body))


@kopf.index("apps", "v1", "deployments", id="deployments", labels=SELECTOR)
def deployments(body: kopf.Body, spec: kopf.Spec, status: kopf.Status, **_: Any) -> dict[Key, DeploymentView]:
    view = DeploymentView(
        name=str(body.metadata.name),
        component=str(body.metadata.labels.get(COMPONENT, "")),
        replicas=int(spec.get("replicas", 1) or 0),
        ready=int(status.get("readyReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
    )
    return {owner_key(body): view}
