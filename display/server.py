"""The display server: Flask pages plus Socket.IO namespaces, one per demo.

Socket.IO protocol (any Socket.IO 4 client can use it):

* connect to the namespace of a demo, e.g. ``/demo7``;
* the server first sends ``history``: ``{"demo": 7, "streams": {name: [row, ...]}}``
  for result demos (rows from the store, newest first) or ``{"demo": 1,
  "records": [...]}`` for raw demos (the most recent records, oldest first);
* then ``update`` events as results arrive: ``{"stream", "store", "rows",
  "batch_id", "written_at", "pushed_at"}``, or ``{"topic", "records", "pushed_at"}``;
* a demo whose store is not configured sends ``unavailable``: ``{"reason": ...}``;
* a demo whose store is still opening (Cassandra starting) sends ``waiting``:
  ``{"reason": ...}`` on connect and every few seconds, then ``history`` once it opens.
* a demo showing ``nginx_edges`` (/demo9) also gets ``graph`` after ``history`` and after each
  ``nginx_edges`` update: the Vizceral graph of the newest complete window
  (:meth:`display.traffic.TrafficGraph.payload`).
* The ``/status`` namespace sends ``status`` every second: the index's live table.

A row is ``{"stream", "key", "window_start", "window_end", "values", "updated_at"}``
with ISO 8601 UTC times.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, render_template, send_from_directory
from flask_socketio import SocketIO

from common import catalogue
from common.records import VmstatSample
from common.settings import Settings
from display.hub import Hub
from display.traffic import STREAM as TRAFFIC_STREAM
from display.traffic import TrafficGraph

__all__ = ["VENDOR_FILES", "Display", "create_app"]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

#: Front-end files served from display/node_modules (installed by `make setup`, no build step).
VENDOR_FILES = {
    "d3.min.js": "d3/dist/d3.min.js",
    "socket.io.min.js": "socket.io-client/dist/socket.io.min.js",
    "vizceral.min.js": "vizceral/dist/vizceral.min.js",
}

#: Content-Security-Policy: nothing inline, nothing foreign. Vizceral's layout worker is a blob: URL.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)

HISTORY_WINDOWS = 120
#: Rows of history for streams with many rows per window (``latest()`` limits rows, not
#: windows): the census tables (570 age rows, 520 income rows), the per-edge and per-city
#: windows, and the running totals per city (one window, a row per city).
HISTORY_ROWS = {
    "census_population": 1000, "census_age": 1000, "census_income": 1000,
    "nginx_edges": 3000, "cases_city_sliding": 2000, "cases_top_areas": 1000,
    "cases_by_state": 1000,
}


class Display:
    """The app, its Socket.IO server, the hub and the stores, wired by :func:`create_app`."""

    def __init__(self, settings: Settings, hub: Hub, stores: dict[str, Any] | None) -> None:
        from display.stores import StoreOpener

        self.settings = settings
        self.hub = hub
        #: The stores, opened without making a request wait (Cassandra in the background).
        self.stores = StoreOpener(settings, on_open=self._store_opened, given=stores)
        self.feed: Any = None
        self.socketio: SocketIO | None = None
        #: demo number -> its live traffic graph, for the demos that show nginx_edges
        self.traffic = {d.number: TrafficGraph() for d in catalogue.DEMOS
                        if TRAFFIC_STREAM in d.streams}
        self._by_namespace = {d.namespace: d for d in catalogue.DEMOS}

    def store(self, kind: str) -> Any:
        """The store of ``kind`` if open; None if it cannot be used here or is still opening."""
        return self.stores.get(kind)

    def store_usable(self, kind: str) -> bool:
        """True when the store of ``kind`` can be read here (Cassandra only when configured)."""
        return self.stores.usable(kind)

    def waiting(self, demo: catalogue.Demo) -> str | None:
        """Why a demo's store is not open yet (Cassandra starting or down), or None."""
        if demo.store is None or self.unavailable(demo):
            return None
        if self.stores.get(demo.store) is not None:
            return None
        return self.stores.waiting(demo.store)

    def _store_opened(self, kind: str) -> None:
        """A store opened in the background: the pages waiting for it get their history."""
        if self.socketio is None:
            return
        for demo in catalogue.DEMOS:
            if demo.store == kind and self.hub.clients[demo.namespace] > 0:
                self.socketio.emit("history", self.history(demo), namespace=demo.namespace)

    def current_graph(self) -> dict[str, Any]:
        """The current Vizceral graph of the NGINX traffic (empty before any traffic)."""
        from common.vizceral import build_graph

        number = min(self.traffic) if self.traffic else None
        if number is None:
            return build_graph([], self.settings.window_seconds)
        traffic = self.traffic[number]
        payload = traffic.payload()
        if payload is None:  # nothing pushed since the server started: seed from the store
            demo = catalogue.demo(number)
            store = self.store(demo.store or "disk")
            if store is not None:
                rows = store.latest(TRAFFIC_STREAM, HISTORY_ROWS.get(TRAFFIC_STREAM, 1000))
                traffic.add([r.to_json() for r in rows])
                payload = traffic.payload()
        if payload is None:
            return build_graph([], self.settings.window_seconds)
        return dict(payload["graph"])

    def unavailable(self, demo: catalogue.Demo) -> str | None:
        """Why a demo cannot show data here, or None."""
        if demo.store == "cassandra" and not self.settings.cassandra_configured():
            return ("Cassandra is not configured. Run the full stack (`docker compose up`), "
                    "or set CASSANDRA_HOSTS=host[,host] and restart `make run`.")
        return None

    def status(self) -> dict[str, Any]:
        """The index's live table (the hub's snapshot, with why a demo is off or waiting)."""
        return self.hub.status(self.unavailable, self.waiting)

    def history(self, demo: catalogue.Demo) -> dict[str, Any]:
        if demo.raw_topic:
            return {"demo": demo.number, "records": self.hub.recent(demo.number)}
        store = self.store(demo.store or "disk")
        streams = {}
        for name in demo.streams:
            limit = HISTORY_ROWS.get(name, HISTORY_WINDOWS)
            rows = store.latest(name, limit) if store is not None else []
            streams[name] = [r.to_json() for r in rows]
        return {"demo": demo.number, "streams": streams}

    def emit(self, event: str, data: dict[str, Any], namespace: str) -> None:
        """Send an event to a demo's clients (what the feed calls). An ``nginx_edges``
        update also refreshes that demo's traffic graph and sends ``graph``."""
        if self.socketio is None:
            return
        self.socketio.emit(event, data, namespace=namespace)
        demo = self._by_namespace.get(namespace)
        if event == "update" and data.get("stream") == TRAFFIC_STREAM and demo is not None \
                and demo.number in self.traffic:
            traffic = self.traffic[demo.number]
            traffic.add(data.get("rows") or [])
            payload = traffic.payload()
            if payload is not None:
                self.socketio.emit("graph", payload, namespace=namespace)

    def close(self) -> None:
        if self.feed is not None:
            self.feed.stop()
        self.stores.close()


