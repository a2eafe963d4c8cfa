"""The work queue's gate applies kopf's peering rule: pause while a live peer outranks or ties with us."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from vlmop.operator import kube
from vlmop.operator.peering import Gate, outranked_by, urls

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def peer(priority: int, seconds_ago: float, lifetime: int = 60) -> dict[str, object]:
    seen = NOW - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


@pytest.mark.parametrize(
    ("peers", "blocking"),
    [({"me": peer(0, 1)}, []),
     ({"me": peer(0, 1), "other": peer(5, 1)}, ["other"]),
     ({"me": peer(0, 1), "twin": peer(0, 1)}, ["twin"]),  # same priority: kopf pauses both
     ({"me": peer(0, 1), "low": peer(-1, 1)}, []),
     ({"me": peer(0, 1), "dead": peer(9, 61)}, []),  # past its lifetime
     ({"me": peer(0, 1), "slow": peer(9, 100, lifetime=120)}, ["slow"])],
)  # fmt: skip
def test_outranked_by(peers: dict[str, dict[str, object]], blocking: list[str]) -> None:
    assert outranked_by(peers, "me", 0, NOW) == blocking


def test_peering_objects() -> None:
    assert urls("vlmop", []) == ["/apis/kopf.dev/v1/clusterkopfpeerings/vlmop"]
    assert urls("vlmop", ["a", "b"]) == [
        "/apis/kopf.dev/v1/namespaces/a/kopfpeerings/vlmop",
        "/apis/kopf.dev/v1/namespaces/b/kopfpeerings/vlmop",
    ]


def test_the_gate_closes_without_its_peering_object_and_keeps_its_answer_on_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: list[Any] = []

    def request(method: str, url: str) -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return {"status": answer}

    def live(priority: int) -> dict[str, Any]:  # read() compares with the clock
        return {
            "priority": priority,
            "lifetime": 60,
            "lastseen": datetime.datetime.now(datetime.UTC).isoformat(),
        }

    monkeypatch.setattr(kube, "request", request)
    gate = Gate("me", 0, urls("vlmop", []))
    answers.append({"me": live(0), "lower": live(-5)})
    assert gate.read() is True
    gate.open = True
    answers.append(ApiException(status=503, reason="unavailable"))
    assert gate.read() is True  # unknown: the last answer stands
    answers.append(ApiException(status=404, reason="not found"))
    assert gate.read() is False  # kopf pauses without its peering object, and so do we
    answers.append({"me": live(0), "twin": live(0)})
    assert gate.read() is False
    assert Gate("me", 0, None).objects is None  # standalone: no object to read
