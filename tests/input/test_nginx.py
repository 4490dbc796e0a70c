"""The NGINX source: tailing (rotation, truncation, restarts), replay timing, the demo, Kafka."""

from __future__ import annotations

import datetime as dt
import io
import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from buffer.topics import Topic
from common import settings
from common.accesslog import FORMATS, AccessLogParser
from common.records import AccessRecord
from input import nginx_tail
from input.base import KafkaSink, ListSink, Rejected
from input.nginx import (
    SHIPPED_RECORDING,
    NginxDemoSource,
    NginxReplaySource,
    NginxTailSource,
    demo_source,
    from_settings,
    main,
    to_item,
)
from input.nginx_demo import (
    TrafficDriver,
    client_hello,
    find_nginx,
    render_config,
    request_bytes,
)
from input.nginx_tail import FileTailer, Position, PositionStore
from tests.kafka_topics import read_topic

ROOT = Path(__file__).resolve().parents[2]
RECORDED = SHIPPED_RECORDING.read_bytes().splitlines()
SERVICES = "/api/=api,/static/=static,/auth/=auth,/=web"
NGINX = find_nginx()
needs_nginx = pytest.mark.skipif(NGINX is None, reason="no nginx binary (apt-get install nginx-light)")


def write(path: Path, *lines: bytes, end: bytes = b"\n") -> None:
    with path.open("ab") as f:
        f.write(b"".join(line + end for line in lines))


def texts(batch: list[tuple[bytes, Position]]) -> list[bytes]:
    return [raw for raw, _ in batch]


# -- the tailer, step by step on real files


def test_starts_at_the_end_by_default_and_at_the_start_on_request(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"old 1", b"old 2")
    at_end = FileTailer(log)
    at_start = FileTailer(log, from_start=True)
    assert texts(at_end.poll()) == []
    assert texts(at_start.poll()) == [b"old 1", b"old 2"]
    write(log, b"new")
    assert texts(at_end.poll()) == [b"new"]
    assert texts(at_start.poll()) == [b"new"]
    assert at_end.poll() == []


def test_starting_at_the_end_waits_for_a_partial_last_line(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"old")
    write(log, b"half", end=b"")
    tailer = FileTailer(log)
    assert tailer.poll() == []
    write(log, b" done")
    assert texts(tailer.poll()) == [b"half done"]


def test_a_line_is_returned_once_complete_with_the_offset_after_it(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.touch()
    tailer = FileTailer(log, from_start=True)
    assert tailer.poll() == []
    write(log, b"par", end=b"")
    assert tailer.poll() == []
    write(log, b"tial", b"next")
    batch = tailer.poll()
    assert texts(batch) == [b"partial", b"next"]
    st = log.stat()
    assert [p.offset for _, p in batch] == [8, 13]
    assert (batch[-1][1].device, batch[-1][1].inode, batch[-1][1].head) == (
        st.st_dev, st.st_ino, b"partial\nnext\n")


def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    writer = log.open("ab", buffering=0)  # stands in for nginx's open descriptor
    writer.write(b"o1\n")
    tailer = FileTailer(log, from_start=True)
    assert texts(tailer.poll()) == [b"o1"]
    log.rename(tmp_path / "access.log.1")  # logrotate renames ...
    writer.write(b"o2\n")  # ... nginx still writes to the old file
    assert texts(tailer.poll()) == [b"o2"]  # no file at the path yet: keep reading the old one
    log.touch()  # logrotate's "create"
    writer.write(b"o3\n")
    assert texts(tailer.poll()) == [b"o3"]  # the new file is empty: nginx has not reopened
    writer.write(b"o4\n")
    writer.close()
    new = log.open("ab", buffering=0)  # nginx -s reopen
    new.write(b"n1\n")
    assert texts(tailer.poll()) == [b"o4", b"n1"]
    new.write(b"n2\n")
    assert texts(tailer.poll()) == [b"n2"]
    assert tailer.rotations == 1
    new.close()
    tailer.close()


def test_rotation_when_the_old_file_ends_without_a_newline(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"a")
    tailer = FileTailer(log, from_start=True)
    assert texts(tailer.poll()) == [b"a"]
    write(log, b"cut", end=b"")
    log.rename(tmp_path / "access.log.1")
    write(log, b"b")
    assert texts(tailer.poll()) == [b"cut", b"b"]


def test_copytruncate_is_read_again_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"line 1", b"line 2")
    tailer = FileTailer(log, from_start=True)
    assert len(tailer.poll()) == 2
    with log.open("r+b") as f:
        f.truncate(0)
    write(log, b"after")
    assert texts(tailer.poll()) == [b"after"]
    assert tailer.truncations == 1


