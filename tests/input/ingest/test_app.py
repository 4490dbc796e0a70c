"""The ingest's Flask app on a list sink: answers, rejections, dead letters, counters, and a
real HTTP server (:mod:`input.ingest.app`, over :mod:`input.ingest.handler`)."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from common.records import CaseReport, from_json
from input.base import ListSink
from input.ingest.app import ingest_of, serve
from input.ingest.sink import PublishError
from tests.input.ingest.support import CASE, make_app, post


@pytest.fixture
def app_and_sink() -> tuple[Flask, ListSink]:
    return make_app()


@pytest.fixture
def client(app_and_sink: tuple[Flask, ListSink]) -> FlaskClient:
    return app_and_sink[0].test_client()


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
