"""What every streaming job shares: parsing JSON records, writing results, starting queries.

* :func:`parse_records` turns Kafka rows into typed columns of a record type
  (schema derived from ``common.records``), plus ``_error`` saying why a row is
  malformed (null when it is fine). It counts rows and malformed rows with
  ``observe``, so the counts reach the query's progress reports.
* :class:`ResultWriter` is the ``foreachBatch`` function: it upserts a batch's
  changed rows into the store (idempotent: a replayed batch overwrites) and
  then pushes them to the ``results`` topic for the display server. Any error
  fails the batch, and Spark retries it from the checkpoint.
* :func:`start_query` starts a query with the kit's trigger, checkpoint
  location and name.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from buffer import topics
from common import records
from common.messages import ResultsBatch
from common.settings import Settings
from common.waiting import DeadlineExceeded, eventually
from processing.mirror import Mirror
from processing.panes import StoreRange
from storage.base import ResultRow

__all__ = ["ResultWriter", "WindowedStream", "parse_records", "spark_schema", "start_query"]

log = logging.getLogger(__name__)

_SPARK_TYPES: dict[Any, DataType] = {
    str: StringType(),
    int: LongType(),
    float: DoubleType(),
    bool: BooleanType(),
    dt.datetime: TimestampType(),
}


def _spark_type(hint: Any) -> tuple[DataType, bool]:
    import types
    import typing

    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
        return _SPARK_TYPES[inner], True
    if typing.get_origin(hint) is dict:  # dict[str, str]: an object of strings
        key, value = typing.get_args(hint)
        return MapType(_SPARK_TYPES[key], _SPARK_TYPES[value]), True
    return _SPARK_TYPES[hint], False


def spark_schema(record_type: type[records.Record]) -> StructType:
    """The Spark schema of a record type, derived from its fields (``common.records``)."""
    fields = []
    required = records.required_fields(record_type)
    for name, hint in records.fields_of(record_type).items():
        spark_type, nullable = _spark_type(hint)
        fields.append(StructField(name, spark_type, nullable or name not in required))
    return StructType(fields)


ISO_WITH_ZONE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$"


def parse_records(kafka_rows: DataFrame, record_type: type[records.Record],
                  observe_as: str | None = None) -> DataFrame:
    """Kafka rows -> one column per field of ``record_type``, plus ``_error`` and ``_offset``.

    The JSON is read with every field as text, then each field is converted
    with ``try_cast``; ``_error`` names the first problem: not a JSON object, a
    required field missing, or a field of the wrong type (times must be ISO 8601
    with a zone, as ``common.records`` writes them). Rows with an error are still
    returned (callers keep ``_error IS NULL`` and count the rest). A number where
    text is expected is taken as its text (JSON parsing cannot tell them apart).

    One parse, deliberately: a typed parse first, with this text parse only for
    the rows it refuses, was 15-45% faster per record (``bench/spark_parse.py``)
    but made each micro-batch about 10% dearer (1.75 against 1.59 core-seconds
    per batch of the host-metrics job at 10 records/s): Spark plans, generates
    code for and serialises the whole expression tree every batch, and at the
    kit's rates that fixed cost is nearly all of the cost.
    """
    schema = spark_schema(record_type)
    required = records.required_fields(record_type)
    as_text = StructType([StructField(f.name, StringType(), True) for f in schema.fields]
                         + [StructField("produced_at", StringType(), True),
                            StructField("_corrupt", StringType(), True)])
    text = F.col("value").cast("string")
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"}
    parsed = kafka_rows.select(
        F.from_json(text, as_text, options).alias("j"),
        text.alias("_raw"),
        F.col("timestamp").alias("_kafka_time"),
        F.col("offset").alias("_offset"),
    )
    columns: list[Column] = []
    checks: list[Column] = [
        F.when(F.col("j").isNull() | F.col("j._corrupt").isNotNull()
               | ~F.ltrim(F.col("_raw")).startswith("{"), F.lit("not a JSON object"))
    ]
    for f in schema.fields:
        raw = F.col(f"j.{f.name}")
        if isinstance(f.dataType, MapType):  # read as text: the object's JSON, parsed again
            value = F.from_json(raw, f.dataType.simpleString())
        else:
            value = raw if isinstance(f.dataType, StringType) else raw.try_cast(f.dataType)
        if isinstance(f.dataType, TimestampType):
            value = F.when(raw.rlike(ISO_WITH_ZONE), value)
        columns.append(value.alias(f.name))
        if f.name in required:
            checks.append(F.when(raw.isNull(), F.lit(f"field {f.name} is missing or null")))
        if isinstance(f.dataType, TimestampType):
            # As common.records.parse_time: ISO 8601 with a zone, nothing Spark would also guess at.
            checks.append(F.when(raw.isNotNull() & ~raw.rlike(ISO_WITH_ZONE),
                                 F.lit(f"field {f.name} is not an ISO 8601 time with a zone")))
        if not isinstance(f.dataType, StringType):
            checks.append(F.when(raw.isNotNull() & value.isNull(),
                                 F.lit(f"field {f.name} is not a {f.dataType.simpleString()}")))
    error = F.coalesce(*checks)
    produced = F.col("j.produced_at").try_cast(TimestampType()).alias("_produced_at")
    df = parsed.select(*columns, error.alias("_error"), produced, "_kafka_time", "_offset")
    if observe_as:
        df = df.observe(
            observe_as,
            F.count(F.lit(1)).alias("rows"),
            F.sum(F.when(F.col("_error").isNotNull(), 1).otherwise(0)).alias("malformed"),
        )
    return df


def timing_aggregates() -> list[Column]:
    """Aggregates every windowed transform adds: the newest produce and broker time in the group.

    They travel with the batch to the results topic (see :class:`ResultWriter`), so the
    health view can show how long each stage took; they are not stored as values.
    """
    return [F.max(F.unix_micros("_produced_at")).alias("_produced_us"),
            F.max(F.unix_micros("_kafka_time")).alias("_kafka_us")]


TIMING_COLUMNS = ("_produced_us", "_kafka_us")


def valid(df: DataFrame) -> DataFrame:
    return df.where(F.col("_error").isNull()).drop("_error")


def window_columns(window: str = "window") -> list[Column]:
    """Window bounds as microseconds since the epoch: no time zone can creep in on collect."""
    return [
        F.unix_micros(F.col(f"{window}.start")).alias("window_start_us"),
        F.unix_micros(F.col(f"{window}.end")).alias("window_end_us"),
    ]


from_micros = records.from_micros  # the jobs' windows arrive as microseconds (see below)


class BatchInterrupted(RuntimeError):
    """A micro-batch's Spark job was interrupted: its query is being stopped.

    Nothing is lost: the batch is not committed, and the query runs it again from its
    checkpoint when it starts next (the store's upserts make a replay harmless).
    """


def collect(batch: DataFrame, query: str | None, batch_id: int) -> list[Any]:
    """``batch.collect()``; an interruption (a query stopped mid-batch) is a BatchInterrupted.

    ``StreamingQuery.stop()`` interrupts the running batch's job. The Java error text
    (a stack trace of about 100 lines) would travel back to the JVM inside the writer's
    error, where Spark's handling of that text overflowed the stream thread's stack
    (a ``java.lang.StackOverflowError`` printed for each such query at shutdown);
    the short BatchInterrupted does not, and :func:`quiet_interrupted_batches` logs it
    as one line.
    """
    from py4j.protocol import Py4JJavaError

    try:
        return batch.collect()
    except Py4JJavaError as e:
        if not _is_interruption(e):
            raise
    raise BatchInterrupted(f"batch {batch_id} of {query} interrupted by the query's stop; "
                           "it runs again from the checkpoint at the next start")


def _is_interruption(error: Any) -> bool:
    try:
        name = error.java_exception.getClass().getName()
    except Exception:  # noqa: BLE001 - the JVM may be going away as well
        return False
    return name == "java.lang.InterruptedException"


class _InterruptedBatchAsInfo(logging.Filter):
    """py4j logs every error a foreachBatch function raises with its traceback, at ERROR;
    a BatchInterrupted (a stop, not a failure) becomes one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BatchInterrupted):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "%s", (str(error),)
            record.exc_info, record.exc_text = None, None
        return True


