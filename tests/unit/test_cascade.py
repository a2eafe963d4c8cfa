"""The stages of a CascadeRLJob as a pure function: which stage runs, the hand-off when one succeeds,
the job's success after the last, per-stage restarts against each stage's backoffLimit, failures
that name the stage, skipped stages and suspension."""

from __future__ import annotations

import copy
import datetime
from dataclasses import replace
from typing import Any

from vlmop.operator import cascade
from vlmop.operator.api import CascadeRLJobSpec
from vlmop.operator.lifecycle import JobView, PodView

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def spec_of(examples: dict[str, Any], **changes: Any) -> CascadeRLJobSpec:
    raw = copy.deepcopy(examples["cascaderljob"]["spec"])
    for i, stage in changes.get("stages", {}).items():
        raw["stages"][i].update(stage)
    raw.setdefault("runPolicy", {}).update(changes.get("runPolicy", {}))
    return CascadeRLJobSpec.model_validate(raw)


def step(
    spec: CascadeRLJobSpec,
    status: dict[str, Any],
    job: tuple[int, int, JobView] | None = None,
    pods: list[PodView] = (),  # type: ignore[assignment]
) -> cascade.Decision:
    def job_of(index: int, attempt: int) -> JobView | None:
        return job[2] if job and job[:2] == (index, attempt) else None

    return cascade.decide(spec=spec, status=status, generation=1, job_of=job_of, pods=list(pods), now=NOW,
                          export_of=lambda i: f"/ckpt/{spec.stages[i].name}/final")  # fmt: skip


def phases(decision: cascade.Decision) -> dict[str, str]:
    return {r["name"]: r["phase"] for r in decision.status["stages"]}


def conditions(decision: cascade.Decision) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in decision.status["conditions"]}


def pod(job: JobView, index: int, phase: str, message: str = "") -> PodView:
    return PodView(f"{job.name}-{index}", job.uid, index, phase, "10.0.0.1", message)


def test_a_new_job_runs_its_first_stage(examples: dict[str, Any]) -> None:
    d = step(spec_of(examples), {})
    assert (d.current, d.attempt, d.workers) == (0, 0, True)
    assert phases(d) == {"mpo": "Pending", "gspo": "Waiting"}
    assert d.status["currentStage"] == "mpo" and d.status["phase"] == "Pending"


def test_a_succeeded_stage_hands_over_to_the_next(examples: dict[str, Any]) -> None:
    spec = spec_of(examples)
    running = step(spec, {}).status
    mpo = JobView("crl-s0-r0", "u0", complete=True)
    d = step(spec, running, (0, 0, mpo), [pod(mpo, 0, "Succeeded")])
    assert (d.current, d.attempt, d.workers) == (1, 0, True)
    assert phases(d) == {"mpo": "Succeeded", "gspo": "Pending"}
    assert d.status["stages"][0]["checkpoint"] == "/ckpt/mpo/final"
    assert d.status["phase"] == "Pending" and "completionTime" not in d.status
    assert conditions(d)["Progressing"] == ("True", "StageSucceeded")
    assert conditions(d)["Succeeded"][0] == "False"
    assert d.finished == [(0, 0)] and d.status["currentStage"] == "gspo"
    assert any(reason == "StageSucceeded" for _, reason, _ in d.events)

    # The next reconcile: no Job for the gspo stage yet, so it is created; mpo's row stays done.
    again = step(spec, d.status)
    assert (again.current, again.workers, phases(again)) == (1, True, {"mpo": "Succeeded", "gspo": "Pending"})


def test_the_last_stage_succeeding_is_the_jobs_success(examples: dict[str, Any]) -> None:
    spec = spec_of(examples)
    status = {"phase": "Running", "stages": [{"name": "mpo", "phase": "Succeeded", "restarts": 1},
                                             {"name": "gspo", "phase": "Running"}]}  # fmt: skip
    gspo = JobView("crl-s1-r0", "u1", complete=True)
    d = step(spec, status, (1, 0, gspo), [pod(gspo, 0, "Succeeded")])
    assert d.status["phase"] == "Succeeded" and conditions(d)["Succeeded"] == ("True", "Succeeded")
    assert (d.current, d.workers) == (None, False)  # the rollout pool goes; the Jobs stay for their logs
    assert d.finished == [(0, 1), (1, 0)] and d.status["restarts"] == 1
    assert d.status["stages"][1]["checkpoint"] == "/ckpt/gspo/final"


