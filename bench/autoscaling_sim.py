"""Replays a request trace against the two DvD pools and compares vlmop's autoscaling policy
(vlmop.operator.autoscaler.policy, the code the operator runs) with Kubernetes' HPA algorithm
(desired = ceil(current x metric / target), 10% tolerance, 300 s scale-down stabilisation, scale-up
at most max(4 pods, 100%) per 15 s), on the same trace: GPU-hours, share of requests over the latency
SLO, and scaling actions.

  python bench/autoscaling_sim.py     # the Azure trace and two synthetic bursty ones (figures left out
                                      # of the first 10 minutes, a cold start for every policy)

The model, per 1 s tick (a fluid queue per pool): a request needs VISION_WORK replica-seconds on the
vision pool (by its image tiles), then, once encoded, prefill + decode work on the language pool
(context/10,000 + generated x 0.004 replica-seconds: batched decoding), and is served in its
unloaded time (vision work, then context/10,000 + generated x 0.02 s) plus the queueing delay of
each pool (its backlog / its ready capacity). Utilisation is the work done / ready capacity; the
autoscaler reads its 15 s average every 15 s (the scrape and evaluation interval), and in-flight
requests (the queue signal). New replicas cost GPU time at once and serve after a start-up delay
(vision 60 s, language 120 s). SLO: at most 2 s of queueing over the unloaded latency."""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results

from vlmop.operator.autoscaler.policy import Bounds, Memory, Signal, plan

TRACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "azure_llm_inference_2023_conv.csv"
STARTUP = {"vision": 60, "language": 120}
INTERVAL, SLO_SLACK, MAX_REPLICAS, TARGET = 15, 2.0, 32, 0.7
WARMUP = 600  # seconds from a cold start (one replica per pool) left out of every figure


@dataclass(frozen=True)
class Request:
    at: float
    vision: float  # replica-seconds of vision work
    context: int
    generated: int

    @property
    def language(self) -> float:
        return self.context / 10_000 + self.generated * 0.004

    @property
    def unloaded(self) -> float:
        return self.vision + self.context / 10_000 + self.generated * 0.02


def azure(seed: int = 0) -> list[Request]:
    rng = random.Random(seed)  # noqa: S311 (simulation)
    rows = list(csv.DictReader(TRACE.open()))
    start = datetime.datetime.fromisoformat(rows[0]["TIMESTAMP"][:26])
    out = []
    for row in rows:
        at = (datetime.datetime.fromisoformat(row["TIMESTAMP"][:26]) - start).total_seconds()
        out.append(
            Request(
                at,
                0.08 * rng.choice([1, 3, 5, 7, 13]),
                int(row["ContextTokens"]),
                int(row["GeneratedTokens"]),
            )
        )
    return out


def bursty(seed: int = 1, hours: float = 1.0, peak: float = 12.0, hold: float = 120.0) -> list[Request]:
    """Poisson arrivals at 2/s with bursts every 10 minutes (from minute 5): a 30 s ramp to `peak`/s,
    `hold` seconds there, a 30 s ramp down; sizes from the Azure trace."""
    rng = random.Random(seed)  # noqa: S311 (simulation)
    sizes = azure(seed)

    def rate(t: float) -> float:
        phase = (t - 300) % 600 if t >= 300 else 1e9
        level = min(phase / 30, 1.0, max(0.0, (hold + 60 - phase) / 30))
        return 2.0 + (peak - 2.0) * max(level, 0.0)

    out, t = [], 0.0
    while t < hours * 3600:
        t += rng.expovariate(12.0)  # thinning: candidates at the top rate, kept with rate(t) / 12
        if rng.random() < rate(t) / 12.0:
            size = rng.choice(sizes)
            out.append(Request(t, size.vision, size.context, size.generated))
    return out


@dataclass
class Pool:
    name: str
    replicas: int = 1
    starting: list[int] = field(default_factory=list)  # ticks at which starting replicas become ready
    backlog: float = 0.0
    busy: list[float] = field(default_factory=list)  # utilisation per tick
    in_flight: dict[int, int] = field(default_factory=dict)  # tick -> requests in the pool

    def ready(self, tick: int) -> int:
        return self.replicas - sum(1 for ready_at in self.starting if ready_at > tick)

    def scale(self, tick: int, desired: int) -> None:
        if desired > self.replicas:
            self.starting += [tick + STARTUP[self.name]] * (desired - self.replicas)
        else:  # the youngest (possibly still starting) go first
            self.starting = sorted(self.starting)[: max(0, len(self.starting) - (self.replicas - desired))]
        self.replicas = desired


