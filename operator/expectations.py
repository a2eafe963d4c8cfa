"""What this operator wrote that its watches have not shown it yet (client-go's ControllerExpectations,
kept per child). Children are read from kopf indexes, which lag behind the operator's own writes; a
reconcile that runs again before they catch up (a child's event woke it; under a burst of creates
the watches fall behind) would otherwise create the same child again (a 409: a wasted write), replace
it again, or report it missing in status. Kept in the object's memo; an expectation the index never
confirms (the child was deleted at once) lapses after TTL_SECONDS."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # kube converges with expectations; they only hold its ChildRefs
    from vlmop.operator.kube import ChildRef

TTL_SECONDS = 30.0
ChildKey = tuple[str, str]  # kind, name


@dataclass
class Expectations:
    written: dict[ChildKey, tuple[ChildRef, float]] = field(default_factory=dict)
    deleted: dict[ChildKey, float] = field(default_factory=dict)

    def merge(self, indexed: Iterable[ChildRef], now: float | None = None) -> list[ChildRef]:
        """The children as the index has them, corrected by what was written since; an expectation
        the index now shows (or that lapsed) is dropped."""
        now = time.monotonic() if now is None else now
        have = {(c.kind, c.name): c for c in indexed}
        for key, (ref, at) in list(self.written.items()):
            if have.get(key) == ref or now - at > TTL_SECONDS:
                del self.written[key]
            else:
                have[key] = ref
        for key, at in list(self.deleted.items()):
            if key not in have or now - at > TTL_SECONDS:
                del self.deleted[key]
            else:
                del have[key]
        return list(have.values())

    def wrote(self, ref: ChildRef) -> None:
        self.deleted.pop((ref.kind, ref.name), None)
        self.written[(ref.kind, ref.name)] = (ref, time.monotonic())

    def removed(self, kind: str, name: str) -> None:
        self.written.pop((kind, name), None)
        self.deleted[(kind, name)] = time.monotonic()

    def pending(self, kind: str, name: str) -> bool:
        """Written and not yet in the index."""
        return (kind, name) in self.written


def of(memo: dict[str, object]) -> Expectations:
    """The object's expectations, kept in its work-queue memo."""
    found = memo.setdefault("expected-writes", Expectations())
    assert isinstance(found, Expectations)
    return found