def test_a_file_replaced_in_place_by_longer_content_is_detected_by_its_head(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"a", b"b")
    tailer = FileTailer(log, from_start=True)
    assert len(tailer.poll()) == 2
    with log.open("r+b") as f:  # truncated and refilled past our offset between two polls
        f.truncate(0)
        f.write(b"zzzzzz\nq\n")
    assert texts(tailer.poll()) == [b"zzzzzz", b"q"]


def test_a_log_that_does_not_exist_yet_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    tailer = FileTailer(log)
    assert tailer.poll() == [] and tailer.position is None
    write(log, b"first")
    assert texts(tailer.poll()) == [b"first"]


def test_an_endless_line_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nginx_tail, "MAX_LINE_BYTES", 10)
    log = tmp_path / "access.log"
    write(log, b"x" * 25, end=b"")
    assert texts(FileTailer(log, from_start=True).poll()) == [b"x" * 25]


def test_max_lines_per_poll(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, *[str(i).encode() for i in range(25)])
    tailer = FileTailer(log, from_start=True, max_lines=10)
    assert [len(tailer.poll()) for _ in range(4)] == [10, 10, 5, 0]


# -- restarts from a saved position


def read_all(log: Path, saved: Position | None = None, from_start: bool = False
             ) -> tuple[list[bytes], Position | None]:
    tailer = FileTailer(log, saved, from_start=from_start)
    batch = tailer.poll()
    tailer.close()
    return texts(batch), (batch[-1][1] if batch else saved)


def test_restart_resumes_after_the_last_line(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"a", b"b")
    lines, position = read_all(log, from_start=True)
    assert lines == [b"a", b"b"]
    write(log, b"c")
    assert read_all(log, position, from_start=True)[0] == [b"c"]  # the saved position wins


def test_restart_after_a_rotation_finishes_the_rotated_file_first(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"a", b"b")
    _, position = read_all(log, from_start=True)
    write(log, b"c")  # written, not yet read, when the source stopped
    log.rename(tmp_path / "access.log.1")
    write(log, b"d")
    assert read_all(log, position)[0] == [b"c", b"d"]


def test_restart_after_the_rotated_file_was_deleted_reads_the_new_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"a" * 100)
    _, position = read_all(log, from_start=True)
    log.unlink()
    write(log, b"fresh")  # may even reuse the inode: the head tells them apart
    assert read_all(log, position)[0] == [b"fresh"]


def test_restart_after_a_truncation_reads_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"a long first line", b"b")
    _, position = read_all(log, from_start=True)
    with log.open("r+b") as f:
        f.truncate(0)
    write(log, b"c")
    assert read_all(log, position)[0] == [b"c"]


def test_position_store_round_trip_and_bad_files(tmp_path: Path) -> None:
    store = PositionStore(tmp_path / "positions", Path("/var/log/nginx/access.log"))
    assert store.load() is None
    position = Position("/var/log/nginx/access.log", 1, 2, 300, b"\x00head")
    store.save(position)
    assert store.load() == position
    assert [p.name for p in store.path.parent.iterdir()] == [store.path.name]  # no temp left
    store.path.write_text("{not json")
    assert store.load() is None


# -- the follow source, with a list sink and an injected sleep


class Steps:
    """The source's sleep: runs the next step of a scenario instead of waiting; stops after."""

    def __init__(self, *steps: Callable[[], None]) -> None:
        self.steps = list(steps)
        self.sleeps = 0

    def __call__(self, _seconds: float) -> bool:
        self.sleeps += 1
        if not self.steps:
            return True  # stopped
        self.steps.pop(0)()
        return False


