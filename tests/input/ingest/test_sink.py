"""The acknowledged Kafka sink behind the ingest, on a real broker (:mod:`input.ingest.sink`)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from buffer.broker import free_port
from common.records import CaseReport, from_json
from input.ingest.app import ingest_of
from input.ingest.sink import AckingKafkaSink
from input.ingest.validate import Route
from tests.input.ingest.support import CASE, T0, make_app, post
from tests.kafka_topics import read_topic, records_in


@pytest.fixture
def kafka_ingest(bootstrap: str, new_topic: Any) -> Iterator[tuple[Flask, str, str]]:
    """An app publishing ``cases`` to a fresh topic, dead letters to another."""
    topic, dead = new_topic(3), new_topic(1)
    sink = AckingKafkaSink(bootstrap, dead_letter_topic=dead, clock=lambda: T0)
    app, _ = make_app(sink, routes={"cases": Route(topic, CaseReport)})
    try:
        yield app, topic, dead
    finally:
        ingest_of(app).close()




def test_202_means_kafka_has_the_record(bootstrap: str, kafka_ingest: tuple[Flask, str, str]) -> None:
    app, topic, _ = kafka_ingest
    client = app.test_client()
    for i in range(3):
        assert post(client, {**CASE, "id": f"ack-{i}"}).status_code == 202
        assert records_in(bootstrap, topic) == i + 1  # acknowledged before the answer


def test_count_in_equals_published_plus_rejected(
        bootstrap: str, kafka_ingest: tuple[Flask, str, str]) -> None:
    app, topic, dead = kafka_ingest
    client = app.test_client()
    cities = ["Boston", "Denver", "Austin", "Seattle", "Miami"]
    bodies: list[tuple[Any, str]] = []
    for i in range(40):
        bodies.append(({**CASE, "id": f"k-{i}", "location": cities[i % 5]}, "application/json"))
        if i % 4 == 0:
            bodies.append((b"{broken", "application/json"))
        if i % 8 == 0:
            bodies.append(({**CASE, "age": "x"}, "application/json"))
    bodies.append((CASE, "text/plain"))
    statuses = Counter(post(client, body, content_type=ct).status_code for body, ct in bodies)
    ingest = ingest_of(app)
    assert statuses == {202: 40, 400: 15, 415: 1}
    assert ingest.accepted + ingest.rejected == len(bodies) == 56 and ingest.failed == 0
    ingest.sink.flush()  # dead letters are sent without waiting
    records = read_topic(bootstrap, topic)
    assert len(records) == ingest.accepted == 40
    assert sorted(from_json(CaseReport, r["value"]).id for r in records) == sorted(
        f"k-{i}" for i in range(40))
    assert all(r["key"] == r["value"]["location"] for r in records)
    assert {r["value"]["produced_at"] for r in records} == {"2026-11-22T06:00:00.000Z"}
    dead_letters = read_topic(bootstrap, dead)
    assert len(dead_letters) == ingest.rejected == 16
    assert Counter(d["value"]["reason"].split(" ")[0] for d in dead_letters) == {
        "invalid_json": 10, "schema": 5, "unsupported_media_type": 1}
    assert {d["value"]["source"] for d in dead_letters} == {"ingest"}


def test_an_unreachable_broker_answers_503_within_the_ack_timeout() -> None:
    sink = AckingKafkaSink(f"127.0.0.1:{free_port()}", ack_timeout_s=1.0, log_level=0)
    app, _ = make_app(sink)
    started = time.monotonic()
    response = post(app.test_client(), CASE)
    assert response.status_code == 503 and "Kafka did not take the record" in response.json["reason"]
    assert time.monotonic() - started < 8
    assert ingest_of(app).failed == 1
    ingest_of(app).close()  # nothing is left to flush: the record has failed for good
