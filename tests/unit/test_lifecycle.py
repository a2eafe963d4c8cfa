"""The gang lifecycle as a pure function: pods of the current attempt -> phase, conditions, restarts,
and whether the workers should exist."""

from __future__ import annotations

import datetime
import math
from dataclasses import replace
from typing import Any

from vlmop.operator.api.common import RunPolicy
from vlmop.operator.lifecycle import QUIET_SECONDS, JobView, PodView, attempt_of, blocked, decide, next_due

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
JOB = JobView(name="j-r0", uid="job-0")


def pods(*phases: str, uid: str = "job-0", message: str = "") -> list[PodView]:
    return [PodView(f"p{i}", uid, i, phase, f"10.0.0.{i}", message) for i, phase in enumerate(phases)]


def run(
    status: dict[str, Any] | None = None,
    job: JobView | None = JOB,
    workers: list[PodView] = (),
    **policy: Any,
):  # type: ignore[no-untyped-def, assignment]
    return decide(
        policy=RunPolicy(**policy),
        nodes=2,
        status=status or {},
        generation=3,
        job=job,
        pods=list(workers),
        now=NOW,
    )


def conds(decision: Any) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in decision.status["conditions"]}


def test_new_job_is_pending_with_a_start_time() -> None:
    d = run(job=None)
    assert (d.status["phase"], d.workers, d.status["restarts"]) == ("Pending", True, 0)
    assert d.status["startTime"] == "2026-01-01T12:00:00Z" and d.status["observedGeneration"] == 3
    assert conds(d)["Progressing"] == ("True", "Created")


def test_all_workers_running_is_running_and_rank0_is_found() -> None:
    d = run(workers=pods("Running", "Running"))
    assert d.status["phase"] == "Running" and d.rank0 is not None and d.rank0.index == 0


def test_pods_of_another_job_do_not_count() -> None:
    d = run(workers=pods("Failed", "Failed", uid="old-job"))
    assert d.status["phase"] == "Pending" and d.status["restarts"] == 0 and d.rank0 is None


def test_a_failed_worker_restarts_the_group() -> None:
    d = run({"phase": "Running", "restarts": 0}, workers=pods("Running", "Failed", message="OOMKilled"))
    assert (d.status["phase"], d.status["restarts"], d.workers) == ("Restarting", 1, True)
    assert conds(d)["Progressing"] == ("True", "Restarting")
    assert d.events and "p1 (rank 1) failed: OOMKilled" in d.events[0][2]


def test_the_restarts_cause_stays_until_the_new_attempt_runs() -> None:
    failed = run({"phase": "Running", "restarts": 0}, workers=pods("Running", "Failed", message="OOMKilled"))
    waiting = run(
        failed.status, job=JobView("j-r1", "job-1"), workers=pods("Pending", "Running", uid="job-1")
    )
    progressing = next(c for c in waiting.status["conditions"] if c["type"] == "Progressing")
    assert (waiting.status["phase"], progressing["reason"]) == ("Restarting", "Restarting")
    assert "p1 (rank 1) failed: OOMKilled" in progressing["message"]
    running = run(
        waiting.status, job=JobView("j-r1", "job-1"), workers=pods("Running", "Running", uid="job-1")
    )
    assert running.status["phase"] == "Running" and conds(running)["Progressing"] == ("True", "Running")


def test_a_failed_job_condition_counts_as_a_failure() -> None:
    d = run({"restarts": 0}, job=JobView("j-r0", "job-0", failed="BackoffLimitExceeded"))
    assert d.status["restarts"] == 1


def test_backoff_limit_exceeded_fails_with_the_pod_message() -> None:
    d = run(
        {"phase": "Running", "restarts": 2},
        workers=pods("Failed", "Running", message="CUDA error"),
        backoff_limit=2,
    )
    assert (d.status["phase"], d.workers) == ("Failed", False)
    assert conds(d)["Failed"] == ("True", "BackoffLimitExceeded")
    failed = next(c for c in d.status["conditions"] if c["type"] == "Failed")
    assert "CUDA error" in failed["message"] and d.status["completionTime"]


def test_all_succeeded_is_succeeded_and_keeps_the_job() -> None:
    d = run({"phase": "Running"}, workers=pods("Succeeded", "Succeeded"))
    assert (d.status["phase"], d.workers) == ("Succeeded", True)
    assert conds(d)["Succeeded"] == ("True", "Succeeded") and conds(d)["Failed"][0] == "False"


def test_suspend_stops_workers_and_resume_restarts_them() -> None:
    d = run({"phase": "Running", "restarts": 1}, workers=pods("Running", "Running"), suspend=True)
    assert (d.status["phase"], d.workers, d.status["restarts"]) == ("Suspended", False, 1)
    assert conds(d)["Suspended"] == ("True", "Suspended")
    resumed = run(d.status, job=None)
    assert (resumed.status["phase"], resumed.workers) == ("Pending", True)
    assert conds(resumed)["Suspended"] == ("False", "Resumed")


def test_deadline_fails_and_stops_the_workers() -> None:
    d = run(
        {"startTime": "2026-01-01T11:00:00Z"}, workers=pods("Running", "Running"), active_deadline_seconds=600
    )
    assert (d.status["phase"], d.workers) == ("Failed", False)
    assert conds(d)["Failed"] == ("True", "DeadlineExceeded")