def tail_source(log: Path, state: Path, sleep: Callable[[float], bool], **kw: Any) -> NginxTailSource:
    kw.setdefault("from_start", True)
    return NginxTailSource(log, state, "upstream", SERVICES, sleep=sleep, **kw)


def test_follow_publishes_records_and_dead_letters_the_rest(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, *RECORDED[:3], b"not an access log line")
    sink = ListSink()
    counters = tail_source(log, tmp_path / "state", Steps()).run(sink)
    assert (counters.sent, counters.rejected) == (3, 1)
    assert [(v["path"], v["service"]) for _, _, v in sink.published] == [
        ("/index.html", "web"), ("/api/orders", "api"), ("/index.html", "web")]
    assert all(topic == "nginx" for topic, _, _ in sink.published)
    assert sink.dead == [("nginx", "does not start with '$remote_addr - $remote_user "
                                   "[$time_local] \"' (upstream)", b"not an access log line")]


class TrackingSink(ListSink):
    """Remembers how many items had been flushed, to check positions are saved after flushes."""

    def __init__(self, fail_publish_at: int | None = None) -> None:
        super().__init__()
        self.flushed_items = 0
        self.fail_publish_at = fail_publish_at

    def publish(self, topic: str, key: str | None, value: dict[str, Any]) -> None:
        if self.fail_publish_at is not None and len(self.published) == self.fail_publish_at:
            raise RuntimeError("broker gone")
        super().publish(topic, key, value)

    def flush(self) -> None:
        super().flush()
        self.flushed_items = len(self.published) + len(self.dead)


def test_a_position_is_saved_only_after_everything_before_it_was_flushed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "access.log"
    write(log, *RECORDED[:5])
    sink = TrackingSink()
    saves: list[int] = []
    real_save = PositionStore.save

    def checked_save(store: PositionStore, position: Position) -> None:
        assert sink.flushed_items == len(sink.published) + len(sink.dead)
        saves.append(position.offset)
        real_save(store, position)

    monkeypatch.setattr(PositionStore, "save", checked_save)
    source = tail_source(log, tmp_path / "state", Steps(lambda: write(log, *RECORDED[5:8])),
                         checkpoint_lines=2)
    assert source.run(sink).sent == 8
    sizes = [sum(len(line) + 1 for line in RECORDED[:n]) for n in (2, 4, 5, 7, 8)]
    assert saves == sizes  # every 2 lines, and when caught up


def test_restart_sends_only_new_lines(tmp_path: Path) -> None:
    log, state = tmp_path / "access.log", tmp_path / "state"
    write(log, *RECORDED[:4])
    first = ListSink()
    tail_source(log, state, Steps()).run(first)
    write(log, *RECORDED[4:6])
    second = ListSink()
    tail_source(log, state, Steps()).run(second)
    assert len(first.published) == 4 and len(second.published) == 2
    parser = AccessLogParser("upstream", SERVICES)
    assert [v for _, _, v in second.published] == [
        parser.parse(line.decode()).to_json() for line in RECORDED[4:6]]  # type: ignore[union-attr]


def test_a_count_bounded_run_resumes_exactly_after_the_last_line_sent(tmp_path: Path) -> None:
    log, state = tmp_path / "access.log", tmp_path / "state"
    write(log, *RECORDED[:5])
    first, second = ListSink(), ListSink()
    tail_source(log, state, Steps(), count=2).run(first)
    tail_source(log, state, Steps()).run(second)
    assert (len(first.published), len(second.published)) == (2, 3)
    parser = AccessLogParser("upstream", SERVICES)
    assert [v for _, _, v in first.published + second.published] == [
        parser.parse(line.decode()).to_json() for line in RECORDED[:5]]  # type: ignore[union-attr]


