"""Rows as the Cassandra store's bound values and back, without a server
(:mod:`storage.cassandra_rows`): times, days, TTLs and the 2038 limit, batches, read order.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from storage.base import ResultRow, StoreError
from storage.cassandra_rows import (
    BY_KEY_KEY,
    CLOCK_SKEW_S,
    INDEX_TTL_MARGIN_S,
    MAX_EXPIRY,
    MAX_EXPIRY_S,
    RESULTS_KEY,
    bound_size,
    ceil_millis,
    check_ttl,
    day_of,
    distinct_days,
    from_driver_date,
    from_driver_time,
    last_write_wins,
    newest_first,
    partition_batches,
    plan_upsert,
    to_millis,
    ttl_seconds,
)
from storage.cassandra_schema import Statements

T0 = dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
STATEMENTS = Statements("streamkit", "{'class': 'NetworkTopologyStrategy', 'dc1': 3}")


def row(key: str, start: dt.datetime, stream: str = "s", **values: Any) -> ResultRow:
    return ResultRow(stream, key, start, start + 10 * SECOND, values)


def columns_of(insert: str) -> list[str]:
    """Bind names of an INSERT, in order: its column list, then ``ttl`` for USING TTL ?."""
    match = re.search(r"\(([^)]*)\) VALUES", insert)
    assert match
    names = [c.strip() for c in match.group(1).split(",")]
    return names + (["ttl"] if insert.endswith("USING TTL ?") else [])


def test_bound_values_follow_each_statements_columns() -> None:
    start = dt.datetime(2026, 11, 22, 23, 59, 50, tzinfo=dt.UTC)
    rows = [ResultRow("s", "a", start, start + 10 * SECOND, {"n": 1, "label": "ünï"})]
    for ttl, ttl_s in [(None, 0), (dt.timedelta(hours=24), 86_400)]:
        plan = plan_upsert(rows, ttl, T0)
        for statement, params in [(STATEMENTS.insert, plan.results[0]),
                                  (STATEMENTS.insert_by_key, plan.by_key[0])]:
            assert statement.count("?") == len(params)
            bound = dict(zip(columns_of(statement), params, strict=True))
            assert bound["stream"] == "s" and bound["key"] == "a"
            assert bound["day"] == dt.date(2026, 11, 22)
            assert bound["window_start"] == to_millis(start)
            assert bound["window_end"] == to_millis(start) + 10_000
            assert bound["updated_at"] == to_millis(T0)
            assert bound["payload"] == '{"n":1,"label":"\\u00fcn\\u00ef"}'
            assert bound["ttl"] == ttl_s  # 0: kept, stated (overrides a table default)
        (index,) = plan.index
        assert STATEMENTS.insert_day.count("?") == len(index)
        if ttl is None:
            assert index == ("s", dt.date(2026, 11, 22), 0, 0)  # TTL 0: the entry never expires
        else:
            assert index == ("s", dt.date(2026, 11, 22), 86_400, 86_400 + INDEX_TTL_MARGIN_S)
    # the partition keys the batches group by are the bound values' first columns
    plan = plan_upsert(rows, None, T0)
    assert plan.results[0][:RESULTS_KEY] == ("s", dt.date(2026, 11, 22))
    assert plan.by_key[0][:BY_KEY_KEY] == ("s", "a", dt.date(2026, 11, 22))


def test_one_index_entry_per_stream_and_day() -> None:
    rows = [row("a", T0), row("b", T0), row("a", T0 + dt.timedelta(days=1)),
            row("a", T0, stream="other")]
    plan = plan_upsert(rows, None, T0)
    assert [(s, d) for s, d, _, _ in plan.index] == [
        ("other", dt.date(2026, 11, 22)), ("s", dt.date(2026, 11, 22)),
        ("s", dt.date(2026, 11, 23))]
    assert len(plan.results) == len(plan.by_key) == 4


def test_a_batch_writing_one_window_twice_keeps_the_last() -> None:
    rows = [row("a", T0, n=1), row("b", T0, n=2), row("a", T0, n=3)]
    assert [(r.key, r.values["n"]) for r in last_write_wins(rows)] == [("a", 3), ("b", 2)]
    assert len(plan_upsert(rows, None, T0).results) == 2


def test_naive_times_and_bad_ttls_are_refused_before_anything_is_sent() -> None:
    naive = ResultRow("s", "a", dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, 0, 0, 10))  # noqa: DTZ001
    with pytest.raises(StoreError, match="naive"):
        plan_upsert([naive], None, T0)
    with pytest.raises(StoreError, match="naive"):
        plan_upsert([row("a", T0)], None, dt.datetime(2026, 1, 1))  # noqa: DTZ001
    for bad in (dt.timedelta(0), dt.timedelta(seconds=-5), dt.timedelta(days=365 * 21)):
        with pytest.raises(StoreError, match="ttl"):
            plan_upsert([row("a", T0)], bad, T0)


# -- time, days, ordering ------------------------------------------------------------------


def test_day_buckets_are_utc_days() -> None:
    assert day_of(dt.datetime(2026, 11, 22, 23, 59, 59, tzinfo=dt.UTC)) == dt.date(2026, 11, 22)
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert day_of(dt.datetime(2026, 11, 23, 1, 0, tzinfo=plus2)) == dt.date(2026, 11, 22)
    minus2 = dt.timezone(dt.timedelta(hours=-2))
    assert day_of(dt.datetime(2026, 11, 22, 23, 0, tzinfo=minus2)) == dt.date(2026, 11, 23)
    assert day_of(dt.datetime(1850, 1, 1, tzinfo=dt.UTC)) == dt.date(1850, 1, 1)  # census
    with pytest.raises(StoreError, match="naive"):
        day_of(dt.datetime(2026, 1, 1))  # noqa: DTZ001


def test_times_are_milliseconds_utc_both_ways() -> None:
    census = dt.datetime(1850, 1, 1, tzinfo=dt.UTC)
    assert to_millis(census) == -3_786_825_600_000
    assert to_millis(T0 + dt.timedelta(microseconds=1999)) == to_millis(T0) + 1  # floor
    assert to_millis(dt.datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=dt.UTC)) == -1
    # range bounds round up: ms >= ceil_millis(t) exactly when ms >= t
    assert ceil_millis(T0) == to_millis(T0)
    assert ceil_millis(T0 + dt.timedelta(microseconds=1)) == to_millis(T0) + 1
    # what the driver returns (naive UTC, float-built) comes back aware, in whole ms
    naive_utc = (T0 + dt.timedelta(microseconds=122_999)).replace(tzinfo=None)
    assert from_driver_time(naive_utc) == T0 + dt.timedelta(milliseconds=123)
    assert from_driver_time(census.replace(tzinfo=None)) == census
    assert from_driver_time(census.replace(tzinfo=None)).tzinfo is dt.UTC


def test_bound_values_serialise_as_the_driver_sends_them() -> None:
    """The driver's own codecs: ints bind to ``timestamp`` as ms, dates to ``date`` (no server)."""
    from cassandra.cqltypes import DateType, SimpleDateType
    from cassandra.util import Date

    for when in (T0, dt.datetime(1850, 1, 1, tzinfo=dt.UTC)):
        encoded = DateType.serialize(to_millis(when), 4)
        assert encoded == DateType.serialize(when, 4)  # the same bytes as the datetime itself
        assert from_driver_time(DateType.deserialize(encoded, 4)) == when
    for day in (dt.date(2026, 11, 22), dt.date(1850, 1, 1)):
        decoded = SimpleDateType.deserialize(SimpleDateType.serialize(day, 4), 4)
        assert isinstance(decoded, Date) and from_driver_date(decoded) == day


