"""The shared producer loop: counting, dead letters, bounds, stopping, flushing."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator

import pytest

from buffer.topics import RANDOM
from common.records import RandomNumber, Record
from input.base import ListSink, Pacer, Rejected, Source, dead_letter_value

T0 = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


class Scripted(Source):
    name = "scripted"
    topic = RANDOM

    def __init__(self, items: list[Record | Rejected], fail_at: int | None = None, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.items = items
        self.fail_at = fail_at

    def records(self) -> Iterator[Record | Rejected]:
        for i, item in enumerate(self.items):
            if i == self.fail_at:
                raise RuntimeError("input broke")
            yield item


def numbers(n: int) -> list[Record | Rejected]:
    return [RandomNumber(event_time=T0, producer="p", seq=i, value=float(i)) for i in range(n)]


def test_every_item_is_published_or_dead_lettered_and_counted() -> None:
    items = numbers(3) + [Rejected("bad line", b"\xff\xfe")] + numbers(2)
    sink = ListSink()
    counters = Scripted(items).run(sink)
    assert (counters.sent, counters.rejected, counters.seen) == (5, 1, 6)
    assert [v["seq"] for _, _, v in sink.published] == [0, 1, 2, 0, 1]
    assert sink.published[0][:2] == ("random", "p")
    assert sink.dead == [("scripted", "bad line", b"\xff\xfe")]
    assert sink.flushes == 1


def test_count_bounds_the_loop() -> None:
    counters = Scripted(numbers(10), count=4).run(ListSink())
    assert counters.seen == 4


def test_stop_ends_the_loop_after_the_current_item() -> None:
    source = Scripted(numbers(10))
    sink = ListSink()
    original = sink.publish

    def publish_then_stop(*args: object) -> None:
        original(*args)  # type: ignore[arg-type]
        if len(sink.published) == 2:
            source.stop()

    sink.publish = publish_then_stop  # type: ignore[method-assign]
    assert source.run(sink).sent == 2


def test_a_failing_source_raises_and_does_not_flush() -> None:
    sink = ListSink()
    with pytest.raises(RuntimeError, match="input broke"):
        Scripted(numbers(5), fail_at=3).run(sink)
    assert sink.flushes == 0
    assert len(sink.published) == 3


def test_dead_letter_keeps_text_or_base64() -> None:
    text = dead_letter_value("nginx", "no match", "GET / junk", T0)
    assert text == {"source": "nginx", "reason": "no match", "raw": "GET / junk",
                    "time": "2026-11-22T00:00:00.000Z"}
    binary = dead_letter_value("nginx", "binary", b"\x16\x03\x01\xff", T0)
    assert base64.b64decode(binary["raw_base64"]) == b"\x16\x03\x01\xff"


def test_pacer_sleeps_to_a_fixed_schedule_without_drift() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    pacer = Pacer(1.0, sleep=sleep, monotonic=lambda: now[0])
    pacer.wait()  # first tick: immediately
    now[0] += 0.3  # work took 0.3 s
    pacer.wait()
    now[0] += 1.5  # work overran the slot
    pacer.wait()
    pacer.wait()
    assert slept == [0.7, 0.5]