def _close_websockets_quietly() -> None:
    """Make closing a WebSocket whose socket is already closed a no-op, not a traceback.

    engine.io's writer thread closes its WebSocket when the connection ends, and
    simple-websocket's reader thread closes the socket when the peer goes; the
    writer checks ``connected`` and then sends a close frame, so when the two
    race (seen in CI with 200 clients at shutdown) the send hits a closed file
    descriptor and the thread dies with ``OSError: [Errno 9] Bad file descriptor``.
    Nothing is lost: the connection was over either way. Logged at DEBUG.
    """
    from engineio.async_drivers import _websocket_wsgi
    from simple_websocket import ConnectionClosed

    cls = _websocket_wsgi.SimpleWebSocketWSGI
    if getattr(cls.close, "_quiet", False):
        return
    original = cls.close

    def close(self: Any) -> None:
        try:
            original(self)
        except (OSError, ConnectionClosed) as error:  # the peer or the reader closed it first
            log.debug("WebSocket already closed when closing it: %s", error)

    close._quiet = True  # type: ignore[attr-defined]
    cls.close = close


def create_app(settings: Settings, stores: dict[str, Any] | None = None,
               hub: Hub | None = None, start_feed: bool = True) -> tuple[Flask, SocketIO, Display]:
    """Build the app. ``stores`` (kind -> store) and ``hub`` may be given by tests.

    With ``start_feed`` and a broker configured, a background thread follows Kafka.
    """
    app = Flask(__name__, static_folder=str(HERE / "static"), template_folder=str(HERE / "templates"))
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    origins = None  # same origin only
    if settings.cors_origins:
        port = settings.display_port
        origins = [*settings.cors_origins, f"http://127.0.0.1:{port}", f"http://localhost:{port}",
                   f"http://{settings.display_host}:{port}"]
    _close_websockets_quietly()
    socketio = SocketIO(app, async_mode="threading", cors_allowed_origins=origins,
                        ping_interval=10, ping_timeout=10)
    display = Display(settings, hub or Hub(), stores)
    display.socketio = socketio
    app.extensions["streamkit"] = display
    _routes(app, display)
    from display.api import create_api

    app.register_blueprint(create_api(display, graph=display.current_graph))
    _sockets(socketio, display)
    if start_feed and settings.kafka_bootstrap_servers:
        from display.feed import KafkaFeed

        display.feed = KafkaFeed(settings.kafka_bootstrap_servers, display.hub, display.emit,
                                 fetch_ms=settings.display_fetch_ms,
                                 results_fetch_ms=settings.display_results_fetch_ms)
        display.feed.start()
    if start_feed:
        socketio.start_background_task(_status_loop, socketio, display)
    return app, socketio, display


