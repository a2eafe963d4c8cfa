"""The README's first command, as a newcomer runs it: `vlmop local examples/` brings every example to
its done state on this machine (PretrainJob and CascadeRLJob Succeeded, the DvDDeployment Ready and
answering a request with an image through its gateway), with vLLM and Prometheus where CI installs
them. SIGTERM stops the run and every process it started; a killed run's leftovers are swept."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from vlmop.operator.localapi import engines
from vlmop.operator.localapi.kubelet import GROUPS, sweep
from vlmop.operator.localapi.podsite import RUN

ROOT = Path(__file__).resolve().parents[2]
VLMOP = Path(sys.executable).parent / "vlmop"


def ours(pid: int) -> list[psutil.Process]:
    """The processes a run started (they carry its pid), still alive."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(RUN) == str(pid) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_every_example_reaches_its_done_state(tmp_path: Path) -> None:
    if not engines.installed():
        pytest.fail(f"vLLM's CPU venv is missing ({engines.vllm_python()}): run .ci/vllm-venv (CI does)")
    run = subprocess.run([str(VLMOP), "local", "examples/"], cwd=ROOT, capture_output=True, text=True,
                         timeout=1500, check=False)  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    assert f"rollout and language pools on vLLM ({engines.vllm_python()})" in out
    assert re.search(r"tiny-pretrain\s+Succeeded\s+200/200 steps", out), out[-4000:]
    assert re.search(r"tiny-cascade-rl\s+Succeeded", out), out[-4000:]
    assert re.search(r"tiny-cascade-rl: mean reward by source \{.*gsm8k", out), out[-4000:]
    # The last step's tally per verifier: scored in the trainer pod's reward workers, none failed.
    tallies = re.findall(r"verifier (\S+): scored (\d+), failed (\d+), timedOut (\d+)", out)
    assert tallies and all(int(n) > 0 and (f, t) == ("0", "0") for _, n, f, t in tallies), tallies
    assert re.search(r"tiny-dvd\s+Ready\s+vision=1/1 language=1/1 gateway=2/2", out), out[-4000:]
    assert "Prometheus scrapes the local pods" in out
    assert re.search(
        r"tiny-dvd: autoscaler on http://prometheus-operated.monitoring:9090/?: vision 1 replicas "
        r"\(\w+, utilisation [\d.]+\), language 1 replicas \(\w+, utilisation",
        out,
    ), out[-4000:]
    assert "it answers" in out
    assert re.search(
        r"try: curl .* -d @\S+request.json http://127\.\d+\.\d+\.\d+:8080/v1/chat/completions", out
    )


def test_sigterm_stops_the_run_and_every_process_it_started(tmp_path: Path) -> None:
    """One file given (its claims are found beside it); stopped while the job trains."""
    log = tmp_path / "out"
    with log.open("w") as out:
        run = subprocess.Popen([str(VLMOP), "local", "examples/pretrainjob.yaml"], cwd=ROOT, stdout=out,
                               stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 240
    while not re.search(r"Running\s+[1-9]\d*/200 steps", log.read_text()):
        assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(1)
    started = ours(run.pid)
    assert len(started) >= 3, started  # the operator, two torchrun pods and their workers
    run.send_signal(signal.SIGTERM)
    assert run.wait(60) == 130, log.read_text()[-3000:]
    assert "stopped: the operator and every local pod have exited" in log.read_text()
    assert not ours(run.pid)


def test_a_killed_runs_leftovers_are_swept() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid no process has now: the run that started the leftover is gone
    env = {**os.environ, RUN: str(dead.pid)}
    sleep = [sys.executable, "-c", "import time; time.sleep(300)"]
    leftover = subprocess.Popen(sleep, env=env)  # e.g. the operator: marked as the run's
    group = subprocess.Popen(sleep, start_new_session=True)  # a pod's group (vLLM's engine drops the mark)
    mine = subprocess.Popen(sleep, env={**os.environ, RUN: str(os.getpid())})
    with GROUPS.open("a") as groups:
        groups.write(f"{dead.pid} {group.pid}\n")
    try:
        assert sweep() >= 2
        assert leftover.wait(10) == -signal.SIGKILL and group.wait(10) == -signal.SIGKILL
        assert mine.poll() is None  # a live run's processes are left alone
        assert f"{dead.pid} {group.pid}" not in GROUPS.read_text()
    finally:
        for process in (mine, leftover, group):
            process.kill()
