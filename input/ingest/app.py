"""The ingest's Flask app: ``POST /ingest/<topic>``, ``GET /ingest/stats``, ``GET /healthz``,
over an :class:`~input.ingest.handler.Ingest`; and :func:`serve`, its werkzeug server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.serving import BaseWSGIServer, make_server

from common.records import utc_now
from common.settings import Settings
from input.base import Clock, Sink
from input.ingest.handler import Ingest
from input.ingest.sink import AckingKafkaSink
from input.ingest.validate import IngestConfigError, Route, routes_for

__all__ = ["create_app", "ingest_of", "serve"]


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
