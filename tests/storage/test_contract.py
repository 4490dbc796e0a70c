"""One contract, every store: the same tests for SQLite and Cassandra.

Cassandra is the session's node (tests/conftest.py ``cassandra``: the kit's own local node,
or the server CASSANDRA_HOSTS names); its cases skip only where no node can run (no
Cassandra jars). Nothing here fakes a server.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.base import ResultRow, Store, StoreError

T0 = dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def window(stream: str, key: str, start_s: int, **values: object) -> ResultRow:
    start = T0 + start_s * SECOND
    return ResultRow(stream, key, start, start + 10 * SECOND, values)


@pytest.fixture(params=["disk", pytest.param("cassandra", marks=pytest.mark.slow)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    clock = Clock()
    if request.param == "disk":
        from storage.disk import DiskStore

        made: Store = DiskStore(tmp_path / "store.sqlite3", clock=clock)
    else:
        server = request.getfixturevalue("cassandra")
        from common.settings import load
        from storage.cassandra import CassandraStore

        settings = load(environ={**os.environ,
                                 **server.environ(f"test_{uuid.uuid4().hex[:12]}")})
        made = CassandraStore.from_settings(settings, clock=clock)
    made.setup()
    made.clock = clock  # type: ignore[attr-defined]
    try:
        yield made
    finally:
        if hasattr(made, "drop_keyspace"):
            made.drop_keyspace()
        made.close()


def test_upsert_is_idempotent(store: Store) -> None:
    batch = [window("s", "a", 0, count=3, avg=1.5), window("s", "b", 0, count=1, avg=2.0)]
    store.upsert(batch)
    store.upsert(batch)  # a replayed micro-batch
    rows = store.latest("s", 10)
    assert sorted((r.key, dict(r.values)["count"]) for r in rows) == [("a", 3), ("b", 1)]


def test_a_later_write_of_a_window_replaces_it(store: Store) -> None:
    store.upsert([window("s", "a", 0, count=3)])
    store.upsert([window("s", "a", 0, count=5)])  # the window grew (update mode)
    rows = store.latest("s", 10)
    assert [dict(r.values)["count"] for r in rows] == [5]


def test_history_is_newest_first_and_limited(store: Store) -> None:
    store.upsert([window("s", "a", 10 * i, n=i) for i in range(6)])
    store.upsert([window("other", "a", 100, n=99)])
    rows = store.latest("s", 3)
    assert [dict(r.values)["n"] for r in rows] == [5, 4, 3]
    assert all(r.stream == "s" for r in rows)
    assert rows[0].window_start == T0 + 50 * SECOND and rows[0].window_end == T0 + 60 * SECOND
    assert rows[0].window_start.tzinfo is not None


def test_history_of_one_key(store: Store) -> None:
    store.upsert([window("s", k, 10 * i, n=i) for i in range(4) for k in ("a", "b")])
    rows = store.latest("s", 10, key="b")
    assert [r.key for r in rows] == ["b"] * 4


def test_range_reads(store: Store) -> None:
    store.upsert([window("s", "a", 10 * i, n=i) for i in range(6)])
    rows = store.range("s", T0 + 10 * SECOND, T0 + 40 * SECOND)
    assert [dict(r.values)["n"] for r in rows] == [3, 2, 1]
    assert store.range("s", T0 + 10 * SECOND, T0 + 40 * SECOND, limit=2)[-1].values["n"] == 2


def test_values_round_trip(store: Store) -> None:
    values = {"count": 7, "mean": 0.125, "hist": [1, 2, 3], "label": "ünï", "missing": None}
    store.upsert([window("s", "a", 0, **values)])
    assert dict(store.latest("s", 1)[0].values) == values


def test_retention_expires_rows_written_with_a_ttl(store: Store) -> None:
    """The disk store expires by its clock (advanced here); Cassandra by the server's own
    clock, so its rows get a TTL of a few seconds (long enough to read them back first on a
    slow machine: one second was not, in CI) and the test waits, with a deadline, until the
    server has expired them."""
    from common.waiting import eventually

    clock = store.clock  # type: ignore[attr-defined]
    ttl = dt.timedelta(seconds=5) if store.kind == "cassandra" else dt.timedelta(hours=1)
    store.upsert([window("s", "old", 0, n=1)], ttl=ttl)
    store.upsert([window("s", "kept", 0, n=2)])  # no ttl: kept
    assert sorted(r.key for r in store.latest("s", 10)) == ["kept", "old"]
    if store.kind == "cassandra":
        eventually(lambda: [r.key for r in store.latest("s", 10)] == ["kept"], 30,
                   "Cassandra to expire the row written with a 5 s TTL", interval_s=0.2)
        assert [r.key for r in store.latest("s", 10, key="old")] == []  # the key table too
        assert store.purge_expired() == 0  # nothing left to purge: the server did it
        return
    clock.now = T0 + dt.timedelta(hours=2)
    assert [r.key for r in store.latest("s", 10)] == ["kept"]
    assert store.purge_expired() == 1


def test_naive_times_are_refused(store: Store) -> None:
    naive = ResultRow("s", "a", dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, 0, 0, 10))  # noqa: DTZ001
    with pytest.raises(StoreError, match="naive"):
        store.upsert([naive])


@pytest.fixture(params=["disk", pytest.param("cassandra", marks=pytest.mark.slow)])
def writer_and_reader(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two stores on the same data, as a job and the display server hold them."""
    made: list[Store] = []
    if request.param == "disk":
        from storage.disk import DiskStore

        made = [DiskStore(tmp_path / "store.sqlite3"), DiskStore(tmp_path / "store.sqlite3")]
    else:
        server = request.getfixturevalue("cassandra")
        from common.settings import load
        from storage.cassandra import CassandraStore

        settings = load(environ={**os.environ,
                                 **server.environ(f"test_{uuid.uuid4().hex[:12]}")})
        made = [CassandraStore.from_settings(settings), CassandraStore.from_settings(settings)]
    made[0].setup()
    made[1].setup(create_schema=False)
    try:
        yield made[0], made[1]
    finally:
        if hasattr(made[0], "drop_keyspace"):
            made[0].drop_keyspace()
        for each in made:
            each.close()


