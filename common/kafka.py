"""Kafka clients for the whole kit, on confluent-kafka (librdkafka).

One client library per role: confluent-kafka produces, consumes and administers
everywhere, including inside the Spark data source. Measured on these 2-core
machines against the embedded broker: the Spark source alone read 95,000
records/s with confluent-kafka and 32,000-38,000 with kafka-python; a plain
consumer 153,000 against 78,000; a producer 90,000-470,000 against 29,000.

:func:`end_offsets` works around a bug of the embedded broker (Tansu 0.6.0):
its ListOffsets(LATEST) answers the last record batch's base offset + 1, not
the high watermark. See the function's docstring.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common.topics import Topic

__all__ = [
    "KafkaUnavailable",
    "admin",
    "consumer",
    "create_topics",
    "end_offsets",
    "follower",
    "partitions_of",
    "producer",
    "wait_until_ready",
]

log = logging.getLogger(__name__)
#: librdkafka's own log lines (connection failures, retries) go through this logger.
client_log = logging.getLogger("librdkafka")


class KafkaUnavailable(RuntimeError):
    """No broker answered at the configured address within the deadline."""

    retriable = True


#: How long a producer waits to fill a record batch. Tansu 0.6.0's CPU grows with the number
#: of record batches a partition keeps (README, Benchmarks): with the host-metrics job at
#: 2,500 records/s, 5 ms -> 20 ms -> 50 ms took the broker from 0.65 to 0.20 to 0.10 of a
#: core and the tumbling query from 17 to 48 to 46 micro-batches a minute. At the sources'
#: low rates a record waits at most this long; ``flush()`` sends at once.
LINGER_MS = 20


def producer(bootstrap: str, **config: Any) -> Producer:
    """A producer tuned for small JSON records: short linger, lz4 batches, acks from all replicas."""
    base: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "linger.ms": LINGER_MS,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "acks": "all",
        "enable.idempotence": False,
        "queue.buffering.max.messages": 500_000,
        "logger": client_log,
    }
    base.update(config)
    return Producer(base)


def consumer(bootstrap: str, config: Mapping[str, Any] | None = None,
             group_id: str | None = None) -> Consumer:
    """A consumer; without ``group_id`` it is meant for ``assign()`` and never commits.

    ``config`` holds librdkafka properties that override the kit's defaults.
    """
    base: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id or f"streamkit-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": group_id is not None,
        "auto.offset.reset": "earliest",
        # Tansu answers the first JoinGroup after about half the session timeout.
        "session.timeout.ms": 6000,
        "enable.partition.eof": False,
        "logger": client_log,
    }
    base.update(config or {})
    return Consumer(base)


def offset_probe(bootstrap: str, config: Mapping[str, Any] | None = None) -> Consumer:
    """A consumer for :func:`end_offsets` only.

    Its fetches wait at most 100 ms, a compromise between two measured limits:

    * a broker answers requests on a connection in order, so a fetch long-polling
      at the log end holds up the next ListOffsets: with librdkafka's 500 ms,
      ``end_offsets`` took 305 ms on an idle topic (9 ms with 5 or 100 ms);
    * Tansu 0.6.0 answers a fetch with nothing when finding the offset takes longer
      than the fetch's wait, and that time grows with the record batches the
      partition holds: 5 ms stopped working at about 10,000 batches (one minute of
      1,000 records/s), 100 ms still worked at 80,000.
    """
    return consumer(bootstrap, {"fetch.wait.max.ms": 100, **(config or {})})


def follower(bootstrap: str, every_ms: int, config: Mapping[str, Any] | None = None) -> Consumer:
    """A consumer that follows the end of its partitions, fetching each at most every ``every_ms``.

    librdkafka fetches again as soon as a fetch returns data, so a consumer at the end
    of a partition written every 20 ms fetches about 50 times a second. On Tansu 0.6.0
    each fetch costs time that grows with the record batches the partition holds
    (about 1.7 us a batch: 18 ms at 10,000), so such a follower took a whole core
    after two minutes of 1,000 records/s on 3 partitions (27, 54, 81, 98% of a core at
    30, 60, 90, 120 s; the producer alone: 8-9%). Keeping at most one record queued
    (``queued.min.messages=1``) makes librdkafka back off ``fetch.queue.backoff.ms``
    after each fetch that brought data: with 100 ms the same run took 13, 19, 24% at 30,
    60, 90 s. Empty fetches wait ``every_ms`` at the broker (20 ms: 7-10% of a core idle).
    """
    return consumer(bootstrap, {"fetch.wait.max.ms": every_ms, "queued.min.messages": 1,
                                "fetch.queue.backoff.ms": every_ms, **(config or {})})


def admin(bootstrap: str, **config: Any) -> AdminClient:
    base: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": client_log, **config}
    return AdminClient(base)


def wait_until_ready(bootstrap: str, timeout_s: float) -> None:
    """Block until a real client fetches metadata from ``bootstrap``, or raise KafkaUnavailable."""
    # Quiet: "connection refused" is expected while a broker starts.
    client = admin(bootstrap, log_level=0)
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise KafkaUnavailable(
                f"no Kafka broker answered at {bootstrap} within {timeout_s:.0f} s "
                f"(last error: {last_error}); is KAFKA_BOOTSTRAP_SERVERS right and the broker up?"
            )
        try:
            client.list_topics(timeout=min(2.0, max(remaining, 0.1)))
            return
        except KafkaException as e:
            last_error = e


def create_topics(bootstrap: str, topics: Iterable[Topic], timeout_s: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Idempotent."""
    client = admin(bootstrap)
    existing = set(client.list_topics(timeout=timeout_s).topics)
    wanted = [t for t in topics if t.name not in existing]
    if not wanted:
        return []
    futures = client.create_topics(
        [NewTopic(t.name, num_partitions=t.partitions, replication_factor=1) for t in wanted],
        operation_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"creating topic {name} on {bootstrap} failed: {e}") from e
    # Wait until the metadata shows every partition, so producers never race topic creation.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meta = client.list_topics(timeout=timeout_s).topics
        if all(t.name in meta and len(meta[t.name].partitions) == t.partitions for t in wanted):
            break
        time.sleep(0.05)
    return created