class HPA:
    """Kubernetes' HPA algorithm for one pool (defaults of autoscaling/v2 behaviour)."""

    def __init__(self) -> None:
        self.recommendations: list[tuple[int, int]] = []

    def decide(self, tick: int, current: int, utilisation: float) -> int:
        ratio = utilisation / TARGET
        wanted = current if abs(ratio - 1) <= 0.1 else math.ceil(current * ratio)
        wanted = min(max(wanted, 1), MAX_REPLICAS)
        self.recommendations = [(t, r) for t, r in self.recommendations if tick - t < 300] + [(tick, wanted)]
        if wanted < current:
            wanted = min(current, max(r for _, r in self.recommendations))
        return min(wanted, max(current + 4, 2 * current))


def simulate(
    requests: list[Request],
    policy: str,
    queue_target: dict[str, float | None] | None = None,
    down_window: float = 120,
    cooldown: float = 30,
    max_step: int = 4,
) -> dict[str, float]:
    pools = {"vision": Pool("vision"), "language": Pool("language")}
    end = int(max(r.at for r in requests)) + 1
    arrivals: dict[str, dict[int, list[Request]]] = {"vision": {}, "language": {}}
    for r in requests:
        arrivals["vision"].setdefault(int(r.at), []).append(r)
    hpas = {name: HPA() for name in pools}
    memory = {name: Memory() for name in pools}
    queue_target = queue_target or {}
    bounds = {name: Bounds(min_replicas=1, max_replicas=MAX_REPLICAS, target=TARGET, tolerance=0.1,
                           up_window=0, down_window=down_window, max_step=max_step, cooldown=cooldown,
                           queue_target=queue_target.get(name))
              for name in pools}  # fmt: skip
    over, actions, gpu_seconds = 0, 0, 0.0
    queued: dict[int, float] = {}  # request -> its wait at the vision pool
    for tick in range(end + 600):
        for name, pool in pools.items():
            capacity = max(pool.ready(tick), 0)
            incoming = arrivals[name].pop(tick, [])
            work = sum(r.vision if name == "vision" else r.language for r in incoming)
            delay = pool.backlog / capacity if capacity else 600.0
            for r in incoming:
                own = r.vision if name == "vision" else r.unloaded - r.vision
                done = tick + delay + own
                for t in range(tick, int(done) + 1):
                    pool.in_flight[t] = pool.in_flight.get(t, 0) + 1
                if name == "vision":
                    arrivals["language"].setdefault(int(done), []).append(r)
                    queued[id(r)] = delay
                elif delay + queued.pop(id(r)) > SLO_SLACK and r.at >= WARMUP:
                    over += 1
            total = pool.backlog + work
            served = min(total, float(capacity))
            pool.backlog = total - served
            pool.busy.append(served / capacity if capacity else 1.0)
            gpu_seconds += pool.replicas if tick >= WARMUP else 0
        if tick % INTERVAL == 0 and tick:
            current = {name: p.replicas for name, p in pools.items()}
            utilisation = {name: sum(p.busy[-INTERVAL:]) / INTERVAL for name, p in pools.items()}
            if policy == "hpa":
                desired = {name: hpas[name].decide(tick, current[name], utilisation[name]) for name in pools}
            else:
                signals = {name: Signal(utilisation[name], 0.0, float(pools[name].in_flight.get(tick, 0)),
                                        pools[name].ready(tick)) for name in pools}  # fmt: skip
                decisions = plan(float(tick), current, signals, bounds, memory)
                desired = {name: d.desired for name, d in decisions.items()}
            for name, pool in pools.items():
                if desired[name] != pool.replicas:
                    actions += tick >= WARMUP
                    pool.scale(tick, desired[name])
    counted = sum(1 for r in requests if r.at >= WARMUP)
    return {"gpu_hours": gpu_seconds / 3600, "slo_over_pct": 100 * over / counted, "actions": actions}


# vlmop's policy as the operator runs it with the API's defaults (120 s scale-down window, 60 s
# cool-down, 4 replicas per step) and, for the language pool, the queue signal at 4 requests per
# replica (about what one serves at the target utilisation here: 0.7 x unloaded time / work = 3.2).
VARIANTS = {
    "hpa": {},
    "vlmop": {"queue_target": {"language": 4.0}, "down_window": 120, "cooldown": 60, "max_step": 4},
    "vlmop utilisation-only": {"down_window": 120, "cooldown": 60, "max_step": 4},
}
TRACES = {
    "azure-conv": azure,
    "bursts-to-6/s": lambda: bursty(peak=6.0, hold=240.0),
    "bursts-to-12/s": lambda: bursty(peak=12.0, hold=120.0),
}


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter).parse_args()
    for trace, make in TRACES.items():
        requests = make()
        for variant, settings in VARIANTS.items():
            policy = "hpa" if variant == "hpa" else "vlmop"
            results.append("autoscaling_sim", f"{trace} {variant}", simulate(requests, policy, **settings),
                           where="simulation")  # fmt: skip


if __name__ == "__main__":
    main()
