"""The peer jobs (bench/peers/) store the same window rows as the baseline, on a real broker.

A small fixed set of host-metric records (three hosts, 75 s of event time, some metrics
null) goes to a fresh topic; each peer job runs in ``.venv-peers`` (``make bench``
installs it; without it these tests skip, saying so) in its own consumer group and data
directory, and its store must hold exactly the tumbling and sliding rows that
``bench/baseline.Windows`` computes from the same records, value by value. Correctness
before speed: the benchmarks compare these jobs only because they compute the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench._engines import PEER_SCRIPTS, PEERS_PY, engine_argv
from bench.baseline import Windows, parse
from buffer import kafka
from common.records import VmstatSample, format_time, utc_now

ROOT = Path(__file__).resolve().parent.parent
HOSTS = ("peer-a", "peer-b", "peer-c")


def records() -> list[dict[str, Any]]:
    """75 s of samples, one every 0.5 s per host, in event-time order, 2-3 minutes ago."""
    rng = random.Random(27)
    now = utc_now()
    start = now.replace(microsecond=0) - dt.timedelta(seconds=180 + now.second % 10)
    out = []
    for i in range(150):
        for host in HOSTS:
            at = start + dt.timedelta(milliseconds=500 * i + rng.randrange(0, 400))
            sample = VmstatSample(event_time=at, host=host, cpu_user=round(rng.uniform(0, 90), 1),
                                  mem_used=float(rng.randrange(1, 9) * 10**9),
                                  load_1m=None if i % 7 == 0 else round(rng.uniform(0, 4), 2),
                                  # a metric no sample of host c has (all nulls: avg/min/max None)
                                  net_in_bps=None if host == "peer-c" else float(i))
            out.append(sample.to_json() | {"produced_at": format_time(now)})
    return out


def expected(values: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """What the baseline stores for these records: (stream, host, window start us) -> values."""
    windows = Windows(10, 60, 10, 10.0)
    changed: set[tuple[int, str]] = set()
    for v in values:
        parsed = parse(json.dumps(v).encode())
        assert parsed is not None
        event_us, host, metrics, produced_us = parsed
        assert windows.add(event_us, host, metrics, produced_us, 0, changed)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return {(r.stream, r.key, (r.window_start - epoch) // dt.timedelta(microseconds=1)):
            dict(r.values) for r in windows.rows(changed)}


def stored(data_dir: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    path = data_dir / "store.sqlite3"
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT stream, key, window_start, payload FROM results").fetchall()
    except sqlite3.OperationalError:  # no table yet
        return {}
    finally:
        conn.close()
    return {(s, k, w): json.loads(p) for s, k, w, p in rows if k in HOSTS}


def eventually(condition: Callable[[], bool], timeout_s: float, what: str,
               proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the job exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)


@pytest.mark.slow
@pytest.mark.parametrize("engine", sorted(PEER_SCRIPTS))
def test_peer_stores_the_baselines_rows(engine: str, bootstrap: str,
                                        new_topic: Callable[[int], str], tmp_path: Path) -> None:
    if not PEERS_PY.exists():
        pytest.skip(f"no {PEERS_PY}: `make bench` installs the peers (bench/peers/requirements.lock)")
    topic = new_topic(3)
    values = records()
    producer = kafka.producer(bootstrap)
    for v in values:
        producer.produce(topic, kafka.dumps(v), v["host"].encode())
    assert producer.flush(30) == 0
    want = expected(values)
    assert {k[0] for k in want} == {"vmstat_tumbling", "vmstat_sliding"}

    log = tmp_path / f"{engine}.log"
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(DATA_DIR=str(tmp_path), LOG_LEVEL="warning", PYTHONUNBUFFERED="1")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*engine_argv(engine), "--kafka-bootstrap-servers", bootstrap,
             "--topic", topic, "--group", f"test-{uuid.uuid4().hex[:8]}",
             "--trigger-seconds", "0.5"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        def complete() -> bool:
            got = stored(tmp_path)
            return all(got.get(k, {}).get("count") == v["count"] for k, v in want.items())

        eventually(complete, 90, f"{engine}'s {len(want)} rows", proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    got = stored(tmp_path)
    assert sorted(got) == sorted(want), "the same windows, no more"
    for key, values_ in want.items():
        assert sorted(got[key]) == sorted(values_), key
        for name, value in values_.items():
            if value is None:
                assert got[key][name] is None, (key, name)
            else:
                assert got[key][name] == pytest.approx(value, rel=1e-9, abs=1e-9), (key, name)