def test_ttl_after_finished_deletes_the_job() -> None:
    done = {"phase": "Succeeded", "completionTime": "2026-01-01T11:59:00Z"}
    assert run(done, ttl_seconds_after_finished=30).delete_self
    assert not run(done, ttl_seconds_after_finished=3600).delete_self
    assert not run(done).delete_self


def test_terminal_phases_stick() -> None:
    failed = run({"phase": "Failed", "restarts": 3}, workers=pods("Failed", "Failed"))
    assert (failed.status["phase"], failed.status["restarts"], failed.workers) == ("Failed", 3, False)


def test_same_inputs_same_status() -> None:
    first = run({"phase": "Running"}, workers=pods("Running", "Running"))
    again = run(first.status, workers=pods("Running", "Running"))
    assert again.status == first.status and not again.events


def test_staying_blocked_keeps_the_transition_time_and_warns_once() -> None:
    first = run(job=None)
    blocked(first, {}, "GangSchedulerMissing", "PodGroup is not served", 3, NOW)
    assert conds(first)["Progressing"] == ("False", "GangSchedulerMissing")
    assert [e[1] for e in first.events] == ["GangSchedulerMissing"]
    later = NOW + datetime.timedelta(minutes=5)
    second = decide(
        policy=RunPolicy(), nodes=4, status=first.status, generation=4, job=None, pods=[], now=later
    )
    blocked(second, first.status, "GangSchedulerMissing", "PodGroup is not served", 4, later)
    progressing = next(c for c in second.status["conditions"] if c["type"] == "Progressing")
    assert progressing["lastTransitionTime"] == "2026-01-01T12:00:00Z"  # decide()'s flip is not seen
    assert progressing["observedGeneration"] == 4 and second.events == []


def test_a_finished_job_has_nothing_time_driven_left_but_its_ttl() -> None:
    done = {"phase": "Succeeded", "completionTime": "2026-01-01T11:59:00Z"}
    assert next_due(RunPolicy(), {"phase": "Running"}, NOW, running=True) is None  # the usual resync
    for running in (True, False):
        assert next_due(RunPolicy(), done, NOW, running) == math.inf  # events only
        assert next_due(RunPolicy(ttlSecondsAfterFinished=300), done, NOW, running) == 240.0
        assert next_due(RunPolicy(ttlSecondsAfterFinished=30), done, NOW, running) == 0.0


def test_a_job_with_nothing_running_waits_for_events_and_its_deadline() -> None:
    pending = {"phase": "Pending", "startTime": "2026-01-01T11:59:00Z"}
    assert next_due(RunPolicy(), pending, NOW, running=False) == QUIET_SECONDS
    assert next_due(RunPolicy(activeDeadlineSeconds=90), pending, NOW, running=False) == 30.0
    assert next_due(RunPolicy(activeDeadlineSeconds=30), pending, NOW, running=False) == 0.0
    assert next_due(RunPolicy(activeDeadlineSeconds=9000), pending, NOW, running=False) == QUIET_SECONDS
    assert next_due(RunPolicy(activeDeadlineSeconds=90), pending, NOW, running=True) is None


def test_a_failure_with_every_pod_alive_restarts_in_place() -> None:
    """restartStrategy InPlace (the default): the supervisors keep the pods, the Job stays."""
    ranks = pods("Running", "Failed", message="boom")
    alive = [replace(p, in_place=True, attempt=2) for p in ranks]  # both supervisors answered
    d = run({"phase": "Running", "restarts": 2, "inPlaceRestarts": 1}, workers=alive)
    assert (d.status["restarts"], d.status["inPlaceRestarts"], d.status["phase"]) == (3, 2, "Restarting")
    assert attempt_of(d.status) == 1 and d.workers  # the same Job (r1)
    assert "in place" in d.events[0][2] and "boom" in d.events[0][2]


def test_a_pod_gone_for_good_or_recreate_restarts_with_new_pods() -> None:
    dead = pods("Running", "Failed", message="OOMKilled")  # the container itself ended
    recreate = {"failurePolicy": {"restartStrategy": "Recreate"}}
    alive = [replace(p, in_place=True) for p in dead]
    unanswered = [dead[0], alive[1]]  # rank 0's supervisor did not answer (or the pod has none)
    for workers, policy in ((dead, {}), (alive, recreate), (alive[1:], {}), (unanswered, {})):
        d = run({"phase": "Running", "restarts": 2, "inPlaceRestarts": 1}, workers=workers, **policy)
        assert (d.status["restarts"], d.status["inPlaceRestarts"]) == (3, 0)
        assert attempt_of(d.status) == 3 and "with new pods" in d.events[0][2]


def test_an_in_place_restart_runs_once_every_supervisor_runs_the_new_attempt() -> None:
    stored = {"phase": "Restarting", "restarts": 1, "inPlaceRestarts": 1}
    behind = [replace(p, phase="Pending", in_place=True, attempt=0) for p in pods("Running", "Running")]
    d = run(stored, workers=[replace(p, phase="Running", attempt=1) for p in behind[:1]] + behind[1:])
    assert (d.status["phase"], d.status["restarts"]) == ("Restarting", 1)  # rank 1 not restarted yet
    d = run(stored, workers=[replace(p, phase="Running", attempt=1) for p in behind])
    assert (d.status["phase"], d.status["restarts"], attempt_of(d.status)) == ("Running", 1, 0)
