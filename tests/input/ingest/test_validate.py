"""What the ingest accepts, without Flask or Kafka (:mod:`input.ingest.validate`)."""

from __future__ import annotations

import json

import pytest

from common.records import CaseReport
from input.ingest.validate import (
    STATUS,
    IngestConfigError,
    Rejection,
    Route,
    routes_for,
    validate,
)
from tests.input.ingest.support import CASE


def test_ingest_topics_are_checked_at_start() -> None:
    assert routes_for(("cases",)) == {"cases": Route("cases", CaseReport)}
    with pytest.raises(IngestConfigError, match="INGEST_TOPICS: unknown topic 'nope'"):
        routes_for(("cases", "nope"))
    with pytest.raises(IngestConfigError, match="topic results has no record type"):
        routes_for(("results",))
    with pytest.raises(IngestConfigError, match="INGEST_TOPICS is empty"):
        routes_for(())


def test_validate_returns_the_record_or_the_rejection_code() -> None:
    routes = {"cases": Route("cases", CaseReport)}
    body = json.dumps(CASE).encode()
    record, route = validate(routes, 1024, "cases", "application/json", None, body, len(body))
    assert route is routes["cases"] and isinstance(record, CaseReport) and record.id == "c-1"
    cases = [
        ("nope", "application/json", None, body, "unknown_topic"),
        ("cases", "text/plain", None, body, "unsupported_media_type"),
        ("cases", "application/json", "latin-1", body, "unsupported_media_type"),
        ("cases", "application/json", None, None, "body_too_large"),
        ("cases", "application/json", None, b"{broken", "invalid_json"),
        ("cases", "application/json", None, b"\xff", "invalid_json"),
        ("cases", "application/json", None, b'{"n": NaN}', "invalid_json"),
        ("cases", "application/json", None, json.dumps({**CASE, "age": 200}).encode(), "schema"),
    ]
    for name, mimetype, charset, data, code in cases:
        with pytest.raises(Rejection) as rejected:
            validate(routes, 1024, name, mimetype, charset, data, None)
        assert rejected.value.code == code and code in STATUS, (name, mimetype, data)
    assert validate(routes, 1024, "cases", "application/cases+json", "UTF-8", body, None)[0] == record
