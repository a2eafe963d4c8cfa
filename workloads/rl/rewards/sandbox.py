"""Code rewards: the response's program runs against the task's tests in subprocesses with CPU-time,
memory, file-size and wall-clock limits, no network, an empty environment and a scratch folder. The score
is the share of tests that pass (APPS's "test case average"; HumanEval and MBPP count a task solved only
when every test passes, which is a score of 1.0 here).

The tests come in the shapes code-RL datasets give them:

- a list of Python statements, usually asserts (MBPP's `test_list`; HumanEval's `check` function and a
  `check(entry_point)` call as one statement). They run after the program, in its namespace, in one
  process that prints a per-run nonce only after the tests ran, so a program that exits early
  (`os._exit(0)`) scores 0.
- stdin/stdout cases: {"inputs": [...], "outputs": [...]} (APPS, TACO; also as its JSON text),
  {"input": [...], "output": [...]} (CodeContests), or [{"input", "output", "testtype": "stdin"}, ...]
  (LiveCodeBench). Each input (a string, or a list of lines) is the standard input of one run of the
  program as `__main__`, a fresh process per case; the expected output never enters the sandbox. The
  output matches as LiveCodeBench's `grade_stdio` judges it: both stripped and split into lines, each
  line stripped; the same number of lines, and each line equal, or equal as whitespace-separated
  Decimal numbers ("1.50" is "1.5", "1  2" is "1 2"; "0.333" is not "0.3333"; words must match
  exactly). A program that raises fails its case; SystemExit (exit(), sys.exit()) ends it normally.
  The wall clock is one budget for all cases: a case that runs out of it fails with every case after.
  Call-based cases (APPS's "fn_name", LiveCodeBench's "functional") are not run: give them as asserts.

Everything here is a second line of defence: the pod (non-root, no service-account token, a network
policy) is the sandbox proper."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
RUNNER = r"""
import json, resource, socket, sys
job = json.loads(sys.stdin.read())
nonce = job.pop("nonce")
for limit, value in job.pop("limits").items():
    resource.setrlimit(getattr(resource, limit), (value, value))
def _no_network(*_, **__):
    raise OSError("network access is disabled in the sandbox")
for _name in ("socket", "create_connection", "getaddrinfo", "socketpair", "fromfd"):
    setattr(socket, _name, _no_network)
scope = {"__name__": "__main__"}
passed = 0
try:
    exec(compile(job["code"], "solution.py", "exec"), scope)
except BaseException:
    job["tests"] = []
for test in job["tests"]:
    try:
        exec(compile(test, "test.py", "exec"), scope)
        passed += 1
    except BaseException:
        pass
sys.stdout.write("\n" + nonce + " " + str(passed) + "\n")
"""


# One run of the program on one stdin case: the limits come as argv[1], the program from solution.py.
STDIO_RUNNER = r"""
import builtins, json, resource, socket, sys
for limit, value in json.loads(sys.argv[1]).items():
    resource.setrlimit(getattr(resource, limit), (value, value))
def _no_network(*_, **__):
    raise OSError("network access is disabled in the sandbox")
for _name in ("socket", "create_connection", "getaddrinfo", "socketpair", "fromfd"):
    setattr(socket, _name, _no_network)
builtins.exit = builtins.quit = sys.exit  # -S leaves them out; judged programs call them
with open("solution.py", encoding="utf-8") as _file:
    _code = compile(_file.read(), "solution.py", "exec")
try:
    exec(_code, {"__name__": "__main__"})
except SystemExit:
    pass
