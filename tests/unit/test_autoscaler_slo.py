"""The SLO rule (vlmop.operator.autoscaler.slo) through the policy the operator runs: capacity measured
from a saturated round, from a busy fraction and from vLLM's batch slots (Little's law); the forecast
one start-up delay ahead and its cap; the correction while the SLO is missed; the start-up delay timed
from the pool's own scale-ups; and a vLLM pool whose GPU reads 100% busy is not scaled on it."""

from __future__ import annotations

import math
import socket

import pytest

from vlmop.operator.autoscaler import prometheus, slo
from vlmop.operator.autoscaler.policy import Bounds, Memory, Signal, plan

VISION = Bounds(min_replicas=1, max_replicas=20, slo=1.0, target_load=0.85, startup=60, interval=15,
                cooldown=0)  # fmt: skip
LANGUAGE = Bounds(min_replicas=1, max_replicas=20, slo=1.0, target_load=0.85, startup=120, interval=15,
                  cooldown=0, slots=32)  # fmt: skip


def reading(**values: float) -> slo.Reading:
    base = {"completions": 12.0, "in_flight": 1.0, "waiting": None, "busy": None, "latency": None, "ready": 1}
    return slo.Reading(**(base | values))  # type: ignore[arg-type]


def test_a_round_with_a_queue_behind_every_replica_measures_capacity() -> None:
    estimate = slo.Estimate()
    slo.learn_capacity(reading(waiting=40, ready=2), 15, estimate)
    assert estimate.capacity == 6.0  # 12/s from 2 replicas that could do no more
    slo.learn_capacity(reading(waiting=1, ready=2), 15, estimate)  # no queue behind each: no measurement
    assert estimate.capacity == 6.0
    slo.learn_capacity(reading(waiting=40, ready=2, completions=24), 15, estimate)
    assert estimate.capacity == pytest.approx(0.7 * 6 + 0.3 * 12)  # averaged, not replaced


def test_a_busy_fraction_measures_capacity_at_any_load() -> None:
    estimate = slo.Estimate()
    slo.learn_capacity(reading(busy=0.25), 15, estimate)
    assert estimate.capacity == 48.0
    quiet = slo.Estimate()
    slo.learn_capacity(reading(busy=0.25, completions=0.5), 15, quiet)  # 7 requests: too few to say
    assert quiet.capacity is None


def decide(bounds: Bounds, signals: list[Signal], current: int = 1, every: float = 15) -> list[object]:
    memory, out = {"pool": Memory()}, []
    for i, signal in enumerate(signals):
        decision = plan(i * every, {"pool": current}, {"pool": signal}, {"pool": bounds}, memory)["pool"]
        current = decision.desired
        out.append(decision)
    return out


def test_vllm_is_sized_by_its_slots_not_its_always_busy_gpu() -> None:
    # 8 of 32 slots busy at 12 finished/s: a full replica does 48/s; 12/s is a quarter of one, 0.75
    # with square-root staffing's headroom: one replica. The utilisation rule reads DCGM's 100% (a duty
    # cycle) and grows the pool 1.4x every round.
    steady = Signal(1.0, in_flight=8, waiting=0, completions=12)
    decisions = decide(LANGUAGE, [steady] * 4)
    assert [d.desired for d in decisions] == [1, 1, 1, 1]  # type: ignore[attr-defined]
    assert decisions[-1].capacity == pytest.approx(48.0) and decisions[-1].reason == "SloForecast"  # type: ignore[attr-defined]
    utilisation_only = Bounds(**{**LANGUAGE.__dict__, "slo": None, "cooldown": 0})
    assert [d.desired for d in decide(utilisation_only, [steady] * 3)] == [2, 3, 5]  # type: ignore[attr-defined]


def test_demand_over_capacity_sizes_the_pool() -> None:
    # 16 of 32 slots at 12/s: 24/s per replica; half a replica's slots, 0.5 + 2 x sqrt(16 slots) / 32 =
    # 0.75 with the slots' square-root headroom: one replica. Then every slot is taken, 300 queue and
    # the one replica finishes 24/s (a saturated round: 24/s again); arrivals 24 + (332 - 16) / 15 s =
    # 45/s, more with the trend, at most 2 x 45: 1.9-3.8 replicas of work, plus headroom at the slots'
    # scale and the queue drained in a start-up delay.
    calm = Signal(1.0, in_flight=16, waiting=0, completions=12)
    decisions = decide(LANGUAGE, [calm, calm, Signal(1.0, in_flight=332, waiting=300, completions=24)])
    assert [d.desired for d in decisions[:2]] == [1, 1]  # type: ignore[attr-defined]
    last = decisions[-1]
    assert last.capacity == pytest.approx(24) and 45 <= last.forecast <= 90  # type: ignore[attr-defined]
    work = last.forecast / last.capacity  # type: ignore[attr-defined]
    staffed = max(work / 0.85, work + 2 * math.sqrt(work / 32))
    assert last.desired == math.ceil(staffed + 300 / (24 * 120))  # type: ignore[attr-defined]


