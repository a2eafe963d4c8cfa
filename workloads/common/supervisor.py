"""A gang worker's first process under runPolicy.failurePolicy.restartStrategy InPlace: it runs the
worker's program (torchrun ...) as its child and, when the program fails, keeps the pod, so that the
operator restarts every worker's processes where they are instead of re-creating the pods (scheduling,
image pulls and volume mounts again: minutes at scale).

  GET  /ready    200 while the program runs: the readiness probe, so a failure shows in the pod
  GET  /status   {"attempt", "state": Running|Failed|Restarting, "exitCode", "message"}
  POST /restart  {"attempt": N}: kill the program's whole process tree, start it again as attempt N
                 (VLMOP_ATTEMPT); an attempt already started answers 200 and changes nothing

A program that succeeds ends the supervisor with 0; on SIGTERM the signal goes to the program (a save
on SIGTERM stays one) and its exit code ends the supervisor; a failed program not restarted within
--restart-wait-seconds ends it with the program's code (the operator then re-creates the pods).
Standard library only: it starts in a moment and needs nothing from the image beyond Python."""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PORT = 29501  # beside torchrun's 29500
TAIL_LINES = 20  # of the program's output kept for a failure without a termination message
MESSAGE_LIMIT = 4096


def tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc (torchrun starts each worker in a session of its own, so
    a process group does not hold them)."""
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(stat[stat.rindex(")") + 2 :].split()[1])].append(int(entry))
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo += parents.get(out[-1], [])
    return out


def program(argv: list[str]) -> list[str]:
    """torchrun as this interpreter's module (what the `torchrun` script runs), so the supervisor
    needs no PATH lookup of it."""
    return [sys.executable, "-m", "torch.distributed.run", *argv[1:]] if argv[0] == "torchrun" else argv


class Supervisor:
    def __init__(self, argv: list[str], attempt: int, termination_log: Path) -> None:
        self.argv, self.attempt, self.termination_log = argv, attempt, termination_log
        self.state, self.failed_at = "Restarting", 0.0
        self.exit_code: int | None = None
        self.tail: collections.deque[str] = collections.deque()
        self.changed = threading.Condition()
        self.child: subprocess.Popen[bytes] | None = None
        self.terminating = False  # set by the SIGTERM handler, which takes no lock

    def start(self) -> None:
        """Start the program as the current attempt (the lock held)."""
        with contextlib.suppress(OSError):  # truncated, not removed: Kubernetes bind-mounts it
            self.termination_log.write_text("")  # this attempt's message is its own
        env = {**os.environ, "VLMOP_ATTEMPT": str(self.attempt)}
        pipe, merged = subprocess.PIPE, subprocess.STDOUT
        child = subprocess.Popen(program(self.argv), env=env, stdout=pipe, stderr=merged)
        self.child, self.state, self.exit_code = child, "Running", None
        self.tail = collections.deque(maxlen=TAIL_LINES)
        threading.Thread(target=self._copy, args=(child, self.tail), daemon=True).start()
        threading.Thread(target=self._wait, args=(child,), daemon=True).start()

    @staticmethod
    def _copy(child: subprocess.Popen[bytes], tail: collections.deque[str]) -> None:
        """The program's output to the container's, its last lines kept for a failure's message."""
        assert child.stdout is not None
        for line in child.stdout:
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
            tail.append(line.decode(errors="replace").rstrip("\n"))

    def _wait(self, child: subprocess.Popen[bytes]) -> None:
        code = child.wait()
        with self.changed:
            if child is self.child:  # not one killed by a restart
                self.state = "Succeeded" if code == 0 else "Failed"
                self.exit_code, self.failed_at = code, time.monotonic()
                self.changed.notify_all()

    def restart(self, attempt: int) -> bool:
        """Whether this call restarted the program (False: that attempt was already started)."""
        with self.changed:
            if attempt <= self.attempt or self.terminating:
                return False
            self.attempt, self.state = attempt, "Restarting"
            old, self.child = self.child, None
            if old is not None:
                for pid in tree(old.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                old.wait()
            self.start()
            return True

    def status(self) -> dict[str, Any]:
        with self.changed:
            out: dict[str, Any] = {"attempt": self.attempt, "state": self.state, "exitCode": self.exit_code}
            if self.state == "Failed":
                out["message"] = self.message()
            return out

    def message(self) -> str:
        """The program's termination message, else its output's last lines (FallbackToLogsOnError)."""
        try:
            text = self.termination_log.read_text()[:MESSAGE_LIMIT]
        except OSError:
            text = ""
        return text.strip() or "\n".join(self.tail)[-MESSAGE_LIMIT:]

    def on_sigterm(self, *_: Any) -> None:
        self.terminating = True

    def run(self, wait_seconds: float) -> int:
        """Until the program succeeds, a SIGTERM ends it, or a failure waits too long for a restart."""
        signalled = None
        with self.changed:
            self.start()
            while True:
                self.changed.wait(0.2)
                child = self.child
                if self.terminating:
                    if child is None or child.poll() is not None:
                        return child.returncode if child else 143
                    if child is not signalled:  # torchrun forwards it to the workers
                        child.send_signal(signal.SIGTERM)
                        signalled = child
                elif self.state == "Succeeded":
                    return 0
                elif self.state == "Failed" and time.monotonic() - self.failed_at > wait_seconds:
                    return self.exit_code or 1


def serve(supervisor: Supervisor, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/ready":
                running = supervisor.status()["state"] == "Running"
                self._reply(200 if running else 503, {"ready": running})
            elif self.path == "/status":
                self._reply(200, supervisor.status())
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            if self.path != "/restart":
                self.send_error(404)
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                attempt = json.loads(self.rfile.read(min(length, 1024)) or b"{}").get("attempt")
            except (ValueError, AttributeError):
                attempt = None
            if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
                self.send_error(400, 'want {"attempt": <a non-negative integer>}')
                return
            restarted = supervisor.restart(attempt)
            self._reply(202 if restarted else 200, supervisor.status())

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:  # probed every second: keep the log the program's
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - the operator calls it
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--restart-wait-seconds", type=float, default=300.0)
    parser.add_argument("program", nargs=argparse.REMAINDER, help="-- then the program and its arguments")
    return parser


def command_of(args: argparse.Namespace) -> list[str]:
    return list(args.program[1:] if args.program[:1] == ["--"] else args.program)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = command_of(args)
    if not command:
        parser().error("no program given (-- torchrun ...)")
    log = Path(os.environ.get("VLMOP_TERMINATION_LOG", "/dev/termination-log"))
    supervisor = Supervisor(command, int(os.environ.get("VLMOP_ATTEMPT", "0")), log)
    signal.signal(signal.SIGTERM, supervisor.on_sigterm)
    server = serve(supervisor, args.port)
    try:
        return supervisor.run(args.restart_wait_seconds)
    finally:
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
