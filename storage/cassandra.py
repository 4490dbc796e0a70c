"""The Cassandra store: the storage contract (:mod:`storage.base`) on Apache Cassandra 4.1/5.0.

Point it at a server with ``CASSANDRA_HOSTS=host[,host]`` (and ``CASSANDRA_PORT``,
``CASSANDRA_KEYSPACE``, ``CASSANDRA_USERNAME``/``CASSANDRA_PASSWORD``,
``CASSANDRA_LOCAL_DC``); :meth:`CassandraStore.setup` creates the keyspace (with
``CASSANDRA_REPLICATION``) and the tables when they are missing.

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

Writes: every statement is prepared once and marked idempotent; an upsert is an
``INSERT`` (an upsert in Cassandra) keyed by (stream, key, window_start), so a
replayed micro-batch overwrites. With ``ttl`` the rows are written ``USING TTL``
(retention); Cassandra expires them by itself, so :meth:`CassandraStore.purge_expired`
returns 0. The index entries of a batch are written first, then its rows, each
phase run concurrently with at most ``write_concurrency`` requests in flight
(``execute_concurrent``). Every write of a batch is waited for; if any failed,
:class:`~storage.base.StoreError` is raised (the job fails the micro-batch and
Spark retries it, overwriting whatever did land), never a silent drop.

Values are JSON text; ``updated_at`` is the store's clock at the write. Times
are CQL ``timestamp`` (milliseconds, UTC): timezone-aware UTC datetimes in and
out, sub-millisecond parts dropped (Spark's windows are whole seconds); naive
datetimes are refused. Consistency is ``LOCAL_QUORUM`` for reads and writes, so
a read after a write sees it with any replication factor.

Connecting retries with backoff for up to ``CASSANDRA_CONNECT_TIMEOUT_S`` (a
server still starting under ``docker compose``), then raises a StoreError naming
the hosts and port. The password is handed to the driver's
``PlainTextAuthProvider`` and appears in no log line or error message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from storage.base import ResultRow, StoreError, require_utc

if TYPE_CHECKING:
    from common.settings import Settings

__all__ = [
    "CassandraStore",
    "Statements",
    "backoff_delays",
    "day_of",
    "newest_first",
    "plan_upsert",
]

log = logging.getLogger(__name__)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DAY = dt.date(1970, 1, 1)

#: Cassandra's largest TTL (20 years), in seconds.
MAX_TTL_S = 20 * 365 * 86_400
#: How much longer a day's index entry lives than the rows it points at.
INDEX_TTL_MARGIN_S = 3_600
#: A store rewrites an index entry it wrote at most this long ago only after this long
#: (less than the margin, so an entry always outlives the rows written since).
INDEX_REFRESH_S = 600
#: ``LIMIT`` bound when a read has no limit (CQL's LIMIT is a positive int).
_NO_LIMIT = 2**31 - 1

_KEYSPACE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")

Clock = Callable[[], dt.datetime]


# -- pure helpers (unit-tested without a server) -------------------------------------------


def day_of(value: dt.datetime) -> dt.date:
    """The UTC day (partition bucket) of a timezone-aware time. Naive times raise StoreError."""
    return require_utc(value, "a window time").date()


def to_millis(value: dt.datetime) -> int:
    """Milliseconds since the epoch (floor), as CQL ``timestamp`` stores them."""
    delta = require_utc(value, "a window time") - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros // 1000


def ceil_millis(value: dt.datetime) -> int:
    """Milliseconds since the epoch, rounded up: ``ms >= ceil_millis(t)`` iff ``ms >= t``."""
    delta = require_utc(value, "a range bound") - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return -(-micros // 1000)


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


def ttl_seconds(ttl: dt.timedelta | None) -> int:
    """``USING TTL`` seconds for a retention (rounded up); 0 means none. Raises StoreError."""
    if ttl is None:
        return 0
    seconds = math.ceil(ttl.total_seconds())
    if seconds <= 0:
        raise StoreError(f"ttl must be positive, got {ttl}")
    if seconds > MAX_TTL_S - INDEX_TTL_MARGIN_S:
        raise StoreError(f"ttl {ttl} is longer than Cassandra allows (20 years)")
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

    ttl_s: int  #: 0: no TTL
    index: list[tuple[Any, ...]]  #: insert_day: stream, day, ttl_s, the entry's TTL
    results: list[tuple[Any, ...]]  #: insert[_ttl]: stream, day, window_start, key, ... [, ttl]
    by_key: list[tuple[Any, ...]]  #: insert_by_key[_ttl]: stream, key, day, window_start, ...


def plan_upsert(rows: Sequence[ResultRow], ttl: dt.timedelta | None,
                now: dt.datetime) -> WritePlan:
    """Validate ``rows`` and turn them into bound values (times in ms, values as JSON).

    Raises:
        StoreError: a naive time, or a ttl Cassandra cannot store.
    """
    ttl_s = ttl_seconds(ttl)
    updated = to_millis(require_utc(now, "the store's clock"))
    extra = (ttl_s,) if ttl_s else ()
    days: set[tuple[str, dt.date]] = set()
    results: list[tuple[Any, ...]] = []
    by_key: list[tuple[Any, ...]] = []
    for r in last_write_wins(rows):
        day = day_of(r.window_start)
        start, end = to_millis(r.window_start), to_millis(r.window_end)
        payload = json.dumps(dict(r.values), separators=(",", ":"), default=str)
        results.append((r.stream, day, start, r.key, end, payload, updated, *extra))
        by_key.append((r.stream, r.key, day, start, end, payload, updated, *extra))
        days.add((r.stream, day))
    index_ttl = ttl_s + INDEX_TTL_MARGIN_S if ttl_s else 0
    index = [(stream, day, ttl_s, index_ttl) for stream, day in sorted(days)]
    return WritePlan(ttl_s, index, results, by_key)


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


# -- CQL ---------------------------------------------------------------------------------

_COLUMNS = "stream, key, window_start, window_end, payload, updated_at"


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
        """Table name -> its ``CREATE TABLE IF NOT EXISTS``."""
        ks = self.keyspace
        return {
            "results": (
                f"CREATE TABLE IF NOT EXISTS {ks}.results ("
                " stream text, day date, window_start timestamp, key text,"
                " window_end timestamp, payload text, updated_at timestamp,"
                " PRIMARY KEY ((stream, day), window_start, key))"
                " WITH CLUSTERING ORDER BY (window_start DESC, key ASC)"
                " AND comment = 'streamkit results: one partition per stream and UTC day'"
            ),
            "results_by_key": (
                f"CREATE TABLE IF NOT EXISTS {ks}.results_by_key ("
                " stream text, key text, day date, window_start timestamp,"
                " window_end timestamp, payload text, updated_at timestamp,"
                " PRIMARY KEY ((stream, key, day), window_start))"
                " WITH CLUSTERING ORDER BY (window_start DESC)"
                " AND comment = 'streamkit results of one key: one partition per stream, key and UTC day'"
            ),
            "result_days": (
                f"CREATE TABLE IF NOT EXISTS {ks}.result_days ("
                " stream text, day date, ttl_s int,"
                " PRIMARY KEY (stream, day, ttl_s))"
                " WITH CLUSTERING ORDER BY (day DESC, ttl_s ASC)"
                " AND comment = 'streamkit: the UTC days that hold results of a stream'"
            ),
        }

    # writes ------------------------------------------------------------------------------

    @property
    def insert_day(self) -> str:
        """Bind: stream, day, ttl_s, then the entry's own TTL (0: none)."""
        return (f"INSERT INTO {self.keyspace}.result_days (stream, day, ttl_s)"
                " VALUES (?, ?, ?) USING TTL ?")

    @property
    def insert(self) -> str:
        """Bind: stream, day, window_start, key, window_end, payload, updated_at."""
        return (f"INSERT INTO {self.keyspace}.results"
                " (stream, day, window_start, key, window_end, payload, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)")

    @property
    def insert_ttl(self) -> str:
        """As :attr:`insert`, then the TTL in seconds."""
        return self.insert + " USING TTL ?"

    @property
    def insert_by_key(self) -> str:
        """Bind: stream, key, day, window_start, window_end, payload, updated_at."""
        return (f"INSERT INTO {self.keyspace}.results_by_key"
                " (stream, key, day, window_start, window_end, payload, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)")

    @property
    def insert_by_key_ttl(self) -> str:
        return self.insert_by_key + " USING TTL ?"

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

    def dml(self) -> dict[str, str]:
        """Every statement the store prepares, by name."""
        names = ("insert_day", "insert", "insert_ttl", "insert_by_key", "insert_by_key_ttl",
                 "select_days", "select_days_between", "select_day", "select_day_range",
                 "select_key_day", "select_key_day_range")
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
        request_timeout_s: float = 20.0,
        write_concurrency: int = 32,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not hosts:
            raise StoreError("CASSANDRA_HOSTS is empty: name at least one Cassandra contact point")
        if write_concurrency < 1:
            raise ValueError("write_concurrency must be at least 1")
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
        )

    def __repr__(self) -> str:
        return (f"CassandraStore(hosts={list(self.hosts)}, port={self.port}, "
                f"keyspace={self.keyspace!r}, username={self.username!r})")

    @property
    def where(self) -> str:
        """``host,host:port/keyspace``, for messages."""
        return f"{','.join(self.hosts)}:{self.port}/{self.keyspace}"

    def _scrub(self, text: str) -> str:
        """``text`` with the password, should it ever appear, replaced (if not trivially short)."""
        if self._password and len(self._password) >= 4:
            text = text.replace(self._password, "***")
        return text

    # -- connection ------------------------------------------------------------------------

    def _new_cluster(self, connect_timeout_s: float) -> Any:
        """A driver ``Cluster`` for the settings (not connected)."""
        from cassandra import ConsistencyLevel
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
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=connect_timeout_s,
            control_connection_timeout=10.0,
        )

    def _connect(self) -> Any:
        """A session, retrying with backoff until ``connect_timeout_s``. Lock held."""
        if self._session is not None:
            return self._session
        from cassandra import AuthenticationFailed
        from cassandra.cluster import NoHostAvailable

        started = self._monotonic()
        deadline = started + self.connect_timeout_s
        delays = backoff_delays()
        attempt = 0
        with _retrying_quietly():
            while True:
                attempt += 1
                remaining = max(0.5, deadline - self._monotonic())
                cluster = self._new_cluster(connect_timeout_s=min(5.0, remaining))
                try:
                    session = cluster.connect()
                except Exception as e:  # every driver failure: retried, then a StoreError
                    cluster.shutdown()
                    reason = self._scrub(f"{type(e).__name__}: {e}")
                    errors = getattr(e, "errors", None) or {}
                    if isinstance(e, AuthenticationFailed) or (
                            isinstance(e, NoHostAvailable) and errors and all(
                                isinstance(err, AuthenticationFailed) for err in errors.values())):
                        who = (f"refused the credentials of user {self.username!r}: check"
                               if self.username else "requires authentication: set")
                        raise StoreError(
                            f"Cassandra at {','.join(self.hosts)} port {self.port} {who} "
                            f"CASSANDRA_USERNAME and CASSANDRA_PASSWORD ({reason})") from e
                    left = deadline - self._monotonic()
                    if left <= 0:
                        raise StoreError(
                            f"cannot connect to Cassandra at {','.join(self.hosts)} port "
                            f"{self.port}: {attempt} attempts in "
                            f"{self._monotonic() - started:.1f} s failed; last error: {reason}. "
                            "Check that the server is running and reachable from here and that "
                            "CASSANDRA_HOSTS and CASSANDRA_PORT point at it; raise "
                            "CASSANDRA_CONNECT_TIMEOUT_S if it is still starting, or unset "
                            "CASSANDRA_HOSTS to run without Cassandra") from e
                    pause = min(next(delays), left)
                    log.warning("Cassandra at %s port %d: attempt %d failed (%s); retrying in "
                                "%.1f s", ",".join(self.hosts), self.port, attempt, reason, pause)
                    self._sleep(pause)
                    continue
                self._cluster, self._session = cluster, session
                log.info("connected to Cassandra at %s port %d (keyspace %s)",
                         ",".join(self.hosts), self.port, self.keyspace)
                return session

    def _statement(self, name: str) -> Any:
        """The prepared statement ``name`` (prepared on first use). Lock held."""
        prepared = self._prepared.get(name)
        if prepared is None:
            session = self._connect()
            try:
                prepared = session.prepare(self.statements.dml()[name])
            except Exception as e:  # InvalidRequest when a table is missing, or the server is down
                raise StoreError(
                    f"preparing a statement on {self.where} failed ({self._scrub(str(e))}); "
                    "has setup() created the schema?") from e
            prepared.is_idempotent = True  # upserts and reads: safe for the driver to retry
            self._prepared[name] = prepared
        return prepared

    def _ready(self, *names: str) -> tuple[Any, list[Any]]:
        with self._lock:
            session = self._connect()
            return session, [self._statement(name) for name in names]

    # -- the contract ----------------------------------------------------------------------

    def setup(self) -> None:
        """Create the keyspace and tables if missing (safe on every start), prepare statements."""
        with self._lock:
            session = self._connect()
            metadata = self._cluster.metadata
            try:
                if self.keyspace not in metadata.keyspaces:
                    session.execute(self.statements.create_keyspace, timeout=60)
                    log.info("created keyspace %s with replication %s", self.keyspace,
                             self.statements.replication)
                existing = metadata.keyspaces.get(self.keyspace)
                tables = existing.tables if existing is not None else {}
                for table, ddl in self.statements.create_tables.items():
                    if table not in tables:
                        session.execute(ddl, timeout=60)
                        log.info("created table %s.%s", self.keyspace, table)
            except Exception as e:  # Unauthorized, schema disagreement, timeouts: all fatal here
                raise StoreError(f"creating the schema in {self.where} failed: "
                                 f"{self._scrub(str(e))}") from e
            self._prepared.clear()
            for name in self.statements.dml():
                self._statement(name)

    def upsert(self, rows: Sequence[ResultRow], ttl: dt.timedelta | None = None) -> None:
        """Write ``rows`` (idempotent per (stream, key, window_start)); with ``ttl``, USING TTL.

        Raises:
            StoreError: a time is naive, the ttl is invalid, or any write failed (some
                may have landed; a retry of the whole batch overwrites them).
        """
        if not rows:
            return
        plan = plan_upsert(rows, ttl, self.clock())  # validates before anything is sent
        if plan.ttl_s:
            names = ("insert_day", "insert_ttl", "insert_by_key_ttl")
        else:
            names = ("insert_day", "insert", "insert_by_key")
        session, (insert_day, insert, insert_by_key) = self._ready(*names)
        data = [(insert, params) for params in plan.results]
        data += [(insert_by_key, params) for params in plan.by_key]
        # The index first: a row is never readable without its day in the index.
        index = self._index_due(plan.index)
        self._execute_all(session, [(insert_day, params) for params in index],
                          f"indexing the days of {len(plan.results)} rows")
        self._index_written(index)
        self._execute_all(session, data, f"writing {len(plan.results)} rows")
        log.debug("upserted %d rows (%d days, ttl %d s) into %s", len(plan.results),
                  len(plan.index), plan.ttl_s, self.where)

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

    def _execute_all(self, session: Any, work: list[tuple[Any, tuple[Any, ...]]],
                     what: str) -> None:
        """Run every statement, ``write_concurrency`` at a time; StoreError if any failed."""
        from cassandra.concurrent import execute_concurrent

        if not work:
            return
        try:
            results = execute_concurrent(session, work, concurrency=self.write_concurrency,
                                         raise_on_first_error=False)
        except Exception as e:  # the executor itself failed (e.g. the session was shut down)
            raise StoreError(f"{what} to {self.where} failed: {self._scrub(str(e))}") from e
        failures = [result for ok, result in results if not ok]
        if failures:
            first = failures[0]
            raise StoreError(
                f"{what} to {self.where}: {len(failures)} of {len(work)} writes failed "
                f"(first: {type(first).__name__}: {self._scrub(str(first))}); "
                "nothing may be assumed written, retry the batch") from first

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
            raise StoreError(f"reading the days of {stream!r} from {self.where} failed: "
                             f"{self._scrub(str(e))}") from e

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
                raise StoreError(f"reading {stream!r} ({day}) from {self.where} failed: "
                                 f"{self._scrub(str(e))}") from e
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
                raise StoreError(f"dropping keyspace {self.where} failed: "
                                 f"{self._scrub(str(e))}") from e
            self._prepared.clear()
            self._indexed.clear()
            log.info("dropped keyspace %s", self.keyspace)

    def close(self) -> None:
        """Close every connection; safe to call twice. A later call connects again."""
        with self._lock:
            cluster, self._cluster, self._session = self._cluster, None, None
            self._prepared.clear()
            self._indexed.clear()
            if cluster is not None:
                cluster.shutdown()
