"""The job context: what a job's ``start(spark, ctx)`` or ``run(spark, ctx)`` is given.

:class:`JobContext` holds the settings, the broker and the stores a job writes to, and
starts its queries: it reads a topic, builds the ``foreachBatch`` writer of a stream
(``processing.writer``) and starts each query (``processing.queries``), keeping how to
start it again for the query supervisor (``processing.supervisor``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from buffer import topics
from common import catalogue
from common.settings import Settings
from processing import queries
from processing.ledger import Ledger
from processing.panes import StoreRange
from processing.reading import parse_records, valid
from processing.supervisor import LaunchFn
from processing.windowing import WindowedStream, seconds
from processing.writer import ResultWriter, RowsFn

__all__ = ["FAST_TRIGGER_JOBS", "BatchFn", "JobContext", "StartFn"]

log = logging.getLogger(__name__)

#: Jobs triggered every TRIGGER_SECONDS; the others every OTHER_TRIGGER_SECONDS (a dozen
#: queries at 1 s on 2 cores made every batch wait 10 s for a task slot, measured in CI;
#: at 5 s the host-metrics batches took 6.6 s, at 10 s 0.75 s: docs/benchmark-history.md).
FAST_TRIGGER_JOBS: tuple[str, ...] = ("vmstat_windows",)

#: A streaming job's ``start``: starts its queries on the session, returns them.
StartFn = Callable[[SparkSession, "JobContext"], list[StreamingQuery]]
#: A batch job's ``run``: runs once, returns its exit code.
BatchFn = Callable[[SparkSession, "JobContext"], int]


@dataclass
class JobContext:
    """What a job needs to start its queries: settings, broker, stores, and how to read Kafka."""

    spark: SparkSession
    settings: Settings
    bootstrap: str | None  # None: batch jobs without a broker push nothing
    sink: str | None = None  # overrides the catalogue's stores
    starting_offsets: str = "earliest"
    available_now: bool = False
    #: This job's trigger interval; None: TRIGGER_SECONDS.
    trigger_seconds: float | None = None
    #: The fair scheduler pool its queries' batches run in (processing/fairscheduler.xml).
    pool: str = queries.LIVE_POOL
    #: Topic name per role, where it differs from queue/topics.toml (tests use unique topics).
    topic_names: dict[str, str] = field(default_factory=dict)
    ledger: Ledger = field(default_factory=Ledger)
    #: How to start each query again, by query name (shared by the contexts of all jobs).
    launchers: dict[str, LaunchFn] = field(default_factory=dict)
    _stores: dict[str, Any] = field(default_factory=dict)
    #: One lock per store kind, shared like ``_stores`` by every job's context: several
    #: queries' first batches open a store at the same time; one opens it, the others wait
    #: for it (a disk batch never waits for Cassandra's connection).
    _store_locks: dict[str, threading.Lock] = field(
        default_factory=lambda: {"disk": threading.Lock(), "cassandra": threading.Lock()})

    def read(self, role: str) -> DataFrame:
        """The Kafka records of the topic with this role in ``queue/topics.toml``."""
        return self.read_topics([role])

    def topic_name(self, role: str) -> str:
        """The Kafka name of the topic with this role (queue/topics.toml, or a test's override)."""
        return self.topic_names.get(role) or getattr(topics, role.upper()).name

    def read_topics(self, roles: list[str]) -> DataFrame:
        """One streaming DataFrame of the Kafka records of several topics."""
        from processing.spark import read_kafka

        if self.bootstrap is None:
            raise RuntimeError("reading Kafka needs KAFKA_BOOTSTRAP_SERVERS")
        return read_kafka(self.spark, self.settings, [self.topic_name(r) for r in roles],
                          self.bootstrap, starting_offsets=self.starting_offsets)

    def stores_for(self, stream: str) -> tuple[str, ...]:
        """The stores a stream is written to: ``--sink``, else those the catalogue's demos read.

        Cassandra is skipped, with a log line, when CASSANDRA_HOSTS is unset.
        """
        wanted = (self.sink,) if self.sink else catalogue.stores_for(stream)
        chosen = []
        for kind in wanted:
            if kind == "cassandra" and not self.settings.cassandra_configured():
                if self.sink == "cassandra":
                    raise SystemExit("--sink cassandra needs CASSANDRA_HOSTS")
                log.info("%s: not writing to Cassandra (CASSANDRA_HOSTS is unset)", stream)
                continue
            chosen.append(kind)
        return tuple(chosen)

    def open_store(self, kind: str, connect_timeout_s: float | None = None) -> Any:
        """The store of ``kind``, opened once per application (its schema created if missing).

        ``connect_timeout_s``: how long to retry connecting (None: CASSANDRA_CONNECT_TIMEOUT_S;
        0: one attempt, for a copy that must not hold up the disk's batch).

        Raises StoreError (StoreUnavailable while the server cannot be reached): the
        calling batch fails and its query is restarted with backoff.
        """
        with self._store_locks[kind]:
            if kind not in self._stores:
                from storage import open_store

                self._stores[kind] = open_store(kind, self.settings,
                                                connect_timeout_s=connect_timeout_s)
            return self._stores[kind]

    def writer(self, stream: str, store: str, to_rows: RowsFn,
               retain: bool = True, mirrors: tuple[str, ...] = ()) -> ResultWriter:
        """The foreachBatch writer of ``stream`` into ``store``, copied into ``mirrors`` (see
        :mod:`processing.mirror`); ``retain``: expire after RETENTION_HOURS."""
        from processing.mirror import Mirror

        ttl = dt.timedelta(hours=self.settings.retention_hours) if retain else None
        copies = [Mirror(kind, functools.partial(self.open_store, kind, 0),
                         self.settings.checkpoint_dir / f"{stream}-{store}.{kind}-behind.json")
                  for kind in mirrors]
        return ResultWriter(stream, to_rows, lambda: self.open_store(store),
                            self.bootstrap, ttl=ttl, ledger=self.ledger, mirrors=copies)

    def start(self, df: DataFrame, stream: str, store: str,
              writer: Callable[[DataFrame, int], None], output_mode: str = "update",
              trigger_seconds: float | None = None) -> StreamingQuery:
        """Start ``df`` into ``writer`` as query ``<stream>@<store>``, triggered every
        ``trigger_seconds`` (default: this job's interval)."""
        name = f"{stream}@{store}"
        every = self.trigger_seconds if trigger_seconds is None else trigger_seconds
        if isinstance(writer, ResultWriter):
            writer.query = name  # results messages say which query wrote them, for the ledger
        return self.launch(lambda: queries.start_query(
            df, name, writer, self.settings, output_mode=output_mode,
            available_now=self.available_now, checkpoint_name=f"{stream}-{store}",
            trigger_seconds=every,
        ))

    def launch(self, start: LaunchFn) -> StreamingQuery:
        """Start a query with ``start`` and keep ``start`` to restart it alone if it fails.

        ``start`` must start the same query again from its checkpoint (same name, same
        checkpoint location); a streaming DataFrame can be started more than once.
        """
        def in_pool() -> StreamingQuery:
            return queries.in_pool(self.spark, self.pool, start)

        query = in_pool()
        self.launchers[str(query.name)] = in_pool  # a restart runs in the same pool
        return query

    def for_job(self, module: str) -> JobContext:
        """This context with the trigger interval of job ``module`` (same stores and ledger)."""
        fast = module in FAST_TRIGGER_JOBS
        return dataclasses.replace(self, trigger_seconds=None if fast else
                                   self.settings.other_trigger_seconds,
                                   pool=queries.LIVE_POOL if fast else queries.OTHER_POOL)

    def start_windowed(self, specs: list[WindowedStream]) -> list[StreamingQuery]:
        """Start one update-mode query per windowed stream and store it is written to."""
        watermark = seconds(self.settings.watermark_seconds)
        started = []
        for spec in specs:
            if spec.derived:
                continue
            for store, mirrors in self.store_plan(spec.stream):
                records = parse_records(self.read(spec.topic), spec.record_type,
                                        observe_as=f"{spec.stream}_input")
                windows = spec.transform(valid(records), watermark)
                writer = self.writer(spec.stream, store, spec.to_rows, mirrors=mirrors)
                if spec.with_store is not None:
                    writer.to_rows = spec.with_store(_stored_rows(writer))
                started.append(self.start(windows, spec.stream, store, writer))
        return started

    def store_plan(self, stream: str) -> list[tuple[str, tuple[str, ...]]]:
        """(store, mirrors) per query of ``stream``: one query into the disk, copied into the
        other stores (processing.mirror: the windows are computed once); without the disk
        (``--sink cassandra``) one query per store."""
        stores = self.stores_for(stream)
        if stores and stores[0] == "disk":
            return [("disk", stores[1:])]
        return [(store, ()) for store in stores]

    def run_started(self, stream: str, store: str) -> dt.datetime:
        """When this query's checkpoint was first used: the start of its running totals.

        Running totals (no window) are stored as one "window" that opens when the
        query's state starts; a new checkpoint (e.g. after the embedded broker
        started empty) opens a new one instead of mixing with old totals.
        """
        from common.records import format_time, parse_time

        marker = self.settings.checkpoint_dir / f"{stream}-{store}.started"
        if marker.exists():
            return parse_time(marker.read_text().strip())
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(format_time(now) + "\n")
        return now

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()


def _stored_rows(writer: ResultWriter) -> StoreRange:
    return lambda stream, start, end: writer.store.range(stream, start, end)
