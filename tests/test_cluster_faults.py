"""Failures survived on the cluster of ``python -m stack --cluster``, measured.

One test starts the clustered engines (3 Kafka brokers, 3 Cassandra nodes, a Spark master
and 2 workers, on 127.0.0.5-7 so that a ``make cluster`` on 127.0.0.2-4 is left alone),
submits the random-number job to the master with spark-submit, and produces a steady stream
(``acks=all``, idempotent) while, one after another, it ``kill -9``s

1. the Kafka broker that leads most of the partitions being written,
2. a Spark worker whose executor runs the application's tasks,
3. a Cassandra node;

the stack's supervisor restarts each (no step by the test). Afterwards every record the
producer saw acknowledged is stored exactly once: per producer and window, the stored
``count`` equals the acknowledged records, in SQLite and in Cassandra, with no duplicate
sequence number. Printed: for each fault, the longest gap between two writes to the store
(the stream's interruption), how long until every producer's records written after the kill
were stored, and how long the node took to answer again.

WATERMARK_SECONDS is 60 here: a broker's partitions have no leader until the controllers
fence it (``broker.session.timeout.ms``, 9 s), while the partitions on the other brokers go
on and move the watermark; a watermark shorter than that outage would drop the stalled
partitions' records as late (counted, but not stored).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from buffer import cluster as kafka_cluster
from buffer import kafka, topics
from common.records import RandomNumber
from common.settings import Settings, load
from common.waiting import DeadlineExceeded, eventually
from processing import standalone
from stack.__main__ import child_env
from stack.cluster import Cluster, Node
from stack.supervisor import Child, Supervisor

pytestmark = pytest.mark.slow

HOSTS = "127.0.0.5,127.0.0.6,127.0.0.7"
WINDOW_S = 2
RATE = 120  # records per second, all producers together
PRODUCERS = tuple(f"p{i}" for i in range(6))  # keys: spread over the topic's partitions
STREAM = "random_stats"


def window_of(when: dt.datetime) -> int:
    """The start (microseconds, UTC) of the tumbling window holding ``when``."""
    micros = int(when.timestamp() * 1_000_000)
    return micros - micros % (WINDOW_S * 1_000_000)


class SteadyStream:
    """Random numbers at RATE per second from PRODUCERS; counts what Kafka acknowledged."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.acked: collections.Counter[tuple[str, int]] = collections.Counter()
        self.failed: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="steady-stream")

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        producer = kafka.producer(self.bootstrap)
        seq = dict.fromkeys(PRODUCERS, 0)
        every = len(PRODUCERS) / RATE
        next_at = time.monotonic()
        while not self._stop.is_set():
            now = dt.datetime.now(dt.UTC)
            for name in PRODUCERS:
                record = RandomNumber(event_time=now, producer=name, seq=seq[name],
                                      value=float(seq[name] % 7))
                slot = (name, window_of(now))

                def delivered(err: Any, _msg: Any, slot: tuple[str, int] = slot) -> None:
                    if err is None:
                        self.acked[slot] += 1
                    else:
                        self.failed.append(str(err))

                producer.produce(topics.RANDOM.name, record.encode(),
                                 key=name.encode(), on_delivery=delivered)
                seq[name] += 1
                self.sent += 1
            producer.poll(0)
            next_at += every
            self._stop.wait(max(0.0, next_at - time.monotonic()))  # pacing, not waiting
        remaining = producer.flush(120)
        if remaining:
            self.failed.append(f"{remaining} records not acknowledged within 120 s")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(150)


