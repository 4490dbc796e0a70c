"""The Cassandra store: the storage contract (:mod:`storage.base`) on Apache Cassandra 4.1/5.0.

Point it at a server with ``CASSANDRA_HOSTS=host[,host]`` (and ``CASSANDRA_PORT``,
``CASSANDRA_KEYSPACE``, ``CASSANDRA_USERNAME``/``CASSANDRA_PASSWORD``,
``CASSANDRA_LOCAL_DC``, ``CASSANDRA_TLS``/``CASSANDRA_TLS_CA_FILE``).
:meth:`CassandraStore.setup` creates the keyspace (with ``CASSANDRA_REPLICATION``) and
the tables when they are missing; ``setup(create_schema=False)`` (a reader such as the
display server, which needs no schema rights) issues no DDL and raises
:class:`~storage.base.StoreUnavailable` until a job or the stack has created them.

Schema (``{ks}`` is the keyspace)::

    {ks}.results         PRIMARY KEY ((stream, day), window_start, key)
                         CLUSTERING ORDER BY (window_start DESC, key ASC)
    {ks}.results_by_key  PRIMARY KEY ((stream, key, day), window_start)
                         CLUSTERING ORDER BY (window_start DESC)
    {ks}.result_days     PRIMARY KEY (stream, day, ttl_s)
                         CLUSTERING ORDER BY (day DESC, ttl_s ASC)

Why these keys:

* **One partition per stream and UTC day** (``day`` is the UTC date of
  ``window_start``). A partition holds at most one day of one stream, so its
  size is bounded (a 10 s window with 30 keys is 8,640 x 30 rows a day) and
  does not grow with the life of the stream; the history the dashboards ask for
  (the newest few hundred or thousand rows) is one partition, two around
  midnight; a range read touches only the days it spans; and rows written with a
  TTL expire together, day by day, so whole partitions age out instead of
  leaving tombstones scattered through live data.
* **Clustering ``window_start DESC, key ASC``**: rows come off disk newest first
  in the contract's order (the disk store's ``ORDER BY window_start DESC, key``),
  so ``latest`` is ``LIMIT n`` on the newest partition, with no sort.
* **``results_by_key``**: the same rows keyed by (stream, key, day), written with
  them, so ``key=`` reads are a slice of one partition too, instead of a
  filtered scan (``ALLOW FILTERING``) of every key's rows.
* **``result_days``: a small per-stream index of the days that hold data.**
  Non-windowed streams use fixed, old window starts (the census years 1850-2000);
  without the index, "latest N" would have to walk back day by day through tens
  of thousands of empty days. Reads list the stream's days (one small partition,
  newest first) and read only those. Each entry is written with the TTL of the
  rows it points at (plus an hour), and ``ttl_s`` (that TTL in seconds, 0 for
  none) is part of its key: a day holding both kept and expiring rows has one
  entry that never expires and one that does, so an entry outlives every row it
  points at and the index shrinks as retention removes days. A store rewrites an
  entry it wrote at most every ten minutes, not on every micro-batch.

Table options (:data:`TABLE_OPTIONS`), for tables of expiring time series:

* **Time-window compaction with one-day windows** on ``results`` and
  ``results_by_key`` (``TimeWindowCompactionStrategy``, 1 ``DAYS``). TWCS groups
  SSTables by write time; a job writes a window seconds after it closes, so one
  compaction window holds about one day partition of each stream, is compacted while
  that day is written and then left alone, and its SSTables go as a whole once their
  rows have expired, instead of being merged again and again with younger data
  (size-tiered compaction). ``unchecked_tombstone_compaction: true``: kept rows (the
  census, written once and never expiring) overlap the token range of every SSTable
  and are older than it, and TWCS drops an expired SSTable whole only when no
  overlapping SSTable holds older data; expired SSTables are then rewritten alone
  (a single-SSTable tombstone compaction, at most daily, once a fifth of an SSTable
  has expired), which the default, checked mode would skip for the same overlap.
  ``result_days`` keeps the default compaction: its few rows are overwritten every
  ten minutes, which TWCS handles badly (overwrites across windows).
* **``gc_grace_seconds`` of 3 hours** on all three (Cassandra's default is 10 days).
  The grace keeps a tombstone until repair has copied it to a replica that missed
  it. The store never deletes; an expired row cannot come back, since every replica
  holds the expiry with the row; and hints live at most the grace of their table,
  so 3 hours matches the default ``max_hint_window``. Expired rows' tombstones are
  purged within hours instead of being kept (and read past) for 10 days.
* **No table default TTL** (``default_time_to_live = 0``). Retention is a setting
  (``RETENTION_HOURS``) that changes without a schema change, and kept streams share
  the tables: a table default would expire the census. Every write states its TTL
  instead, ``USING TTL n`` for retained rows and ``USING TTL 0`` for kept ones (0
  overrides a table default), so an operator may give the tables a default TTL as a
  safety net against other writers without touching kept rows; setup leaves
  ``default_time_to_live`` as it finds it.

:meth:`~CassandraStore.setup` creates missing tables with these options and ALTERs
tables created by earlier versions whose compaction or ``gc_grace_seconds`` differ
(without the right to ALTER it logs a warning and carries on: the options are about
disk, not about answers).

Schema changes are safe from several processes at once: every DDL is ``CREATE ...
IF NOT EXISTS`` (``AlreadyExists`` tolerated), issued only for what the server's
``system_schema`` does not list, and the store waits for schema agreement after it
(``SCHEMA_AGREEMENT_S``; a cluster that does not agree in time is StoreUnavailable).
Caveat of Cassandra before 5.1 on clusters of several nodes: two coordinators creating
one table at the same moment may give it two ids; start the jobs after the first has
set up (the stack does), or create the schema once beforehand.

Writes: every statement is prepared once and marked idempotent; an upsert is an
``INSERT ... USING TTL`` (an upsert in Cassandra) keyed by (stream, key,
window_start), so a replayed micro-batch overwrites. The index entries of a batch are
written first (a row is never readable without its day in the index), then its rows:
**the rows of each partition as one ``UNLOGGED BATCH``** (``results``: one per
(stream, day); ``results_by_key``: one per (stream, key, day)), the partitions'
batches concurrently, at most ``write_concurrency`` in flight (``execute_concurrent``).
A batch of one partition is one mutation, applied atomically and in isolation by each
replica, so a reader sees a partition's rows of one upsert all or none; rows of other
partitions (the other table, another day) may be seen before or after them.
Cassandra's batch size thresholds (``batch_size_warn_threshold`` 5 KiB,
``batch_size_fail_threshold`` 50 KiB) apply only to batches spanning several
partitions (``BatchStatement.verifyBatchSize`` since 3.6, CASSANDRA-10876), so the
census (about 570 rows in one partition) and nginx's edges need no change of them.
What bounds a single-partition batch is the largest mutation (half a commit log
segment: 4 MiB on the embedded node, 16 MiB by default): a partition's rows of one
upsert beyond ``batch_max_bytes`` (1 MiB by default) are split into several batches,
and then a reader may see part of that partition; the store logs that once per stream.
With ``ttl`` the rows expire by themselves, so :meth:`CassandraStore.purge_expired`
returns 0. Every write of a batch is waited for; if any failed, the upsert raises
(the job fails the micro-batch and Spark retries it, overwriting whatever did land),
never a silent drop. Warnings the server attaches to a response are logged.

Retention limit: Cassandra 4.x, and 5.0 in its default
``storage_compatibility_mode: CASSANDRA_4``, keep expiry times as 32-bit seconds and,
with the default expiration overflow policy ``REJECT``, refuse a write that would
expire after 2038-01-19T03:14:06Z (:data:`MAX_EXPIRY`). :func:`check_ttl` refuses such
a retention before anything is sent, naming ``RETENTION_HOURS`` and the longest one
possible now (a job may call it at start); :func:`plan_upsert` calls it on every write.

Values are JSON text; ``updated_at`` is the store's clock at the write. Times
are CQL ``timestamp`` (milliseconds, UTC): timezone-aware UTC datetimes in and
out, sub-millisecond parts dropped (Spark's windows are whole seconds); naive
datetimes are refused.

Consistency is ``LOCAL_QUORUM`` for reads and writes, so a read after a write sees it
with any replication factor. A batch reaches the replicas at different moments, but
each applies it whole, so a quorum read merges either all of a partition's batch or
none of it.

Failures: :class:`~storage.base.StoreUnavailable` when the server cannot be reached or
did not answer in time (no host available, timeouts, too few replicas alive, an
overloaded or starting node, the connect retry running out, a schema not created or
agreed yet): retry later. :class:`~storage.base.StoreError` for the rest (refused
credentials or certificate, a missing right, an invalid request).

Connecting retries with backoff for up to ``CASSANDRA_CONNECT_TIMEOUT_S`` (a
server still starting under ``docker compose``), or ``setup(connect_timeout_s=...)``
(0: one attempt, for a caller with its own backoff), then raises StoreUnavailable
naming the hosts and port; refused credentials and certificates are not retried. A
failed attempt, and a failed setup, shuts its driver ``Cluster`` down.

TLS: with ``CASSANDRA_TLS=true`` the connection is TLS 1.2 or later, and the server's
certificate is verified against ``CASSANDRA_TLS_CA_FILE`` (PEM) or the system's CAs,
host name included. The driver resolves contact points to addresses and checks each
certificate against the IP address it connects to (the nodes it discovers too), so every
node's certificate must carry its IP address as a subject alternative name: one naming
only a DNS name fails the check. Verification failures (like refused credentials) are
StoreError at once, not retried. A password sent without TLS to a host that is not
loopback logs a warning. The password is handed to the driver's
``PlainTextAuthProvider`` and appears in no log line or error message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import ipaddress
import json
import logging
import math
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.records import EPOCH, micros_of
from storage.base import ResultRow, StoreError, StoreUnavailable, require_utc

if TYPE_CHECKING:
    from common.settings import Settings

__all__ = [
    "MAX_EXPIRY",
    "TABLE_OPTIONS",
    "CassandraStore",
    "Statements",
    "backoff_delays",
    "check_ttl",
    "day_of",
    "is_unavailable",
    "newest_first",
    "partition_batches",
    "plan_upsert",
    "tls_context",
]

log = logging.getLogger(__name__)

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
#: A store rewrites an index entry it wrote at most this long ago only after this long
#: (less than the margin, so an entry always outlives the rows written since).
INDEX_REFRESH_S = 600
#: ``LIMIT`` bound when a read has no limit (CQL's LIMIT is a positive int).
_NO_LIMIT = 2**31 - 1
#: Largest batch of one partition, in bytes of bound values (see the module docstring).
BATCH_MAX_BYTES = 1 << 20
#: Statements in one batch: the native protocol counts them in 16 bits.
BATCH_MAX_ROWS = 65_535
#: How long to wait for the nodes to agree on the schema after DDL.
SCHEMA_AGREEMENT_S = 30.0
#: gc_grace_seconds of every table (see the module docstring).
GC_GRACE_S = 3 * 3_600

_TWCS = "TimeWindowCompactionStrategy"

#: Options of each table, as ``WITH`` clauses and as ``system_schema.tables`` shows them.
TABLE_OPTIONS: dict[str, dict[str, Any]] = {
    "results": {
        "compaction": {"class": _TWCS, "compaction_window_unit": "DAYS",
                       "compaction_window_size": "1", "unchecked_tombstone_compaction": "true"},
        "gc_grace_seconds": GC_GRACE_S,
    },
    "results_by_key": {
        "compaction": {"class": _TWCS, "compaction_window_unit": "DAYS",
                       "compaction_window_size": "1", "unchecked_tombstone_compaction": "true"},
        "gc_grace_seconds": GC_GRACE_S,
    },
    "result_days": {"gc_grace_seconds": GC_GRACE_S},
}

_KEYSPACE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")

Clock = Callable[[], dt.datetime]


# -- pure helpers (unit-tested without a server) -------------------------------------------


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
    """The bound values of one upsert, in the column order of :class:`Statements`' inserts."""

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


