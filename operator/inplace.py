"""In-place restarts (runPolicy.failurePolicy.restartStrategy InPlace): each worker runs the vlmop
supervisor first (vlmop.workloads.common.supervisor), which keeps the pod when the program fails and
restarts it when asked. The operator reads the supervisors of the attempt's workers and asks them to
restart: a failed program shows as a not-ready pod, so the supervisors are read while a worker is not
ready or the job restarts, and not at all while every worker is ready (a restart is done when every
worker runs the current attempt).

What a supervisor says comes from a pod: only known states and bounded values are taken."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from vlmop.operator.api.common import RunPolicy
from vlmop.operator.builders.gang import SUPERVISOR_PORT
from vlmop.operator.lifecycle import TERMINAL, JobView, PodView

TIMEOUT = 2.0
MESSAGE_LIMIT = 4096
PARALLEL = 16  # supervisors asked at once (a restart of a large gang asks every one)
T = TypeVar("T")


def workers(
    policy: RunPolicy, pods: Iterable[PodView], job: JobView | None, status: Mapping[str, Any]
) -> list[PodView]:
    """The attempt's worker pods for lifecycle.decide: as their supervisors see them when the job
    restarts in place and has not finished."""
    pods = list(pods)
    if policy.failure_policy.restart_strategy != "InPlace" or status.get("phase") in TERMINAL:
        return pods
    restarting = status.get("phase") == "Restarting"
    return observe(pods, job, int(status.get("restarts") or 0), restarting)


def observe(pods: Sequence[PodView], job: JobView | None, restarts: int, restarting: bool) -> list[PodView]:
    """The pods as their supervisors see them: a failed program is a Failed pod that lives (in_place),
    a worker not yet restarted into attempt `restarts` (or restarting) is Pending; unasked and
    unreachable ones stay as the pod's status says. Every worker is asked while one is not ready (a
    restart in place needs every supervisor's word) or the job restarts; none while all are ready."""
    running = [
        p for p in pods if job and p.job_uid == job.uid and not p.deleting and p.phase == "Running" and p.ip
    ]
    asked = running if restarting or not all(p.ready for p in running) else []
    answers = dict(zip((p.name for p in asked), _parallel(status, asked), strict=True))
    return [_view(p, said, restarts) if (said := answers.get(p.name)) else p for p in pods]


def restart(pods: Sequence[PodView], restarts: int) -> int:
    """Ask every worker whose supervisor runs an earlier attempt to restart into `restarts`; returns
    how many took it (the others are asked again on the next round)."""
    behind = [p for p in pods if p.in_place and p.attempt is not None and p.attempt < restarts and p.ip]
    return sum(_parallel(lambda p: post_restart(str(p.ip), restarts), behind))


def _view(pod: PodView, said: dict[str, Any], restarts: int) -> PodView:
    attempt, state = said["attempt"], said["state"]
    if attempt >= restarts and state == "Running":
        return dataclasses.replace(pod, in_place=True, attempt=attempt)
    if attempt >= restarts and state == "Failed":
        message = said.get("message") or f"Error (exit code {said.get('exitCode')})"
        return dataclasses.replace(pod, phase="Failed", in_place=True, attempt=attempt, message=message,
                                   exit_code=said.get("exitCode"), reason="Error")  # fmt: skip
    if attempt >= restarts:  # Succeeded: the pod ends with it; Restarting: on its way
        return dataclasses.replace(pod, in_place=True, attempt=attempt)
    return dataclasses.replace(pod, phase="Pending", in_place=True, attempt=attempt)


def status(pod: PodView) -> dict[str, Any] | None:
    """A supervisor's /status, or None when it cannot be reached or says something else."""
    try:
        with urllib.request.urlopen(f"http://{pod.ip}:{SUPERVISOR_PORT}/status", timeout=TIMEOUT) as reply:
            return parse(reply.read(2 * MESSAGE_LIMIT))
    except (OSError, ValueError):
        return None


def parse(text: bytes) -> dict[str, Any] | None:
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    attempt, state, code = raw.get("attempt"), raw.get("state"), raw.get("exitCode")
    if not _integer(attempt) or state not in ("Running", "Failed", "Succeeded", "Restarting"):
        return None
    message = raw.get("message")
    return {
        "attempt": attempt,
        "state": state,
        "exitCode": code if _integer(code) else None,
        "message": message[-MESSAGE_LIMIT:] if isinstance(message, str) else "",
    }


def post_restart(ip: str, attempt: int) -> bool:
    body = json.dumps({"attempt": attempt}).encode()
    request = urllib.request.Request(f"http://{ip}:{SUPERVISOR_PORT}/restart", body, method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:  # noqa: S310 - a pod's IP
            return bool(reply.status in (200, 202))
    except (OSError, ValueError):
        return False


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 31


def _parallel(call: Callable[[PodView], T], pods: Sequence[PodView]) -> list[T]:
    if len(pods) <= 1:
        return [call(p) for p in pods]
    with ThreadPoolExecutor(min(PARALLEL, len(pods))) as pool:
        return list(pool.map(call, pods))
