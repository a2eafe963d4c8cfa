"""Loopback helpers for the processes tests and benchmarks start (servers, trainers): a free port, and
waiting until a server answers. Standard library only, so GPU machines without the operator's
dependencies run the benchmarks too."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log: Path | None = None, timeout: float = 60
) -> None:
    """Until GET `url` answers (a server process the tests or benchmarks started); RuntimeError with
    the tail of its log when the process exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 (a loopback server of ours)
            return
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.3)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{url} never answered (exit code {process.poll()}): {tail}")
