"""The ingest's Kafka sink: ``publish`` returns only once Kafka acknowledged the record."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, Producer

from buffer import topics
from common.records import Record, utc_now
from input.base import Clock, dead_letter_value

__all__ = ["PUBLISH_ERRORS", "AckingKafkaSink", "PublishError"]

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """Kafka did not acknowledge a record; the record may or may not be stored."""

    retriable = True


#: What a sink raises when Kafka did not take a record (KafkaUnavailable is a RuntimeError).
PUBLISH_ERRORS: tuple[type[Exception], ...] = (PublishError, KafkaException, BufferError, RuntimeError)


class AckingKafkaSink:
    """A :class:`~input.base.Sink` whose ``publish`` returns only once Kafka acknowledged the record.

    A background thread serves delivery reports; each ``publish`` waits for its
    own. librdkafka gives every record a definite outcome within
    ``message.timeout.ms`` (= ``ack_timeout_s``), so ``publish`` returns or raises
    :class:`PublishError` within about that time. Dead letters are sent without
    waiting; a failed one is logged and counted in ``dead_letter_failures``.
    """

    def __init__(self, bootstrap: str, ack_timeout_s: float = 10.0,
                 dead_letter_topic: str = topics.DEAD_LETTERS.name, clock: Clock = utc_now,
                 **producer_config: Any) -> None:
        from buffer import kafka

        config = {"linger.ms": 1, "message.timeout.ms": int(ack_timeout_s * 1000),
                  **producer_config}
        self._producer: Producer | None = kafka.producer(bootstrap, **config)
        self._dumps = kafka.dumps
        self.ack_timeout_s = ack_timeout_s
        self.dead_letter_topic = dead_letter_topic
        self.clock = clock
        self.dead_letter_failures = 0
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="ingest-delivery", daemon=True)
        self._poller.start()

    def _live(self) -> Producer:
        producer = self._producer
        if producer is None:
            raise PublishError("the Kafka sink is closed")
        return producer

    def _poll(self) -> None:
        producer = self._live()
        while not self._closed.is_set():
            producer.poll(0.1)

    def _produce(self, topic: str, payload: bytes, key: str | None,
                 on_delivery: Callable[[Any, Any], None], deadline: float) -> None:
        producer = self._live()
        while True:
            try:
                producer.produce(topic, payload, key=key.encode() if key else None,
                                 on_delivery=on_delivery)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise PublishError("the producer's queue stayed full") from None
                producer.poll(0.05)

    def publish(self, topic: str, key: str | None, record: Record) -> None:
        done = threading.Event()
        outcome: list[Any] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            outcome.append(err)
            done.set()

        deadline = time.monotonic() + self.ack_timeout_s
        self._produce(topic, record.encode(produced_at=self.clock()), key, on_delivery, deadline)
        if not done.wait(self.ack_timeout_s + 5.0):
            raise PublishError(f"no delivery report from {topic} within {self.ack_timeout_s + 5} s")
        if outcome[0] is not None:
            raise PublishError(f"delivery to {topic} failed: {outcome[0]}")

    def dead_letter(self, source: str, reason: str, raw: bytes | str) -> None:
        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                self.dead_letter_failures += 1
                log.error("ingest: dead letter not delivered: %s", err)

        value = dead_letter_value(source, reason, raw, self.clock())
        try:
            self._produce(self.dead_letter_topic, self._dumps(value), source, on_delivery,
                          time.monotonic() + 1.0)
        except (PublishError, KafkaException) as e:
            self.dead_letter_failures += 1
            log.error("ingest: dead letter not sent: %s", e)

    def flush(self) -> None:
        if self._producer is None:
            return
        remaining = self._producer.flush(self.ack_timeout_s)
        if remaining:
            raise PublishError(f"{remaining} records not acknowledged within {self.ack_timeout_s} s")

    def close(self) -> None:
        """Flush, stop the delivery thread and release the producer (and its connections)."""
        try:
            self.flush()
        finally:
            self._closed.set()
            self._poller.join(2)
            self._producer = None
