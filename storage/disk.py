"""The disk store: SQLite under the data directory.

WAL mode lets one writer per job and any number of readers (the display
server, the API) work at once; each micro-batch is one transaction of
``INSERT ... ON CONFLICT DO UPDATE`` keyed by (stream, key, window_start), so a
replayed batch overwrites. An index on (stream, window_start) serves the
history query. Times are stored as integer microseconds since the epoch, UTC.
Retention works like Cassandra's TTL: a row written with a ttl gets an
``expires_at``; reads skip expired rows and :meth:`DiskStore.purge_expired`
deletes them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.records import from_micros, micros_of
from storage.base import ResultRow, StoreError, require_utc

__all__ = ["DiskStore"]

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    stream       TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    window_start INTEGER NOT NULL,  -- microseconds since the epoch, UTC
    window_end   INTEGER NOT NULL,
    payload      TEXT    NOT NULL,  -- the row's values, JSON
    updated_at   INTEGER NOT NULL,
    expires_at   INTEGER,           -- NULL: kept until overwritten
    PRIMARY KEY (stream, key, window_start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS results_by_time ON results (stream, window_start DESC);
CREATE INDEX IF NOT EXISTS results_by_expiry ON results (expires_at) WHERE expires_at IS NOT NULL;
"""

def _micros(value: dt.datetime) -> int:
    return micros_of(require_utc(value, "a window time"))


_time = from_micros


class DiskStore:
    """SQLite store. One instance per process; its methods may be called from any thread."""

    kind = "disk"

    def __init__(self, path: Path, clock: Any = None, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s,
                                   check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
            self._conn = conn
        return self._conn

    def setup(self, create_schema: bool = True, connect_timeout_s: float | None = None) -> None:
        """Create the table if missing, either way: a local file needs no schema rights, and
        a reader's connection writes anyway (WAL mode). There is no server to wait for."""
        del create_schema, connect_timeout_s
        with self._lock:
            try:
                self._connection().executescript(SCHEMA)
            except sqlite3.Error as e:
                raise StoreError(f"creating the schema in {self.path} failed: {e}") from e

    def upsert(self, rows: Sequence[ResultRow], ttl: dt.timedelta | None = None) -> None:
        if not rows:
            return
        now = _micros(self._clock())
        expires = now + int(ttl.total_seconds() * 1_000_000) if ttl is not None else None
        params = [
            (r.stream, r.key, _micros(r.window_start), _micros(r.window_end),
             json.dumps(dict(r.values), separators=(",", ":"), default=str), now, expires)
            for r in rows
        ]
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO results"
                    " (stream, key, window_start, window_end, payload, updated_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (stream, key, window_start) DO UPDATE SET"
                    " window_end = excluded.window_end, payload = excluded.payload,"
                    " updated_at = excluded.updated_at, expires_at = excluded.expires_at",
                    params,
                )
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"writing {len(rows)} rows to {self.path} failed: {e}") from e

    def _select(self, where: str, params: tuple[Any, ...], limit: int | None) -> list[ResultRow]:
        sql = ("SELECT stream, key, window_start, window_end, payload, updated_at FROM results"
               f" WHERE {where} AND (expires_at IS NULL OR expires_at > ?)"
               " ORDER BY window_start DESC, key")
        params = (*params, _micros(self._clock()))
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            try:
                cursor = self._connection().execute(sql, params)
                fetched = cursor.fetchall()
            except sqlite3.Error as e:
                raise StoreError(f"reading {self.path} failed: {e}") from e
        return [
            ResultRow(stream, key, _time(start), _time(end), json.loads(payload), _time(updated))
            for stream, key, start, end, payload, updated in fetched
        ]

    def latest(self, stream: str, limit: int, key: str | None = None) -> list[ResultRow]:
        if key is None:
            return self._select("stream = ?", (stream,), limit)
        return self._select("stream = ? AND key = ?", (stream, key), limit)

    def range(self, stream: str, start: dt.datetime, end: dt.datetime, key: str | None = None,
              limit: int | None = None) -> list[ResultRow]:
        where = "stream = ? AND window_start >= ? AND window_start < ?"
        params: tuple[Any, ...] = (stream, _micros(start), _micros(end))
        if key is not None:
            where += " AND key = ?"
            params += (key,)
        return self._select(where, params, limit)

    def updated_since(self, stream: str, since: dt.datetime) -> list[ResultRow]:
        """Rows of ``stream`` written at or after ``since`` (not expired), newest window first.

        Not part of the contract: what a copy in another store (processing.mirror) needs to
        catch up after that store was out of reach; SQLite keeps every row's write time.
        """
        return self._select("stream = ? AND updated_at >= ?", (stream, _micros(since)), None)

    def purge_expired(self) -> int:
        with self._lock:
            try:
                cursor = self._connection().execute(
                    "DELETE FROM results WHERE expires_at <= ?", (_micros(self._clock()),))
            except sqlite3.Error as e:
                raise StoreError(f"retention on {self.path} failed: {e}") from e
            return cursor.rowcount

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