def test_a_reader_sees_whole_batches_while_a_writer_writes(
        writer_and_reader: tuple[Store, Store]) -> None:
    """The display server reads while a job writes; a reader never sees half a batch.

    SQLite: one transaction per batch (WAL). Cassandra: per partition, one unlogged batch
    per partition, so the rows of one batch in one partition (here: a stream's day, and a
    key's day) appear all at once: every read counts a multiple of what a batch writes there.
    """
    writer, reader = writer_and_reader
    batches, keys, windows = 60, 8, 5  # a batch: 40 rows of one day; 5 of each key
    seen: set[tuple[str, int]] = set()
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                seen.add(("all", len(reader.latest("s", 100_000)) % (keys * windows)))
                seen.add(("key", len(reader.latest("s", 100_000, key="k3")) % windows))
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for b in range(batches):
            writer.upsert([window("s", f"k{k}", (b * windows + w) * 10, b=b)
                           for k in range(keys) for w in range(windows)])
    finally:
        done.set()
        thread.join()
    assert not errors
    assert seen == {("all", 0), ("key", 0)}  # always a multiple of the batch
    assert len(reader.latest("s", 100_000)) == batches * keys * windows


def test_the_database_survives_a_restart(tmp_path: Path) -> None:
    from storage.disk import DiskStore

    first = DiskStore(tmp_path / "s.sqlite3")
    first.setup()
    first.upsert([window("s", "a", 0, n=1)])
    first.close()
    again = DiskStore(tmp_path / "s.sqlite3")
    again.setup()
    assert [dict(r.values) for r in again.latest("s", 5)] == [{"n": 1}]
    again.close()
