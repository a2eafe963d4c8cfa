"""Code rewards: the response's program runs against the task's tests in a subprocess with CPU-time,
memory, file-size and wall-clock limits, no network, an empty environment and a scratch folder.

The score is the share of tests (Python statements, usually asserts) that pass. The runner prints a
per-run nonce only after the tests ran, so a program that exits early (`os._exit(0)`) scores 0.
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
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Limits:
    seconds: float = 5.0  # wall clock; CPU time is capped at the same
    memory_mib: int = 512
    file_mib: int = 8


def program(response: str) -> str:
    """The last fenced code block of a response, else the whole response."""
    blocks = FENCE.findall(response)
    return blocks[-1] if blocks else response


def run_tests(code: str, tests: list[str], limits: Limits = Limits()) -> float:
    """Share of `tests` that pass after `code` ran; 0.0 on a crash, a timeout or a limit."""
    if not tests:
        return 0.0
    nonce = secrets.token_hex(16)

    mib = 2**20
    rlimits = {
        "RLIMIT_CPU": int(limits.seconds) + 1,
        "RLIMIT_AS": limits.memory_mib * mib,
        "RLIMIT_FSIZE": limits.file_mib * mib,
        "RLIMIT_CORE": 0,
    }
    job = {"code": code, "tests": tests, "nonce": nonce, "limits": rlimits}

    with tempfile.TemporaryDirectory(prefix="vlmop-sandbox-") as scratch:
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", RUNNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=scratch,
            env={"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch},
            start_new_session=True,
        )
        try:
            out, _ = child.communicate(json.dumps(job).encode(), timeout=limits.seconds)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            return 0.0
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
    last = out.decode(errors="replace").rstrip().rpartition("\n")[2].split(" ")
    if child.returncode != 0 or len(last) != 2 or last[0] != nonce or not last[1].isdigit():
        return 0.0
    return int(last[1]) / len(tests)


def code_reward(response: str, tests: list[str], limits: Limits = Limits()) -> float:
    return run_tests(program(response), tests, limits)