def quiet_interrupted_batches() -> None:
    """Install the filter that logs BatchInterrupted as one INFO line (once per process)."""
    py4j_log = logging.getLogger("py4j.clientserver")
    if not any(isinstance(f, _InterruptedBatchAsInfo) for f in py4j_log.filters):
        py4j_log.addFilter(_InterruptedBatchAsInfo())


RowsFn = Callable[[list[dict[str, Any]]], list[ResultRow]]


class Ledger:
    """How many input records the rows written so far account for, per store and stream.

    For a stream with :class:`common.catalogue.Accounting`, each window's latest
    written value (e.g. its ``count``) is kept; their sum is the number of records
    aggregated into the store since this application started. A replayed batch
    overwrites the same windows, so it never adds. Shared by a job's writers, it
    survives a query's restart within the application.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], dict[tuple[str, dt.datetime], int]] = {}

    def record(self, store: str, rows: Sequence[ResultRow]) -> None:
        from common import catalogue

        with self._lock:
            for r in rows:
                accounting = catalogue.STREAMS[r.stream].accounting \
                    if r.stream in catalogue.STREAMS else None
                if accounting is None:
                    continue
                self._rows.setdefault((store, r.stream), {})[(r.key, r.window_start)] = \
                    accounting.counts(dict(r.values))

    def total(self, store: str, stream: str) -> int | None:
        """Records accounted for in ``stream``'s rows in ``store``; None if not accounted."""
        with self._lock:
            rows = self._rows.get((store, stream))
            return sum(rows.values()) if rows is not None else None


