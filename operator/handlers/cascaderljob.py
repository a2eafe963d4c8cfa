"""CascadeRLJob reconcile: thin — read the object and the indexes, decide the stage (cascade), build
(builders), converge the children (kube), read rank 0's progress into the stage's row, write one
status. Run by the work queue on changes and every resync, like PretrainJob."""

from __future__ import annotations

import datetime
from typing import Any

import kopf

from vlmop.operator import cascade, expectations, inplace, kube, lifecycle, metrics, progress
from vlmop.operator.api import CASCADERLJOB as KIND
from vlmop.operator.api import CascadeRLJobSpec
from vlmop.operator.builders import cascaderljob as build
from vlmop.operator.reconcile import Written, write_status
from vlmop.operator.workqueue import QUEUE, ObjectLogger, idle

ROW_KEYS = {"step": "step", "totalSteps": "totalSteps", "loss": "loss", "latestCheckpoint": "checkpoint"}
# The job-level status fields, as rank 0 names them.
JOB_KEYS = ("meanRewardBySource", "rewardsByVerifier", "clipFraction", "policyVersion")


@QUEUE.register(KIND)
def reconcile(
    body: kopf.Body,
    spec: CascadeRLJobSpec,
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
    jobs = {j.name: j for j in worker_jobs.get(key, [])}
    decision = cascade.decide(
        spec=spec,
        status=current,
        generation=body.metadata.get("generation"),
        job_of=lambda i, attempt: jobs.get(build.stage_job(body, i, attempt)),
        pods=list(worker_pods.get(key, [])),
        now=at,
        export_of=lambda i: build.export_dir(spec, spec.stages[i]),
        observe=lambda job, gang: inplace.workers(spec.run_policy, worker_pods.get(key, []), job, gang),
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
    desired = build.children(body, spec, decision.current, decision.attempt, decision.workers)
    keep = build.finished_jobs(body, decision.finished)
    running = any(p.phase == "Running" for p in worker_pods.get(key, []))  # else events drive it
    try:
        writes = kube.converge(namespace, desired, children.get(key, []), keep, expectations.of(memo))
        metrics.CHILD_WRITES.labels(KIND.kind).inc(writes)
    except kube.MissingAPI as missing:  # retried on the next resync, once it is installed
        running = True
        # The same status and events, seen as one gang's decision.
        gang = lifecycle.Decision(decision.status, decision.workers, events=decision.events)
        generation = body.metadata.get("generation")
        lifecycle.blocked(gang, current, "GangSchedulerMissing", str(missing), generation, at)
    if decision.workers and decision.current is not None:
        inplace.restart(decision.pods, int(decision.status["stages"][decision.current]["restarts"]))
    report(decision, spec.metrics_port, body.metadata.annotations.get(progress.CHECKPOINT_REQUEST))
    for type_, reason, message in decision.events:
        kube.event(body, type_, reason, message)
    idle(memo, lifecycle.next_due(spec.run_policy, decision.status, at, running))
    return write_status(KIND, body, decision.status)


def report(decision: cascade.Decision, port: int, checkpoint_request: str | None = None) -> None:
    """Rank 0's progress into its stage's row (step, loss, checkpoint) and the job's RL figures; and
    follow a checkpoint request."""
    rank0 = decision.rank0
    if rank0 is None or decision.reported is None:
        return
    found = progress.of_rank0(rank0.phase, rank0.ip, rank0.message, port)
    running_ip = rank0.ip if rank0.phase == "Running" else None
    progress.follow_checkpoint_request(decision.status, checkpoint_request, running_ip, port, found)
    if not found:
        return
    status = decision.status
    row = status["stages"][decision.reported]
    for key, name in ROW_KEYS.items():  # a succeeded stage's checkpoint is its exported model
        if key in found and not (name == "checkpoint" and row["phase"] == "Succeeded"):
            row[name] = found[key]
    status.update({k: v for k, v in found.items() if k in JOB_KEYS})
    summary = progress.summary(row)
    status["progress"] = f"{row['name']}: {summary}" if summary else status.get("progress")
