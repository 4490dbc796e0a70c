"""What the ingest accepts: the routes of INGEST_TOPICS and the checks of one request body.

:func:`routes_for` turns ``INGEST_TOPICS`` into :class:`Route` s (URL name = Kafka topic,
with the record type bodies must fit); :func:`validate` checks one ``POST
/ingest/<name>`` (topic, content type, charset, size, UTF-8, JSON, the record type and
:data:`EXTRA_CHECKS`) and returns the record or raises :class:`Rejection` with the code
of :data:`STATUS`. Pure: no Flask, no Kafka.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

from buffer import topics
from common.records import BY_TOPIC_ROLE, CaseReport, Record, RecordError, from_json

__all__ = ["EXTRA_CHECKS", "STATUS", "IngestConfigError", "Rejection", "Route", "routes_for",
           "validate"]

#: Content types accepted besides application/json.
JSON_SUFFIX = "+json"

# Rejection codes: the keys of ``rejected_by_reason``.
UNKNOWN_TOPIC = "unknown_topic"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
BODY_TOO_LARGE = "body_too_large"
INVALID_JSON = "invalid_json"
SCHEMA = "schema"
STATUS = {UNKNOWN_TOPIC: 404, UNSUPPORTED_MEDIA_TYPE: 415, BODY_TOO_LARGE: 413,
          INVALID_JSON: 400, SCHEMA: 400}


class IngestConfigError(ValueError):
    """INGEST_TOPICS names a topic the ingest cannot take; the message says which."""


@dataclasses.dataclass(frozen=True)
class Route:
    """Where ``POST /ingest/<name>`` goes: a Kafka topic and the record type bodies must fit."""

    topic: str
    record_type: type[Record]


def routes_for(names: tuple[str, ...] | list[str]) -> dict[str, Route]:
    """Routes for the topic names of INGEST_TOPICS (URL name = Kafka topic name).

    Raises:
        IngestConfigError: a name is not a kit topic or its records cannot be ingested.
    """
    routes = {}
    for name in names:
        try:
            topic = topics.by_name(name)
        except KeyError as e:
            raise IngestConfigError(f"INGEST_TOPICS: {e.args[0]}") from None
        record_type = BY_TOPIC_ROLE.get(topic.role)
        if record_type is None:
            raise IngestConfigError(
                f"INGEST_TOPICS: topic {name} has no record type to validate against; "
                f"ingestible: {', '.join(t.name for t in topics.ALL if t.role in BY_TOPIC_ROLE)}")
        routes[name] = Route(topic.name, record_type)
    if not routes:
        raise IngestConfigError("INGEST_TOPICS is empty: the ingest would accept nothing")
    return routes


def _check_case(record: Record) -> str | None:
    assert isinstance(record, CaseReport)
    for name in ("id", "location", "state"):
        if not getattr(record, name).strip():
            return f"field {name} must not be empty"
    if not 0 <= record.age <= 150:
        return f"field age must be between 0 and 150, got {record.age}"
    return None


#: Checks beyond the field types, per record type: the reason, or None when the record is fine.
EXTRA_CHECKS: dict[type[Record], Callable[[Record], str | None]] = {CaseReport: _check_case}


class Rejection(Exception):
    """A request the ingest refuses: ``code`` (a key of :data:`STATUS`) and the reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def validate(routes: Mapping[str, Route], max_body_bytes: int, name: str, mimetype: str,
             charset: str | None, body: bytes | None,
             body_size: int | None) -> tuple[Record, Route]:
    """The record of one ``POST /ingest/<name>`` and its route, or :class:`Rejection`.

    ``body`` is None when it was too large to read; ``body_size`` is its declared length
    when known.
    """
    route = routes.get(name)
    if route is None:
        raise Rejection(UNKNOWN_TOPIC, f"topic {name!r} is not accepted here; accepted: "
                                       f"{', '.join(sorted(routes))} (INGEST_TOPICS)")
    if mimetype != "application/json" and not (
            mimetype.startswith("application/") and mimetype.endswith(JSON_SUFFIX)):
        raise Rejection(UNSUPPORTED_MEDIA_TYPE,
                        f"content type must be application/json, got {mimetype or 'none'!r}")
    if charset is not None and charset.lower().replace("-", "") != "utf8":
        raise Rejection(UNSUPPORTED_MEDIA_TYPE, f"charset must be utf-8, got {charset!r}")
    if body is None or len(body) > max_body_bytes:
        size = body_size if body is None else len(body)
        raise Rejection(BODY_TOO_LARGE, f"body of {size if size is not None else 'unknown'} "
                                        f"bytes is larger than {max_body_bytes} bytes "
                                        f"(INGEST_MAX_BODY_BYTES)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejection(INVALID_JSON, f"body is not UTF-8: {e}") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except ValueError as e:
        raise Rejection(INVALID_JSON, f"body is not valid JSON: {e}") from None
    try:
        record = from_json(route.record_type, data)
    except RecordError as e:
        raise Rejection(SCHEMA, f"not a valid {route.record_type.__name__}: {e}") from None
    check = EXTRA_CHECKS.get(route.record_type)
    problem = check(record) if check is not None else None
    if problem is not None:
        raise Rejection(SCHEMA, f"not a valid {route.record_type.__name__}: {problem}")
    return record, route


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