def batch_timing(collected: list[dict[str, Any]]) -> dict[str, str]:
    """The newest produce and broker times among a batch's rows (see :func:`timing_aggregates`)."""
    out = {}
    for column, name in (("_produced_us", "produced_at"), ("_kafka_us", "broker_at")):
        values = [r[column] for r in collected if r.get(column) is not None]
        if values:
            out[name] = records.format_time(from_micros(max(values)))
    return out


class ResultWriter:
    """``foreachBatch`` function: upsert the batch's rows, then push them to ``results``.

    Args:
        stream: the result stream's name (``common.catalogue``); ``to_rows`` may also
            return rows of other streams (one query can feed several streams).
        to_rows: turns the collected batch (a list of dicts) into result rows.
        open_store: opens the store on first use (in the driver), reused across batches.
        bootstrap: the broker for the ``results`` topic (None: push nothing).
        ttl: retention of the rows written (None: kept).
        publish: replaces the push to Kafka (tests).
    """

    def __init__(self, stream: str, to_rows: RowsFn, open_store: Callable[[], Any],
                 bootstrap: str | None, ttl: dt.timedelta | None = None,
                 publish: Callable[[ResultsBatch], None] | None = None,
                 ledger: Ledger | None = None, mirrors: Sequence[Mirror] = ()) -> None:
        self.stream = stream
        #: Copies of every batch in other stores, written after this store (processing.mirror).
        self.mirrors = tuple(mirrors)
        self._copies: concurrent.futures.ThreadPoolExecutor | None = None
        self.query: str | None = None  # the query's name, set when it starts
        self.ledger = ledger if ledger is not None else Ledger()
        self.to_rows = to_rows
        self._open_store = open_store
        self._store: Any = None
        self._bootstrap = bootstrap
        self._publisher: Any = None
        self._publish = publish
        self.ttl = ttl
        self._lock = threading.Lock()
        self.rows_written = 0

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def _send(self, message: ResultsBatch) -> None:
        if self._publish is not None:
            self._publish(message)
            return
        if self._bootstrap is None:
            return
        if self._publisher is None:
            from buffer.kafka import JsonPublisher

            self._publisher = JsonPublisher(self._bootstrap)
        self._publisher.publish(topics.RESULTS.name, message, key=message.stream)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.time()
        collected = [row.asDict(recursive=True) for row in collect(batch, self.query, batch_id)]
        self.write(self.to_rows(collected), batch_id, started, batch_timing(collected))

    def write(self, rows: Sequence[ResultRow], batch_id: int, started: float | None = None,
              timing: dict[str, str] | None = None) -> None:
        """Upsert ``rows`` in one store write, then push one message per stream.

        ``timing`` (newest produce and broker times of the batch's input) is added to
        the messages with the batch's start and write times, for the health view.
        """
        if not rows:
            return
        with self._lock:
            before = dt.datetime.now(dt.UTC)
            store = self.store
            # The copies are written while the primary is (a copy that lands first is
            # harmless: the batch is replayed and upserted again if the primary fails).
            copies = [(mirror, self._copier().submit(
                mirror.write, rows, self.ttl, store, before,
                functools.partial(self.ledger.record, mirror.kind))) for mirror in self.mirrors]
            try:
                store.upsert(rows, ttl=self.ttl)
            finally:
                done = [(mirror, copy.result()) for mirror, copy in copies]
            self.rows_written += len(rows)
            self.ledger.record(store.kind, rows)
            self._push(rows, store.kind, batch_id, started, timing)
            for mirror, copied in done:
                if copied:
                    self._push(rows, mirror.kind, batch_id, started, timing)
            if self._publisher is not None:
                self._publisher.flush()

    def _copier(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._copies is None:
            self._copies = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(1, len(self.mirrors)), thread_name_prefix=f"copy-{self.stream}")
        return self._copies

    def _push(self, rows: Sequence[ResultRow], kind: str, batch_id: int, started: float | None,
              timing: dict[str, str] | None) -> None:
        """One results message per stream: the rows just written to the store ``kind``."""
        written = records.format_time(dt.datetime.now(dt.UTC))
        by_stream: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_stream.setdefault(r.stream, []).append(r.to_json() | {"updated_at": written})
        stages = dict(timing or {})
        if started is not None:
            stages["batch_started_at"] = records.format_time(
                dt.datetime.fromtimestamp(started, dt.UTC))
        stages["written_at"] = written
        for stream, payload in by_stream.items():
            self._send(ResultsBatch(
                stream=stream, store=kind, query=self.query, batch_id=batch_id,
                written_at=written, batch_seconds=round(time.time() - (started or time.time()), 3),
                timing=stages, stored_records=self.ledger.total(kind, stream), rows=payload))


