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
    """Read = stored + late + malformed at every batch; what is not read yet stays in flight."""
    import json
    import urllib.request

    def status() -> dict[tuple[str, str], dict[str, Any]]:
        with urllib.request.urlopen(f"{running_stack.url}/api/status", timeout=5) as r:
            return {(a["stream"], a["store"]): a for a in json.loads(r.read())["accounting"]}

    wanted = [("vmstat_tumbling", "disk"), ("random_stats", "disk")]

    def reported() -> dict[tuple[str, str], dict[str, Any]] | None:
        rows = status()
        return rows if all(complete(rows.get(w, {})) for w in wanted) else None

    def complete(row: dict[str, Any]) -> bool:
        """Reported at one batch, with a source report from after it."""
        return bool(row.get("read")) and row.get("unaccounted") is not None \
            and row.get("not_read_yet") is not None

    rows = eventually(reported, 150, "accounting for the host metrics and random numbers", interval_s=1)
    for report in range(3):  # three successive reports, not once by luck
        for w in wanted:
            row = rows[w]
            assert row["unaccounted"] == 0, row
            assert row["not_read_yet"] >= 0, row
        if report == 2:
            break
        seen = {w: rows[w]["batch"] for w in wanted}

        def next_reports(seen: dict[Any, Any] = seen) -> dict[tuple[str, str], dict[str, Any]] | None:
            r = status()
            return r if all(r[w]["batch"] != seen[w] and complete(r[w]) for w in wanted) else None

        rows = eventually(next_reports, 60, "the next reports", interval_s=0.5)


def test_the_health_line_shows_the_embedded_brokers_cpu(running_stack: Any) -> None:
    import re

    line = re.compile(r"queries, lag .* \| broker \d+% CPU, up \d+ min")
    eventually(lambda: line.search(running_stack.output()), 120,
               "a health line with the broker's CPU in the stack's output", interval_s=0.5)


def test_the_live_sources_start_with_the_first_query_and_the_ingest_once_all_have(
    running_stack: Any,
) -> None:
    def ingest_started() -> str | None:
        out = running_stack.output()
        return out if "case-report ingest started" in out else None

    out = eventually(ingest_started, 240, "the stack to start the case-report ingest",
                     interval_s=0.5)
    # Each line is printed once what it reports is done.
    assert out.index("started input (pid") < out.index("started ingest (pid"), out
    assert out.index("Spark: first query (vmstat_tumbling@disk) started after") \
        < out.index("streaming queries started after"), out
