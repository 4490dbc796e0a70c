"""Rows of the Cassandra store as CQL values, and back: pure, no driver, no server.

What :class:`storage.cassandra.CassandraStore` sends and reads, worked out before
anything is sent (the tables are in :mod:`storage.cassandra_schema`):

* **Times** are CQL ``timestamp`` (milliseconds, UTC): timezone-aware UTC datetimes in
  and out, sub-millisecond parts dropped (Spark's windows are whole seconds); naive
  datetimes are refused. ``day`` (the partition bucket) is the UTC date of
  ``window_start``.
* **Values** are JSON text; ``updated_at`` is the store's clock at the write.
* **An upsert** (:func:`plan_upsert`) is the bound values of the three inserts, one row
  per (stream, key, window_start) (the last one of a batch wins, as sequential upserts
  would), and one index entry per (stream, day) with the rows' TTL plus an hour.
* **Batches** (:func:`partition_batches`): the rows of each partition as one batch.
  Cassandra's batch size thresholds (``batch_size_warn_threshold`` 5 KiB,
  ``batch_size_fail_threshold`` 50 KiB) apply only to batches spanning several
  partitions (``BatchStatement.verifyBatchSize`` since 3.6, CASSANDRA-10876), so the
  census (about 570 rows in one partition) and nginx's edges need no change of them.
  What bounds a single-partition batch is the largest mutation (half a commit log
  segment: 4 MiB on the embedded node, 16 MiB by default): a partition's rows of one
  upsert beyond ``batch_max_bytes`` (:data:`BATCH_MAX_BYTES`, 1 MiB) are split into
  several batches.
* **Reads** of several day partitions are merged newest first (:func:`newest_first`).

Retention limit: Cassandra 4.x, and 5.0 in its default
``storage_compatibility_mode: CASSANDRA_4``, keep expiry times as 32-bit seconds and,
with the default expiration overflow policy ``REJECT``, refuse a write that would
expire after 2038-01-19T03:14:06Z (:data:`MAX_EXPIRY`). :func:`check_ttl` refuses such
a retention before anything is sent, naming ``RETENTION_HOURS`` and the longest one
possible now (a job may call it at start); :func:`plan_upsert` calls it on every write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from common.records import EPOCH, micros_of
from storage.base import ResultRow, StoreError, require_utc

__all__ = [
    "BATCH_MAX_BYTES",
    "MAX_EXPIRY",
    "WritePlan",
    "check_ttl",
    "day_of",
    "newest_first",
    "partition_batches",
    "plan_upsert",
]

_EPOCH_DAY = dt.date(1970, 1, 1)

#: Cassandra's largest TTL (20 years), in seconds.
MAX_TTL_S = 20 * 365 * 86_400
#: The latest expiry Cassandra 4.x and 5.0 (``storage_compatibility_mode: CASSANDRA_4``)
#: accept: ``2**31 - 2`` seconds after the epoch (``Cell.MAX_DELETION_TIME``).
MAX_EXPIRY_S = 2**31 - 2
MAX_EXPIRY = EPOCH + dt.timedelta(seconds=MAX_EXPIRY_S)
#: Allowance for a server clock ahead of the store's in :func:`check_ttl`.
CLOCK_SKEW_S = 3_600
#: How much longer a day's index entry lives than the rows it points at.
INDEX_TTL_MARGIN_S = 3_600
#: Largest batch of one partition, in bytes of bound values (see the module docstring).
BATCH_MAX_BYTES = 1 << 20
#: Statements in one batch: the native protocol counts them in 16 bits.
BATCH_MAX_ROWS = 65_535


def day_of(value: dt.datetime) -> dt.date:
    """The UTC day (partition bucket) of a timezone-aware time. Naive times raise StoreError."""
    return require_utc(value, "a window time").date()


def to_millis(value: dt.datetime) -> int:
    """Milliseconds since the epoch (floor), as CQL ``timestamp`` stores them."""
    return micros_of(require_utc(value, "a window time")) // 1000


def ceil_millis(value: dt.datetime) -> int:
    """Milliseconds since the epoch, rounded up: ``ms >= ceil_millis(t)`` iff ``ms >= t``."""
    return -(-micros_of(require_utc(value, "a range bound")) // 1000)


def from_driver_time(value: dt.datetime) -> dt.datetime:
    """A ``timestamp`` as the driver returns it (naive, UTC) -> aware UTC, whole milliseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    millis = round(value.microsecond / 1000)
    return value.replace(microsecond=0) + dt.timedelta(milliseconds=millis)