def start_query(df: DataFrame, name: str, writer: Callable[[DataFrame, int], None],
                settings: Settings, output_mode: str = "update", available_now: bool = False,
                checkpoint_name: str | None = None, trigger_seconds: float | None = None
                ) -> StreamingQuery:
    """Start ``df`` with ``writer`` as ``foreachBatch``, named ``name``, checkpointed under DATA_DIR.

    Triggered every ``trigger_seconds`` (default: TRIGGER_SECONDS)."""
    checkpoint = settings.checkpoint_dir / (checkpoint_name or name)
    writer_stream = (
        df.writeStream.queryName(name)
        .outputMode(output_mode)
        .foreachBatch(writer)
        .option("checkpointLocation", str(checkpoint))
    )
    if available_now:
        writer_stream = writer_stream.trigger(availableNow=True)
    else:
        every = settings.trigger_seconds if trigger_seconds is None else trigger_seconds
        writer_stream = writer_stream.trigger(processingTime=f"{every:g} seconds")
    query = writer_stream.start()
    wait_until_initialised(query)
    log.info("query %s started (checkpoint %s)", name, checkpoint)
    return query


#: How long a query may take to initialise its sources before the next one starts anyway.
INITIALISE_TIMEOUT_S = 120.0


def wait_until_initialised(query: StreamingQuery, timeout_s: float = INITIALISE_TIMEOUT_S) -> None:
    """Wait until ``query`` has initialised its sources (or stopped), so queries start one by one.

    Introduced for the Python Kafka data source the kit used before Spark's own connector
    (each query's reader was a Python process that Spark gave a fixed 10 s to connect back;
    a dozen at once failed on 2 cores). Spark's connector initialises in the JVM, so this
    wait now costs little and may no longer be needed: not yet measured on the new stack
    (docs/benchmark-history.md), so it stays until a figure says otherwise.
    """
    def initialised() -> bool:
        return not query.isActive or not str(query.status.get("message", "")).startswith(
            "Initializing")

    try:
        eventually(initialised, timeout_s, f"query {query.name} to initialise its sources")
    except DeadlineExceeded:
        log.warning("query %s still initialising after %.0f s; starting the next one",
                    query.name, timeout_s)


