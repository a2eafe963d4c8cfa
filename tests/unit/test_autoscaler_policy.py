"""The autoscaling policy, table-driven: the proportional rule and its tolerance, the stabilisation
windows against flapping input, missing and stale metrics (hold, never to zero), step limits,
cool-down, the queue signal, and the coupling of the vision and language pools."""

from __future__ import annotations

import pytest

from vlmop.operator.autoscaler.policy import Bounds, Memory, Signal, plan, recommend

B = Bounds(min_replicas=1, max_replicas=10, target=0.5, tolerance=0.1, up_window=0, down_window=60,
           max_step=4, cooldown=0, stale_after=30)  # fmt: skip


@pytest.mark.parametrize(
    ("current", "signal", "expected"),
    [
        (2, Signal(0.5), (2, "WithinTolerance")),
        (2, Signal(0.54), (2, "WithinTolerance")),  # 8% over: inside the 10% band
        (2, Signal(1.0), (4, "AboveTarget")),  # ceil(2 x 1.0 / 0.5)
        (4, Signal(0.1), (1, "BelowTarget")),  # ceil(4 x 0.2) = 1
        (3, Signal(0.0), (1, "BelowTarget")),  # idle: down to the minimum, never below
        (9, Signal(1.0), (10, "AboveTarget")),  # capped at max
        (2, Signal(None), (None, "MetricsMissing")),
        (2, Signal(0.9, age=31), (None, "MetricsStale")),
        (2, Signal(1.0, in_flight=40), (4, "AboveTarget")),  # no queue target: utilisation only
    ],
)
def test_recommend(current: int, signal: Signal, expected: tuple[int | None, str]) -> None:
    assert recommend(current, signal, B) == expected


def test_the_queue_signal_sees_past_a_saturated_gpu() -> None:
    queued = Bounds(**{**B.__dict__, "queue_target": 4.0})
    # 100% busy says "x2"; 32 requests in flight at 4 per replica say 8.
    assert recommend(2, Signal(1.0, in_flight=32), queued) == (8, "QueueAboveTarget")
    assert recommend(2, Signal(1.0, in_flight=4), queued) == (4, "AboveTarget")


def run(values: list[float | None], bounds: Bounds = B, start: int = 2, every: float = 10) -> list[int]:
    """Replicas after each of a series of rounds `every` seconds apart (one pool)."""
    memory, replicas, out = {"vision": Memory()}, start, []
    for i, value in enumerate(values):
        decision = plan(
            i * every, {"vision": replicas}, {"vision": Signal(value)}, {"vision": bounds}, memory
        )
        replicas = decision["vision"].desired
        out.append(replicas)
    return out


def test_flapping_input_does_not_flap_the_pool() -> None:
    # Load alternating between 0.2 and 0.5 every 10 s: scale-down needs 60 s of lower recommendations.
    assert run([0.2, 0.5] * 6) == [2] * 12
    # A dip that lasts the whole window scales down once it has.
    assert run([0.2] * 8) == [2] * 6 + [1, 1]


def test_scale_up_is_immediate_but_limited_per_round() -> None:
    assert run([1.0, 1.0, 1.0], start=1) == [2, 4, 8]
    assert run([5.0], start=2) == [6]  # ceil(2 x 10) = 20, but at most 4 more per round


def test_missing_or_stale_metrics_hold_the_pool() -> None:
    assert run([None, None, None], start=3) == [3, 3, 3]
    memory = {"language": Memory()}
    stale = plan(0, {"language": 3}, {"language": Signal(0.0, age=600)}, {"language": B}, memory)["language"]
    assert (stale.desired, stale.reason) == (3, "MetricsStale")
    below = plan(0, {"language": 0}, {"language": Signal(None)}, {"language": B}, {"language": Memory()})
    assert below["language"].desired == 1  # under the minimum (e.g. at creation): up to it, metric or not


def test_cooldown_holds_after_a_change() -> None:
    slow = Bounds(**{**B.__dict__, "cooldown": 25})
    assert run([1.0, 1.0, 1.0, 1.0], bounds=slow, start=1) == [2, 2, 2, 4]  # changes 30 s apart


def test_a_fresh_memory_waits_a_whole_window_before_scaling_down() -> None:
    # A restarted operator does not know the last minute: it counts the current size as recommended.
    assert run([0.1] * 7, start=4)[:6] == [4] * 6


def pools(
    vision: Signal, language: Signal, current: tuple[int, int], language_max: int = 10
) -> dict[str, object]:
    lm = Bounds(**{**B.__dict__, "max_replicas": language_max})
    return plan(0, {"vision": current[0], "language": current[1]}, {"vision": vision, "language": language},
                {"vision": B, "language": lm}, {"vision": Memory(), "language": Memory()})  # fmt: skip


def test_language_follows_a_vision_scale_up() -> None:
    decisions = pools(Signal(1.0), Signal(0.5), (2, 3))
    assert (decisions["vision"].desired, decisions["language"].desired) == (4, 6)  # x2 each
    assert decisions["language"].reason == "FollowsVision"


def test_vision_does_not_grow_into_a_saturated_language_pool() -> None:
    decisions = pools(Signal(1.0), Signal(0.95), (2, 4), language_max=4)
    assert decisions["vision"].desired == 2 and decisions["vision"].reason == "LanguageSaturated"
    relieved = pools(Signal(1.0), Signal(0.95), (2, 4), language_max=8)
    assert relieved["vision"].desired == 4 and relieved["language"].desired == 8


def test_replicas_still_starting_are_counted_not_multiplied() -> None:
    # 4 replicas, 2 ready at 100%: the 2 starting ones bring the capacity the ratio asks for.
    assert recommend(4, Signal(1.0, ready=2), B) == (4, "ReplicasStarting")
    assert recommend(4, Signal(1.0, ready=4), B) == (8, "AboveTarget")
    assert recommend(4, Signal(0.1, ready=2), B) == (1, "BelowTarget")  # idle: unready ones go too
