"""Exponential backoff with a cap: the one rule every retry and restart of the kit waits by.

The stack's supervisor restarting a process (1, 2, 4 ... 30 s), the query supervisor
restarting a query and the Cassandra copy retrying (the same), the Cassandra store
reconnecting (0.2, 0.4 ... 5 s), the display opening a store (1 ... 15 s), the census batch
job waiting for its store (2, 4 ... 30 s).
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["delay", "delays"]


def delay(attempt: int, first_s: float = 1.0, factor: float = 2.0, cap_s: float = 30.0) -> float:
    """The pause before retry ``attempt`` (0: the first): ``first_s * factor ** attempt``,
    at most ``cap_s``."""
    return min(cap_s, first_s * factor ** min(max(attempt, 0), 64))


def delays(first_s: float = 1.0, factor: float = 2.0, cap_s: float = 30.0) -> Iterator[float]:
    """:func:`delay` for attempts 0, 1, 2 ... (endless)."""
    attempt = 0
    while True:
        yield delay(attempt, first_s, factor, cap_s)
        attempt += 1