def backoff_delays(first_s: float = 0.2, factor: float = 2.0, cap_s: float = 5.0) -> Iterator[float]:
    """Pauses between connection attempts: 0.2, 0.4, 0.8, ... seconds, at most ``cap_s``."""
    delay = first_s
    while True:
        yield delay
        delay = min(cap_s, delay * factor)


def check_keyspace(name: str) -> str:
    """A keyspace name usable unquoted in CQL, or StoreError naming CASSANDRA_KEYSPACE."""
    if not _KEYSPACE_NAME.fullmatch(name):
        raise StoreError(
            f"CASSANDRA_KEYSPACE={name!r} is not a valid keyspace name: use 1-48 letters, "
            "digits and underscores, starting with a letter")
    return name.lower()


def check_replication(replication: str) -> str:
    """A CQL replication map (``{'class': ..., ...}``), or StoreError naming CASSANDRA_REPLICATION."""
    text = replication.strip()
    if not (text.startswith("{") and text.endswith("}")) or ";" in text or "'class'" not in text:
        raise StoreError(
            f"CASSANDRA_REPLICATION={replication!r} is not a CQL replication map, e.g. "
            "{'class': 'SimpleStrategy', 'replication_factor': 1} or "
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3}")
    return text


def option_differences(table: str, found: Mapping[str, Any]) -> list[str]:
    """Which of :data:`TABLE_OPTIONS` of ``table`` a ``system_schema.tables`` row lacks.

    ``found`` holds the row's ``compaction`` (a map; its class fully qualified) and
    ``gc_grace_seconds``. Options not in :data:`TABLE_OPTIONS` are not compared.
    """
    wanted = TABLE_OPTIONS[table]
    differs: list[str] = []
    compaction = wanted.get("compaction")
    if compaction is not None:
        have = dict(found.get("compaction") or {})
        cls = str(have.get("class", ""))
        if cls.rsplit(".", 1)[-1] != compaction["class"] or any(
                str(have.get(k)) != v for k, v in compaction.items() if k != "class"):
            differs.append("compaction")
    if found.get("gc_grace_seconds") != wanted["gc_grace_seconds"]:
        differs.append("gc_grace_seconds")
    return differs


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """The client's TLS settings: TLS 1.2 or later, the server's certificate and host name checked.

    Args:
        ca_file: PEM file of the CA certificate(s) that sign the server's; None: the
            system's CAs.

    Raises:
        StoreError: the CA file cannot be read or holds no certificate (naming
            CASSANDRA_TLS_CA_FILE).
    """
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=str(ca_file) if ca_file else None)
    except (OSError, ValueError) as e:  # FileNotFoundError, ssl.SSLError (not PEM)
        raise StoreError(f"CASSANDRA_TLS_CA_FILE={ca_file}: cannot load CA certificates "
                         f"from it ({e}); it must be a readable PEM file") from e
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    return context


