"""buffer.kafka.end_offsets and create_topics against the real embedded broker."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka.admin import ConfigResource

from buffer import kafka, topics
from buffer.topics import Topic


def produce(bootstrap: str, topic: str, n: int, partition: int = 0) -> None:
    producer = kafka.producer(bootstrap, **{"linger.ms": 0})
    for i in range(n):
        producer.produce(topic, b'{"i": %d}' % i, partition=partition)
        if i % 7 == 0:
            producer.flush(5)  # several record batches, as a live source makes
    assert producer.flush(10) == 0


def test_end_offsets_are_the_high_watermarks(
        bootstrap: str, new_topic: Callable[[int], str]) -> None:
    topic = new_topic(2)
    produce(bootstrap, topic, 50, partition=0)
    wanted = [(topic, 0), (topic, 1)]
    probe = kafka.offset_probe(bootstrap)
    try:
        assert kafka.end_offsets(probe, wanted) == {(topic, 0): (0, 50), (topic, 1): (0, 0)}
        produce(bootstrap, topic, 30, partition=0)
        produce(bootstrap, topic, 5, partition=1)
        assert kafka.end_offsets(probe, wanted) == {(topic, 0): (0, 80), (topic, 1): (0, 5)}
    finally:
        probe.close()


def test_a_fresh_topic_answers_offsets_at_once(bootstrap: str) -> None:
    """Just after creation Kafka may say "not leader" once; end_offsets asks again."""
    name = "test-fresh-offsets"
    kafka.create_topics(bootstrap, [Topic(name, name, 3)])
    probe = kafka.offset_probe(bootstrap)
    try:
        assert kafka.end_offsets(probe, [(name, p) for p in range(3)], timeout_s=10) == {
            (name, p): (0, 0) for p in range(3)}
    finally:
        probe.close()
        kafka.delete_topics(bootstrap, [name])


def test_the_kits_topics_get_their_retention_from_the_definition_file(bootstrap: str) -> None:
    client = kafka.admin(bootstrap)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t.name) for t in topics.ALL]
    for resource, future in client.describe_configs(resources).items():
        topic = topics.by_name(resource.name)
        configs = future.result(timeout=10)
        for key, value in topic.config().items():
            assert configs[key].value == value, (topic.name, key)


def test_positions_are_where_a_follower_starts(
        bootstrap: str, new_topic: Callable[[int], str]) -> None:
    topic = new_topic(2)
    produce(bootstrap, topic, 12, partition=1)
    probe = kafka.offset_probe(bootstrap)
    try:
        end = kafka.positions(probe, [topic, "no-such-topic"])
        start = kafka.positions(probe, [topic], at="start")
    finally:
        probe.close()
    assert [(tp.partition, tp.offset) for tp in end[topic]] == [(0, 0), (1, 12)]
    assert [(tp.partition, tp.offset) for tp in start[topic]] == [(0, 0), (1, 0)]
    assert end["no-such-topic"] == []