def delete_topics(bootstrap: str, names: Iterable[str], timeout_s: float = 30.0) -> None:
    client = admin(bootstrap)  # keep a reference: the futures fail if the client is collected
    futures = client.delete_topics(list(names), operation_timeout=timeout_s)
    for future in futures.values():
        future.result(timeout=timeout_s)


def partitions_of(client: Consumer | AdminClient, topics: Iterable[str], timeout_s: float = 10.0
                  ) -> dict[str, list[int]]:
    """The partition ids of each topic; a missing topic maps to an empty list."""
    meta = client.list_topics(timeout=timeout_s).topics
    result: dict[str, list[int]] = {}
    for topic in topics:
        info = meta.get(topic)
        if info is None or info.error is not None:
            result[topic] = []
        else:
            result[topic] = sorted(info.partitions)
    return result


def end_offsets(
    probe: Consumer, partitions: Iterable[tuple[str, int]], timeout_s: float = 10.0,
    known: Mapping[tuple[str, int], tuple[int, int]] | None = None,
) -> dict[tuple[str, int], tuple[int, int]]:
    """(earliest, end) offsets of each (topic, partition), correct on Tansu 0.6.0 too.

    Tansu answers ListOffsets(LATEST) with the base offset of the last record
    batch + 1 instead of the high watermark (1,000 records sent as one batch:
    "end" says 1). The high watermark in a Fetch response is right. So: list
    the offsets, then fetch once from (listed - 1) and take the largest of the
    listed offset, the last offset fetched + 1 and the fetch's high watermark.
    On Apache Kafka the fetch returns one record and changes nothing.

    ``known``: (earliest, end) of partitions from an earlier call. A partition with a
    known, non-empty end skips ListOffsets: the fetch from (known end - 1) alone gives
    its end, and its earliest offset is kept. On Tansu each request costs time that grows
    with the partition's record batches (ListOffsets for both ends 23 ms, a fetch 17 ms
    at 10,000 batches), so this halves the cost of a probe. If that offset is gone (the
    topic was recreated) the partition is listed after all.

    ``probe`` must come from :func:`offset_probe` and serve nothing else: this reassigns it.
    """
    result: dict[tuple[str, int], tuple[int, int]] = {}
    trusted: set[tuple[str, int]] = set()  # ends taken from ``known``, to be confirmed
    for topic, partition in partitions:
        prior = known.get((topic, partition)) if known else None
        if prior is not None and prior[1] > prior[0]:
            result[(topic, partition)] = prior
            trusted.add((topic, partition))
            continue
        low, high = probe.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s, cached=False
        )
        result[(topic, partition)] = (max(low, 0), max(high, 0))
    pending = {key for key, (low, high) in result.items() if high > low}
    stale: set[tuple[str, int]] = set()
    if not pending:
        return result
    probe.assign([TopicPartition(t, p, result[(t, p)][1] - 1) for t, p in sorted(pending)])
    try:
        deadline = time.monotonic() + timeout_s
        # A known end past a recreated, empty log fetches nothing: list it after this long.
        trust_until = time.monotonic() + min(1.0, timeout_s)
        while pending:
            if trusted & pending and time.monotonic() > trust_until:
                stale |= trusted & pending
                pending -= trusted
                continue
            if time.monotonic() > deadline:
                raise KafkaUnavailable(
                    f"end offsets of {sorted(pending)} not fetched within {timeout_s} s"
                )
            for msg in probe.consume(num_messages=100_000, timeout=0.005):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                key = (str(msg.topic()), int(msg.partition() or 0))
                if key not in pending:
                    continue
                low, high = result[key]
                if key in trusted and msg.offset() != high - 1:
                    stale.add(key)  # the known end is gone: list this partition after all
                    pending.discard(key)
                    continue
                _, fetched_high = probe.get_watermark_offsets(
                    TopicPartition(*key), cached=True
                )
                result[key] = (low, max(high, int(msg.offset() or 0) + 1, fetched_high))
                pending.discard(key)
    finally:
        probe.unassign()
    if stale:
        result.update(end_offsets(probe, sorted(stale), timeout_s))
    return result


