"""The failure policy (vlmop.operator.failures) and what lifecycle.decide makes of it: a pod's failure
classified from what Kubernetes and the trainer say, rules first in order, then the defaults
(disruptions are free, the same failure twice fails at once, anything else is counted)."""

from __future__ import annotations

import datetime
from typing import Any

from vlmop.operator import failures
from vlmop.operator.api.common import FailurePolicy, RunPolicy
from vlmop.operator.lifecycle import JobView, PodView, decide

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
JOB = JobView(name="j-r0", uid="job-0")


def pod(
    message: str = "",
    code: int | None = 1,
    reason: str | None = "Error",
    pod_reason: str | None = None,
    conditions: frozenset[str] = frozenset(),
) -> failures.Failure:
    return failures.of_pod(message, code, reason, pod_reason, conditions)


def policy(*rules: dict[str, Any], repeated: bool = True) -> FailurePolicy:
    return FailurePolicy.model_validate({"rules": list(rules), "failOnRepeatedMessage": repeated})


def test_what_kubernetes_and_the_trainer_say_is_classified() -> None:
    oom = pod("", 137, "OOMKilled")
    assert (oom.reason, oom.disruption, oom.reasons) == ("OOMKilled", False, {"OOMKilled"})
    evicted = pod("", 137, "Error", "Evicted")
    assert evicted.reason == "Evicted" and evicted.disruption
    preempted = pod("", 143, "Error", None, frozenset({"DisruptionTarget", "PreemptionByScheduler"}))
    assert preempted.disruption and preempted.reason in ("DisruptionTarget", "PreemptionByScheduler")
    saved = pod(
        '{"step": 50, "reason": "SavedOnSigterm", "message": "stopped by SIGTERM after saving step 50"}', 143
    )
    assert saved.disruption and saved.message == "stopped by SIGTERM after saving step 50"
    crash = pod('{"step": 3, "message": "ValueError: bad flag"}', 1)
    assert (crash.reason, crash.message, crash.exit_code, crash.disruption) == (
        "Error",
        "ValueError: bad flag",
        1,
        False,
    )
    job = failures.of_job("BackoffLimitExceeded")
    assert job.reason == "JobFailed" and not job.disruption


def test_rules_match_every_matcher_given_in_order() -> None:
    rules = policy(
        {"action": "Restart", "onExitCodes": [3], "stages": ["gspo"]},
        {"action": "Fail", "onExitCodes": [3]},
        {"action": "RestartIgnoringBudget", "onReasons": ["OOMKilled"]},
        {"action": "Fail", "onMessage": r"CUDA error: an illegal memory access"},
    )
    assert failures.decide(rules, pod("corrupt", 3), "gspo", None) == ("Restart", "rule 0")
    assert failures.decide(rules, pod("corrupt", 3), "mpo", None) == ("Fail", "rule 1")
    assert failures.decide(rules, pod("", 137, "OOMKilled"), None, None) == (
        "RestartIgnoringBudget",
        "rule 2",
    )
    text = "Traceback ...\nRuntimeError: CUDA error: an illegal memory access was encountered"
    assert failures.decide(rules, pod(text), None, None) == ("Fail", "rule 3")
    assert failures.decide(rules, pod("NCCL timeout"), None, None) == ("Restart", "a failure")


def test_defaults_disruptions_are_free_and_a_repeated_failure_fails() -> None:
    empty = policy()
    assert failures.decide(empty, pod("", 137, "Error", "Evicted"), None, None)[0] == "RestartIgnoringBudget"
    first = pod("2026-01-01 12:00:01 ValueError: unknown flag --lr-shedule (pid 4012, at 0x7f3a9c)")
    assert failures.decide(empty, first, None, None) == ("Restart", "a failure")
    last = {"reason": "Error", "message": first.message}
    again = pod("2026-01-01 12:03:44 ValueError: unknown flag --lr-shedule (pid 5120, at 0x7f11d0)")
    assert failures.decide(empty, again, None, last) == ("Fail", "the same failure as the attempt before")
    assert failures.decide(policy(repeated=False), again, None, last)[0] == "Restart"
    other = pod("RuntimeError: NCCL watchdog timeout")
    assert failures.decide(empty, other, None, last)[0] == "Restart"
    oom_after_error = pod("ValueError: unknown flag --lr-shedule", 137, "OOMKilled")
    assert failures.decide(empty, oom_after_error, None, last)[0] == "Restart"  # another class
    # A disruption twice is still a disruption: a spot node lost twice is not a bug.
    evicted = pod("", 137, "Error", "Evicted")
    assert failures.decide(empty, evicted, None, {"reason": "Evicted", "message": evicted.message})[0] == (
        "RestartIgnoringBudget"
    )


def run(status: dict[str, Any], workers: list[PodView], **run_policy: Any):  # type: ignore[no-untyped-def]
    return decide(
        policy=RunPolicy.model_validate(run_policy),
        nodes=2,
        status=status,
        generation=1,
        job=JOB,
        pods=workers,
        now=NOW,
    )


def test_a_disruption_restarts_without_counting_and_is_the_cause_over_its_peers() -> None:
    lost = PodView(
        "p1",
        "job-0",
        1,
        "Failed",
        None,
        "",
        exit_code=143,
        reason="Error",
        conditions=frozenset({"DisruptionTarget", "DeletionByTaintManager"}),
    )
    peer = PodView(
        "p0", "job-0", 0, "Failed", None, "RuntimeError: NCCL error: remote process exited", exit_code=1
    )
    d = run({"phase": "Running", "restarts": 0}, [peer, lost], backoffLimit=0)
    assert (d.status["phase"], d.status["restarts"], d.status["restartsCounted"]) == ("Restarting", 1, 0)
    assert d.status["lastFailure"]["reason"] in ("DisruptionTarget", "DeletionByTaintManager")
    assert "p1 (rank 1)" in d.events[0][2] and "not counted" in d.events[0][2]


def test_counted_restarts_run_out_and_the_old_status_counts_every_restart() -> None:
    crash = [PodView("p0", "job-0", 0, "Failed", None, "boom 1", exit_code=1)]
    d = run({"phase": "Running", "restarts": 2}, crash, backoffLimit=2)  # stored before restartsCounted
    assert d.status["phase"] == "Failed"
    assert (
        next(c for c in d.status["conditions"] if c["type"] == "Failed")["reason"] == "BackoffLimitExceeded"
    )
    free = run({"phase": "Running", "restarts": 5, "restartsCounted": 1}, crash, backoffLimit=2)
    assert (free.status["phase"], free.status["restarts"], free.status["restartsCounted"]) == (
        "Restarting",
        6,
        2,
    )


def test_a_rule_fails_at_once_and_says_which() -> None:
    crash = [PodView("p0", "job-0", 0, "Failed", None, "corrupt shard", exit_code=3)]
    d = run({"phase": "Running"}, crash, failurePolicy={"rules": [{"action": "Fail", "onExitCodes": [3]}]})
    failed = next(c for c in d.status["conditions"] if c["type"] == "Failed")
    assert (d.status["phase"], failed["reason"], d.workers) == ("Failed", "FailurePolicy", False)
    assert "failed by rule 0" in failed["message"] and d.status["lastFailure"]["action"] == "Fail"
