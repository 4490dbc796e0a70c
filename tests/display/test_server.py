"""The display server with Flask-SocketIO's test client: pages, history, pushes, safety."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from common import catalogue, settings
from common.messages import ResultsBatch, SourceProgress
from common.records import VmstatSample
from display.feed import route
from display.hub import Hub
from display.server import create_app
from storage.base import ResultRow
from storage.disk import DiskStore

T0 = dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> DiskStore:
    s = DiskStore(tmp_path / "store.sqlite3")
    s.setup()
    return s


@pytest.fixture
def app_parts(store: DiskStore, tmp_path: Path) -> Any:
    cfg = settings.load(environ={"DATA_DIR": str(tmp_path)})
    hub = Hub()
    app, socketio, display = create_app(cfg, stores={"disk": store}, hub=hub, start_feed=False)
    return app, socketio, hub



def received(client: Any, namespace: str) -> list[tuple[str, Any]]:
    return [(e["name"], e["args"][0]) for e in client.get_received(namespace)]


def test_index_lists_every_demo_with_its_path(app_parts: Any) -> None:
    app, _, _ = app_parts
    html = app.test_client().get("/").get_data(as_text=True)
    for d in catalogue.DEMOS:
        assert f'href="{d.route}"' in html
        assert d.path_text.replace(">", "&gt;") in html


def test_pages_send_a_content_security_policy(app_parts: Any) -> None:
    app, _, _ = app_parts
    response = app.test_client().get("/demo7")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "worker-src 'self' blob:" in csp
    assert "unsafe-inline" not in csp


def test_every_demo_page_renders(app_parts: Any) -> None:
    app, _, _ = app_parts
    client = app.test_client()
    for d in catalogue.DEMOS:
        assert client.get(d.route).status_code == 200, d.route
    assert client.get("/demo99").status_code == 404


def test_the_host_metric_pages_take_labels_and_units_from_the_record_type(app_parts: Any) -> None:
    app, _, _ = app_parts
    for number in (7, 8):
        page = app.test_client().get(f"/demo{number}").get_data(as_text=True)
        found = re.search(r'<script id="metric-labels" type="application/json">(.*?)</script>',
                          page, re.S)
        assert found, f"/demo{number} has no metric labels"
        labels = json.loads(found.group(1))
        assert [m for m, _, _ in labels] == list(VmstatSample.METRICS)
        assert labels[0] == ["cpu_user", *VmstatSample.METRIC_LABELS["cpu_user"]]


def test_a_result_demo_gets_history_from_the_store_then_updates(app_parts: Any, store: DiskStore) -> None:
    app, socketio, hub = app_parts
    store.upsert([ResultRow("vmstat_tumbling", "h", T0, T0 + dt.timedelta(seconds=10), {"count": 3})])
    client = socketio.test_client(app, namespace="/demo7")
    [(name, history)] = received(client, "/demo7")
    assert name == "history"
    assert history["streams"]["vmstat_tumbling"][0]["values"] == {"count": 3}
    assert history["streams"]["vmstat_sliding"] == []

    row = ResultRow("vmstat_tumbling", "h", T0, T0 + dt.timedelta(seconds=10), {"count": 4}).to_json()
    route(hub, {"results": [ResultsBatch(stream="vmstat_tumbling", store="disk", rows=[row])]},
          lambda event, data, ns: socketio.emit(event, data, namespace=ns))
    [(name, update)] = received(client, "/demo7")
    assert name == "update" and update["rows"][0]["values"] == {"count": 4}
    # The same stream from another store goes to the other store's demo only.
    route(hub, {"results": [ResultsBatch(stream="vmstat_tumbling", store="cassandra",
                                         rows=[row])]},
          lambda event, data, ns: socketio.emit(event, data, namespace=ns))
    assert received(client, "/demo7") == []


def test_a_raw_demo_gets_recent_records_then_updates(app_parts: Any) -> None:
    app, socketio, hub = app_parts
    emit = lambda event, data, ns: socketio.emit(event, data, namespace=ns)  # noqa: E731
    route(hub, {"vmstat": [{"host": "h", "seq": 1}]}, emit)
    client = socketio.test_client(app, namespace="/demo1")
    [(name, history)] = received(client, "/demo1")
    assert name == "history" and history["records"] == [{"host": "h", "seq": 1}]
    route(hub, {"vmstat": [{"host": "h", "seq": 2}], "random": [{"seq": 9}]}, emit)
    [(name, update)] = received(client, "/demo1")
    assert update["records"] == [{"host": "h", "seq": 2}] and update["topic"] == "vmstat"


def test_a_cassandra_demo_without_cassandra_says_so(app_parts: Any) -> None:
    app, socketio, _ = app_parts
    client = socketio.test_client(app, namespace="/demo8")
    [(name, payload)] = received(client, "/demo8")
    assert name == "unavailable"
    assert "CASSANDRA_HOSTS" in payload["reason"] and "docker compose up" in payload["reason"]
    page = app.test_client().get("/demo8").get_data(as_text=True)
    assert "CASSANDRA_HOSTS" in page


def test_status_counts_clients_and_rates(app_parts: Any) -> None:
    app, socketio, hub = app_parts
    socketio.test_client(app, namespace="/demo7")
    socketio.test_client(app, namespace="/demo7")
    socketio.test_client(app, namespace="/demo1")
    route(hub, {"vmstat": [{"a": 1}, {"a": 2}]}, lambda *a: None)
    status = hub.status(lambda d: None)
    by_number = {d["number"]: d for d in status["demos"]}
    assert by_number[7]["clients"] == 2
    assert by_number[1]["rate"] > 0 and by_number[1]["live"] and by_number[1]["followed"]
    assert not by_number[7]["live"]


def test_a_raw_topic_is_followed_while_a_page_shows_it(app_parts: Any) -> None:
    app, socketio, hub = app_parts
    assert hub.watched_raw_topics() == set()
    page = socketio.test_client(app, namespace="/demo1")
    assert hub.watched_raw_topics() == {"vmstat"}
    route(hub, {"vmstat": [{"host": "h", "seq": 1}]}, lambda *a: None)
    page.disconnect(namespace="/demo1")
    assert hub.watched_raw_topics() == set()
    hub.on_unfollowed("vmstat")
    assert hub.recent(1) == []  # no stale history for the next page


def test_an_unwatched_raw_demo_shows_its_sources_rate(app_parts: Any) -> None:
    _, _, hub = app_parts
    hub.on_health(SourceProgress(component="input", source="vmstat", topic="vmstat", sent=50,
                                 rejected=0, rate=2.5))
    hub.on_health(SourceProgress(component="input", source="ingest", topic="cases,nginx",
                                 sent=9, rejected=0, rate=4.0))
    by_number = {d["number"]: d for d in hub.status(lambda d: None)["demos"]}
    assert (by_number[1]["rate"], by_number[1]["live"], by_number[1]["followed"]) == (2.5, True, False)
    assert by_number[2]["rate"] == 0 and not by_number[2]["live"]  # random: no report


def test_vendor_files_are_served_and_others_are_not(app_parts: Any) -> None:
    app, _, _ = app_parts
    client = app.test_client()
    assert client.get("/vendor/d3.min.js").status_code == 200
    assert client.get("/vendor/../server.py").status_code == 404
    assert client.get("/vendor/evil.js").status_code == 404


def test_closing_a_websocket_whose_socket_is_gone_is_quiet(app_parts: Any) -> None:
    """The shutdown race seen in CI: engine.io's writer closes a socket the reader closed."""
    import errno
    import types

    from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI
    from simple_websocket import ConnectionClosed

    for error in (OSError(errno.EBADF, "Bad file descriptor"), ConnectionClosed()):
        def close(error: Exception = error) -> None:
            raise error

        wrapper = SimpleWebSocketWSGI.__new__(SimpleWebSocketWSGI)
        wrapper.ws = types.SimpleNamespace(connected=True, close=close)
        wrapper.close()  # raised before create_app patched it
