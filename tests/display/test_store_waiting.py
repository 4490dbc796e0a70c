"""The display never waits for Cassandra: disk demos answer while it is down or starting, the
Cassandra demos say "waiting" at once and fill in when it answers; a failure is remembered.

Against the session's real Cassandra node (tests/conftest.py ``cassandra``) and a port where
nothing listens.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from common import settings
from common.jvm import free_port
from common.waiting import eventually
from display.hub import Hub
from display.server import create_app
from storage.base import ResultRow
from storage.cassandra import CassandraStore
from storage.disk import DiskStore

T0 = dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.UTC)


def display_for(tmp_path: Path, environ: dict[str, str]) -> Any:
    cfg = settings.load(environ={"DATA_DIR": str(tmp_path), **environ})
    disk = DiskStore(cfg.sqlite_path)
    disk.setup()
    disk.upsert([ResultRow("vmstat_tumbling", "h", T0, T0 + dt.timedelta(seconds=10),
                           {"count": 3})])
    disk.close()
    return create_app(cfg, hub=Hub(), start_feed=False)


def events(client: Any, namespace: str) -> list[tuple[str, Any]]:
    return [(e["name"], e["args"][0]) for e in client.get_received(namespace)]


def test_a_down_cassandra_never_delays_a_disk_demo_and_its_failure_is_remembered(
        tmp_path: Path) -> None:
    dead = free_port()  # nothing listens here
    app, socketio, display = display_for(tmp_path, {
        "CASSANDRA_HOSTS": "127.0.0.1", "CASSANDRA_PORT": str(dead),
        "CASSANDRA_CONNECT_TIMEOUT_S": "60"})
    try:
        threads = threading.active_count() + 1  # + the background opener of Cassandra
        started = time.monotonic()
        waiting = socketio.test_client(app, namespace="/demo8")  # Cassandra
        [(name, data)] = events(waiting, "/demo8")
        assert name == "waiting"
        assert f"waiting for Cassandra at 127.0.0.1 port {dead}" in data["reason"]
        disk = socketio.test_client(app, namespace="/demo7")  # disk, while Cassandra is tried
        [(name, history)] = events(disk, "/demo7")
        assert name == "history"
        assert history["streams"]["vmstat_tumbling"][0]["values"] == {"count": 3}
        # Neither waited for Cassandra's 60 s connect timeout (a generous bound: a busy CI
        # machine must not fail this; waiting at all would take 60 s).
        assert time.monotonic() - started < 20
        # The failed attempt is remembered: the reason says so, and a new client does not
        # start a new attempt before the pause is over.
        eventually(lambda: "last attempt" in (display.stores.waiting("cassandra") or ""), 15,
                   "the first attempt to fail")
        attempts = display.stores._attempts["cassandra"].attempts
        socketio.test_client(app, namespace="/demo8")
        assert display.stores._attempts["cassandra"].attempts == attempts
        assert threading.active_count() == threads  # still the one opener thread
        response = app.test_client().get("/api/streams/vmstat_tumbling/windows?store=cassandra")
        assert response.status_code == 503
        assert "not open yet" in response.get_json()["error"]
        status = app.test_client().get("/api/status").get_json()
        demo8 = next(d for d in status["demos"] if d["number"] == 8)
        assert demo8["waiting_reason"] and demo8["available"]
    finally:
        display.close()


@pytest.mark.usefixtures("cassandra")
def test_a_cassandra_demo_fills_in_once_the_schema_exists_and_the_display_creates_none(
        tmp_path: Path, cassandra: Any) -> None:
    keyspace = f"test_{uuid.uuid4().hex[:12]}"
    env = cassandra.environ(keyspace)
    app, socketio, display = display_for(tmp_path, env)
    writer = CassandraStore.from_settings(settings.load(environ=env))
    try:
        client = socketio.test_client(app, namespace="/demo8")
        [(name, _)] = events(client, "/demo8")
        assert name == "waiting"
        # The display only reads: it created no keyspace while it tried.
        eventually(lambda: "last attempt" in (display.stores.waiting("cassandra") or ""), 20,
                   "an attempt to find the schema missing")
        assert keyspace not in writer_keyspaces(cassandra)
        # A job creates the schema and writes a window; the waiting page gets its history.
        writer.setup()
        writer.upsert([ResultRow("vmstat_tumbling", "h", T0, T0 + dt.timedelta(seconds=10),
                                 {"count": 5})])
        received: list[tuple[str, Any]] = []

        def history_arrived() -> bool:
            received.extend(events(client, "/demo8"))
            return any(name == "history" for name, _ in received)

        eventually(history_arrived, 60, "the history of /demo8 once Cassandra has the schema")
        history = next(data for name, data in received if name == "history")
        if not history["streams"].get("vmstat_tumbling"):
            # The display may have read between the schema and the row (no Kafka here to push
            # the row afterwards): a page opened now reads it from the store.
            later = socketio.test_client(app, namespace="/demo8")
            history = next(data for name, data in events(later, "/demo8") if name == "history")
        assert history["streams"]["vmstat_tumbling"][0]["values"] == {"count": 5}
    finally:
        display.close()
        writer.drop_keyspace()
        writer.close()


def writer_keyspaces(cassandra: Any) -> set[str]:
    from cassandra.cluster import Cluster

    cluster = Cluster([cassandra.hosts], port=cassandra.port)
    try:
        session = cluster.connect()
        return {row.keyspace_name for row in
                session.execute("SELECT keyspace_name FROM system_schema.keyspaces")}
    finally:
        cluster.shutdown()
