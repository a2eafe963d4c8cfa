"""The Mixture-of-Rewards: each sample goes, by its source, to one verifier (the routing table is data,
shaped as CascadeRLJob's spec.stages[].rewards: verifiers + routes). Verifiers run concurrently: rules
and environments in worker processes (workers.py: they compute, so as many as there are cores; code
starts its sandbox from there), model verifiers in threads (they wait on HTTP). One that raises,
answers out of protocol or overruns its timeout scores its failure value and is counted, so a reward
never crashes a step; every batch's tally per verifier says how many were scored, failed and timed
out, and how many scored 1.0."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlmop.workloads.rl.rewards import rules, sandbox, verifiers
from vlmop.workloads.rl.rewards.environments import TASKS
from vlmop.workloads.rl.rewards.workers import Workers

log = logging.getLogger(__name__)
OUTCOMES = ("scored", "failed", "timed_out")


@dataclass(frozen=True)
class Sample:
    source: str  # task/source name from the prompt record, the routing key
    prompt: str
    response: str
    gold: Any = None  # answer text, code tests, or an environment case


@dataclass(frozen=True)
class Verifier:
    name: str
    score: Callable[[Sample], float]
    timeout_seconds: float = 30.0
    failure_score: float = 0.0
    spec: Mapping[str, Any] | None = None  # set when it can be rebuilt in a worker process


@dataclass
class Tally:
    """One verifier's samples in a batch by outcome, and how many of the scored ones got 1.0."""

    scored: int = 0
    failed: int = 0
    timed_out: int = 0
    full: int = 0
    total: float = 0.0  # of the scored rewards

    def add(self, outcome: str, reward: float) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        if outcome == "scored":
            self.full += reward == 1.0
            self.total += reward

    def as_list(self) -> list[float]:
        return [float(v) for v in asdict(self).values()]

    @classmethod
    def of(cls, values: Sequence[float]) -> Tally:
        """From as_list()'s numbers (summed over ranks)."""
        scored, failed, timed_out, full, total = values
        return cls(int(scored), int(failed), int(timed_out), int(full), total)


@dataclass
class Scores:
    rewards: list[float]
    failed: list[str | None]  # why each sample's verifier failed, or None
    by_source: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    by_verifier: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))

    def mean_by_source(self) -> dict[str, float]:
        return {source: sum(values) / len(values) for source, values in self.by_source.items()}


class MixtureOfRewards:
    def __init__(self, routes: Mapping[str, Verifier], workers: int = 4, threads: int = 64) -> None:
        """`workers` processes for the computing verifiers, `threads` samples in flight at once."""
        self.routes = dict(routes)
        computing = {v.name: v.spec for v in self.routes.values() if v.spec and _computes(v.spec)}
        self.workers = Workers(list(computing.values()), workers) if computing else None
        self.in_workers = set(computing)
        self.pool = ThreadPoolExecutor(max(threads, workers), thread_name_prefix="reward")

    @classmethod
    def from_spec(cls, rewards: Mapping[str, Any], workers: int | None = None) -> MixtureOfRewards:
        """From {"verifiers": [...], "routes": [{"source", "verifier"}]} as in the CascadeRLJob spec."""
        built = {v["name"]: verifier(v) for v in rewards.get("verifiers", [])}
        routes = {}
        for route in rewards.get("routes", []):
            if route["verifier"] not in built:
                raise ValueError(f"route {route['source']!r} names unknown verifier {route['verifier']!r}")
            routes[route["source"]] = built[route["verifier"]]
        return cls(routes, default_workers() if workers is None else workers)

    def score(self, samples: Sequence[Sample]) -> Scores:
        result = Scores([0.0] * len(samples), [None] * len(samples))
        outcomes = list(self.pool.map(self._one, samples))
        for i, (sample, (outcome, value)) in enumerate(zip(samples, outcomes, strict=True)):
            route = self.routes.get(sample.source)
            if outcome == "scored":
                result.rewards[i] = float(value)
            else:
                result.rewards[i] = route.failure_score if route else 0.0
                result.failed[i] = str(value)
                log.warning("reward for %s: %s", sample.source, value)
            result.by_source[sample.source].append(result.rewards[i])
            result.by_verifier[route.name if route else "unrouted"].add(outcome, result.rewards[i])
        return result

    def _one(self, sample: Sample) -> tuple[str, float | str]:
        """(outcome, the reward or why there is none), the timeout counted from its start."""
        route = self.routes.get(sample.source)
        if route is None:
            return "failed", f"no verifier routed for source {sample.source!r}"
        try:
            if self.workers and route.name in self.in_workers:
                return "scored", self.workers.score(route.name, asdict(sample), route.timeout_seconds)
            return "scored", _in_thread(route, sample)
        except TimeoutError as error:  # a worker's, a thread's, or an HTTP client's
            return "timed_out", str(error) or f"timed out after {route.timeout_seconds:g}s"
        except Exception as error:  # any verifier failure is a score, never a crash
            return "failed", f"{type(error).__name__}: {error}"

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.workers:
            self.workers.close()


