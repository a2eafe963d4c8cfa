"""The Mixture-of-Rewards: rule verifiers, the code sandbox, the task environments, the model-verifier
clients (against a verifier stand-in on loopback: the model behind it is the edge) and the router."""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from vlmop.workloads.rl.rewards import rules, sandbox, verifiers
from vlmop.workloads.rl.rewards.environments import TASKS
from vlmop.workloads.rl.rewards.mixture import MixtureOfRewards, Sample, Tally, Verifier, default_workers


@pytest.mark.parametrize(
    ("response", "gold", "score"),
    [
        ("so the result is \\boxed{\\frac{1}{2}}", "0.5", 1.0),
        ("The answer is $\\sqrt{4}$", "2", 1.0),
        ("x = 3", "4", 0.0),
        ("", "4", 0.0),
    ],
)
def test_math_answers(response: str, gold: str, score: float) -> None:
    assert rules.math_answer(response, gold) == score


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("Option A looks wrong. The answer is (B).", "B"),
        ("\\boxed{C}", "C"),
        ("I think A. Answer: D", "D"),
        ("B", "B"),
        ("the answer is a number", None),
        ("no idea", None),
    ],
)
def test_multiple_choice_takes_the_last_committed_letter(response: str, letter: str | None) -> None:
    assert rules.choice(response) == letter
    assert rules.multiple_choice(response, "(B)") == (1.0 if letter == "B" else 0.0)


ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 5"]


@pytest.mark.parametrize(
    ("response", "score"),
    [
        ("Here:\n```python\ndef add(a, b):\n    return a + b\n```", 2 / 3),  # the 3rd test is wrong
        ("def add(a, b) return", 0.0),  # syntax error
        ("import os\nos._exit(0)", 0.0),  # leaving before the tests ran
        ("def add(a, b):\n    return a + b\nprint('0' * 32 + ' 3')", 2 / 3),  # a forged result line
        ("while True:\n    pass", 0.0),  # CPU loop: the wall clock ends it
        ("import time\ntime.sleep(60)", 0.0),
        ("x = bytearray(2**31)\ndef add(a, b):\n    return a + b", 0.0),  # over the memory limit
        (
            "import socket\nsocket.create_connection(('10.0.0.1', 80))\ndef add(a, b):\n    return a + b",
            0.0,
        ),
    ],
)
def test_code_runs_in_the_sandbox(response: str, score: float) -> None:
    started = time.monotonic()
    assert sandbox.code_reward(response, ADD_TESTS, sandbox.Limits(seconds=1.5)) == pytest.approx(score)
    assert time.monotonic() - started < 5


