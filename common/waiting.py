"""Waiting on a condition with a deadline: the kit's only way to wait (no fixed sleeps)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """The condition did not hold before the deadline."""


def eventually(
    condition: Callable[[], T | None],
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
    check: Callable[[], None] | None = None,
) -> T:
    """Call ``condition`` until it returns a truthy value, and return that value.

    ``check`` runs before each attempt and may raise to stop waiting early
    (e.g. ``query.exception()`` of a streaming query, or a child process that died).

    Raises:
        DeadlineExceeded: after ``timeout_s``, naming ``what`` was awaited.
    """
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        if check is not None:
            check()
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(f"timed out after {timeout_s:.1f} s waiting for {what}")
        time.sleep(interval_s)
