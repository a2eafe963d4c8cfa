"""The work queue in one event loop, with recording reconciles (no API server): when each object runs,
that it runs one at a time, what an echo of our own write does, errors, deletion and the gate."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from vlmop.operator import kube, metrics
from vlmop.operator.workqueue import WorkQueue, idle, newer

Runs = list[tuple[str, str]]  # (name, resourceVersion) per reconcile


def obj(name: str, rv: int, uid: str = "u") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": str(rv), "uid": uid}}


def queue_with(fn: Callable[..., Any], resync: float = 60.0) -> tuple[WorkQueue, Runs]:
    queue, runs = WorkQueue(), []

    def reconcile(body: Any, memo: dict[str, Any], **indices: Any) -> Any:
        runs.append((body["metadata"]["name"], body["metadata"]["resourceVersion"]))
        assert indices["index"] == "the index"
        return fn(body=body, memo=memo)

    queue.reconcilers["Kind"] = reconcile
    queue.resync = resync
    return queue, runs


async def open_gate() -> bool:
    return True


def run(queue: WorkQueue, scenario: Callable[[], Coroutine[Any, Any, None]], gate: Any = open_gate) -> None:
    async def main() -> None:
        loop = asyncio.create_task(queue.run({"index": "the index"}, gate))
        try:
            await scenario()
        finally:
            loop.cancel()

    asyncio.run(main())


def test_runs_on_events_then_every_resync_not_on_its_own_echo() -> None:
    def write(body: Any, **_: Any) -> dict[str, Any]:  # a status write that bumps the version
        rv = int(body["metadata"]["resourceVersion"])
        return obj(body["metadata"]["name"], rv + 1) if rv < 2 else None  # type: ignore[return-value]

    queue, runs = queue_with(write, resync=0.3)

    async def scenario() -> None:
        queue.observe("Kind", None, obj("a", 1))  # listed at start
        await asyncio.sleep(0.1)
        assert runs == [("a", "1")]
        queue.observe("Kind", "MODIFIED", obj("a", 2))  # the echo of our own write: not news
        queue.observe("Kind", "MODIFIED", obj("a", 1))  # an older event still in flight
        await asyncio.sleep(0.1)
        assert runs == [("a", "1")]
        await asyncio.sleep(0.3)  # the resync round sees the written version
        assert runs == [("a", "1"), ("a", "2")]
        queue.observe("Kind", "MODIFIED", obj("a", 7))  # someone else's change: at once
        await asyncio.sleep(0.05)
        assert runs[-1] == ("a", "7")

    run(queue, scenario)


def test_one_reconcile_per_object_at_a_time_and_a_change_meanwhile_runs_again() -> None:
    inside: set[str] = set()
    overlap, release = [], threading.Event()

    def slow(body: Any, **_: Any) -> None:
        name = body["metadata"]["name"]
        overlap.extend([name] if name in inside else [])
        inside.add(name)
        release.wait(2)
        inside.discard(name)

    queue, runs = queue_with(slow)

    async def scenario() -> None:
        queue.observe("Kind", "ADDED", obj("a", 1))
        queue.observe("Kind", "ADDED", obj("b", 1))
        await asyncio.sleep(0.1)
        for rv in (2, 3, 4):
            queue.observe("Kind", "MODIFIED", obj("a", rv))
        await asyncio.sleep(0.1)
        release.set()
        await asyncio.sleep(0.2)
        assert sorted(runs) == [("a", "1"), ("a", "4"), ("b", "1")]  # the newest state, once

    run(queue, scenario)
    assert overlap == []  # a and b run side by side; neither ever beside itself


def test_a_failing_object_backs_off_and_does_not_hold_up_others() -> None:
    def fails_for_a(body: Any, **_: Any) -> None:
        if body["metadata"]["name"] == "a":
            raise ApiException(status=503, reason="unavailable")

    queue, runs = queue_with(fails_for_a)

    async def scenario() -> None:
        queue.observe("Kind", "ADDED", obj("a", 1))
        queue.observe("Kind", "ADDED", obj("b", 1))
        await asyncio.sleep(0.5)
        assert runs.count(("a", "1")) == 1 and ("b", "1") in runs
        assert queue.entries[("ns", "Kind", "a")].failures == 1
        await asyncio.sleep(0.7)  # first retry after 1 s
        assert runs.count(("a", "1")) == 2
        assert queue.entries[("ns", "Kind", "a")].failures == 2

    run(queue, scenario)


def test_deleted_objects_are_forgotten_and_gone_ones_dropped() -> None:
    def gone_for_b(body: Any, **_: Any) -> None:
        if body["metadata"]["name"] == "b":
            raise kube.Gone("b")

    queue, runs = queue_with(gone_for_b, resync=0.2)

    async def scenario() -> None:
        queue.observe("Kind", "ADDED", obj("a", 1))
        queue.observe("Kind", "ADDED", obj("b", 1))
        await asyncio.sleep(0.1)
        queue.observe("Kind", "DELETED", obj("a", 2))
        await asyncio.sleep(0.4)
        assert runs == [("a", "1"), ("b", "1")] or runs == [("b", "1"), ("a", "1")]
        assert queue.entries == {}
        queue.observe("Kind", "ADDED", obj("a", 5, uid="v"))  # the same name again: a new object
        await asyncio.sleep(0.1)
        assert runs[-1] == ("a", "5")

    run(queue, scenario)


def test_a_childs_change_wakes_its_owner_soon() -> None:
    queue, runs = queue_with(lambda **_: None)

    async def scenario() -> None:
        queue.observe("Kind", "ADDED", obj("a", 1))
        await asyncio.sleep(0.1)
        queue.wake(("ns", "Kind", "a"))
        queue.wake(("ns", "Kind", "a"))  # a burst of pod events: one reconcile
        queue.wake(("ns", "Kind", "unknown"))  # an orphan's pod: nothing to run
        await asyncio.sleep(0.3)
        assert runs == [("a", "1")]  # not at once: WAKE_SECONDS gathers the burst
        await asyncio.sleep(0.4)
        assert runs == [("a", "1"), ("a", "1")]

    run(queue, scenario)


def test_the_memo_is_the_objects_own_between_rounds() -> None:
    def count(memo: dict[str, Any], **_: Any) -> None:
        memo["rounds"] = memo.get("rounds", 0) + 1

    queue, _ = queue_with(count, resync=0.1)

    async def scenario() -> None:
        queue.observe("Kind", "ADDED", obj("a", 1))
        queue.observe("Kind", "ADDED", obj("b", 1))
        await asyncio.sleep(0.35)
        rounds = [queue.entries[("ns", "Kind", n)].memo["rounds"] for n in "ab"]
        assert all(r >= 3 for r in rounds)

    run(queue, scenario)


def test_a_closed_gate_runs_nothing_until_it_opens() -> None:
    queue, runs = queue_with(lambda **_: None)
    state = {"open": False}

    async def gate() -> bool:
        return state["open"]

    async def scenario() -> None:
        queue.observe("Kind", "ADDED", obj("a", 1))
        await asyncio.sleep(0.3)
        assert runs == []
        state["open"] = True
        started = time.monotonic()
        while not runs and time.monotonic() - started < 3:
            await asyncio.sleep(0.05)
        assert runs == [("a", "1")]

    run(queue, scenario, gate)


@pytest.mark.parametrize(
    ("candidate", "known", "result"),
    [("5", "4", True), ("4", "4", False), ("3", "4", False), ("12", "9", True), ("x", "4", True)],
)
def test_newer(candidate: str, known: str, result: bool) -> None:
    version = {"metadata": {"resourceVersion": candidate}}
    assert newer(version, {"metadata": {"resourceVersion": known}}) is result


def test_an_idle_object_waits_for_an_event_and_is_counted_meanwhile() -> None:
    def finished(body: Any, memo: dict[str, Any]) -> None:  # a finished job without a TTL
        idle(memo, math.inf)

    queue, runs = queue_with(finished, resync=0.1)
    parked = metrics.IDLE_OBJECTS.labels("Kind")

    async def scenario() -> None:
        before = parked._value.get()
        queue.observe("Kind", "ADDED", obj("a", 1))
        await asyncio.sleep(0.45)  # four resyncs' worth: none
        assert runs == [("a", "1")] and parked._value.get() == before + 1
        queue.observe("Kind", "MODIFIED", obj("a", 2))  # someone changed it: runs (and parks again)
        await asyncio.sleep(0.05)
        assert runs == [("a", "1"), ("a", "2")] and parked._value.get() == before + 1
        queue.wake(("ns", "Kind", "a"))  # a child changed: runs too
        await asyncio.sleep(0.6)
        assert runs[-1] == ("a", "2") and len(runs) == 3
        queue.observe("Kind", "DELETED", obj("a", 3))
        assert parked._value.get() == before

    run(queue, scenario)


def test_a_ttl_runs_the_object_when_it_expires() -> None:
    def expiring(body: Any, memo: dict[str, Any]) -> None:
        idle(memo, 0.2)  # ttlSecondsAfterFinished left: due then, though the resync is a minute

    queue, runs = queue_with(expiring, resync=60.0)

    async def scenario() -> None:
        queue.observe("Kind", "ADDED", obj("a", 1))
        await asyncio.sleep(0.3)
        assert len(runs) == 2

    run(queue, scenario)


def test_a_quiet_object_runs_on_events_and_after_its_own_due_not_every_resync() -> None:
    def waiting(body: Any, memo: dict[str, Any]) -> None:  # nothing runs: events drive it
        idle(memo, 0.5)

    queue, runs = queue_with(waiting, resync=0.05)

    async def scenario() -> None:
        queue.observe("Kind", "ADDED", obj("a", 1))
        await asyncio.sleep(0.3)  # six resyncs' worth: none
        assert runs == [("a", "1")]
        queue.observe("Kind", "MODIFIED", obj("a", 2))
        await asyncio.sleep(0.05)
        assert runs == [("a", "1"), ("a", "2")]
        await asyncio.sleep(0.55)  # its own due: once more
        assert runs == [("a", "1"), ("a", "2"), ("a", "2")]

    run(queue, scenario)