def _all_errors(error: BaseException) -> list[BaseException]:
    """``error``, or the per-host errors of a NoHostAvailable (which has them in ``errors``)."""
    errors = getattr(error, "errors", None)
    if isinstance(errors, Mapping) and errors:
        return [e for e in errors.values() if isinstance(e, BaseException)] or [error]
    return [error]


def _tls_refused(error: BaseException) -> bool:
    if isinstance(error, ssl.SSLError):
        return not isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError)
    # The driver re-raises a failed TLS handshake as a plain OSError with the text only:
    # "Tried connecting to [...]. Last error: [SSL: CERTIFICATE_VERIFY_FAILED] ...".
    text = str(error)
    return isinstance(error, OSError) and "[SSL: " in text and "EOF" not in text


def is_tls_failure(error: BaseException) -> bool:
    """A refused certificate or a TLS handshake that cannot work (a setting to fix), not a
    connection dropped during the handshake."""
    return all(_tls_refused(e) for e in _all_errors(error))


def is_auth_failure(error: BaseException) -> bool:
    from cassandra import AuthenticationFailed

    return all(isinstance(e, AuthenticationFailed) for e in _all_errors(error))


def is_unavailable(error: BaseException) -> bool:
    """Whether a driver error means "the server cannot be reached or did not answer in time".

    True for no host available (unless every host refused the credentials or the
    certificate), timeouts of the driver and of the replicas, too few replicas alive,
    a node overloaded or still starting, broken connections, and contact points whose
    names do not resolve (yet: a compose service still starting).
    """
    from cassandra import OperationTimedOut, Timeout, Unavailable, UnresolvableContactPoints
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionBusy, ConnectionException
    from cassandra.protocol import IsBootstrappingErrorMessage, OverloadedErrorMessage

    if isinstance(error, NoHostAvailable):
        return not (is_auth_failure(error) or is_tls_failure(error))
    if isinstance(error, OSError) and is_tls_failure(error):
        return False
    return isinstance(error, OperationTimedOut | Timeout | Unavailable | ConnectionException
                      | ConnectionBusy | OverloadedErrorMessage | IsBootstrappingErrorMessage
                      | UnresolvableContactPoints | OSError)


# -- CQL ---------------------------------------------------------------------------------

_COLUMNS = "stream, key, window_start, window_end, payload, updated_at"


def _cql_map(options: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"'{k}': '{v}'" for k, v in options.items()) + "}"


