"""buffer.kafka.follower: follows a partition's end, misses nothing, waits at the broker when idle."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import TopicPartition

from buffer import kafka
from common.waiting import eventually

RECORDS = 150  # one every 10 ms, each its own record batch


def _assign_at_end(bootstrap: str, consumer: Any, topic: str) -> None:
    probe = kafka.offset_probe(bootstrap)
    try:
        ends = kafka.end_offsets(probe, [(topic, 0)])
    finally:
        probe.close()
    consumer.assign([TopicPartition(topic, 0, ends[(topic, 0)][1])])


def test_a_follower_receives_every_record_in_order(
        bootstrap: str, new_topic: Callable[[int], str]) -> None:
    topic = new_topic(1)
    consumer = kafka.follower(bootstrap, 50)
    _assign_at_end(bootstrap, consumer, topic)
    consumer.poll(0.2)  # joins the broker before the first record

    def produce() -> None:
        producer = kafka.producer(bootstrap, **{"linger.ms": 0})
        for i in range(RECORDS):
            producer.produce(topic, json.dumps({"i": i}).encode(), partition=0)
            producer.flush(5)
            time.sleep(0.01)  # pacing the producer, not synchronising: one batch per record

    writer = threading.Thread(target=produce)
    writer.start()
    seen: list[int] = []
    try:
        def all_received() -> bool:
            seen.extend(json.loads(m.value())["i"] for m in consumer.consume(1000, 0.05)
                        if m.error() is None)
            return len(seen) >= RECORDS

        eventually(all_received, 30, f"{RECORDS} records followed")
    finally:
        writer.join()
        consumer.close()
    assert seen == list(range(RECORDS))


def test_an_idle_follower_waits_at_the_broker_instead_of_spinning(
        bootstrap: str, new_topic: Callable[[int], str]) -> None:
    topic = new_topic(1)
    stats: list[dict[str, Any]] = []
    consumer = kafka.follower(bootstrap, 200, {"statistics.interval.ms": 200,
                                               "stats_cb": lambda s: stats.append(json.loads(s))})
    _assign_at_end(bootstrap, consumer, topic)
    try:
        eventually(lambda: consumer.poll(0.1) is None and stats and stats[-1]["age"] > 2e6,
                   30, "two seconds of statistics")
    finally:
        consumer.close()
    last = max(stats, key=lambda s: s["age"])
    fetches = sum(b.get("req", {}).get("Fetch", 0) for b in last["brokers"].values())
    seconds = last["age"] / 1e6
    # One fetch per 200 ms of waiting at the broker, plus a quarter for timer jitter and the
    # fetches around joining; a consumer that did not wait would make hundreds.
    assert fetches <= 1.25 * seconds / 0.2 + 3, (fetches, seconds)
