"""The Cassandra store: the storage contract (:mod:`storage.base`) on Apache Cassandra 4.1/5.0.

Point it at a server with ``CASSANDRA_HOSTS=host[,host]`` (and ``CASSANDRA_PORT``,
``CASSANDRA_KEYSPACE``, ``CASSANDRA_USERNAME``/``CASSANDRA_PASSWORD``,
``CASSANDRA_LOCAL_DC``, ``CASSANDRA_TLS``/``CASSANDRA_TLS_CA_FILE``).
:meth:`CassandraStore.setup` creates the keyspace (with ``CASSANDRA_REPLICATION``) and
the tables when they are missing; ``setup(create_schema=False)`` (a reader such as the
display server, which needs no schema rights) issues no DDL and raises
:class:`~storage.base.StoreUnavailable` until a job or the stack has created them.

Its parts, each a module:

* :mod:`storage.cassandra_schema`: the keyspace and the tables (keys, compaction,
  ``gc_grace_seconds``, why), every CQL statement, and the DDL of :meth:`setup`;
* :mod:`storage.cassandra_rows`: rows as bound values and back (times, TTLs and the
  2038 limit, the batches of an upsert), pure;
* :mod:`storage.cassandra_connect`: the driver's ``Cluster``, TLS, credentials, the
  connect retry (``CASSANDRA_CONNECT_TIMEOUT_S``) and which errors are outages
  (:class:`~storage.base.StoreUnavailable`) or not (:class:`~storage.base.StoreError`);
* this module: :class:`CassandraStore`, the contract's methods on a session.

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
A partition's rows of one upsert beyond ``batch_max_bytes`` (1 MiB by default) are
split into several batches (see :mod:`storage.cassandra_rows`), and then a reader may
see part of that partition; the store logs that once per stream.
With ``ttl`` the rows expire by themselves, so :meth:`CassandraStore.purge_expired`
returns 0. Every write of a batch is waited for; if any failed, the upsert raises
(the job fails the micro-batch and Spark retries it, overwriting whatever did land),
never a silent drop. Warnings the server attaches to a response are logged.

Consistency is ``LOCAL_QUORUM`` for reads and writes, so a read after a write sees it
with any replication factor. A batch reaches the replicas at different moments, but
each applies it whole, so a quorum read merges either all of a partition's batch or
none of it.
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
from typing import TYPE_CHECKING, Any

from storage.base import ResultRow, StoreError, StoreUnavailable
from storage.cassandra_connect import Connector, failure, is_loopback, is_unavailable, tls_context
from storage.cassandra_rows import (
    BATCH_MAX_BYTES,
    BY_KEY_KEY,
    RESULTS_KEY,
    ceil_millis,
    day_of,
    distinct_days,
    from_driver_time,
    newest_first,
    partition_batches,
    plan_upsert,
)
from storage.cassandra_schema import (
    Statements,
    check_keyspace,
    check_replication,
    check_schema,
)
from storage.cassandra_schema import create_schema as create_schema_in

if TYPE_CHECKING:
    from common.settings import Settings

__all__ = ["CassandraStore"]

log = logging.getLogger(__name__)

#: A store rewrites an index entry it wrote at most this long ago only after this long
#: (less than :data:`~storage.cassandra_rows.INDEX_TTL_MARGIN_S`, so an entry always
#: outlives the rows written since).
INDEX_REFRESH_S = 600
#: ``LIMIT`` bound when a read has no limit (CQL's LIMIT is a positive int).
_NO_LIMIT = 2**31 - 1

Clock = Callable[[], dt.datetime]


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
        #: Where and how to connect (TLS, credentials); makes the sessions.
        self.connector = Connector(
            tuple(hosts), int(port), username=username, password=password, local_dc=local_dc,
            ssl_context=tls_context(tls_ca_file) if tls else None,
            request_timeout_s=request_timeout_s, sleep=sleep, monotonic=monotonic)
        self.hosts = self.connector.hosts
        self.port = self.connector.port
        self.username = username
        self.statements = Statements(check_keyspace(keyspace), check_replication(replication))
        self.keyspace = self.statements.keyspace
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.write_concurrency = write_concurrency
        self.batch_max_bytes = batch_max_bytes
        #: Time of ``updated_at`` (the contract tests replace it).
        self.clock: Clock = clock or (lambda: dt.datetime.now(dt.UTC))
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
                f"tls={self.connector.ssl_context is not None})")

    @property
    def where(self) -> str:
        """``host,host:port/keyspace``, for messages."""
        return f"{','.join(self.hosts)}:{self.port}/{self.keyspace}"

    def _reason(self, error: BaseException) -> str:
        return self.connector.reason(error)

    # -- connection ------------------------------------------------------------------------

    def _connect(self, timeout_s: float | None = None) -> Any:
        """The session, connecting first if there is none (:meth:`Connector.connect`: retrying
        for ``timeout_s``; None: ``connect_timeout_s``; 0: one attempt). Lock held."""
        if self._session is not None:
            return self._session
        self._cluster, self._session = self.connector.connect(
            self.connect_timeout_s if timeout_s is None else timeout_s)
        log.info("connected to Cassandra at %s port %d (keyspace %s%s)",
                 ",".join(self.hosts), self.port, self.keyspace,
                 ", TLS" if self.connector.ssl_context else "")
        return self._session

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
                raise failure(e, f"preparing a statement on {self.where} failed "
                                  f"({self._reason(e)}); has setup() created the schema?") from e
            prepared.is_idempotent = True  # upserts and reads: safe for the driver to retry
            self._prepared[name] = prepared
        return prepared

    def _ready(self, *names: str) -> tuple[Any, list[Any]]:
        with self._lock:
            session = self._connect()
            return session, [self._statement(name) for name in names]

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
                        create_schema_in(session, self.statements, where=self.where,
                                         timeout_s=self.request_timeout_s, reason=self._reason)
                    else:
                        check_schema(session, self.statements, where=self.where,
                                     timeout_s=self.request_timeout_s)
                except StoreError:
                    raise
                except Exception as e:  # Unauthorized, timeouts, ...
                    what = "creating the schema in" if create_schema else "reading the schema of"
                    raise failure(e, f"{what} {self.where} failed: {self._reason(e)}") from e
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
            raise failure(e, f"{what} to {self.where} failed: {self._reason(e)}") from e
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
                log.log(level, "Cassandra %s warns: %s", self.where, self.connector.scrub(str(text)))

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
            raise failure(e, f"reading the days of {stream!r} from {self.where} failed: "
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
                raise failure(e, f"reading {stream!r} ({day}) from {self.where} failed: "
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
                raise failure(e, f"dropping keyspace {self.where} failed: "
                                  f"{self._reason(e)}") from e
            self._prepared.clear()
            self._indexed.clear()
            log.info("dropped keyspace %s", self.keyspace)

    def close(self) -> None:
        """Close every connection; safe to call twice. A later call connects again."""
        with self._lock:
            self._shutdown()
            self._indexed.clear()