class JsonPublisher:
    """Publishes dicts as compact JSON; counts delivery failures instead of losing them silently.

    ``publish`` never blocks for long: when librdkafka's queue is full it serves
    delivery reports and retries. ``flush`` waits for every record to be
    acknowledged and raises if any failed, so a caller knows nothing was lost.
    """

    def __init__(self, bootstrap: str, **config: Any) -> None:
        self._producer = producer(bootstrap, **config)
        self.delivered = 0
        self.failed = 0
        self.last_error: str | None = None

    def _open(self, doing: str) -> Any:
        """The producer; a clear error instead of an AttributeError after :meth:`close`."""
        if self._producer is None:
            raise RuntimeError(f"{doing} after the publisher was closed")
        return self._producer

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.last_error = str(err)
            log.error("delivery failed: %s", err)

    def publish(self, topic: str, value: Mapping[str, Any] | bytes, key: str | None = None,
                timestamp_ms: int | None = None) -> None:
        payload = value if isinstance(value, bytes) else dumps(value)
        kwargs: dict[str, Any] = {"on_delivery": self._on_delivery}
        if key is not None:
            kwargs["key"] = key.encode()
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        producer = self._open(f"publishing to {topic}")
        while True:
            try:
                producer.produce(topic, payload, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self._open("flushing").flush(timeout_s)
        if remaining:
            raise KafkaUnavailable(f"{remaining} records not acknowledged within {timeout_s} s")
        if self.failed:
            raise KafkaUnavailable(f"{self.failed} records failed delivery: {self.last_error}")

    def close(self) -> None:
        """Flush, then drop the client: a live producer keeps its broker connections open."""
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None  # type: ignore[assignment]


def dumps(value: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes, the wire format of every topic."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()
