"""A copy of a query's batches in another store: written with each batch, behind during an
outage (the primary carries on), caught up from the primary afterwards, across restarts.

Real SQLite files for the primary and for the copy; the copy's outage is a switch in front
of its store (the real node's outage is the stack test's kill -9 of Cassandra).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from common.waiting import eventually
from processing.mirror import Mirror
from storage.base import ResultRow, StoreError, StoreUnavailable
from storage.disk import DiskStore

T0 = dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(hours=1)


class Switch:
    """A store in front of a real one that can be down (StoreUnavailable) or broken."""

    def __init__(self, store: DiskStore) -> None:
        self.store = store
        self.down = False
        self.broken = False
        self.kind = "cassandra"
        self.closed = False

    def upsert(self, rows: Sequence[ResultRow], ttl: dt.timedelta | None = None) -> None:
        if self.down:
            raise StoreUnavailable("cannot connect to Cassandra (test)")
        if self.broken:
            raise StoreError("a broken request (test)")
        self.store.upsert(rows, ttl=ttl)

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def window(i: int, count: int) -> ResultRow:
    start = T0 + dt.timedelta(seconds=10 * i)
    return ResultRow("vmstat_tumbling", "h", start, start + dt.timedelta(seconds=10),
                     {"count": count})


def opened(mirror: Mirror) -> Mirror:
    """``mirror`` with its store open (it opens in the background on first use)."""
    def is_open() -> bool:
        mirror._opened()
        return mirror.store is not None
    eventually(is_open, 10, "the copy's store to open", interval_s=0.01)
    return mirror


def rows_of(store: DiskStore) -> dict[dt.datetime, Any]:
    return {r.window_start: dict(r.values) for r in store.latest("vmstat_tumbling", 1000)}


@pytest.fixture
def parts(tmp_path: Path) -> Any:
    primary, copy = DiskStore(tmp_path / "primary.sqlite3"), DiskStore(tmp_path / "copy.sqlite3")
    primary.setup()
    copy.setup()
    switch, clock = Switch(copy), Clock()
    recorded: list[ResultRow] = []
    behind = tmp_path / "checkpoints" / "vmstat_tumbling-disk.cassandra-behind.json"
    mirror = opened(Mirror("cassandra", lambda: switch, behind, clock=clock))

    def write(batch: list[ResultRow], on: Mirror = mirror) -> bool:
        before = dt.datetime.now(dt.UTC)
        primary.upsert(batch, ttl=TTL)  # what the query's writer does first
        return on.write(batch, TTL, primary, before, recorded.extend)

    yield primary, copy, switch, clock, mirror, write, recorded, behind
    mirror.close()
    primary.close()
    copy.close()


def test_each_batch_is_copied_after_the_primary_has_it(parts: Any) -> None:
    primary, copy, _, _, mirror, write, recorded, behind = parts
    assert write([window(0, 3), window(1, 1)])
    assert write([window(1, 2)])  # the window grew
    assert rows_of(copy) == rows_of(primary) == {T0: {"count": 3},
                                                 T0 + dt.timedelta(seconds=10): {"count": 2}}
    assert len(recorded) == 3 and mirror.behind is None and not behind.exists()


def test_an_outage_leaves_the_copy_behind_then_it_catches_up_row_for_row(parts: Any) -> None:
    primary, copy, switch, clock, mirror, write, recorded, behind = parts
    assert write([window(0, 1)])
    switch.down = True
    assert not write([window(0, 2), window(1, 1)])  # the primary has it; the copy is behind
    assert mirror.behind is not None and behind.exists()
    assert mirror.behind["streams"] == ["vmstat_tumbling"]
    switch.down = False
    clock.now = 0.5  # within the pause after the failure: not even tried
    assert not write([window(1, 2)])
    assert rows_of(copy) == {T0: {"count": 1}}
    clock.now = 60.0
    assert write([window(2, 1)])  # catches up, then copies this batch
    assert rows_of(copy) == rows_of(primary)
    assert rows_of(copy)[T0 + dt.timedelta(seconds=10)] == {"count": 2}
    assert not behind.exists() and mirror.caught_up_rows >= 2


def test_the_copy_catches_up_after_a_restart_of_the_application(parts: Any, tmp_path: Path
                                                                 ) -> None:
    primary, copy, switch, _, _, write, recorded, behind = parts
    switch.down = True
    assert not write([window(0, 5), window(1, 7)])
    assert behind.exists()
    # The application stops (the in-memory state is gone) and starts again.
    switch.down = False
    restarted = opened(Mirror("cassandra", lambda: switch, behind))
    assert write([window(2, 1)], on=restarted)
    assert rows_of(copy) == rows_of(primary) and len(rows_of(copy)) == 3
    assert not behind.exists()


def test_a_broken_request_fails_the_batch_instead_of_falling_behind(parts: Any) -> None:
    _, _, switch, _, mirror, write, _, behind = parts
    switch.broken = True
    with pytest.raises(StoreError, match="broken request"):
        write([window(0, 1)])
    assert mirror.behind is None and not behind.exists()


def test_a_copy_that_is_not_open_yet_never_holds_up_the_batch_and_catches_up(
        parts: Any, tmp_path: Path) -> None:
    primary, copy, switch, clock, _, _, _, behind = parts
    opens: list[int] = []

    def open_store() -> Switch:
        opens.append(1)
        if len(opens) == 1:
            raise StoreUnavailable("Cassandra is still starting (test)")
        return switch

    mirror = Mirror("cassandra", open_store, behind, clock=clock)
    before = dt.datetime.now(dt.UTC)
    primary.upsert([window(0, 1)], ttl=TTL)
    # Not open: behind at once (the open runs in the background), and it fails.
    assert not mirror.write([window(0, 1)], TTL, primary, before, lambda _rows: None)
    assert behind.exists()
    eventually(lambda: opens and not mirror._opening, 10, "the first attempt to open")
    clock.now = 60.0  # after the pause: opened on the next try
    opened(mirror)
    assert len(opens) == 2
    primary.upsert([window(1, 1)], ttl=TTL)
    assert mirror.write([window(1, 1)], TTL, primary, before, lambda _rows: None)
    assert rows_of(copy) == rows_of(primary) and len(rows_of(copy)) == 2
    assert not behind.exists()


def test_closing_while_the_store_opens_waits_for_it_and_closes_what_it_opened(
        tmp_path: Path) -> None:
    """No opener thread outlives close(): it would log after its owner is gone and leave a
    session to the store open."""
    import threading

    release, started = threading.Event(), threading.Event()
    switch = Switch(DiskStore(tmp_path / "copy.sqlite3"))

    def open_store() -> Switch:
        started.set()
        release.wait(10)
        return switch

    mirror = Mirror("cassandra", open_store, tmp_path / "behind.json")
    assert mirror._opened() is None
    assert started.wait(10)
    closer = threading.Thread(target=mirror.close)
    closer.start()
    eventually(lambda: mirror._closed, 10, "close() to begin")
    assert closer.is_alive()  # waits for the opening under way
    release.set()
    closer.join(10)
    assert not closer.is_alive() and mirror._opener is not None
    assert not mirror._opener.is_alive()
    assert switch.closed and mirror.store is None
