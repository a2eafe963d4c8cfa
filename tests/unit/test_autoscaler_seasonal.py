"""The seasonal forecast (vlmop.operator.autoscaler.seasonal): a repeating burst is found with its
period and foreseen a period later; a ramp, a slow swell seen once, noise and a history cut by a gap
are no season; through the SLO rule a pool scales for a burst before it arrives."""

from __future__ import annotations

import math
import random

from vlmop.operator.autoscaler import seasonal, slo
from vlmop.operator.autoscaler.policy import Bounds, Memory, Signal, plan


def bursts(rounds: int, period: int = 40, width: int = 10, base: float = 2.0, peak: float = 12.0,
           seed: int = 0) -> list[float]:  # fmt: skip
    """Arrival rates per round: `base` with a `width`-round burst to `peak` from round 5 of every
    `period` rounds, Poisson-like noise on each."""
    rng = random.Random(seed)  # noqa: S311 (simulation)
    out = []
    for i in range(rounds):
        rate = peak if 5 <= i % period < 5 + width else base
        out.append(max(rate + rng.gauss(0, math.sqrt(rate / 15)), 0.0))
    return out


def history(rates: list[float], interval: float = 15) -> seasonal.History:
    h = seasonal.History()
    for i, rate in enumerate(rates):
        h.add(i * interval, rate, interval)
    return h


def test_a_repeating_burst_is_found_and_foreseen() -> None:
    rates = bursts(121)  # three periods; the next burst starts at round 125
    assert seasonal.period(rates) == 40
    ahead = seasonal.forecast(history(rates), horizon=5)
    assert ahead is not None and 11 <= ahead <= 14.5  # the coming burst's peak, before a request of it
    assert seasonal.forecast(history(bursts(141)), horizon=3) is not None
    calm = seasonal.forecast(history(bursts(150)), horizon=3)  # rounds 150-153: between bursts
    assert calm is not None and calm < 4


def test_no_season_in_a_ramp_a_swell_seen_once_or_noise() -> None:
    rng = random.Random(1)  # noqa: S311 (simulation)
    ramp = [1 + 0.05 * i + rng.gauss(0, 0.2) for i in range(300)]
    day = [1 + 9 * math.sin(math.pi * i / 480) ** 2 + rng.gauss(0, 0.5) for i in range(400)]  # half a day
    noise = [5 + rng.gauss(0, 1) for _ in range(300)]
    once = bursts(60)  # one period and a half: not two whole ones
    for rates in (ramp, day, noise, once):
        assert seasonal.period(rates) is None
        assert seasonal.forecast(history(rates), horizon=8) is None


def test_a_gap_in_the_rounds_starts_the_history_over() -> None:
    h = history(bursts(121))
    h.add(121 * 15 + 120, 2.0, 15)  # eight rounds missed (Prometheus was away): spacing is lost
    assert list(h.rates) == [2.0] and seasonal.forecast(h, horizon=5) is None


def test_the_slo_rule_scales_for_a_burst_before_it_arrives() -> None:
    estimate = slo.Estimate(capacity=1.0)
    rates = bursts(121)
    needs = []
    for i, rate in enumerate(rates):  # 1 replica-worth per request/s; arrivals = completions here
        reading = slo.Reading(rate, 0.0, None, None, None, 20)
        needs.append(slo.need(i * 15.0, 20, reading, estimate, 1.0, None, 0.85, 60, 15))
    last = needs[-1]
    assert last is not None and last.reason == "SloSeasonal" and last.replicas >= 12  # the peak, early
    assert rates[-1] < 4  # while the arrivals are still at their base


def test_a_foreseen_pool_scales_down_when_the_burst_ends_without_the_down_window() -> None:
    # A vision pool (1 request/s per replica) under the policy with a 300 s down-window: once the
    # period is known, the round after a burst ends brings the pool back down, the forecast having
    # said the next one is a period away; before that, the window holds the burst's replicas.
    bounds = Bounds(min_replicas=1, max_replicas=40, slo=1.0, target_load=0.85, startup=60, interval=15,
                    cooldown=0, down_window=300)  # fmt: skip
    memory, current, replicas = {"pool": Memory()}, 1, []
    for i, rate in enumerate(bursts(200)):
        signal = Signal(0.5, in_flight=0, completions=rate, busy=min(rate / current, 1.0), ready=current)
        decision = plan(i * 15.0, {"pool": current}, {"pool": signal}, {"pool": bounds}, memory)["pool"]
        current = decision.desired
        replicas.append(current)
    # Bursts at rounds 5-14 of each 40: the first is held by the 300 s window (20 rounds) after it ends;
    # the fifth (rounds 165-174) has its replicas a start-up (4 rounds) ahead, and after it the pool
    # steps down at once (4 replicas a round, maxStep) to the base's few.
    assert min(replicas[15:30]) >= 12
    assert replicas[161] >= 12 and replicas[157] <= 6
    assert replicas[175] < replicas[174] and max(replicas[178:199]) <= 6
