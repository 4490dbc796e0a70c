"""End to end: the embedded stack as `make run` starts it, seen by a Socket.IO client."""

from __future__ import annotations

import datetime as dt
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


def test_the_cassandra_demo_fills_in_from_the_stacks_own_node(running_stack: Any) -> None:
    """/demo8 is /demo7 stored in the stack's own Cassandra node: history, then pushed rows."""
    updates: list[dict[str, Any]] = []
    client = socketio.Client(reconnection=False)
    client.on("update", lambda data: updates.append(data), namespace="/demo8")
    client.connect(running_stack.url, namespaces=["/demo8"], transports=["websocket"])
    try:
        row = eventually(lambda: next((u["rows"][0] for u in list(updates)
                                       if u["stream"] == "vmstat_tumbling" and u["rows"]), None),
                         240, "a windowed vmstat row from Cassandra on /demo8", interval_s=0.2)
    finally:
        client.disconnect()
    assert row["values"]["count"] >= 1
    assert "Cassandra: ready at 127.0.0.1:" in running_stack.output()


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


# Last in this file, so last of the tests on the running stack (conftest sorts them last):
# it kills every stage once.
def test_each_stage_killed_comes_back_by_itself_and_the_books_still_balance(
    running_stack: Any,
) -> None:
    import json
    import signal
    import urllib.request

    import psutil

    def status() -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{running_stack.url}/api/status", timeout=2) as r:
                return dict(json.loads(r.read()))
        except OSError:
            return None  # the display server itself may be the stage being restarted

    def stage(name: str) -> dict[str, Any] | None:
        s = status()
        return next((x for x in (s or {}).get("stages", []) if x["name"] == name), None)

    def process_of(marker: list[str]) -> Any:
        """The stack's descendant whose command line contains ``marker`` in order."""
        for proc in psutil.Process(running_stack.process.pid).children(recursive=True):
            try:
                cmd = proc.cmdline()
            except psutil.Error:
                continue
            if any(cmd[i:i + len(marker)] == marker for i in range(len(cmd))):
                return proc
        return None

    import time

    eventually(lambda: stage("kafka"), 60, "the stages' report on the index")
    first_kill_us = int(time.time() * 1e6)
    # (stage as the supervisor names it, the process to kill): for Spark its JVM, the heavy
    # part an out-of-memory killer would pick; its Python driver then fails and is restarted.
    victims = [("cassandra", ["org.apache.cassandra.service.CassandraDaemon"]),
               ("kafka", ["kafka.Kafka"]),
               ("processing", ["org.apache.spark.deploy.SparkSubmit"]),
               ("input", ["-m", "input"]),
               ("display", ["-m", "display"])]
    before: dict[str, dict[str, Any]] = {}

    def kill(name: str, marker: list[str]) -> None:
        before[name] = stage(name) or {}
        victim = process_of(marker)
        assert victim is not None, f"no process of {name}"
        victim.send_signal(signal.SIGKILL)

    def back(name: str) -> dict[str, Any] | None:
        now = stage(name)
        return now if now and now["state"] == "running" \
            and now["restarts"] > before[name].get("restarts", 0) else None

    # The restarts overlap (one after another they took a minute): Cassandra first, its
    # outage shown on the index while the disk demo's windows keep arriving; Kafka next,
    # while Cassandra is still starting, its outage shown too; once Kafka is back, the
    # Spark application, the sources and the display server together.
    kill(*victims[0])
    killed_at = time.time()

    def disk_window_during_outage() -> bool:
        s = status() or {}
        cassandra: dict[str, Any] = next(
            (x for x in s.get("stages", []) if x["name"] == "cassandra"), {})
        demo7: dict[str, Any] = next((d for d in s.get("demos", []) if d["number"] == 7), {})
        return cassandra.get("state") in ("restarting", "starting") \
            and (demo7.get("last_update") or 0) > killed_at + 1
    eventually(disk_window_during_outage, 30,
               "a /demo7 (disk) update while the index shows Cassandra down", interval_s=0.1)
    kill(*victims[1])
    outage = eventually(lambda: (status() or {}).get("feed_error"), 30,
                        "the index showing Kafka's outage", interval_s=0.1)
    assert "unreachable" in outage, outage
    eventually(lambda: back("kafka"), 120, "kafka restarted by the stack", interval_s=0.5)
    for victim in victims[2:]:
        kill(*victim)
    for name, marker in victims:
        after = eventually(lambda n=name: back(n), 120, f"{name} restarted by the stack",
                           interval_s=0.5)
        assert after["pid"] != before[name].get("pid"), (before[name], after)
        eventually(lambda m=marker: process_of(m), 120, f"a new {name} process")

    assert "stopped" not in running_stack.output()  # one failure each: the stack keeps going
    eventually(lambda: (status() or {}).get("feed_error", "x") is None, 60,
               "the Kafka feed following again")

    # Afterwards nothing is lost or counted twice: every host-metric record in Kafka is
    # counted once in the stored window it belongs to (windows closed 30 s of event time ago).
    import contextlib
    import sqlite3
    from collections import Counter

    from buffer import topics
    from common import records
    from common.records import VmstatSample
    from common.waiting import DeadlineExceeded
    from tests.kafka_topics import raw_values

    Windows = Counter[tuple[str, int]]

    def windows() -> tuple[Windows, Windows]:
        """(records in Kafka, records counted in the store) per (host, window start)."""
        produced: Windows = Counter()
        newest = 0
        for value in raw_values(running_stack.bootstrap, topics.VMSTAT.name):
            try:  # what the job accepts; the flood test's garbage is counted as malformed
                sample = records.from_json(VmstatSample, json.loads(value))
            except (ValueError, TypeError):
                continue
            micros = int(sample.event_time.timestamp() * 1e6)
            newest = max(newest, micros)
            produced[(sample.host, micros - micros % 10_000_000)] += 1
        closed = newest - 30_000_000
        produced = Counter({k: n for k, n in produced.items() if k[1] + 10_000_000 <= closed})
        starts = {start for _, start in produced}
        with contextlib.closing(sqlite3.connect(running_stack.data_dir / "store.sqlite3")) as db:
            rows = db.execute("SELECT key, window_start, payload FROM results "
                              "WHERE stream = 'vmstat_tumbling'").fetchall()
        stored: Windows = Counter({(key, int(start)): int(json.loads(payload)["count"])
                                   for key, start, payload in rows if int(start) in starts})
        return produced, stored

    def in_cassandra(starts: set[int]) -> Windows:
        """The same windows as the stack's Cassandra node stored them (the /demo8 copy)."""
        from cassandra.cluster import Cluster

        config = (running_stack.data_dir / "cassandra" / "cassandra.yaml").read_text()
        port = int(next(line.split(":")[1] for line in config.splitlines()
                        if line.startswith("native_transport_port:")))
        cluster = Cluster(["127.0.0.1"], port=port)
        try:
            session = cluster.connect()
            found: Windows = Counter()
            days = {dt.datetime.fromtimestamp(s / 1e6, dt.UTC).date() for s in starts}
            for day in days:
                for row in session.execute(
                        "SELECT key, window_start, payload FROM streamkit.results "
                        "WHERE stream = 'vmstat_tumbling' AND day = %s", (day,)):
                    start = row.window_start.replace(tzinfo=dt.UTC).timestamp()
                    micros = round(start * 1e6)
                    if micros in starts:
                        found[(row.key, micros)] = int(json.loads(row.payload)["count"])
            return found
        finally:
            cluster.shutdown()

    def balanced() -> tuple[Windows, Windows, Windows] | None:
        produced, stored = windows()
        if produced != stored or max((s for _, s in produced), default=0) <= first_kill_us:
            return None
        copy = in_cassandra({start for _, start in produced})
        return (produced, stored, copy) if copy == stored else None

    try:
        produced, stored, copy = eventually(
            balanced, 240, "every record counted once in its window, up to after the kills, "
            "in SQLite and in Cassandra", interval_s=2)
    except DeadlineExceeded:
        produced, stored = windows()
        copy = in_cassandra({start for _, start in produced})
        raise AssertionError(f"Kafka minus store: {produced - stored}; store minus Kafka: "
                             f"{stored - produced}; SQLite minus Cassandra: {stored - copy}; "
                             f"Cassandra minus SQLite: {copy - stored}") from None
    assert len(produced) >= 3, produced  # windows from before, during and after the kills
    assert sum(produced.values()) == sum(stored.values()) == sum(copy.values())
