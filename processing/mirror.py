"""A second copy of a query's results, in another store, written by the same micro-batch.

A windowed stream that two demos show from two stores (/demo7 from SQLite, /demo8 from
Cassandra) is computed once: one Spark query, whose ``foreachBatch`` writes the batch to
its primary store (the disk) and, at the same time, to the mirror (Cassandra). A second
query for the copy would read the topic and aggregate the windows a second time; on the
2-core machines of the benchmarks that doubled Spark's work on the 1 s host-metrics path
and tripled its end-to-end latency (docs/benchmark-history.md).

The primary store stays the query's store: its batch fails (and Spark retries it) when the
primary fails, never because of the mirror, so the disk demos keep running while
Cassandra is down. Nothing is lost for the mirror either:

* until the mirror's store is open (it opens in the background: connecting to a node that may
  still be starting never holds up the primary's batch), and when a copy fails because the
  mirror is out of reach
  (:class:`storage.base.StoreUnavailable`), the mirror is *behind*: the time before the
  batch's primary write is saved in ``<checkpoint>.behind`` (it survives a restart of the
  application), copies stop, and later batches try again after 1, 2, 4 ... 30 s;
* to catch up, every row the primary store wrote since then
  (:meth:`storage.disk.DiskStore.updated_since`) is upserted into the mirror, then the
  file is removed. A window's row is its whole aggregate (update mode), so the copy then
  equals the primary row for row; upserts make a repeated catch-up harmless.

A copy that fails for another reason (a broken request) raises: the batch fails like a
failed primary write would.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from common import backoff
from storage.base import ResultRow, StoreUnavailable

__all__ = ["Mirror"]

log = logging.getLogger(__name__)

#: Rows copied per upsert while catching up.
CATCH_UP_CHUNK = 2_000
#: The catch-up starts this long before the failed batch's primary write (clock steps).
MARGIN = dt.timedelta(seconds=2)


class Mirror:
    """Copies a writer's batches into ``kind`` while its primary store writes them.

    Args:
        kind: the mirror's store kind ("cassandra").
        open_store: opens the mirror's store (may raise StoreUnavailable).
        behind_file: where the time the mirror fell behind is kept across restarts.
        clock: monotonic seconds (tests replace it).
    """

    def __init__(self, kind: str, open_store: Callable[[], Any], behind_file: Path,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kind = kind
        self._open_store = open_store
        self._store: Any = None
        self.behind_file = behind_file
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._next_try = 0.0
        self._opening = False
        self._open_failures = 0
        self._next_open = 0.0
        self._open_error: Exception | None = None
        self._opener: threading.Thread | None = None
        self._closed = False
        #: Rows copied by catch-ups so far (for logs and tests).
        self.caught_up_rows = 0

    @property
    def behind(self) -> dict[str, Any] | None:
        """``{"since": iso time, "streams": [...]}`` while the mirror is behind, else None."""
        try:
            return dict(json.loads(self.behind_file.read_text()))
        except FileNotFoundError:
            return None
        except ValueError:  # a torn write: behind since an unknown time; copy everything
            log.warning("%s is unreadable: the %s copy catches up from the start",
                        self.behind_file, self.kind)
            return {"since": "1970-01-01T00:00:00Z", "streams": []}

    def _mark_behind(self, since: dt.datetime, streams: Iterable[str]) -> dict[str, Any]:
        """Save (or extend) the behind file: behind since ``since`` for these streams."""
        from common.records import format_time

        current = self.behind
        names = sorted(set(streams) | set((current or {}).get("streams", [])))
        if current is not None and names == sorted(current.get("streams", [])):
            return current
        marked = {"since": current["since"] if current else format_time(since - MARGIN),
                  "streams": names}
        self.behind_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.behind_file.with_suffix(".tmp")
        partial.write_text(json.dumps(marked))
        partial.replace(self.behind_file)  # atomic: never a half-written file
        return marked

    def _failed(self, marked: dict[str, Any], error: Exception) -> None:
        """An attempt failed: the next one after 1, 2, 4 ... 30 s."""
        self._failures += 1
        pause = backoff.delay(self._failures - 1)
        self._next_try = self._clock() + pause
        log.warning("the %s copy of %s is behind since %s (%s); the disk demos carry on; "
                    "next try in %.0f s", self.kind, ", ".join(marked["streams"]),
                    marked["since"], error, pause)

    def write(self, rows: Sequence[ResultRow], ttl: dt.timedelta | None,
              primary: Any, primary_written_from: dt.datetime,
              record: Callable[[Sequence[ResultRow]], None]) -> bool:
        """Copy ``rows`` (which ``primary`` writes meanwhile); True when the mirror has them.

        ``primary_written_from`` is a time before ``primary`` writes them; ``record`` is
        told every row copied (the ledger). Raises StoreError for anything but an outage.
        """
        with self._lock:
            streams = {r.stream for r in rows}
            behind = self.behind
            store = self._opened()
            if store is None or (behind is not None and self._clock() < self._next_try):
                self._mark_behind(primary_written_from, streams)
                return False
            try:
                if behind is not None:
                    self._catch_up(store, primary, behind, streams, ttl, record)
                store.upsert(rows, ttl=ttl)
            except StoreUnavailable as e:
                self._failed(self._mark_behind(primary_written_from, streams), e)
                return False
            record(rows)
            if behind is not None:
                self.behind_file.unlink(missing_ok=True)
                log.info("the %s copy caught up (%d rows copied from the disk since %s)",
                         self.kind, self.caught_up_rows, behind["since"])
            self._failures = 0
            return True

    def _opened(self) -> Any:
        """The mirror's store if open; else None, and opening it starts in the background.

        Opening (connecting, checking the schema, preparing statements: a second or more,
        and a node may still be starting) never holds up the primary's batch: until it is
        open the copy is behind, and the first write after catches up. An error that is
        not an outage (credentials, a broken schema) is raised here, failing the batch.
        """
        if self._store is not None:
            return self._store
        error, self._open_error = self._open_error, None
        if error is not None:
            raise error
        if not self._opening and self._clock() >= self._next_open:
            self._opening = True
            self._opener = threading.Thread(target=self._open_in_background, daemon=True,
                                            name=f"open-{self.kind}-copy")
            self._opener.start()
        return None

    def _open_in_background(self) -> None:
        try:
            store = self._open_store()
        except StoreUnavailable as e:
            self._open_failures += 1
            pause = backoff.delay(self._open_failures - 1)
            self._next_open = self._clock() + pause
            log.info("the %s copy waits for %s (%s); next try in %.0f s", self.kind, self.kind,
                     e, pause)
        except Exception as e:  # noqa: BLE001 - not an outage: the next batch fails with it
            self._open_error = e
        else:
            with self._lock:
                if self._closed:  # closed while it was opening: nobody will use it
                    store.close()
                    return
                self._store = store
            log.info("the %s copy's store is open", self.kind)
        finally:
            self._opening = False

    def _catch_up(self, store: Any, primary: Any, behind: dict[str, Any], streams: set[str],
                  ttl: dt.timedelta | None, record: Callable[[Sequence[ResultRow]], None]
                  ) -> None:
        from common.records import parse_time

        since = parse_time(behind["since"])
        for stream in sorted(set(behind.get("streams", [])) | streams):
            rows = primary.updated_since(stream, since)
            for start in range(0, len(rows), CATCH_UP_CHUNK):
                chunk = rows[start:start + CATCH_UP_CHUNK]
                store.upsert(chunk, ttl=_remaining(ttl, chunk))
                record(chunk)
                self.caught_up_rows += len(chunk)

    @property
    def store(self) -> Any:
        return self._store

    def close(self, timeout: float = 10.0) -> None:
        """Close the mirror's store; an opening still under way is waited for (``timeout``
        seconds at most) and the store it opens is closed, not kept."""
        with self._lock:
            self._closed = True
            store, self._store = self._store, None
            opener = self._opener
        if store is not None:
            store.close()
        if opener is not None and opener is not threading.current_thread():
            opener.join(timeout)
            if opener.is_alive():
                log.warning("the %s copy's store was still opening after %.0f s; left to it",
                            self.kind, timeout)


def _remaining(ttl: dt.timedelta | None, rows: Sequence[ResultRow]) -> dt.timedelta | None:
    """The retention left to copied rows: ``ttl`` from their primary write (at least 1 s)."""
    if ttl is None:
        return None
    written = [r.updated_at for r in rows if r.updated_at is not None]
    if not written:
        return ttl
    age = dt.datetime.now(dt.UTC) - min(written)
    return dt.timedelta(seconds=max(1.0, math.floor((ttl - age).total_seconds())))
