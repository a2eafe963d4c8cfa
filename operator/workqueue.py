"""Which owner to reconcile, and when. kopf watches and indexes; each owner's watch events and each
reconcile's own schedule put keys here, and one loop runs them: one reconcile at a time per object, up
to WORKERS at once, each again after the resync period while it has time-driven work (rank 0's
progress while its pods run, the autoscaler), sooner after an error, when the reconcile says otherwise
(NEXT: a deadline, ttlSecondsAfterFinished, QUIET_SECONDS while nothing runs), never again until an
event when nothing time-driven is left (a finished job without a TTL).

Why not kopf's timers and change handlers: a kopf timer puts kopf's finalizer on every object and a
change handler its last-handled annotation, two writes per object that a level-based reconcile does
not need (it reads the whole object and the indexes every time; status.observedGeneration says what
it last handled). Without the finalizer, deleting an object never waits for the operator."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException

from vlmop.operator import kube, metrics
from vlmop.operator.api import GROUP, VERSION, KindInfo
from vlmop.operator.reconcile import Written, typed

Key = tuple[str, str, str]  # namespace, kind, name
Body = dict[str, Any]
# A kind's reconcile: the object, the operator's indexes by name and the object's memo (what the
# operator remembers between rounds); returns the object as its status write left it, if it wrote.
Reconcile = Callable[..., Written]
WORKERS = 16
# A child's change (a pod's phase, a Job's condition) runs its owner this soon: events of one change
# (a gang's pods start together) come in bursts, and one reconcile sees them all.
WAKE_SECONDS = 0.5
SOONER = (
    "run-again-in"  # a memo key: the reconcile wants to run again this soon (seconds), not a resync later
)
# A memo key: when the reconcile has time-driven work again (seconds; infinity: never, an event only),
# instead of the resync (lifecycle.next_due, lifecycle.QUIET_SECONDS).
NEXT = "next-due-in"
log = logging.getLogger("vlmop.operator")


def idle(memo: dict[str, Any], due: float | None) -> None:
    """Tell the queue when the object has time-driven work again (None: the usual resync; infinity:
    never, until an event)."""
    if due is not None:
        memo[NEXT] = due


@dataclass
class Entry:
    kind: str
    body: Body
    due: float | None = None  # when it runs next; None while it runs
    running: bool = False
    dirty: bool = False  # the object changed while it ran: run again at once
    failures: int = 0
    memo: dict[str, Any] = field(default_factory=dict)
    idle: bool = False  # parked: runs again on an event only (NEXT: infinity)


class ObjectLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes each line with the object's namespace/name, as kopf's object loggers do."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{(self.extra or {}).get('object')}] {msg}", kwargs


def newer(candidate: Mapping[str, Any], known: Mapping[str, Any]) -> bool:
    """Whether `candidate` is a later state than `known`. resourceVersion is etcd's revision; an echo
    of our own status write (or an older event still in flight) is not news."""
    new, old = (str(b.get("metadata", {}).get("resourceVersion", "")) for b in (candidate, known))
    return not (new.isdigit() and old.isdigit()) or int(new) > int(old)


class WorkQueue:
    def __init__(self) -> None:
        self.reconcilers: dict[str, Reconcile] = {}
        self.entries: dict[Key, Entry] = {}
        self.heap: list[tuple[float, int, Key]] = []
        self.order = itertools.count()
        self.resync = 10.0
        self.pending: asyncio.Event | None = None  # set when a key becomes due sooner
        self.loop: asyncio.AbstractEventLoop | None = None

    def register(self, info: KindInfo) -> Callable[[Reconcile], Reconcile]:
        """Make `fn` the reconcile of `info`'s kind (its spec parsed: reconcile.typed); kopf's watch
        events of its objects feed the queue."""

        def decorate(fn: Reconcile) -> Reconcile:
            self.reconcilers[info.kind] = typed(info, fn)

            @kopf.on.event(GROUP, VERSION, info.plural, id=f"queue-{info.plural}")
            async def observe(event: kopf.RawEvent, **_: Any) -> None:
                self.observe(info.kind, event.get("type"), dict(event["object"]))

            return fn

        return decorate

    def observe(self, kind: str, type_: str | None, body: Body) -> None:
        meta = body.get("metadata", {})
        key = (str(meta.get("namespace")), kind, str(meta.get("name")))
        entry = self.entries.get(key)
        if type_ == "DELETED":
            if entry and entry.body.get("metadata", {}).get("uid") == meta.get("uid"):
                self.park(entry, False)
                del self.entries[key]
            return
        if entry is None or entry.body.get("metadata", {}).get("uid") != meta.get("uid"):
            self.entries[key] = Entry(kind, body)
            self.at(key, 0.0)
        elif newer(body, entry.body):
            entry.body = body
            if entry.running:
                entry.dirty = True
            else:
                self.at(key, 0.0)

    def wake(self, key: Key) -> None:
        """A child of `key` changed (the indexes have it already): run the owner soon."""
        entry = self.entries.get(key)
        if entry is None:
            return
        if entry.running:
            entry.dirty = True
        else:
            self.at(key, WAKE_SECONDS)

    def wake_threadsafe(self, key: Key) -> None:
        """`wake` from another thread (e.g. a reconcile's background work finished)."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.wake, key)

    def at(self, key: Key, delay: float) -> None:
        """Run `key` in `delay` seconds, or sooner if it is due sooner already."""
        entry = self.entries[key]
        self.park(entry, False)
        due = asyncio.get_running_loop().time() + delay
        if entry.running or (entry.due is not None and entry.due <= due):
            return
        entry.due = due
        heapq.heappush(self.heap, (due, next(self.order), key))
        if self.pending:
            self.pending.set()

    async def run(self, indices: Mapping[str, Any], active: Callable[[], Awaitable[bool]]) -> None:
        """Run due keys forever; `active` says whether this replica may act (peering)."""
        self.pending = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(WORKERS)
        pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="reconcile")
        loop = asyncio.get_running_loop()
        while True:
            self.pending.clear()
            while self.heap and self.heap[0][0] <= loop.time():
                if not await active():  # paused for a peer: look again shortly
                    await asyncio.sleep(1.0)
                    continue
                due, _, key = heapq.heappop(self.heap)
                entry = self.entries.get(key)
                if entry is None or entry.due != due:
                    continue  # gone, or moved to another time
                await slots.acquire()
                entry.running, entry.due = True, None
                task = loop.create_task(self.one(key, entry, indices, pool))
                task.add_done_callback(lambda _: slots.release())
            delay = self.heap[0][0] - loop.time() if self.heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.pending.wait(), delay)

    async def one(self, key: Key, entry: Entry, indices: Mapping[str, Any], pool: ThreadPoolExecutor) -> None:
        fn, body = self.reconcilers[entry.kind], entry.body
        delay, gone = self.resync, False
        logger = ObjectLogger(log, {"object": f"{key[0]}/{key[2]}"})
        try:
            written = await asyncio.get_running_loop().run_in_executor(
                pool, lambda: fn(body=kopf.Body(cast(Any, body)), logger=logger, memo=entry.memo, **indices)
            )
            entry.failures = 0
            delay = entry.memo.pop(NEXT, delay)
            delay = min(delay, entry.memo.pop(SOONER, delay))
            if written is not None and newer(written, entry.body):
                entry.body = dict(written)
        except kube.Gone:  # deleted while we were away from its watch: forgotten
            gone = not entry.dirty
        except Exception as error:  # a bug must not stop the queue: logged, retried with backoff
            delay = self.failed(logger, entry, error)
        entry.running = False
        if self.entries.get(key) is entry:  # not deleted (or replaced) meanwhile
            if gone:
                del self.entries[key]
            elif entry.dirty or delay != math.inf:
                self.at(key, 0.0 if entry.dirty else delay)
            else:
                self.park(entry, True)
        entry.dirty = False

    @staticmethod
    def park(entry: Entry, idle: bool) -> None:
        if entry.idle != idle:
            entry.idle = idle
            metrics.IDLE_OBJECTS.labels(entry.kind).inc(1 if idle else -1)

    def failed(self, logger: ObjectLogger, entry: Entry, error: Exception) -> float:
        entry.failures += 1
        delay = kube.retry_delay(error, entry.failures)
        if isinstance(error, ApiException) and error.status in kube.TRANSIENT:
            logger.warning("API %s (%s); again in %g s", error.status, error.reason, delay)
        else:
            logger.error("reconcile failed; again in %g s", delay, exc_info=error)
        return delay


QUEUE = WorkQueue()
