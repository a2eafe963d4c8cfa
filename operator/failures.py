"""What a gang's failure is and what it costs, as pure functions: the failing pod (or the attempt's
Job) classified (an OOM kill, an error exit, a disruption: eviction, preemption, node loss, a trainer
that saved on SIGTERM), then runPolicy.failurePolicy's rules in order, then the defaults Kubeflow and
JobSet users ask for: a disruption restarts without counting against backoffLimit, the same message
as the previous attempt's fails at once, anything else restarts, counted."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vlmop.operator.api.common import FailureAction, FailurePolicy

SIGTERM_EXIT = 143
SIGTERM_BY_TORCHRUN = "got signal: 15"  # torchrun's SignalException when it was sent SIGTERM
MESSAGE_LIMIT = 1024  # of a failure's message kept in status (its end: where a traceback says why)
# Pod status reasons and conditions that mean the pod was taken away, not that it failed.
DISRUPTIONS = frozenset(
    {
        "Evicted",
        "Preempted",
        "NodeLost",
        "DisruptionTarget",
        "SavedOnSigterm",
        "Shutdown",
        "NodeShutdown",
        "Terminated",
        "DeletionByPodGC",
        "TerminationByKubelet",
        "PreemptionByScheduler",
        "EvictionByEvictionAPI",
    }
)


@dataclass(frozen=True)
class Failure:
    """One attempt's failure: what the pod (or Job) said."""

    reason: str  # the class shown in status: OOMKilled, Error, a disruption's reason, JobFailed
    message: str  # the termination message's text (a trainer's JSON report: its message)
    exit_code: int | None = None
    reasons: frozenset[str] = field(default_factory=frozenset)  # everything a rule's onReasons can match

    @property
    def disruption(self) -> bool:
        return bool(self.reasons & DISRUPTIONS)


def of_pod(
    message: str,
    exit_code: int | None,
    reason: str | None,
    pod_reason: str | None,
    conditions: frozenset[str],
) -> Failure:
    """`reason`: the container's terminated reason (OOMKilled, Error); `pod_reason`: the pod's status
    reason (Evicted, Preempted, NodeLost...); `conditions`: the pod's True conditions' types and their
    reasons (DisruptionTarget and why)."""
    report = report_of(message)
    text = str(report.get("message") or "") if report is not None else message
    reasons = {r for r in (reason, pod_reason) if r} | set(conditions)
    if report is not None and report.get("reason"):
        reasons.add(str(report["reason"]))
    if exit_code not in (None, 0) and reason != "OOMKilled":
        reasons.add("Error")
    if exit_code == SIGTERM_EXIT or SIGTERM_BY_TORCHRUN in message:
        reasons.add("Terminated")  # only Kubernetes sends a container SIGTERM: it was being stopped
    shown = next((r for r in ("OOMKilled", *sorted(reasons & DISRUPTIONS)) if r in reasons), None)
    return Failure(
        shown or ("Error" if exit_code else reason or "Error"),
        text or message or "no message",
        exit_code,
        frozenset(reasons),
    )


def of_job(message: str) -> Failure:
    """The attempt's Job failed and no failed pod of it is left to say why. The gang's Job fails on a
    DisruptionTarget pod by its podFailurePolicy (builders/gang.py), whose message names the condition."""
    reasons = {"JobFailed"} | ({"DisruptionTarget"} if "DisruptionTarget" in message else set())
    return Failure("DisruptionTarget" if len(reasons) > 1 else "JobFailed", message, None, frozenset(reasons))


def decide(
    policy: FailurePolicy, failure: Failure, stage: str | None, last: Mapping[str, Any] | None
) -> tuple[FailureAction, str]:
    """The action for `failure` and why (a rule's index, or the default that applied); `last` is the
    status' lastFailure of the attempt before."""
    for i, rule in enumerate(policy.rules):
        if rule.stages and stage not in rule.stages:
            continue
        if rule.on_exit_codes and failure.exit_code not in rule.on_exit_codes:
            continue
        if rule.on_reasons and not failure.reasons & set(rule.on_reasons):
            continue
        if rule.on_message is not None and not re.search(rule.on_message, failure.message):
            continue
        return rule.action, f"rule {i}"
    if failure.disruption:
        return "RestartIgnoringBudget", "a disruption"
    if policy.fail_on_repeated_message and last and same(last, failure):
        return "Fail", "the same failure as the attempt before"
    return "Restart", "a failure"


def same(last: Mapping[str, Any], failure: Failure) -> bool:
    """The previous attempt's lastFailure says what this failure says: the same class and message, its
    numbers aside (timestamps, addresses and process ids change between attempts; the words do not)."""
    return last.get("reason") == failure.reason and _words(str(last.get("message") or "")) == _words(
        failure.message[-MESSAGE_LIMIT:]
    )


def _words(message: str) -> str:
    return re.sub(r"(0x)?[0-9a-f]*[0-9][0-9a-f]*", "#", message)


def report_of(message: str) -> dict[str, Any] | None:
    """A trainer's JSON report (its progress and `message`, `reason`), else None."""
    if not message.lstrip().startswith("{"):
        return None
    try:
        report = json.loads(message)
    except ValueError:
        return None
    return report if isinstance(report, dict) else None
