"""common.kafka.end_offsets against the real embedded broker, with and without known ends."""

from __future__ import annotations

from collections.abc import Callable

from common import kafka
from common.topics import Topic


def produce(bootstrap: str, topic: str, n: int, partition: int = 0) -> None:
    producer = kafka.producer(bootstrap, **{"linger.ms": 0})
    for i in range(n):
        producer.produce(topic, b'{"i": %d}' % i, partition=partition)
        if i % 7 == 0:
            producer.flush(5)  # several record batches, as a live source makes
    assert producer.flush(10) == 0


def test_known_ends_give_the_same_offsets_as_listing(
        bootstrap: str, new_topic: Callable[[int], str]) -> None:
    topic = new_topic(2)
    produce(bootstrap, topic, 50, partition=0)
    wanted = [(topic, 0), (topic, 1)]
    probe = kafka.offset_probe(bootstrap)
    try:
        first = kafka.end_offsets(probe, wanted)
        assert first == {(topic, 0): (0, 50), (topic, 1): (0, 0)}
        produce(bootstrap, topic, 30, partition=0)
        produce(bootstrap, topic, 5, partition=1)
        assert kafka.end_offsets(probe, wanted, known=first) == kafka.end_offsets(probe, wanted)
        assert kafka.end_offsets(probe, wanted, known=first) == {
            (topic, 0): (0, 80), (topic, 1): (0, 5)}
    finally:
        probe.close()


def test_a_known_end_that_is_gone_is_listed_again(bootstrap: str) -> None:
    topic = "test-recreated-offsets"
    kafka.create_topics(bootstrap, [Topic(topic, topic, 1)])
    probe = kafka.offset_probe(bootstrap)
    try:
        produce(bootstrap, topic, 40)
        known = kafka.end_offsets(probe, [(topic, 0)])
        assert known == {(topic, 0): (0, 40)}
        kafka.delete_topics(bootstrap, [topic])
        kafka.create_topics(bootstrap, [Topic(topic, topic, 1)])
        # A new probe: librdkafka 2.16 crashed (SIGSEGV) in the old one's next request after
        # the topic was recreated on Tansu, with or without known ends.
        probe.close()
        probe = kafka.offset_probe(bootstrap)
        # Recreated empty: nothing at the known end, nothing to fetch at all.
        assert kafka.end_offsets(probe, [(topic, 0)], timeout_s=5, known=known) == {
            (topic, 0): (0, 0)}
        produce(bootstrap, topic, 12)
        assert kafka.end_offsets(probe, [(topic, 0)], timeout_s=5, known=known) == {
            (topic, 0): (0, 12)}
    finally:
        probe.close()
        kafka.delete_topics(bootstrap, [topic])
