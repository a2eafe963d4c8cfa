"""A seasonal forecast of a pool's arrivals: traffic that repeats (a batch job every ten minutes, a cron
that fans out, a daily peak) is seen coming a period ahead, where a trend follower only reacts once the
burst has queued and its replicas then start too late (Dynamo's planner offers seasonal predictors for
the same reason).

The period is the lag at which the arrival rates correlate best with themselves, taken only where that
correlation is high and much lower at half the lag (a ramp correlates with itself at every lag,
decreasingly: no period), with two whole periods seen. The forecast is what the last periods brought
over the coming horizon, averaged over them (one odd spike does not repeat by itself)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

KEEP = 480  # rounds of history: two hours at the default 15 s interval
SHORTEST = 4  # rounds: a period under a minute is noise, not a season
CORRELATED = 0.6  # the autocorrelation a lag needs to count as the period
DIP = 0.4  # how much lower it must be at half that lag
RECHECK = 20  # rounds between searches for the period (each is O(history x lags); seasons last)


@dataclass
class History:
    """One arrival rate per round, evenly spaced; a gap (a held round) starts it over."""

    rates: deque[float] = field(default_factory=lambda: deque(maxlen=KEEP))
    last: float | None = None
    lag: int | None = None  # the period found, in rounds
    since_search: int = RECHECK

    def add(self, now: float, rate: float, interval: float) -> None:
        if self.last is not None and now - self.last > 2 * interval:
            self.rates.clear()
            self.lag, self.since_search = None, RECHECK
        self.rates.append(rate)
        self.last = now
        self.since_search += 1


def correlation(rates: Sequence[float], lag: int) -> float:
    """Pearson's correlation of the series with itself `lag` rounds later."""
    a, b = rates[:-lag], rates[lag:]
    n = len(a)
    mean_a, mean_b = sum(a) / n, sum(b) / n
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
    var_a = sum((x - mean_a) ** 2 for x in a)
    var_b = sum((y - mean_b) ** 2 for y in b)
    return cov / math.sqrt(var_a * var_b) if var_a > 0 and var_b > 0 else 0.0


def period(rates: Sequence[float]) -> int | None:
    """The lag of the strongest autocorrelation above CORRELATED that also stands out of the lag at
    half of it by DIP (a season dips between its peaks; a trend or a slow drift correlates best at the
    shorter lag, noise nowhere), with two whole periods in the history; None: no season."""
    scores = [correlation(rates, lag) if lag else 1.0 for lag in range(len(rates) // 2 + 1)]
    seasons = [lag for lag in range(SHORTEST, len(scores))
               if scores[lag] >= CORRELATED and scores[lag] - scores[lag // 2] >= DIP]  # fmt: skip
    return max(seasons, key=lambda lag: scores[lag]) if seasons else None


def forecast(history: History, horizon: int) -> float | None:
    """The highest rate over the coming `horizon` rounds of the last two periods averaged round by round
    (one odd spike does not repeat by itself); None when the arrivals show no period."""
    rates = list(history.rates)
    if history.since_search >= RECHECK:
        history.lag, history.since_search = period(rates), 0
    lag = history.lag
    if lag is None or len(rates) < 2 * lag:
        return None
    n = len(rates)
    ahead = [(rates[n - lag + i] + rates[n - 2 * lag + i]) / 2 for i in range(min(horizon + 1, lag))]
    return max(ahead)
