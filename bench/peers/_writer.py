"""What the peer jobs share: the kit's row values, its store and results topic, its health.

Each peer (``quix_windows.py``, ``pathway_windows.py``) computes, per host and window,
``count`` and, per metric, the sum, minimum, maximum and number of non-null samples, and
the newest ``produced_at`` and broker time of its input (milliseconds). :class:`PeerWriter`
turns those into the rows ``bench/baseline.py`` and the Spark job write
(``count``, ``<metric>_avg/_min/_max/_n``), upserts them through the kit's own
``processing.writer.ResultWriter`` (one store transaction and one ``results`` message
per stream and flush, so /demo7 shows them and the benchmarks measure them the same way)
and publishes a ``query_progress`` message per flush on ``health`` (query
``vmstat_windows@<engine>``) with the totals the throughput benchmark reads.

This module uses nothing of either peer library: it runs in the kit's environment too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from buffer import kafka, topics
from common import settings as settings_module
from common.messages import QueryProgress
from common.records import EPOCH, VmstatSample, format_time, utc_now
from storage.base import ResultRow

log = logging.getLogger(__name__)

METRICS = VmstatSample.METRICS
TUMBLING = "vmstat_tumbling"
SLIDING = "vmstat_sliding"
def from_ms(ms: int | float) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=ms)


def kit_values(count: int, sums: Mapping[str, float], mins: Mapping[str, float | None],
               maxs: Mapping[str, float | None], ns: Mapping[str, int]) -> dict[str, Any]:
    """The values of one window as the kit stores them (``bench/baseline.merged_values``).

    A minimum or maximum that is None, NaN or infinite (a peer's stand-in for "no sample
    had this metric") becomes None, as does the average of a metric no sample had.
    """
    def real(v: float | None) -> float | None:
        return None if v is None or math.isnan(v) or math.isinf(v) else float(v)

    values: dict[str, Any] = {"count": int(count)}
    for m in METRICS:
        n = int(ns.get(m) or 0)
        values[f"{m}_avg"] = sums[m] / n if n else None
        values[f"{m}_min"] = real(mins.get(m)) if n else None
        values[f"{m}_max"] = real(maxs.get(m)) if n else None
        values[f"{m}_n"] = n
    return values


@dataclass
class Window:
    """One window's latest result: its stream, host, bounds (ms), values and input times (ms)."""

    stream: str
    host: str
    start_ms: int
    end_ms: int
    values: dict[str, Any]
    produced_ms: float = 0.0
    broker_ms: float = 0.0


@dataclass
class Totals:
    input_rows: int = 0
    late_rows: int = 0
    malformed: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class PeerWriter:
    """Writes a flush's windows through ResultWriter and reports progress on ``health``."""

    def __init__(self, settings: settings_module.Settings, engine: str) -> None:
        from processing.writer import ResultWriter

        assert settings.kafka_bootstrap_servers
        self.settings = settings
        self.engine = engine
        self.query = f"vmstat_windows@{engine}"
        self._store: Any = None
        self.writer = ResultWriter(
            TUMBLING, lambda rows: [], self._open_store, settings.kafka_bootstrap_servers,
            ttl=dt.timedelta(hours=settings.retention_hours))
        self.health = kafka.JsonPublisher(settings.kafka_bootstrap_servers)
        self.batch_id = 0
        self.rows_written = 0
        self._last_log = 0.0

    def _open_store(self) -> Any:
        if self._store is None:
            from storage import open_store

            self._store = open_store("disk", self.settings)
        return self._store

    def write(self, windows: Iterable[Window], totals: Totals, input_rows: int,
              started: float | None = None) -> None:
        """Upsert ``windows`` (the latest value of each), push them, publish progress.

        ``input_rows``: records this flush consumed; ``totals``: since the start.
        """
        started = started or time.time()
        rows: list[ResultRow] = []
        newest_produced = newest_broker = 0.0
        for w in windows:
            rows.append(ResultRow(w.stream, w.host, from_ms(w.start_ms), from_ms(w.end_ms),
                                  w.values))
            newest_produced = max(newest_produced, w.produced_ms)
            newest_broker = max(newest_broker, w.broker_ms)
        timing = {}
        if newest_produced:
            timing["produced_at"] = format_time(from_ms(newest_produced))
        if newest_broker:
            timing["broker_at"] = format_time(from_ms(newest_broker))
        rows.sort(key=lambda r: (r.stream != TUMBLING, r.window_start, r.key))
        self.writer.write(rows, self.batch_id, started, timing)
        self.rows_written += len(rows)
        elapsed = max(time.time() - started, 1e-6)
        self.health.publish(topics.HEALTH.name, QueryProgress(
            component=self.engine, app=self.engine, query=self.query, batch_id=self.batch_id,
            time=format_time(utc_now()), input_rows=input_rows,
            processed_rate=round(input_rows / elapsed, 2), batch_ms=round(elapsed * 1000),
            state_rows=len(rows),
            totals={"input_rows": totals.input_rows, "late_rows": totals.late_rows,
                    "malformed": totals.malformed, **totals.extra}), key=self.engine)
        self.health.flush()
        self.batch_id += 1
        if time.monotonic() - self._last_log > 10:
            self._last_log = time.monotonic()
            log.info("flush %d: %d rows; totals %s", self.batch_id, len(rows), totals)

    def close(self) -> None:
        self.health.close()
        if self.writer._publisher is not None:
            self.writer._publisher.close()
        if self._store is not None:
            self._store.close()


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """The baseline's settings, plus the topic and the consumer group of the peer."""
    parser = settings_module.argument_parser(doc, only=[
        "kafka_bootstrap_servers", "data_dir", "log_level", "trigger_seconds",
        "watermark_seconds", "window_seconds", "sliding_window_seconds", "slide_seconds",
        "retention_hours"])
    parser.add_argument("--topic", default=topics.VMSTAT.name,
                        help=f"the input topic (default {topics.VMSTAT.name})")
    parser.add_argument("--group", help="the consumer group (default: the engine's own)")
    parser.add_argument("--no-sliding", dest="sliding", action="store_false",
                        help="tumbling windows only")
    return parser


def parse_settings(parser: argparse.ArgumentParser, argv: list[str] | None
                   ) -> tuple[settings_module.Settings, argparse.Namespace]:
    from common.logs import setup_logging

    args = parser.parse_args(argv)
    settings = settings_module.from_args(args)
    setup_logging(settings.log_level)
    if not settings.kafka_bootstrap_servers:
        parser.error("KAFKA_BOOTSTRAP_SERVERS (or --kafka-bootstrap-servers) is required")
    return settings, args
