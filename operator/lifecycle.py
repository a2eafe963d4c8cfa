"""The life of a gang job, as a pure function: from the pods of the current attempt (and the Job that
owns them), the progress rank 0 reports and the clock, decide the phase, the conditions, whether the
workers should exist, and whether a failure restarts the whole group or ends the job.

Pods are matched to the current Job by its uid, so the pods of a deleted attempt (still terminating
after a restart or a suspension) never count for the new one."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vlmop.operator import failures
from vlmop.operator import status as st
from vlmop.operator.api.common import RunPolicy

# How long an object with nothing running (pods pending, suspended, pools not autoscaled) goes without a
# reconcile when no event comes: events drive it, this is the net for what no event shows. At 10,000
# waiting objects, a 10 s resync alone would be 1,000 reconciles a second.
QUIET_SECONDS = 300.0

TERMINAL = ("Succeeded", "Failed")
OWNED_CONDITIONS = ("Progressing", "Suspended", "Succeeded", "Failed")
# Reasons, as CamelCase constants per metav1.Condition.
CREATED, RUNNING, RESTARTING, SUSPENDED, RESUMED = "Created", "Running", "Restarting", "Suspended", "Resumed"
SUCCEEDED, BACKOFF, DEADLINE = "Succeeded", "BackoffLimitExceeded", "DeadlineExceeded"
FAILURE_POLICY = "FailurePolicy"


@dataclass(frozen=True)
class PodView:
    """What the operator indexes about one worker pod."""

    name: str
    job_uid: str | None  # uid of the controlling Job
    index: int | None  # completion index = node rank
    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    ip: str | None = None
    message: str = ""  # the container's termination message (or its log tail on a crash)
    deleting: bool = False
    exit_code: int | None = None  # the terminated container's
    reason: str | None = None  # the terminated container's reason (OOMKilled, Error, Completed)
    pod_reason: str | None = None  # the pod's status reason (Evicted, Preempted, NodeLost...)
    conditions: frozenset[str] = frozenset()  # True conditions beyond the usual four, and their reasons
    ready: bool = False
    # Its supervisor's word (restartStrategy InPlace, inplace.observe): the container lives, so its
    # processes can be restarted where they are; and the attempt they run.
    in_place: bool = False
    attempt: int | None = None

    def failure(self) -> failures.Failure:
        return failures.of_pod(self.message, self.exit_code, self.reason, self.pod_reason, self.conditions)


@dataclass(frozen=True)
class JobView:
    """The current attempt's Job as the children index sees it."""

    name: str
    uid: str
    failed: str | None = None  # the message of a Failed=True condition
    complete: bool = False


