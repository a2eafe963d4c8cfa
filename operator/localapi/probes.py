"""The probes a pod's container declares, run by the local kubelet as a kubelet runs them: the
startup probe until it passes (or fails `failureThreshold` times: the container is restarted), then
readiness (gates the pod's Service endpoints) and liveness (restarts a container that stops
answering), each on its own period. httpGet, tcpSocket and exec are supported."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any


def port_of(value: int | str, container: Mapping[str, Any]) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise LookupError(f"no container port named {value}")


def passes(
    probe: Mapping[str, Any], ip: str, container: Mapping[str, Any], run: Callable[[list[str], float], int]
) -> bool:
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            url = f"http://{ip}:{port_of(get['port'], container)}{get.get('path', '/')}"
            with urllib.request.urlopen(url, timeout=timeout) as reply:
                return bool(200 <= reply.status < 400)
        if "tcpSocket" in probe:
            with socket.create_connection((ip, port_of(probe["tcpSocket"]["port"], container)), timeout):
                return True
        if "exec" in probe:
            return run(list(probe["exec"]["command"]), timeout) == 0
    except (OSError, urllib.error.URLError, subprocess.TimeoutExpired, LookupError):
        return False
    raise ValueError(f"unsupported probe {sorted(probe)}")


class Prober:
    """Probes one container run in a thread; the kubelet reads `ready` and `dead`."""

    def __init__(self, container: Mapping[str, Any], ip: str, run: Callable[[list[str], float], int]) -> None:
        self.container, self.ip, self.run = container, ip, run
        self.started = "startupProbe" not in container
        self.ready = False
        self.dead = ""  # why liveness (or start-up) gave up: the kubelet restarts the container
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"probe-{ip}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _check(self, kind: str) -> bool:
        return passes(self.container[kind], self.ip, self.container, self.run)

    def _loop(self) -> None:
        startup = self.container.get("startupProbe") or {}
        if self._stop.wait(float(startup.get("initialDelaySeconds", 0))):
            return
        failures = 0
        while not self.started:
            if self._check("startupProbe"):
                self.started = True
            else:
                failures += 1
                if failures >= int(startup.get("failureThreshold", 3)):
                    self.dead = "startup probe failed"
                    return
                if self._stop.wait(float(startup.get("periodSeconds", 10))):
                    return
        due = {kind: 0.0 for kind in ("readinessProbe", "livenessProbe") if kind in self.container}
        self.ready = "readinessProbe" not in self.container
        failures = 0
        while not self._stop.is_set():
            now = time.monotonic()
            for kind, at in due.items():
                if now < at:
                    continue
                probe = self.container[kind]
                due[kind] = now + float(probe.get("periodSeconds", 10))
                ok = self._check(kind)
                if kind == "readinessProbe":
                    self.ready = ok
                    continue
                failures = 0 if ok else failures + 1
                if failures >= int(probe.get("failureThreshold", 3)):
                    self.dead, self.ready = "liveness probe failed", False
                    return
            with contextlib.suppress(ValueError):
                self._stop.wait(max(0.05, min(due.values(), default=now + 1) - time.monotonic()))
