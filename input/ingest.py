"""HTTP ingest: ``POST /ingest/<topic>`` with a JSON record; valid records go to Kafka.

Run::

    python -m input.ingest                                   # INGEST_HOST:INGEST_PORT (127.0.0.1:5001)
    python -m input.ingest --ingest-port 0                   # a free port (logged)
    curl -H 'Content-Type: application/json' -d @case.json http://127.0.0.1:5001/ingest/cases

It logs the address it listens on, a line per rejected request, the counters
every few seconds (also published to ``health`` as ``source_progress`` of source
``ingest``), and the final counters on Ctrl-C or SIGTERM.

Answers:

* ``202`` ``{"accepted": true, ...}``: the record was valid **and Kafka acknowledged it**
  (acks from all in-sync replicas): the request waits for the delivery report,
  so a 202 means the record is stored in the topic, not merely queued.
* ``400`` invalid JSON, a body that is not UTF-8, or a schema violation (the
  topic's record type, :func:`common.records.from_json`, plus a few range checks);
* ``404`` a topic that is not in ``INGEST_TOPICS``; ``413`` a body larger than
  ``INGEST_MAX_BODY_BYTES``; ``415`` a content type other than JSON (or a charset
  other than UTF-8);
* ``503`` Kafka did not acknowledge the record within the timeout; the record may
  or may not be in the topic (at-least-once: a client retry can duplicate it; its
  ``id`` tells duplicates apart).

Each rejection (4xx) is answered with ``{"error": <code>, "reason": <text>}``,
counted by code, and sent to ``dead-letters`` (source ``ingest``, the reason,
the body truncated to 2,048 characters). Only a whole, validated record is ever
published: it is rebuilt from the record type, so unknown keys are dropped.
``GET /ingest/stats`` shows the counters, ``GET /healthz`` answers ``ok``.
Invariant: requests to ``/ingest/<topic>`` = accepted + rejected + failed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from confluent_kafka import KafkaException, Producer
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.serving import BaseWSGIServer, make_server

from buffer import topics
from common.messages import SourceProgress
from common.records import (
    BY_TOPIC_ROLE,
    CaseReport,
    Record,
    RecordError,
    format_time,
    from_json,
    utc_now,
)
from common.settings import Settings
from input.base import Clock, Sink, dead_letter_value

__all__ = [
    "AckingKafkaSink",
    "Ingest",
    "IngestConfigError",
    "PublishError",
    "Route",
    "create_app",
    "ingest_of",
    "routes_for",
    "serve",
]

log = logging.getLogger(__name__)

#: How much of a rejected body the dead letter keeps (characters, or bytes if not UTF-8).
DEAD_LETTER_RAW_CHARS = 2048
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


class PublishError(RuntimeError):
    """Kafka did not acknowledge a record; the record may or may not be stored."""

    retriable = True


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


#: What a sink raises when Kafka did not take a record (KafkaUnavailable is a RuntimeError).
PUBLISH_ERRORS: tuple[type[Exception], ...] = (PublishError, KafkaException, BufferError, RuntimeError)


class _Rejection(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Ingest:
    """Validates, publishes and counts; the Flask views are a thin layer over :meth:`handle`.

    ``accepted``, ``rejected``, ``rejected_by_reason`` and ``failed`` are the
    counters a supervising process reads for its health report.
    """

    name = "ingest"

    def __init__(self, sink: Sink, routes: Mapping[str, Route], max_body_bytes: int,
                 clock: Clock = utc_now, dead_letter_raw_chars: int = DEAD_LETTER_RAW_CHARS) -> None:
        self.sink = sink
        self.routes = dict(routes)
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.dead_letter_raw_chars = dead_letter_raw_chars
        self._lock = threading.Lock()
        self._accepted = 0
        self._failed = 0
        self._rejected: dict[str, int] = {}

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    @property
    def failed(self) -> int:
        with self._lock:
            return self._failed

    @property
    def rejected(self) -> int:
        with self._lock:
            return sum(self._rejected.values())

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        with self._lock:
            return dict(self._rejected)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "accepted": self._accepted,
                "rejected": sum(self._rejected.values()),
                "rejected_by_reason": dict(sorted(self._rejected.items())),
                "failed": self._failed,
                "topics": {name: route.topic for name, route in self.routes.items()},
                "time": format_time(self.clock()),
            }

    def handle(self, name: str, mimetype: str, charset: str | None, body: bytes | None,
               body_size: int | None) -> tuple[int, dict[str, Any]]:
        """Answer one ``POST /ingest/<name>``: (HTTP status, JSON answer).

        ``body`` is None when it was too large to read; ``body_size`` is its
        declared length when known.
        """
        try:
            record, route = self._validate(name, mimetype, charset, body, body_size)
        except _Rejection as r:
            self._reject(name, r, body, body_size)
            return STATUS[r.code], {"error": r.code, "reason": r.reason}
        try:
            self.sink.publish(route.topic, record.key(), record)
        except PUBLISH_ERRORS as e:
            with self._lock:
                self._failed += 1
            log.error("ingest: publishing to %s failed: %s", route.topic, e)
            return 503, {"error": "unavailable", "reason": f"Kafka did not take the record: {e}"}
        with self._lock:
            self._accepted += 1
        return 202, {"accepted": True, "topic": route.topic, "key": record.key()}

    def _validate(self, name: str, mimetype: str, charset: str | None, body: bytes | None,
                  body_size: int | None) -> tuple[Record, Route]:
        route = self.routes.get(name)
        if route is None:
            raise _Rejection(UNKNOWN_TOPIC, f"topic {name!r} is not accepted here; accepted: "
                                            f"{', '.join(sorted(self.routes))} (INGEST_TOPICS)")
        if mimetype != "application/json" and not (
                mimetype.startswith("application/") and mimetype.endswith(JSON_SUFFIX)):
            raise _Rejection(UNSUPPORTED_MEDIA_TYPE,
                             f"content type must be application/json, got {mimetype or 'none'!r}")
        if charset is not None and charset.lower().replace("-", "") != "utf8":
            raise _Rejection(UNSUPPORTED_MEDIA_TYPE, f"charset must be utf-8, got {charset!r}")
        if body is None or len(body) > self.max_body_bytes:
            size = body_size if body is None else len(body)
            raise _Rejection(BODY_TOO_LARGE, f"body of {size if size is not None else 'unknown'} "
                                             f"bytes is larger than {self.max_body_bytes} bytes "
                                             f"(INGEST_MAX_BODY_BYTES)")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _Rejection(INVALID_JSON, f"body is not UTF-8: {e}") from None
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except ValueError as e:
            raise _Rejection(INVALID_JSON, f"body is not valid JSON: {e}") from None
        try:
            record = from_json(route.record_type, data)
        except RecordError as e:
            raise _Rejection(SCHEMA, f"not a valid {route.record_type.__name__}: {e}") from None
        check = EXTRA_CHECKS.get(route.record_type)
        problem = check(record) if check is not None else None
        if problem is not None:
            raise _Rejection(SCHEMA, f"not a valid {route.record_type.__name__}: {problem}")
        return record, route

    def _reject(self, name: str, rejection: _Rejection, body: bytes | None,
                body_size: int | None) -> None:
        with self._lock:
            self._rejected[rejection.code] = self._rejected.get(rejection.code, 0) + 1
        raw: bytes | str = b"" if body is None else body
        reason = f"{rejection.code} (POST /ingest/{name}): {rejection.reason}"
        limit = self.dead_letter_raw_chars
        if body is not None:
            try:
                text = body.decode("utf-8")
                raw = text[:limit]
                truncated = len(text) > limit
            except UnicodeDecodeError:
                raw = body[:limit]
                truncated = len(body) > limit
            if truncated:
                reason += f" [body truncated to {limit} of {len(body)} bytes]"
        else:
            reason += f" [body of {body_size if body_size is not None else 'unknown'} bytes not read]"
        log.warning("ingest: rejected %s", reason)
        self.sink.dead_letter(self.name, reason, raw)

    def close(self) -> None:
        """Flush what was published and close the sink if it can be closed."""
        close = getattr(self.sink, "close", None)
        try:
            self.sink.flush()
        finally:
            if callable(close):
                close()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class AckingKafkaSink:
    """A :class:`~input.base.Sink` whose ``publish`` returns only once Kafka acknowledged the record.

    A background thread serves delivery reports; each ``publish`` waits for its
    own. librdkafka gives every record a definite outcome within
    ``message.timeout.ms`` (= ``ack_timeout_s``), so ``publish`` returns or raises
    :class:`PublishError` within about that time. Dead letters are sent without
    waiting; a failed one is logged and counted in ``dead_letter_failures``.
    """

    def __init__(self, bootstrap: str, ack_timeout_s: float = 10.0,
                 dead_letter_topic: str = topics.DEAD_LETTERS.name, clock: Clock = utc_now,
                 **producer_config: Any) -> None:
        from buffer import kafka

        config = {"linger.ms": 1, "message.timeout.ms": int(ack_timeout_s * 1000),
                  **producer_config}
        self._producer: Producer | None = kafka.producer(bootstrap, **config)
        self._dumps = kafka.dumps
        self.ack_timeout_s = ack_timeout_s
        self.dead_letter_topic = dead_letter_topic
        self.clock = clock
        self.dead_letter_failures = 0
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="ingest-delivery", daemon=True)
        self._poller.start()

    def _live(self) -> Producer:
        producer = self._producer
        if producer is None:
            raise PublishError("the Kafka sink is closed")
        return producer

    def _poll(self) -> None:
        producer = self._live()
        while not self._closed.is_set():
            producer.poll(0.1)

    def _produce(self, topic: str, payload: bytes, key: str | None,
                 on_delivery: Callable[[Any, Any], None], deadline: float) -> None:
        producer = self._live()
        while True:
            try:
                producer.produce(topic, payload, key=key.encode() if key else None,
                                 on_delivery=on_delivery)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise PublishError("the producer's queue stayed full") from None
                producer.poll(0.05)

    def publish(self, topic: str, key: str | None, record: Record) -> None:
        done = threading.Event()
        outcome: list[Any] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            outcome.append(err)
            done.set()

        deadline = time.monotonic() + self.ack_timeout_s
        self._produce(topic, record.encode(produced_at=self.clock()), key, on_delivery, deadline)
        if not done.wait(self.ack_timeout_s + 5.0):
            raise PublishError(f"no delivery report from {topic} within {self.ack_timeout_s + 5} s")
        if outcome[0] is not None:
            raise PublishError(f"delivery to {topic} failed: {outcome[0]}")

    def dead_letter(self, source: str, reason: str, raw: bytes | str) -> None:
        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                self.dead_letter_failures += 1
                log.error("ingest: dead letter not delivered: %s", err)

        value = dead_letter_value(source, reason, raw, self.clock())
        try:
            self._produce(self.dead_letter_topic, self._dumps(value), source, on_delivery,
                          time.monotonic() + 1.0)
        except (PublishError, KafkaException) as e:
            self.dead_letter_failures += 1
            log.error("ingest: dead letter not sent: %s", e)

    def flush(self) -> None:
        if self._producer is None:
            return
        remaining = self._producer.flush(self.ack_timeout_s)
        if remaining:
            raise PublishError(f"{remaining} records not acknowledged within {self.ack_timeout_s} s")

    def close(self) -> None:
        """Flush, stop the delivery thread and release the producer (and its connections)."""
        try:
            self.flush()
        finally:
            self._closed.set()
            self._poller.join(2)
            self._producer = None


def create_app(settings: Settings | None = None, *, sink: Sink | None = None,
               routes: Mapping[str, Route] | None = None, clock: Clock = utc_now) -> Flask:
    """The ingest's Flask app.

    Args:
        settings: INGEST_* and KAFKA_BOOTSTRAP_SERVERS (default: from the environment).
        sink: where records go (default: an :class:`AckingKafkaSink` on the settings' broker;
            tests pass a :class:`~input.base.ListSink` or a sink with their own topics).
        routes: URL topic name -> :class:`Route` (default: from INGEST_TOPICS).

    The :class:`Ingest` (counters, sink) is ``ingest_of(app)``.
    """
    if settings is None:
        from common import settings as settings_module

        settings = settings_module.load()
    if routes is None:
        routes = routes_for(settings.ingest_topics)
    if sink is None:
        if settings.kafka_bootstrap_servers is None:
            raise IngestConfigError("the ingest needs KAFKA_BOOTSTRAP_SERVERS (or a sink)")
        sink = AckingKafkaSink(settings.kafka_bootstrap_servers, clock=clock)
    ingest = Ingest(sink, routes, settings.ingest_max_body_bytes, clock=clock)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.ingest_max_body_bytes
    app.extensions["ingest"] = ingest

    @app.post("/ingest/<name>")
    def post(name: str) -> Response:
        body, size = _read_body(ingest.max_body_bytes)
        status, answer = ingest.handle(name, request.mimetype, request.mimetype_params.get("charset"),
                                       body, size)
        response = jsonify(answer)
        response.status_code = status
        return response  # an unread body: werkzeug's server drains it and closes the connection

    @app.get("/ingest/stats")
    def stats() -> Response:
        return jsonify(ingest.stats())

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok", "accepted": ingest.accepted, "rejected": ingest.rejected,
                        "failed": ingest.failed})

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": (e.name or "error").lower().replace(" ", "_"),
                        "reason": e.description}), e.code or 500

    return app


def _read_body(limit: int) -> tuple[bytes | None, int | None]:
    """The request body, or (None, declared size) when it is larger than ``limit``."""
    size = request.content_length
    if size is not None and size > limit:
        return None, size
    try:
        return request.get_data(cache=False), size
    except RequestEntityTooLarge:
        return None, size


def ingest_of(app: Flask) -> Ingest:
    """The :class:`Ingest` behind an app made by :func:`create_app`."""
    return cast(Ingest, app.extensions["ingest"])


def serve(app: Flask, host: str, port: int) -> BaseWSGIServer:
    """A threaded werkzeug server for ``app``, bound (port 0: a free one), not yet serving.

    Call ``serve_forever()`` (in a thread) and ``shutdown()``; ``server_port`` is the port.
    """
    return make_server(host, port, app, threaded=True)


def _report_health(ingest: Ingest, bootstrap: str, stop: threading.Event,
                   interval_s: float = 2.0) -> None:
    """Log the counters and publish them to ``health`` every ``interval_s`` until ``stop``."""
    from buffer.kafka import JsonPublisher

    publisher = JsonPublisher(bootstrap)
    last = (time.monotonic(), 0)
    try:
        while not stop.wait(interval_s):
            stats = ingest.stats()
            now, total = time.monotonic(), stats["accepted"] + stats["rejected"] + stats["failed"]
            rate = (total - last[1]) / max(now - last[0], 1e-6)
            last = (now, total)
            publisher.publish(topics.HEALTH.name, SourceProgress(
                component="input", source=ingest.name,
                topic=",".join(sorted({route.topic for route in ingest.routes.values()})),
                sent=stats["accepted"], rejected=stats["rejected"], failed=stats["failed"],
                rate=round(rate, 2), time=stats["time"]), key=ingest.name)
            log.debug("ingest: %s", stats)
    finally:
        publisher.close()


def main(argv: list[str] | None = None) -> int:
    from common import cli
    from common import settings as settings_module

    parser = settings_module.argument_parser(
        __doc__ or "", only=["kafka_bootstrap_servers", "ingest_host", "ingest_port",
                             "ingest_max_body_bytes", "ingest_topics", "log_level"])
    _, settings = cli.start(parser, argv, check=lambda _, cfg: routes_for(cfg.ingest_topics))
    routes = routes_for(settings.ingest_topics)
    bootstrap = cli.broker(parser, settings)
    app = create_app(settings, routes=routes)
    ingest = ingest_of(app)
    server = serve(app, settings.ingest_host, settings.ingest_port)
    stop = threading.Event()
    cli.on_stop(lambda _signum: stop.set())
    serving = threading.Thread(target=server.serve_forever, name="ingest-http", daemon=True)
    serving.start()
    reporter = threading.Thread(target=_report_health, args=(ingest, bootstrap, stop),
                                name="ingest-health", daemon=True)
    reporter.start()
    log.info("ingest: listening on http://%s:%d/ingest/<topic> (topics: %s, max body %d bytes)",
             settings.ingest_host, server.server_port, ", ".join(routes),
             settings.ingest_max_body_bytes)
    while not stop.wait(0.5):
        if not serving.is_alive():
            log.error("ingest: the HTTP server stopped")
            break
    server.shutdown()
    serving.join(10)
    stop.set()
    reporter.join(5)
    ingest.close()
    log.info("ingest: stopped; %s", ingest.stats())
    return 0


if __name__ == "__main__":
    sys.exit(main())
