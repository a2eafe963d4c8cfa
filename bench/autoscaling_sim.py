"""Replays request traces against a DvDDeployment's two pools and compares, in the same run:

  hpa-gpu     Kubernetes' HPA on GPU utilisation (mode hpa with the utilization policy): desired =
              ceil(current x util / 0.7), 10% tolerance, 300 s scale-down stabilisation, at most
              max(4, 100%) more per 15 s
  keda-queue  KEDA/HPA on queue depth (the vLLM production stack's and KServe's practice): the language
              pool on sum(vllm:num_requests_waiting) at 5 per replica, the vision pool on its in-flight
              requests at 5 per replica, with the same HPA behaviour
  vlmop       the operator's policy (vlmop.operator.autoscaler, the code it runs) with the API's
              defaults: the slo policy, 2 s of queueing at the 95th percentile
  hindsight   a bound: the fewest GPU-hours of a schedule that knows the whole trace (hindsight()),
              replayed through the same model

  python bench/autoscaling_sim.py                      # every trace in bench/autoscaling_traces.py
  python bench/autoscaling_sim.py --trace my.csv       # any CSV with TIMESTAMP, ContextTokens,
                                                       # GeneratedTokens columns
One line per policy: `<policy> gpu_hours=X slo_over_pct=Y actions=Z`; a PNG per trace (--plots DIR:
load, each policy's replicas per pool, requests over the SLO per minute).

The model, per 1 s tick. The vision pool is a fluid FIFO queue whose capacity is its ready replicas: a
request costs it tiles x work_per_tile replica-seconds, starts once the work queued before it is
served and takes its unloaded time (intercept + per_tile x tiles). The language pool is vLLM: SLOTS
(--max-num-seqs) batch slots per ready replica; a request waits (vllm:num_requests_waiting) for a free
slot, then holds it for its prefill and its generated tokens x the decode step of a full batch. Every
service time is measured: bench/calibration/cpu.json (bench/serving_calibration.py on the real vision
server and vLLM, tiny random models on this machine's CPU), times --speed (default 8: a served model
is larger than the tiny one; at 8 the conv trace needs 5-10 replicas per pool, where policies differ;
a GPU calibration file replaces the CPU one with --calibration). The signals are what Prometheus
would hold every 15 s: completions, in-flight and waiting counts, the p95 queueing time of the last
minute, the vision server's busy fraction, and DCGM's GPU utilisation: the busy fraction for the
vision server, and for vLLM a duty cycle that reads busy on any replica with a running request (why
GKE and llm-d call it unreliable for LLM serving). New replicas cost GPU time at once and serve after
their start-up (vision 60 s, language 120 s). The SLO: a request's queueing time at both pools
together at most 2 s. The first 10 minutes (a cold start at one replica per pool) and the drain after
the last arrival are left out of every figure."""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import autoscaling_traces as traces
import results
from autoscaling_traces import Request

from vlmop.operator.api.dvddeployment import DvDDeploymentSpec
from vlmop.operator.autoscaler.policy import Memory, Signal, plan
from vlmop.operator.builders import autoscaling

HERE = Path(__file__).resolve().parent
POOLS = ("vision", "language")
STARTUP = {"vision": 60, "language": 120}
INTERVAL, SLO, MAX_REPLICAS, TARGET, WARMUP, SLOTS = 15, 2.0, 64, 0.7, 600, 32


@dataclass(frozen=True)
class Model:
    """Service times (seconds) from a calibration file, times `speed` (a larger model: > 1)."""

    calibration: dict
    speed: float = 1.0
    slots: int = SLOTS  # vLLM --max-num-seqs

    def vision_work(self, r: Request) -> float:
        """Replica-seconds of the vision pool the request takes (tiles are batched)."""
        return self.speed * self.calibration["vision"]["work_per_tile"] * r.tiles

    def vision_time(self, r: Request) -> float:
        v = self.calibration["vision"]["unloaded"]
        return self.speed * (v["intercept"] + v["per_tile"] * r.tiles) if r.tiles else 0.0

    def language_time(self, r: Request) -> float:
        """Seconds a request holds one of a vLLM replica's batch slots: its prefill, then its tokens at the
        step time of a full batch (the slots are what bounds the step time)."""
        p, step = self.calibration["language"]["prefill"], self.calibration["language"]["decode_step"]
        decode = step["intercept"] + step["per_sequence"] * self.slots
        prefill = max(p["intercept"] + p["per_token"] * r.context, 0.0)  # a fit's negative intercept: none
        return self.speed * (prefill + r.generated * decode)


