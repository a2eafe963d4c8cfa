"""Starts kopf with settings chosen on purpose. Each choice says why."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import kopf

from vlmop.operator import metrics

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
    resync_seconds: float = 10.0  # how often running jobs are re-read (pods, progress)


def configure(settings: kopf.OperatorSettings, options: RunOptions) -> None:
    # Handler progress and the last-handled spec live in annotations under our own prefix, so
    # status stays ours alone and kstatus/Argo CD read clean conditions.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # kopf puts it on every object with a timer, to stop the timer before the object goes.
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    # A timer that deletes its own object (ttlSecondsAfterFinished) is still running when kopf sees
    # the deletion; kopf re-checks it this often before lifting the finalizer (default: 60 s).
    settings.background.cancellation_polling = 1.0
    # HA: replicas elect through KopfPeering. Peering is mandatory unless --standalone: without the
    # peering resource kopf stays paused instead of running as a second active replica.
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
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # API errors back off up to a minute rather than hammering a struggling API server.
    settings.networking.error_backoffs = [1, 2, 5, 10, 30, 60]
    settings.networking.enforce_retry_after = True  # 429s wait as long as the server asks
    settings.batching.error_delays = [1, 2, 5, 10, 30, 60]
    settings.execution.max_workers = 16


class QuietTimers(logging.Filter):
    """Drops kopf's INFO line for every successful resync tick (a thousand jobs every 10 s would log
    a hundred lines a second); failures and everything else still log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            record.levelno == logging.INFO and message.startswith("Timer ") and message.endswith("succeeded.")
        )


def run(options: RunOptions) -> None:
    os.environ["VLMOP_RESYNC_SECONDS"] = str(options.resync_seconds)  # read when handlers register
    import vlmop.operator.handlers  # noqa: F401 - registers the handlers

    kopf.configure(verbose=options.verbose, log_format=kopf.LogFormat.PLAIN)
    if not options.verbose:
        logging.getLogger("kopf.objects").addFilter(QuietTimers())

    @kopf.on.startup()
    def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, options)

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
        )
    )