def from_driver_date(value: Any) -> dt.date:
    """A CQL ``date`` as the driver returns it (``cassandra.util.Date`` or ``datetime.date``)."""
    if isinstance(value, dt.date):
        return value
    return _EPOCH_DAY + dt.timedelta(days=int(value.days_from_epoch))


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g}"


def ttl_seconds(ttl: dt.timedelta | None) -> int:
    """``USING TTL`` seconds for a retention (rounded up); 0 means none. Raises StoreError."""
    if ttl is None:
        return 0
    seconds = math.ceil(ttl.total_seconds())
    if seconds <= 0:
        raise StoreError(f"ttl must be positive, got {ttl} (RETENTION_HOURS={_hours(seconds)})")
    if seconds > MAX_TTL_S - INDEX_TTL_MARGIN_S:
        raise StoreError(
            f"ttl {ttl} (RETENTION_HOURS={_hours(seconds)}) is longer than Cassandra allows "
            f"(20 years, less the index's hour): set RETENTION_HOURS to at most "
            f"{(MAX_TTL_S - INDEX_TTL_MARGIN_S) // 3600}")
    return seconds


def check_ttl(ttl: dt.timedelta | None, now: dt.datetime | None = None) -> int:
    """``USING TTL`` seconds for a retention written at ``now`` (0: kept), or StoreError.

    Refuses what Cassandra would refuse (see :data:`MAX_EXPIRY`): rows written now with
    this TTL, and their index entries an hour longer, must expire by 2038-01-19T03:14:06Z,
    with :data:`CLOCK_SKEW_S` to spare. A job may call this at start with its retention
    (``dt.timedelta(hours=settings.retention_hours)``) to fail before any batch.

    Raises:
        StoreError: naming RETENTION_HOURS and the longest retention possible now.
    """
    seconds = ttl_seconds(ttl)
    if not seconds:
        return 0
    when = require_utc(now if now is not None else dt.datetime.now(dt.UTC), "the store's clock")
    now_s = to_millis(when) // 1000
    longest = MAX_EXPIRY_S - now_s - INDEX_TTL_MARGIN_S - CLOCK_SKEW_S
    if seconds > longest:
        expiry = when + dt.timedelta(seconds=seconds)
        raise StoreError(
            f"RETENTION_HOURS={_hours(seconds)} would keep rows written now until "
            f"{expiry:%Y-%m-%dT%H:%M:%SZ}, past {MAX_EXPIRY:%Y-%m-%dT%H:%M:%SZ}, the latest expiry "
            "Cassandra accepts (32-bit expiry times: Cassandra 4.x, and 5.0 with "
            "storage_compatibility_mode CASSANDRA_4; it rejects such writes); set "
            f"RETENTION_HOURS to at most {max(0, longest) // 3600}")
    return seconds


