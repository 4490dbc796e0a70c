"""Fault tolerance on the embedded stack: nothing accepted is lost, nothing counted twice.

* a streaming job killed with SIGKILL mid-run and restarted stores exactly the windows of an
  uninterrupted run over the same input;
* the display server restarted under connected clients: they reconnect and refill;
* a producer killed and restarted: no gap and no duplicate in its sequence;
* floods of malformed records on every topic: every stage keeps running, every bad record
  is counted;
* 200 Socket.IO clients on one demo: every client gets every update.

Load targets loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import socketio
from confluent_kafka import TopicPartition

from buffer import kafka, topics
from buffer.broker import EmbeddedBroker, free_port
from common.records import VmstatSample
from common.waiting import eventually
from storage.base import ResultRow
from storage.disk import DiskStore

pytestmark = pytest.mark.slow  # starts the stack's parts itself

ROOT = Path(__file__).resolve().parent.parent
T0 = dt.datetime(2026, 11, 22, 8, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own: its topics hold only what the test puts there."""
    with EmbeddedBroker(tmp_path / "kafka", port=0, log_path=tmp_path / "broker.log") as broker:
        yield broker


class Spawned:
    """A child process in its own session (so a kill reaches its JVM too), logged to a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True, cwd=ROOT)

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        self.process.wait(30)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise AssertionError(f"{self.process.args} did not finish:\n{self.text()}") from None

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.process.args} exited {self.process.returncode}:\n"
                                 f"{self.text()}")


def env_for(bootstrap: str | None, data_dir: Path, **more: str) -> dict[str, str]:
    env = {**os.environ, "DATA_DIR": str(data_dir), "LOG_LEVEL": "info",
           "SPARK_LOCAL_IP": "127.0.0.1", "SHUFFLE_PARTITIONS": "2", **more}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    if bootstrap:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return env


def all_rows(path: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return sorted(db.execute(
            "SELECT stream, key, window_start, window_end, payload FROM results").fetchall())


# -- a streaming job killed with SIGKILL


def run_in_session(spark: Any, bootstrap: str, data_dir: Path, **env: str) -> None:
    """The job as its --replay runs it, in the test session's Spark (one JVM start saved)."""
    from common import settings
    from processing import vmstat_windows
    from processing.context import JobContext

    cfg = settings.load(environ={"DATA_DIR": str(data_dir), "SHUFFLE_PARTITIONS": "2", **env})
    ctx = JobContext(spark, cfg, bootstrap, sink="disk", starting_offsets="earliest",
                     available_now=True)
    try:
        for query in vmstat_windows.start(spark, ctx):
            query.awaitTermination(300)
            assert query.exception() is None, query.exception()
    finally:
        ctx.close()


@pytest.mark.spark
def test_kill_9_of_a_streaming_job_then_restart_stores_the_uninterrupted_windows(
    own_broker: EmbeddedBroker, tmp_path: Path, spark: Any
) -> None:
    publisher = kafka.JsonPublisher(own_broker.bootstrap)
    for i in range(3000):  # 5 hosts, 100 s of event time, in order
        sample = VmstatSample(event_time=T0 + dt.timedelta(milliseconds=33 * i), host=f"h{i % 5}",
                              cpu_user=float(i % 97), load_1m=i / 1000)
        publisher.publish(topics.VMSTAT.name, sample.to_json(), key=sample.host)
    publisher.flush()
    job = [sys.executable, "-m", "processing.vmstat_windows"]
    limits = {"MAX_OFFSETS_PER_TRIGGER": "700", "TRIGGER_SECONDS": "0"}  # five batches

    whole = tmp_path / "whole"
    run_in_session(spark, own_broker.bootstrap, whole, **limits)
    expected = all_rows(whole / "store.sqlite3")
    assert sum(json.loads(r[4])["count"] for r in expected if r[0] == "vmstat_tumbling") == 3000

    crashed = tmp_path / "crashed"
    live = Spawned(job, env_for(own_broker.bootstrap, crashed, **limits), tmp_path / "live.log")
    commits = crashed / "checkpoints" / "vmstat_tumbling-disk" / "commits"
    try:
        # Kill it as soon as a batch is committed, well before the five it needs.
        eventually(lambda: commits.is_dir() and any(commits.glob("[0-9]*")), 180,
                   "a committed batch", interval_s=0.02, check=live.alive)
    finally:
        live.kill_all(signal.SIGKILL)
    partial = all_rows(crashed / "store.sqlite3")
    assert len(partial) > 0 and partial != expected

    # Restart from the crashed job's checkpoint (in this session's Spark: a new JVM would
    # only add start-up time) and let it finish.
    run_in_session(spark, own_broker.bootstrap, crashed, **limits)
    assert all_rows(crashed / "store.sqlite3") == expected  # row by row, values included


# -- the display server restarted under its clients