def table_options_cql(table: str) -> str:
    """``compaction = {...} AND gc_grace_seconds = n`` of :data:`TABLE_OPTIONS` for ``table``."""
    wanted = TABLE_OPTIONS[table]
    clauses = []
    if "compaction" in wanted:
        clauses.append(f"compaction = {_cql_map(wanted['compaction'])}")
    clauses.append(f"gc_grace_seconds = {int(wanted['gc_grace_seconds'])}")
    return " AND ".join(clauses)


@dataclasses.dataclass(frozen=True)
class Statements:
    """Every CQL statement of the store, for one keyspace (names checked by :func:`check_keyspace`)."""

    keyspace: str
    replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}"

    @property
    def create_keyspace(self) -> str:
        return (f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace}"
                f" WITH replication = {self.replication} AND durable_writes = true")

    @property
    def drop_keyspace(self) -> str:
        return f"DROP KEYSPACE IF EXISTS {self.keyspace}"

    @property
    def create_tables(self) -> dict[str, str]:
        """Table name -> its ``CREATE TABLE IF NOT EXISTS`` (with :data:`TABLE_OPTIONS`)."""
        ks = self.keyspace
        return {
            "results": (
                f"CREATE TABLE IF NOT EXISTS {ks}.results ("
                " stream text, day date, window_start timestamp, key text,"
                " window_end timestamp, payload text, updated_at timestamp,"
                " PRIMARY KEY ((stream, day), window_start, key))"
                " WITH CLUSTERING ORDER BY (window_start DESC, key ASC)"
                " AND comment = 'streamkit results: one partition per stream and UTC day'"
                f" AND {table_options_cql('results')} AND default_time_to_live = 0"
            ),
            "results_by_key": (
                f"CREATE TABLE IF NOT EXISTS {ks}.results_by_key ("
                " stream text, key text, day date, window_start timestamp,"
                " window_end timestamp, payload text, updated_at timestamp,"
                " PRIMARY KEY ((stream, key, day), window_start))"
                " WITH CLUSTERING ORDER BY (window_start DESC)"
                " AND comment = 'streamkit results of one key: one partition per stream, key and UTC day'"
                f" AND {table_options_cql('results_by_key')} AND default_time_to_live = 0"
            ),
            "result_days": (
                f"CREATE TABLE IF NOT EXISTS {ks}.result_days ("
                " stream text, day date, ttl_s int,"
                " PRIMARY KEY (stream, day, ttl_s))"
                " WITH CLUSTERING ORDER BY (day DESC, ttl_s ASC)"
                " AND comment = 'streamkit: the UTC days that hold results of a stream'"
                f" AND {table_options_cql('result_days')} AND default_time_to_live = 0"
            ),
        }

    def alter_table(self, table: str) -> str:
        """The ``ALTER TABLE`` that gives an existing ``table`` its :data:`TABLE_OPTIONS`."""
        return f"ALTER TABLE {self.keyspace}.{table} WITH {table_options_cql(table)}"

    @property
    def select_tables(self) -> str:
        """Bind: keyspace. The keyspace's tables as the coordinator knows them now."""
        return ("SELECT table_name, compaction, gc_grace_seconds, default_time_to_live"
                " FROM system_schema.tables WHERE keyspace_name = %s")

    @property
    def select_keyspace(self) -> str:
        """Bind: keyspace."""
        return "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s"

    # writes ------------------------------------------------------------------------------

    @property
    def insert_day(self) -> str:
        """Bind: stream, day, ttl_s, then the entry's own TTL (0: none)."""
        return (f"INSERT INTO {self.keyspace}.result_days (stream, day, ttl_s)"
                " VALUES (?, ?, ?) USING TTL ?")

    @property
    def insert(self) -> str:
        """Bind: stream, day, window_start, key, window_end, payload, updated_at, TTL (0: kept)."""
        return (f"INSERT INTO {self.keyspace}.results"
                " (stream, day, window_start, key, window_end, payload, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?")

    @property
    def insert_by_key(self) -> str:
        """Bind: stream, key, day, window_start, window_end, payload, updated_at, TTL (0: kept)."""
        return (f"INSERT INTO {self.keyspace}.results_by_key"
                " (stream, key, day, window_start, window_end, payload, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?")

    # reads -------------------------------------------------------------------------------

    @property
    def select_days(self) -> str:
        """Bind: stream."""
        return f"SELECT day FROM {self.keyspace}.result_days WHERE stream = ?"

    @property
    def select_days_between(self) -> str:
        """Bind: stream, first day, last day (both included)."""
        return self.select_days + " AND day >= ? AND day <= ?"

    @property
    def select_day(self) -> str:
        """Bind: stream, day, limit."""
        return (f"SELECT {_COLUMNS} FROM {self.keyspace}.results"
                " WHERE stream = ? AND day = ? LIMIT ?")

    @property
    def select_day_range(self) -> str:
        """Bind: stream, day, start (included), end (excluded), limit."""
        return (f"SELECT {_COLUMNS} FROM {self.keyspace}.results"
                " WHERE stream = ? AND day = ? AND window_start >= ? AND window_start < ?"
                " LIMIT ?")

    @property
    def select_key_day(self) -> str:
        """Bind: stream, key, day, limit."""
        return (f"SELECT {_COLUMNS} FROM {self.keyspace}.results_by_key"
                " WHERE stream = ? AND key = ? AND day = ? LIMIT ?")

    @property
    def select_key_day_range(self) -> str:
        """Bind: stream, key, day, start (included), end (excluded), limit."""
        return (f"SELECT {_COLUMNS} FROM {self.keyspace}.results_by_key"
                " WHERE stream = ? AND key = ? AND day = ?"
                " AND window_start >= ? AND window_start < ? LIMIT ?")

    #: The statements a store prepares: writes, then reads (a reader prepares only these).
    WRITES = ("insert_day", "insert", "insert_by_key")
    READS = ("select_days", "select_days_between", "select_day", "select_day_range",
             "select_key_day", "select_key_day_range")

    def dml(self, reads_only: bool = False) -> dict[str, str]:
        """Every statement the store prepares, by name (``reads_only``: the SELECTs)."""
        names = self.READS if reads_only else self.WRITES + self.READS
        return {name: getattr(self, name) for name in names}