def test_ttls_round_up_to_whole_seconds() -> None:
    assert ttl_seconds(None) == 0
    assert ttl_seconds(dt.timedelta(hours=24)) == 86_400
    assert ttl_seconds(dt.timedelta(milliseconds=1500)) == 2


def test_index_days_are_read_once_each_newest_first() -> None:
    from cassandra.util import Date

    days = [Date(dt.date(2026, 11, 22)), Date(dt.date(2026, 11, 22)), Date(dt.date(2026, 11, 21)),
            Date(dt.date(1850, 1, 1)), dt.date(2000, 1, 1)]
    assert distinct_days(days) == [dt.date(2026, 11, 22), dt.date(2026, 11, 21),
                                   dt.date(2000, 1, 1), dt.date(1850, 1, 1)]


def test_rows_of_several_days_merge_newest_first_then_by_key() -> None:
    day1 = [row("b", T0), row("a", T0), row("a", T0 - 10 * SECOND)]
    day2 = [row("z", T0 + dt.timedelta(days=1)), row("c", T0 + dt.timedelta(days=1))]
    merged = newest_first([*day1, *day2])
    assert [(r.key, r.window_start) for r in merged] == [
        ("c", T0 + dt.timedelta(days=1)), ("z", T0 + dt.timedelta(days=1)),
        ("a", T0), ("b", T0), ("a", T0 - 10 * SECOND)]
    assert [r.key for r in newest_first([*day1, *day2], limit=3)] == ["c", "z", "a"]
    assert newest_first(day1, limit=0) == []