def solve_24(numbers: list[int], target: int = 24) -> str:
    """A brute-force solver, independent of the environment's own check."""
    items = [(Fraction(n), str(n)) for n in numbers]

    def search(items: list[tuple[Fraction, str]]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == target else None
        for (i, (a, x)), (j, (b, y)) in itertools.permutations(enumerate(items), 2):
            rest = [item for k, item in enumerate(items) if k not in (i, j)]
            options = [(a + b, f"({x}+{y})"), (a - b, f"({x}-{y})"), (a * b, f"({x}*{y})")]
            options += [(a / b, f"({x}/{y})")] if b else []
            for option in options:
                found = search([*rest, option])
                if found:
                    return found
        return None

    answer = search(items)
    assert answer is not None
    return answer


def correct_answer(task: str, case: dict[str, Any]) -> str:
    if task == "arithmetic-24":
        return f"Let me think. <answer>{solve_24(case['numbers'], case['target'])}</answer>"
    if task == "letters":
        return "abcdefgh"[: case["length"]]
    if task == "sorting":
        return f"<answer>{', '.join(map(str, sorted(case['numbers'])))}</answer>"
    return f"<answer>{', '.join(case['knights']) or 'none'}</answer>"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_environments_generate_cases_that_only_right_answers_solve(name: str) -> None:
    task, rng = TASKS[name], random.Random(7)  # noqa: S311 (test data)
    cases = [task.case_generator(rng) for _ in range(20)]
    assert len({json.dumps(c, sort_keys=True) for c in cases}) >= 5  # generated, not a fixed list
    for case in cases:
        prompt = task.prompt_func(case)
        assert "<answer></answer>" in prompt or name == "letters"  # letters: the reply is the answer
        right = correct_answer(name, case)
        assert task.verify_score(right, case) == 1.0, (case, right)
        wrong = "12345678" if name == "letters" else right.replace("<answer>", "").replace("</answer>", "")
        assert task.verify_score(wrong, case) == 0.0
    if name != "letters":  # the last tagged answer counts, and NONSENSE answers no case
        assert task.verify_score("<answer>1, 2</answer><answer>NONSENSE</answer>", cases[0]) == 0.0


@pytest.mark.parametrize(
    "expression",
    ["(13-9)*(1+5)*1", "(13-9)*(5+5)", "__import__('os').system('true')", "24", "(13-9)*(1+5) if 1 else 0"],
)
def test_arithmetic_24_uses_each_number_once_and_nothing_else(expression: str) -> None:
    case = {"numbers": [1, 5, 9, 13]}
    assert TASKS["arithmetic-24"].verify_score(f"<answer>{expression}</answer>", case) == 0.0
    assert TASKS["arithmetic-24"].verify_score("<answer>(13-9)*(1+5)</answer>", case) == 1.0


class VerifierStandIn(BaseHTTPRequestHandler):
    """Answers as a verifier model server would; the reply depends on the candidate's text."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][0]["content"] if "messages" in body else body["output"]
        if "slow" in text:
            time.sleep(3)
        if self.path == "/v1/chat/completions":
            verdict = "A" if "right" in text else "B" if "wrong" in text else None
            content = f"Reasoning... \\boxed{{{verdict}}}" if verdict else "I cannot decide."
            reply: Any = {"choices": [{"message": {"role": "assistant", "content": content}}]}
        else:
            reply = {"score": 0.75} if "good" in text else {"score": "high"}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def verifier_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), VerifierStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_model_verifier_clients(verifier_url: str) -> None:
    assert verifiers.compass_verifier(verifier_url, "1+1?", "2", "right: 2") == 1.0
    assert verifiers.compass_verifier(verifier_url, "1+1?", "2", "wrong: 3") == 0.0
    with pytest.raises(verifiers.VerifierError, match=r"no \\boxed"):
        verifiers.compass_verifier(verifier_url, "1+1?", "2", "mumble")
    assert verifiers.polar(f"{verifier_url}/score", "q", "ref", "good answer") == 0.75
    with pytest.raises(verifiers.VerifierError, match="no finite score"):
        verifiers.polar(f"{verifier_url}/score", "q", "ref", "meh")
    with pytest.raises(verifiers.VerifierError, match="not http"):
        verifiers.polar("file:///etc/passwd", "q", "ref", "x")
    with pytest.raises(TimeoutError):
        verifiers.polar(f"{verifier_url}/score", "q", "ref", "slow", timeout=0.5)


def test_the_mixture_routes_by_source_and_never_fails_a_step(verifier_url: str) -> None:
    mixture = MixtureOfRewards.from_spec(
        {
            "verifiers": [
                {"name": "math", "type": "rule", "rule": "math"},
                {"name": "mc", "type": "rule", "rule": "multiple-choice"},
                {"name": "code", "type": "rule", "rule": "code", "timeoutSeconds": 5},
                {"name": "sorting", "type": "environment", "environment": "sorting"},
                {"name": "judge", "type": "model", "protocol": "compass-verifier", "endpoint": verifier_url,
                 "timeoutSeconds": 1.0, "failureScore": -1.0},
            ],
            "routes": [
                {"source": "gsm8k", "verifier": "math"},
                {"source": "mmmu", "verifier": "mc"},
                {"source": "mbpp", "verifier": "code"},
                {"source": "bootcamp-sorting", "verifier": "sorting"},
                {"source": "open-qa", "verifier": "judge"},
            ],
        }
    )  # fmt: skip
    samples = [
        Sample("gsm8k", "2+2?", "\\boxed{4}", "4"),
        Sample("mmmu", "pick", "Answer: C", "C"),
        Sample("mbpp", "add", "def add(a, b):\n    return a + b", ["assert add(1, 1) == 2"]),
        Sample("bootcamp-sorting", "sort", "<answer>1, 2, 3</answer>", {"numbers": [3, 1, 2]}),
        Sample("open-qa", "q", "right", "gold"),
        Sample("open-qa", "q", "mumble", "gold"),  # out of protocol → failure score
        Sample("open-qa", "q", "slow right", "gold"),  # over its 1 s timeout → failure score
        Sample("unknown", "q", "x", None),  # no route → 0.0, recorded
    ]
    started = time.monotonic()
    scores = mixture.score(samples)
    assert time.monotonic() - started < 2.5  # the slow verifier was not waited for
    assert scores.rewards == [1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0, 0.0]
    failed = [f is not None for f in scores.failed]
    assert failed == [False] * 5 + [True, True, True]
    assert "timed out" in str(scores.failed[6]) and "no verifier routed" in str(scores.failed[7])
    assert scores.mean_by_source()["open-qa"] == pytest.approx(-1 / 3)
    # Each verifier's tally: what the trainer reports per step (status, metrics).
    assert scores.by_verifier["judge"] == Tally(scored=1, failed=1, timed_out=1, full=1, total=1.0)
    assert scores.by_verifier["math"] == Tally(scored=1, full=1, total=1.0)
    assert scores.by_verifier["unrouted"] == Tally(failed=1)
    mixture.close()


def test_a_verifier_that_hangs_is_killed_and_the_batch_goes_on() -> None:
    """sympy evaluates 9^(9^(9^9)) for hours holding the GIL: a thread could never be stopped; the
    worker process is killed at the timeout and a fresh one scores the rest."""
    spec = {"verifiers": [{"name": "math", "type": "rule", "rule": "math", "timeoutSeconds": 3}],
            "routes": [{"source": "gsm8k", "verifier": "math"}]}  # fmt: skip
    mixture = MixtureOfRewards.from_spec(spec, workers=1)
    mixture.score([Sample("gsm8k", "", "\\boxed{1}", "1")])  # the worker is up
    (hung,) = mixture.workers.started if mixture.workers else []
    started = time.monotonic()
    scores = mixture.score(
        [Sample("gsm8k", "", "\\boxed{9^{9^{9^{9}}}}", "5")] + [Sample("gsm8k", "", "\\boxed{5}", "5")] * 3
    )
    assert time.monotonic() - started < 15  # the timeout plus a new worker's start
    assert scores.rewards == [0.0, 1.0, 1.0, 1.0] and "timed out after 3s" in str(scores.failed[0])
    assert scores.by_verifier["math"] == Tally(scored=3, timed_out=1, full=3, total=3.0)
    assert hung.process.poll() is not None  # killed, not left computing
    mixture.close()


def test_a_route_to_an_unknown_verifier_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown verifier 'ghost'"):
        MixtureOfRewards.from_spec({"verifiers": [], "routes": [{"source": "s", "verifier": "ghost"}]})
    with pytest.raises(ValueError, match="unknown environment"):
        MixtureOfRewards.from_spec(
            {"verifiers": [{"name": "e", "type": "environment", "environment": "chess"}]}
        )


def test_a_raising_verifier_scores_its_failure_value() -> None:
    def broken(_: Sample) -> float:
        raise RuntimeError("verifier exploded")

    scores = MixtureOfRewards({"s": Verifier("b", broken, failure_score=-0.5)}).score([Sample("s", "", "")])
    assert scores.rewards == [-0.5] and "verifier exploded" in str(scores.failed[0])


def test_reward_workers_follow_the_pods_cpu_limit(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cores = len(os.sched_getaffinity(0))
    cpu_max.write_text("150000 100000\n")  # a 1.5-CPU limit: 2 workers
    assert default_workers(cpu_max) == min(2, cores)
    cpu_max.write_text("max 100000\n")
    assert default_workers(cpu_max) == min(8, cores)
    assert default_workers(tmp_path / "absent") == min(8, cores)