"""

Tests = Sequence[str] | Sequence[Mapping[str, Any]] | Mapping[str, Any] | str


@dataclass(frozen=True)
class Limits:
    seconds: float = 5.0  # wall clock; CPU time is capped at the same
    memory_mib: int = 512
    file_mib: int = 8


def program(response: str) -> str:
    """The last fenced code block of a response, else the whole response."""
    blocks = FENCE.findall(response)
    return blocks[-1] if blocks else response


def _rlimits(limits: Limits) -> dict[str, int]:
    mib = 2**20
    return {
        "RLIMIT_CPU": int(limits.seconds) + 1,
        "RLIMIT_AS": limits.memory_mib * mib,
        "RLIMIT_FSIZE": limits.file_mib * mib,
        "RLIMIT_CORE": 0,
    }


def _spawn(argv: list[str], scratch: str, stdin: bytes, timeout: float) -> tuple[int, bytes] | None:
    """(exit status, stdout) of a sandboxed Python, or None when it overran `timeout`."""
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=scratch,
        env={"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch},
        start_new_session=True,
    )
    try:
        out, _ = child.communicate(stdin, timeout=max(timeout, 0.0))
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return None
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    return child.returncode, out


def run_tests(code: str, tests: Sequence[str], limits: Limits = Limits()) -> float:
    """Share of `tests` (statements) that pass after `code` ran; 0.0 on a crash, a timeout or a limit."""
    if not tests:
        return 0.0
    nonce = secrets.token_hex(16)
    job = {"code": code, "tests": list(tests), "nonce": nonce, "limits": _rlimits(limits)}
    with tempfile.TemporaryDirectory(prefix="vlmop-sandbox-") as scratch:
        result = _spawn(["-c", RUNNER], scratch, json.dumps(job).encode(), limits.seconds)
    if result is None:
        return 0.0
    status, out = result
    last = out.decode(errors="replace").rstrip().rpartition("\n")[2].split(" ")
    if status != 0 or len(last) != 2 or last[0] != nonce or not last[1].isdigit():
        return 0.0
    return int(last[1]) / len(tests)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(token) for token in line.split()]
    except InvalidOperation:
        return None


def _same_line(got: str, want: str) -> bool:
    if got == want:
        return True
    got_numbers, want_numbers = _decimals(got), _decimals(want)
    try:
        return got_numbers is not None and got_numbers == want_numbers
    except InvalidOperation:  # a signalling NaN refuses comparison
        return False


def same_output(got: str, want: str) -> bool:
    """LiveCodeBench's stdout verdict: line by line, stripped, exact or equal as Decimal numbers."""
    got_lines, want_lines = _lines(got), _lines(want)
    return len(got_lines) == len(want_lines) and all(map(_same_line, got_lines, want_lines))


def _text(value: Any) -> str:
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def stdio_cases(tests: Tests) -> list[tuple[str, str]] | None:
    """(stdin, expected stdout) pairs of stdin/stdout tests; None for a list of statements."""
    if isinstance(tests, str):
        raise ValueError("tests are a list or a mapping (decode JSON text first)")
    if isinstance(tests, Mapping):
        if tests.get("fn_name"):
            raise ValueError("call-based tests (fn_name) are not run: give them as asserts")
        inputs = tests["inputs"] if "inputs" in tests else tests["input"]
        outputs = tests["outputs"] if "outputs" in tests else tests["output"]
        if len(inputs) != len(outputs):
            raise ValueError(f"{len(inputs)} inputs for {len(outputs)} outputs")
        return [(_text(i), _text(o)) for i, o in zip(inputs, outputs, strict=True)]
    if all(isinstance(test, str) for test in tests):
        return None
    cases = []
    for test in tests:
        if not isinstance(test, Mapping) or test.get("testtype", "stdin") != "stdin":
            raise ValueError(f"not a stdin/stdout test: {str(test)[:200]}")
        cases.append((_text(test["input"]), _text(test["output"])))
    return cases


def run_stdio(code: str, cases: Sequence[tuple[str, str]], limits: Limits = Limits()) -> float:
    """Share of (stdin, expected stdout) cases the program answers, all within one wall-clock budget."""
    if not cases:
        return 0.0
    deadline, passed = time.monotonic() + limits.seconds, 0
    argv = ["-c", STDIO_RUNNER, json.dumps(_rlimits(limits))]
    with tempfile.TemporaryDirectory(prefix="vlmop-sandbox-") as scratch:
        Path(scratch, "solution.py").write_text(code, encoding="utf-8")
        for stdin, want in cases:
            result = _spawn(argv, scratch, stdin.encode(), deadline - time.monotonic())
            if result is None:
                break  # the budget is spent: this case and the rest fail
            status, out = result
            passed += status == 0 and same_output(out.decode(errors="replace"), want)
    return passed / len(cases)


def code_reward(response: str, tests: Tests, limits: Limits = Limits()) -> float:
    if isinstance(tests, str):
        tests = json.loads(tests)  # APPS/TACO's input_output column is JSON text
    code, cases = program(response), stdio_cases(tests)
    if cases is None:
        return run_tests(code, [str(test) for test in tests], limits)
    return run_stdio(code, cases, limits)
