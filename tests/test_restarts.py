"""The real broker's durability: a crash or a stop of Kafka loses nothing and counts nothing twice.

* ``kill -9`` of the broker while a producer writes and a streaming job reads: once the
  broker is back (same data directory), every record the producer had acknowledged is
  stored exactly once, window by window;
* the broker and the job stopped cleanly (as Ctrl-C of ``make run`` stops them) and started
  again on the same data: the stored windows are exactly those of an uninterrupted run over
  the same records (the topics and the checkpoints survived; nothing was read twice).

Both run the host-metrics job in the test session's Spark, against a broker of their own.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import signal
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buffer import kafka, topics
from buffer.broker import EmbeddedBroker
from common import settings
from common.records import VmstatSample
from common.waiting import eventually
from processing import vmstat_windows
from processing.context import JobContext
from tests.test_faults import Spawned, all_rows, env_for, run_in_session

pytestmark = pytest.mark.spark

T0 = dt.datetime(2026, 11, 23, 8, 0, 0, tzinfo=dt.UTC)
WINDOW_US = 10 * 1_000_000


def sample(i: int) -> VmstatSample:
    return VmstatSample(event_time=T0 + dt.timedelta(milliseconds=25 * i), host=f"h{i % 4}",
                        cpu_user=float(i % 89), load_1m=i / 1000)


def window_of(s: VmstatSample) -> int:
    micros = int((s.event_time - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds() * 1e6)
    return micros - micros % WINDOW_US


def stored_counts(path: Path) -> dict[int, int]:
    """Records counted per 10 s window (all hosts) in the tumbling windows stored so far."""
    if not path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(path)) as db:
        try:
            rows = db.execute("SELECT window_start, payload FROM results "
                              "WHERE stream = 'vmstat_tumbling'").fetchall()
        except sqlite3.OperationalError as e:  # the job's store has created its file, not
            if "no such table" not in str(e):  # yet its table: nothing stored so far
                raise
            return {}
    counts: dict[int, int] = collections.Counter()
    for start, payload in rows:
        counts[int(start)] += int(json.loads(payload)["count"])
    return dict(counts)


@contextlib.contextmanager
def live_job(spark: Any, bootstrap: str, data_dir: Path) -> Iterator[list[Any]]:
    """The host-metrics job running live (1 s trigger) in this session's Spark."""
    cfg = settings.load(environ={"DATA_DIR": str(data_dir), "SHUFFLE_PARTITIONS": "2",
                                 "TRIGGER_SECONDS": "1", "WATERMARK_SECONDS": "3600"})
    ctx = JobContext(spark, cfg, bootstrap, sink="disk", starting_offsets="earliest")
    queries = vmstat_windows.start(spark, ctx)
    try:
        yield queries
    finally:
        for query in queries:
            query.stop()
        ctx.close()


def test_kill_9_of_the_broker_mid_run_loses_and_duplicates_no_acknowledged_record(
    spark: Any, tmp_path: Path
) -> None:
    broker = EmbeddedBroker(tmp_path / "kafka", port=0, log_path=tmp_path / "broker.log")
    broker.start()
    acknowledged: list[VmstatSample] = []
    failed: list[str] = []
    lock = threading.Lock()
    total = 3000
    sent = threading.Semaphore(0)

    def produce() -> None:
        producer = kafka.producer(broker.bootstrap)
        for i in range(total):
            s = sample(i)

            def done(err: Any, _msg: Any, s: VmstatSample = s) -> None:
                with lock:
                    (failed.append(str(err)) if err else acknowledged.append(s))

            producer.produce(topics.VMSTAT.name, kafka.dumps(s.to_json()), key=s.host.encode(),
                             on_delivery=done)
            producer.poll(0)
            if i % 50 == 49:
                sent.release()
                threading.Event().wait(0.02)  # a steady rate, about 2,500 records/s at most
        assert producer.flush(120) == 0, "records not acknowledged within 120 s"

    try:
        with live_job(spark, broker.bootstrap, tmp_path) as queries:
            writer = threading.Thread(target=produce)
            writer.start()
            for _ in range(20):  # 1,000 records on their way, then the crash
                assert sent.acquire(timeout=60)
            broker.kill()
            broker.start()  # same data directory, same ports
            writer.join(180)
            assert not writer.is_alive()
            assert not failed, failed[:3]
            expected = collections.Counter(window_of(s) for s in acknowledged)
            assert sum(expected.values()) == total

            def all_stored() -> bool:
                return stored_counts(tmp_path / "store.sqlite3") == dict(expected)

            def running() -> None:
                for query in queries:
                    if query.exception() is not None:
                        raise AssertionError(f"query failed: {query.exception()}")

            eventually(all_stored, 180, "every acknowledged record stored once", check=running)
    finally:
        broker.stop()


def test_stop_and_start_again_stores_the_windows_of_an_uninterrupted_run(
    spark: Any, tmp_path: Path
) -> None:
    """Ctrl-C of `make run` and `make run` again: the broker keeps its records, the job its
    checkpoint; records published while it was down are read after the restart, once."""
    first = [sample(i) for i in range(1500)]
    second = [sample(i) for i in range(1500, 2400)]
    limits = {"MAX_OFFSETS_PER_TRIGGER": "500", "TRIGGER_SECONDS": "0"}

    def publish(bootstrap: str, samples: list[VmstatSample]) -> None:
        publisher = kafka.JsonPublisher(bootstrap)
        for s in samples:
            publisher.publish(topics.VMSTAT.name, s.to_json(), key=s.host)
        publisher.flush()
        publisher.close()

    # The uninterrupted run: every record, one broker, one job run.
    whole = tmp_path / "whole"
    with EmbeddedBroker(whole / "kafka", port=0, log_path=whole / "broker.log") as broker:
        publish(broker.bootstrap, first + second)
        run_in_session(spark, broker.bootstrap, whole, **limits)
    expected = all_rows(whole / "store.sqlite3")

    # The interrupted one: the job as `make run` runs it (its own process), stopped with
    # SIGINT once it has stored something; the broker stopped too; both started again.
    runs = tmp_path / "runs"
    job = [sys.executable, "-m", "processing.vmstat_windows"]
    broker = EmbeddedBroker(runs / "kafka", port=0, log_path=runs / "broker.log")
    broker.start()
    try:
        publish(broker.bootstrap, first)
        live = Spawned(job, env_for(broker.bootstrap, runs, **limits), tmp_path / "live.log")
        try:
            eventually(lambda: sum(stored_counts(runs / "store.sqlite3").values()) >= 500, 180,
                       "the first run's first windows", check=live.alive)
        finally:
            live.process.send_signal(signal.SIGINT)
            assert live.wait(60) == 0, live.text()
        partial = all_rows(runs / "store.sqlite3")
        assert partial and partial != expected
        broker.stop()
        broker.start()  # the same data directory: the topic still holds the first records
        publish(broker.bootstrap, second)  # published while the job was down
        run_in_session(spark, broker.bootstrap, runs, **limits)  # resumes from its checkpoint
    finally:
        broker.stop()
    assert all_rows(runs / "store.sqlite3") == expected  # row by row, values included