class StoreWatch:
    """Polls the SQLite store: when it was written (its newest ``updated_at``) and what it
    holds per producer, so faults' gaps can be measured from the store's own clock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writes: list[float] = []  # wall-clock seconds of each distinct newest write
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="store-watch")
        self._thread.start()

    def _run(self) -> None:
        last = None
        while not self._stop.wait(0.1):
            if not self.path.exists():
                continue
            try:
                with contextlib.closing(sqlite3.connect(self.path, timeout=5)) as db:
                    row = db.execute("SELECT max(updated_at) FROM results WHERE stream = ?",
                                     (STREAM,)).fetchone()
            except sqlite3.Error:
                continue
            if row and row[0] is not None and row[0] != last:
                last = row[0]
                self.writes.append(int(row[0]) / 1_000_000)

    def longest_gap(self, start: float, end: float) -> float:
        """Longest time without a write between ``start`` and ``end`` (wall clock)."""
        times = [start, *(t for t in self.writes if start < t < end), end]
        return max(b - a for a, b in zip(times, times[1:], strict=False))

    def rows(self) -> dict[tuple[str, int], dict[str, Any]]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=5)) as db:
            return {(key, start): json.loads(payload) for key, start, payload in db.execute(
                "SELECT key, window_start, payload FROM results WHERE stream = ?", (STREAM,))}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def cassandra_rows(settings: Settings, since: dt.datetime) -> dict[tuple[str, int], dict[str, Any]]:
    from storage import open_store

    store = open_store("cassandra", settings, connect_timeout_s=10)
    try:
        rows = store.range(STREAM, since, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    finally:
        store.close()
    return {(r.key, window_of(r.window_start)): dict(r.values) for r in rows}


@dataclass
class Fault:
    name: str
    killed: str
    killed_at: float = 0.0
    gap_s: float = 0.0
    caught_up_s: float = 0.0
    back_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.name:<22} killed {self.killed:<15} longest gap in stored windows "
                f"{self.gap_s:5.1f} s; every producer stored again after {self.caught_up_s:5.1f} s;"
                f" node answering again after {self.back_s:5.1f} s")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Cluster, Supervisor, Settings]]:
    """The clustered engines under a supervisor polled by a thread, as the stack runs them."""
    settings = load(environ={
        "DATA_DIR": str(tmp_path), "CLUSTER_HOSTS": HOSTS, "BROKER_PORT": "0",
        "CASSANDRA_PORT": "0", "SPARK_MASTER_PORT": "0", "CASSANDRA_HEAP": "384m",
        "WINDOW_SECONDS": str(WINDOW_S), "OTHER_TRIGGER_SECONDS": "1", "TRIGGER_SECONDS": "1",
        "WATERMARK_SECONDS": "60", "SHUFFLE_PARTITIONS": "2", "LOG_LEVEL": "info",
        "RETENTION_HOURS": "24"})
    supervisor = Supervisor()
    stopping = threading.Event()
    cl = Cluster(settings, supervisor)

    def poll() -> None:
        while not stopping.wait(0.25):
            for event in supervisor.poll():
                print(f"  supervisor: {event}", flush=True)

    poller = threading.Thread(target=poll, daemon=True, name="supervisor-poll")
    try:
        started = time.monotonic()
        stage = cl.start(lambda line: print(f"  {line}", flush=True))
        print(f"  cluster up after {time.monotonic() - started:.0f} s", flush=True)
        poller.start()
        cl.watch()
        yield cl, supervisor, stage
    finally:
        stopping.set()
        if poller.is_alive():
            poller.join(5)
        cl.close()
        supervisor.stop_all()


def _node(cl: Cluster, name: str) -> Node:
    return next(n for n in cl.nodes if n.child.name == name)


def _kill(node: Node) -> None:
    assert node.child.process is not None and node.child.exit_code is None, node.child.name
    os.kill(node.child.process.pid, signal.SIGKILL)


def test_kill_9_of_a_broker_a_spark_worker_and_a_cassandra_node_loses_and_doubles_nothing(
    cluster: tuple[Cluster, Supervisor, Settings], tmp_path: Path
) -> None:
    cl, supervisor, stage = cluster
    env = child_env(stage, cl.bootstrap)
    job = supervisor.start(Child("processing", cl.submit_argv(STREAM), stage.log_dir /
                                 "processing.log", env))
    submitted = time.time()
    stream = SteadyStream(cl.bootstrap)
    store = StoreWatch(stage.sqlite_path)
    # The window holding the first record starts before the stream does.
    began = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=WINDOW_S)
    faults: list[Fault] = []

    def job_alive() -> None:
        assert job.restart_at is None or len(job.restarts) < 3, job.log_tail()

    def stored_after(when: float) -> bool:
        """Every producer has a stored window that began after ``when`` (wall clock)."""
        cutoff = window_of(dt.datetime.fromtimestamp(when, dt.UTC)) + WINDOW_S * 1_000_000
        have = {key for key, start in store.rows() if start >= cutoff}
        return have >= set(PRODUCERS)

    restarting: list[tuple[Fault, Node]] = []
    watching = threading.Event()

    def watch_restarts() -> None:
        """Stamps when each killed node answers again, while the next fault goes on."""
        while not watching.wait(0.2):
            for f, node in restarting:
                if not f.back_s and node.child.ready and node.child.exit_code is None:
                    f.back_s = time.time() - f.killed_at

    threading.Thread(target=watch_restarts, daemon=True, name="restart-watch").start()

    def fault(name: str, node: Node, also: Any = None) -> None:
        f = Fault(name, f"{node.child.name} ({node.address})")
        f.killed_at = time.time()
        _kill(node)
        eventually(lambda: not node.child.ready, 10, f"{node.child.name} seen down",
                   interval_s=0.05)
        restarting.append((f, node))
        eventually(lambda: stored_after(f.killed_at) and (also is None or also(f.killed_at)),
                   150, f"every producer's records stored after the kill of {node.child.name}",
                   interval_s=0.2, check=job_alive)
        f.caught_up_s = time.time() - f.killed_at
        # Writes have resumed (a window begun after the kill is stored): the longest gap so far
        # is the fault's. The node restarts meanwhile; the next fault does not wait for it.
        f.gap_s = store.longest_gap(f.killed_at, time.time())
        faults.append(f)

    try:
        stream.start()
        eventually(lambda: {key for key, _ in store.rows()} >= set(PRODUCERS)
                   if store.writes else False, 240,
                   "the first windows of every producer in SQLite", interval_s=0.5,
                   check=job_alive)
        print(f"  first windows of every producer stored {time.time() - submitted:.0f} s "
              "after the submit", flush=True)
        calm = time.time()
        eventually(lambda: stored_after(calm + WINDOW_S), 60, "a calm period", interval_s=0.2)
        baseline = store.longest_gap(calm, time.time())
        print(f"  no fault: longest gap between writes {baseline:.1f} s", flush=True)

        # 1. The broker leading most partitions of the topic being written.
        leaders = kafka_cluster.leaders(cl.bootstrap, topics.RANDOM.name)
        leader = collections.Counter(leaders.values()).most_common(1)[0][0]
        fault("Kafka partition leader", _node(cl, f"kafka-{leader}"))

        # 2. A Spark worker whose executor holds the application's cores.
        state = standalone.master_state(cl.master.webui)
        busy = [w["host"] for w in state["workers"]
                if w.get("state") == "ALIVE" and w.get("coresused", 0) > 0]
        assert busy, state
        worker = next(n for n in cl.nodes if n.child.name.startswith("spark-worker")
                      and n.address.startswith(busy[0] + ":"))
        fault("Spark worker", worker)

        # 3. A Cassandra node: the copy into Cassandra must also catch up.
        def in_cassandra(when: float) -> bool:
            try:
                rows = cassandra_rows(stage, began)
            except Exception:  # noqa: BLE001 - a node down is what the test makes
                return False
            cutoff = window_of(dt.datetime.fromtimestamp(when, dt.UTC)) + WINDOW_S * 1_000_000
            return {k for k, s in rows if s >= cutoff} >= set(PRODUCERS)

        fault("Cassandra node", _node(cl, "cassandra-3"), also=in_cassandra)
    finally:
        stream.stop()
    try:
        assert not stream.failed, stream.failed[:5]
        acked = dict(stream.acked)
        assert sum(acked.values()) == stream.sent

        def counts(rows: dict[tuple[str, int], dict[str, Any]]) -> dict[tuple[str, int], int]:
            return {k: int(v["count"]) for k, v in rows.items()}

        def same_counts(read: Any, what: str, interval_s: float) -> None:
            try:
                eventually(lambda: counts(read()) == acked, 120, what, interval_s=interval_s,
                           check=job_alive)
            except DeadlineExceeded:
                got = counts(read())
                diff = sorted((k, acked.get(k), got.get(k)) for k in acked.keys() | got.keys()
                              if acked.get(k) != got.get(k))
                pytest.fail(f"{what}: {len(diff)} of {len(acked)} producer-windows differ "
                            f"(key, window, acknowledged, stored): {diff[:10]}")

        same_counts(store.rows, "SQLite's counts per producer and window equal to the "
                    "acknowledged records", 0.5)
        same_counts(lambda: cassandra_rows(stage, began),
                    "Cassandra's counts equal to the acknowledged records", 1.0)
        for rows in (store.rows(), cassandra_rows(stage, began)):
            assert all(v["duplicates"] == 0 and v["gaps"] == 0 for v in rows.values())
        print(f"  {stream.sent} records acknowledged in {len(acked)} producer-windows, each "
              "stored exactly once in SQLite and Cassandra", flush=True)
        # Checked last, as the counts above need only a quorum: the last node killed
        # (Cassandra, the slowest to start) is often still starting while they are compared.
        eventually(lambda: all(f.back_s for f, _ in restarting), 240,
                   "every killed node restarted by the supervisor and answering", interval_s=0.2)
    finally:
        watching.set()
        store.close()
        print("  " + "\n  ".join(f.line() for f in faults), flush=True)