@dataclass
class Decision:
    status: dict[str, Any]
    workers: bool  # whether the attempt's Job (and PodGroup) should exist
    delete_self: bool = False  # ttlSecondsAfterFinished has passed
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    rank0: PodView | None = None  # where to read progress from, when it runs


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def stamp(at: datetime.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def decide(
    *,
    policy: RunPolicy,
    nodes: int,
    status: Mapping[str, Any],
    generation: int | None,
    job: JobView | None,
    pods: Sequence[PodView],
    now: datetime.datetime,
    scope: str = "",
    stage: str | None = None,
) -> Decision:
    """`scope` names the part of the job the gang runs (a stage), prefixed to its failure messages;
    `stage`, the stage's name the failure policy's rules match."""
    current = dict(status)
    restarts = int(current.get("restarts") or 0)
    phase = current.get("phase")
    conditions: list[dict[str, Any]] = []
    events: list[tuple[str, str, str]] = []
    mine = sorted((p for p in pods if job and p.job_uid == job.uid and not p.deleting), key=_rank)
    rank0 = next((p for p in mine if p.index == 0), None)

    def finish(new_phase: str, reason: str, message: str) -> None:
        nonlocal phase
        phase = new_phase
        succeeded = new_phase == "Succeeded"
        conditions.extend(
            [
                st.condition("Succeeded", succeeded, reason, message if succeeded else ""),
                st.condition("Failed", not succeeded, reason, "" if succeeded else message),
                st.condition("Progressing", False, reason, message),
            ]
        )
        current["completionTime"] = stamp(now)
        if not succeeded:
            events.append(("Warning", reason, message))

    if phase in TERMINAL:
        workers = phase == "Succeeded"  # keep a finished Job (and its logs); a failed one is stopped
    elif policy.suspend:
        phase, workers = "Suspended", False
        conditions += [
            st.condition("Suspended", True, SUSPENDED, "workers stopped; checkpoints kept"),
            st.condition("Progressing", False, SUSPENDED, "suspended by spec.runPolicy.suspend"),
        ]
    else:
        workers = True
        start = parse_time(current.get("startTime"))
        if start is None:
            current["startTime"] = stamp(now)
        deadline = policy.active_deadline_seconds
        # A disrupted worker is the cause when there is one, even one being deleted (an eviction, a
        # drain): the others then fail on lost peers, the Job on the missing pod.
        failed_pods = [p for p in mine if p.phase == "Failed"]
        failed = failed_pods[0] if failed_pods else None
        if failed or (job and job.failed):
            ours = sorted((p for p in pods if job and p.job_uid == job.uid), key=_rank)
            failed = next(
                (p for p in ours if (p.phase == "Failed" or p.deleting) and p.failure().disruption), failed
            )
        what = failed.failure() if failed else (failures.of_job(job.failed) if job and job.failed else None)
        failure = (
            f"worker {failed.name} (rank {failed.index}) failed: {reason_of(failed.message)}"
            if failed
            else (f"job {job.name} failed: {job.failed}" if job and job.failed else None)
        )
        if failure and scope:
            failure = f"{scope}: {failure}"
        counted = int(current.get("restartsCounted", restarts))
        if start and deadline and (now - start).total_seconds() > deadline:
            finish("Failed", DEADLINE, f"ran longer than activeDeadlineSeconds={deadline}")
            workers = False
        elif what is not None and failure is not None:
            action, rule = failures.decide(policy.failure_policy, what, stage, current.get("lastFailure"))
            current["lastFailure"] = {
                "reason": what.reason,
                "message": what.message[-failures.MESSAGE_LIMIT :],
                "exitCode": what.exit_code,
                "action": action,
                "time": stamp(now),
            }
            if action == "Fail":
                finish("Failed", FAILURE_POLICY, f"{failure}; failed by {rule}")
                workers = False
            elif action == "Restart" and counted >= policy.backoff_limit:
                finish(
                    "Failed",
                    BACKOFF,
                    f"{failure}; {counted} restarts used of backoffLimit {policy.backoff_limit}",
                )
                workers = False
            else:
                restarts += 1
                counted += action == "Restart"
                phase = "Restarting"
                in_place = policy.failure_policy.restart_strategy == "InPlace" and _alive(mine, nodes, job)
                current["inPlaceRestarts"] = int(current.get("inPlaceRestarts") or 0) + 1 if in_place else 0
                budget = (
                    f"{counted}/{policy.backoff_limit}" if action == "Restart" else f"not counted ({rule})"
                )
                where = "in place" if in_place else "with new pods"
                message = f"restart {restarts} ({budget}) {where} from the latest checkpoint: {failure}"
                conditions.append(st.condition("Progressing", True, RESTARTING, message))
                events.append(("Warning", RESTARTING, message))
            current["restartsCounted"] = counted
        elif job and (job.complete or _count(mine, "Succeeded") >= nodes):
            finish("Succeeded", SUCCEEDED, f"all {nodes} workers completed")
        elif _count(mine, "Running") + _count(mine, "Succeeded") >= nodes:
            phase = "Running"
            conditions.append(st.condition("Progressing", True, RUNNING, f"{nodes}/{nodes} workers running"))
        elif phase == "Restarting":  # the restart's cause stays in the message until the new attempt runs
            said: dict[str, Any] = next(
                (c for c in current.get("conditions", []) if c["type"] == "Progressing"), {}
            )
            why = said.get("message") if said.get("reason") == RESTARTING else None
            message = why or f"{_count(mine, 'Running')}/{nodes} workers running"
            conditions.append(st.condition("Progressing", True, RESTARTING, message))
        else:
            phase = "Pending"
            message = f"{_count(mine, 'Running')}/{nodes} workers running"
            conditions.append(st.condition("Progressing", True, CREATED, message))
        if phase not in TERMINAL:
            if _suspended(status):
                conditions.append(st.condition("Suspended", False, RESUMED, "workers started again"))
            conditions += [
                st.condition("Succeeded", False, str(phase)),
                st.condition("Failed", False, str(phase)),
            ]

    previous = [c for c in current.get("conditions", []) if c["type"] in OWNED_CONDITIONS]
    current["conditions"] = st.merge_conditions(previous, conditions, generation, stamp(now))
    current.update(observedGeneration=generation, phase=phase, restarts=restarts)
    return Decision(
        status=current,
        workers=workers,
        delete_self=_expired(policy, current, now),
        events=events,
        rank0=rank0,
    )


def blocked(
    decision: Decision,
    stored: Mapping[str, Any],
    reason: str,
    message: str,
    generation: int | None,
    now: datetime.datetime,
) -> None:
    """The workers cannot be created (a missing API): say so in Progressing, warn once. Compared with
    the stored status, not with decide()'s, so a tick that stays blocked moves no time and warns not."""
    before = [c for c in stored.get("conditions", []) if c["type"] == "Progressing"]
    update = st.condition("Progressing", False, reason, message)
    (progressing,) = st.merge_conditions(before, [update], generation, stamp(now))
    status = decision.status
    status["conditions"] = [progressing if c["type"] == "Progressing" else c for c in status["conditions"]]
    if not before or before[0].get("reason") != reason:
        decision.events.append(("Warning", reason, message))


def reason_of(message: str) -> str:
    """What a failed pod said: the `message` of a trainer's JSON report, else the text itself."""
    report = failures.report_of(message)
    return str(report.get("message") or message) if report is not None else message or "no message"


def _alive(pods: Sequence[PodView], nodes: int, job: JobView | None) -> bool:
    """Whether every worker of the attempt can be restarted where it is: each rank's supervisor
    answered (whatever its program did) and no pod has failed for good or is being deleted. A pod
    whose supervisor did not answer (gone, or made without one) is re-created with the rest."""
    if job is None or job.failed or any(p.phase == "Failed" and not p.in_place for p in pods):
        return False
    return {p.index for p in pods if p.in_place} >= set(range(nodes))


def attempt_of(status: Mapping[str, Any]) -> int:
    """The number of the attempt whose pods run now (its Job's name): the restart that created them,
    for an in-place restart keeps them."""
    return int(status.get("restarts") or 0) - int(status.get("inPlaceRestarts") or 0)


def _rank(pod: PodView) -> tuple[int, str]:
    return (pod.index if pod.index is not None else 1 << 30, pod.name)


def _count(pods: Sequence[PodView], phase: str) -> int:
    return len({p.index for p in pods if p.phase == phase})


def _suspended(status: Mapping[str, Any]) -> bool:
    return any(c["type"] == "Suspended" and c["status"] == "True" for c in status.get("conditions", []))


def next_due(
    policy: RunPolicy, status: Mapping[str, Any], now: datetime.datetime, running: bool
) -> float | None:
    """Seconds until a job has time-driven work again: None while a worker runs (rank 0's progress,
    the deadline: the usual resync); infinity when finished without ttlSecondsAfterFinished (only an
    event can change it), the time left until it is deleted when finished with one; while nothing
    runs (pods pending, suspended) events drive it: the deadline's time left, at most QUIET_SECONDS."""
    done = parse_time(status.get("completionTime"))
    if status.get("phase") in TERMINAL and done is not None:
        ttl = policy.ttl_seconds_after_finished
        return math.inf if ttl is None else max(0.0, ttl - (now - done).total_seconds())
    if running:
        return None
    start, deadline = parse_time(status.get("startTime")), policy.active_deadline_seconds
    left = deadline - (now - start).total_seconds() if start and deadline else QUIET_SECONDS
    return max(0.0, min(left, QUIET_SECONDS))


def _expired(policy: RunPolicy, status: Mapping[str, Any], now: datetime.datetime) -> bool:
    done = parse_time(status.get("completionTime"))
    ttl = policy.ttl_seconds_after_finished
    return bool(
        status.get("phase") in TERMINAL and done and ttl is not None and (now - done).total_seconds() >= ttl
    )
