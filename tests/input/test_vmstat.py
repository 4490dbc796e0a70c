"""Host metrics: vmstat text parsing (real procps-ng output) and psutil sampling."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from common import records
from common.records import VmstatSample
from input.base import ListSink, Rejected
from input.vmstat import HostSampler, VmstatParser, VmstatSource, VmstatTextSource

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_parses_real_vmstat_output_in_utc() -> None:
    lines = (FIXTURES / "vmstat-procps-4.0.2-utc.txt").read_text().splitlines()
    parser = VmstatParser("box", dt.UTC)
    parsed = [p for p in map(parser.parse, lines) if p is not None]
    assert len(parsed) == 4 and all(isinstance(p, VmstatSample) for p in parsed)
    first = parsed[0]
    assert isinstance(first, VmstatSample)
    assert first.host == "box"
    assert first.event_time.tzinfo is not None
    assert (first.cpu_user, first.cpu_system, first.cpu_idle, first.cpu_iowait) == (17.0, 5.0, 78.0, 0.0)
    assert first.disk_read_bps == 1220 * 1024.0  # bi, in 1 KiB blocks per second
    assert first.mem_available == 24398576 * 1024.0
    assert first.mem_cached == (596 + 148716) * 1024.0
    assert first.event_time == dt.datetime(2026, 11, 22, 5, 32, 34, tzinfo=dt.UTC)
    assert first.net_in_bps is None  # vmstat has no network columns
    times = [p.event_time for p in parsed if isinstance(p, VmstatSample)]
    assert times == sorted(times) and times[1] - times[0] == dt.timedelta(seconds=1)


def test_local_times_are_converted_to_utc() -> None:
    lines = (FIXTURES / "vmstat-procps-4.0.2-berlin.txt").read_text().splitlines()
    parser = VmstatParser("box", ZoneInfo("Europe/Berlin"))
    first = next(p for p in map(parser.parse, lines) if p is not None)
    assert isinstance(first, VmstatSample)
    assert first.event_time == dt.datetime(2026, 11, 22, 5, 32, 37, tzinfo=dt.UTC)


def test_a_newer_header_with_an_extra_column_is_followed() -> None:
    parser = VmstatParser("box", dt.UTC)
    assert parser.parse(" r  b   swpd   free   buff  cache   si   so    bi    bo   in   cs us sy id wa st gu  UTC") is None
    sample = parser.parse(" 1  0 0 100 1 2 0 0 3 4 50 60 10 5 85 0 0 0 2026-11-22 05:00:00")
    assert isinstance(sample, VmstatSample) and sample.cpu_idle == 85.0


def test_malformed_lines_are_rejected_and_counted_never_raised() -> None:
    lines = [
        "procs -----------memory----------",
        " r  b   swpd   free   buff  cache   si   so    bi    bo   in   cs us sy id wa st                 UTC",
        " 1  0  0 100 1 2 0 0 3 4 50 60 10 5 85 0 0 2026-11-22 05:00:00",
        "garbage",
        " 1  0  0 100 1 2 0 0 3 4 50 60 ten 5 85 0 0 2026-11-22 05:00:01",
        " 1  0  0 100 1 2 0 0 3 4 50 60 10 5 85 0 0 2026-13-45 99:00:01",
        "",
    ]
    sink = ListSink()
    counters = VmstatTextSource(lines, host="box", tz=dt.UTC).run(sink)
    assert (counters.sent, counters.rejected) == (1, 3)
    assert [reason for _, reason, _ in sink.dead] == [
        "expected the 17 columns of the header (r b swpd free buff cache si so bi bo in cs us "
        "sy id wa st), and with -t a date and a time; got 1 fields",
        "a column is not a number",
        "the last two fields are not vmstat -t's date and time",
    ]


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ARRIVAL = dt.datetime(2026, 12, 7, 3, 0, 0, tzinfo=dt.UTC)


def parse_fixture(name: str, unit: str = "K", repeat: int = 1) -> tuple[list[Any], list[Any]]:
    """(samples, rejections) of a recording of Debian's procps-ng 4.0.2 vmstat (TZ=UTC),
    its lines ``repeat`` times over (vmstat without -n repeats its header every screen)."""
    lines = (FIXTURES / f"vmstat-procps-4.0.2-{name}.txt").read_text().splitlines() * repeat
    sink = ListSink()
    counters = VmstatTextSource(lines, host="box", tz=dt.UTC, unit=unit,
                                clock=lambda: ARRIVAL).run(sink)
    assert counters.sent == len(sink.published)
    return [records.from_json(VmstatSample, value) for _, _, value in sink.published], sink.dead


@pytest.mark.parametrize(("name", "time_source"), [
    ("plain", "arrival"),      # vmstat 1: no timestamps, no gu
    ("n", "arrival"),          # vmstat -n 1
    ("wide", "arrival"),       # vmstat -w 1: "--procs--" header, gu
    ("t", "vmstat"),           # vmstat -t 1
    ("wide-t", "vmstat"),      # vmstat -w -t 1
])
def test_every_layout_parses_and_headers_are_skipped(name: str, time_source: str) -> None:
    samples, dead = parse_fixture(name, repeat=2)  # headers repeated, as without -n
    assert not dead, dead
    assert len(samples) == 6
    assert {s.time_source for s in samples} == {time_source}
    first = samples[0]
    assert first.cpu_user == 55 and first.cpu_system == 7 and first.cpu_idle == 36
    assert first.mem_available == 22719036 * 1024
    assert first.mem_cached is not None and first.mem_cached > 1_800_000 * 1024
    assert first.disk_read_bps == 387 * 1024 and first.disk_write_bps == 961 * 1024
    if time_source == "vmstat":
        assert first.event_time == dt.datetime(2026, 12, 7, 2, 57, 35, tzinfo=dt.UTC)
    else:
        assert first.event_time == ARRIVAL


def test_active_memory_layout_has_no_cache_figure() -> None:
    samples, dead = parse_fixture("active-t")  # vmstat -a -t 1: inact/active, not buff/cache
    assert not dead and len(samples) == 3
    assert samples[0].mem_cached is None and samples[0].mem_available == 22719036 * 1024


def test_units_of_vmstat_s_are_honoured() -> None:
    samples, dead = parse_fixture("units-M-t", unit="M")  # vmstat -S M -t 1
    assert not dead and len(samples) == 3
    assert samples[0].mem_available == 22186 * 1_048_576
    assert samples[0].mem_cached == (14 + 1793) * 1_048_576
    with pytest.raises(ValueError, match="one of"):
        VmstatTextSource([], host="box", tz=dt.UTC, unit="G")


class FakePsutil:
    """Fixed counters that advance by known amounts per sample."""

    def __init__(self) -> None:
        self.n = 0

    def cpu_times_percent(self, interval: object = None) -> SimpleNamespace:
        return SimpleNamespace(user=10.0, system=5.0, idle=80.0, iowait=5.0)

    def virtual_memory(self) -> SimpleNamespace:
        return SimpleNamespace(used=1000.0, available=3000.0, cached=200.0, buffers=50.0)

    def swap_memory(self) -> SimpleNamespace:
        return SimpleNamespace(used=7.0)

    def getloadavg(self) -> tuple[float, float, float]:
        return (0.5, 0.25, 0.125)

    def disk_io_counters(self) -> SimpleNamespace:
        self.n += 1
        return SimpleNamespace(read_bytes=self.n * 2048, write_bytes=self.n * 4096)

    def net_io_counters(self) -> SimpleNamespace:
        return SimpleNamespace(bytes_recv=self.n * 100, bytes_sent=self.n * 10)


def test_sampler_turns_counters_into_rates() -> None:
    clock = iter([0.0, 2.0, 4.0])
    sampler = HostSampler("h", psutil_module=FakePsutil(), monotonic=lambda: next(clock))
    t = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    sample = sampler.sample(t)
    assert sample.disk_read_bps == 1024.0 and sample.disk_write_bps == 2048.0
    assert sample.net_in_bps == 50.0 and sample.net_out_bps == 5.0
    assert sample.mem_cached == 250.0 and sample.load_15m == 0.125


def test_vmstat_source_samples_on_schedule_without_sleeping() -> None:
    mono = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        mono[0] += seconds

    ticks = iter(dt.datetime(2026, 11, 22, 0, 0, s, tzinfo=dt.UTC) for s in range(10))
    sampler = HostSampler("h", psutil_module=FakePsutil(), monotonic=lambda: mono[0])
    source = VmstatSource(interval=1.0, sampler=sampler, count=3, clock=lambda: next(ticks),
                          sleep=sleep)
    source.pacer._monotonic = lambda: mono[0]
    sink = ListSink()
    assert source.run(sink).sent == 3
    assert [v["event_time"] for _, _, v in sink.published] == [
        "2026-11-22T00:00:00Z", "2026-11-22T00:00:01Z", "2026-11-22T00:00:02Z"]
    assert all(key == "h" for _, key, _ in sink.published)
    assert slept == [1.0, 1.0]


def test_rejected_is_a_value_not_an_exception() -> None:
    assert isinstance(VmstatParser("h", dt.UTC).parse("1 2 3"), Rejected)
