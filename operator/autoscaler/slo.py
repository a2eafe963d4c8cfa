"""The SLO rule: how many replicas a pool needs to keep its queueing time under the SLO, from what the
pool itself says (requests completed, queued and in flight, its p95 queueing time), not from a tuned
per-trace constant. Per round:

1. arrivals = completions + the growth of the in-flight count (what came in, served or not);
2. capacity per replica, estimated online: a round where requests queued behind every replica is a
   measurement (completions / ready: the pool served all it could); a busy fraction gives one at any
   load (completions / ready / busy): the vision server's seconds spent computing, or the share of
   vLLM's batch slots in use (Little's law). An exponential average keeps it; a request mix that gets
   heavier saturates the pool and so re-measures it;
3. forecast: Holt's linear trend over the arrival rates, one start-up delay ahead (a replica ordered now
   serves only then; the delay is timed from each scale-up to its replicas' readiness), never below the
   rate now nor above twice it; where the arrivals repeat with a period (seasonal.py), what the last
   periods brought over that horizon instead of the trend;
4. need = the work the forecast brings (for the language pool, at least the vision pool's forecast:
   its requests come next) in replicas, a, times a correction that grows while the observed p95
   queueing time (or time to first token) is over the SLO with every replica serving and relaxes
   while it is well under; staffed at max(a / target load, square-root staffing: see STAFFING), plus
   the queue drained within a start-up delay (the soonest new replicas help).

GPU utilisation is only the fallback while no capacity has been measured yet (policy.recommend)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vlmop.operator.autoscaler import seasonal

SMOOTH, TREND = 0.5, 0.3  # Holt's level and trend weights per round
LEARN = 0.3  # weight of a new capacity measurement
SATURATED = 1.0  # queued requests per ready replica that make a round a capacity measurement
BUSY_ENOUGH = 0.05  # busy fraction under which completions / busy is too noisy to learn from
# Square-root staffing (Halfin-Whitt): a pool whose work fills `a` servers gets a + beta * sqrt(a) of them:
# relative headroom for the random arrivals of a small pool, little for a large one. The vision server
# is one server per replica, and a request may queue a little (its SLO share is longer than most
# encodings). vLLM's servers are its batch slots, each held for a whole generation (seconds, longer
# than its SLO share): it must run where a request almost never waits for a slot, hence beta 2 (about
# 2% of arrivals find every slot taken), over a * slots servers.
STAFFING = 1.0
SLOT_STAFFING = 2.0
ENOUGH_REQUESTS = 10  # completions in a round under which it teaches nothing about capacity


@dataclass
class Estimate:
    """What the SLO rule remembers of one pool."""

    capacity: float | None = None  # requests/s one replica serves
    level: float | None = None  # Holt's smoothed arrival rate
    trend: float = 0.0  # its change per second
    last: Reading | None = None  # the previous round's reading
    last_time: float = 0.0
    correction: float = 1.0  # >1 while the SLO was missed lately
    startup: float | None = None  # measured seconds from a scale-up to its replicas being ready
    ordered: tuple[float, int] | None = None  # (when, how many) of the scale-up being timed
    replicas: int | None = None  # the pool's replicas at the previous round
    history: seasonal.History = field(default_factory=seasonal.History)


@dataclass(frozen=True)
class Reading:
    """One round's view of a pool (rates are Prometheus' over its rate window)."""

    completions: float  # requests/s finished
    in_flight: float
    waiting: float | None  # queued, not yet served; None: the pool does not say (vision)
    busy: float | None  # busy fraction of the ready replicas (the server's busy seconds, vLLM's slots, DCGM)
    latency: float | None  # p95 queueing time
    ready: int
    ttft: float | None = None  # p95 time to first token (vLLM)


@dataclass(frozen=True)
class Need:
    replicas: int
    reason: str
    capacity: float
    forecast: float
    seasonal: bool = False  # the forecast saw the coming horizon in the last periods


def arrivals(now: float, reading: Reading, estimate: Estimate) -> float:
    """Completions plus the growth of the in-flight count since the previous round."""
    rate, last = reading.completions, estimate.last
    if last is not None and now > estimate.last_time:
        rate += (reading.in_flight - last.in_flight) / (now - estimate.last_time)
    estimate.last, estimate.last_time = reading, now
    return max(rate, 0.0)


def learn_capacity(reading: Reading, interval: float, estimate: Estimate) -> None:
    if reading.ready <= 0 or reading.completions * interval < ENOUGH_REQUESTS:
        return
    per_replica = reading.completions / reading.ready
    sample = None
    if reading.waiting is not None and reading.waiting >= SATURATED * reading.ready:
        sample = per_replica  # a queue behind every replica: served as fast as it can
    elif reading.busy is not None and reading.busy >= BUSY_ENOUGH:
        sample = per_replica / min(reading.busy, 1.0)
    if sample is not None:
        old = estimate.capacity
        estimate.capacity = sample if old is None else (1 - LEARN) * old + LEARN * sample


def forecast(rate: float, horizon: float, elapsed: float, estimate: Estimate) -> float:
    """Holt's level and trend, the trend followed for `horizon` seconds but never past twice the rate:
    a ramp seen over a few rounds is not a promise for minutes."""
    if estimate.level is None or elapsed <= 0:
        estimate.level = rate if estimate.level is None else estimate.level
    else:
        level = SMOOTH * rate + (1 - SMOOTH) * (estimate.level + estimate.trend * elapsed)
        estimate.trend = TREND * (level - estimate.level) / elapsed + (1 - TREND) * estimate.trend
        estimate.level = level
    return min(max(rate, estimate.level + estimate.trend * horizon), 2 * max(rate, estimate.level))


def time_startup(now: float, current: int, ready: int, estimate: Estimate) -> None:
    """Times scale-ups: from the round that saw more replicas to the one that saw them all ready."""
    if estimate.replicas is not None and current > estimate.replicas and estimate.ordered is None:
        estimate.ordered = (now, current)
    if estimate.ordered is not None:
        if current < estimate.ordered[1]:
            estimate.ordered = None  # scaled down before they came up: no measurement
        elif ready >= estimate.ordered[1]:
            sample = now - estimate.ordered[0]
            if sample > 0:  # ready in the round that ordered them: the pool does not say its readiness
                old = estimate.startup
                estimate.startup = sample if old is None else (1 - LEARN) * old + LEARN * sample
            estimate.ordered = None
    estimate.replicas = current


def correct(reading: Reading, slo: float, ttft_slo: float | None, starting: bool, estimate: Estimate) -> None:
    ratios = [reading.latency / slo] if reading.latency is not None else []
    if reading.ttft is not None and ttft_slo:
        ratios.append(reading.ttft / ttft_slo)
    if not ratios:
        return
    if max(ratios) > 1 and not starting:  # while replicas start, the fix is already on its way
        estimate.correction = min(estimate.correction * 1.25, 3.0)
    elif max(ratios) < 0.5:
        estimate.correction = max(estimate.correction * 0.95, 1.0)


def need(
    now: float,
    current: int,
    reading: Reading,
    estimate: Estimate,
    slo: float,
    ttft_slo: float | None,
    target_load: float,
    startup: float,
    interval: float,
    upstream: float | None = None,
    slots: int | None = None,
) -> Need | None:
    """Replicas the pool needs, or None while its capacity is not known yet. `startup` is the start-up
    delay to assume until one is measured; `upstream`, the forecast of the pool that feeds this one
    (every request the vision pool encodes comes here next: a burst it is queueing is on its way);
    `slots`, the requests a replica serves at once (vLLM's batch slots), None for one server."""
    time_startup(now, current, reading.ready, estimate)
    elapsed = now - estimate.last_time if estimate.last is not None else 0.0
    rate = arrivals(now, reading, estimate)
    learn_capacity(reading, interval, estimate)
    startup = estimate.startup if estimate.startup is not None else startup
    ahead = forecast(rate, startup, elapsed, estimate)
    reason = "SloForecast"
    estimate.history.add(now, rate, interval)
    season = seasonal.forecast(estimate.history, math.ceil((startup + interval) / interval))
    if season is not None:  # a season seen twice knows the coming peak better than the trend does
        ahead = max(season, rate, estimate.level or 0.0)
        reason = "SloSeasonal" if season >= ahead else reason
    if upstream is not None and upstream > ahead:
        ahead, reason = upstream, "SloUpstreamForecast"
    correct(reading, slo, ttft_slo, reading.ready < current, estimate)
    if not estimate.capacity:
        return None
    offered = ahead / estimate.capacity * estimate.correction  # replicas' worth of work
    queued = reading.waiting if reading.waiting is not None else 0.0
    beta, servers = (SLOT_STAFFING, slots) if slots else (STAFFING, 1)
    base = max(offered / target_load, offered + beta * math.sqrt(offered / servers))
    drain = queued / (estimate.capacity * max(startup, slo))  # replicas ordered now drain it once up
    replicas = math.ceil(base + drain - 1e-9)
    reason = "SloLatency" if estimate.correction > 1.0 else ("SloQueue" if drain >= 1 else reason)
    return Need(replicas, reason, estimate.capacity, ahead, season is not None)