def test_after_a_crash_lines_since_the_last_save_are_sent_again_none_lost(tmp_path: Path) -> None:
    log, state = tmp_path / "access.log", tmp_path / "state"
    write(log, *RECORDED[:6])
    crashed = TrackingSink(fail_publish_at=3)
    with pytest.raises(RuntimeError, match="broker gone"):
        tail_source(log, state, Steps(), checkpoint_lines=2).run(crashed)
    assert len(crashed.published) == 3 and crashed.flushed_items == 2  # 2 saved, 1 unsaved
    again = ListSink()
    tail_source(log, state, Steps()).run(again)
    assert len(again.published) == 4  # line 3 again (at-least-once), then 4-6
    assert again.published[0][2] == crashed.published[2][2]


def test_follow_through_rotation_and_truncation_sends_every_line_once(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, *RECORDED[:2])

    def rotate() -> None:
        write(log, RECORDED[2])
        log.rename(tmp_path / "access.log.1")
        write(log, RECORDED[3])

    def truncate() -> None:
        with log.open("r+b") as f:
            f.truncate(0)
        write(log, *RECORDED[4:6])

    sink = ListSink()
    source = tail_source(log, tmp_path / "state", Steps(rotate, truncate))
    source.run(sink)
    parser = AccessLogParser("upstream", SERVICES)
    expected = [parser.parse(line.decode()).to_json() for line in RECORDED[:6]]  # type: ignore[union-attr]
    assert [v for _, _, v in sink.published] == expected
    assert source.tailer is not None
    assert (source.tailer.rotations, source.tailer.truncations) == (1, 1)


def test_non_utf8_bytes_are_parsed_like_nginx_escapes_and_rejects_keep_raw_bytes() -> None:
    parser = AccessLogParser("combined")
    line = (b'1.2.3.4 - - [22/Nov/2026:06:02:31 +0100] "GET /\xff HTTP/1.1" 200 1 "-" '
            b'"ua \xc3\xa4"')
    record = to_item(line, parser)
    assert isinstance(record, AccessRecord)
    assert (record.path, record.user_agent) == ("/\\xff", "ua ä")
    rejected = to_item(b"\xff\xfe", parser)
    assert isinstance(rejected, Rejected) and rejected.raw == b"\xff\xfe"


# -- replay timing with an injected clock


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> bool:
        self.slept.append(round(seconds, 6))
        self.now += seconds
        return False

    def monotonic(self) -> float:
        return self.now


def recorded_times() -> list[dt.datetime]:
    parser = AccessLogParser("upstream")
    return [r.event_time for r in map(parser.parse, (line.decode() for line in RECORDED))
            if isinstance(r, AccessRecord)]


@pytest.mark.parametrize("speed", [1.0, 10.0, 2.5])
def test_replay_keeps_the_recorded_gaps_divided_by_the_speed(speed: float) -> None:
    fake = FakeTime()
    source = NginxReplaySource(SHIPPED_RECORDING, "upstream", SERVICES, speed=speed,
                               sleep=fake.sleep, monotonic=fake.monotonic)
    sink = ListSink()
    assert source.run(sink).sent == len(RECORDED) == 1120
    times = recorded_times()
    # event times are the recorded ones
    assert [v["event_time"] for _, _, v in sink.published] == [
        t.strftime("%Y-%m-%dT%H:%M:%S.000Z") for t in times]
    # one sleep per new second of the log, of that gap / speed (gaps of 4 and 3 s included)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False) if b > a]
    assert fake.slept == pytest.approx([g / speed for g in gaps])
    assert 4.0 in gaps and 3.0 in gaps
    assert sum(fake.slept) == pytest.approx((times[-1] - times[0]).total_seconds() / speed)


def test_replay_at_speed_0_never_sleeps() -> None:
    fake = FakeTime()
    source = NginxReplaySource(SHIPPED_RECORDING, speed=0, sleep=fake.sleep,
                               monotonic=fake.monotonic)
    assert source.run(ListSink()).sent == 1120 and fake.slept == []


