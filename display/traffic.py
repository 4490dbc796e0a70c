"""The live NGINX traffic graph: recent ``nginx_edges`` windows -> the Vizceral graph to show.

Plain Python, no Flask: the server feeds it rows (the store's history when a client connects,
then each pushed update) and sends :meth:`TrafficGraph.payload` as the ``graph`` event of
/demo9. Rows are kept per window, keyed like the store (key, window_start), so a re-sent or
updated row replaces the old one.

The graph shows the newest *complete* window: one that a newer window follows, or that has had
no update for ``quiet_s`` seconds (the traffic stopped, or a replayed log ended). Spark keeps
updating the newest window every micro-batch, so its counts are partial; until some window is
complete the graph shows the newest one and says so (``complete: false``). A region's
``maxVolume`` is the largest volume it had in the kept complete windows ("the maximum volume
seen recently", as Vizceral asks), so particle density shows traffic relative to recent peaks.

Time is injected (``clock``), so tests control it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.records import RecordError, parse_time
from common.vizceral import INTERNET, Edge, build_graph

__all__ = ["STREAM", "TrafficGraph"]

log = logging.getLogger(__name__)

STREAM = "nginx_edges"


@dataclass
class _Window:
    start: str  # ISO 8601, as in the rows (sorts like the times it names)
    end: str
    seconds: float
    rows: dict[str, Edge] = field(default_factory=dict)  # row key -> edge
    received_at: float = 0.0  # clock() when a row of it last arrived


class TrafficGraph:
    """Recent windows of ``nginx_edges`` rows and the graph of the newest complete one.

    Thread-safe: the feed thread adds rows while Socket.IO handlers read payloads.
    """

    def __init__(self, keep_windows: int = 30, quiet_s: float | None = None,
                 max_regions: int = 20, clock: Callable[[], float] = time.monotonic) -> None:
        """
        Args:
            keep_windows: windows kept (the newest by start time); older ones are dropped.
            quiet_s: a window with no new row for this long counts as complete; default twice
                the window's length.
            max_regions: at most this many hosts are drawn, the busiest; the payload counts
                the others (the Host header is the client's, so their number is not bounded).
            clock: monotonic seconds.
        """
        self.keep_windows = keep_windows
        self.quiet_s = quiet_s
        self.max_regions = max_regions
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}  # window_start -> window
        self.rejected = 0  # rows that were not valid nginx_edges rows

    def add(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Add or replace rows (as JSON: ``{"key", "window_start", "window_end", "values"}``).

        Returns how many were taken; malformed rows are counted in :attr:`rejected` and logged.
        """
        now = self._clock()
        taken = 0
        with self._lock:
            for row in rows:
                try:
                    start, end = str(row["window_start"]), str(row["window_end"])
                    seconds = (parse_time(end) - parse_time(start)).total_seconds()
                    if not seconds > 0:
                        raise ValueError(f"window_end {end} is not after window_start {start}")
                    edge = Edge.from_values(row["values"])
                except (KeyError, TypeError, ValueError, RecordError) as e:
                    self.rejected += 1
                    log.warning("skipping a malformed %s row: %s", STREAM, e)
                    continue
                window = self._windows.get(start)
                if window is None:
                    window = self._windows[start] = _Window(start, end, seconds)
                key = str(row.get("key") or f"{edge.host}|{edge.source}|{edge.target}")
                window.rows[key] = edge
                window.received_at = now
                taken += 1
            for start in sorted(self._windows)[:-self.keep_windows or None]:
                del self._windows[start]
        return taken

    def _complete(self, now: float) -> list[_Window]:
        ordered = [self._windows[s] for s in sorted(self._windows)]
        done = ordered[:-1]
        if ordered:
            last = ordered[-1]
            quiet = self.quiet_s if self.quiet_s is not None else 2 * last.seconds
            if now - last.received_at >= quiet:
                done.append(last)
        return done

    def payload(self) -> dict[str, Any] | None:
        """The ``graph`` event: the graph and the window it shows; None before any row."""
        with self._lock:
            if not self._windows:
                return None
            complete = self._complete(self._clock())
            shown = complete[-1] if complete else self._windows[max(self._windows)]
            hosts = _host_volumes(shown)
            drawn = sorted(hosts, key=lambda h: (-hosts[h], h))[:self.max_regions]
            peaks: dict[str, float] = {}
            for window in complete:
                for host, volume in _host_volumes(window).items():
                    peaks[host] = max(peaks.get(host, 0.0), volume)
            edges = [e for e in shown.rows.values() if e.host in drawn]
            graph = build_graph(edges, shown.seconds, updated_ms=_millis(shown.end),
                                max_volumes={h: peaks[h] for h in drawn if h in peaks})
            return {
                "stream": STREAM,
                "window_start": shown.start,
                "window_end": shown.end,
                "window_seconds": shown.seconds,
                "complete": bool(complete),
                "edges": len(edges),
                "hosts": len(hosts),
                "hidden_hosts": len(hosts) - len(drawn),
                "graph": graph,
            }


def _host_volumes(window: _Window) -> dict[str, float]:
    """Requests per second from INTERNET, per host, in one window."""
    volumes: dict[str, float] = {}
    for edge in window.rows.values():
        volumes.setdefault(edge.host, 0.0)
        if edge.source == INTERNET:
            volumes[edge.host] += edge.requests / window.seconds
    return volumes


def _millis(iso: str) -> int:
    return int(parse_time(iso).timestamp() * 1000)
