"""Progress travels from rank 0 to the operator without giving the trainer any API access: while it
runs, the operator reads rank 0's `GET /progress` (JSON, beside `/metrics` on the metrics port); when
it ends, the same JSON is rank 0's termination message, which the kubelet copies into the pod status.

The JSON comes from a pod, so only known keys of the right type are taken, and strings are bounded."""

from __future__ import annotations

import json
import math
import urllib.request
from collections.abc import Mapping
from typing import Any, TypeGuard

# The JSON keys are the status field names (camelCase), written by vlmop.workloads.common.progress.
NUMBERS = ("step", "totalSteps", "loss", "tokensPerSecond", "mfu", "clipFraction", "policyVersion", "auxLoss",
           "expertLoadImbalance")  # fmt: skip
INTEGERS = ("step", "totalSteps", "policyVersion")
STRINGS = ("latestCheckpoint", "checkpointRequest")
STATUS_KEYS = ("step", "totalSteps", "loss", "tokensPerSecond", "latestCheckpoint", "auxLoss",
               "expertLoadImbalance")  # fmt: skip
# The GSPO trainer's mean reward per task/source and its last step's tally per verifier; bounded like
# everything from a pod.
BY_SOURCE, BY_VERIFIER, MAX_SOURCES = "meanRewardBySource", "rewardsByVerifier", 64
TALLY_COUNTS, TALLY_SHARES = ("scored", "failed", "timedOut"), ("fullScoreShare", "meanReward")


def parse(text: str | bytes) -> dict[str, Any] | None:
    """The progress fields of one report; None when it is not a progress report at all."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    out: dict[str, Any] = {}
    for key in NUMBERS:
        value = raw.get(key)
        if _number(value):
            out[key] = int(value) if key in INTEGERS else round(float(value), 4)
    for key in STRINGS:
        value = raw.get(key)
        if isinstance(value, str) and len(value) <= 1024:
            out[key] = value
    sources = raw.get(BY_SOURCE)
    if isinstance(sources, dict):
        rewards = {k: round(float(v), 4) for k, v in sources.items() if isinstance(k, str) and len(k) <= 63
                   and _number(v)}  # fmt: skip
        if rewards and len(rewards) <= MAX_SOURCES:
            out[BY_SOURCE] = rewards
    tallies = raw.get(BY_VERIFIER)
    if isinstance(tallies, dict) and len(tallies) <= MAX_SOURCES:
        read = {k: _tally(v) for k, v in tallies.items() if isinstance(k, str) and len(k) <= 63}
        if read and all(read.values()):
            out[BY_VERIFIER] = read
    # A run of no steps, or a step past its end, is no position (an older trainer resumed at its last
    # step said 0/0): it must not overwrite the position the status already has.
    total = out.get("totalSteps")
    if total is not None and (total < 1 or not 0 <= out.get("step", 0) <= total):
        out.pop("step", None)
        out.pop("totalSteps", None)
    return out or None


def _tally(raw: Any) -> dict[str, Any] | None:
    """One verifier's tally, or None when any figure is missing or not a number."""
    if not isinstance(raw, dict):
        return None
    counts = {k: raw.get(k) for k in TALLY_COUNTS}
    shares = {k: raw.get(k) for k in TALLY_SHARES}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()):
        return None
    if not all(_number(v) for v in shares.values()):
        return None
    return {**counts, **{k: round(float(v), 4) for k, v in shares.items() if _number(v)}}


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read(ip: str, port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """Rank 0's current progress, or None when it cannot be reached (it may still be starting)."""
    url = f"http://{ip}:{port}/progress"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return parse(response.read(64 * 1024))
    except (OSError, ValueError):
        return None


def of_rank0(phase: str, ip: str | None, message: str, port: int) -> dict[str, Any] | None:
    """Rank 0's progress: live from /progress while it runs, else from its termination message."""
    if phase == "Running" and ip:
        return read(ip, port)
    return parse(message) if message else None


def summary(progress: Mapping[str, Any]) -> str | None:
    """The short printer-column text, e.g. `120/200 steps (60%)`."""
    step, total = progress.get("step"), progress.get("totalSteps")
    if step is None or not total:
        return None
    return f"{step}/{total} steps ({100 * step // total}%)"


# `kubectl annotate ptj NAME vlmop.io/checkpoint-request=<token> --overwrite`: save now (e.g. before a
# planned drain); status.checkpointRequest follows it from Requested to Saved.
CHECKPOINT_REQUEST = "vlmop.io/checkpoint-request"


def checkpoint_request(
    wanted: str | None, stored: Mapping[str, Any] | None, found: Mapping[str, Any] | None, attempt: int
) -> tuple[dict[str, Any] | None, bool]:
    """The status' checkpointRequest and whether to ask rank 0 for it now: once per token and attempt
    (an attempt that restarted before saving is asked again), Saved once rank 0 reports the token."""
    if not wanted:
        return (dict(stored) if stored else None), False
    entry: dict[str, Any] = dict(stored) if stored and stored.get("token") == wanted else {"token": wanted}
    if entry.get("state") == "Saved":
        return entry, False
    if found and found.get("checkpointRequest") == wanted:
        entry.update(state="Saved", step=found.get("step"), checkpoint=found.get("latestCheckpoint"))
        return {k: v for k, v in entry.items() if v is not None}, False
    return entry, entry.get("state") != "Requested" or entry.get("attempt") != attempt


def follow_checkpoint_request(
    status: dict[str, Any],
    wanted: str | None,
    running_ip: str | None,
    port: int,
    found: Mapping[str, Any] | None,
) -> None:
    """status.checkpointRequest for the annotation's token, asking rank 0 (when it runs, at
    `running_ip`) to save when it has not been asked yet in this attempt."""
    attempt = int(status.get("restarts") or 0)
    entry, ask = checkpoint_request(wanted, status.get("checkpointRequest"), found, attempt)
    if entry and ask and wanted and running_ip and ask_checkpoint(running_ip, port, wanted):
        entry.update(state="Requested", attempt=attempt)
    if entry:
        status["checkpointRequest"] = entry


def ask_checkpoint(ip: str, port: int, token: str, timeout: float = 2.0) -> bool:
    """POST rank 0's /checkpoint; whether it took the request."""
    body = json.dumps({"token": token}).encode()
    request = urllib.request.Request(f"http://{ip}:{port}/checkpoint", body, method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - a pod's IP
            return bool(response.status == 202)
    except (OSError, ValueError):
        return False
