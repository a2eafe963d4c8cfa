"""Starts kopf with settings chosen on purpose. Each choice says why."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from vlmop.operator import metrics, peering
from vlmop.operator.handlers import children
from vlmop.operator.workqueue import QUEUE

PREFIX = "vlmop.io"


@dataclass
class RunOptions:
    standalone: bool = False
    namespaces: list[str] = field(default_factory=list)  # empty: cluster-wide
    peering_name: str = "vlmop"
    priority: int = 0
    liveness: str | None = "http://0.0.0.0:8080/healthz"
    metrics_port: int | None = 9090
    verbose: bool = False
    resync_seconds: float = 10.0  # how often each object is reconciled again (pods, progress)


def configure(settings: kopf.OperatorSettings, options: RunOptions) -> None:
    # kopf only watches and indexes (the work queue reconciles), so it writes nothing to our objects;
    # it lifts this finalizer, which versions with kopf timers put on every object, when it sees one.
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    # HA: replicas elect through KopfPeering (the work queue's gate reads the same object). Peering is
    # mandatory unless --standalone: without the peering resource kopf stays paused instead of running
    # as a second active replica.
    settings.peering.name = options.peering_name
    settings.peering.priority = options.priority
    settings.peering.standalone = options.standalone
    settings.peering.mandatory = not options.standalone
    # No CRD or namespace watching (which needs cluster-wide read of both): the resources present at
    # start are served; an add-on installed later (KEDA) is picked up on the next restart.
    settings.scanning.disabled = True
    # Events: warnings and errors from kopf, plus the reasons we post ourselves (InvalidSpec, ...).
    settings.posting.enabled = True
    settings.posting.level = logging.WARNING
    # Watches end server-side every 5 min and reconnect, so a silently dead stream cannot hang us.
    settings.watching.server_timeout = 300
    # Only our children reach us: the API server filters the kinds we own by their labels, so memory
    # and watch traffic do not grow with the cluster's other pods, Jobs and Deployments.
    for kind in children.OWNED:
        settings.watching.label_selectors[kind] = children.SERVER_SELECTOR
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # API errors back off up to a minute rather than hammering a struggling API server.
    settings.networking.error_backoffs = [1, 2, 5, 10, 30, 60]
    settings.networking.enforce_retry_after = True  # 429s wait as long as the server asks
    settings.batching.error_delays = [1, 2, 5, 10, 30, 60]


def run(options: RunOptions) -> None:
    import vlmop.operator.handlers  # noqa: F401 - registers the handlers

    kopf.configure(verbose=options.verbose, log_format=kopf.LogFormat.PLAIN)
    identity = f"{os.environ.get('POD_ID') or socket.gethostname()}/{uuid.uuid4().hex[:12]}"
    objects = None if options.standalone else peering.urls(options.peering_name, options.namespaces)
    gate = peering.Gate(identity, options.priority, objects)
    running: list[asyncio.Task[None]] = []

    @kopf.on.startup()
    async def _startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        configure(settings, options)
        QUEUE.resync = options.resync_seconds
        indices = {name: index for name, index in kwargs.items() if isinstance(index, kopf.Index)}
        running.append(asyncio.create_task(QUEUE.run(indices, gate)))

    @kopf.on.cleanup()
    async def _cleanup(**_: Any) -> None:
        for task in running:
            task.cancel()

    if options.metrics_port:
        metrics.serve(options.metrics_port)
    asyncio.run(
        kopf.operator(
            standalone=options.standalone,
            priority=options.priority,
            peering_name=options.peering_name,
            liveness_endpoint=options.liveness,
            clusterwide=not options.namespaces,
            namespaces=options.namespaces,
            identity=cast(Any, identity),  # kopf's peer id, which the work queue's gate looks for
        )
    )
