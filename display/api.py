"""The read-only JSON API of the display server, described by ``/api/openapi.json``.

* ``GET /api/demos``: the demo catalogue with each demo's health.
* ``GET /api/streams``: the result streams and what their rows hold.
* ``GET /api/streams/<stream>/windows?from=&to=&key=&limit=&store=``: stored
  windows, newest first, from the store the stream's demos use (or ``store=``);
  times are ISO 8601 UTC.
* ``GET /api/vizceral``: the current NGINX traffic graph in Vizceral's format.

Bad parameters get 400 with the reason, unknown streams 404, and ``limit`` is
bounded (1 to :data:`MAX_LIMIT`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from common import catalogue
from common.records import RecordError, parse_time

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "create_api", "openapi_document"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class BadRequest(ValueError):
    pass


def _error(status: int, reason: str) -> tuple[Response, int]:
    return jsonify({"error": reason}), status


def _time(name: str) -> dt.datetime | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_time(raw)
    except RecordError as e:
        raise BadRequest(f"{name}: {e}") from None


def _limit() -> int:
    raw = request.args.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest(f"limit must be from 1 to {MAX_LIMIT}, got {value}")
    return value


def create_api(display: Any, graph: Callable[[], dict[str, Any]] | None = None) -> Blueprint:
    """The API blueprint over ``display`` (a :class:`display.server.Display`).

    ``graph`` returns the current Vizceral graph (None: the endpoint answers 404).
    """
    api = Blueprint("api", __name__, url_prefix="/api")

    @api.errorhandler(BadRequest)
    def bad_request(e: BadRequest) -> tuple[Response, int]:
        return _error(400, str(e))

    @api.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_document())

    @api.get("/demos")
    def demos() -> Response:
        return jsonify(display.status())

    @api.get("/streams")
    def streams() -> Response:
        return jsonify({"streams": [
            {"name": s.name, "job": s.job, "description": s.description, "key": s.key,
             "values": [{"name": n, "meaning": m} for n, m in s.values], "windowed": s.windowed,
             "stores": list(catalogue.stores_for(s.name))}
            for s in catalogue.STREAMS.values()]})

    @api.get("/streams/<stream>/windows")
    def windows(stream: str) -> Any:
        if stream not in catalogue.STREAMS:
            return _error(404, f"unknown stream {stream!r}; GET /api/streams lists them")
        unknown = set(request.args) - {"from", "to", "key", "limit", "store"}
        if unknown:
            raise BadRequest(f"unknown parameters: {', '.join(sorted(unknown))}")
        start, end, limit = _time("from"), _time("to"), _limit()
        if start and end and end <= start:
            raise BadRequest("to must be later than from")
        key = request.args.get("key") or None
        kinds = catalogue.stores_for(stream) or ("disk",)
        kind = request.args.get("store") or next(
            (k for k in kinds if display.store_usable(k)), kinds[0])
        if kind not in ("disk", "cassandra"):
            raise BadRequest("store must be disk or cassandra")
        if not display.store_usable(kind):
            return _error(503, f"the {kind} store is not configured here")
        store = display.store(kind)
        if store is None:  # Cassandra still starting, or down: say so at once, never wait
            return _error(503, f"the {kind} store is not open yet: "
                               f"{display.stores.waiting(kind) or 'try again shortly'}")
        if start or end:
            rows = store.range(stream, start or dt.datetime(1, 1, 1, tzinfo=dt.UTC),
                               end or dt.datetime(9999, 1, 1, tzinfo=dt.UTC), key=key, limit=limit)
        else:
            rows = store.latest(stream, limit, key=key)
        return jsonify({"stream": stream, "store": kind, "count": len(rows),
                        "windows": [r.to_json() for r in rows]})

    @api.get("/vizceral")
    def vizceral() -> Any:
        if graph is None:
            return _error(404, "no traffic graph on this server")
        return jsonify(graph())

    return api


_ROW = {
    "type": "object",
    "required": ["stream", "key", "window_start", "window_end", "values"],
    "properties": {
        "stream": {"type": "string"},
        "key": {"type": "string"},
        "window_start": {"type": "string", "format": "date-time"},
        "window_end": {"type": "string", "format": "date-time"},
        "values": {"type": "object"},
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API (checked against the app by schemathesis)."""
    names = list(catalogue.STREAMS)
    time_param = {"type": "string", "format": "date-time"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "streamkit display API", "version": "1.0.0",
                 "description": "Read-only access to the demos' health and their stored results."},
        "paths": {
            "/api/demos": {"get": {
                "summary": "The demo catalogue with health",
                "responses": {"200": _json({"type": "object", "required": ["demos"], "properties": {
                    "demos": {"type": "array", "items": {"type": "object", "required": [
                        "number", "route", "path", "available", "live"]}}}}, "the catalogue")}}},
            "/api/streams": {"get": {
                "summary": "The result streams and the meaning of their values",
                "responses": {"200": _json({"type": "object", "required": ["streams"]},
                                           "the streams")}}},
            "/api/streams/{stream}/windows": {"get": {
                "summary": "Stored windows of a stream, newest first",
                "parameters": [
                    {"name": "stream", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": names}},
                    {"name": "from", "in": "query", "schema": time_param,
                     "description": "earliest window start (inclusive), ISO 8601 with zone"},
                    {"name": "to", "in": "query", "schema": time_param,
                     "description": "latest window start (exclusive), ISO 8601 with zone"},
                    {"name": "key", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                "default": DEFAULT_LIMIT}},
                    {"name": "store", "in": "query",
                     "schema": {"type": "string", "enum": ["disk", "cassandra"]}},
                ],
                "responses": {
                    "200": _json({"type": "object", "required": ["stream", "store", "windows"],
                                  "properties": {"stream": {"type": "string"},
                                                 "store": {"type": "string"},
                                                 "count": {"type": "integer"},
                                                 "windows": {"type": "array", "items": _ROW}}},
                                 "the windows"),
                    "400": _json(_ERROR, "a bad parameter, with the reason"),
                    "404": _json(_ERROR, "unknown stream"),
                    "503": _json(_ERROR, "the stream's store is not configured"),
                }}},
            "/api/vizceral": {"get": {
                "summary": "The current NGINX traffic graph in Vizceral's format",
                "responses": {
                    "200": _json({"type": "object", "required": ["renderer", "nodes", "connections"]},
                                 "the graph (Vizceral's updateData() format)"),
                    "404": _json(_ERROR, "no traffic graph on this server")}}},
            "/api/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "the OpenAPI document")}}},
        },
    }
