"""The stages of a CascadeRLJob, as a pure function over the stored status: which stage runs now, and
what its gang's life (lifecycle.decide, with the stage's own restarts and backoffLimit) means for the
job. A stage that succeeds hands over to the next with no human step (the next trains from its
exported model); the last one's success is the job's; a stage that fails for good fails the job, and
the failure names the stage."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vlmop.operator import lifecycle
from vlmop.operator import status as st
from vlmop.operator.api.cascaderljob import CascadeRLJobSpec
from vlmop.operator.lifecycle import JobView, PodView

STAGE_SUCCEEDED = "StageSucceeded"


@dataclass
class Decision:
    status: dict[str, Any]
    current: int | None  # the stage whose gang should exist; None once the job has finished
    attempt: int
    workers: bool
    finished: list[tuple[int, int]]  # (stage, last attempt) of succeeded stages: their Jobs are kept
    delete_self: bool = False
    events: list[tuple[str, str, str]] = field(default_factory=list)
    rank0: PodView | None = None
    reported: int | None = None  # the stage rank0 belongs to (progress goes to its row)
    pods: list[PodView] = field(default_factory=list)  # the current gang's pods, as decided on


def rows(spec: CascadeRLJobSpec, status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One status row per stage of the spec, carrying what the stored status knew of it."""
    stored = {r.get("name"): r for r in status.get("stages") or []}
    out = []
    for stage in spec.stages:
        row = dict(stored.get(stage.name) or {})
        row.update(name=stage.name, kind=stage.kind)
        row.setdefault("restarts", 0)
        row.setdefault("restartsCounted", row["restarts"])  # rows from before the failure policy: all counted
        if stage.skip:
            row["phase"] = "Skipped"
        elif row.get("phase") in (None, "Skipped"):
            row["phase"] = "Waiting"
        out.append(row)
    return out


def decide(
    *,
    spec: CascadeRLJobSpec,
    status: Mapping[str, Any],
    generation: int | None,
    job_of: Callable[[int, int], JobView | None],
    pods: Sequence[PodView],
    now: datetime.datetime,
    export_of: Callable[[int], str],
    observe: Callable[[JobView | None, Mapping[str, Any]], list[PodView]] | None = None,
) -> Decision:
    """`job_of(stage, attempt)` is that attempt's Job as indexed; `export_of(stage)` where the stage
    writes its final model; `observe(job, gang status)` the pods as the current gang's supervisors see
    them (inplace.workers)."""
    table = rows(spec, status)
    active = [i for i, stage in enumerate(spec.stages) if not stage.skip]
    pending = [i for i in active if table[i]["phase"] != "Succeeded"]
    current = pending[0] if pending else active[-1]
    row = table[current]
    attempt = lifecycle.attempt_of(row)
    # The gang's own counts and last failure are the stage's, not the job's totals.
    view = {**status, "restarts": row["restarts"], "restartsCounted": row["restartsCounted"],
            "inPlaceRestarts": row.get("inPlaceRestarts"), "lastFailure": row.get("lastFailure")}  # fmt: skip
    job = job_of(current, attempt)
    pods = observe(job, view) if observe else list(pods)
    gang = lifecycle.decide(
        policy=spec.run_policy.model_copy(update={"backoff_limit": spec.stages[current].backoff_limit}),
        nodes=spec.topology.nodes,
        status=view,
        generation=generation,
        job=job,
        pods=pods,
        now=now,
        scope=f"stage {row['name']}",
        stage=str(row["name"]),
    )
    out = gang.status
    finished_now = status.get("phase") not in lifecycle.TERMINAL and out["phase"] in lifecycle.TERMINAL
    row.update(phase=out["phase"], restarts=out["restarts"])
    row.update(
        {k: out[k] for k in ("restartsCounted", "inPlaceRestarts", "lastFailure") if out.get(k) is not None}
    )
    row.setdefault("startTime", lifecycle.stamp(now))
    if finished_now:
        row["completionTime"] = lifecycle.stamp(now)
    if finished_now and out["phase"] == "Succeeded":
        row["checkpoint"] = export_of(current)
    decision = Decision(out, current, lifecycle.attempt_of(row), gang.workers, [], gang.delete_self,
                        gang.events, gang.rank0, reported=current, pods=pods)  # fmt: skip
    later = [i for i in pending if i > current]
    if finished_now and out["phase"] == "Succeeded" and later:
        hand_over(decision, table, current, later[0], status, generation, now)
    decision.finished = [
        (i, lifecycle.attempt_of(table[i])) for i in active if table[i]["phase"] == "Succeeded"
    ]
    if out["phase"] in lifecycle.TERMINAL:
        decision.current, decision.workers = None, False
    out.update(stages=table, restarts=sum(int(r["restarts"]) for r in table))
    out["restartsCounted"] = sum(int(r["restartsCounted"]) for r in table)
    out.pop("inPlaceRestarts", None)  # a stage's own, in its row
    out["currentStage"] = table[decision.current]["name"] if decision.current is not None else None
    return decision


def hand_over(
    decision: Decision,
    table: list[dict[str, Any]],
    succeeded: int,
    following: int,
    stored: Mapping[str, Any],
    generation: int | None,
    now: datetime.datetime,
) -> None:
    """Stage `succeeded` is done and `following` starts: the job goes on, not Succeeded."""
    done, nxt = table[succeeded]["name"], table[following]
    message = f"stage {done} succeeded; stage {nxt['name']} starts from its final model"
    updates = [
        st.condition("Progressing", True, STAGE_SUCCEEDED, message),
        st.condition("Succeeded", False, "Pending"),
        st.condition("Failed", False, "Pending"),
    ]
    previous = [c for c in stored.get("conditions", []) if c["type"] in lifecycle.OWNED_CONDITIONS]
    out = decision.status
    out["conditions"] = st.merge_conditions(previous, updates, generation, lifecycle.stamp(now))
    out["phase"] = "Pending"
    out.pop("completionTime", None)
    nxt.update(phase="Pending", startTime=lifecycle.stamp(now))
    decision.current, decision.attempt, decision.workers = following, lifecycle.attempt_of(nxt), True
    decision.delete_self = False
    decision.events.append(("Normal", STAGE_SUCCEEDED, message))
