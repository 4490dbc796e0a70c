"""The producer loop every source shares.

A source only says how to get its next records: it implements
:meth:`Source.records`, a generator of :class:`~common.records.Record` (to
publish) and :class:`Rejected` (bad input, to dead-letter). Everything else is
here, once: publishing, dead letters, counting, the ``count`` bound, stopping,
flushing, and the periodic health report.

Lifecycle (after Quix Streams): :meth:`Source.run` loops until the records end,
``count`` items are done, or :meth:`Source.stop` flips the flag; then it
flushes the sink only if the loop succeeded. Time and sleeping are injected
(``clock``, ``sleep``), so tests never sleep.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from buffer import topics
from common.records import Record, format_time, utc_now

__all__ = ["Counters", "KafkaSink", "ListSink", "Pacer", "Rejected", "Sink", "Source"]

log = logging.getLogger(__name__)

Clock = Callable[[], Any]  # returns a timezone-aware datetime


@dataclass(frozen=True)
class Rejected:
    """Input a source could not turn into a record: the reason and the raw input."""

    reason: str
    raw: bytes | str


@dataclass
class Counters:
    """Items a source has handled. Invariant: ``seen == sent + rejected``."""

    sent: int = 0
    rejected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def seen(self) -> int:
        return self.sent + self.rejected

    def add(self, sent: int = 0, rejected: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.rejected += rejected

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"sent": self.sent, "rejected": self.rejected}


class Sink(Protocol):
    """Where a source's output goes: Kafka in production, a list in unit tests."""

    def publish(self, topic: str, key: str | None, record: Record) -> None: ...

    def dead_letter(self, source: str, reason: str, raw: bytes | str) -> None: ...

    def flush(self) -> None: ...


def dead_letter_value(source: str, reason: str, raw: bytes | str, now: Any) -> dict[str, Any]:
    """The dead-letter JSON: source, reason, and the raw input (text, or base64 if not UTF-8)."""
    value: dict[str, Any] = {"source": source, "reason": reason, "time": format_time(now)}
    if isinstance(raw, bytes):
        try:
            value["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            value["raw_base64"] = base64.b64encode(raw).decode("ascii")
    else:
        value["raw"] = raw
    return value


class KafkaSink:
    """Publishes records as JSON, stamping ``produced_at``; rejects go to ``dead-letters``."""

    def __init__(self, bootstrap: str, clock: Clock = utc_now, **producer_config: Any) -> None:
        from buffer.kafka import JsonPublisher

        self._publisher = JsonPublisher(bootstrap, **producer_config)
        self._clock = clock

    def publish(self, topic: str, key: str | None, record: Record) -> None:
        self._publisher.publish(topic, record.encode(produced_at=self._clock()), key=key)

    def dead_letter(self, source: str, reason: str, raw: bytes | str) -> None:
        self._publisher.publish(
            topics.DEAD_LETTERS.name, dead_letter_value(source, reason, raw, self._clock()),
            key=source,
        )

    def flush(self) -> None:
        self._publisher.flush()

    def close(self) -> None:
        self._publisher.close()


class ListSink:
    """Keeps everything in lists: for unit tests of sources, no broker needed."""

    def __init__(self) -> None:
        #: (topic, key, the record's JSON values) of each record published
        self.published: list[tuple[str, str | None, dict[str, Any]]] = []
        self.dead: list[tuple[str, str, bytes | str]] = []
        self.flushes = 0

    def publish(self, topic: str, key: str | None, record: Record) -> None:
        self.published.append((topic, key, record.to_json()))

    def dead_letter(self, source: str, reason: str, raw: bytes | str) -> None:
        self.dead.append((source, reason, raw))

    def flush(self) -> None:
        self.flushes += 1


class Pacer:
    """Spaces events ``interval`` seconds apart on a monotonic schedule (no drift).

    ``sleep`` and ``monotonic`` are injected; a test passes a fake pair and
    checks the sleeps requested instead of waiting.
    """

    def __init__(self, interval: float, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._sleep = sleep
        self._monotonic = monotonic
        self._next: float | None = None

    def wait(self) -> None:
        now = self._monotonic()
        if self._next is None:
            self._next = now
        delay = self._next - now
        if delay > 0:
            self._sleep(delay)
        elif delay < -10 * self.interval:
            self._next = now  # far behind (suspended laptop): restart the schedule, no burst
        self._next += self.interval


class Source(ABC):
    """A producer: subclasses implement :meth:`records`; :meth:`run` does the rest.

    Args:
        count: stop after this many items (records + rejects); None runs until done or stopped.
        clock: returns the current UTC time (injected for tests).
    """

    #: Name used in logs, dead letters and health reports.
    name: str = "source"
    #: The topic records go to.
    topic: topics.Topic

    def __init__(self, count: int | None = None, clock: Clock = utc_now) -> None:
        self.count = count
        self.clock = clock
        self.counters = Counters()
        self._stop = threading.Event()

    @abstractmethod
    def records(self) -> Iterator[Record | Rejected]:
        """Yield the source's next records and rejects, forever or until the input ends."""

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current item. Safe from any thread."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` unless stopped first; True if stopped. For live sources."""
        return self._stop.wait(seconds)

    def run(self, sink: Sink) -> Counters:
        """Publish until the records end, ``count`` is reached or :meth:`stop` is called."""
        failed = True
        try:
            for item in self.records():
                if isinstance(item, Rejected):
                    sink.dead_letter(self.name, item.reason, item.raw)
                    self.counters.add(rejected=1)
                    log.warning("%s: rejected input (%s): %.200r", self.name, item.reason, item.raw)
                else:
                    sink.publish(self.topic.name, item.key(), item)
                    self.counters.add(sent=1)
                if self._stop.is_set() or (self.count is not None and self.counters.seen >= self.count):
                    break
            failed = False
        finally:
            self.cleanup(sink, failed)
        return self.counters

    def cleanup(self, sink: Sink, failed: bool) -> None:
        """Flush what was published, unless the loop failed (then the error matters more)."""
        if not failed:
            sink.flush()
        log.info("%s: stopped; %s", self.name, self.counters.snapshot())
