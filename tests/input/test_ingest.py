"""HTTP ingest: status codes and reasons, dead letters, counters, and acknowledged publishing."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from buffer.broker import free_port
from common import settings
from common.records import CaseReport, from_json
from common.waiting import eventually
from input.base import ListSink
from input.ingest import (
    AckingKafkaSink,
    IngestConfigError,
    PublishError,
    Route,
    create_app,
    ingest_of,
    routes_for,
    serve,
)
from tests.kafka_topics import read_topic, records_in

ROOT = Path(__file__).resolve().parent.parent.parent
T0 = dt.datetime(2026, 11, 22, 6, 0, tzinfo=dt.UTC)
CASE = {"id": "c-1", "name": "Ada", "location": "Boston", "state": "MA", "age": 36,
        "infection": "influenza", "event_time": "2026-11-22T05:59:58.250Z"}


def make_app(sink: Any = None, max_body: int = 1024, **kw: Any) -> tuple[Flask, Any]:
    sink = sink if sink is not None else ListSink()
    config = settings.load(environ={"INGEST_MAX_BODY_BYTES": str(max_body)})
    return create_app(config, sink=sink, clock=lambda: T0, **kw), sink


@pytest.fixture
def app_and_sink() -> tuple[Flask, ListSink]:
    return make_app()


@pytest.fixture
def client(app_and_sink: tuple[Flask, ListSink]) -> FlaskClient:
    return app_and_sink[0].test_client()


def post(client: FlaskClient, body: Any, path: str = "/ingest/cases",
         content_type: str = "application/json") -> Any:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(path, data=data, content_type=content_type)


def test_a_valid_case_is_published_whole_and_answered_202(
        client: FlaskClient, app_and_sink: tuple[Flask, ListSink]) -> None:
    response = post(client, {**CASE, "extra": "dropped", "produced_at": "x"})
    assert response.status_code == 202
    assert response.json == {"accepted": True, "topic": "cases", "key": "Boston"}
    sink = app_and_sink[1]
    assert sink.published == [("cases", "Boston", {**CASE, "event_time": "2026-11-22T05:59:58.250000Z"})]
    assert from_json(CaseReport, sink.published[0][2]).age == 36
    assert ingest_of(app_and_sink[0]).accepted == 1 and sink.dead == []


@pytest.mark.parametrize(("path", "body", "content_type", "status", "code", "reason"), [
    ("/ingest/vmstat", CASE, "application/json", 404, "unknown_topic",
     "topic 'vmstat' is not accepted here; accepted: cases (INGEST_TOPICS)"),
    ("/ingest/cases", CASE, "text/plain", 415, "unsupported_media_type",
     "content type must be application/json, got 'text/plain'"),
    ("/ingest/cases", CASE, "", 415, "unsupported_media_type",
     "content type must be application/json, got 'none'"),
    ("/ingest/cases", CASE, "application/json; charset=latin-1", 415, "unsupported_media_type",
     "charset must be utf-8, got 'latin-1'"),
    ("/ingest/cases", b'{"id": "c-1", ', "application/json", 400, "invalid_json",
     "body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 15 (char 14)"),
    ("/ingest/cases", b'{"id": "\xff"}', "application/json", 400, "invalid_json",
     "body is not UTF-8: 'utf-8' codec can't decode byte 0xff in position 8: invalid start byte"),
    ("/ingest/cases", {**CASE, "age": NotImplemented}, "application/json", 400, "invalid_json",
     "body is not valid JSON: NaN is not JSON"),
    ("/ingest/cases", [CASE], "application/json", 400, "schema",
     "not a valid CaseReport: expected a JSON object, got list"),
    ("/ingest/cases", {k: v for k, v in CASE.items() if k != "age"}, "application/json", 400,
     "schema", "not a valid CaseReport: field age is missing"),
    ("/ingest/cases", {**CASE, "age": "36"}, "application/json", 400, "schema",
     "not a valid CaseReport: field age: expected int, got str"),
    ("/ingest/cases", {**CASE, "event_time": "2026-11-22T05:59:58"}, "application/json", 400,
     "schema", "not a valid CaseReport: field event_time is not an ISO 8601 time with a zone: "
     "Expected `datetime` with a timezone component"),
    ("/ingest/cases", {**CASE, "age": -1}, "application/json", 400, "schema",
     "not a valid CaseReport: field age must be between 0 and 150, got -1"),
    ("/ingest/cases", {**CASE, "location": " "}, "application/json", 400, "schema",
     "not a valid CaseReport: field location must not be empty"),
])
def test_rejections_answer_the_status_and_reason_and_are_dead_lettered(
        client: FlaskClient, app_and_sink: tuple[Flask, ListSink], path: str, body: Any,
        content_type: str, status: int, code: str, reason: str) -> None:
    if isinstance(body, dict) and body.get("age") is NotImplemented:
        body = json.dumps({**CASE, "age": 0}).replace('"age": 0', '"age": NaN')
    response = post(client, body, path, content_type)
    assert response.status_code == status
    assert response.json == {"error": code, "reason": reason}
    app, sink = app_and_sink
    assert sink.published == []
    assert len(sink.dead) == 1
    source, dead_reason, raw = sink.dead[0]
    assert source == "ingest" and dead_reason.startswith(f"{code} (POST {path}): {reason}")
    ingest = ingest_of(app)
    assert (ingest.accepted, ingest.rejected, ingest.rejected_by_reason) == (0, 1, {code: 1})


def test_a_body_over_the_limit_is_413_and_not_read(
        client: FlaskClient, app_and_sink: tuple[Flask, ListSink]) -> None:
    body = json.dumps({**CASE, "name": "x" * 2000})
    response = post(client, body)
    assert response.status_code == 413
    assert response.json == {
        "error": "body_too_large",
        "reason": f"body of {len(body)} bytes is larger than 1024 bytes (INGEST_MAX_BODY_BYTES)"}
    _, reason, raw = app_and_sink[1].dead[0]
    assert raw == b"" and reason.endswith(f"[body of {len(body)} bytes not read]")


def test_dead_letters_keep_a_bounded_part_of_the_body() -> None:
    app, sink = make_app(max_body=65536)
    body = json.dumps({**CASE, "age": "old", "name": "é" * 10_000})
    assert post(app.test_client(), body).status_code == 400
    _, reason, raw = sink.dead[0]
    assert isinstance(raw, str) and len(raw) == 2048 and body.startswith(raw)
    assert reason.endswith(f"[body truncated to 2048 of {len(body.encode())} bytes]")
    assert post(app.test_client(), b"\xff" * 5000).status_code == 400
    assert sink.dead[1][2] == b"\xff" * 2048


def test_counters_are_served_and_sum_to_the_requests(
        client: FlaskClient, app_and_sink: tuple[Flask, ListSink]) -> None:
    for i in range(7):
        assert post(client, {**CASE, "id": f"c-{i}"}).status_code == 202
    post(client, b"nope")
    post(client, b"nope")
    post(client, CASE, path="/ingest/health")
    post(client, CASE, content_type="text/csv")
    stats = client.get("/ingest/stats").json
    assert stats == {"accepted": 7, "rejected": 4, "failed": 0,
                     "rejected_by_reason": {"invalid_json": 2, "unknown_topic": 1,
                                            "unsupported_media_type": 1},
                     "topics": {"cases": "cases"}, "time": "2026-11-22T06:00:00.000Z"}
    ingest = ingest_of(app_and_sink[0])
    assert (ingest.accepted, ingest.rejected, ingest.failed) == (7, 4, 0)
    assert client.get("/healthz").json == {"status": "ok", "accepted": 7, "rejected": 4, "failed": 0}
    assert len(app_and_sink[1].published) == 7 and len(app_and_sink[1].dead) == 4


def test_a_publish_failure_is_503_and_counted_as_failed() -> None:
    class Down(ListSink):
        def publish(self, topic: str, key: str | None, value: dict[str, Any]) -> None:
            raise PublishError("delivery to cases failed: broker down")

    app, sink = make_app(Down())
    response = post(app.test_client(), CASE)
    assert response.status_code == 503
    assert response.json == {"error": "unavailable", "reason":
                             "Kafka did not take the record: delivery to cases failed: broker down"}
    assert ingest_of(app).stats()["failed"] == 1 and sink.dead == []


def test_other_routes_answer_json_errors(client: FlaskClient) -> None:
    response = client.get("/ingest/cases")
    assert response.status_code == 405 and (response.json or {})["error"] == "method_not_allowed"
    assert client.get("/nowhere").status_code == 404


def test_ingest_topics_are_checked_at_start() -> None:
    assert routes_for(("cases",)) == {"cases": Route("cases", CaseReport)}
    with pytest.raises(IngestConfigError, match="INGEST_TOPICS: unknown topic 'nope'"):
        routes_for(("cases", "nope"))
    with pytest.raises(IngestConfigError, match="topic results has no record type"):
        routes_for(("results",))
    with pytest.raises(IngestConfigError, match="INGEST_TOPICS is empty"):
        routes_for(())


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


def test_a_real_http_413_leaves_the_server_serving() -> None:
    app, sink = make_app(max_body=256)
    server = serve(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.request("POST", "/ingest/cases", body=b"{" + b" " * 5000 + b"}",
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"] == "body_too_large"
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.request("POST", "/ingest/cases", body=json.dumps(CASE),
                     headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 202
        conn.close()
    finally:
        server.shutdown()
        thread.join(5)
    assert len(sink.published) == 1 and len(sink.dead) == 1


def test_python_m_input_ingest_serves_and_stops_on_sigterm(bootstrap: str, tmp_path: Path) -> None:
    log_path = tmp_path / "ingest.log"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "INGEST_PORT": "0",
           "LOG_LEVEL": "info", "DATA_DIR": str(tmp_path)}
    with log_path.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "input.ingest"], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        def port() -> int | None:
            for line in log_path.read_text().splitlines():
                if "listening on http://127.0.0.1:" in line:
                    return int(line.split("127.0.0.1:")[1].split("/")[0])
            if process.poll() is not None:
                raise AssertionError(log_path.read_text())
            return None

        url = f"http://127.0.0.1:{eventually(port, 30, 'the ingest to listen')}"
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
            assert json.loads(r.read())["status"] == "ok"
        with urllib.request.urlopen(f"{url}/ingest/stats", timeout=5) as r:
            assert json.loads(r.read())["topics"] == {"cases": "cases"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert "ingest: stopped;" in log_path.read_text()


def test_help_names_the_settings() -> None:
    result = subprocess.run([sys.executable, "-m", "input.ingest", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for name in ("INGEST_HOST", "INGEST_PORT", "INGEST_MAX_BODY_BYTES", "INGEST_TOPICS"):
        assert name in result.stdout