def test_display_restart_clients_reconnect_and_refill(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "store.sqlite3")
    store.setup()
    store.upsert([ResultRow("vmstat_tumbling", "h", T0, T0 + dt.timedelta(seconds=10), {"count": 1})])
    store.close()
    port = free_port()
    env = env_for(None, tmp_path, DISPLAY_PORT=str(port))

    def start(n: int) -> Spawned:
        server = Spawned([sys.executable, "-m", "display"], env, tmp_path / f"display-{n}.log")

        def up() -> bool:
            server.alive()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        eventually(up, 30, "the display server")
        return server

    server = start(1)
    histories: list[list[Any]] = [[] for _ in range(5)]
    clients = []
    try:
        for i in range(5):
            client = socketio.Client(reconnection=True, reconnection_delay=0.2,
                                     reconnection_delay_max=1)
            client.on("history", lambda data, i=i: histories[i].append(data), namespace="/demo7")
            client.connect(f"http://127.0.0.1:{port}", namespaces=["/demo7"],
                           transports=["websocket"])
            clients.append(client)
        eventually(lambda: all(len(h) == 1 for h in histories), 10, "every first history")
        server.kill_all(signal.SIGTERM)  # a restart: stop, then start on the same port
        server = start(2)
        eventually(lambda: all(len(h) >= 2 for h in histories), 30,
                   "every client to reconnect and get its history again")
        assert all(h[-1]["streams"]["vmstat_tumbling"][0]["values"] == {"count": 1} for h in histories)
    finally:
        for client in clients:
            client.disconnect()
        server.kill_all(signal.SIGTERM)
    for n in (1, 2):
        text = (tmp_path / f"display-{n}.log").read_text()
        assert "Traceback" not in text and " ERROR " not in text, text


# -- a producer killed and restarted


