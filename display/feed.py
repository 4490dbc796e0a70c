"""The display server's Kafka feed: raw topics, results, health and dead letters -> Socket.IO.

One consumer, started at the end of every topic it follows (a page shows what
happens from now on; history comes from the store or the hub). Each message
is routed by the catalogue: raw records to the raw demos of their topic,
result rows to the demos that show their stream from their store.

Results, health and dead letters are always followed. A raw topic is followed only
while a page of one of its raw demos is open (``Hub.watched_raw_topics``): a server
with no page open reads nothing it would throw away. The index shows an unwatched
raw demo's rate from its sources' reports instead.

Two consumers, each with its own thread: one for the always-followed topics (a few
messages a second), one for the raw topics, so that a result never waits behind a
busy raw topic's fetch. An empty fetch waits at the broker at most
DISPLAY_RESULTS_FETCH_MS (results) or DISPLAY_FETCH_MS (raw topics) and returns as
soon as a record arrives (:func:`buffer.kafka.follower`).

Latency: each loop blocks in ``poll()`` for the first message and then drains
what is already there with ``consume(n, 0)``: ``consume(n, timeout)`` alone
waits the whole timeout unless ``n`` messages arrive.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from buffer import kafka, topics
from common import catalogue, messages, records
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


def route(hub: Hub, batch: dict[str, list[Any]], emit: Emit) -> None:
    """Send one poll's decoded messages (by topic) to the demos that show them: on
    ``health`` a :data:`messages.HealthMessage`, on ``results`` a
    :class:`messages.ResultsBatch`, on a raw topic the record's JSON object."""
    pushed_at = format_time(utc_now())
    for topic, values in batch.items():
        if topic == topics.HEALTH.name:
            for value in values:
                hub.on_health(value)
        elif topic == topics.DEAD_LETTERS.name:
            hub.on_dead_letter(len(values))
        elif topic == topics.RESULTS.name:
            for result in values:
                for demo in hub.on_results(result, pushed_at):
                    emit("update", {"stream": result.stream, "store": result.store,
                                    "rows": result.rows, "batch_id": result.batch_id,
                                    "written_at": result.written_at,
                                    "timing": result.timing, "pushed_at": pushed_at},
                         demo.namespace)
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
        #: per loop: when its clients found the broker unreachable (time.time()), while they do
        self._down_since: dict[str, float] = {}
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
        ends = {t: ps for t, ps in kafka.positions(probe, added, at="end").items() if ps}
        consumer.incremental_assign([tp for tps in ends.values() for tp in tps])
        following.update({t: [tp.partition for tp in tps] for t, tps in ends.items()})

    def _on_client_error(self, loop: str, error: KafkaError) -> None:
        """librdkafka's error callback: the broker cannot be reached (runs in poll())."""
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT) \
                and loop not in self._down_since:
            self._down_since[loop] = time.time()
            since = time.strftime("%H:%M:%S", time.gmtime(self._down_since[loop]))
            self._report(loop, f"Kafka unreachable at {self.bootstrap} since {since} UTC "
                               f"({error.str()})")

    def _check_back(self, loop: str, probe: Any) -> None:
        """While the broker is unreachable: clear the error once a metadata request succeeds."""
        try:
            probe.list_topics(timeout=1.0)
        except Exception:  # noqa: BLE001 - still down
            return
        down = self._down_since.pop(loop, None)
        if down is not None:
            log.info("Kafka at %s reachable again after %.0f s", self.bootstrap, time.time() - down)
        self._report(loop, None)

    def _run(self, name: str, every_ms: int, wanted_now: Callable[[], set[str]]) -> None:
        errors = {"error_cb": lambda error: self._on_client_error(name, error)}
        consumer = kafka.follower(self.bootstrap, every_ms, errors)
        probe = kafka.offset_probe(self.bootstrap, errors)
        following = self._following[name]
        try:
            while not self._stop.is_set():
                if name in self._down_since:
                    self._check_back(name, probe)
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

    def _dispatch(self, polled: list[Any]) -> None:
        batch: dict[str, list[Any]] = defaultdict(list)
        for msg in polled:
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("Kafka error: %s", error)
                continue
            topic = msg.topic()
            value: Any
            try:  # MessageError and RecordError are ValueErrors
                if topic == topics.HEALTH.name:
                    value = messages.decode_health(msg.value() or b"")
                elif topic == topics.RESULTS.name:
                    value = messages.decode_results(msg.value() or b"")
                else:
                    value = json.loads(msg.value())
                    if not isinstance(value, dict):
                        raise ValueError("not a JSON object")
                    if topic in RAW_TYPES and topic in RAW_TOPICS:
                        records.from_json(RAW_TYPES[topic], value)
                    value.setdefault("kafka_time", msg.timestamp()[1])
            except (TypeError, ValueError) as e:
                self.hub.on_malformed()  # counted there, under the hub's lock
                log.debug("malformed message on %s: %s", topic, e)
                continue
            batch[topic].append(value)
        if batch:
            route(self.hub, batch, self.emit)
