"""Request traces for bench/autoscaling_sim.py: the Azure conversation trace (../shared/data), any CSV with
its columns, and synthetic families unlike it. A request carries its arrival second, its image tiles
(the Azure trace has no images: drawn from 1, 3, 5, 7, 13, i.e. 0-12 tiles plus the thumbnail), its
context and its generated tokens."""

from __future__ import annotations

import csv
import datetime
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

AZURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "azure_llm_inference_2023_conv.csv"
TILES = (1, 3, 5, 7, 13)


@dataclass(frozen=True)
class Request:
    at: float
    tiles: int
    context: int
    generated: int


def from_csv(path: Path, seed: int = 0) -> list[Request]:
    """Any CSV with the Azure trace's columns: TIMESTAMP (ISO, or seconds), ContextTokens,
    GeneratedTokens."""
    rng = random.Random(seed)  # noqa: S311 (simulation)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} - set(rows[0] if rows else {})
    if missing:
        raise SystemExit(f"{path}: no column {', '.join(sorted(missing))} (or no rows)")
    stamps = [seconds(row["TIMESTAMP"]) for row in rows]
    start = min(stamps)
    out = [Request(at - start, rng.choice(TILES), int(row["ContextTokens"]), int(row["GeneratedTokens"]))
           for at, row in zip(stamps, rows, strict=True)]  # fmt: skip
    return sorted(out, key=lambda r: r.at)


def seconds(stamp: str) -> float:
    try:
        return float(stamp)
    except ValueError:
        return datetime.datetime.fromisoformat(stamp.strip()[:26]).timestamp()


def poisson(rate: Callable[[float], float], top: float, hours: float, size: Callable[[], Request],
            seed: int) -> list[Request]:  # fmt: skip
    """Arrivals at `rate(t)`/s (at most `top`) by thinning, each sized by `size()`."""
    rng = random.Random(seed)  # noqa: S311 (simulation)
    out, t = [], 0.0
    while t < hours * 3600:
        t += rng.expovariate(top)
        if rng.random() < rate(t) / top:
            s = size()
            out.append(Request(t, s.tiles, s.context, s.generated))
    return out


def azure_sizes(seed: int) -> Callable[[], Request]:
    rng, sizes = random.Random(seed), from_csv(AZURE, seed)  # noqa: S311 (simulation)
    return lambda: rng.choice(sizes)


def bursts(seed: int = 1, base: float = 2.0, peak: float = 12.0, hold: float = 120.0) -> list[Request]:
    """`base`/s with a burst every 10 minutes (from minute 15): a 30 s ramp to `peak`/s, `hold` s there,
    a 30 s ramp down; Azure sizes."""

    def rate(t: float) -> float:
        phase = (t - 900) % 600 if t >= 900 else 1e9
        return base + (peak - base) * max(0.0, min(phase / 30, 1.0, (hold + 60 - phase) / 30))

    return poisson(rate, peak, 1.5, azure_sizes(seed), seed)


def diurnal(seed: int = 2) -> list[Request]:
    """A day compressed into two hours: from 1/s at night up to 10/s at noon and back; Azure sizes."""
    return poisson(lambda t: 1 + 9 * math.sin(math.pi * t / 7200) ** 2, 10.0, 2.0, azure_sizes(seed), seed)


def family(seed: int, rate: float, tiles: Callable[[random.Random], int],
           context: tuple[int, int], generated: tuple[int, int]) -> list[Request]:  # fmt: skip
    """A steady stream with a slow swell (x2 over 20 minutes, twice an hour) of one request family:
    contexts and outputs log-uniform in their ranges."""
    rng = random.Random(seed + 100)  # noqa: S311 (simulation)

    def log_uniform(low: int, high: int) -> int:
        return round(math.exp(rng.uniform(math.log(low), math.log(high))))

    def size() -> Request:
        return Request(0.0, tiles(rng), log_uniform(*context), log_uniform(*generated))

    def swell(t: float) -> float:
        return rate * (1 + math.sin(math.pi * t / 1800) ** 2)

    return poisson(swell, 2 * rate, 1.0, size, seed)


TRACES: dict[str, Callable[[], list[Request]]] = {
    "azure-conv": lambda: from_csv(AZURE),
    "bursts": bursts,
    "diurnal": diurnal,
    "long-context": lambda: family(3, 1.0, lambda r: r.choice(TILES), (4000, 16000), (8, 64)),
    "image-heavy": lambda: family(4, 3.0, lambda r: 13, (200, 1000), (20, 200)),
    "short-chat": lambda: family(5, 12.0, lambda r: r.choice((0, 1)), (20, 300), (10, 120)),
}
