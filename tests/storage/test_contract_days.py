"""More of the contract, for every store: history across days, old fixed windows, key ranges.

The Cassandra store partitions by UTC day and finds a stream's days through an
index; these cases (a window each side of midnight, census-style windows a
century apart, a key filter on a range) exercise that against the session's real node
(tests/conftest.py ``cassandra``), and hold the disk store to the same answers.
"""

from __future__ import annotations

import datetime as dt

from storage.base import ResultRow, Store
from tests.storage import test_contract as contract
from tests.storage.test_contract import SECOND, T0, window

#: The contract's fixture: each test runs on the disk store and on Cassandra.
store = contract.store

MIDNIGHT = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def year(stream: str, key: str, y: int) -> ResultRow:
    start = dt.datetime(y, 1, 1, tzinfo=dt.UTC)
    return ResultRow(stream, key, start, dt.datetime(y + 1, 1, 1, tzinfo=dt.UTC), {"year": y})


def test_history_runs_across_midnight(store: Store) -> None:
    starts = [MIDNIGHT + offset * SECOND for offset in (-20, -10, 0, 10)]
    store.upsert([ResultRow("s", "a", s, s + 10 * SECOND, {"n": i}) for i, s in enumerate(starts)])
    assert [r.values["n"] for r in store.latest("s", 3)] == [3, 2, 1]
    assert [r.values["n"] for r in store.latest("s", 10, key="a")] == [3, 2, 1, 0]
    rows = store.range("s", MIDNIGHT - 10 * SECOND, MIDNIGHT + 10 * SECOND)
    assert [r.window_start for r in rows] == [MIDNIGHT, MIDNIGHT - 10 * SECOND]


def test_latest_of_fixed_old_windows(store: Store) -> None:
    """Census rows: one window per decade since 1850, none recent."""
    store.upsert([year("census", f"{y}|{sex}", y) for y in range(1850, 2001, 10) for sex in (1, 2)])
    rows = store.latest("census", 5)
    assert [(r.values["year"], r.key) for r in rows] == [
        (2000, "2000|1"), (2000, "2000|2"), (1990, "1990|1"), (1990, "1990|2"), (1980, "1980|1")]
    assert len(store.latest("census", 1000)) == 32
    assert [r.values["year"] for r in store.latest("census", 100, key="1850|2")] == [1850]
    rows = store.range("census", dt.datetime(1900, 1, 1, tzinfo=dt.UTC),
                       dt.datetime(1930, 1, 1, tzinfo=dt.UTC), key="1910|1")
    assert [r.key for r in rows] == ["1910|1"]
    rows = store.range("census", dt.datetime(1900, 1, 1, tzinfo=dt.UTC),
                       dt.datetime(1930, 1, 1, tzinfo=dt.UTC), limit=3)
    assert [r.key for r in rows] == ["1920|1", "1920|2", "1910|1"]


def test_range_of_one_key(store: Store) -> None:
    store.upsert([window("s", k, 10 * i, n=i) for i in range(4) for k in ("a", "b")])
    rows = store.range("s", T0, T0 + 30 * SECOND, key="a")
    assert [(r.key, r.values["n"]) for r in rows] == [("a", 2), ("a", 1), ("a", 0)]
    assert store.range("s", T0 + 30 * SECOND, T0, key="a") == []


def test_a_stream_with_no_rows_is_empty(store: Store) -> None:
    store.upsert([window("s", "a", 0, n=1)])
    assert store.latest("nothing", 10) == []
    assert store.latest("s", 10, key="nobody") == []
    assert store.range("nothing", T0, T0 + 60 * SECOND) == []
