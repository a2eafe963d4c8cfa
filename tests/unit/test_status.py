"""Status helpers: conditions keep their transition time, and a reconcile writes only what changed."""

from __future__ import annotations

import pytest

from vlmop.operator import status
from vlmop.operator.reconcile import invalid_status


def test_transition_time_moves_only_when_status_flips() -> None:
    first = status.merge_conditions([], [status.condition("Ready", False, "Waiting")], 1, "T1")
    same = status.merge_conditions(first, [status.condition("Ready", False, "StillWaiting", "m")], 2, "T2")
    flipped = status.merge_conditions(same, [status.condition("Ready", True, "Done")], 3, "T3")
    assert first[0]["lastTransitionTime"] == "T1"
    assert same[0] == {
        "type": "Ready",
        "status": "False",
        "reason": "StillWaiting",
        "message": "m",
        "lastTransitionTime": "T1",
        "observedGeneration": 2,
    }
    assert flipped[0]["lastTransitionTime"] == "T3" and flipped[0]["status"] == "True"


def test_conditions_not_mentioned_are_kept() -> None:
    both = status.merge_conditions(
        [], [status.condition("Ready", True, "A"), status.condition("Progressing", None, "B")], 1, "T"
    )
    after = status.merge_conditions(both, [status.condition("Ready", False, "C")], 1, "U")
    assert [(c["type"], c["status"]) for c in after] == [("Ready", "False"), ("Progressing", "Unknown")]


def test_diff_is_empty_when_nothing_changed_and_removes_stale_keys() -> None:
    assert status.diff({"a": 1, "b": [1]}, {"a": 1, "b": [1]}) == {}
    assert status.diff({"a": 1, "old": 2}, {"a": 3}) == {"a": 3, "old": None}


def test_a_rejected_spec_is_stable_across_runs() -> None:
    body = {"metadata": {"generation": 4}, "spec": {}}
    first = invalid_status(body, "spec.x: bad", "T1")
    again = invalid_status({**body, "status": first}, "spec.x: bad", "T2")
    assert status.diff(first, again) == {}
    assert first["observedGeneration"] == 4


def test_invalid_spec_fails_with_reason() -> None:
    result = invalid_status({"metadata": {"generation": 1}}, "spec.x: bad", "T")
    failed = next(c for c in result["conditions"] if c["type"] == "Failed")
    assert (result["phase"], failed["status"], failed["reason"], failed["message"]) == (
        "Failed",
        "True",
        "InvalidSpec",
        "spec.x: bad",
    )


@pytest.mark.parametrize(
    ("phase", "reconciling", "stalled"),
    [("Pending", "True", "False"), ("Running", "True", "False"), ("Progressing", "True", "False"),
     ("Succeeded", "False", "False"), ("Ready", "False", "False"), ("Suspended", "False", "False"),
     ("Failed", "False", "True"), ("Degraded", "False", "True")],
)  # fmt: skip
def test_kstatus_reads_every_phase(phase: str, reconciling: str, stalled: str) -> None:
    failed = [status.condition("Failed", phase == "Failed", "X", "boom" if phase == "Failed" else "")]
    desired = {"phase": phase, "conditions": status.merge_conditions([], failed, 1, "T0")}
    first = status.with_kstatus(desired, {}, 1, "T1")
    got = {c["type"]: c for c in first["conditions"]}
    assert (got["Reconciling"]["status"], got["Stalled"]["status"]) == (reconciling, stalled)
    if phase == "Failed":
        assert got["Stalled"]["message"] == "boom"
    # The next reconcile (desired computed afresh, without them) changes nothing: no status write.
    assert status.diff(first, status.with_kstatus(desired, first, 1, "T2")) == {}
