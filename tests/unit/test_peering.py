"""The work queue's gate applies kopf's peering rule: pause while a live peer outranks or ties with us."""

from __future__ import annotations

import datetime

import pytest

from vlmop.operator.peering import outranked_by, urls

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