# -- retention past 2038 -------------------------------------------------------------------


def test_check_ttl_refuses_an_expiry_past_2038_naming_retention_hours() -> None:
    assert dt.datetime(2038, 1, 19, 3, 14, 6, tzinfo=dt.UTC) == MAX_EXPIRY
    assert check_ttl(None, T0) == 0
    assert check_ttl(dt.timedelta(hours=24), T0) == 86_400
    longest = MAX_EXPIRY_S - to_millis(T0) // 1000 - INDEX_TTL_MARGIN_S - CLOCK_SKEW_S
    assert check_ttl(dt.timedelta(seconds=longest), T0) == longest
    with pytest.raises(StoreError) as refused:
        check_ttl(dt.timedelta(seconds=longest + 1), T0)
    message = str(refused.value)
    assert "RETENTION_HOURS=" in message and "2038-01-19T03:14:06Z" in message
    assert f"at most {longest // 3600}" in message
    with pytest.raises(StoreError, match="RETENTION_HOURS"):
        plan_upsert([row("a", T0)], dt.timedelta(seconds=longest + 1), T0)
    # the same retention is fine when written earlier (the limit is a date, not a length)
    assert check_ttl(dt.timedelta(seconds=longest + 1), T0 - dt.timedelta(days=1))
    with pytest.raises(StoreError, match="RETENTION_HOURS"):
        check_ttl(dt.timedelta(hours=-1), T0)
    with pytest.raises(StoreError, match="naive"):
        check_ttl(dt.timedelta(hours=1), dt.datetime(2026, 1, 1))  # noqa: DTZ001


# -- one batch per partition ---------------------------------------------------------------


def test_rows_are_batched_per_partition_in_order() -> None:
    d1, d2 = dt.date(2026, 11, 22), dt.date(2026, 11, 23)
    params = [("s", d1, 1, "a"), ("s", d2, 2, "a"), ("s", d1, 3, "b"), ("t", d1, 4, "a")]
    assert partition_batches(params, 2) == [
        (("s", d1), [("s", d1, 1, "a"), ("s", d1, 3, "b")]),
        (("s", d2), [("s", d2, 2, "a")]),
        (("t", d1), [("t", d1, 4, "a")]),
    ]
    assert [key for key, _ in partition_batches(params, 3)] == [
        ("s", d1, 1), ("s", d2, 2), ("s", d1, 3), ("t", d1, 4)]


def test_an_oversize_partition_is_split_within_the_bounds() -> None:
    rows = [("s", "k", i, "x" * 90) for i in range(10)]  # 1 + 1 + 8 + 90 = 100 bytes each
    assert bound_size(rows[0]) == 100
    split = partition_batches(rows, 2, max_bytes=350)
    assert [len(chunk) for _, chunk in split] == [3, 3, 3, 1]
    assert [r for _, chunk in split for r in chunk] == rows  # in order, none lost
    assert [len(chunk) for _, chunk in partition_batches(rows, 2, max_rows=4)] == [4, 4, 2]
    assert [len(c) for _, c in partition_batches(rows, 2, max_bytes=10)] == [1] * 10  # a row alone
    assert len(partition_batches(rows, 2)) == 1
