"""common.kafka.follower: paced fetches at a partition's end, nothing missed (real broker)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import TopicPartition

from common import kafka
from common.waiting import eventually

RECORDS = 150  # one every 10 ms, each its own record batch


def follow(bootstrap: str, topic: str, make: Callable[[dict[str, Any]], Any]
           ) -> tuple[int, int, float]:
    """(records received, Fetch requests sent, seconds the consumer lived until that count)
    while a producer writes every 10 ms."""
    stats: list[dict[str, Any]] = []
    consumer = make({"statistics.interval.ms": 200, "stats_cb": lambda s: stats.append(json.loads(s))})
    ends = kafka.end_offsets(kafka.offset_probe(bootstrap), [(topic, 0)])
    consumer.assign([TopicPartition(topic, 0, ends[(topic, 0)][1])])
    received = 0
    done = threading.Event()

    def produce() -> None:
        producer = kafka.producer(bootstrap, **{"linger.ms": 0})
        for i in range(RECORDS):
            producer.produce(topic, json.dumps({"i": i}).encode(), partition=0)
            producer.flush(5)
            done.wait(0.01)
        done.set()

    consumer.poll(0.2)  # joins the broker before the first record
    writer = threading.Thread(target=produce)
    writer.start()
    try:
        def all_received() -> bool:
            nonlocal received
            received += sum(1 for m in consumer.consume(1000, 0.05) if m.error() is None)
            return received >= RECORDS

        eventually(all_received, 30, f"{RECORDS} records followed")
        consumer.poll(0.3)  # one more statistics report
    finally:
        writer.join()
        consumer.close()
    # Counts are cumulative from the consumer's creation, so they are set against its
    # age ("age", microseconds) in the same report, not against the producer's time.
    last = max(stats, key=lambda s: s["age"])
    fetches = sum(b.get("req", {}).get("Fetch", 0) for b in last["brokers"].values())
    return received, fetches, last["age"] / 1e6


def test_a_follower_fetches_at_most_every_interval_and_misses_nothing(
        bootstrap: str, new_topic: Callable[[int], str]) -> None:
    topic = new_topic(1)
    got, paced, seconds = follow(bootstrap, topic,
                                 lambda extra: kafka.follower(bootstrap, 200, extra))
    got_plain, plain, plain_seconds = follow(bootstrap, topic, lambda extra: kafka.consumer(
        bootstrap, {"fetch.wait.max.ms": 20, **extra}))
    assert got == got_plain == RECORDS
    # ~1.5-2 s of records, one every 10 ms: a consumer waiting 20 ms fetches after
    # nearly each one (measured 170); the follower about every 200 ms (measured 10 in 1.9 s).
    # The bound allows timer jitter (a quarter) and the fetches around joining.
    def bound(seconds: float) -> float:
        return 1.25 * seconds / 0.2 + 3

    assert paced <= bound(seconds), (paced, seconds)
    assert plain > 2 * bound(plain_seconds), (plain, plain_seconds)