def test_replay_waits_only_for_the_time_not_already_spent() -> None:
    fake = FakeTime()
    source = NginxReplaySource(SHIPPED_RECORDING, speed=1.0, sleep=fake.sleep,
                               monotonic=fake.monotonic, count=200)
    original = source.parser.parse

    def slow_parse(line: str) -> Any:
        fake.now += 0.25  # each line takes 0.25 s of (fake) time to handle
        return original(line)

    source.parser.parse = slow_parse  # type: ignore[method-assign]
    source.run(ListSink())
    times = recorded_times()[:200]
    span = (times[-1] - times[0]).total_seconds()
    assert fake.now - 1000.0 >= 200 * 0.25  # behind schedule: it never sleeps to catch up
    assert sum(fake.slept) < span


def test_replay_dead_letters_bad_lines_without_pacing_them(tmp_path: Path) -> None:
    log = tmp_path / "mixed.txt"
    write(log, RECORDED[0], b"garbage", RECORDED[1])
    sink = ListSink()
    counters = NginxReplaySource(log, speed=0).run(sink)
    assert (counters.sent, counters.rejected) == (2, 1)
    assert sink.dead[0][2] == b"garbage"


def test_demo_replay_loops_with_event_times_rebased_to_now() -> None:
    fake = FakeTime()
    t0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    def clock() -> dt.datetime:
        return t0 + dt.timedelta(seconds=fake.now - 1000.0)

    source = NginxReplaySource(SHIPPED_RECORDING, speed=4.0, loop=True, rebase=True,
                               clock=clock, sleep=fake.sleep, monotonic=fake.monotonic,
                               count=1120 + 10)
    sink = ListSink()
    source.run(sink)
    times = recorded_times()
    span = (times[-1] - times[0]).total_seconds() / 4.0
    events = [dt.datetime.fromisoformat(v["event_time"]) for _, _, v in sink.published]
    assert events[0] == t0
    assert events[1119] == t0 + dt.timedelta(seconds=span)
    assert events[1120] == t0 + dt.timedelta(seconds=span)  # second pass starts "now"
    assert source.passes == 1  # the second pass was still running when count was reached
    # every event time is at most the fake clock's time when it was published
    assert max(events) <= clock()


def test_replay_stops_during_a_wait() -> None:
    source = NginxReplaySource(SHIPPED_RECORDING, speed=1.0, sleep=lambda _s: True)
    counters = source.run(ListSink())
    times = recorded_times()
    assert counters.sent == times.count(times[0])  # the lines of the first second, then stopped


# -- the demo site


def test_the_demo_config_uses_the_documented_format(tmp_path: Path) -> None:
    ports = {"port": 8080, "api_a": 1, "api_b": 2, "dead": 3, "dead2": 4, "auth": 5, "reports": 6}
    text = render_config(tmp_path, ports, tmp_path / "combined.log")
    assert FORMATS["upstream"] in text.replace("'\n                        '", "")
    assert f"access_log {tmp_path / 'access.log'} upstream;" in text
    assert f"access_log {tmp_path / 'combined.log'} combined;" in text
    assert "listen 127.0.0.1:8080 default_server;" in text
    with pytest.raises(RuntimeError, match="REPORTS"):
        render_config(tmp_path, {k: v for k, v in ports.items() if k != "reports"})


def test_requests_and_traffic_bounds() -> None:
    assert request_bytes("GET", "/x", headers=[("User-Agent", b"a\tb")]) == (
        b"GET /x HTTP/1.1\r\nHost: shop.local\r\nUser-Agent: a\tb\r\nConnection: close\r\n\r\n")
    assert request_bytes("GET", "/", version="") == b"GET /\r\n\r\n"
    hello = client_hello()
    assert hello[:2] == b"\x16\x03" and len(hello) > 100
    with pytest.raises(ValueError, match="rate"):
        TrafficDriver(1, iter([]), rate=1000)


# -- against the embedded broker: count in = published + rejected, read back from Kafka




def canonical(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True)


def dead_letters_with(bootstrap: str, marker: str) -> list[dict[str, Any]]:
    values = [r["value"] for r in read_topic(bootstrap, "dead-letters")]
    return [v for v in values if marker in v.get("raw", "")]


