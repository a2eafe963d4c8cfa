"""The Mixture-of-Rewards: each sample goes, by its source, to one verifier (the routing table is data,
shaped as CascadeRLJob's spec.stages[].rewards: verifiers + routes). Verifiers run concurrently; one
that raises, answers out of protocol or overruns its timeout scores its failure value and is counted,
so a reward never crashes a step."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vlmop.workloads.rl.rewards import rules, sandbox, verifiers
from vlmop.workloads.rl.rewards.environments import TASKS

log = logging.getLogger(__name__)


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


@dataclass
class Scores:
    rewards: list[float]
    failed: list[str | None]  # why each sample's verifier failed, or None
    by_source: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def mean_by_source(self) -> dict[str, float]:
        return {source: sum(values) / len(values) for source, values in self.by_source.items()}


class MixtureOfRewards:
    def __init__(self, routes: Mapping[str, Verifier], workers: int = 8) -> None:
        self.routes = dict(routes)
        self.workers = workers

    @classmethod
    def from_spec(cls, rewards: Mapping[str, Any]) -> MixtureOfRewards:
        """From {"verifiers": [...], "routes": [{"source", "verifier"}]} as in the CascadeRLJob spec."""
        built = {v["name"]: verifier(v) for v in rewards.get("verifiers", [])}
        routes = {}
        for route in rewards.get("routes", []):
            if route["verifier"] not in built:
                raise ValueError(f"route {route['source']!r} names unknown verifier {route['verifier']!r}")
            routes[route["source"]] = built[route["verifier"]]
        return cls(routes)

    def score(self, samples: Sequence[Sample]) -> Scores:
        """Scores in waves of `workers` threads; a verifier still running at its timeout is left
        behind (a daemon thread) and its sample scores the failure value."""
        result = Scores([0.0] * len(samples), [None] * len(samples))
        for start in range(0, len(samples), self.workers):
            self._wave(samples, range(start, min(start + self.workers, len(samples))), result)
        for i, sample in enumerate(samples):
            if result.failed[i] is not None:
                route = self.routes.get(sample.source)
                result.rewards[i] = route.failure_score if route else 0.0
                log.warning("reward for %s: %s", sample.source, result.failed[i])
            result.by_source[sample.source].append(result.rewards[i])
        return result

    def _wave(self, samples: Sequence[Sample], indices: range, result: Scores) -> None:
        threads: dict[int, tuple[threading.Thread, dict[str, Any]]] = {}
        for i in indices:
            route = self.routes.get(samples[i].source)
            if route is None:
                result.failed[i] = f"no verifier routed for source {samples[i].source!r}"
                continue
            box: dict[str, Any] = {}  # the thread's own: one left behind never writes into result
            thread = threading.Thread(target=_run, args=(route, samples[i], box), daemon=True)
            thread.start()
            threads[i] = thread, box
        started = time.monotonic()
        for i, (thread, box) in threads.items():
            timeout = self.routes[samples[i].source].timeout_seconds
            thread.join(max(timeout - (time.monotonic() - started), 0.0))
            if thread.is_alive():
                result.failed[i] = f"timed out after {timeout:g}s"
            elif "error" in box:
                result.failed[i] = box["error"]
            else:
                result.rewards[i] = box["reward"]


def _run(route: Verifier, sample: Sample, box: dict[str, Any]) -> None:
    try:
        box["reward"] = float(route.score(sample))
    except Exception as error:  # any verifier failure is a score, never a crash
        box["error"] = f"{type(error).__name__}: {error}"


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
            score = lambda s: sandbox.code_reward(s.response, list(s.gold), limits)  # noqa: E731
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
            score = lambda s: verifiers.polar(endpoint, s.prompt, str(s.gold), s.response, timeout)  # noqa: E731
        else:
            model = spec.get("model", "verifier")
            score = lambda s: verifiers.compass_verifier(  # noqa: E731
                endpoint, s.prompt, str(s.gold), s.response, model, timeout
            )
    else:
        raise ValueError(f"verifier {spec['name']}: unknown type {kind!r}")
    return Verifier(spec["name"], score, timeout, float(spec.get("failureScore", 0.0)))