def test_the_vision_pool_gets_square_root_headroom_per_replica() -> None:
    # 30/s at 6/s per replica (busy 5/6 of 6 replicas): 5 replicas of work, 5 + sqrt(5) = 7.2 -> 8; the
    # same work in vLLM's 32-slot replicas: 5 + 2 x sqrt(5 x 32) / 32 = 5.8, 5 / 0.85 = 5.9 -> 6.
    busy = Signal(0.83, in_flight=0, completions=30, busy=5 / 6)
    (decision,) = decide(VISION, [busy], current=6)
    assert decision.capacity == pytest.approx(6.0) and decision.desired == 8  # type: ignore[attr-defined]
    estimate = slo.Estimate(capacity=6.0)
    need = slo.need(0, 6, slo.Reading(30, 0, 0, None, None, 6), estimate, 1.0, None, 0.85, 120, 15, slots=32)
    assert need is not None and need.replicas == 6


def test_the_forecast_follows_a_ramp_but_never_past_twice_the_rate() -> None:
    estimate, out = slo.Estimate(), []
    for rate in (10.0, 12.0, 14.0, 16.0, 18.0):
        out.append(slo.forecast(rate, 120, 15, estimate))
    assert all(f >= r for f, r in zip(out, (10, 12, 14, 16, 18), strict=True))
    assert out[-1] > 18 and out[-1] <= 36
    flat = slo.Estimate()
    assert [slo.forecast(5.0, 120, 15, flat) for _ in range(3)] == [5.0, 5.0, 5.0]
    spike = slo.Estimate()
    slo.forecast(1.0, 120, 15, spike)
    assert 100 < slo.forecast(100.0, 120, 15, spike) <= 200  # a jump is followed, at most doubled


def test_the_correction_grows_while_the_slo_is_missed_with_every_replica_serving() -> None:
    estimate = slo.Estimate()
    slo.correct(reading(latency=3.0), 1.0, None, True, estimate)  # replicas still starting: wait
    assert estimate.correction == 1.0
    slo.correct(reading(latency=3.0), 1.0, None, False, estimate)
    assert estimate.correction == 1.25
    slo.correct(reading(latency=0.1, ttft=9.0), 1.0, 5.0, False, estimate)  # TTFT over its bound too
    assert estimate.correction == pytest.approx(1.5625)
    for _ in range(200):
        slo.correct(reading(latency=0.1), 1.0, None, False, estimate)
    assert estimate.correction == 1.0  # relaxes back, never below 1


def test_the_start_up_delay_is_timed_from_the_pools_own_scale_up() -> None:
    estimate = slo.Estimate()
    slo.time_startup(0, 1, 1, estimate)
    slo.time_startup(15, 3, 1, estimate)  # ordered 2 more
    slo.time_startup(30, 3, 2, estimate)
    slo.time_startup(75, 3, 3, estimate)  # all up 60 s after the round that saw them ordered
    assert estimate.startup == 60
    slo.time_startup(90, 5, 3, estimate)
    slo.time_startup(105, 2, 2, estimate)  # scaled down before they came up: no measurement
    assert estimate.startup == 60 and estimate.ordered is None


def test_a_vllm_pool_without_a_measured_capacity_holds_and_grows_only_while_requests_queue() -> None:
    few = Signal(1.0, in_flight=3, waiting=0, completions=0.1)  # too few requests to measure
    assert [(d.desired, d.reason) for d in decide(LANGUAGE, [few] * 2)] == [(1, "MeasuringCapacity")] * 2  # type: ignore[attr-defined]
    queued = Signal(1.0, in_flight=3, waiting=2, completions=0.1)
    assert decide(LANGUAGE, [queued])[0].reason == "QueueWhileMeasuring"  # type: ignore[attr-defined]


def test_the_vision_pool_falls_back_to_utilisation_until_measured() -> None:
    idle = Signal(0.05, in_flight=0, completions=0.01)
    (decision,) = decide(VISION, [idle], current=3)
    assert decision.reason == "BelowTarget"  # type: ignore[attr-defined]


def test_an_unreachable_prometheus_is_not_a_missing_metric() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(prometheus.Unreachable, match=str(port)):
        prometheus.query(f"http://127.0.0.1:{port}", "up", timeout=1)
    with pytest.raises(prometheus.Unreachable, match="not an http"):
        prometheus.query("file:///etc/passwd", "up")