def test_a_killed_producer_resumes_its_sequence_without_gap_or_duplicate(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    consumer = kafka.consumer(own_broker.bootstrap)
    parts = kafka.partitions_of(consumer, [topics.RANDOM.name])[topics.RANDOM.name]
    consumer.assign([TopicPartition(topics.RANDOM.name, p, 0) for p in parts])
    found: list[tuple[int, int, int]] = []

    def seqs() -> list[int]:
        """What p1 has in Kafka so far, in partition and offset order (read incrementally)."""
        for m in consumer.consume(10_000, 0.2):
            if m.error() is None:
                value = json.loads(m.value())
                if value["producer"] == "p1":
                    found.append((m.partition(), m.offset(), value["seq"]))
        return [seq for _, _, seq in sorted(found)]

    argv = [sys.executable, "-m", "input.random_numbers", "--producer-id", "p1",
            "--random-rate", "400"]
    env = env_for(own_broker.bootstrap, tmp_path)
    first = Spawned(argv, env, tmp_path / "first.log")
    try:
        eventually(lambda: len(seqs()) >= 300, 60, "300 numbers", interval_s=0.3,
                   check=first.alive)
    finally:
        first.kill_all(signal.SIGKILL)  # no clean stop: no final flush, no final state save
    before = len(seqs())
    second = Spawned(argv, env, tmp_path / "second.log")
    try:
        eventually(lambda: len(seqs()) >= before + 300, 60, "300 more", interval_s=0.3,
                   check=second.alive)
    finally:
        second.kill_all(signal.SIGTERM)
    seen = -1
    while seen != len(found):  # read to the end: the producer has stopped, so this ends
        seen = len(found)
        numbers = seqs()
    consumer.close()
    assert numbers == list(range(len(numbers))), "a gap or a duplicate in the sequence"
    assert len(numbers) >= before + 300


# -- floods of malformed records


def _status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/api/status", timeout=5) as r:
        return json.loads(r.read())


def _malformed(status: dict[str, Any], query: str) -> int:
    q = status["queries"].get(query) or {}
    return int((q.get("totals") or {}).get("malformed") or 0)


FLOOD_QUERIES = {"vmstat": "vmstat_tumbling@disk", "random": "random_stats@disk",
                 "nginx": "nginx_edges@disk", "cases": "cases_city_sliding@disk"}


@pytest.mark.spark
def test_floods_of_malformed_records_are_counted_and_every_stage_keeps_running(
    running_stack: Any,
) -> None:
    url = running_stack.url
    # Every query has reported at least once before the flood.
    eventually(lambda: all(q in _status(url)["queries"] for q in FLOOD_QUERIES.values()), 240,
               "progress from every flooded query", interval_s=1)
    # Pages of the two raw demos are open, so the display server follows their topics.
    pages = socketio.Client(reconnection=False)
    pages.connect(url, namespaces=["/demo1", "/demo2"], transports=["websocket"])
    eventually(lambda: {"vmstat", "random"} <= set(_status(url)["following"]), 30,
               "the display following the raw topics of the open pages", interval_s=0.2)
    before = _status(url)
    flood = [b"{not json", b"\x00\xff" * 100, os.urandom(300), b"x" * (1024 * 1024),
             json.dumps({"event_time": "yesterday", "status": "teapot", "value": "NaN?", "age": "old",
                         "host": "h", "producer": "p", "seq": "first"}).encode()]
    producer = kafka.producer(running_stack.bootstrap, **{"message.max.bytes": 2_000_000})
    per_topic = 4 * len(flood)
    for role in FLOOD_QUERIES:
        for _ in range(4):
            for value in flood:
                producer.produce(getattr(topics, role.upper()).name, value)
    assert producer.flush(30) == 0

    def counted() -> bool:
        now = _status(url)
        return all(_malformed(now, q) - _malformed(before, q) >= per_topic
                   for q in FLOOD_QUERIES.values())

    eventually(counted, 120, "every malformed record counted by its query", interval_s=1)
    after = _status(url)
    for query in FLOOD_QUERIES.values():
        assert _malformed(after, query) - _malformed(before, query) == per_topic, query
    # The display followed the two raw topics and counted what it refused to push to pages.
    assert after["malformed_seen"] - before["malformed_seen"] >= 2 * per_topic
    pages.disconnect()
    # Every stage is still running: the stack, and fresh progress from the queries.
    assert running_stack.process.poll() is None
    stamp = after["time"]
    eventually(lambda: _status(url)["time"] > stamp and all(
        q in _status(url)["queries"] for q in FLOOD_QUERIES.values()), 30, "the server alive")
    # The ingest refuses the same garbage with 400s, and counts it too.
    for body in flood[:3]:
        request = urllib.request.Request(f"{running_stack.ingest_url}/ingest/cases", data=body,
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 400


# -- 200 Socket.IO clients on one demo


FANOUT_CLIENTS = 200
FANOUT_SECONDS = 10  # ten updates: enough to see each reach every client (was 30 s)


def test_200_clients_on_one_demo_all_receive_every_update(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    port = free_port()
    server = Spawned([sys.executable, "-m", "display"],
                     env_for(own_broker.bootstrap, tmp_path, DISPLAY_PORT=str(port)),
                     tmp_path / "display.log")
    received = [0] * FANOUT_CLIENTS
    lock = threading.Lock()
    clients: list[socketio.Client] = []
    try:
        def up() -> bool:
            server.alive()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    return json.loads(r.read())["feed_error"] is None
            except OSError:
                return False

        eventually(up, 30, "the display server and its Kafka feed")

        def count(i: int) -> Any:
            def on_update(data: dict[str, Any]) -> None:
                with lock:
                    received[i] += 1
            return on_update

        for i in range(FANOUT_CLIENTS):
            client = socketio.Client(reconnection=False)
            client.on("update", count(i), namespace="/demo7")
            client.connect(f"http://127.0.0.1:{port}", namespaces=["/demo7"],
                           transports=["websocket"])
            clients.append(client)
        eventually(lambda: _status(f"http://127.0.0.1:{port}")["clients"] == FANOUT_CLIENTS, 30,
                   "every client counted by the server")
        # gunicorn: the master and its one worker (which holds the clients).
        master = psutil.Process(server.process.pid)
        procs = [master, *master.children(recursive=True)]
        for p in procs:
            p.cpu_percent(None)
        publisher = kafka.JsonPublisher(own_broker.bootstrap)
        rss, cpu, sent = [], [], 0
        started = time.monotonic()
        while time.monotonic() - started < FANOUT_SECONDS:  # one update a second
            window = T0 + dt.timedelta(seconds=10 * sent)
            row = ResultRow("vmstat_tumbling", "h", window, window + dt.timedelta(seconds=10),
                            {"count": sent}).to_json()
            publisher.publish(topics.RESULTS.name, {"stream": "vmstat_tumbling", "store": "disk",
                                                    "batch_id": sent, "rows": [row]})
            publisher.flush()
            sent += 1
            time.sleep(max(0.0, started + sent - time.monotonic()))  # pacing the load, not a wait
            rss.append(sum(p.memory_info().rss for p in procs))
            cpu.append(sum(p.cpu_percent(None) for p in procs))
        eventually(lambda: min(received) >= sent, 30, "every update at every client")
    finally:
        for client in clients:
            client.disconnect()
        server.kill_all(signal.SIGTERM)
    assert received == [sent] * FANOUT_CLIENTS  # every client, every update, no duplicate
    print(f"\n{FANOUT_CLIENTS} clients x {sent} updates: server CPU mean {sum(cpu) / len(cpu):.0f}% "
          f"max {max(cpu):.0f}% of a core; RSS {min(rss) / 2**20:.0f}-{max(rss) / 2**20:.0f} MiB")
    assert max(rss) < 500 * 2**20, "server memory not bounded"
    assert "Traceback" not in (tmp_path / "display.log").read_text()
