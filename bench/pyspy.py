"""Sampling profiles of running processes with py-spy (pip install py-spy): record while a block runs,
then say where the CPU went, by function (self time: the frame on top of the stack) and by the
first frame under a given package (time spent in or below our code, per entry point)."""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def record(pid: int, out: Path, rate: int = 100) -> Iterator[None]:
    """Sample `pid`'s thread holding the GIL (its Python CPU time) into `out` (collapsed stacks)
    while the block runs."""
    exe = shutil.which("py-spy")
    if exe is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    command = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--gil"]
    proc = subprocess.Popen(
        [*command, "--nonblocking", "--threads", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        proc.wait(60)


def stacks(path: Path, thread: str | None = None) -> collections.Counter[tuple[str, ...]]:
    """Collapsed stacks -> samples; the first frame is the thread ("thread (tid): name")."""
    out: collections.Counter[tuple[str, ...]] = collections.Counter()
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if not count.isdigit():  # a sample py-spy could not read whole
            continue
        head, *rest = frames.split(";")
        name = head.split(": ", 1)[-1]
        if thread is None or name == thread or (thread.startswith("!") and name != thread[1:]):
            out[tuple(rest)] += int(count)
    return out


def short(frame: str) -> str:
    """`fn (path/to/module.py:12)` -> `module.fn`."""
    fn, _, where = frame.partition(" (")
    return f"{Path(where.split(':')[0]).stem}.{fn}" if where else fn


def top(samples: collections.Counter[tuple[str, ...]], n: int = 12) -> list[tuple[str, float]]:
    """The functions most often on top of the stack, as a share of all samples."""
    total = sum(samples.values()) or 1
    by: collections.Counter[str] = collections.Counter()
    for frames, count in samples.items():
        if frames:
            by[short(frames[-1])] += count
    return [(fn, count / total) for fn, count in by.most_common(n)]


def inclusive(samples: collections.Counter[tuple[str, ...]], names: list[str]) -> dict[str, float]:
    """Share of samples with each of `names` (module.fn) anywhere on the stack."""
    total = sum(samples.values()) or 1
    out = dict.fromkeys(names, 0.0)
    for frames, count in samples.items():
        seen = {short(f) for f in frames}
        for name in names:
            if name in seen:
                out[name] += count / total
    return out
