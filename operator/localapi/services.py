"""Services for the local kubelet's pods, as kube-proxy and cluster DNS provide them: every pod has
an address of its own on the loopback network (127.0.0.0/8 is all loopback on Linux), a ClusterIP
Service gets an address too, with a TCP proxy on each of its ports that spreads connections over the
ready endpoints, and the names (`<svc>.<ns>.svc`, `<svc>.<ns>`, a pod's `<hostname>.<subdomain>.<ns>.svc`)
go to a hosts file the pods' resolver reads (podsite/sitecustomize.py). A headless Service's name
resolves to every ready pod's address."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmop.operator.localapi.probes import port_of

Address = tuple[str, int]


class Addresses:
    """Loopback addresses for pods and Services, from a block of its own per run (127.<b>.0.0/16), so
    a process a killed run left behind cannot hold the address a new pod needs."""

    def __init__(self) -> None:
        self.block = random.randint(16, 250)  # noqa: S311 - not a secret
        self._next = itertools.count(2)

    def take(self) -> str:
        n = next(self._next)
        return f"127.{self.block}.{n // 250}.{n % 250 + 1}"


def names(name: str, namespace: str) -> list[str]:
    return [f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]


def matches(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def target_port(port: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> int:
    """A Service port's targetPort on a pod: a number, or the name of a container port."""
    target = port.get("targetPort", port["port"])
    for container in pod_spec.get("containers") or []:
        with contextlib.suppress(LookupError):
            return port_of(target, container)
    raise LookupError(f"no container port named {target}")


@dataclass(frozen=True)
class Endpoint:
    namespace: str
    labels: Mapping[str, str]
    ip: str
    spec: Mapping[str, Any]
    hostname: str


def resolve(
    services: Iterable[dict[str, Any]], ready: Iterable[Endpoint], cluster_ips: Mapping[str, str]
) -> tuple[dict[str, list[str]], dict[Address, list[Address]]]:
    """The hosts file's names and the proxies' backends for the Services and the ready pods
    (`cluster_ips`: a ClusterIP Service's uid -> its address)."""
    ready = list(ready)
    hosts: dict[str, list[str]] = {}
    backends: dict[Address, list[Address]] = {}
    for pod in ready:
        if pod.spec.get("subdomain"):
            hosts[f"{pod.hostname}.{pod.spec['subdomain']}.{pod.namespace}.svc"] = [pod.ip]
    for svc in services:
        meta, spec = svc["metadata"], svc["spec"]
        pods = [
            p for p in ready if p.namespace == meta["namespace"] and matches(spec.get("selector"), p.labels)
        ]
        ip = cluster_ips.get(meta["uid"])
        for name in names(meta["name"], meta["namespace"]):
            hosts[name] = [ip] if ip else sorted(p.ip for p in pods)
        if ip is None:  # headless: names only
            continue
        for port in spec.get("ports") or []:
            found = []
            for pod in pods:
                with contextlib.suppress(LookupError):  # a pod without that port is no endpoint
                    found.append((pod.ip, target_port(port, pod.spec)))
            backends[(ip, int(port["port"]))] = found
    return hosts, backends


class Proxies:
    """A TCP proxy per ClusterIP Service port, on an event loop of its own thread."""

    def __init__(self, hosts_file: Path) -> None:
        self.hosts_file = hosts_file
        self._hosts: dict[str, list[str]] = {}
        self._backends: dict[Address, list[Address]] = {}
        self._servers: dict[Address, asyncio.Server] = {}
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="local-proxy", daemon=True)
        self._thread.start()
        self.errors: list[str] = []
        self.write_hosts({})

    def update(self, hosts: dict[str, list[str]], backends: dict[Address, list[Address]]) -> None:
        self._backends = backends
        if hosts != self._hosts:
            self.write_hosts(hosts)
        if set(backends) != set(self._servers):
            asyncio.run_coroutine_threadsafe(self._listen(set(backends)), self._loop).result(10)

    def write_hosts(self, hosts: dict[str, list[str]]) -> None:
        """Atomically: a resolver never reads half a file."""
        self._hosts = hosts
        partial = self.hosts_file.with_suffix(".partial")
        partial.write_text(json.dumps(hosts, indent=1, sort_keys=True))
        os.replace(partial, self.hosts_file)

    async def _listen(self, wanted: set[Address]) -> None:
        for address in set(self._servers) - wanted:
            self._servers.pop(address).close()
        for address in wanted - set(self._servers):
            try:
                self._servers[address] = await asyncio.start_server(self._connect(address), *address)
            except OSError as error:
                self.errors.append(f"service address {address}: {error}")

    def _connect(self, address: Address) -> Any:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            backends = self._backends.get(address) or []
            if not backends:  # no ready endpoint: the connection is refused, as kube-proxy does
                writer.close()
                return
            first = next(self._turn)
            for turn in range(len(backends)):  # a backend that just went away: the next one
                try:
                    up_reader, up_writer = await asyncio.open_connection(
                        *backends[(first + turn) % len(backends)]
                    )
                    break
                except OSError:
                    continue
            else:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            for stream in (writer, up_writer):
                stream.close()

        return handle

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers.values():
                server.close()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One direction; its end is passed on as a half-close (the other may still be answering)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()
