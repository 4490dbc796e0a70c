"""The README's spark-submit command works as written on a fresh clone: no activated virtual
environment (PATH without .venv/bin, no VIRTUAL_ENV), run from another directory."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest

from buffer import topics
from buffer.broker import EmbeddedBroker
from buffer.kafka import JsonPublisher
from common.records import VmstatSample

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parent.parent.parent
SUBMIT = ROOT / "bin" / "spark-submit"
T0 = dt.datetime(2026, 11, 24, 6, 0, 0, tzinfo=dt.UTC)


def bare_env(**extra: str) -> dict[str, str]:
    """What a new shell has: no virtual environment on PATH, nothing of the kit's set."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME")
           and not k.startswith(("KAFKA_", "CASSANDRA"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if ".venv" not in p)
    return {**env, **extra}


def test_a_jobs_help_through_the_documented_command(tmp_path: Path) -> None:
    done = subprocess.run([str(SUBMIT), str(ROOT / "processing" / "vmstat_windows.py"), "--help"],
                          cwd=tmp_path, env=bare_env(), capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--kafka-bootstrap-servers" in done.stdout


def test_a_job_replays_its_topic_through_the_documented_command(tmp_path: Path) -> None:
    # A broker of its own: the records below would move the watermark of every other test
    # that reads the session broker's vmstat topic from its start.
    with EmbeddedBroker(tmp_path / "kafka", port=0, log_path=tmp_path / "broker.log") as broker:
        replay(broker.bootstrap, tmp_path)


def replay(bootstrap: str, tmp_path: Path) -> None:
    host = f"submit-{uuid.uuid4().hex[:8]}"
    publisher = JsonPublisher(bootstrap)
    for i in range(300):  # 30 s of event time: three 10 s windows of 100
        sample = VmstatSample(event_time=T0 + dt.timedelta(milliseconds=100 * i), host=host,
                              cpu_user=float(i % 50))
        publisher.publish(topics.VMSTAT.name, sample.to_json(), key=host)
    publisher.close()
    data_dir = tmp_path / "data"
    done = subprocess.run(
        [str(SUBMIT), "processing/vmstat_windows.py", "--replay",
         "--kafka-bootstrap-servers", bootstrap],
        cwd=ROOT, env=bare_env(DATA_DIR=str(data_dir), CASSANDRA="off", SHUFFLE_PARTITIONS="2"),
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    with contextlib.closing(sqlite3.connect(data_dir / "store.sqlite3")) as db:
        rows = db.execute("SELECT window_start, payload FROM results WHERE stream = "
                          "'vmstat_tumbling' AND key = ?", (host,)).fetchall()
    counts = sorted(int(json.loads(payload)["count"]) for _, payload in rows)
    assert counts == [100, 100, 100], counts
