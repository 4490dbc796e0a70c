"""A Kafka source for Spark Structured Streaming, written as a Python data source.

Spark's own Kafka connector (spark-sql-kafka-0-10) is a jar from Maven Central.
Where that jar cannot be had, this source reads Kafka through confluent-kafka
with the same options and the same output schema, so the code that aggregates
never knows which one feeds it. Jobs do not use it directly: they call
:func:`processing.streams.read_kafka`, which picks the JVM connector when it is
on the classpath and this source otherwise.

Options (names as Spark's ``kafka`` source; case does not matter):

================================  ==================================================
``kafka.bootstrap.servers``       required; host:port list
``subscribe``                     required; comma-separated topics
``startingOffsets``               ``latest`` (default), ``earliest``, or JSON
                                  ``{"topic": {"0": 23, "1": -2}}`` (-2 earliest, -1 latest)
``maxOffsetsPerTrigger``          most records per micro-batch, split over partitions
                                  in proportion to what each has waiting
``failOnDataLoss``                ``true`` (default): fail when offsets disappear
                                  (retention, topic recreated); ``false``: log and skip
``kafkaConsumer.pollTimeoutMs``   how long a read task waits for records (default 120000)
``maxReadTasks``                  (this source only) most read tasks per micro-batch;
                                  small batches are read by one task, since each task
                                  costs 0.1-0.3 s to start
``rowsPerReadTask``               (this source only) rows per read task before a batch
                                  is split (default 10000; see ``plan_read_tasks``)
``kafka.<librdkafka property>``   passed to the consumer (e.g. ``kafka.security.protocol``)
================================  ==================================================

Offsets are ``{"topic": {"partition": next_offset}}`` with topics and
partitions in a stable order (the engine compares serialised offsets).
Partitions that appear while the query runs are read from their earliest
offset, as Spark does.

Contracts of the Data Source API (Spark 4.3) this module honours: the reader is
built in more than one process and pickled into read tasks, so it opens no
connection in ``__init__`` and drops its client when pickled; ``read()`` uses
nothing but its partition; read tasks yield Arrow record batches whose schema
equals the declared one exactly.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

__all__ = [
    "KAFKA_SCHEMA",
    "KafkaDataSource",
    "KafkaOptionError",
    "KafkaSourceOptions",
    "parse_options",
    "plan_read_tasks",
    "split_limit",
]

log = logging.getLogger(__name__)

FORMAT_NAME = "kit-kafka"

#: The schema of Spark's built-in ``kafka`` source.
KAFKA_SCHEMA = StructType(
    [
        StructField("key", BinaryType(), True),
        StructField("value", BinaryType(), True),
        StructField("topic", StringType(), True),
        StructField("partition", IntegerType(), True),
        StructField("offset", LongType(), True),
        StructField("timestamp", TimestampType(), True),
        StructField("timestampType", IntegerType(), True),
    ]
)

EARLIEST = -2
LATEST = -1
#: How often the reader lists every partition's offsets with ListOffsets (seconds); between
#: listings one fetch from the last known end finds a partition's end.
LIST_EVERY_S = 30.0

Offsets = dict[str, dict[str, int]]


class KafkaOptionError(ValueError):
    """An option of the Kafka source is unknown or malformed; the message names it."""


class KafkaDataLoss(RuntimeError):
    """Offsets the query needs are gone (retention, a recreated topic, an emptied broker)."""


@dataclass(frozen=True)
class KafkaSourceOptions:
    bootstrap_servers: str
    topics: tuple[str, ...]
    starting: str | dict[str, dict[int, int]] = "latest"
    max_offsets_per_trigger: int | None = None
    fail_on_data_loss: bool = True
    poll_timeout_ms: int = 120_000
    max_read_tasks: int = 1
    #: A read task also parses and pre-aggregates its rows (one core): at 20,000 records/s
    #: a 1 s batch read by one task took 1.4 s (100,000 here before), by two 1.1 s.
    rows_per_read_task: int = 10_000
    client_config: Mapping[str, str] = field(default_factory=dict)


_KNOWN = {
    "kafka.bootstrap.servers",
    "subscribe",
    "startingoffsets",
    "maxoffsetspertrigger",
    "failondataloss",
    "kafkaconsumer.polltimeoutms",
    "maxreadtasks",
    "rowsperreadtask",
}
_UNSUPPORTED = {
    "assign": "use subscribe",
    "subscribepattern": "use subscribe with a topic list",
    "endingoffsets": "streaming reads have no end; use trigger(availableNow=True)",
    "includeheaders": "headers are not read by this source",
    "startingtimestamp": "use startingOffsets",
    "startingoffsetsbytimestamp": "use startingOffsets",
    "minoffsetspertrigger": "not supported",
    "groupidprefix": "this source commits no consumer group",
    "kafka.group.id": "this source commits no consumer group",
}


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise KafkaOptionError(f"option {name}={raw!r} must be an integer") from None
    if value <= 0:
        raise KafkaOptionError(f"option {name}={raw!r} must be greater than 0")
    return value


def _parse_starting(raw: str, topics: Sequence[str]) -> str | dict[str, dict[int, int]]:
    text = raw.strip()
    if text.lower() in ("earliest", "latest"):
        return text.lower()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        raise KafkaOptionError(
            f"option startingOffsets={raw!r} must be earliest, latest or JSON like "
            '{"topic": {"0": 23, "1": -2}}'
        ) from None
    if not isinstance(parsed, dict):
        raise KafkaOptionError(f"option startingOffsets={raw!r} must be a JSON object")
    result: dict[str, dict[int, int]] = {}
    for topic, partitions in parsed.items():
        if topic not in topics:
            raise KafkaOptionError(
                f"option startingOffsets names topic {topic!r}, which is not in subscribe"
            )
        if not isinstance(partitions, dict):
            raise KafkaOptionError(
                f"option startingOffsets: topic {topic!r} needs an object of partition: offset"
            )
        result[topic] = {}
        for partition, offset in partitions.items():
            try:
                p = int(partition)
            except ValueError:
                raise KafkaOptionError(
                    f"option startingOffsets: partition {partition!r} of {topic!r} is not a number"
                ) from None
            if not isinstance(offset, int) or offset < EARLIEST:
                raise KafkaOptionError(
                    f"option startingOffsets: offset {offset!r} of {topic}-{p} must be an "
                    "integer >= 0, or -2 (earliest) or -1 (latest)"
                )
            result[topic][p] = offset
    return result


def parse_options(options: Mapping[str, str]) -> KafkaSourceOptions:
    """Validate the source's options; :class:`KafkaOptionError` names any bad one."""
    lowered = {k.lower(): str(v) for k, v in options.items()}
    client_config: dict[str, str] = {}
    for key, value in lowered.items():
        if key in _UNSUPPORTED:
            raise KafkaOptionError(f"option {key} is not supported: {_UNSUPPORTED[key]}")
        if key in _KNOWN or key == "path":
            continue
        if key.startswith("kafka."):
            client_config[key.removeprefix("kafka.")] = value
            continue
        raise KafkaOptionError(
            f"unknown option {key!r}; known: kafka.bootstrap.servers, subscribe, startingOffsets, "
            "maxOffsetsPerTrigger, failOnDataLoss, kafkaConsumer.pollTimeoutMs, maxReadTasks, "
            "rowsPerReadTask, kafka.<client property>"
        )
    bootstrap = lowered.get("kafka.bootstrap.servers", "").strip()
    if not bootstrap:
        raise KafkaOptionError("option kafka.bootstrap.servers is required")
    topics = tuple(t.strip() for t in lowered.get("subscribe", "").split(",") if t.strip())
    if not topics:
        raise KafkaOptionError("option subscribe is required: a comma-separated list of topics")
    if len(set(topics)) != len(topics):
        raise KafkaOptionError(f"option subscribe lists a topic twice: {','.join(topics)}")
    fail_raw = lowered.get("failondataloss", "true").strip().lower()
    if fail_raw not in ("true", "false"):
        raise KafkaOptionError(f"option failOnDataLoss={fail_raw!r} must be true or false")
    max_offsets = lowered.get("maxoffsetspertrigger")
    return KafkaSourceOptions(
        bootstrap_servers=bootstrap,
        topics=tuple(sorted(topics)),
        starting=_parse_starting(lowered.get("startingoffsets", "latest"), topics),
        max_offsets_per_trigger=(
            _positive_int("maxOffsetsPerTrigger", max_offsets) if max_offsets else None
        ),
        fail_on_data_loss=fail_raw == "true",
        poll_timeout_ms=_positive_int(
            "kafkaConsumer.pollTimeoutMs", lowered.get("kafkaconsumer.polltimeoutms", "120000")
        ),
        max_read_tasks=_positive_int("maxReadTasks", lowered.get("maxreadtasks", "1")),
        rows_per_read_task=_positive_int(
            "rowsPerReadTask", lowered.get("rowsperreadtask", "10000")
        ),
        client_config=client_config,
    )