def _routes(app: Flask, display: Display) -> None:
    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/")
    def index() -> str:
        return render_template("index.html", demos=catalogue.DEMOS,
                               status=display.status())

    @app.get("/demo<int:number>")
    def demo_page(number: int) -> str:
        try:
            demo = catalogue.demo(number)
        except KeyError:
            abort(404)
        return render_template([f"demo{number}.html", "demo_generic.html"], demo=demo,
                               demos=catalogue.DEMOS, unavailable=display.unavailable(demo),
                               settings=display.settings,
                               metric_labels=[[metric, label, unit] for metric, (label, unit)
                                              in VmstatSample.METRIC_LABELS.items()])

    @app.get("/vendor/<name>")
    def vendor(name: str) -> Response:
        if name not in VENDOR_FILES:
            abort(404)
        relative = Path(VENDOR_FILES[name])
        folder = HERE / "node_modules" / relative.parent
        if not (folder / relative.name).is_file():
            log.error("%s missing: run `make setup` (npm ci in display/)", folder / relative.name)
            abort(503)
        return send_from_directory(folder, relative.name, max_age=3600)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return send_from_directory(HERE / "static", "favicon.svg", mimetype="image/svg+xml")

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"ok": True, "feed_error": display.hub.feed_error})

    @app.get("/metrics")
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        from display.metrics import metrics_text

        body = metrics_text(lambda: display.status())
        return Response(body, mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                        headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.get("/api/status")
    def api_status() -> Response:
        return jsonify(display.status())


def _sockets(socketio: SocketIO, display: Display) -> None:
    from flask import request

    for demo in catalogue.DEMOS:

        def on_connect(auth: Any = None, demo: catalogue.Demo = demo) -> None:
            display.hub.client_joined(demo.namespace)
            reason = display.unavailable(demo)
            if reason:
                socketio.emit("unavailable", {"demo": demo.number, "reason": reason},
                              namespace=demo.namespace, to=request.sid)  # type: ignore[attr-defined]
                return
            waiting = display.waiting(demo)
            if waiting:  # history follows when the store opens (Display._store_opened)
                socketio.emit("waiting", {"demo": demo.number, "reason": waiting},
                              namespace=demo.namespace, to=request.sid)  # type: ignore[attr-defined]
                return
            try:
                payload = display.history(demo)
            except Exception as e:
                log.exception("history for %s failed", demo.route)
                socketio.emit("unavailable", {"demo": demo.number, "reason": f"store error: {e}"},
                              namespace=demo.namespace, to=request.sid)  # type: ignore[attr-defined]
                return
            socketio.emit("history", payload, namespace=demo.namespace,
                          to=request.sid)  # type: ignore[attr-defined]
            traffic = display.traffic.get(demo.number)
            if traffic is not None:
                traffic.add(payload["streams"].get(TRAFFIC_STREAM, []))
                graph = traffic.payload()
                if graph is not None:
                    socketio.emit("graph", graph, namespace=demo.namespace,
                                  to=request.sid)  # type: ignore[attr-defined]

        def on_disconnect(reason: Any = None, demo: catalogue.Demo = demo) -> None:
            display.hub.client_left(demo.namespace)

        socketio.on_event("connect", on_connect, namespace=demo.namespace)
        socketio.on_event("disconnect", on_disconnect, namespace=demo.namespace)

    def status_connect(auth: Any = None) -> None:
        socketio.emit("status", display.status(), namespace="/status",
                      to=request.sid)  # type: ignore[attr-defined]

    socketio.on_event("connect", status_connect, namespace="/status")


def _status_loop(socketio: SocketIO, display: Display) -> None:
    ticks = 0
    while True:
        socketio.sleep(1.0)
        ticks += 1
        try:
            socketio.emit("status", display.status(), namespace="/status")
            if ticks % 3 == 0:  # the pages waiting for a store: how long, and why
                for demo in catalogue.DEMOS:
                    waiting = (display.waiting(demo)
                               if display.hub.clients[demo.namespace] > 0 else None)
                    if waiting:
                        socketio.emit("waiting", {"demo": demo.number, "reason": waiting},
                                      namespace=demo.namespace)
        except Exception:
            log.exception("status push failed")
