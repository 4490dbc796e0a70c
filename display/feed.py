"""The display server's Kafka feed: raw topics, results, health and dead letters -> Socket.IO.

One consumer, started at the end of every topic it follows (a page shows what
happens from now on; history comes from the store or the hub). Each message
is routed by the catalogue: raw records to the raw demos of their topic,
result rows to the demos that show their stream from their store.

Results, health and dead letters are always followed. A raw topic is followed only
while a page of one of its raw demos is open (``Hub.watched_raw_topics``): on Tansu
every fetch costs broker CPU in proportion to the record batches a partition holds,
and the raw topics were most of what the feed fetched (see README, "The broker's
CPU grows with uptime"). The index shows an unwatched raw demo's rate from its
sources' reports instead.

Latency: the loop blocks in ``poll()`` for the first message and then drains
what is already there with ``consume(n, 0)``: ``consume(n, timeout)`` alone
waits the whole timeout unless ``n`` messages arrive. Each partition is fetched at
most every DISPLAY_FETCH_MS (:func:`common.kafka.follower`): an unpaced follower
made the embedded broker's CPU grow without bound.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from common import catalogue, kafka, records, topics
from common.records import format_time, utc_now
from display.hub import Hub

__all__ = ["KafkaFeed", "route"]

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any], str], None]  # (event, data, namespace)

RAW_TOPICS = tuple(sorted({d.raw_topic for d in catalogue.DEMOS if d.raw_topic}))
#: What each raw topic must carry: a record that does not fit is counted, never pushed to a page.
RAW_TYPES = {getattr(topics, role.upper()).name: kind
             for role, kind in records.BY_TOPIC_ROLE.items()}
#: Followed whether or not a page is open.
ALWAYS_FOLLOWED = (topics.RESULTS.name, topics.HEALTH.name, topics.DEAD_LETTERS.name)


def route(hub: Hub, batch: dict[str, list[dict[str, Any]]], emit: Emit) -> None:
    """Send one poll's decoded messages (by topic) to the demos that show them."""
    pushed_at = format_time(utc_now())
    for topic, values in batch.items():
        if topic == topics.HEALTH.name:
            for value in values:
                hub.on_health(value)
        elif topic == topics.DEAD_LETTERS.name:
            hub.on_dead_letter(len(values))
        elif topic == topics.RESULTS.name:
            for value in values:
                stream, store = value.get("stream"), value.get("store")
                rows = value.get("rows") or []
                if not isinstance(stream, str) or not isinstance(rows, list):
                    log.warning("results message without stream/rows: %.200r", value)
                    continue
                timing = value.get("timing") if isinstance(value.get("timing"), dict) else {}
                for demo in hub.on_results(stream, str(store), len(rows), timing, pushed_at,
                                           value.get("stored_records"), value.get("query"),
                                           value.get("batch_id")):
                    emit("update", {"stream": stream, "store": store, "rows": rows,
                                    "batch_id": value.get("batch_id"),
                                    "written_at": value.get("written_at"),
                                    "timing": timing, "pushed_at": pushed_at}, demo.namespace)
        else:
            for demo in hub.on_raw(topic, values, pushed_at):
                emit("update", {"topic": topic, "records": values, "pushed_at": pushed_at},
                     demo.namespace)


class KafkaFeed:
    """A thread that follows :data:`ALWAYS_FOLLOWED`, and each of ``on_demand`` while
    ``hub`` has a page open that shows it, and routes each poll's messages."""

    def __init__(self, bootstrap: str, hub: Hub, emit: Emit, *, fetch_ms: int,
                 always: tuple[str, ...] = ALWAYS_FOLLOWED,
                 on_demand: tuple[str, ...] = RAW_TOPICS) -> None:
        self.bootstrap = bootstrap
        self.fetch_ms = fetch_ms
        self.hub = hub
        self.emit = emit
        self.always = always
        self.on_demand = on_demand
        self.malformed = 0
        #: topic -> partitions assigned now (read by tests and the status)
        self.following: dict[str, list[int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kafka-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def wanted(self) -> set[str]:
        return set(self.always) | (set(self.on_demand) & self.hub.watched_raw_topics())

    def _follow(self, consumer: Any, probe: Any, wanted: set[str]) -> None:
        """Assign the wanted topics not followed yet (from their end); drop the others."""
        dropped = [t for t in self.following if t not in wanted]
        if dropped:
            consumer.incremental_unassign([TopicPartition(t, p) for t in dropped
                                           for p in self.following.pop(t)])
            for topic in dropped:
                self.hub.on_unfollowed(topic)
        added = sorted(wanted - set(self.following))
        if not added:
            return
        parts = {t: ps for t, ps in kafka.partitions_of(probe, added).items() if ps}
        ends = kafka.end_offsets(probe, [(t, p) for t, ps in parts.items() for p in ps])
        consumer.incremental_assign([TopicPartition(t, p, ends[(t, p)][1])
                                     for t, ps in parts.items() for p in ps])
        self.following.update(parts)

    def _run(self) -> None:
        consumer = kafka.follower(self.bootstrap, self.fetch_ms)
        probe = kafka.offset_probe(self.bootstrap)
        try:
            while not self._stop.is_set():
                wanted = self.wanted()
                if wanted != set(self.following):
                    # Pages opened or closed, or topics still missing (an external broker
                    # may create them after the server starts).
                    try:
                        self._follow(consumer, probe, wanted)
                        self.hub.following = sorted(self.following)
                        self.hub.feed_error = None if self.following else "no topics yet"
                    except Exception as e:  # noqa: BLE001 - keep serving pages; report it
                        self.hub.feed_error = f"Kafka unavailable at {self.bootstrap}: {e}"
                        log.warning("%s", self.hub.feed_error)
                        self._stop.wait(2.0)
                        continue
                    if set(self.always) <= set(self.following):
                        self.ready.set()
                    missing = wanted - set(self.following)
                    if missing:
                        log.info("following %s; waiting for %s", sorted(self.following),
                                 sorted(missing))
                first = consumer.poll(0.5)
                if first is None:
                    if wanted != set(self.following):
                        self._stop.wait(1.0)
                    continue
                messages = [first, *consumer.consume(10_000, 0)]
                self._dispatch(messages)
        finally:
            consumer.close()
            probe.close()

    def _dispatch(self, messages: list[Any]) -> None:
        batch: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("Kafka error: %s", error)
                continue
            topic = msg.topic()
            try:
                value = json.loads(msg.value())
                if not isinstance(value, dict):
                    raise ValueError("not a JSON object")
                if topic in RAW_TYPES and topic in RAW_TOPICS:
                    records.from_json(RAW_TYPES[topic], value)  # RecordError is a ValueError
            except (TypeError, ValueError) as e:
                self.malformed += 1
                self.hub.on_malformed()
                log.debug("malformed message on %s: %s", topic, e)
                continue
            value.setdefault("kafka_time", msg.timestamp()[1])
            batch[msg.topic()].append(value)
        if batch:
            route(self.hub, batch, self.emit)
