"""Whether this replica may act. kopf pauses its own watchers while its peering object shows a live
peer of higher or equal priority (or while that object is missing); the work queue is ours, so it
asks the same question of the same object, at most every CHECK_SECONDS."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from vlmop.operator import kube

CHECK_SECONDS = 2.0
log = logging.getLogger("vlmop.operator")


def outranked_by(
    peers: Mapping[str, Mapping[str, Any]], identity: str, priority: int, now: datetime.datetime
) -> list[str]:
    """The live peers (seen within their lifetime) that outrank or tie with us: kopf pauses for both."""
    found = []
    for peer, info in peers.items():
        seen = datetime.datetime.fromisoformat(str(info.get("lastseen") or now.isoformat()))
        alive = seen + datetime.timedelta(seconds=int(info.get("lifetime", 60))) > now
        if peer != identity and alive and int(info.get("priority", 0)) >= priority:
            found.append(peer)
    return found


def urls(name: str, namespaces: list[str]) -> list[str]:
    """kopf's peering objects: one cluster-wide, or one per served namespace."""
    if not namespaces:
        return [f"/apis/kopf.dev/v1/clusterkopfpeerings/{name}"]
    return [f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings/{name}" for ns in namespaces]


class Gate:
    def __init__(self, identity: str, priority: int, objects: list[str] | None) -> None:
        self.identity, self.priority, self.objects = identity, priority, objects  # None: standalone
        self.open, self.checked = False, float("-inf")

    async def __call__(self) -> bool:
        if self.objects is None:
            return True
        loop = asyncio.get_running_loop()
        if loop.time() - self.checked >= CHECK_SECONDS:
            self.checked = loop.time()
            self.open = await asyncio.to_thread(self.read)
        return self.open

    def read(self) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        for url in self.objects or []:
            try:
                peers = dict(kube.request("GET", url).get("status") or {})
            except (ApiException, OSError) as error:  # unknown: keep the last answer until it reads
                if isinstance(error, ApiException) and error.status == 404:
                    return False  # kopf stays paused without its peering object too
                log.warning("peering %s unreadable (%s); keeping the last answer", url, error)
                return self.open
            if outranked_by(peers, self.identity, self.priority, now):
                return False
        return True
