"""Record types: JSON round trips and field checks."""

from __future__ import annotations

import datetime as dt

import pytest

from common.records import RecordError, VmstatSample, format_time, from_json, parse_time

T = dt.datetime(2026, 11, 22, 5, 0, 0, 123000, tzinfo=dt.UTC)


def test_round_trip() -> None:
    sample = VmstatSample(event_time=T, host="h1", cpu_user=12.5, load_1m=0.25)
    data = sample.to_json()
    assert data["event_time"] == "2026-11-22T05:00:00.123000Z"
    assert from_json(VmstatSample, data) == sample


def test_times_are_utc_and_naive_ones_are_refused() -> None:
    berlin = dt.timezone(dt.timedelta(hours=1))
    assert parse_time("2026-11-22T06:00:00+01:00") == dt.datetime(2026, 11, 22, 5, tzinfo=dt.UTC)
    with pytest.raises(RecordError, match="time zone"):
        parse_time("2026-11-22T06:00:00")
    with pytest.raises(RecordError, match="naive"):
        format_time(dt.datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
    assert format_time(dt.datetime(2026, 1, 1, 1, tzinfo=berlin)) == "2026-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([1, 2], "JSON object"),
        ({"host": "h"}, "event_time"),
        ({"event_time": "2026-11-22T05:00:00Z"}, "host"),
        ({"event_time": "yesterday", "host": "h"}, "ISO 8601"),
        ({"event_time": "2026-11-22T05:00:00Z", "host": "h", "cpu_user": "high"}, "cpu_user"),
        ({"event_time": "2026-11-22T05:00:00Z", "host": 7}, "host"),
        ({"event_time": "2026-11-22T05:00:00Z", "host": "h", "cpu_user": True}, "cpu_user"),
    ],
)
def test_invalid_records_say_why(data: object, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        from_json(VmstatSample, data)
