"""Reading a topic back in tests: what a source published, counted against what it was given."""

from __future__ import annotations

import json
import time
from typing import Any

from confluent_kafka import TopicPartition

from buffer import kafka


def _ends(bootstrap: str, topic: str) -> dict[tuple[str, int], tuple[int, int]]:
    probe = kafka.offset_probe(bootstrap)
    try:
        parts = kafka.partitions_of(probe, [topic])[topic]
        return kafka.end_offsets(probe, [(topic, p) for p in parts])
    finally:
        probe.close()


def records_in(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds (from its offsets)."""
    return sum(end - low for low, end in _ends(bootstrap, topic).values())


def _messages(bootstrap: str, topic: str, timeout_s: float) -> list[Any]:
    """Every message of ``topic``, read from each partition's start until its end offset."""
    ends = _ends(bootstrap, topic)
    expected = sum(end - low for low, end in ends.values())
    reader = kafka.consumer(bootstrap)
    reader.assign([TopicPartition(t, p, low) for (t, p), (low, _) in sorted(ends.items())])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected:
            assert time.monotonic() < deadline, f"read {len(out)} of {expected} records of {topic}"
            for msg in reader.consume(num_messages=10_000, timeout=0.2):
                assert msg.error() is None, msg.error()
                out.append(msg)
    finally:
        reader.close()
    return out


def read_topic(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Every record of ``topic`` (partition, offset, key, value), read until the end offsets."""
    return [{"partition": m.partition(), "offset": m.offset(),
             "key": m.key().decode() if m.key() is not None else None,
             "value": json.loads(m.value() or b"")}
            for m in _messages(bootstrap, topic, timeout_s)]


def raw_values(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list[bytes]:
    """Every record value of ``topic`` as bytes (JSON or not), read until the end offsets."""
    return [m.value() or b"" for m in _messages(bootstrap, topic, timeout_s)]
