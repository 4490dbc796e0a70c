"""The display server's live state: recent raw records, rates, last updates, job health.

Plain Python, no Flask, no Kafka: the feed calls ``on_*`` methods, the Socket.IO
handlers and pages read snapshots. Every method is thread-safe. Time is
injected (``clock``), so tests control it.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common import catalogue, messages
from display.health import StageLatency, accounting_rows, raw_stages, result_stages

__all__ = ["Hub", "RateMeter"]


class RateMeter:
    """Events per second over a sliding window of ``span`` seconds."""

    def __init__(self, span: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.span = span
        self._clock = clock
        self._events: collections.deque[tuple[float, int]] = collections.deque()
        self.total = 0

    def add(self, n: int = 1) -> None:
        now = self._clock()
        self._events.append((now, n))
        self.total += n
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.span:
            self._events.popleft()

    def rate(self) -> float:
        now = self._clock()
        self._trim(now)
        return sum(n for _, n in self._events) / self.span


@dataclass
class DemoState:
    demo: catalogue.Demo
    rate: RateMeter
    latency: StageLatency
    last_update: float | None = None  # wall clock, seconds since the epoch
    recent: collections.deque[dict[str, Any]] = field(default_factory=lambda: collections.deque(maxlen=300))


class Hub:
    """Recent data and health of every demo, fed by the Kafka feed."""

    def __init__(self, wall_clock: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic, history_size: int = 300) -> None:
        self._lock = threading.Lock()
        self._wall = wall_clock
        self._demos = {
            d.number: DemoState(d, RateMeter(clock=clock), StageLatency(clock=clock),
                                recent=collections.deque(maxlen=history_size))
            for d in catalogue.DEMOS
        }
        #: (stream, store) -> {query, batch id -> records stored as of that batch}
        self._stored: dict[tuple[str, str], dict[str, Any]] = {}
        self._queries: dict[str, dict[str, Any]] = {}
        #: per query: how often it stopped with an error (the application restarts it)
        self.query_failures: collections.Counter[str] = collections.Counter()
        self._sources: dict[str, dict[str, Any]] = {}
        self._source_seen: dict[str, float] = {}  # source -> wall clock of its last report
        #: every source's recent reports, oldest first (accounting matches them to batches)
        self._source_reports: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self.clients: collections.Counter[str] = collections.Counter()
        self.dead_letters = RateMeter(span=60.0, clock=clock)
        self.malformed = 0  # messages on followed topics that were not JSON objects
        self.feed_error: str | None = None
        #: the stack's stages (name, state, restarts), from its latest ``stack_stages`` report
        self._stages: list[dict[str, Any]] = []
        #: the topics the Kafka feed follows now (set by the feed)
        self.following: list[str] = []

    # -- feed side

    def on_raw(self, topic: str, values: list[dict[str, Any]],
               pushed_at: str | None = None) -> list[catalogue.Demo]:
        """Raw records of ``topic`` arrived; returns the demos that show them."""
        shown = []
        with self._lock:
            for state in self._demos.values():
                if state.demo.raw_topic == topic:
                    state.recent.extend(values)
                    state.rate.add(len(values))
                    state.last_update = self._wall()
                    if values and pushed_at is not None:
                        state.latency.add(raw_stages(values[-1], pushed_at))
                    shown.append(state.demo)
        return shown

    def on_results(self, result: messages.ResultsBatch, pushed_at: str | None = None
                   ) -> list[catalogue.Demo]:
        """A job pushed rows of a stream from a store; returns the demos that show them."""
        shown = []
        stream, store = result.stream, result.store
        with self._lock:
            if result.stored_records is not None:
                entry = self._stored.setdefault((stream, store),
                                                {"query": result.query, "batches": {}})
                batches = entry["batches"]
                if result.batch_id is not None:
                    batches[result.batch_id] = result.stored_records
                    for old in sorted(batches)[:-50]:  # the last 50 batches are plenty
                        del batches[old]
            stages = result_stages(result.timing, pushed_at) if pushed_at else {}
            for state in self._demos.values():
                if stream in state.demo.streams and state.demo.store == store:
                    state.rate.add(len(result.rows))
                    state.last_update = self._wall()
                    state.latency.add(stages)
                    shown.append(state.demo)
        return shown

    def on_health(self, message: messages.HealthMessage) -> None:
        """Keep the latest report of each query, source and stage, as the JSON the index,
        /api and /metrics show."""
        with self._lock:
            if isinstance(message, messages.QueryProgress):
                self._queries[message.query] = messages.to_json(message)
            elif isinstance(message, messages.QueryTerminated):
                self.query_failures[message.query] += 1 if message.error else 0
            elif isinstance(message, messages.StackStages):
                self._stages = [messages.to_json(s) for s in message.stages]
            elif isinstance(message, messages.SourceProgress):
                report = messages.to_json(message)
                self._sources[message.source] = report
                self._source_seen[message.source] = self._wall()
                self._source_reports.append(report)

    def on_dead_letter(self, n: int = 1) -> None:
        with self._lock:
            self.dead_letters.add(n)

    def on_malformed(self) -> None:
        with self._lock:
            self.malformed += 1

    # -- reader side

    def recent(self, number: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._demos[number].recent)

    def watched_raw_topics(self) -> set[str]:
        """The raw topics shown by a page that is open now (the feed follows only those)."""
        with self._lock:
            return self._watched()

    def _watched(self) -> set[str]:
        return {s.demo.raw_topic for s in self._demos.values()
                if s.demo.raw_topic and self.clients[s.demo.namespace] > 0}

    def on_unfollowed(self, topic: str) -> None:
        """The feed stopped following ``topic``: its recent records would be stale history."""
        with self._lock:
            for state in self._demos.values():
                if state.demo.raw_topic == topic:
                    state.recent.clear()

    def _source_rate(self, topic: str) -> tuple[float, float | None]:
        """(records/s, wall clock of the newest report) of the sources writing ``topic``,
        from their reports of the last 30 s."""
        rate, newest = 0.0, None
        for name, report in self._sources.items():
            seen = self._source_seen.get(name)
            if seen is None or self._wall() - seen >= 30 \
                    or topic not in str(report.get("topic") or "").split(","):
                continue
            source_rate = float(report.get("rate") or 0)
            rate += source_rate
            if source_rate > 0:
                newest = seen if newest is None else max(newest, seen)
        return rate, newest

    def client_joined(self, namespace: str) -> None:
        with self._lock:
            self.clients[namespace] += 1

    def client_left(self, namespace: str) -> None:
        with self._lock:
            self.clients[namespace] = max(0, self.clients[namespace] - 1)

    def status(self, available: Callable[[catalogue.Demo], str | None],
               waiting: Callable[[catalogue.Demo], str | None] | None = None) -> dict[str, Any]:
        """A snapshot for the index page and /api/demos: per demo and per query."""
        with self._lock:
            demos = []
            watched = self._watched()
            for number, state in sorted(self._demos.items()):
                d = state.demo
                reason = available(d)
                rate, last_update = round(state.rate.rate(), 2), state.last_update
                followed = d.raw_topic is None or d.raw_topic in watched
                if d.raw_topic is not None and not followed:
                    # No page of it is open, so the feed does not follow its topic: the
                    # sources' own reports say whether records flow.
                    source_rate, last_update = self._source_rate(d.raw_topic)
                    rate = round(source_rate, 2)
                demos.append({
                    "number": number,
                    "route": d.route,
                    "title": d.title,
                    "shows": d.shows,
                    "path": d.path_text,
                    "store": d.store,
                    "available": reason is None,
                    "unavailable_reason": reason,
                    "waiting_reason": waiting(d) if waiting is not None else None,
                    "live": reason is None and last_update is not None
                    and self._wall() - last_update < 30,
                    "last_update": last_update,
                    "rate": rate,
                    "followed": followed,
                    "clients": self.clients[d.namespace],
                    "latency": state.latency.summary(),
                })
            return {
                "time": self._wall(),
                "demos": demos,
                "queries": dict(self._queries),
                "query_failures": dict(self.query_failures),
                "sources": dict(self._sources),
                "accounting": accounting_rows(self._source_reports, self._queries,
                                              self._stored),
                "dead_letters_per_min": round(self.dead_letters.rate() * 60, 1),
                "dead_letters_total": self.dead_letters.total,
                "malformed_seen": self.malformed,
                "clients": sum(self.clients.values()),
                "feed_error": self.feed_error,
                "following": list(self.following),
                "stages": [dict(s) for s in self._stages],
            }