class Pool:
    """Replicas that start after a delay and stop at once (the youngest first)."""

    def __init__(self, name: str, length: int) -> None:
        self.name, self.length, self.replicas = name, length, 1
        self.starting: list[int] = []  # ticks at which starting replicas become ready
        self.queue: deque = deque()  # requests not started yet
        self.running = [0] * length  # difference array of requests in service
        self.done = [0] * length  # completions per tick
        self.busy: list[float] = []  # busy fraction per tick
        self.delays: dict[int, list[float]] = {}  # start tick -> queueing delays
        self.trace: list[int] = []  # replicas per tick

    def ready(self, tick: int) -> int:
        return self.replicas - sum(1 for ready_at in self.starting if ready_at > tick)

    def scale(self, tick: int, desired: int) -> None:
        if desired > self.replicas:
            self.starting += [tick + STARTUP[self.name]] * (desired - self.replicas)
        else:  # the youngest (possibly still starting) go first
            self.starting = sorted(self.starting)[: max(0, len(self.starting) - (self.replicas - desired))]
        self.replicas = desired

    def start(
        self, tick: int, r: Request, at: float, begin: float, own: float
    ) -> tuple[Request, float, float]:
        finish = begin + own
        self.running[min(int(begin), self.length - 1)] += 1
        self.running[min(int(finish), self.length - 1)] -= 1
        self.done[min(int(finish), self.length - 1)] += 1
        self.delays.setdefault(tick, []).append(begin - at)
        return r, begin - at, finish


class VisionPool(Pool):
    """A fluid FIFO queue: a request starts once the work queued before it is served (by however many
    replicas are ready by then), then takes its unloaded time."""

    def __init__(self, name: str, length: int) -> None:
        super().__init__(name, length)
        self.arrived = self.served = 0.0  # work admitted and served so far (replica-seconds)

    def admit(self, r: Request, at: float, model: Model) -> None:
        self.queue.append((self.arrived, r, at, model.vision_time(r)))
        self.arrived += model.vision_work(r)

    def step(self, tick: int) -> list[tuple[Request, float, float]]:
        """Serve one second; the requests that started: (request, queueing delay, finish time)."""
        capacity = max(self.ready(tick), 0)
        before = self.served
        self.served = min(self.arrived, self.served + capacity)
        self.busy.append((self.served - before) / capacity if capacity else 1.0)
        started = []
        while self.queue and self.queue[0][0] <= self.served + 1e-9:
            ahead, r, at, own = self.queue.popleft()
            begin = max(at, tick + ((ahead - before) / capacity if capacity else 0.0))
            started.append(self.start(tick, r, at, begin, own))
        return started


class LanguagePool(Pool):
    """vLLM replicas of `slots` batch slots each: a request waits (vllm:num_requests_waiting) until a
    slot is free, then holds it for its prefill and decode."""

    def __init__(self, name: str, length: int, slots: int) -> None:
        super().__init__(name, length)
        self.slots, self.finishing = slots, []  # heap of finish times of running requests

    def admit(self, r: Request, at: float, model: Model) -> None:
        self.queue.append((r, at, model.language_time(r)))

    def step(self, tick: int) -> list[tuple[Request, float, float]]:
        while self.finishing and self.finishing[0] <= tick:
            heapq.heappop(self.finishing)
        free = max(self.ready(tick), 0) * self.slots - len(self.finishing)
        self.busy.append(1.0 if self.finishing else 0.0)
        started = []
        while self.queue and free > 0:
            r, at, own = self.queue.popleft()
            started.append(self.start(tick, r, at, max(at, tick), own))
            heapq.heappush(self.finishing, started[-1][2])
            free -= 1
        return started


