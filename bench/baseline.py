"""Baseline: the host-metrics windows of ``processing/vmstat_windows.py`` in one plain Python process.

No Spark: a confluent-kafka consumer reads the ``vmstat`` topic from its start and,
once per trigger (TRIGGER_SECONDS, as the Spark job), takes what has arrived (at
most MAX_OFFSETS_PER_TRIGGER records), aggregates it and writes the changed windows:

* the same windows: WINDOW_SECONDS tumbling (``vmstat_tumbling``) and
  SLIDING_WINDOW_SECONDS every SLIDE_SECONDS (``vmstat_sliding``), per host;
* the same values: ``count`` and ``<metric>_avg/_min/_max`` of every metric
  (nulls ignored, as Spark's aggregates do);
* the same watermark: WATERMARK_SECONDS behind the newest event time of earlier
  batches; older records are dropped and counted as late; windows behind it are
  forgotten;
* the same store contract and results: ``processing.writer.ResultWriter`` upserts
  each batch's changed rows in one store transaction and pushes them to ``results``
  (so the display server shows them on /demo7), with the same ``timing``;
* health: a ``query_progress`` message per batch (query ``vmstat_windows@baseline``)
  with the totals the benchmarks read.

It keeps per-host aggregates of WINDOW_SECONDS/SLIDE_SECONDS panes and merges panes
into windows when writing, which is what a careful hand-written consumer does.
It keeps no checkpoint: it is a yardstick, not a fault-tolerant job.

Run (the benchmarks start it; alone, against a broker with the kit's topics)::

    .venv/bin/python bench/baseline.py --kafka-bootstrap-servers 127.0.0.1:9092 --data-dir /tmp/b

It logs a line every 10 s and runs until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from buffer import kafka, topics
from common import settings as settings_module
from common.messages import QueryProgress
from common.records import VmstatSample, format_time, from_micros, micros_of, utc_now
from storage.base import ResultRow

log = logging.getLogger("baseline")

METRICS = VmstatSample.METRICS
QUERY = "vmstat_windows@baseline"
_ISO_WITH_ZONE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})")
US = 1_000_000


def _micros(text: str) -> int:
    return micros_of(dt.datetime.fromisoformat(text))


_time = from_micros


class Pane:
    """Aggregates of one host over one pane: count, and per metric n/sum/min/max."""

    __slots__ = ("count", "n", "sums", "mins", "maxs", "produced_us", "kafka_us")

    def __init__(self) -> None:
        k = len(METRICS)
        self.count = 0
        self.n = [0] * k
        self.sums = [0.0] * k
        self.mins: list[float | None] = [None] * k
        self.maxs: list[float | None] = [None] * k
        self.produced_us = 0
        self.kafka_us = 0

    def add(self, values: Sequence[float | None]) -> None:
        self.count += 1
        n, sums, mins, maxs = self.n, self.sums, self.mins, self.maxs
        for i, v in enumerate(values):
            if v is None:
                continue
            n[i] += 1
            sums[i] += v
            low, high = mins[i], maxs[i]
            if low is None or v < low:
                mins[i] = v
            if high is None or v > high:
                maxs[i] = v


def merged_values(panes: Sequence[Pane]) -> dict[str, Any]:
    """The row values of a window made of ``panes``: count, then avg/min/max/n per metric."""
    values: dict[str, Any] = {"count": sum(p.count for p in panes)}
    for i, metric in enumerate(METRICS):
        n = sum(p.n[i] for p in panes)
        lows = [p.mins[i] for p in panes if p.mins[i] is not None]
        highs = [p.maxs[i] for p in panes if p.maxs[i] is not None]
        values[f"{metric}_avg"] = sum(p.sums[i] for p in panes) / n if n else None
        values[f"{metric}_min"] = min(lows) if lows else None  # type: ignore[type-var]
        values[f"{metric}_max"] = max(highs) if highs else None  # type: ignore[type-var]
        values[f"{metric}_n"] = n
    return values


class Windows:
    """Tumbling and sliding windows per host, from panes of gcd(window, slide) seconds."""

    def __init__(self, window_s: int, sliding_s: int, slide_s: int, watermark_s: float) -> None:
        self.window_us = window_s * US
        self.sliding_us = sliding_s * US
        self.slide_us = slide_s * US
        self.pane_us = math.gcd(window_s, sliding_s, slide_s) * US
        self.delay_us = int(watermark_s * US)
        self.panes: dict[tuple[int, str], Pane] = {}
        self.max_event_us: int | None = None
        self.watermark_us = 0  # as Spark: moves at the end of each batch

    def add(self, event_us: int, host: str, values: Sequence[float | None], produced_us: int,
            kafka_us: int, changed: set[tuple[int, str]]) -> bool:
        """Add a record; False if it is late (behind the watermark) and dropped."""
        if event_us < self.watermark_us:
            return False
        start = event_us - event_us % self.pane_us
        key = (start, host)
        pane = self.panes.get(key)
        if pane is None:
            pane = self.panes[key] = Pane()
        pane.add(values)
        if produced_us > pane.produced_us:
            pane.produced_us = produced_us
        if kafka_us > pane.kafka_us:
            pane.kafka_us = kafka_us
        changed.add(key)
        if self.max_event_us is None or event_us > self.max_event_us:
            self.max_event_us = event_us
        return True

    def _panes(self, start: int, length: int, host: str) -> list[Pane]:
        found = (self.panes.get((s, host)) for s in range(start, start + length, self.pane_us))
        return [p for p in found if p is not None]

    def rows(self, changed: set[tuple[int, str]]) -> list[ResultRow]:
        """Result rows of every window that contains a changed pane (update mode)."""
        tumbling: set[tuple[int, str]] = set()
        sliding: set[tuple[int, str]] = set()
        for start, host in changed:
            tumbling.add((start - start % self.window_us, host))
            last = start - start % self.slide_us
            for s in range(last, start - self.sliding_us, -self.slide_us):
                sliding.add((s, host))
        out = []
        for stream, length, windows in (("vmstat_tumbling", self.window_us, tumbling),
                                        ("vmstat_sliding", self.sliding_us, sliding)):
            for start, host in sorted(windows):
                panes = self._panes(start, length, host)
                out.append(ResultRow(stream, host, _time(start), _time(start + length),
                                     merged_values(panes)))
        return out

    def end_batch(self) -> None:
        """Advance the watermark and forget panes no window can use any more."""
        if self.max_event_us is not None:
            self.watermark_us = max(self.watermark_us, self.max_event_us - self.delay_us)
        horizon = self.watermark_us - max(self.window_us, self.sliding_us)
        for key in [k for k in self.panes if k[0] < horizon]:
            del self.panes[key]


def parse(raw: bytes | None) -> tuple[int, str, list[float | None], int] | None:
    """(event time us, host, metric values, produced us) of a record, or None if malformed."""
    try:
        value = json.loads(raw or b"")
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    event_time, host = value.get("event_time"), value.get("host")
    if not isinstance(event_time, str) or not isinstance(host, str) \
            or not _ISO_WITH_ZONE.fullmatch(event_time):
        return None
    metrics: list[float | None] = []
    for name in METRICS:
        v = value.get(name)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return None
            v = float(v)
        metrics.append(v)
    produced = value.get("produced_at")
    produced_us = 0
    if isinstance(produced, str):
        try:
            produced_us = _micros(produced)
        except ValueError:
            produced_us = 0
    try:
        return _micros(event_time), host, metrics, produced_us
    except ValueError:
        return None


class Baseline:
    """The consumer loop: one batch per trigger, written through the kit's ResultWriter."""

    def __init__(self, settings: settings_module.Settings) -> None:
        from processing.writer import ResultWriter

        assert settings.kafka_bootstrap_servers
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap_servers
        self.windows = Windows(settings.window_seconds, settings.sliding_window_seconds,
                               settings.slide_seconds, settings.watermark_seconds)
        self._store: Any = None
        self.writer = ResultWriter("vmstat_tumbling", lambda rows: [],
                                            self._open_store, self.bootstrap,
                                            ttl=dt.timedelta(hours=settings.retention_hours))
        self.health = kafka.JsonPublisher(self.bootstrap)
        self.max_rows = settings.max_offsets_per_trigger or 1_000_000_000
        self.totals = {"input_rows": 0, "late_rows": 0, "malformed": 0}
        self.stop = threading.Event()

    def _open_store(self) -> Any:
        if self._store is None:
            from storage import open_store

            self._store = open_store("disk", self.settings)
        return self._store

    def run(self) -> None:
        consumer = kafka.follower(self.bootstrap, 100)  # paced: see buffer.kafka.follower
        vmstat = topics.VMSTAT.name
        consumer.assign(kafka.positions(consumer, [vmstat], at="start")[vmstat])
        trigger = self.settings.trigger_seconds
        batch_id = 0
        next_tick = time.monotonic()
        last_log = 0.0
        try:
            while not self.stop.is_set():
                wait = next_tick - time.monotonic()
                if wait > 0 and self.stop.wait(wait):
                    break
                next_tick = max(next_tick + trigger, time.monotonic()) if trigger else 0
                started = time.time()
                messages: list[Any] = []
                while len(messages) < self.max_rows:
                    got = consumer.consume(min(100_000, self.max_rows - len(messages)), 0)
                    if not got:
                        break
                    messages.extend(got)
                if not messages:
                    continue
                self.batch(messages, batch_id, started)
                batch_id += 1
                if time.monotonic() - last_log > 10:
                    last_log = time.monotonic()
                    log.info("batch %d: %d rows in %.0f ms; totals %s", batch_id,
                             len(messages), (time.time() - started) * 1000, self.totals)
        finally:
            consumer.close()
            self.health.close()
            if self.writer._publisher is not None:
                self.writer._publisher.close()
            if self._store is not None:
                self._store.close()

    def batch(self, messages: list[Any], batch_id: int, started: float) -> None:
        changed: set[tuple[int, str]] = set()
        rows = late = malformed = 0
        newest_produced = newest_kafka = 0
        add = self.windows.add
        for msg in messages:
            if msg.error() is not None:
                continue
            rows += 1
            parsed = parse(msg.value())
            if parsed is None:
                malformed += 1
                continue
            event_us, host, values, produced_us = parsed
            kafka_us = msg.timestamp()[1] * 1000
            if not add(event_us, host, values, produced_us, kafka_us, changed):
                late += 1
                continue
            newest_produced = max(newest_produced, produced_us)
            newest_kafka = max(newest_kafka, kafka_us)
        result = self.windows.rows(changed)
        timing = {}
        if newest_produced:
            timing["produced_at"] = format_time(_time(newest_produced))
        if newest_kafka:
            timing["broker_at"] = format_time(_time(newest_kafka))
        self.writer.write(result, batch_id, started, timing)
        self.windows.end_batch()
        for name, n in (("input_rows", rows), ("late_rows", late), ("malformed", malformed)):
            self.totals[name] += n
        elapsed = max(time.time() - started, 1e-6)
        self.health.publish(topics.HEALTH.name, QueryProgress(
            component="baseline", app="baseline", query=QUERY, batch_id=batch_id,
            time=format_time(utc_now()), input_rows=rows, processed_rate=round(rows / elapsed, 2),
            batch_ms=round(elapsed * 1000), late_rows=late, malformed=malformed,
            state_rows=len(self.windows.panes), totals=dict(self.totals)), key="baseline")
        self.health.flush()


def main(argv: list[str] | None = None) -> int:
    from common.logs import setup_logging

    parser = settings_module.argument_parser(__doc__ or "", only=[
        "kafka_bootstrap_servers", "data_dir", "log_level", "trigger_seconds",
        "watermark_seconds", "window_seconds", "sliding_window_seconds", "slide_seconds",
        "max_offsets_per_trigger", "retention_hours"])
    settings = settings_module.from_args(parser.parse_args(argv))
    setup_logging(settings.log_level)
    if not settings.kafka_bootstrap_servers:
        parser.error("KAFKA_BOOTSTRAP_SERVERS (or --kafka-bootstrap-servers) is required")
    baseline = Baseline(settings)
    signal.signal(signal.SIGTERM, lambda *_: baseline.stop.set())
    signal.signal(signal.SIGINT, lambda *_: baseline.stop.set())
    log.info("baseline consumer on %s, trigger %g s", settings.kafka_bootstrap_servers,
             settings.trigger_seconds)
    baseline.run()
    log.info("stopped; totals %s", baseline.totals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
