"""The result writer with a copy in a second store: the primary's rows are pushed without
waiting for the copy, and the batch still ends only when the copy has ended.

A real SQLite file is the primary; the copy's store is one whose writes wait for the test
(the real slow copy is a Cassandra node killed with requests in flight).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from common.messages import ResultsBatch
from common.waiting import eventually
from processing import writer as writer_module
from processing.mirror import Mirror
from processing.writer import ResultWriter
from storage.base import ResultRow, StoreError
from storage.disk import DiskStore

T0 = dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.UTC)


class HeldStore:
    """A copy's store whose writes wait until the test releases them (or fail with ``error``)."""

    kind = "cassandra"

    def __init__(self) -> None:
        self.released = threading.Event()
        self.writing = threading.Event()
        self.error: Exception | None = None
        self.rows: list[ResultRow] = []

    def upsert(self, rows: Sequence[ResultRow], ttl: dt.timedelta | None = None) -> None:
        self.writing.set()
        assert self.released.wait(30), "the test never released the copy"
        if self.error is not None:
            raise self.error
        self.rows.extend(rows)

    def close(self) -> None:
        pass


class FailingStore(DiskStore):
    def upsert(self, rows: Sequence[ResultRow], ttl: dt.timedelta | None = None) -> None:
        raise StoreError("the disk is full (test)")


def window(count: int) -> ResultRow:
    return ResultRow("vmstat_tumbling", "h", T0, T0 + dt.timedelta(seconds=10), {"count": count})


@pytest.fixture
def parts(tmp_path: Path) -> Any:
    held = HeldStore()
    mirror = Mirror("cassandra", lambda: held, tmp_path / "behind.json")
    eventually(lambda: mirror._opened() is not None, 10, "the copy's store to open",
               interval_s=0.01)
    pushed: list[ResultsBatch] = []

    def writer(store: DiskStore) -> ResultWriter:
        store.setup()
        return ResultWriter("vmstat_tumbling", lambda rows: [], lambda: store, bootstrap=None,
                            publish=pushed.append, mirrors=[mirror])

    yield held, writer, pushed, tmp_path
    held.released.set()
    mirror.close()


def test_the_primary_rows_are_pushed_while_the_copy_is_still_being_written(
        parts: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    held, writer, pushed, tmp_path = parts
    monkeypatch.setattr(writer_module, "SLOW_COPY_S", 0.0)  # any wait for the copy is told
    primary = DiskStore(tmp_path / "primary.sqlite3")
    batch = threading.Thread(target=writer(primary).write, args=([window(3)], 7))
    batch.start()
    eventually(lambda: [m.store for m in pushed] == ["disk"], 10,
               "the disk demos' update while the copy waits")
    assert held.writing.is_set() and not held.rows
    assert batch.is_alive(), "the batch ended before its copy"
    held.released.set()
    batch.join(10)
    assert not batch.is_alive()
    assert [m.store for m in pushed] == ["disk", "cassandra"]
    assert [m.batch_id for m in pushed] == [7, 7]
    assert held.rows == [window(3)]
    assert [r.values for r in primary.latest("vmstat_tumbling", 10)] == [{"count": 3}]
    assert "batch 7 of vmstat_tumbling waited" in caplog.text
    primary.close()


def test_a_copy_that_fails_for_good_fails_the_batch_after_the_primary_rows(parts: Any) -> None:
    held, writer, pushed, tmp_path = parts
    held.error = StoreError("a broken request (test)")
    held.released.set()
    primary = DiskStore(tmp_path / "primary.sqlite3")
    with pytest.raises(StoreError, match="broken request"):
        writer(primary).write([window(3)], 1)
    # Spark replays the batch; the primary's rows and their push are simply repeated.
    assert [m.store for m in pushed] == ["disk"]
    primary.close()


def test_a_failed_primary_write_waits_for_the_copy_and_pushes_nothing(parts: Any) -> None:
    held, writer, pushed, tmp_path = parts
    failing = FailingStore(tmp_path / "full.sqlite3")
    failed: list[BaseException] = []

    def write() -> None:
        try:
            writer(failing).write([window(3)], 1)
        except StoreError as e:
            failed.append(e)

    batch = threading.Thread(target=write)
    batch.start()
    eventually(held.writing.is_set, 10, "the copy to start")
    assert batch.is_alive(), "the failed batch did not wait for its copy"
    held.released.set()
    batch.join(10)
    assert [str(e) for e in failed] == ["the disk is full (test)"] and not pushed
    failing.close()
