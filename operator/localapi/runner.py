"""Runs the LocalAPIServer on 127.0.0.1 in a thread of its own, so that synchronous code (the
kubernetes client, pytest, `vlmop local`) can talk to it over real HTTP, and writes a kubeconfig
for processes such as the operator."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import kmock
import yaml

from vlmop.operator.localapi.server import LocalAPIServer

T = TypeVar("T")


class BackgroundAPIServer:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self._host, self._port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="localapi", daemon=True)
        self._stack = contextlib.AsyncExitStack()
        self.api = LocalAPIServer()
        self.url = ""

    def __enter__(self) -> BackgroundAPIServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> BackgroundAPIServer:
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        await self._stack.enter_async_context(self.api)
        server = await self._stack.enter_async_context(
            kmock.Server(self.api, host=self._host, port=self._port)
        )
        self.url = f"http://{server.host}:{server.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the server's loop (e.g. to inspect or inject state) and wait for it."""
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.call(self._stack.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "vlmop-local", "cluster": {"server": self.url}}],
            "users": [{"name": "vlmop-local", "user": {"token": "local"}}],
            "contexts": [
                {
                    "name": "vlmop-local",
                    "context": {"cluster": "vlmop-local", "user": "vlmop-local", "namespace": namespace},
                }
            ],
            "current-context": "vlmop-local",
        }
        path.write_text(yaml.safe_dump(config))
        return path