def test_a_failing_stage_restarts_against_its_own_backoff_limit(examples: dict[str, Any]) -> None:
    spec = spec_of(examples, stages={1: {"backoffLimit": 1}})
    status = {"phase": "Running", "stages": [{"name": "mpo", "phase": "Succeeded", "restarts": 2},
                                             {"name": "gspo", "phase": "Running"}]}  # fmt: skip
    gspo = JobView("crl-s1-r0", "u1")
    d = step(spec, status, (1, 0, gspo), [pod(gspo, 0, "Failed", "RuntimeError: rollout server gone")])
    assert d.status["phase"] == "Restarting" and d.status["stages"][1]["restarts"] == 1
    assert d.status["restarts"] == 3  # mpo's two and gspo's one
    assert "stage gspo: worker crl-s1-r0-0" in d.events[0][2]

    retry = JobView("crl-s1-r1", "u2")
    failed = step(spec, d.status, (1, 1, retry), [pod(retry, 0, "Failed", "OOM")])
    assert failed.status["phase"] == "Failed" and phases(failed)["gspo"] == "Failed"
    assert conditions(failed)["Failed"] == ("True", "BackoffLimitExceeded")
    message = next(c["message"] for c in failed.status["conditions"] if c["type"] == "Failed")
    assert message.startswith("stage gspo: ") and "OOM" in message
    assert (failed.current, failed.workers) == (None, False)


def test_a_skipped_stage_is_never_run(examples: dict[str, Any]) -> None:
    d = step(spec_of(examples, stages={0: {"skip": True}}), {})
    assert (d.current, phases(d)) == (1, {"mpo": "Skipped", "gspo": "Pending"})


def test_suspension_stops_the_current_stage(examples: dict[str, Any]) -> None:
    spec = spec_of(examples, runPolicy={"suspend": True})
    status = {"phase": "Running", "stages": [{"name": "mpo", "phase": "Succeeded"},
                                             {"name": "gspo", "phase": "Running"}]}  # fmt: skip
    d = step(spec, status)
    assert (d.current, d.workers, d.status["phase"]) == (1, False, "Suspended")
    assert phases(d)["gspo"] == "Suspended" and conditions(d)["Suspended"][0] == "True"


def test_a_failure_rule_names_its_stage_and_counts_stay_per_stage(examples: dict[str, Any]) -> None:
    rules = {"failurePolicy": {"rules": [{"action": "Fail", "onExitCodes": [3], "stages": ["gspo"]}]}}
    spec = spec_of(examples, runPolicy=rules)
    mpo = JobView("crl-s0-r0", "u0")
    crash = PodView("crl-s0-r0-0", "u0", 0, "Failed", "10.0.0.1", "bad shard", exit_code=3)
    d = step(spec, step(spec, {}).status, (0, 0, mpo), [crash])  # not gspo: the default, a counted restart
    mpo_row = d.status["stages"][0]
    assert (mpo_row["phase"], mpo_row["restarts"], mpo_row["restartsCounted"]) == ("Restarting", 1, 1)
    assert mpo_row["lastFailure"]["exitCode"] == 3 and d.status["restartsCounted"] == 1

    done = {"phase": "Running", "stages": [{"name": "mpo", "phase": "Succeeded", "restarts": 1},
                                           {"name": "gspo", "phase": "Running"}]}  # fmt: skip
    gspo = JobView("crl-s1-r0", "u1")
    crash = PodView("crl-s1-r0-0", "u1", 0, "Failed", "10.0.0.1", "bad shard", exit_code=3)
    d = step(spec, done, (1, 0, gspo), [crash])
    failed = next(c for c in d.status["conditions"] if c["type"] == "Failed")
    assert (d.status["phase"], failed["reason"]) == ("Failed", "FailurePolicy")
    assert failed["message"].startswith("stage gspo:") and "failed by rule 0" in failed["message"]
    assert d.status["stages"][1]["restarts"] == 0 and d.status["restartsCounted"] == 1  # mpo's, from before


def test_a_stage_restarted_in_place_keeps_its_job_and_says_so_in_its_row(examples: dict[str, Any]) -> None:
    spec = spec_of(examples)
    mpo = {"name": "mpo", "phase": "Succeeded", "restarts": 2, "inPlaceRestarts": 1}
    status = {"phase": "Running", "stages": [mpo, {"name": "gspo", "phase": "Running"}]}
    gspo = JobView("crl-s1-r0", "u1")
    alive = [replace(pod(gspo, i, "Running"), in_place=True, attempt=0) for i in range(spec.topology.nodes)]
    alive[-1] = replace(alive[-1], phase="Failed", message="RuntimeError: NCCL timeout", exit_code=1)
    d = step(spec, status, (1, 0, gspo), alive)
    row = d.status["stages"][1]
    assert (row["restarts"], row["inPlaceRestarts"], d.attempt, d.workers) == (1, 1, 0, True)
    assert "inPlaceRestarts" not in d.status  # a stage's count, in its row only
    assert d.finished == [(0, 1)]  # mpo's Job is the one its last re-creation made: -r1
    assert d.pods == alive and "in place" in d.events[0][2]
