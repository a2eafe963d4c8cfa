"""PretrainJob reconcile: thin — read the object and the indexes, decide (lifecycle), build (builders),
converge the children (kube), read rank 0's progress, write one status.

The work queue runs it on every change of the object and, for pods that change under a job, every
--resync-seconds (the pods index makes a converged round free of API calls)."""

from __future__ import annotations

import datetime
from typing import Any

import kopf

from vlmop.operator import expectations, inplace, kube, lifecycle, metrics, progress
from vlmop.operator.api import PRETRAINJOB as KIND
from vlmop.operator.api import PretrainJobSpec
from vlmop.operator.builders import gang as gangs
from vlmop.operator.builders import pretrainjob as build
from vlmop.operator.reconcile import Written, write_status
from vlmop.operator.workqueue import QUEUE, ObjectLogger, idle


@QUEUE.register(KIND)
def reconcile(
    body: kopf.Body,
    spec: PretrainJobSpec,
    logger: ObjectLogger,
    children: kopf.Index[Any, kube.ChildRef],
    worker_jobs: kopf.Index[Any, lifecycle.JobView],
    worker_pods: kopf.Index[Any, lifecycle.PodView],
    memo: dict[str, Any],
    **_: Any,
) -> Written:
    namespace, name = str(body.metadata.namespace), str(body.metadata.name)
    key = (namespace, KIND.kind, name)
    current, at = dict(body.get("status") or {}), datetime.datetime.now(datetime.UTC)
    attempt_job = gangs.job_name(name, lifecycle.attempt_of(current))
    job = next((j for j in worker_jobs.get(key, []) if j.name == attempt_job), None)
    pods = inplace.workers(spec.run_policy, worker_pods.get(key, []), job, current)
    decision = lifecycle.decide(
        policy=spec.run_policy,
        nodes=spec.topology.nodes,
        status=current,
        generation=body.metadata.get("generation"),
        job=job,
        pods=pods,
        now=at,
    )
    if decision.delete_self:
        logger.info("ttlSecondsAfterFinished passed: deleting the job (checkpoints stay)")
        kube.delete_owner(body, KIND.plural)
        return None
    if int(decision.status.get("restarts") or 0) != int(current.get("restarts") or 0):
        # The restart on record before the old attempt's Job goes (the write wakes the next round,
        # which converges): an operator killed in between cannot bring the old attempt back.
        report(decision, spec.metrics_port)
        for type_, reason, message in decision.events:
            kube.event(body, type_, reason, message)
        return write_status(KIND, body, decision.status)
    desired = build.children(body, spec, lifecycle.attempt_of(decision.status), decision.workers)
    running = any(p.phase == "Running" for p in pods)  # else events drive it (lifecycle.next_due)
    try:
        metrics.CHILD_WRITES.labels(KIND.kind).inc(
            kube.converge(namespace, desired, children.get(key, []), expected=expectations.of(memo))
        )
    except kube.MissingAPI as missing:  # retried on the next resync, once it is installed
        running = True
        lifecycle.blocked(
            decision, current, "GangSchedulerMissing", str(missing), body.metadata.get("generation"), at
        )
    if decision.workers:
        inplace.restart(pods, int(decision.status["restarts"]))
    report(decision, spec.metrics_port, body.metadata.annotations.get(progress.CHECKPOINT_REQUEST))
    for type_, reason, message in decision.events:
        kube.event(body, type_, reason, message)
    idle(memo, lifecycle.next_due(spec.run_policy, decision.status, at, running))
    return write_status(KIND, body, decision.status)


def report(decision: lifecycle.Decision, port: int, checkpoint_request: str | None = None) -> None:
    """Fold rank 0's progress into the status: live from /progress while it runs, else from its
    termination message once it has ended; and follow a checkpoint request."""
    rank0 = decision.rank0
    found = progress.of_rank0(rank0.phase, rank0.ip, rank0.message, port) if rank0 else None
    running_ip = rank0.ip if rank0 and rank0.phase == "Running" else None
    progress.follow_checkpoint_request(decision.status, checkpoint_request, running_ip, port, found)
    if not found:
        return
    status = decision.status
    status.update({k: found[k] for k in progress.STATUS_KEYS if k in found})
    status["progress"] = progress.summary(status) or status.get("progress")