class HPA:
    """Kubernetes' HPA algorithm for one pool (autoscaling/v2 defaults)."""

    def __init__(self) -> None:
        self.recommendations: list[tuple[int, int]] = []

    def decide(self, tick: int, current: int, ratio: float) -> int:
        wanted = current if abs(ratio - 1) <= 0.1 else math.ceil(current * ratio)
        wanted = min(max(wanted, 1), MAX_REPLICAS)
        self.recommendations = [(t, r) for t, r in self.recommendations if tick - t < 300] + [(tick, wanted)]
        if wanted < current:
            wanted = min(current, max(r for _, r in self.recommendations))
        return min(wanted, max(current + 4, 2 * current))


@dataclass
class Observed:
    """One pool's signals at a round, as Prometheus would have them."""

    utilisation: float
    completions: float  # requests/s finished over the last interval
    in_flight: float
    waiting: float
    latency: float | None
    ready: int
    busy: float | None  # the vision server's own busy fraction (its busy-seconds rate)


def observe(pool: Pool, tick: int, running: int) -> Observed:
    ready = max(pool.ready(tick), 0)
    if pool.name == "vision":
        utilisation = sum(pool.busy[-INTERVAL:]) / INTERVAL
    else:  # DCGM's duty cycle: a replica with any running request reads busy
        utilisation = min(1.0, running / ready) if ready else 1.0
    recent = sorted(d for t in range(tick - 60, tick + 1) for d in pool.delays.get(t, ()))
    latency = recent[min(len(recent) - 1, int(0.95 * len(recent)))] if recent else None
    completions = sum(pool.done[tick - INTERVAL + 1 : tick + 1]) / INTERVAL
    waiting = len(pool.queue)
    busy = utilisation if pool.name == "vision" else None
    return Observed(utilisation, completions, waiting + running, waiting, latency, ready, busy)


Decide = Callable[[int, dict[str, int], dict[str, Observed]], dict[str, int]]


def hpa_gpu() -> Decide:
    hpas = {name: HPA() for name in POOLS}
    return lambda tick, current, seen: {
        n: hpas[n].decide(tick, current[n], seen[n].utilisation / TARGET) for n in POOLS
    }


def keda_queue(threshold: float = 5.0) -> Decide:
    hpas = {name: HPA() for name in POOLS}

    def decide(tick: int, current: dict[str, int], seen: dict[str, Observed]) -> dict[str, int]:
        depth = {"vision": seen["vision"].in_flight, "language": seen["language"].waiting}
        # HPA's AverageValue: the total over the replicas, against the per-replica threshold.
        return {n: hpas[n].decide(tick, current[n], depth[n] / current[n] / threshold) for n in POOLS}

    return decide


def vlmop() -> Decide:
    """The operator's policy with the API's defaults (the SLO: 2 s of queueing at the 95th percentile)."""
    spec = DvDDeploymentSpec.model_validate({
        "model": "m", "vision": {"image": "v", "maxReplicas": MAX_REPLICAS}, "gateway": {"image": "g"},
        "language": {"image": "l", "maxReplicas": MAX_REPLICAS, "maxNumSeqs": SLOTS},
        "autoscaling": {"mode": "operator", "prometheusUrl": "http://prometheus:9090",
                        "intervalSeconds": INTERVAL},
    })  # fmt: skip
    assert spec.autoscaling.slo.queue_seconds == SLO
    bounds = {name: autoscaling.bounds(spec, name) for name in POOLS}
    memory = {name: Memory() for name in POOLS}

    def decide(tick: int, current: dict[str, int], seen: dict[str, Observed]) -> dict[str, int]:
        signals = {n: Signal(s.utilisation, 0.0, s.in_flight, s.ready, s.completions,
                             s.waiting if n == "language" else None, s.latency, busy=s.busy)
                   for n, s in seen.items()}  # fmt: skip
        return {n: d.desired for n, d in plan(float(tick), current, signals, bounds, memory).items()}

    return decide


