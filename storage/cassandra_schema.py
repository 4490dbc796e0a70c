"""The Cassandra store's keyspace and tables: their keys and options, every CQL statement, and
the DDL that creates them.

:func:`check_keyspace` and :func:`check_replication` check ``CASSANDRA_KEYSPACE`` and
``CASSANDRA_REPLICATION``; :class:`Statements` is every statement of the store, DDL and
DML, for one keyspace; :func:`create_schema` (a writer's setup: the jobs, the stack)
creates what is missing on a connected session, and :func:`check_schema` (a reader's,
such as the display server, which needs no schema rights) issues no DDL and raises
:class:`~storage.base.StoreUnavailable` until a writer has created them. How rows become
the bound values of these statements is :mod:`storage.cassandra_rows`; the store that
runs them is :mod:`storage.cassandra`.

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

:func:`create_schema` creates missing tables with these options and ALTERs
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
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from storage.base import StoreError, StoreUnavailable

__all__ = [
    "TABLE_OPTIONS",
    "Statements",
    "check_keyspace",
    "check_replication",
    "check_schema",
    "create_schema",
    "option_differences",
]

log = logging.getLogger(__name__)

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


# -- DDL on a connected session -------------------------------------------------------------


def _schema_rows(session: Any, cql: str, keyspace: str, timeout_s: float) -> list[Any]:
    """Rows of a ``system_schema`` query, from the coordinator's current schema."""
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    statement = SimpleStatement(cql, consistency_level=ConsistencyLevel.ONE)
    return list(session.execute(statement, (keyspace,), timeout=timeout_s))


def existing_tables(session: Any, statements: Statements,
                    timeout_s: float) -> dict[str, dict[str, Any]] | None:
    """The keyspace's tables with their options (None: no keyspace)."""
    ks = statements.keyspace
    if not _schema_rows(session, statements.select_keyspace, ks, timeout_s):
        return None
    return {name: {"compaction": compaction, "gc_grace_seconds": grace,
                   "default_time_to_live": default_ttl}
            for name, compaction, grace, default_ttl
            in _schema_rows(session, statements.select_tables, ks, timeout_s)}


def await_agreement(session: Any, where: str) -> None:
    """Wait until the nodes agree on the schema, or StoreUnavailable after SCHEMA_AGREEMENT_S."""
    agreed = session.cluster.control_connection.wait_for_schema_agreement(
        wait_time=SCHEMA_AGREEMENT_S)
    if not agreed:
        raise StoreUnavailable(
            f"the nodes of {where} did not agree on the schema within "
            f"{SCHEMA_AGREEMENT_S:.0f} s (a node down or slow?); retry later")


def _ddl(session: Any, cql: str, where: str) -> None:
    """Run one schema change and wait until the nodes agree on it."""
    from cassandra import AlreadyExists

    try:
        result = session.execute(cql, timeout=60)
    except AlreadyExists:
        return  # another process made it first
    if not result.response_future.is_schema_agreed:
        await_agreement(session, where)


def create_schema(session: Any, statements: Statements, *, where: str, timeout_s: float,
                  reason: Callable[[BaseException], str]) -> None:
    """Create what is missing, ALTER tables whose options differ, await agreement.

    Args:
        where: the store's ``host,host:port/keyspace``, for messages.
        timeout_s: of each ``system_schema`` query.
        reason: an error as text for a log line (the store's hides the password).
    """
    from cassandra import Unauthorized

    keyspace = statements.keyspace
    tables = existing_tables(session, statements, timeout_s)
    if tables is None:
        _ddl(session, statements.create_keyspace, where)
        log.info("created keyspace %s with replication %s", keyspace, statements.replication)
        tables = {}
    for table, ddl in statements.create_tables.items():
        if table not in tables:
            _ddl(session, ddl, where)
            log.info("created table %s.%s", keyspace, table)
            continue
        differs = option_differences(table, tables[table])
        if not differs:
            continue
        try:
            _ddl(session, statements.alter_table(table), where)
        except Unauthorized as e:
            log.warning("table %s.%s keeps its %s (no right to ALTER it: %s); answers are "
                        "the same, only its disk use differs", keyspace, table,
                        " and ".join(differs), reason(e))
            continue
        log.info("altered table %s.%s: %s as this version sets them", keyspace, table,
                 " and ".join(differs))
    await_agreement(session, where)  # DDL of other processes too (IF NOT EXISTS answered "done")


def check_schema(session: Any, statements: Statements, *, where: str, timeout_s: float) -> None:
    """StoreUnavailable unless the keyspace and every table exist. No DDL."""
    tables = existing_tables(session, statements, timeout_s)
    missing = ([f"keyspace {statements.keyspace}"] if tables is None else
               [t for t in statements.create_tables if t not in tables])
    if missing:
        raise StoreUnavailable(
            f"the schema in {where} is not created yet (missing: {', '.join(missing)}): "
            "the jobs or the stack create it; retry once they have started")