# -- pure offset arithmetic, tested without a broker


def to_offsets(positions: Mapping[tuple[str, int], int]) -> Offsets:
    """Positions as the engine's offset JSON, in a stable order."""
    result: Offsets = {}
    for topic, partition in sorted(positions):
        result.setdefault(topic, {})[str(partition)] = positions[(topic, partition)]
    return result


def from_offsets(offsets: Mapping[str, Mapping[str, int]]) -> dict[tuple[str, int], int]:
    return {(t, int(p)): int(o) for t, parts in offsets.items() for p, o in parts.items()}


def split_limit(
    start: Mapping[tuple[str, int], int], end: Mapping[tuple[str, int], int], max_rows: int
) -> dict[tuple[str, int], int]:
    """End positions that admit at most ``max_rows`` records in all, shared in proportion.

    Each partition gets ``floor(max_rows * waiting / total waiting)``; what the
    rounding leaves goes to the partitions with the most still waiting, so the
    batch uses the whole limit and every partition with data moves eventually.
    """
    waiting = {tp: max(0, end[tp] - start.get(tp, end[tp])) for tp in end}
    total = sum(waiting.values())
    if total <= max_rows:
        return dict(end)
    share = {tp: max_rows * n // total for tp, n in waiting.items()}
    left = max_rows - sum(share.values())
    for tp in sorted(waiting, key=lambda k: (waiting[k] - share[k], k), reverse=True):
        if left == 0:
            break
        if waiting[tp] > share[tp]:
            share[tp] += 1
            left -= 1
    return {tp: start.get(tp, end[tp]) + share[tp] if waiting[tp] else end[tp] for tp in end}


@dataclass(frozen=True, order=True)
class OffsetRange:
    topic: str
    partition: int
    start: int  # first offset to read
    end: int  # one past the last offset to read

    @property
    def size(self) -> int:
        return self.end - self.start


def plan_read_tasks(
    ranges: Sequence[OffsetRange], max_tasks: int, rows_per_task: int
) -> list[list[OffsetRange]]:
    """Group offset ranges into read tasks: as few as the batch needs, at most ``max_tasks``.

    A task costs 0.1-0.3 s to start on a 2-core machine, so a small batch is one
    task; a large one is spread over up to ``max_tasks`` tasks, each range whole
    (a range is read by one consumer), balancing rows by largest-first packing.
    Spreading pays because a read task also parses its rows and pre-aggregates them
    (Spark runs those steps in the same task): on one core that held 15,000 records/s,
    on two 20,000-25,000 (``bench/throughput.py``, README).
    """
    ranges = [r for r in ranges if r.size > 0]
    if not ranges:
        return []
    total = sum(r.size for r in ranges)
    count = max(1, min(max_tasks, len(ranges), math.ceil(total / rows_per_task)))
    tasks: list[list[OffsetRange]] = [[] for _ in range(count)]
    loads = [0] * count
    for r in sorted(ranges, key=lambda r: (-r.size, r.topic, r.partition)):
        i = loads.index(min(loads))
        tasks[i].append(r)
        loads[i] += r.size
    return [sorted(t, key=lambda r: (r.topic, r.partition)) for t in tasks]


@dataclass(frozen=True)
class KafkaReadTask(InputPartition):
    ranges: tuple[OffsetRange, ...]
    bootstrap_servers: str
    client_config: tuple[tuple[str, str], ...]
    poll_timeout_ms: int
    fail_on_data_loss: bool

    def __init__(self, ranges: Sequence[OffsetRange], options: KafkaSourceOptions) -> None:
        object.__setattr__(self, "ranges", tuple(ranges))
        object.__setattr__(self, "bootstrap_servers", options.bootstrap_servers)
        object.__setattr__(self, "client_config", tuple(sorted(options.client_config.items())))
        object.__setattr__(self, "poll_timeout_ms", options.poll_timeout_ms)
        object.__setattr__(self, "fail_on_data_loss", options.fail_on_data_loss)


class KafkaDataSource(DataSource):
    """``spark.readStream.format("kit-kafka")``: Kafka records with Spark's kafka schema."""

    def __init__(self, options: Mapping[str, str]) -> None:
        super().__init__(dict(options))
        self.parsed = parse_options(options)  # fails the query at start on a bad option

    @classmethod
    def name(cls) -> str:
        return FORMAT_NAME

    def schema(self) -> StructType:
        return KAFKA_SCHEMA

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return KafkaStreamReader(self.parsed)


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Plans micro-batches on the driver; reads them in read tasks (see the module docstring)."""

    def __init__(self, options: KafkaSourceOptions) -> None:
        self.options = options
        self._probe: Any = None  # a confluent Consumer, created lazily, never pickled
        self._target: dict[tuple[str, int], int] | None = None  # availableNow end
        self._latest: dict[tuple[str, int], int] | None = None
        self._known: dict[tuple[str, int], tuple[int, int]] = {}  # (earliest, end) last seen
        self._listed_at: float | None = None  # when ListOffsets last ran (time.monotonic())

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_probe"] = None
        return state

    # -- driver side

    def _consumer(self) -> Any:
        if self._probe is None:
            from common.kafka import offset_probe

            self._probe = offset_probe(self.options.bootstrap_servers, self.options.client_config)
        return self._probe

    def _positions(self) -> dict[tuple[str, int], tuple[int, int]]:
        """(earliest, end) of every partition of the subscribed topics, as they are now."""
        from common.kafka import end_offsets, partitions_of

        client = self._consumer()
        parts = partitions_of(client, self.options.topics)
        missing = [t for t, p in parts.items() if not p]
        if missing:
            log.warning("subscribed topics not found (yet): %s", ", ".join(missing))
        wanted = [(t, p) for t, ps in parts.items() for p in ps]
        # Between full listings, a partition's end is found from its last known end with one
        # fetch (see common.kafka.end_offsets); its earliest offset is listed every
        # LIST_EVERY_S (the read tasks find deleted records by their offsets anyway).
        now = time.monotonic()
        full = self._listed_at is None or now - self._listed_at >= LIST_EVERY_S
        positions = end_offsets(client, wanted, timeout_s=self.options.poll_timeout_ms / 1000,
                                known=None if full else self._known)
        if full:
            self._listed_at = now
        self._known = positions
        return positions

    def initialOffset(self) -> Offsets:
        positions = self._positions()
        starting = self.options.starting
        result = {}
        for tp, (low, high) in positions.items():
            if starting == "earliest":
                result[tp] = low
            elif starting == "latest":
                result[tp] = high
            else:
                assert isinstance(starting, dict)
                wanted = starting.get(tp[0], {}).get(tp[1], EARLIEST)
                result[tp] = low if wanted == EARLIEST else high if wanted == LATEST else wanted
        if isinstance(starting, dict):
            unknown = [
                f"{t}-{p}" for t, parts in starting.items() for p in parts if (t, p) not in positions
            ]
            if unknown:
                raise KafkaOptionError(
                    f"option startingOffsets names partitions that do not exist: {unknown}"
                )
        log.info("Kafka source starts at %s", to_offsets(result))
        return to_offsets(result)

    def _check_loss(self, start: Mapping[tuple[str, int], int],
                    positions: Mapping[tuple[str, int], tuple[int, int]]) -> None:
        problems = []
        for tp, offset in start.items():
            if tp not in positions:
                problems.append(f"{tp[0]}-{tp[1]} no longer exists")
                continue
            low, high = positions[tp]
            if offset > high:
                problems.append(
                    f"{tp[0]}-{tp[1]} ends at {high}, before the query's offset {offset} "
                    "(topic recreated, or the embedded broker restarted empty)"
                )
            elif offset < low:
                problems.append(f"{tp[0]}-{tp[1]} offsets {offset}..{low - 1} were deleted")
        if not problems:
            return
        message = "Kafka data loss: " + "; ".join(problems)
        if self.options.fail_on_data_loss:
            raise KafkaDataLoss(
                message + ". Set failOnDataLoss=false to skip, or start from a new checkpoint."
            )
        log.warning("%s; skipping (failOnDataLoss=false)", message)

    def latestOffset(self, start: Offsets, limit: ReadLimit) -> Offsets:
        positions = self._positions()
        begin = from_offsets(start)
        self._check_loss(begin, positions)
        end = {tp: high for tp, (_, high) in positions.items()}
        for tp, offset in begin.items():
            end.setdefault(tp, offset)  # a vanished partition keeps its offset
        self._latest = dict(end)
        # A partition new since the last batch is read from its earliest offset.
        first = {tp: begin.get(tp, positions[tp][0] if tp in positions else 0) for tp in end}
        if self._target is not None:  # availableNow: nothing past the recorded target
            end = {tp: min(off, self._target.get(tp, first[tp])) for tp, off in end.items()}
        if isinstance(limit, ReadMaxRows):
            end = split_limit(first, end, limit.max_rows)
        elif not isinstance(limit, ReadAllAvailable):
            log.warning("read limit %r is not supported; reading all available", limit)
        return to_offsets(end)

    def getDefaultReadLimit(self) -> ReadLimit:
        if self.options.max_offsets_per_trigger:
            return ReadMaxRows(self.options.max_offsets_per_trigger)
        return ReadAllAvailable()

    def reportLatestOffset(self) -> Offsets | None:
        return to_offsets(self._latest) if self._latest is not None else None

    def prepareForTriggerAvailableNow(self) -> None:
        self._target = {tp: high for tp, (_, high) in self._positions().items()}
        log.info("availableNow: reading up to %s", to_offsets(self._target))

    def partitions(self, start: Offsets, end: Offsets) -> Sequence[InputPartition]:
        begin = from_offsets(start)
        until = from_offsets(end)
        ranges = []
        for tp, stop in until.items():
            first = begin.get(tp)
            if first is None:  # a partition new in this batch: from its earliest offset
                first = self._known.get(tp, (0, 0))[0]
            if not self.options.fail_on_data_loss:
                first = max(first, self._known.get(tp, (first, 0))[0])
            if stop > first:
                ranges.append(OffsetRange(tp[0], tp[1], first, stop))
        tasks = plan_read_tasks(ranges, self.options.max_read_tasks, self.options.rows_per_read_task)
        return [KafkaReadTask(task, self.options) for task in tasks]

    def commit(self, end: Offsets) -> None:
        """Nothing to do: the checkpoint holds the offsets, as with Spark's own Kafka source."""

    def stop(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    # -- read task side (a Python worker; only the partition is used)

    def read(self, partition: InputPartition) -> Iterator[Any]:
        assert isinstance(partition, KafkaReadTask)
        yield from read_ranges(partition)


def _arrow_schema() -> Any:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(KAFKA_SCHEMA, timezone="UTC")


def read_ranges(task: KafkaReadTask, batch_rows: int = 100_000) -> Iterator[Any]:
    """Read every offset range of ``task`` and yield Arrow record batches of its records.

    Every range is assigned at once, so one fetch serves all of the task's
    partitions. (Read one after another, each switch to the next partition waited
    out the fetch the consumer had left at the previous one: up to
    ``fetch.wait.max.ms``, 500 ms, per range. Measured: 3 ranges of 500 records,
    1.0 s one after another, 20 ms together.) Each consumed chunk is split by
    partition, and each partition's records become one Arrow batch built with one
    comprehension per column (the per-record Python loop was the source's bottleneck).

    Reads exactly [start, end): records at or past ``end`` are dropped, and a
    record missing below ``end`` (deleted by retention) is data loss, raised
    unless the task was told not to fail on it.
    """
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    from common.kafka import consumer

    schema = _arrow_schema()
    pending = {(r.topic, r.partition): r for r in task.ranges if r.size > 0}
    expected = {key: r.start for key, r in pending.items()}
    if not pending:
        return
    client = consumer(task.bootstrap_servers, {
        **dict(task.client_config),
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 10_485_760,
        "enable.partition.eof": True,
    })
    timeout_s = task.poll_timeout_ms / 1000

    def finish(key: tuple[str, int]) -> None:
        del pending[key]
        client.pause([TopicPartition(*key)])  # fetch nothing more past its end

    try:
        client.assign([TopicPartition(t, p, r.start) for (t, p), r in pending.items()])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                stalled = ", ".join(f"{t}-{p} at offset {expected[(t, p)]} of "
                                    f"{r.start}..{r.end - 1}" for (t, p), r in pending.items())
                raise TimeoutError(
                    f"Kafka read stalled: {stalled} for {task.poll_timeout_ms} ms "
                    "(kafkaConsumer.pollTimeoutMs)"
                )
            wanted = sum(r.end - expected[key] for key, r in pending.items())
            messages = client.consume(num_messages=min(wanted, batch_rows), timeout=0.5)
            chunks: dict[Any, list[Any]] = {}  # (topic, partition) -> records
            log_ends: dict[Any, int] = {}
            for m in messages:
                key = (m.topic(), m.partition())
                error = m.error()
                if error is None:
                    chunks.setdefault(key, []).append(m)
                elif error.code() == KafkaError._PARTITION_EOF:
                    log_ends[key] = int(m.offset() or 0)
                else:
                    raise KafkaException(error)
            for key, records in chunks.items():
                r = pending.get(key)
                if r is None:  # fetched past the end of a partition already done
                    continue
                offsets: list[int] = [m.offset() for m in records]
                if offsets[-1] >= r.end:
                    records = [m for m, o in zip(records, offsets, strict=True) if o < r.end]
                    offsets = [o for o in offsets if o < r.end]
                if not records:
                    finish(key)
                    continue
                if offsets[0] != expected[key] or offsets[-1] - offsets[0] + 1 != len(offsets):
                    _check_gaps(task, r, expected[key], offsets)
                expected[key] = offsets[-1] + 1
                deadline = time.monotonic() + timeout_s
                yield _to_batch(records, offsets, r, schema)
                if expected[key] >= r.end:
                    finish(key)
            for key, end_of_log in log_ends.items():
                r = pending.get(key)
                if r is not None and expected[key] <= end_of_log < r.end:
                    # The log ends before the planned range does.
                    _lost(task, r, expected[key], r.end)
                    finish(key)
    finally:
        client.close()


def _to_batch(records: list[Any], offsets: list[int], r: OffsetRange, schema: Any) -> Any:
    # pyarrow alone: the kit installs neither numpy nor pandas, which pyarrow would
    # import into every Python worker (README, "Memory: the JVM's spikes were ...").
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(records)
    kinds, millis = zip(*[m.timestamp() for m in records], strict=True)
    kind = pa.array(kinds, pa.int32())
    stamp_type = schema.field("timestamp").type
    stamps = pc.multiply(pa.array(millis, pa.int64()), 1000).cast(stamp_type)
    missing = pc.equal(kind, 0)  # librdkafka: TIMESTAMP_NOT_AVAILABLE
    if pc.any(missing).as_py():
        stamps = pc.if_else(missing, pa.scalar(None, stamp_type), stamps)
    columns = [
        pa.array([m.key() for m in records], pa.binary()),
        pa.array([m.value() for m in records], pa.binary()),
        pa.repeat(pa.scalar(r.topic, pa.string()), n),
        pa.repeat(pa.scalar(r.partition, pa.int32()), n),
        pa.array(offsets, pa.int64()),
        stamps,
        # librdkafka's kinds (0 none, 1 create, 2 log-append) as Kafka's (-1, 0, 1).
        pc.subtract(kind, pa.scalar(1, pa.int32())),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _check_gaps(task: KafkaReadTask, r: OffsetRange, expected: int, offsets: list[int]) -> None:
    previous = expected - 1
    for offset in offsets:
        if offset != previous + 1:
            _lost(task, r, previous + 1, offset)
        previous = offset


def _lost(task: KafkaReadTask, r: OffsetRange, expected: int, got: int) -> None:
    message = (
        f"Kafka data loss: {r.topic}-{r.partition} offsets {expected}..{got - 1} are gone "
        f"(planned {r.start}..{r.end - 1})"
    )
    if task.fail_on_data_loss:
        raise KafkaDataLoss(message + "; set failOnDataLoss=false to skip")
    log.warning("%s; skipped (failOnDataLoss=false)", message)


