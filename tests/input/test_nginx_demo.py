"""The NGINX demo as a source (input/nginx.py over input/nginx_demo/): into Kafka with and
without nginx, a restart, nothing left behind. Its parts: tests/input/nginx_demo/."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from buffer.topics import Topic
from common import settings
from common.accesslog import AccessLogParser
from input.base import KafkaSink, ListSink
from input.nginx import (
    NginxDemoSource,
    NginxReplaySource,
    demo_source,
)
from tests.input.nginx_support import (
    SERVICES,
    canonical,
    check_kafka,
    needs_nginx,
)

ROOT = Path(__file__).resolve().parents[2]


def test_demo_without_nginx_into_kafka(bootstrap: str, new_topic: Callable[[int], str],
                                       tmp_path: Path) -> None:
    name = new_topic(3)
    config = settings.load(environ={"DATA_DIR": str(tmp_path), "NGINX_REPLAY_SPEED": "1000"})
    source = demo_source(config, use_nginx=False, count=1200)
    assert isinstance(source, NginxReplaySource) and source.loop and source.rebase
    source.topic = Topic(name, name, 3)
    started = dt.datetime.now(dt.UTC)
    sink = KafkaSink(bootstrap)
    try:
        counters = source.run(sink)
    finally:
        sink.close()
    published = check_kafka(bootstrap, name, str(uuid.uuid4()), 1200, counters.sent,
                            counters.rejected)
    events = sorted(dt.datetime.fromisoformat(v["event_time"]) for v in published)
    assert started - dt.timedelta(seconds=1) <= events[0] and events[-1] <= dt.datetime.now(dt.UTC)


def nginx_processes(conf: Path) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if str(conf) in " ".join(proc.info["cmdline"] or []):
            found.append(proc.pid)
    return found


@needs_nginx
def test_demo_with_a_real_nginx_into_kafka_and_nothing_left_running(
        bootstrap: str, new_topic: Callable[[int], str], tmp_path: Path) -> None:
    name = new_topic(3)
    source = NginxDemoSource(tmp_path / "demo", tmp_path / "state", rate=50, seed=3,
                             service_map=SERVICES, poll_interval=0.05, count=40)
    source.topic = Topic(name, name, 3)
    sink = KafkaSink(bootstrap)
    try:
        counters = source.run(sink)
    finally:
        sink.close()
    published = check_kafka(bootstrap, name, str(uuid.uuid4()), 40, counters.sent,
                            counters.rejected)
    assert counters.rejected == 0
    # what was published is exactly the first 40 lines nginx logged, parsed
    lines = source.site.access_log.read_bytes().splitlines()[:40]
    parser = AccessLogParser("upstream", SERVICES)
    expected = [parser.parse(line.decode()).to_json() for line in lines]  # type: ignore[union-attr]
    got = [{k: v for k, v in value.items() if k != "produced_at"} for value in published]
    assert sorted(map(canonical, got)) == sorted(map(canonical, expected))
    assert {v["host"] for v in published} <= {"shop.local", "admin.local"}
    # nginx, its workers and the upstreams are gone
    assert nginx_processes(source.site.config_path) == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", source.site.port), 1):
        pass


@needs_nginx
def test_demo_restart_reads_the_previous_logs_rest_first(tmp_path: Path) -> None:
    state, work = tmp_path / "state", tmp_path / "demo"
    first = NginxDemoSource(work, state, rate=50, seed=1, poll_interval=0.05, count=5)
    first.run(ListSink())
    written = len(first.site.access_log.read_bytes().splitlines())
    assert written >= 5
    second = NginxDemoSource(work, state, rate=50, seed=2, poll_interval=0.05,
                             count=written - 5 + 3)
    sink = ListSink()
    second.run(sink)
    assert (work / "access.log.1").exists()
    old = (work / "access.log.1").read_bytes().splitlines()
    parser = AccessLogParser("upstream")
    expected_old = [parser.parse(line.decode()).to_json() for line in old[5:]]  # type: ignore[union-attr]
    got = [v for _, _, v in sink.published]
    assert got[:len(expected_old)] == expected_old
    assert len(got) == len(expected_old) + 3


@needs_nginx
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_the_demo_leaves_no_nginx_behind_when_its_process_ends(tmp_path: Path, sig: str) -> None:
    import signal

    from common.waiting import eventually

    out = tmp_path / "out.jsonl"
    with out.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "input.nginx", "--demo", "--dry-run", "--rate", "50",
             "--data-dir", str(tmp_path)], cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE)
    conf = tmp_path / "nginx" / "demo" / "nginx.conf"
    try:
        eventually(lambda: len(out.read_bytes().splitlines()) >= 5, 30, "demo records",
                   check=lambda: None if process.poll() is None else pytest.fail(
                       (process.stderr.read() if process.stderr else b"").decode()))
        assert nginx_processes(conf)
        process.send_signal(getattr(signal, sig))
        process.wait(20)
        eventually(lambda: not nginx_processes(conf), 10, "nginx to exit")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stderr:
            process.stderr.close()
    if sig == "SIGTERM":
        assert process.returncode == 0