def last_write_wins(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """The rows with one per (stream, key, window_start): the last one, as sequential upserts.

    Writes run concurrently, so two writes of one key in a batch would land in any
    order; keeping the last makes a batch mean what it would mean written in order.
    """
    latest: dict[tuple[str, str, int], ResultRow] = {}
    for row in rows:
        latest[(row.stream, row.key, to_millis(row.window_start))] = row
    return list(latest.values())


@dataclasses.dataclass(frozen=True)
class WritePlan:
    """The bound values of one upsert, in the column order of the schema's inserts."""

    ttl_s: int  #: 0: kept (``USING TTL 0``)
    index: list[tuple[Any, ...]]  #: insert_day: stream, day, ttl_s, the entry's TTL
    results: list[tuple[Any, ...]]  #: insert: stream, day, window_start, key, ..., ttl
    by_key: list[tuple[Any, ...]]  #: insert_by_key: stream, key, day, window_start, ..., ttl


#: Partition key length of the bound values of each insert (their first columns).
RESULTS_KEY = 2  #: stream, day
BY_KEY_KEY = 3  #: stream, key, day


def plan_upsert(rows: Sequence[ResultRow], ttl: dt.timedelta | None,
                now: dt.datetime) -> WritePlan:
    """Validate ``rows`` and turn them into bound values (times in ms, values as JSON).

    Raises:
        StoreError: a naive time, or a ttl Cassandra cannot store (:func:`check_ttl`).
    """
    ttl_s = check_ttl(ttl, require_utc(now, "the store's clock"))
    updated = to_millis(now)
    days: set[tuple[str, dt.date]] = set()
    results: list[tuple[Any, ...]] = []
    by_key: list[tuple[Any, ...]] = []
    for r in last_write_wins(rows):
        day = day_of(r.window_start)
        start, end = to_millis(r.window_start), to_millis(r.window_end)
        payload = json.dumps(dict(r.values), separators=(",", ":"), default=str)
        results.append((r.stream, day, start, r.key, end, payload, updated, ttl_s))
        by_key.append((r.stream, r.key, day, start, end, payload, updated, ttl_s))
        days.add((r.stream, day))
    index_ttl = ttl_s + INDEX_TTL_MARGIN_S if ttl_s else 0
    index = [(stream, day, ttl_s, index_ttl) for stream, day in sorted(days)]
    return WritePlan(ttl_s, index, results, by_key)


def bound_size(values: Sequence[Any]) -> int:
    """About the bytes ``values`` take in a request: text as UTF-8, anything else 8."""
    return sum(len(v.encode()) if isinstance(v, str) else 8 for v in values)


def partition_batches(params: Sequence[tuple[Any, ...]], key_len: int,
                      max_bytes: int = BATCH_MAX_BYTES, max_rows: int = BATCH_MAX_ROWS,
                      ) -> list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """Bound values grouped into batches: one per partition, or several if it is too big.

    ``key_len`` is the partition key's length (the first values of each tuple). A
    partition's rows go to one batch unless they exceed ``max_bytes`` (by
    :func:`bound_size`) or ``max_rows``; then to consecutive batches, in order, each
    within both bounds (a single larger row still gets a batch of its own).

    Returns:
        ``(partition key, rows)`` per batch, partitions in order of first appearance.
    """
    groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for values in params:
        groups.setdefault(tuple(values[:key_len]), []).append(values)
    batches: list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]] = []
    for key, rows in groups.items():
        chunk: list[tuple[Any, ...]] = []
        size = 0
        for values in rows:
            row_size = bound_size(values)
            if chunk and (size + row_size > max_bytes or len(chunk) >= max_rows):
                batches.append((key, chunk))
                chunk, size = [], 0
            chunk.append(values)
            size += row_size
        batches.append((key, chunk))
    return batches


def distinct_days(days: Iterable[Any]) -> list[dt.date]:
    """Index rows' days (newest first, one per TTL) -> each day once, newest first."""
    return sorted({from_driver_date(day) for day in days}, reverse=True)


def newest_first(rows: Iterable[ResultRow], limit: int | None = None) -> list[ResultRow]:
    """Rows in the contract's order (window_start newest first, then key), at most ``limit``.

    Rows read from several day partitions are merged with this; each partition is
    already in that order, so this is a safety net as much as a sort.
    """
    ordered = sorted(rows, key=lambda r: r.key)
    ordered.sort(key=lambda r: r.window_start, reverse=True)  # stable: keys stay ascending
    return ordered if limit is None else ordered[: max(0, limit)]

