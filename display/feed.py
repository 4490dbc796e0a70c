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

Two consumers, each with its own thread: one for the always-followed topics (a few
messages a second), one for the raw topics. A consumer fetches all its partitions on a
broker in one request and, paced, waits after every fetch that brought data; so while a
raw topic flowed, each result waited for the raw topics' pacing too (stored -> pushed
0.20 s p50 in the e2e benchmark). Each partition of a raw topic is fetched at most
every DISPLAY_FETCH_MS (:func:`common.kafka.follower`): an unpaced follower made the
embedded broker's CPU grow without bound. The always-followed topics are fetched at
most every DISPLAY_RESULTS_FETCH_MS (50 ms): measured on one partition holding 5,000
record batches with a message every 0.1-0.5 s, 200 -> 50 ms took delivery from
57 / 126 to 11 / 27 ms (p50 / p95) and the broker from 2.1 to 3.4% of a core.

Latency: each loop blocks in ``poll()`` for the first message and then drains
what is already there with ``consume(n, 0)``: ``consume(n, timeout)`` alone
waits the whole timeout unless ``n`` messages arrive.
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
    """Two threads that follow :data:`ALWAYS_FOLLOWED`, and each of ``on_demand`` while
    ``hub`` has a page open that shows it, and route each poll's messages."""

    def __init__(self, bootstrap: str, hub: Hub, emit: Emit, *, fetch_ms: int,
                 results_fetch_ms: int | None = None,
                 always: tuple[str, ...] = ALWAYS_FOLLOWED,
                 on_demand: tuple[str, ...] = RAW_TOPICS) -> None:
        self.bootstrap = bootstrap
        self.fetch_ms = fetch_ms
        self.results_fetch_ms = fetch_ms if results_fetch_ms is None else results_fetch_ms
        self.hub = hub
        self.emit = emit
        self.always = always
        self.on_demand = on_demand
        #: per loop ("always", "raw"): the error that stops it from following, if any
        self._errors: dict[str, str | None] = {"always": None, "raw": None}
        #: per loop ("always", "raw"): topic -> partitions assigned now
        self._following: dict[str, dict[str, list[int]]] = {"always": {}, "raw": {}}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ready = threading.Event()

    @property
    def following(self) -> dict[str, list[int]]:
        """Topic -> partitions followed now, by either loop (read by tests and the status)."""
        return {t: ps for loop in list(self._following.values()) for t, ps in list(loop.items())}

    def start(self) -> None:
        loops = (("always", self.results_fetch_ms, lambda: set(self.always)),
                 ("raw", self.fetch_ms, self.wanted_raw))
        for name, every_ms, wanted in loops:
            thread = threading.Thread(target=self._run, args=(name, every_ms, wanted),
                                      name=f"kafka-feed-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)

    def wanted_raw(self) -> set[str]:
        return set(self.on_demand) & self.hub.watched_raw_topics()

    def _follow(self, consumer: Any, probe: Any, following: dict[str, list[int]],
                wanted: set[str]) -> None:
        """Assign the wanted topics not followed yet (from their end); drop the others."""
        dropped = [t for t in following if t not in wanted]
        if dropped:
            consumer.incremental_unassign([TopicPartition(t, p) for t in dropped
                                           for p in following.pop(t)])
            for topic in dropped:
                self.hub.on_unfollowed(topic)
        added = sorted(wanted - set(following))
        if not added:
            return
        parts = {t: ps for t, ps in kafka.partitions_of(probe, added).items() if ps}
        ends = kafka.end_offsets(probe, [(t, p) for t, ps in parts.items() for p in ps])
        consumer.incremental_assign([TopicPartition(t, p, ends[(t, p)][1])
                                     for t, ps in parts.items() for p in ps])
        following.update(parts)

    def _run(self, name: str, every_ms: int, wanted_now: Callable[[], set[str]]) -> None:
        consumer = kafka.follower(self.bootstrap, every_ms)
        probe = kafka.offset_probe(self.bootstrap)
        following = self._following[name]
        try:
            while not self._stop.is_set():
                wanted = wanted_now()
                if wanted != set(following):
                    # Pages opened or closed, or topics still missing (an external broker
                    # may create them after the server starts).
                    try:
                        self._follow(consumer, probe, following, wanted)
                        self.hub.following = sorted(self.following)
                        self._report(name, None)
                    except Exception as e:  # noqa: BLE001 - keep serving pages; report it
                        self._report(name, f"Kafka unavailable at {self.bootstrap}: {e}")
                        self._stop.wait(2.0)
                        continue
                    if set(self.always) <= set(self.following):
                        self.ready.set()
                    missing = wanted - set(following)
                    if missing:
                        log.info("following %s; waiting for %s", sorted(following),
                                 sorted(missing))
                first = consumer.poll(0.5)
                if first is None:
                    if wanted != set(following):
                        self._stop.wait(1.0)
                    continue
                messages = [first, *consumer.consume(10_000, 0)]
                self._dispatch(messages)
        finally:
            consumer.close()
            probe.close()

    def _report(self, loop: str, error: str | None) -> None:
        """Set ``hub.feed_error`` from both loops' errors (None when both follow)."""
        if error is not None and error != self._errors[loop]:
            log.warning("%s", error)
        self._errors[loop] = error
        errors = [e for e in self._errors.values() if e]
        self.hub.feed_error = errors[0] if errors else (
            None if self._following["always"] else "no topics yet")

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
                self.hub.on_malformed()  # counted there, under the hub's lock
                log.debug("malformed message on %s: %s", topic, e)
                continue
            value.setdefault("kafka_time", msg.timestamp()[1])
            batch[msg.topic()].append(value)
        if batch:
            route(self.hub, batch, self.emit)
