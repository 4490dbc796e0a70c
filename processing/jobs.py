"""Running jobs: the context a job's ``start()`` gets, and the ``__main__`` every job shares.

A streaming job module exposes ``start(spark, ctx) -> list[StreamingQuery]``
and ends with ``sys.exit(run_job(__doc__, start))``, so that

* ``spark-submit processing/<job>.py`` runs that job alone,
* ``spark-submit processing/jobs.py`` runs them all in one application (the compose stack), and
* ``python -m processing`` does the same from the kit's virtual environment (the embedded stack).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import functools
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from buffer import topics
from common import catalogue
from common.settings import Settings, argument_parser
from common.waiting import DeadlineExceeded, eventually
from processing.ledger import Ledger
from processing.panes import StoreRange
from processing.queries import start_query, wait_for_first_batch
from processing.reading import parse_records, valid
from processing.stopping import quiet_interrupted_batches, quiet_spark_stop
from processing.windowing import WindowedStream, seconds
from processing.writer import ResultWriter, RowsFn

__all__ = ["BATCH_JOBS", "STREAMING_JOBS", "JobContext", "QuerySupervisor", "run_batch_job",
           "run_job", "run_jobs"]

log = logging.getLogger(__name__)

#: The streaming jobs ``python -m processing`` starts, by module name in ``processing``.
STREAMING_JOBS: tuple[str, ...] = (
    "vmstat_windows", "random_stats", "nginx_traffic", "case_reports", "archive")
#: Jobs triggered every TRIGGER_SECONDS; the others every OTHER_TRIGGER_SECONDS (a dozen
#: queries at 1 s on 2 cores made every batch wait 10 s for a task slot, measured in CI;
#: at 5 s the host-metrics batches took 6.6 s, at 10 s 0.75 s: docs/benchmark-history.md).
FAST_TRIGGER_JOBS: tuple[str, ...] = ("vmstat_windows",)
#: Batch jobs ``python -m processing`` runs once after the streaming queries started.
BATCH_JOBS: tuple[str, ...] = ("census_stats",)

BatchFn = Callable[[SparkSession, "JobContext"], int]

#: A failed query is restarted from its checkpoint (with backoff) up to this many times
#: within RESTART_WINDOW_S; one more failure ends the application with exit code 1.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 600.0
#: How long stopping waits for the queries' running micro-batches to end (QuerySupervisor.stop_all);
#: the stack gives ``python -m processing`` 15 s to stop in all.
STOP_BETWEEN_BATCHES_S = 5.0
#: Failures that say the machine is overloaded, not that the query is broken: Spark gives a
#: new Python process a fixed 10 s to connect back (``PythonWorkerFactory``). They are
#: retried with the same backoff but never end the application.
TRANSIENT_FAILURES = ("Python worker failed to connect back",)
#: Failures that say a store is unreachable (storage.base.StoreUnavailable: Cassandra still
#: starting, restarting or cut off). The query is restarted with backoff for as long as the
#: outage lasts and never ends the application: the other stores' queries keep running.
OUTAGE_FAILURES = ("StoreUnavailable",)


StartFn = Callable[[SparkSession, "JobContext"], list[StreamingQuery]]
#: Starts one query again (from its checkpoint); see :meth:`JobContext.launch`.
LaunchFn = Callable[[], StreamingQuery]


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
        return self.launch(lambda: start_query(
            df, name, writer, self.settings, output_mode=output_mode,
            available_now=self.available_now, checkpoint_name=f"{stream}-{store}",
            trigger_seconds=every,
        ))

    def launch(self, start: LaunchFn) -> StreamingQuery:
        """Start a query with ``start`` and keep ``start`` to restart it alone if it fails.

        ``start`` must start the same query again from its checkpoint (same name, same
        checkpoint location); a streaming DataFrame can be started more than once.
        """
        query = start()
        self.launchers[str(query.name)] = start
        return query

    def for_job(self, module: str) -> JobContext:
        """This context with the trigger interval of job ``module`` (same stores and ledger)."""
        fast = module in FAST_TRIGGER_JOBS
        return dataclasses.replace(self, trigger_seconds=None if fast else
                                   self.settings.other_trigger_seconds)

    def start_windowed(self, specs: list[WindowedStream]) -> list[StreamingQuery]:
        """Start one update-mode query per windowed stream and store it is written to."""
        watermark = seconds(self.settings.watermark_seconds)
        queries = []
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
                queries.append(self.start(windows, spec.stream, store, writer))
        return queries

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


class QuerySupervisor:
    """Keeps queries running: a failed query is restarted alone, from its checkpoint.

    Restarting one query does not touch the others: on 2 cores every restart is a
    new Python reader process that has only 10 s to connect back to a busy JVM
    (see :func:`processing.queries.wait_until_initialised`), so restarting a whole
    job for one failure turned one failure into a cascade (seen in CI). A query is
    restarted after a backoff (1, 2, 4 ... 30 s); its MAX_RESTARTS-th restart within
    RESTART_WINDOW_S is refused and :meth:`check` returns False (give up). A failure
    in :data:`TRANSIENT_FAILURES` (the machine too busy for a new Python process to
    connect back in 10 s; seen at load average 9-10 on 2 cores) or in
    :data:`OUTAGE_FAILURES` (a store out of reach) is restarted with the same backoff but
    never counts toward giving up: ending the application would stop every other query
    for a failure that goes away with the load or the outage.
    """

    def __init__(self, launchers: dict[str, LaunchFn], max_restarts: int = MAX_RESTARTS,
                 window_s: float = RESTART_WINDOW_S, max_backoff_s: float = 30.0) -> None:
        self.queries: dict[str, StreamingQuery] = {}
        self.restarts: dict[str, list[float]] = {}  # query name -> when it was restarted
        #: query name -> failures in TRANSIENT_FAILURES (restarted, never a reason to give up)
        self.transient: collections.Counter[str] = collections.Counter()
        self._transient_restarts: dict[str, list[float]] = {}  # for their backoff only
        self._launchers = launchers
        self._max_restarts = max_restarts
        self._window_s = window_s
        self._max_backoff_s = max_backoff_s
        #: query name -> (when its restart is due, whether it follows a transient failure)
        self._due: dict[str, tuple[float, bool]] = {}

    def watch(self, queries: list[StreamingQuery]) -> None:
        for q in queries:
            self.queries[str(q.name)] = q

    @property
    def names(self) -> list[str]:
        return list(self.queries)

    def any_active(self) -> bool:
        return any(q.isActive for q in self.queries.values()) or bool(self._due)

    def check(self) -> bool:
        """Restart the failed queries whose backoff is over; False: give up (too many failures)."""
        now = time.monotonic()
        for name, query in list(self.queries.items()):
            if query.isActive or query.exception() is None:
                continue
            if name in self._due:
                due, transient = self._due[name]
                if now >= due:
                    del self._due[name]
                    history = self._transient_restarts if transient else self.restarts
                    history.setdefault(name, []).append(now)
                    log.info("restarting query %s from its checkpoint", name)
                    try:
                        self.queries[name] = self._launchers[name]()
                    except Exception:  # counted as its next failure
                        log.exception("restarting query %s failed", name)
                continue
            log.error("query %s failed: %s", name, query.exception())
            if name not in self._launchers:
                log.error("query %s was not started with JobContext.launch: cannot restart it",
                          name)
                return False
            error = str(query.exception())
            transient = any(text in error for text in TRANSIENT_FAILURES + OUTAGE_FAILURES)
            history = self._transient_restarts if transient else self.restarts
            recent = [t for t in history.get(name, []) if now - t < self._window_s]
            history[name] = recent
            backoff = min(self._max_backoff_s, 2.0 ** min(len(recent), 10))
            if transient:
                self.transient[name] += 1
                why = ("its store cannot be reached" if any(t in error for t in OUTAGE_FAILURES)
                       else "the machine is too busy to start a Python process in time")
                log.warning("query %s: %s (%d such failures so far); restarting it in %.0f s",
                            name, why, self.transient[name], backoff)
            elif len(recent) >= self._max_restarts:
                log.error("query %s: %d failures within %.0f min: giving up", name,
                          len(recent) + 1, self._window_s / 60)
                return False
            else:
                log.info("query %s: restarting it alone in %.0f s", name, backoff)
            self._due[name] = (now + backoff, transient)
        return True

    def stop_all(self, between_batches_s: float = STOP_BETWEEN_BATCHES_S) -> None:
        """Stop every query, each between two of its micro-batches if one comes soon enough.

        ``stop()`` interrupts the batch a query is running: its writer then fails inside
        ``collect()`` and py4j logs a traceback (nothing is lost: the batch runs again from
        the checkpoint at the next start, and the store's upserts make that harmless).
        So each query is stopped once its current batch is done, all of them within
        ``between_batches_s``; a query still busy then is stopped as before.
        """
        self._due.clear()
        deadline = time.monotonic() + between_batches_s
        for name, q in self.queries.items():
            try:
                eventually(functools.partial(_between_batches, q),
                           max(0.0, deadline - time.monotonic()),
                           f"the running batch of {name}", interval_s=0.02)
            except DeadlineExceeded:
                log.info("stopping %s during a batch (it runs again at the next start)", name)
            if q.isActive:
                q.stop()


def _between_batches(query: StreamingQuery) -> bool:
    try:
        return not (query.isActive and query.status["isTriggerActive"])
    except Exception:  # noqa: BLE001 - the JVM going away: nothing to wait for
        return True


def _parser(description: str) -> argparse.ArgumentParser:
    parser = argument_parser(description, only=[
        "kafka_bootstrap_servers", "jars_dir", "data_dir", "log_level", "spark_master",
        "spark_driver_memory", "shuffle_partitions", "trigger_seconds", "other_trigger_seconds",
        "watermark_seconds",
        "window_seconds", "sliding_window_seconds", "slide_seconds", "max_offsets_per_trigger",
        "sink", "retention_hours", "random_bins", "cassandra_hosts",
    ])
    parser.add_argument("--replay", action="store_true",
                        help="backfill: read the topics from the start with availableNow, then exit")
    parser.add_argument("--starting-offsets", default="earliest",
                        help="where a new query (no checkpoint) starts: earliest (default) or latest")
    return parser


def run_jobs(description: str, starts: list[StartFn], app_name: str,
             argv: list[str] | None = None, batches: list[BatchFn] | None = None) -> int:
    """Parse options, build one session, start every job's queries, run the batch jobs once,
    then wait; Ctrl-C stops the queries. With only batch jobs, returns when they are done."""
    from common import cli
    from processing.health import HealthReporter
    from processing.spark import session

    args, settings = cli.start(_parser(description), argv)
    quiet_interrupted_batches()
    if settings.kafka_bootstrap_servers is None and starts:
        log.error("KAFKA_BOOTSTRAP_SERVERS (or --kafka-bootstrap-servers) is required")
        return 2
    if settings.cassandra_configured() and settings.sink != "disk":
        from storage.base import StoreError
        from storage.cassandra import check_ttl

        try:  # refused before Spark starts, not at the first batch
            check_ttl(dt.timedelta(hours=settings.retention_hours))
        except StoreError as e:
            log.error("%s", e)
            return 2
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    log.info("starting Spark (%s) ...", settings.spark_master)
    spark = session(settings, app_name)
    ctx = JobContext(spark, settings, settings.kafka_bootstrap_servers, sink=settings.sink,
                     starting_offsets="earliest" if args.replay else args.starting_offsets,
                     available_now=args.replay)
    reporter = HealthReporter(settings.kafka_bootstrap_servers, app_name)
    spark.streams.addListener(reporter)
    stopping = threading.Event()
    cli.on_stop(lambda _signum: stopping.set())
    queries = QuerySupervisor(ctx.launchers)
    try:
        for i, start in enumerate(starts):
            job = _app_name(start)
            started = start(spark, ctx.for_job(job))
            queries.watch(started)
            if job in FAST_TRIGGER_JOBS and i < len(starts) - 1:
                # Its first batch alone, then the others (wait_for_first_batch);
                # not a Cassandra query's: its first batch waits for the node to answer.
                for query in started:
                    if not str(query.name).endswith("@cassandra"):
                        wait_for_first_batch(query)
        names = queries.names
        reporter.announce_ready(names)
        if names:
            log.info("%d queries running: %s", len(names), ", ".join(names))
        if not names:  # batch jobs alone: run them and return
            for batch in batches or []:
                code = batch(spark, ctx)
                if code != 0:
                    log.error("batch job %s failed with %d", batch.__module__, code)
                    return code
            return 0
        # Beside streaming queries, the batch jobs run in a thread of their own: one waiting
        # for a store (Cassandra still starting) must not stop the queries being watched.
        threading.Thread(target=_run_batches, args=(batches or [], spark, ctx), daemon=True,
                         name="batch-jobs").start()
        while not stopping.is_set():
            if not queries.check():
                return 1
            if not queries.any_active():
                log.info("all queries finished")
                return 0
            stopping.wait(0.5)
        return 0
    finally:
        quiet_spark_stop(spark)
        queries.stop_all()
        ctx.close()
        reporter.close(wait_for=queries.names)
        spark.stop()


def _run_batches(batches: list[BatchFn], spark: SparkSession, ctx: JobContext) -> None:
    for batch in batches:
        try:
            code = batch(spark, ctx)
        except Exception:  # logged; the streaming queries keep running
            log.exception("batch job %s failed", batch.__module__)
            continue
        if code != 0:
            log.error("batch job %s failed with %d", batch.__module__, code)


def _app_name(fn: Callable[..., Any]) -> str:
    name = fn.__module__.rsplit(".", 1)[-1]
    if name == "__main__":  # run as a script by spark-submit
        name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    return name


def run_job(description: str, start: StartFn, argv: list[str] | None = None) -> int:
    """``__main__`` of a single streaming job (``spark-submit processing/<job>.py``)."""
    return run_jobs(description, [start], app_name=_app_name(start), argv=argv)


def run_batch_job(description: str, run: BatchFn, argv: list[str] | None = None) -> int:
    """``__main__`` of a batch job: runs once and returns its exit code."""
    return run_jobs(description, [], app_name=_app_name(run), argv=argv, batches=[run])


def main(argv: list[str] | None = None) -> int:
    doc = ("Every job of the kit in one Spark application (one JVM): the streaming jobs "
           f"{', '.join(STREAMING_JOBS)} run until stopped; the batch jobs "
           f"{', '.join(BATCH_JOBS)} run once after they started.")
    starts = [importlib.import_module(f"processing.{name}").start for name in STREAMING_JOBS]
    batches = [importlib.import_module(f"processing.{name}").run for name in BATCH_JOBS]
    return run_jobs(doc, starts, app_name="streamkit", argv=argv, batches=batches)


if __name__ == "__main__":
    sys.exit(main())
