"""The in-place restarts' supervisor as a real process (`python -m vlmop.workloads.common.supervisor`)
running real programs: it keeps the pod when the program fails and says why, restarts the whole tree
when asked (once per attempt), forwards SIGTERM, and ends with the program's code."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from vlmop.operator import inplace
from vlmop.operator.lifecycle import JobView, PodView
from vlmop.operator.localapi.loopback import free_port

# A program that says which attempt it is, fails on attempt 0 with a termination message, and on
# later attempts starts a grandchild in a session of its own (as torchrun starts its workers), writes
# its pid and sleeps; SIGTERM makes it exit 143.
PROGRAM = """
import json, os, signal, subprocess, sys, time
attempt = os.environ["VLMOP_ATTEMPT"]
print("attempt", attempt, flush=True)
if attempt == "0":
    open(os.environ["VLMOP_TERMINATION_LOG"], "w").write(json.dumps({"message": "ValueError: bad flag"}))
    sys.exit(3)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
open(sys.argv[1], "a").write(f"{child.pid}\\n")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
time.sleep(600)
"""


class Running:
    def __init__(self, tmp: Path, *args: str, program: str = PROGRAM) -> None:
        self.port, self.pids, self.log = free_port(), tmp / "pids", tmp / "termination-log"
        script = tmp / "program.py"
        script.write_text(program)
        env = {**os.environ, "VLMOP_TERMINATION_LOG": str(self.log), "VLMOP_ATTEMPT": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vlmop.workloads.common.supervisor", f"--port={self.port}", *args, "--",
             sys.executable, str(script), str(self.pids)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp,
        )  # fmt: skip

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def post(self, body: bytes) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/restart", body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310 - http, built here
                return int(reply.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def until(self, path: str, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                code, body = self.get(path)
                if predicate(code, body):
                    return body
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(path)

    def grandchildren(self) -> list[int]:
        return [int(p) for p in self.pids.read_text().split()] if self.pids.exists() else []


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    run = Running(tmp_path)
    yield run
    with contextlib.suppress(psutil.NoSuchProcess):  # as the kubelet ends a container: every process
        for process in psutil.Process(run.process.pid).children(recursive=True):
            process.kill()
    for pid in run.grandchildren():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run.process.kill()
    run.process.wait()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_failed_program_keeps_the_pod_says_why_and_restarts_once_per_attempt(running: Running) -> None:
    failed = running.until("/status", lambda _, b: b.get("state") == "Failed")
    assert failed == {"attempt": 0, "state": "Failed", "exitCode": 3,
                      "message": json.dumps({"message": "ValueError: bad flag"})}  # fmt: skip
    assert running.get("/ready")[0] == 503 and running.process.poll() is None
    assert running.post(b'{"attempt": 1}') == 202
    assert running.until("/ready", lambda code, _: code == 200) == {"ready": True}
    assert running.get("/status")[1] == {"attempt": 1, "state": "Running", "exitCode": None}
    assert running.post(b'{"attempt": 1}') == 200  # already that attempt: nothing happens
    running.until("/status", lambda *_: len(running.grandchildren()) == 1)
    (first,) = running.grandchildren()
    assert running.post(b'{"attempt": 2}') == 202  # a restart of a running program kills its tree
    assert not alive(first)
    running.until("/status", lambda *_: len(running.grandchildren()) == 2)
    assert alive(running.grandchildren()[1])


@pytest.mark.parametrize(
    "body", [b"", b"[]", b'{"attempt": "1"}', b'{"attempt": -1}', b'{"attempt": true}', b"{"]
)
def test_a_malformed_restart_is_refused_and_the_supervisor_keeps_serving(
    running: Running, body: bytes
) -> None:
    running.until("/status", lambda _, b: b.get("state") == "Failed")
    assert running.post(body) == 400
    assert running.get("/status")[1]["attempt"] == 0


def test_sigterm_goes_to_the_program_and_its_code_ends_the_supervisor(running: Running) -> None:
    running.until("/status", lambda _, b: b.get("state") == "Failed")
    running.post(b'{"attempt": 1}')
    running.until("/status", lambda *_: len(running.grandchildren()) == 1)
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(20) == 143


def test_a_failure_not_restarted_in_time_ends_with_its_code(tmp_path: Path) -> None:
    run = Running(tmp_path, "--restart-wait-seconds=1")
    assert run.process.wait(30) == 3
    assert b"attempt 0" in (run.process.stdout.read() if run.process.stdout else b"")  # output passed on


def test_a_program_that_succeeds_ends_it_with_zero(tmp_path: Path) -> None:
    run = Running(tmp_path, program="print('done')")
    assert run.process.wait(30) == 0


def test_the_operator_reads_the_supervisor_and_restarts_it(running: Running, monkeypatch: Any) -> None:
    """operator/inplace.py against the real supervisor: a failed program is a Failed pod that lives;
    one behind the current attempt is Pending until it is asked to restart."""
    monkeypatch.setattr(inplace, "SUPERVISOR_PORT", running.port)
    running.until("/status", lambda _, b: b.get("state") == "Failed")
    pod = PodView("w-1", "job-0", 1, "Running", "127.0.0.1", ready=False)
    job = JobView("w", "job-0")
    (seen,) = inplace.observe([pod], job, restarts=0, restarting=False)
    assert (seen.phase, seen.in_place, seen.attempt, seen.exit_code) == ("Failed", True, 0, 3)
    assert "bad flag" in seen.failure().message
    rank0 = dataclasses.replace(pod, name="w-0", index=0, ready=True)  # asked too: one is not ready
    assert [v.in_place for v in inplace.observe([rank0, pod], job, restarts=0, restarting=False)] == [
        True,
        True,
    ]
    (behind,) = inplace.observe([pod], job, restarts=1, restarting=True)
    assert (behind.phase, behind.attempt) == ("Pending", 0)
    assert inplace.restart([behind], 1) == 1
    ready = running.until("/status", lambda _, b: b.get("state") == "Running")
    assert ready["attempt"] == 1
    (now,) = inplace.observe([pod], job, restarts=1, restarting=True)
    assert (now.phase, now.attempt) == ("Running", 1)
    ready_pod = dataclasses.replace(pod, ready=True)  # a ready worker is not asked while the job runs
    assert inplace.observe([ready_pod], job, restarts=1, restarting=False) == [ready_pod]
