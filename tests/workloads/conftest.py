"""Starting vLLM's real server (CPU build, `.ci/vllm-venv`) with the command line the operator writes:
the container's `vllm serve` arguments go through vLLM's own parser (operator/localapi/vllm_serve.py), and the
pool's startup probe (one sampled token) says when it serves."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from vlmop.operator.localapi import engines

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON, ENV = engines.vllm_python(), engines.CPU_ENV


class VLLM:
    """The helpers below, for tests (conftest functions are reached through fixtures)."""

    @staticmethod
    def argv(container: dict[str, Any]) -> list[str]:
        return vllm_argv(container)

    @staticmethod
    def parses(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return parses(argv)

    @staticmethod
    def server(container: dict[str, Any], log: Path) -> Any:
        return vllm_server(container, log)


@pytest.fixture(scope="session")
def vllm() -> VLLM:
    return VLLM()


def serve() -> list[str]:
    """`vllm serve` from the CPU venv."""
    if not VLLM_PYTHON.exists():
        pytest.fail(f"vLLM's CPU venv is missing ({VLLM_PYTHON}): run .ci/vllm-venv (CI does)")
    return engines.serve()


def vllm_argv(container: dict[str, Any]) -> list[str]:
    """What the operator puts after `vllm serve` in a pool's container."""
    assert container["command"][:2] == ["vllm", "serve"], container["command"]
    return [*container["command"][2:], *container["args"]]


def parses(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """vLLM's own parser and validation on a `vllm serve` command line (no server started)."""
    return subprocess.run([*serve(), "--check", *argv], capture_output=True,
                          text=True, timeout=120, cwd="/")  # fmt: skip


@contextmanager
def vllm_server(container: dict[str, Any], log: Path, timeout: float = 400) -> Iterator[None]:
    """The pool's container run here: its `vllm serve` arguments and env, ready once its startup probe
    (python3 -c ... one completion) succeeds."""
    env = {**os.environ, **ENV, **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e}}
    process = subprocess.Popen([*serve(), *vllm_argv(container)], env=env, cwd="/",
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    probe = container["startupProbe"]["exec"]["command"]
    assert probe[0] == "python3"
    deadline = time.monotonic() + timeout
    try:
        while subprocess.run([sys.executable, *probe[1:]], capture_output=True).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"vLLM never served (exit {process.poll()}): {log.read_text()[-3000:]}")
            time.sleep(2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
