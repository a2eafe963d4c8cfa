"""How many replicas each DvD pool should run, as a pure function of what Prometheus says and what
the policy remembers. Per pool:

1. recommend: with an SLO (autoscaler.slo), the replicas that keep the queueing time under it, from
   the pool's estimated capacity and forecast arrivals; without one (or before the first capacity
   measurement), HPA's proportional rule on GPU utilisation, desired = ceil(ready x value / target)
   (the utilisation is the ready replicas'; starting ones are counted, not multiplied), nothing
   inside the tolerance band; when the pool's own queue signal is given (in-flight requests
   per replica over its target), the larger of the two, since utilisation saturates at 100% and
   cannot say how far over capacity a burst is. No (or stale) metric: hold, never scale.
2. stabilise: scale up to the lowest recommendation of the up-window, down to the highest of the
   down-window (a dip must last the whole window), so flapping input moves nothing.
3. couple the pools: demand flows vision → language, so the SLO rule plans the language pool for at
   least the vision pool's forecast, and the utilisation rule, when the vision pool scales up by a
   factor, takes the language pool up by the same factor at once instead of one metric lag later
   (feed-forward); and while the language pool is at its maximum and over target, the vision pool is
   not scaled up (its output would only queue at the language model).
4. limit: at most max_step replicas per interval, within [min, max], and nothing during the cool-down
   after a change.

The state (recommendations, last change) is the caller's to keep; a fresh state counts the current
replicas as recommended now, so a restarted operator scales down only after a full window."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from vlmop.operator.autoscaler import slo


@dataclass(frozen=True)
class Bounds:
    min_replicas: int = 1
    max_replicas: int = 4
    target: float = 0.7  # utilisation, 0-1
    tolerance: float = 0.1
    up_window: float = 0.0  # seconds
    down_window: float = 300.0
    max_step: int = 4
    cooldown: float = 60.0
    stale_after: float = 120.0
    queue_target: float | None = None  # in-flight requests per replica; None: utilisation only
    slo: float | None = None  # p95 queueing seconds to hold; None: the utilisation/queue rules
    ttft_slo: float | None = None  # p95 time to first token to hold (the language pool)
    target_load: float = 0.85  # share of the estimated capacity a replica is planned to carry
    startup: float = 120.0  # seconds from ordering a replica to its first request: the forecast horizon
    interval: float = 15.0  # seconds between rounds
    slots: int | None = None  # requests one replica serves at once (vLLM --max-num-seqs); None: a server
    # that batches its queue (the vision pool), whose busy fraction is its GPU utilisation


@dataclass(frozen=True)
class Signal:
    utilisation: float | None  # mean over the pool's pods, 0-1; None when Prometheus has none
    age: float = 0.0  # seconds since the newest sample
    in_flight: float | None = None  # requests being served by the whole pool
    ready: int | None = None  # replicas serving (the utilisation is theirs); None: all of them
    completions: float | None = None  # requests/s the pool finished (the SLO rule needs it)
    waiting: float | None = None  # requests queued (vLLM's own count; None for a pool without one)
    latency: float | None = None  # p95 queueing seconds
    ttft: float | None = None  # p95 time to first token
    busy: float | None = None  # the servers' own busy fraction (vlmop's busy seconds); None: DCGM's


@dataclass
class Memory:
    recommendations: list[tuple[float, int]] = field(default_factory=list)  # (time, replicas)
    last_change: float | None = None
    estimate: slo.Estimate = field(default_factory=slo.Estimate)


@dataclass(frozen=True)
class Decision:
    current: int
    desired: int
    reason: str
    metric: float | None
    capacity: float | None = None  # requests/s per replica the SLO rule estimated
    forecast: float | None = None  # requests/s it planned for

    @property
    def changed(self) -> bool:
        return self.desired != self.current


def recommend(current: int, signal: Signal, bounds: Bounds) -> tuple[int | None, str]:
    """The unstabilised replica count the signal asks for, or None (hold) with why."""
    if signal.utilisation is None:
        return None, "MetricsMissing"
    if signal.age > bounds.stale_after:
        return None, "MetricsStale"
    # The utilisation is the ready replicas': replicas still starting add capacity the metric has
    # not seen yet, so scaling up multiplies the ready ones (no compounding while they start).
    ready = current if signal.ready is None else min(signal.ready, current)
    ratio = signal.utilisation / bounds.target
    reason = "WithinTolerance"
    wanted = current
    if abs(ratio - 1) > bounds.tolerance:
        base = max(ready if ratio > 1 else current, 1)
        wanted, reason = math.ceil(base * ratio), ("AboveTarget" if ratio > 1 else "BelowTarget")
        if ratio > 1 and wanted <= current:
            wanted, reason = current, "ReplicasStarting"
    if bounds.queue_target and signal.in_flight is not None:
        queued = math.ceil(signal.in_flight / bounds.queue_target)
        if queued > wanted:
            wanted, reason = queued, "QueueAboveTarget"
    return min(max(wanted, bounds.min_replicas), bounds.max_replicas), reason


def stabilise(now: float, current: int, wanted: int, bounds: Bounds, memory: Memory) -> int:
    if not memory.recommendations:  # a fresh memory: the current count, just before now (down only)
        memory.recommendations.append((now - 1e-6, current))
    memory.recommendations.append((now, wanted))
    horizon = max(bounds.up_window, bounds.down_window)
    memory.recommendations = [(t, r) for t, r in memory.recommendations if now - t <= horizon]
    if wanted > current:
        return max(current, min(r for t, r in memory.recommendations if now - t <= bounds.up_window))
    if wanted < current:
        return min(current, max(r for t, r in memory.recommendations if now - t <= bounds.down_window))
    return current


def limit(now: float, current: int, desired: int, bounds: Bounds, memory: Memory) -> tuple[int, str | None]:
    desired = max(current - bounds.max_step, min(current + bounds.max_step, desired))
    desired = min(max(desired, bounds.min_replicas), bounds.max_replicas)
    if desired != current and memory.last_change is not None and now - memory.last_change < bounds.cooldown:
        return current, "CoolingDown"
    return desired, None


def plan(
    now: float,
    current: Mapping[str, int],
    signals: Mapping[str, Signal],
    bounds: Mapping[str, Bounds],
    memory: Mapping[str, Memory],
    upstream: str = "vision",
    downstream: str = "language",
) -> dict[str, Decision]:
    """One evaluation of every pool in `current`; updates `memory`."""
    wanted: dict[str, int] = {}
    reasons: dict[str, str] = {}
    needs: dict[str, slo.Need] = {}
    for pool, replicas in current.items():
        feeding = needs.get(upstream) if pool == downstream else None
        need = by_slo(now, replicas, signals[pool], bounds[pool], memory[pool], feeding)
        recommendation: int | None
        if need is not None:
            needs[pool] = need
            recommendation, reasons[pool] = min(max(need.replicas, bounds[pool].min_replicas),
                                                bounds[pool].max_replicas), need.reason  # fmt: skip
        elif bounds[pool].slo is not None and bounds[pool].slots:
            recommendation, reasons[pool] = measuring(replicas, signals[pool], bounds[pool])
        else:
            recommendation, reasons[pool] = recommend(replicas, signals[pool], bounds[pool])
        if recommendation is None:  # hold; still no less than the minimum
            wanted[pool] = max(replicas, bounds[pool].min_replicas)
            continue
        wanted[pool] = stabilise(now, replicas, recommendation, bounds[pool], memory[pool])
        if need is not None and need.seasonal and recommendation < replicas:
            # The down-window guards against a rebound nobody saw coming; a seasonal forecast has
            # already counted the coming start-up's worth of the last periods.
            wanted[pool] = recommendation
    if upstream in current and downstream in current:
        up, down = current[upstream], current[downstream]
        if wanted[upstream] > up and up > 0 and downstream not in needs:  # the SLO rule has its forecast
            follow = math.ceil(down * wanted[upstream] / up)
            if follow > wanted[downstream]:
                wanted[downstream], reasons[downstream] = follow, f"Follows{upstream.capitalize()}"
        lm = signals[downstream]
        if lm.waiting is not None and bounds[downstream].slo is not None:  # requests queue at vLLM
            saturated = lm.waiting > 0
        else:
            saturated = lm.utilisation is not None and lm.utilisation > bounds[downstream].target * (
                1 + bounds[downstream].tolerance
            )
        if wanted[upstream] > up and down >= bounds[downstream].max_replicas and saturated:
            wanted[upstream], reasons[upstream] = up, f"{downstream.capitalize()}Saturated"
    out = {}
    for pool, replicas in current.items():
        desired, held = limit(now, replicas, wanted[pool], bounds[pool], memory[pool])
        if desired != replicas:
            memory[pool].last_change = now
        metric, need = signals[pool].utilisation, needs.get(pool)
        estimate = (need.capacity, need.forecast) if need else (None, None)
        out[pool] = Decision(replicas, desired, held or reasons[pool], metric, *estimate)
    return out


def measuring(current: int, signal: Signal, bounds: Bounds) -> tuple[int | None, str]:
    """A vLLM pool under the SLO before its capacity is measured: its GPU utilisation (a duty cycle, 100%
    with any request running) says nothing, so it holds, growing by one while requests queue."""
    if signal.waiting is None or signal.age > bounds.stale_after:
        return None, "MetricsMissing"
    if signal.waiting > 0:
        return min(current + 1, bounds.max_replicas), "QueueWhileMeasuring"
    return None, "MeasuringCapacity"


def by_slo(
    now: float, current: int, signal: Signal, bounds: Bounds, memory: Memory, upstream: slo.Need | None = None
) -> slo.Need | None:
    """The SLO rule's need, or None where it does not apply (no SLO, no demand signal, stale metrics,
    capacity not measured yet)."""
    if bounds.slo is None or signal.completions is None or signal.in_flight is None:
        return None
    if signal.age > bounds.stale_after:
        return None
    ready = current if signal.ready is None else signal.ready
    # vLLM reads 100% busy (DCGM's duty cycle) whenever any request runs: its busy fraction is the share
    # of its batch slots in use (Little's law then gives its capacity at a full batch).
    busy = signal.busy if signal.busy is not None else signal.utilisation
    if bounds.slots:
        running = signal.in_flight - (signal.waiting or 0.0)
        busy = running / (ready * bounds.slots) if ready else None
    reading = slo.Reading(signal.completions, signal.in_flight, signal.waiting, busy, signal.latency, ready,
                          signal.ttft)  # fmt: skip
    return slo.need(now, current, reading, memory.estimate, bounds.slo, bounds.ttft_slo, bounds.target_load,
                    bounds.startup, bounds.interval, upstream.forecast if upstream else None,
                    bounds.slots)  # fmt: skip