def scheduled(schedule: dict[str, list[int]]) -> Decide:
    """Replays a precomputed schedule (replicas per interval, already started ahead)."""
    return lambda tick, current, seen: {n: schedule[n][min(tick // INTERVAL, len(schedule[n]) - 1)]
                                        for n in POOLS}  # fmt: skip


def simulate(requests: list[Request], model: Model, decide: Decide, ahead: bool = False) -> dict:
    """`ahead`: the decider's replicas are ready at once (the hindsight schedule already started them;
    their start-up is charged by hindsight())."""
    end = int(max(r.at for r in requests)) + 1
    length = end + 1200
    pools: dict[str, VisionPool | LanguagePool] = {
        "vision": VisionPool("vision", length),
        "language": LanguagePool("language", length, model.slots),
    }
    arrivals: dict[str, dict[int, list[Request]]] = {"vision": {}, "language": {}}
    for r in requests:
        arrivals["vision"].setdefault(int(r.at), []).append(r)
    queued_finish: dict[int, float] = {}  # request -> when its vision encoding finished
    misses: list[tuple[str, int]] = []  # (the pool that delayed it most, interval of its arrival there)
    over, counted, actions, gpu_seconds = 0, 0, 0, 0.0
    queued: dict[int, float] = {}  # request -> its wait at the vision pool
    running = dict.fromkeys(POOLS, 0)  # running sum of each pool's difference array
    late_per_tick: list[int] = []
    for tick in range(length):
        late = 0
        for name, pool in pools.items():
            for r in arrivals[name].pop(tick, []):
                at = r.at if name == "vision" else queued_finish[id(r)]
                pool.admit(r, at, model)
            for r, delay, finish in pool.step(tick):
                if name == "vision":
                    arrivals["language"].setdefault(int(finish), []).append(r)
                    queued[id(r)] = delay
                    queued_finish[id(r)] = finish
                else:
                    before = queued.pop(id(r))
                    if r.at >= WARMUP:
                        counted += 1
                        if delay + before > SLO:
                            over, late = over + 1, late + 1
                            blamed = ("vision", r.at) if before > delay else ("language", finish - delay)
                            misses.append((blamed[0], int(blamed[1]) // INTERVAL))
            gpu_seconds += pool.replicas if WARMUP <= tick < end else 0
            pool.trace.append(pool.replicas)
            running[name] += pool.running[tick]
        late_per_tick.append(late)
        if tick % INTERVAL == 0 and tick:
            current = {n: p.replicas for n, p in pools.items()}
            seen = {n: observe(p, tick, running[n]) for n, p in pools.items()}
            desired = decide(tick, current, seen)
            for name, pool in pools.items():
                if desired[name] != pool.replicas:
                    actions += tick >= WARMUP
                    pool.scale(tick, desired[name])
                    if ahead:
                        pool.starting = []
    return {"gpu_hours": gpu_seconds / 3600, "slo_over_pct": 100 * over / max(counted, 1),
            "actions": actions, "replicas": {n: p.trace for n, p in pools.items()},
            "over": late_per_tick, "misses": misses}  # fmt: skip


def hindsight(
    requests: list[Request], model: Model, load: float = 0.95, rounds: int = 20
) -> tuple[dict, float]:
    """The schedule that knows the trace: per interval, the vision replicas its work needs at `load` and
    the language replicas whose slots hold every request in service at once (no request waits), raised
    by one wherever a replay still has a request over the SLO (that pool, that interval) until at most
    0.5% are; its GPU-hours with every start-up paid for (a replica is kept through gaps shorter than a
    start-up). Returns its replay and its GPU-hours."""
    end = int(max(r.at for r in requests)) + 1
    slots = end // INTERVAL + 2
    work, occupancy = [0.0] * slots, [0] * (slots * INTERVAL + 1)
    for r in requests:
        work[int(r.at) // INTERVAL] += model.vision_work(r)
        start = r.at + model.vision_time(r)
        for t in range(int(start), min(int(start + model.language_time(r)) + 1, len(occupancy))):
            occupancy[t] += 1
    schedule = {
        "vision": [max(1, math.ceil(w / (INTERVAL * load))) for w in work],
        "language": [max(1, math.ceil(max(occupancy[i * INTERVAL : (i + 1) * INTERVAL]) / model.slots))
                     for i in range(slots)],
    }  # fmt: skip
    for _ in range(rounds):
        replay = simulate(requests, model, scheduled(schedule), ahead=True)
        if replay["slo_over_pct"] <= 0.5:
            break
        for pool, slot in set(replay["misses"]):
            schedule[pool][min(slot, slots - 1)] += 1
    gpu = 0.0
    for name in POOLS:
        for k in range(
            1, max(schedule[name]) + 1
        ):  # the k-th replica: on for its slots, bridged or restarted
            on = [i for i, n in enumerate(schedule[name]) if n >= k and WARMUP <= i * INTERVAL < end]
            if not on:
                continue
            gpu += len(on) * INTERVAL + (STARTUP[name] if k > 1 else 0)
            for a, b in itertools.pairwise(on):
                gap = (b - a - 1) * INTERVAL
                gpu += min(gap, STARTUP[name]) if gap else 0
    return replay, gpu / 3600


def plot(path: Path, trace: str, runs: dict[str, dict], requests: list[Request]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    minutes = [t / 60 for t in range(len(next(iter(runs.values()))["over"]))]
    per_minute = [0] * (len(minutes) // 60 + 1)
    for r in requests:
        per_minute[int(r.at) // 60] += 1
    axes[0].plot(range(len(per_minute)), [n / 60 for n in per_minute], color="black")
    axes[0].set_ylabel("requests/s")
    axes[0].set_title(f"{trace}: load, replicas per pool, requests over the SLO")
    for policy, run in runs.items():
        for ax, pool in zip(axes[1:3], POOLS, strict=True):
            ax.plot(minutes, run["replicas"][pool], label=policy, drawstyle="steps-post")
            ax.set_ylabel(f"{pool} replicas")
        window = [sum(run["over"][max(0, i - 59) : i + 1]) for i in range(0, len(run["over"]), 60)]
        axes[3].plot([i for i in range(len(window))], window, label=policy)
    axes[3].set_ylabel("over SLO / min")
    axes[3].set_xlabel("minute")
    axes[1].legend(loc="upper right", fontsize=8)
    for ax in axes:
        ax.axvline(WARMUP / 60, color="grey", linestyle=":")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run_trace(name: str, requests: list[Request], model: Model, plots: Path | None) -> dict[str, dict]:
    runs = {policy: simulate(requests, model, make()) for policy, make in
            (("hpa-gpu", hpa_gpu), ("keda-queue", keda_queue), ("vlmop", vlmop))}  # fmt: skip
    replay, bound = hindsight(requests, model)
    runs["hindsight"] = replay | {"gpu_hours": bound}
    print(f"# {name}: {len(requests)} requests over {requests[-1].at / 3600:.2f} h")
    for policy, run in runs.items():
        print(f"{policy} gpu_hours={run['gpu_hours']:.2f} slo_over_pct={run['slo_over_pct']:.2f} "
              f"actions={run['actions']}")  # fmt: skip
    if plots:
        plots.mkdir(parents=True, exist_ok=True)
        plot(plots / f"{name}.png", name, runs, requests)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--trace", type=Path, help="a CSV with TIMESTAMP, ContextTokens, GeneratedTokens")
    parser.add_argument("--calibration", type=Path, default=HERE / "calibration" / "cpu.json")
    parser.add_argument("--speed", type=float, default=SPEED, help="service times x this (model size)")
    parser.add_argument("--plots", type=Path, default=HERE / "plots", help="where PNGs go ('' for none)")
    parser.add_argument("--record", action="store_true", help="append the figures to bench/results.csv")
    args = parser.parse_args()
    model = Model(json.loads(args.calibration.read_text()), args.speed)
    chosen = {args.trace.stem: lambda: traces.from_csv(args.trace)} if args.trace else traces.TRACES
    for name, make in chosen.items():
        runs = run_trace(name, make(), model, args.plots if str(args.plots) else None)
        if args.record:
            for policy, run in runs.items():
                figures = {k: run[k] for k in ("gpu_hours", "slo_over_pct", "actions")}
                results.append("autoscaling_sim", f"{name} {policy}", figures, where="simulation")


SPEED = 8.0

if __name__ == "__main__":
    main()
