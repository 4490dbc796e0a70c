"""The NGINX source (input/nginx.py): follow and replay with a list sink, Kafka, the command line."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from buffer.topics import Topic
from common import settings
from common.accesslog import AccessLogParser
from common.records import AccessRecord
from input.base import KafkaSink, ListSink, Rejected
from input.nginx import (
    SHIPPED_RECORDING,
    NginxDemoSource,
    NginxReplaySource,
    NginxTailSource,
    from_settings,
    main,
    to_item,
)
from input.nginx_tail import Position, PositionStore
from tests.input.nginx_support import (
    NGINX,
    RECORDED,
    SERVICES,
    check_kafka,
    mixed_log,
    write,
)

ROOT = Path(__file__).resolve().parents[2]


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
        t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in times]
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


# -- against the embedded broker: count in = published + rejected, read back from Kafka


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
    assert sorted(v["event_time"] for v in published)[0] == "2026-11-22T06:16:29Z"


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
