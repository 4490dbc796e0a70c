"""The storage contract every job's ``foreachBatch`` and the display server use.

A result row is keyed by (stream, key, window start): writing the same key
again overwrites it, so replaying a micro-batch never double counts. Stores
know neither Spark nor the web: rows in, rows out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["ResultRow", "Store", "StoreError", "StoreUnavailable", "require_utc"]


class StoreError(RuntimeError):
    """A store operation failed; a failed write must fail the micro-batch (Spark retries it).

    A plain StoreError is a broken request or configuration (a naive time, a retention
    the store cannot keep, refused credentials, a missing right): retrying the same
    thing fails the same way.
    """

    #: Whether the same call may succeed later without any change (an outage).
    retriable = False


class StoreUnavailable(StoreError):
    """The server cannot be reached or did not answer in time, or its schema is not created yet.

    An outage, not a broken request: retry later (with a backoff) and never give up on
    account of it. Raised for unreachable or overloaded servers, timeouts, too few
    replicas alive, a connect retry that ran out, and a reader opened before any writer
    created the schema. The class name appears in Spark's text of a failed batch
    ("StoreUnavailable"), which is how a job tells the two apart across the JVM.
    """

    retriable = True


def require_utc(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None:
        raise StoreError(f"{what} is a naive datetime; the kit stores timezone-aware UTC only")
    return value.astimezone(dt.UTC)


@dataclass(frozen=True)
class ResultRow:
    """One result: a window of a stream for one key, with its values.

    Non-windowed results (running totals, census rows) use a fixed
    ``window_start`` chosen by the job (e.g. the census year, or the epoch).
    ``updated_at`` is set by the store when written.
    """

    stream: str
    key: str
    window_start: dt.datetime
    window_end: dt.datetime
    values: Mapping[str, Any] = field(default_factory=dict)
    updated_at: dt.datetime | None = None

    def identity(self) -> tuple[str, str, dt.datetime]:
        return (self.stream, self.key, self.window_start)

    def to_json(self) -> dict[str, Any]:
        from common.records import format_time

        return {
            "stream": self.stream,
            "key": self.key,
            "window_start": format_time(self.window_start),
            "window_end": format_time(self.window_end),
            "values": dict(self.values),
            "updated_at": format_time(self.updated_at) if self.updated_at else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResultRow:
        from common.records import parse_time

        return cls(
            stream=str(data["stream"]),
            key=str(data["key"]),
            window_start=parse_time(data["window_start"]),
            window_end=parse_time(data["window_end"]),
            values=dict(data.get("values") or {}),
            updated_at=parse_time(data["updated_at"]) if data.get("updated_at") else None,
        )


@runtime_checkable
class Store(Protocol):
    """Create schema, upsert idempotently, read history and ranges, enforce retention."""

    #: "disk" or "cassandra": what the demo catalogue calls this store.
    kind: str

    def setup(self, create_schema: bool = True, connect_timeout_s: float | None = None) -> None:
        """Connect and make the store ready; safe to call every start, and concurrently.

        Args:
            create_schema: create the schema if missing. False (a reader such as the
                display server, which may lack schema rights): issue no DDL, check that
                the schema exists and raise StoreUnavailable if it does not yet. A store
                that needs no rights for it (SQLite: a local file) creates it either way.
            connect_timeout_s: how long to keep retrying the connection (None: the
                store's own setting; 0: one attempt). Stores without a server ignore it.

        Raises:
            StoreUnavailable: the server cannot be reached in time, or (``create_schema``
                False) the schema is not created yet; retry later.
            StoreError: anything else (credentials, rights, configuration).
        """

    def upsert(self, rows: Sequence[ResultRow], ttl: dt.timedelta | None = None) -> None:
        """Write rows; a row with an existing (stream, key, window_start) replaces it.

        With ``ttl`` the rows vanish that long after this write (retention, as
        Cassandra's ``USING TTL``); without, they stay.

        Raises:
            StoreUnavailable: the server is out of reach; nothing may be assumed written,
                retry later.
            StoreError: nothing may be assumed written; the caller must retry or fail.
        """

    def latest(self, stream: str, limit: int, key: str | None = None) -> list[ResultRow]:
        """At most ``limit`` rows of ``stream``, of its most recent windows first (newest
        window first, then by key), all keys or one."""
        ...

    def range(self, stream: str, start: dt.datetime, end: dt.datetime, key: str | None = None,
              limit: int | None = None) -> list[ResultRow]:
        """Windows with ``start <= window_start < end``, newest first."""
        ...

    def purge_expired(self) -> int:
        """Remove rows whose ttl has passed (reads never return them anyway); returns how many."""
        ...

    def close(self) -> None: ...