def check_kafka(bootstrap: str, topic: str, marker: str, lines_in: int, sent: int,
                rejected: int) -> list[dict[str, Any]]:
    published = [r["value"] for r in read_topic(bootstrap, topic)]
    dead = dead_letters_with(bootstrap, marker)
    assert lines_in == sent + rejected
    assert (len(published), len(dead)) == (sent, rejected)
    assert all(d["source"] == "nginx" and d["reason"] for d in dead)
    return published


def mixed_log(path: Path, marker: str) -> int:
    """The recording with three bad lines carrying ``marker``; returns the number of lines."""
    bad = [f"garbage {marker} {i}".encode() for i in range(3)]
    write(path, *RECORDED[:500], bad[0], *RECORDED[500:], bad[1], bad[2])
    return len(RECORDED) + 3


def test_follow_mode_into_kafka(bootstrap: str, new_topic: Callable[[int], str],
                                tmp_path: Path) -> None:
    name = new_topic(3)
    log = tmp_path / "access.log"
    total = mixed_log(log, name)
    source = NginxTailSource(log, tmp_path / "state", "upstream", SERVICES, from_start=True,
                             sleep=Steps())
    source.topic = Topic(name, name, 3)
    sink = KafkaSink(bootstrap)
    try:
        counters = source.run(sink)
    finally:
        sink.close()
    published = check_kafka(bootstrap, name, name, total, counters.sent, counters.rejected)
    assert (counters.sent, counters.rejected) == (1120, 3)
    assert {v["service"] for v in published} == {"api", "static", "auth", "web", ""}
    saved = PositionStore(tmp_path / "state", log).load()
    assert saved is not None and saved.offset == log.stat().st_size


def test_replay_mode_into_kafka(bootstrap: str, new_topic: Callable[[int], str],
                                tmp_path: Path) -> None:
    name = new_topic(3)
    log = tmp_path / "recorded.txt"
    total = mixed_log(log, name)
    source = NginxReplaySource(log, "upstream", SERVICES, speed=0)
    source.topic = Topic(name, name, 3)
    sink = KafkaSink(bootstrap)
    try:
        counters = source.run(sink)
    finally:
        sink.close()
    published = check_kafka(bootstrap, name, name, total, counters.sent, counters.rejected)
    assert sorted(v["event_time"] for v in published)[0] == "2026-11-22T06:16:29.000Z"


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


def test_from_settings_picks_the_mode(tmp_path: Path) -> None:
    follow = from_settings(settings.load(environ={"DATA_DIR": str(tmp_path),
                                                  "NGINX_LOG_PATH": str(tmp_path / "a.log"),
                                                  "NGINX_LOG_FORMAT": "combined"}))
    assert isinstance(follow, NginxTailSource) and follow.parser.log_format == "combined"
    assert follow.state_dir == tmp_path / "nginx" / "positions"
    demo = from_settings(settings.load(environ={"DATA_DIR": str(tmp_path)}))
    assert isinstance(demo, NginxDemoSource if NGINX else NginxReplaySource)


# -- the command line


def test_help_says_how_to_run_each_mode() -> None:
    result = subprocess.run([sys.executable, "-m", "input.nginx", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for flag in ("--follow", "--replay", "--demo", "--speed", "--log-format", "--dry-run"):
        assert flag in result.stdout


def test_dry_run_replay_prints_records_and_dead_letters(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "recorded.txt"
    write(log, *RECORDED[:3], b"junk")
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["--replay", str(log), "--speed", "0", "--log-format", "upstream",
                 "--dry-run", "--data-dir", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r.get("path") for r in rows[:3]] == ["/index.html", "/api/orders", "/index.html"]
    assert rows[3]["dead_letter"]["raw"] == "junk"


def test_dry_run_follow_with_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "access.log"
    write(log, *RECORDED[:3])
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["--follow", str(log), "--from-start", "--count", "3", "--dry-run",
                 "--data-dir", str(tmp_path)]) == 0
    assert len(out.getvalue().splitlines()) == 3
    assert (tmp_path / "nginx" / "positions").is_dir()



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
