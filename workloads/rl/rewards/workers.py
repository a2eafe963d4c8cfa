"""Worker processes for the verifiers that compute (math, multiple choice, task environments).

Threads would share one GIL, so scoring would not scale with cores; and a response such as
`\\boxed{9^{9^{9^9}}}` sends sympy into a big-integer power that holds the GIL for hours, which no
thread-level timeout can stop. A worker that overruns is killed and replaced instead.

Each worker is `python -m vlmop.workloads.rl.rewards.workers`: its first stdin line is the verifier
specs (JSON), then one task per line in, one reply per line out. JSON only, never pickle."""

from __future__ import annotations

import json
import os
import queue
import select
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any


class WorkerTimeout(TimeoutError):
    pass


class WorkerError(RuntimeError):
    pass


class Worker:
    def __init__(self, specs: str) -> None:
        # -P: the caller's working directory never shadows a module (a checkout's operator/ folder).
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C goes to the trainer, which stops us
        )
        self._write(specs)

    def _write(self, line: str) -> None:
        stdin = self._pipe(self.process.stdin)
        stdin.write(line.encode() + b"\n")
        stdin.flush()

    @staticmethod
    def _pipe(pipe: IO[bytes] | None) -> IO[bytes]:
        assert pipe is not None  # both are PIPE
        return pipe

    def run(self, task: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """The reply to one task; WorkerTimeout (after killing the worker) when it overruns."""
        stdout = self._pipe(self.process.stdout)
        try:
            self._write(json.dumps(task))
        except BrokenPipeError as error:
            raise WorkerError(f"reward worker exited ({self.process.poll()})") from error
        ready, _, _ = select.select([stdout], [], [], max(timeout, 0.0))
        if not ready:
            self.close()
            raise WorkerTimeout(f"timed out after {timeout:g}s")
        line = stdout.readline()  # one reply per task: nothing else is ever buffered
        if not line:
            self.close()
            raise WorkerError(f"reward worker died ({self.process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe:
                pipe.close()


class Workers:
    """Up to `size` workers, started when first needed and reused; a dead one is replaced."""

    def __init__(self, specs: Sequence[Mapping[str, Any]], size: int) -> None:
        self.specs = json.dumps(list(specs))
        self.size = max(size, 1)
        self.idle: queue.SimpleQueue[Worker] = queue.SimpleQueue()
        self.started: list[Worker] = []
        self.lock = threading.Lock()

    def score(self, verifier: str, sample: Mapping[str, Any], timeout: float) -> float:
        worker = self._take()
        try:
            reply = worker.run({"verifier": verifier, "sample": sample}, timeout)
        finally:
            self.idle.put(worker)  # a closed one is replaced on its next turn
        if "error" in reply:
            raise WorkerError(str(reply["error"]))
        return float(reply["reward"])

    def _take(self) -> Worker:
        with self.lock:
            if self.idle.empty() and len(self.started) < self.size:
                self.started.append(Worker(self.specs))
                return self.started[-1]
        worker = self.idle.get()
        if worker.alive():
            return worker
        with self.lock:
            self.started[self.started.index(worker)] = fresh = Worker(self.specs)
        return fresh

    def close(self) -> None:
        with self.lock:
            for worker in self.started:
                worker.close()
            self.started.clear()


def main() -> None:
    from vlmop.workloads.rl.rewards.mixture import Sample, verifier

    # Replies go to a private copy of stdout; whatever a verifier prints goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr
    built = {spec["name"]: verifier(spec) for spec in json.loads(sys.stdin.readline())}
    for line in sys.stdin:
        task = json.loads(line)
        reply: dict[str, Any]
        try:
            reply = {"reward": float(built[task["verifier"]].score(Sample(**task["sample"])))}
        except Exception as error:  # a verifier's failure is a reply, never the worker's end
            reply = {"error": f"{type(error).__name__}: {error}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
