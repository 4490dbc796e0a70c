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
from typing import Annotated, Any, Literal

import msgspec
from flask import Blueprint, Response, jsonify, request

from common import catalogue

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "create_api", "openapi_document"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

# The API's query parameters and answers as msgspec types, the library the record types
# already use: the query is validated by converting to WindowsQuery, and the OpenAPI
# document's schemas are generated from these types. The answers themselves are still built
# as dicts (jsonify); tests/display/test_api.py (schemathesis) checks them against the types.

StoreKind = Literal["disk", "cassandra"]
UtcTime = Annotated[dt.datetime, msgspec.Meta(tz=True)]


class WindowsQuery(msgspec.Struct, forbid_unknown_fields=True, rename={"start": "from",
                                                                       "end": "to"}):
    """The query of ``GET /api/streams/<stream>/windows``."""

    start: Annotated[UtcTime | None, msgspec.Meta(
        description="earliest window start (inclusive), ISO 8601 with zone")] = None
    end: Annotated[UtcTime | None, msgspec.Meta(
        description="latest window start (exclusive), ISO 8601 with zone")] = None
    key: Annotated[str | None, msgspec.Meta(description="only this key")] = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT,
                                       description="at most this many windows")] = DEFAULT_LIMIT
    store: Annotated[StoreKind | None, msgspec.Meta(
        description="the store to read (default: the one the stream's demos use)")] = None


class Error(msgspec.Struct):
    error: str


class Window(msgspec.Struct):
    """One stored window (storage.base.ResultRow.to_json)."""

    stream: str
    key: str
    window_start: dt.datetime
    window_end: dt.datetime
    values: dict[str, Any]
    updated_at: dt.datetime | None = None


class Windows(msgspec.Struct):
    stream: str
    store: StoreKind
    count: int
    windows: list[Window]


class Demo(msgspec.Struct):
    """A demo of the catalogue with its health (display.hub.Hub.status)."""

    number: int
    route: str
    title: str
    path: str
    available: bool
    live: bool
    rate: float
    last_update: float | None
    store: StoreKind | None = None


class Demos(msgspec.Struct):
    time: float
    demos: list[Demo]


class StreamValue(msgspec.Struct):
    name: str
    meaning: str


class Stream(msgspec.Struct):
    name: str
    job: str
    description: str
    key: str
    values: list[StreamValue]
    windowed: bool
    stores: list[StoreKind]


class Streams(msgspec.Struct):
    streams: list[Stream]


class Graph(msgspec.Struct):
    """Vizceral's updateData() format (common.vizceral.build_graph)."""

    renderer: str
    nodes: list[dict[str, Any]]
    connections: list[dict[str, Any]]


class BadRequest(ValueError):
    pass


def _error(status: int, reason: str) -> tuple[Response, int]:
    return jsonify({"error": reason}), status


def _windows_query() -> WindowsQuery:
    """The request's query as a WindowsQuery (an empty parameter counts as absent)."""
    given = {name: value for name, value in request.args.items() if value != ""}
    try:
        query = msgspec.convert(given, WindowsQuery, strict=False)
    except msgspec.ValidationError as e:
        raise BadRequest(str(e).replace("$.", "")) from None
    if query.start and query.end and query.end <= query.start:
        raise BadRequest("to must be later than from")
    return msgspec.structs.replace(  # any zone given, UTC from here on
        query, start=query.start and query.start.astimezone(dt.UTC),
        end=query.end and query.end.astimezone(dt.UTC))


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
        query = _windows_query()
        start, end, limit, key = query.start, query.end, query.limit, query.key
        kinds = catalogue.stores_for(stream) or ("disk",)
        kind: str = query.store or next((k for k in kinds if display.store_usable(k)), kinds[0])
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


_REF = "#/components/schemas/{name}"


def _json(schema: type, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": _REF.format(name=schema.__name__)}}}}


def _parameters(query: type[msgspec.Struct]) -> list[dict[str, Any]]:
    """OpenAPI query parameters from a Struct's JSON Schema (a query has no null: an absent
    parameter is the default)."""
    (_,), components = msgspec.json.schema_components([query], ref_template=_REF)
    out = []
    for name, schema in components[query.__name__]["properties"].items():
        schema = dict(schema)
        choices = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"]
        if choices:
            schema.update(choices[0] if len(choices) == 1 else {"anyOf": choices})
        if schema.get("default", "") is None:
            del schema["default"]
        description = schema.pop("description", None)
        out.append({"name": name, "in": "query", "schema": schema,
                    **({"description": description} if description else {})})
    return out


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API: the paths here, every schema generated by
    msgspec from the types above (checked against the app by schemathesis)."""
    _, schemas = msgspec.json.schema_components(
        [Demos, Streams, Windows, Error, Graph], ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {"title": "streamkit display API", "version": "1.0.0",
                 "description": "Read-only access to the demos' health and their stored results."},
        "paths": {
            "/api/demos": {"get": {
                "summary": "The demo catalogue with health",
                "responses": {"200": _json(Demos, "the catalogue")}}},
            "/api/streams": {"get": {
                "summary": "The result streams and the meaning of their values",
                "responses": {"200": _json(Streams, "the streams")}}},
            "/api/streams/{stream}/windows": {"get": {
                "summary": "Stored windows of a stream, newest first",
                "parameters": [
                    {"name": "stream", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": list(catalogue.STREAMS)}},
                    *_parameters(WindowsQuery),
                ],
                "responses": {
                    "200": _json(Windows, "the windows"),
                    "400": _json(Error, "a bad parameter, with the reason"),
                    "404": _json(Error, "unknown stream"),
                    "503": _json(Error, "the stream's store is not configured, or not open yet"),
                }}},
            "/api/vizceral": {"get": {
                "summary": "The current NGINX traffic graph in Vizceral's format",
                "responses": {
                    "200": _json(Graph, "the graph (Vizceral's updateData() format)"),
                    "404": _json(Error, "no traffic graph on this server")}}},
            "/api/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": {"description": "the OpenAPI document",
                                      "content": {"application/json": {"schema": {
                                          "type": "object"}}}}}}},
        },
        "components": {"schemas": schemas},
    }
