"""Operator runtime settings that are pure enough to test alone."""

from __future__ import annotations

import logging

from vlmop.operator.runtime import QuietTimers


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


def test_resync_ticks_are_quiet_but_failures_and_handlers_are_not() -> None:
    quiet = QuietTimers()
    assert not quiet.filter(record(logging.INFO, "Timer 'reconcile' succeeded."))
    assert quiet.filter(record(logging.ERROR, "Timer 'reconcile' failed with an exception."))
    assert quiet.filter(record(logging.INFO, "Handler 'reconcile' succeeded."))
