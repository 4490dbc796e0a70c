"""Sliding windows built from panes: tumbling windows as long as the slide (or a divisor of it).

A sliding window of ``length`` every ``slide`` is the union of the panes it covers, so
a query need only count each record once, in its pane, instead of once per sliding
window that contains it (Spark expands a record into ``length / slide`` windows). The
query's writer upserts the panes a micro-batch changed and, in the same store write,
every sliding window that contains one of them, merged from the batch's panes and the
stored ones. Used by the host-metric windows (``processing.vmstat_windows``) and the
cases per city (``processing.case_reports``). Pure: tested without Spark.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from common.records import EPOCH
from storage.base import ResultRow

__all__ = ["PanedSliding", "StoreRange", "sliding_rows", "sliding_starts"]


#: Stored rows of a stream whose window starts in [start, end): (stream, start, end) -> rows.
StoreRange = Callable[[str, dt.datetime, dt.datetime], list[ResultRow]]
#: The values of a window made of some panes' values (oldest first).
Merge = Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]]


def sliding_starts(pane_start: dt.datetime, length: dt.timedelta, slide: dt.timedelta
                   ) -> list[dt.datetime]:
    """Starts of the sliding windows (``length`` every ``slide``, aligned to the epoch as
    Spark's) that contain the pane starting at ``pane_start``, oldest first."""
    start = pane_start - (pane_start - EPOCH) % slide  # the last one
    starts = []
    while start > pane_start - length:
        starts.append(start)
        start -= slide
    return starts[::-1]


def _steps(start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> Iterable[dt.datetime]:
    while start < end:
        yield start
        start += step


def sliding_rows(changed: Iterable[ResultRow], panes: Mapping[tuple[str, dt.datetime], ResultRow],
                 stream: str, merge: Merge, length: dt.timedelta, slide: dt.timedelta,
                 pane: dt.timedelta) -> list[ResultRow]:
    """Rows of ``stream``: the sliding windows that contain a changed pane, each merged from
    the ``panes`` it covers (by (key, start); a missing pane had no record)."""
    windows = sorted({(p.key, start) for p in changed
                      for start in sliding_starts(p.window_start, length, slide)})
    out = []
    for key, start in windows:
        found = [panes[(key, t)].values for t in _steps(start, start + length, pane)
                 if (key, t) in panes]
        out.append(ResultRow(stream, key, start, start + length, merge(found)))
    return out


class PanedSliding:
    """A batch's changed panes (rows of ``pane_stream``) -> the sliding windows of
    ``stream`` that contain them, with the other panes read by ``stored`` (None: the
    panes given hold every pane, as in a recomputation from the archive)."""

    def __init__(self, stream: str, pane_stream: str, merge: Merge, length: dt.timedelta,
                 slide: dt.timedelta, pane: dt.timedelta, stored: StoreRange | None = None) -> None:
        if slide % pane or length % pane:
            raise ValueError(f"the window ({length}) and slide ({slide}) of {stream} must be "
                             f"multiples of its panes ({pane})")
        self.stream, self.pane_stream, self.merge = stream, pane_stream, merge
        self.length, self.slide, self.pane = length, slide, pane
        self.stored = stored

    def __call__(self, changed: list[ResultRow]) -> list[ResultRow]:
        panes: dict[tuple[str, dt.datetime], ResultRow] = {}
        if self.stored is not None and changed:
            low = min(r.window_start for r in changed) - self.length
            high = max(r.window_start for r in changed) + self.length
            panes.update(((r.key, r.window_start), r)
                         for r in self.stored(self.pane_stream, low, high))
        panes.update(((r.key, r.window_start), r) for r in changed)  # the batch is newer
        return sliding_rows(changed, panes, self.stream, self.merge, self.length, self.slide,
                            self.pane)