#: How long ``python -m processing`` lets the 1 s host-metrics query run its first batch
#: with data alone before starting the other queries (see :func:`wait_for_first_batch`).
FIRST_BATCH_TIMEOUT_S = 30.0


def wait_for_first_batch(query: StreamingQuery, timeout_s: float = FIRST_BATCH_TIMEOUT_S) -> bool:
    """Wait until ``query`` has processed a micro-batch with input rows (or stopped).

    A query's first batch with data is its slowest (Spark generates and compiles the
    code of its plan; the JIT is cold). The embedded stack starts its sources once the
    first query has started and waits here before starting the others. Measured with
    Apache Kafka and Spark's connector (2026-12-06, 2 cores, `bench/e2e_latency.py`): the
    first windows reach a page 19-25 s after `make run` with this wait (four runs) and
    30-33 s without it (two runs), so it stays. Returns False after ``timeout_s`` (no data
    yet: e.g. its source is not running); the caller goes on.
    """
    def done() -> bool:
        return not query.isActive or any(
            int(p.get("numInputRows") or 0) > 0 for p in query.recentProgress)

    try:
        eventually(done, timeout_s, f"query {query.name}'s first batch with data", interval_s=0.2)
    except DeadlineExceeded:
        log.info("query %s has had no data for %.0f s; starting the next queries", query.name,
                 timeout_s)
        return False
    return True


@dataclass(frozen=True)
class WindowedStream:
    """A windowed result stream, described once and run two ways.

    Streaming (``JobContext.start_windowed``) reads the topic from Kafka; batch
    (``processing.recompute``) reads the same records from the Parquet archive.
    Both parse with :func:`parse_records` and call ``transform``, so a
    recomputation gives what the live job stored (for rows that were not late).

    Attributes:
        stream: the result stream's name.
        topic: the topic's role in queue/topics.toml.
        record_type: what the topic carries.
        transform: (valid parsed records, watermark or None) -> windowed rows with
            ``window_start_us`` and ``window_end_us``.
        to_rows: collected windowed rows -> result rows.
        with_store: the live query's ``to_rows`` instead, given a reader of the store's
            rows (by stream and a range of window starts): for rows built from stored ones
            (sliding windows from their panes: ``processing.panes``).
        derived: no query of its own; its rows come from another stream's ``with_store``
            (``transform`` and ``to_rows`` still recompute it from the archive).
    """

    stream: str
    topic: str
    record_type: type[records.Record]
    transform: Callable[[DataFrame, str | None], DataFrame]
    to_rows: RowsFn
    with_store: Callable[[StoreRange], RowsFn] | None = None
    derived: bool = False


def seconds(value: float) -> str:
    """A Spark interval string: ``seconds(10)`` -> ``"10 seconds"`` (``"10s"`` is refused)."""
    return f"{value:g} seconds"


def result_rows(stream: str, key_column: str, value_columns: Sequence[str]) -> RowsFn:
    """A ``to_rows`` for windowed aggregates: key from ``key_column``, values from the rest."""

    def convert(collected: list[dict[str, Any]]) -> list[ResultRow]:
        return [
            ResultRow(
                stream=stream,
                key=str(row[key_column]),
                window_start=from_micros(row["window_start_us"]),
                window_end=from_micros(row["window_end_us"]),
                values={c: row[c] for c in value_columns},
            )
            for row in collected
        ]

    return convert
