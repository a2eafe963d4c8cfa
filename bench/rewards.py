"""How fast the Mixture-of-Rewards scores a GSPO batch, per verifier kind and number of worker
processes: samples/s, and the seconds a whole InternVL3.5 batch (512 prompts x 16 samples) would take
on this machine if one trainer rank scored it all (each rank scores only its share).

  python bench/rewards.py                       # every kind, 1 and 2 workers, 1024 samples each
  python bench/rewards.py --kinds math --workers 1 2 4 --samples 4096

Samples look like rollouts: a few hundred tokens of reasoning, then the answer (half right). Model
verifiers go to a loopback stand-in that answers at once, so their figure is the client's ceiling;
a real CompassVerifier pool is bounded by its own serving. Code runs each sample's program in the
sandbox (a Python process per sample)."""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results

from vlmop.workloads.rl.rewards.environments import TASKS
from vlmop.workloads.rl.rewards.mixture import MixtureOfRewards, Sample

BATCH = 512 * 16  # InternVL3.5's GSPO step
GOLDS = ["\\frac{3}{4}", "3\\sqrt{2}", "12", "(3,-1)", "\\{1,2,3\\}", "2\\pi", "0.5", "x^2+1",
         "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(-\\infty, 3]", "10\\%", "30^\\circ"]  # fmt: skip


def reasoning(rng: random.Random, steps: int = 10) -> str:
    return " ".join(
        f"Step {k}: from $a_{k} = {rng.randint(1, 99)}$ we get $b_{k} = \\frac{{{k}}}{{{k + 1}}}$, so "
        f"the sum so far is {rng.randint(1, 999)}."
        for k in range(steps)
    )


def math(rng: random.Random) -> Sample:
    gold = rng.choice(GOLDS)
    answer = gold if rng.random() < 0.5 else str(rng.randint(1, 99))
    return Sample("math", "q", f"{reasoning(rng)} Therefore the answer is $\\boxed{{{answer}}}$.", gold)


def choice(rng: random.Random) -> Sample:
    gold, answer = rng.choice("ABCD"), rng.choice("ABCD")
    return Sample("mc", "q", f"{reasoning(rng)} Option A is too small, so the answer is ({answer}).", gold)


def env(task: str) -> dict[str, str]:
    return {"type": "environment", "environment": task}


def environment(task: str) -> Callable[[random.Random], Sample]:
    def make(rng: random.Random) -> Sample:
        case = TASKS[task].case_generator(rng)
        answers = {
            "arithmetic-24": "(1 + 2 + 3) * 4",
            "sorting": ", ".join(map(str, sorted(case.get("numbers", [])))),
            "knights-knaves": ", ".join(case.get("knights", [])) or "none",
        }
        return Sample(task, "q", f"{reasoning(rng)} <answer>{answers[task]}</answer>", case)

    return make


def code(rng: random.Random) -> Sample:
    op = rng.choice("+-*")
    tests = [f"assert f({a}, {b}) == {a} + {b}" for a, b in ((1, 2), (3, 4), (-5, 5))]
    return Sample("code", "q", f"Here it is:\n```python\ndef f(a, b):\n    return a {op} b\n```", tests)


def model(rng: random.Random) -> Sample:
    return Sample("judge", "q", reasoning(rng), "42")


KINDS: dict[str, tuple[dict[str, Any], Callable[[random.Random], Sample]]] = {
    "math": ({"type": "rule", "rule": "math"}, math),
    "multiple-choice": ({"type": "rule", "rule": "multiple-choice"}, choice),
    "arithmetic-24": (env("arithmetic-24"), environment("arithmetic-24")),
    "sorting": (env("sorting"), environment("sorting")),
    "knights-knaves": (env("knights-knaves"), environment("knights-knaves")),
    "code": ({"type": "rule", "rule": "code"}, code),
    "compass-verifier": ({"type": "model", "protocol": "compass-verifier"}, model),
}  # fmt: skip


class Judge(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "\\boxed{A}"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@contextmanager
def judge() -> Iterator[str]:
    ThreadingHTTPServer.request_queue_size = 256  # every thread of the mixture may connect at once
    server = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def measure(kind: str, workers: int, count: int, endpoint: str) -> float:
    spec, make = KINDS[kind]
    rng = random.Random(0)  # noqa: S311 (samples, not secrets)
    samples = [make(rng) for _ in range(count)]
    source = samples[0].source
    verifier = {"name": kind, "timeoutSeconds": 30, "endpoint": endpoint, **spec}
    mixture = MixtureOfRewards.from_spec(
        {"verifiers": [verifier], "routes": [{"source": source, "verifier": kind}]}, workers
    )
    try:
        mixture.score(samples[: 4 * workers])  # starts the worker processes
        started = time.perf_counter()
        scores = mixture.score(samples)
        rate = count / (time.perf_counter() - started)
    finally:
        mixture.close()
    tally = scores.by_verifier[kind]
    assert tally.scored == count, f"{kind}: {tally}"  # a failure would make the figure meaningless
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=list(KINDS))
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--no-record", action="store_true", help="print only; leave bench/results.csv alone")
    args = p.parse_args()
    with judge() as endpoint:
        for kind in args.kinds:
            for workers in args.workers:
                rate = measure(kind, workers, args.samples, endpoint)
                figures = {"samples_per_second": rate, "seconds_per_512x16_batch": BATCH / rate}
                if args.no_record:
                    print(f"{kind} workers={workers}: {rate:.0f} samples/s, {BATCH / rate:.1f} s per batch")
                else:
                    results.append("rewards", f"{kind} workers={workers}", figures)


if __name__ == "__main__":
    main()