def _in_thread(route: Verifier, sample: Sample) -> float:
    """The verifier in a thread of its own, left behind (a daemon) when it overruns its timeout."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["reward"] = float(route.score(sample))
        except Exception as error:
            box["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(route.timeout_seconds)
    if thread.is_alive():
        raise TimeoutError(f"timed out after {route.timeout_seconds:g}s")
    if "error" in box:
        raise box["error"]
    return float(box["reward"])


def _computes(spec: Mapping[str, Any]) -> bool:
    """Whether a verifier computes (runs in a worker process) rather than waits on a model server."""
    return bool(spec["type"] != "model")


def default_workers(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Worker processes per trainer rank: the cores this process may use (its CPU affinity, and the
    pod's CPU limit where cgroup v2 says one), at most 8."""
    cores = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    return max(1, min(8, cores))


def verifier(spec: Mapping[str, Any]) -> Verifier:
    """One verifier from its spec entry (name, type, rule | environment | protocol + endpoint)."""
    kind, timeout = spec["type"], float(spec.get("timeoutSeconds", 30.0))
    score: Callable[[Sample], float]
    if kind == "rule":
        rule = spec["rule"]
        if rule == "math":
            score = lambda s: rules.math_answer(s.response, str(s.gold))  # noqa: E731
        elif rule == "multiple-choice":
            score = lambda s: rules.multiple_choice(s.response, str(s.gold))  # noqa: E731
        elif rule == "code":
            limits = sandbox.Limits(seconds=min(timeout, 10.0))
            score = lambda s: sandbox.code_reward(s.response, s.gold, limits)  # noqa: E731
        else:
            raise ValueError(f"verifier {spec['name']}: unknown rule {rule!r}")
    elif kind == "environment":
        task = TASKS.get(spec["environment"])
        if task is None:
            raise ValueError(f"verifier {spec['name']}: unknown environment {spec['environment']!r}")
        score = lambda s: task.verify_score(s.response, s.gold)  # noqa: E731
    elif kind == "model":
        endpoint, protocol = str(spec["endpoint"]), spec.get("protocol", "compass-verifier")
        if protocol == "polar":
            score = lambda s: verifiers.polar(endpoint, s.prompt, s.gold, s.response, timeout)  # noqa: E731
        else:
            model = spec.get("model", "verifier")
            score = lambda s: verifiers.compass_verifier(  # noqa: E731
                endpoint, s.prompt, str(s.gold), s.response, model, timeout
            )
    else:
        raise ValueError(f"verifier {spec['name']}: unknown type {kind!r}")
    return Verifier(spec["name"], score, timeout, float(spec.get("failureScore", 0.0)), dict(spec))
