"""Kafka clients for the whole kit, on confluent-kafka (librdkafka).

One client library per role: confluent-kafka produces, consumes and administers
everywhere (Spark reads Kafka with its own JVM connector). Measured on these 2-core
machines: a plain consumer read 153,000 records/s with confluent-kafka against
78,000 with kafka-python; a producer sent 90,000-470,000 against 29,000.

Producers are idempotent with ``acks=all``: a send that librdkafka retries after a
lost acknowledgement is written once, so "every acknowledged record is stored
exactly once" holds across a broker restart.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from buffer.topics import Topic

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


#: How long a producer waits to fill a record batch. At the sources' low rates a record waits
#: at most this long; ``flush()`` sends at once. Larger batches cost the broker and Spark's
#: reads less per record (docs/benchmark-history.md).
LINGER_MS = 20


def producer(bootstrap: str, **config: Any) -> Producer:
    """A producer tuned for small JSON records: short linger, lz4 batches, idempotent, acks=all."""
    base: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "linger.ms": LINGER_MS,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "acks": "all",
        "enable.idempotence": True,
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
        # A member that died is replaced after 6 s, not librdkafka's 45.
        "session.timeout.ms": 6000,
        "enable.partition.eof": False,
        "logger": client_log,
    }
    base.update(config or {})
    return Consumer(base)


def offset_probe(bootstrap: str, config: Mapping[str, Any] | None = None) -> Consumer:
    """A consumer for :func:`end_offsets` and :func:`partitions_of` only (it never fetches)."""
    return consumer(bootstrap, config)


def follower(bootstrap: str, every_ms: int, config: Mapping[str, Any] | None = None) -> Consumer:
    """A consumer that follows the end of its partitions; an empty fetch waits ``every_ms``.

    A fetch at the end of a partition waits at the broker until data arrives or
    ``every_ms`` passes (``fetch.wait.max.ms``), so a record reaches the follower
    as soon as the broker has it and an idle follower asks about ``1000 / every_ms``
    times a second.
    """
    return consumer(bootstrap, {"fetch.wait.max.ms": every_ms, **(config or {})})


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


def create_topics(bootstrap: str, topics: Iterable[Topic], timeout_s: float = 30.0,
                  replication_factor: int = 1, min_insync_replicas: int | None = None
                  ) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Idempotent.

    ``replication_factor``: copies of each partition (KAFKA_REPLICATION_FACTOR; 1 on one
    broker, 3 on a cluster); ``min_insync_replicas``: how many must have a record before an
    ``acks=all`` producer is told it is written (None: the broker's default).
    """
    client = admin(bootstrap)
    existing = set(client.list_topics(timeout=timeout_s).topics)
    wanted = [t for t in topics if t.name not in existing]
    if not wanted:
        return []
    extra = {} if min_insync_replicas is None else {
        "min.insync.replicas": str(min_insync_replicas)}
    futures = client.create_topics(
        [NewTopic(t.name, num_partitions=t.partitions, replication_factor=replication_factor,
                  config={**t.config(), **extra})
         for t in wanted],
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
    # Wait until the metadata shows every partition with a leader, so that producers and
    # offset lookups never race topic creation (NOT_LEADER_FOR_PARTITION).
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meta = client.list_topics(timeout=timeout_s).topics
        if all(t.name in meta and len(meta[t.name].partitions) == t.partitions
               and all(p.leader >= 0 for p in meta[t.name].partitions.values()) for t in wanted):
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


_LEADER_MOVING = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)


def end_offsets(
    client: Consumer, partitions: Iterable[tuple[str, int]], timeout_s: float = 10.0,
) -> dict[tuple[str, int], tuple[int, int]]:
    """(earliest, end) offsets of each (topic, partition), as the broker lists them now.

    A partition without a leader yet (a topic just created, a broker restarting) is asked
    again until ``timeout_s``.
    """
    result: dict[tuple[str, int], tuple[int, int]] = {}
    deadline = time.monotonic() + timeout_s
    for topic, partition in partitions:
        while True:
            try:
                low, high = client.get_watermark_offsets(
                    TopicPartition(topic, partition),
                    timeout=max(0.1, deadline - time.monotonic()), cached=False)
                break
            except KafkaException as e:
                error = e.args[0]
                # librdkafka marks "not leader" as not retriable, but a moment later the
                # broker answers (seen on every fresh topic of Kafka 4.2).
                if not (error.retriable() or error.code() in _LEADER_MOVING) \
                        or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        result[(topic, partition)] = (max(low, 0), max(high, 0))
    return result


def positions(client: Consumer, topics: Iterable[str], at: str = "end", timeout_s: float = 10.0
              ) -> dict[str, list[TopicPartition]]:
    """Each topic's partitions at its ``end`` (what arrives from now on) or ``start``.

    What a follower assigns: ``consumer.assign(positions(probe, [t])[t])``. A topic that
    does not exist maps to an empty list.
    """
    if at not in ("end", "start"):
        raise ValueError(f"at must be 'end' or 'start', not {at!r}")
    parts = partitions_of(client, topics, timeout_s)
    offsets = end_offsets(client, [(t, p) for t, ps in parts.items() for p in ps], timeout_s)
    side = 1 if at == "end" else 0
    return {t: [TopicPartition(t, p, offsets[(t, p)][side]) for p in ps]
            for t, ps in parts.items()}


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

    def publish(self, topic: str, value: Mapping[str, Any] | msgspec.Struct | bytes,
                key: str | None = None, timestamp_ms: int | None = None) -> None:
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


_ENCODER = msgspec.json.Encoder(enc_hook=str)


def dumps(value: Mapping[str, Any] | msgspec.Struct) -> bytes:
    """Compact UTF-8 JSON bytes, the wire format of every topic (msgspec: see common.records).

    A value JSON has no form for is written as its ``str``."""
    return _ENCODER.encode(value)
