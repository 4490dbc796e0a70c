"""End to end: the embedded stack as `make run` starts it, seen by a Socket.IO client."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import socketio

from common.waiting import eventually

pytestmark = pytest.mark.spark


def test_a_windowed_host_metrics_row_arrives_over_socketio(running_stack: Any) -> None:
    updates: list[dict[str, Any]] = []
    histories: list[dict[str, Any]] = []
    lock = threading.Lock()
    client = socketio.Client(reconnection=False)
    client.on("update", lambda data: updates.append(data), namespace="/demo7")
    client.on("history", lambda data: histories.append(data), namespace="/demo7")
    client.connect(running_stack.url, namespaces=["/demo7"], transports=["websocket"])
    try:
        eventually(lambda: histories, 10, "the history event")

        def windowed_row() -> dict[str, Any] | None:
            with lock:
                for update in updates:
                    if update["stream"] == "vmstat_tumbling" and update["rows"]:
                        return update["rows"][0]
            return None

        row = eventually(windowed_row, 150, "a windowed vmstat row pushed to /demo7",
                         interval_s=0.2)
    finally:
        client.disconnect()
    assert row["values"]["count"] >= 1
    assert row["window_end"] > row["window_start"]
    assert row["values"]["cpu_user_avg"] is not None


def test_raw_host_metrics_reach_demo1(running_stack: Any) -> None:
    updates: list[dict[str, Any]] = []
    client = socketio.Client(reconnection=False)
    client.on("update", lambda data: updates.append(data), namespace="/demo1")
    client.connect(running_stack.url, namespaces=["/demo1"], transports=["websocket"])
    try:
        eventually(lambda: updates, 30, "a raw vmstat record on /demo1")
    finally:
        client.disconnect()
    assert updates[0]["topic"] == "vmstat" and updates[0]["records"][0]["host"]


def test_the_index_accounts_for_every_record(running_stack: Any) -> None:
    """produced = stored + late + malformed + lag, per stream, as the index shows it live."""
    import json
    import urllib.request

    def balanced() -> dict[str, Any] | None:
        with urllib.request.urlopen(f"{running_stack.url}/api/status", timeout=5) as r:
            status = json.loads(r.read())
        rows = {(a["stream"], a["store"]): a for a in status["accounting"]}
        wanted = [rows.get(("vmstat_tumbling", "disk")), rows.get(("random_stats", "disk"))]
        if all(w and w["produced"] and w["stored"] and w["unaccounted"] == 0 for w in wanted):
            return rows
        return None

    rows = eventually(balanced, 150, "a moment where every accounted record is in its place",
                      interval_s=0.5)
    vmstat = rows[("vmstat_tumbling", "disk")]
    assert vmstat["produced"] == vmstat["stored"] + vmstat["late"] + vmstat["malformed"] + vmstat["lag"]