# -- the store ---------------------------------------------------------------------------


class _DropDriverConnectErrors(logging.Filter):
    """Drops the driver's tracebacks for a failed first connection while the store retries.

    The store logs one warning line per failed attempt instead, and raises StoreError
    at the end; a retry loop of a minute would otherwise log dozens of tracebacks.
    """

    NOISE = ("Control connection failed to connect", "[control connection] Error connecting to")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


@contextlib.contextmanager
def _retrying_quietly() -> Iterator[None]:
    logger = logging.getLogger("cassandra.cluster")
    quiet = _DropDriverConnectErrors()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _failure(error: BaseException, message: str) -> StoreError:
    """StoreUnavailable(message) for an outage (:func:`is_unavailable`), else StoreError."""
    return StoreUnavailable(message) if is_unavailable(error) else StoreError(message)


class CassandraStore:
    """Cassandra store. One instance per process; its methods may be called from any thread.

    Build it with :meth:`from_settings`. Nothing connects until the first call that
    needs the server (normally :meth:`setup`).
    """

    kind = "cassandra"

    def __init__(
        self,
        hosts: Sequence[str],
        port: int = 9042,
        keyspace: str = "streamkit",
        replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        username: str | None = None,
        password: str | None = None,
        local_dc: str | None = None,
        connect_timeout_s: float = 60.0,
        clock: Clock | None = None,
        *,
        tls: bool = False,
        tls_ca_file: Path | None = None,
        request_timeout_s: float = 20.0,
        write_concurrency: int = 32,
        batch_max_bytes: int = BATCH_MAX_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not hosts:
            raise StoreError("CASSANDRA_HOSTS is empty: name at least one Cassandra contact point")
        if write_concurrency < 1:
            raise ValueError("write_concurrency must be at least 1")
        if batch_max_bytes < 1:
            raise ValueError("batch_max_bytes must be at least 1")
        self.hosts = tuple(hosts)
        self.port = int(port)
        self.statements = Statements(check_keyspace(keyspace), check_replication(replication))
        self.keyspace = self.statements.keyspace
        self.username = username
        self._password = password
        self.local_dc = local_dc
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.write_concurrency = write_concurrency
        self.batch_max_bytes = batch_max_bytes
        #: The TLS settings of every connection (None: plain TCP).
        self.ssl_context: ssl.SSLContext | None = tls_context(tls_ca_file) if tls else None
        #: Time of ``updated_at`` (the contract tests replace it).
        self.clock: Clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._sleep = sleep
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cluster: Any = None
        self._session: Any = None
        self._prepared: dict[str, Any] = {}
        #: (stream, day, ttl_s) -> when this store last wrote that index entry (monotonic).
        self._indexed: dict[tuple[Any, ...], float] = {}
        #: Streams whose partition was split over several batches (logged once each).
        self._split_logged: set[str] = set()
        self._server_warned = False
        if password and not tls and not all(is_loopback(h) for h in self.hosts):
            log.warning("the Cassandra password of user %r is sent unencrypted to %s: set "
                        "CASSANDRA_TLS=true (and CASSANDRA_TLS_CA_FILE) unless that network is "
                        "trusted", username, ",".join(h for h in self.hosts if not is_loopback(h)))

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock | None = None) -> CassandraStore:
        """A store configured by the ``CASSANDRA_*`` settings (not connected yet)."""
        if not settings.cassandra_hosts:
            raise StoreError("CASSANDRA_HOSTS is not set: no Cassandra server to use "
                             "(set CASSANDRA_HOSTS=host[,host], or run the compose stack)")
        return cls(
            hosts=settings.cassandra_hosts,
            port=settings.cassandra_port,
            keyspace=settings.cassandra_keyspace,
            replication=settings.cassandra_replication,
            username=settings.cassandra_username,
            password=settings.cassandra_password,
            local_dc=settings.cassandra_local_dc,
            connect_timeout_s=settings.cassandra_connect_timeout_s,
            clock=clock,
            tls=settings.cassandra_tls,
            tls_ca_file=settings.cassandra_tls_ca_file,
        )

    def __repr__(self) -> str:
        return (f"CassandraStore(hosts={list(self.hosts)}, port={self.port}, "
                f"keyspace={self.keyspace!r}, username={self.username!r}, "
                f"tls={self.ssl_context is not None})")

    @property
    def where(self) -> str:
        """``host,host:port/keyspace``, for messages."""
        return f"{','.join(self.hosts)}:{self.port}/{self.keyspace}"

    def _scrub(self, text: str) -> str:
        """``text`` with the password, should it ever appear, replaced (if not trivially short)."""
        if self._password and len(self._password) >= 4:
            text = text.replace(self._password, "***")
        return text

    def _reason(self, error: BaseException) -> str:
        return self._scrub(f"{type(error).__name__}: {error}")

    # -- connection ------------------------------------------------------------------------

    def _new_cluster(self, connect_timeout_s: float, control_timeout_s: float = 10.0) -> Any:
        """A driver ``Cluster`` for the settings (not connected)."""
        from cassandra import ConsistencyLevel, ProtocolVersion
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
        from cassandra.query import tuple_factory

        balancing = (TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=self.local_dc))
                     if self.local_dc else TokenAwarePolicy(DCAwareRoundRobinPolicy()))
        profile = ExecutionProfile(
            load_balancing_policy=balancing,
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            request_timeout=self.request_timeout_s,
            row_factory=tuple_factory,
        )
        auth = (PlainTextAuthProvider(username=self.username, password=self._password or "")
                if self.username else None)
        return Cluster(
            contact_points=list(self.hosts),
            port=self.port,
            auth_provider=auth,
            ssl_context=self.ssl_context,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=connect_timeout_s,
            control_connection_timeout=control_timeout_s,
            # Protocol v5, what Cassandra 4.0 and later speak: without it the driver offers
            # newer versions first and logs two warnings on every connection as it steps down.
            protocol_version=ProtocolVersion.V5,
        )

    def _connect(self, timeout_s: float | None = None) -> Any:
        """A session, retrying with backoff for ``timeout_s`` (None: ``connect_timeout_s``;
        0: one attempt). Lock held.

        Raises:
            StoreUnavailable: no attempt succeeded in time.
            StoreError: the server refused the credentials or the certificate failed
                (not retried: the same settings fail the same way).
        """
        if self._session is not None:
            return self._session
        budget = self.connect_timeout_s if timeout_s is None else max(0.0, timeout_s)
        started = self._monotonic()
        deadline = started + budget
        delays = backoff_delays()
        attempt = 0
        with _retrying_quietly():
            while True:
                attempt += 1
                remaining = deadline - self._monotonic()
                cluster = None
                try:
                    cluster = self._new_cluster(
                        connect_timeout_s=min(5.0, max(1.0, remaining)),
                        control_timeout_s=min(10.0, max(2.0, remaining)))
                    session = cluster.connect()
                except Exception as e:  # every driver failure: retried, then StoreUnavailable
                    if cluster is not None:
                        cluster.shutdown()
                    self._raise_if_refused(e)
                    left = deadline - self._monotonic()
                    if left <= 0:
                        raise StoreUnavailable(
                            f"cannot connect to Cassandra at {','.join(self.hosts)} port "
                            f"{self.port}: {attempt} attempt{'s' if attempt > 1 else ''} in "
                            f"{self._monotonic() - started:.1f} s failed; last error: "
                            f"{self._reason(e)}. Check that the server is running and reachable "
                            "from here and that CASSANDRA_HOSTS and CASSANDRA_PORT point at it; "
                            "raise CASSANDRA_CONNECT_TIMEOUT_S if it is still starting, or unset "
                            "CASSANDRA_HOSTS to run without Cassandra") from e
                    pause = min(next(delays), left)
                    log.warning("Cassandra at %s port %d: attempt %d failed (%s); retrying in "
                                "%.1f s", ",".join(self.hosts), self.port, attempt,
                                self._reason(e), pause)
                    self._sleep(pause)
                    continue
                self._cluster, self._session = cluster, session
                log.info("connected to Cassandra at %s port %d (keyspace %s%s)",
                         ",".join(self.hosts), self.port, self.keyspace,
                         ", TLS" if self.ssl_context else "")
                return session

    def _raise_if_refused(self, error: BaseException) -> None:
        """StoreError for a failure no retry can mend: credentials or the certificate."""
        at = f"Cassandra at {','.join(self.hosts)} port {self.port}"
        if is_auth_failure(error):
            who = (f"refused the credentials of user {self.username!r}: check"
                   if self.username else "requires authentication: set")
            raise StoreError(f"{at} {who} CASSANDRA_USERNAME and CASSANDRA_PASSWORD "
                             f"({self._reason(error)})") from error
        if is_tls_failure(error):
            hint = ("check CASSANDRA_TLS_CA_FILE (the CA that signed the server's certificate) "
                    "and that the certificate names the address connected to"
                    if self.ssl_context else "does the server require TLS? set CASSANDRA_TLS")
            raise StoreError(f"TLS with {at} failed: {self._reason(error)}; {hint}") from error

    def _shutdown(self) -> None:
        """Forget the session and shut its Cluster down. Lock held."""
        cluster, self._cluster, self._session = self._cluster, None, None
        self._prepared.clear()
        if cluster is not None:
            cluster.shutdown()

    def _statement(self, name: str) -> Any:
        """The prepared statement ``name`` (prepared on first use). Lock held."""
        prepared = self._prepared.get(name)
        if prepared is None:
            session = self._connect()
            try:
                prepared = session.prepare(self.statements.dml()[name])
            except Exception as e:  # InvalidRequest when a table is missing, or the server is down
                raise _failure(e, f"preparing a statement on {self.where} failed "
                                  f"({self._reason(e)}); has setup() created the schema?") from e
            prepared.is_idempotent = True  # upserts and reads: safe for the driver to retry
            self._prepared[name] = prepared
        return prepared

    def _ready(self, *names: str) -> tuple[Any, list[Any]]:
        with self._lock:
            session = self._connect()
            return session, [self._statement(name) for name in names]

    # -- schema ----------------------------------------------------------------------------

    def _schema_query(self, session: Any, cql: str) -> list[Any]:
        """Rows of a ``system_schema`` query, from the coordinator's current schema."""
        from cassandra import ConsistencyLevel
        from cassandra.query import SimpleStatement

        statement = SimpleStatement(cql, consistency_level=ConsistencyLevel.ONE)
        return list(session.execute(statement, (self.keyspace,), timeout=self.request_timeout_s))

    def _tables(self, session: Any) -> dict[str, dict[str, Any]] | None:
        """The keyspace's tables with their options (None: no keyspace). Lock held."""
        if not self._schema_query(session, self.statements.select_keyspace):
            return None
        return {name: {"compaction": compaction, "gc_grace_seconds": grace,
                       "default_time_to_live": default_ttl}
                for name, compaction, grace, default_ttl
                in self._schema_query(session, self.statements.select_tables)}

    def _ddl(self, session: Any, cql: str) -> None:
        """Run one schema change and wait until the nodes agree on it. Lock held."""
        from cassandra import AlreadyExists

        try:
            result = session.execute(cql, timeout=60)
        except AlreadyExists:
            return  # another process made it first
        if not result.response_future.is_schema_agreed:
            self._await_agreement()

    def _await_agreement(self) -> None:
        agreed = self._cluster.control_connection.wait_for_schema_agreement(
            wait_time=SCHEMA_AGREEMENT_S)
        if not agreed:
            raise StoreUnavailable(
                f"the nodes of {self.where} did not agree on the schema within "
                f"{SCHEMA_AGREEMENT_S:.0f} s (a node down or slow?); retry later")

    def _create_schema(self, session: Any) -> None:
        """Create what is missing, ALTER tables whose options differ, await agreement."""
        from cassandra import Unauthorized

        tables = self._tables(session)
        if tables is None:
            self._ddl(session, self.statements.create_keyspace)
            log.info("created keyspace %s with replication %s", self.keyspace,
                     self.statements.replication)
            tables = {}
        for table, ddl in self.statements.create_tables.items():
            if table not in tables:
                self._ddl(session, ddl)
                log.info("created table %s.%s", self.keyspace, table)
                continue
            differs = option_differences(table, tables[table])
            if not differs:
                continue
            try:
                self._ddl(session, self.statements.alter_table(table))
            except Unauthorized as e:
                log.warning("table %s.%s keeps its %s (no right to ALTER it: %s); answers are "
                            "the same, only its disk use differs", self.keyspace, table,
                            " and ".join(differs), self._reason(e))
                continue
            log.info("altered table %s.%s: %s as this version sets them", self.keyspace, table,
                     " and ".join(differs))
        self._await_agreement()  # DDL of other processes too (IF NOT EXISTS answered "done")

    def _check_schema(self, session: Any) -> None:
        """StoreUnavailable unless the keyspace and every table exist. No DDL."""
        tables = self._tables(session)
        missing = ([f"keyspace {self.keyspace}"] if tables is None else
                   [t for t in self.statements.create_tables if t not in tables])
        if missing:
            raise StoreUnavailable(
                f"the schema in {self.where} is not created yet (missing: {', '.join(missing)}): "
                "the jobs or the stack create it; retry once they have started")

    # -- the contract ----------------------------------------------------------------------

    def setup(self, create_schema: bool = True, connect_timeout_s: float | None = None) -> None:
        """Connect, make sure of the schema, prepare the statements. Safe on every start and
        from several processes at once.

        Args:
            create_schema: create the keyspace and tables if missing and ALTER their
                options (the jobs, the stack). False: issue no DDL, raise
                StoreUnavailable if the schema is not there yet, prepare only the reads
                (the display server, which needs no schema rights).
            connect_timeout_s: how long to retry connecting (None: ``connect_timeout_s``
                of the store; 0: one attempt).

        Raises:
            StoreUnavailable: no connection in time, the schema not created (reader) or
                not agreed yet, or a timeout.
            StoreError: credentials, certificate, a missing right, anything else. After
                any failure the store holds no connection.
        """
        with self._lock:
            try:
                session = self._connect(connect_timeout_s)
                try:
                    if create_schema:
                        self._create_schema(session)
                    else:
                        self._check_schema(session)
                except StoreError:
                    raise
                except Exception as e:  # Unauthorized, timeouts, ...
                    what = "creating the schema in" if create_schema else "reading the schema of"
                    raise _failure(e, f"{what} {self.where} failed: {self._reason(e)}") from e
                self._prepared.clear()
                for name in self.statements.dml(reads_only=not create_schema):
                    self._statement(name)
            except BaseException:
                self._shutdown()  # a failed open keeps no Cluster (and its threads) alive
                raise

    def upsert(self, rows: Sequence[ResultRow], ttl: dt.timedelta | None = None) -> None:
        """Write ``rows`` (idempotent per (stream, key, window_start)); with ``ttl``, USING TTL.

        Each partition's rows go in one unlogged batch (see the module docstring).

        Raises:
            StoreUnavailable: the server was out of reach (some rows may have landed; a
                retry of the whole batch overwrites them).
            StoreError: a time is naive, the ttl is invalid, or a write failed otherwise.
        """
        if not rows:
            return
        plan = plan_upsert(rows, ttl, self.clock())  # validates before anything is sent
        session, (insert_day, insert, insert_by_key) = self._ready(*Statements.WRITES)
        # The index first: a row is never readable without its day in the index.
        index = self._index_due(plan.index)
        self._execute_all(session, [(insert_day, params) for params in index],
                          f"indexing the days of {len(plan.results)} rows")
        self._index_written(index)
        batches = [*self._batches(insert, plan.results, RESULTS_KEY),
                   *self._batches(insert_by_key, plan.by_key, BY_KEY_KEY)]
        self._execute_all(session, [(batch, None) for batch in batches],
                          f"writing {len(plan.results)} rows in {len(batches)} batches")
        log.debug("upserted %d rows (%d days, ttl %d s) in %d batches into %s",
                  len(plan.results), len(plan.index), plan.ttl_s, len(batches), self.where)

    def _batches(self, statement: Any, params: list[tuple[Any, ...]], key_len: int) -> list[Any]:
        """One UNLOGGED BATCH per partition of ``params`` (several if it is too big)."""
        from cassandra.query import BatchStatement, BatchType

        planned = partition_batches(params, key_len, self.batch_max_bytes)
        batches = []
        previous: tuple[Any, ...] | None = None
        for key, rows in planned:
            if key == previous and key[0] not in self._split_logged:
                self._split_logged.add(key[0])
                log.warning(
                    "stream %r: the rows of one partition (%s) exceed one batch (%d bytes at "
                    "most) and are written in several; readers may see part of them until the "
                    "last lands (logged once per stream)", key[0],
                    ", ".join(map(str, key)), self.batch_max_bytes)
            previous = key
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for values in rows:
                batch.add(statement, values)
            batch.is_idempotent = True
            batches.append(batch)
        return batches

    def _index_due(self, index: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The index entries this store has not written in the last ``INDEX_REFRESH_S``.

        Every micro-batch (one a second) names the same day; rewriting its entry each
        time would only pile up overwrites of one row. An entry's TTL exceeds its rows'
        by ``INDEX_TTL_MARGIN_S`` > ``INDEX_REFRESH_S``, so skipping is safe.
        """
        now = self._monotonic()
        with self._lock:
            return [entry for entry in index
                    if now - self._indexed.get(entry[:3], -math.inf) >= INDEX_REFRESH_S]

    def _index_written(self, index: list[tuple[Any, ...]]) -> None:
        now = self._monotonic()
        with self._lock:
            if len(self._indexed) > 10_000:  # days long gone; keep the memo small
                self._indexed.clear()
            self._indexed.update((entry[:3], now) for entry in index)

    def _execute_all(self, session: Any, work: list[tuple[Any, Any]], what: str) -> None:
        """Run every statement, ``write_concurrency`` at a time; raise if any failed.

        Raises:
            StoreUnavailable: every failure was an outage (:func:`is_unavailable`).
            StoreError: any other failure.
        """
        from cassandra.concurrent import execute_concurrent

        if not work:
            return
        try:
            results = execute_concurrent(session, work, concurrency=self.write_concurrency,
                                         raise_on_first_error=False)
        except Exception as e:  # the executor itself failed (e.g. the session was shut down)
            raise _failure(e, f"{what} to {self.where} failed: {self._reason(e)}") from e
        failures = [result for ok, result in results if not ok]
        self._log_server_warnings(result for ok, result in results if ok)
        if failures:
            first = failures[0]
            outage = all(is_unavailable(f) for f in failures)
            kind = StoreUnavailable if outage else StoreError
            raise kind(
                f"{what} to {self.where}: {len(failures)} of {len(work)} writes failed "
                f"(first: {self._reason(first)}); nothing may be assumed written, retry the "
                "batch") from first

    def _log_server_warnings(self, results: Iterable[Any]) -> None:
        """Log the warnings Cassandra attached to responses (the first at WARNING level)."""
        for result in results:
            future = getattr(result, "response_future", None)
            for text in getattr(future, "warnings", None) or ():
                level = logging.DEBUG if self._server_warned else logging.WARNING
                self._server_warned = True
                log.log(level, "Cassandra %s warns: %s", self.where, self._scrub(str(text)))

    def _days(self, stream: str, first: dt.date | None = None,
              last: dt.date | None = None) -> list[dt.date]:
        """The days holding rows of ``stream`` (between ``first`` and ``last``), newest first."""
        if first is None or last is None:
            session, (statement,) = self._ready("select_days")
            args: tuple[Any, ...] = (stream,)
        else:
            session, (statement,) = self._ready("select_days_between")
            args = (stream, first, last)
        try:
            return distinct_days(row[0] for row in session.execute(statement, args))
        except Exception as e:  # driver errors -> StoreError
            raise _failure(e, f"reading the days of {stream!r} from {self.where} failed: "
                              f"{self._reason(e)}") from e

    def _read(self, stream: str, days: list[dt.date], name: str, args_for: Callable[
            [dt.date, int], tuple[Any, ...]], limit: int | None) -> list[ResultRow]:
        """Read ``days`` newest first with statement ``name`` until ``limit`` rows."""
        session, (statement,) = self._ready(name)
        found: list[ResultRow] = []
        for day in days:
            want = _NO_LIMIT if limit is None else limit - len(found)
            if want <= 0:
                break
            try:
                fetched = list(session.execute(statement, args_for(day, want)))
            except Exception as e:  # driver errors -> StoreError
                raise _failure(e, f"reading {stream!r} ({day}) from {self.where} failed: "
                                  f"{self._reason(e)}") from e
            found.extend(
                ResultRow(s, k, from_driver_time(start), from_driver_time(end),
                          json.loads(payload), from_driver_time(updated))
                for s, k, start, end, payload, updated in fetched)
        return newest_first(found, limit)

    def latest(self, stream: str, limit: int, key: str | None = None) -> list[ResultRow]:
        """The ``limit`` newest rows of ``stream`` (all keys or one), newest first."""
        if limit <= 0:
            return []
        days = self._days(stream)
        if key is None:
            return self._read(stream, days, "select_day", lambda d, n: (stream, d, n), limit)
        return self._read(stream, days, "select_key_day", lambda d, n: (stream, key, d, n), limit)

    def range(self, stream: str, start: dt.datetime, end: dt.datetime, key: str | None = None,
              limit: int | None = None) -> list[ResultRow]:
        """Rows with ``start <= window_start < end`` (all keys or one), newest first."""
        low, high = ceil_millis(start), ceil_millis(end)
        if high <= low or (limit is not None and limit <= 0):
            return []
        days = self._days(stream, day_of(start), day_of(end))
        if key is None:
            return self._read(stream, days, "select_day_range",
                              lambda d, n: (stream, d, low, high, n), limit)
        return self._read(stream, days, "select_key_day_range",
                          lambda d, n: (stream, key, d, low, high, n), limit)

    def purge_expired(self) -> int:
        """0: Cassandra removes rows written ``USING TTL`` by itself (reads never see them)."""
        return 0

    def drop_keyspace(self) -> None:
        """Drop the store's keyspace and everything in it (tests; irreversible)."""
        with self._lock:
            session = self._connect()
            try:
                session.execute(self.statements.drop_keyspace, timeout=60)
            except Exception as e:  # driver errors -> StoreError
                raise _failure(e, f"dropping keyspace {self.where} failed: "
                                  f"{self._reason(e)}") from e
            self._prepared.clear()
            self._indexed.clear()
            log.info("dropped keyspace %s", self.keyspace)

    def close(self) -> None:
        """Close every connection; safe to call twice. A later call connects again."""
        with self._lock:
            self._shutdown()
            self._indexed.clear()
