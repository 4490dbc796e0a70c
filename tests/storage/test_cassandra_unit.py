"""The Cassandra store without a server: its CQL, its pure parts, and real failed connections.

Nothing here fakes a server. The connection tests run the real driver against a
real closed port on 127.0.0.1 (a socket bound but not listening: the kernel
refuses the connection), or a real port that accepts connections and never answers.
Against a real node: the contract (``test_contract.py``), the store's own behaviour
(``test_cassandra_server.py``) and TLS (``test_cassandra_tls.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from common.settings import load
from storage.base import ResultRow, Store, StoreError
from storage.cassandra import (
    BY_KEY_KEY,
    INDEX_TTL_MARGIN_S,
    RESULTS_KEY,
    CassandraStore,
    Statements,
    backoff_delays,
    ceil_millis,
    check_keyspace,
    check_replication,
    day_of,
    distinct_days,
    from_driver_date,
    from_driver_time,
    last_write_wins,
    newest_first,
    option_differences,
    plan_upsert,
    to_millis,
    ttl_seconds,
)

T0 = dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
PASSWORD = "pw-7f3a9c-never-logged"


def row(key: str, start: dt.datetime, stream: str = "s", **values: Any) -> ResultRow:
    return ResultRow(stream, key, start, start + 10 * SECOND, values)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound (so no one else takes it), not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def store_at(port: int, timeout_s: float = 1.0, **kwargs: Any) -> CassandraStore:
    settings = load(environ={
        "CASSANDRA_HOSTS": "127.0.0.1", "CASSANDRA_PORT": str(port),
        "CASSANDRA_USERNAME": "kit", "CASSANDRA_PASSWORD": PASSWORD,
        "CASSANDRA_CONNECT_TIMEOUT_S": str(timeout_s), **kwargs,
    })
    return CassandraStore.from_settings(settings)


# -- CQL text ------------------------------------------------------------------------------

STATEMENTS = Statements("streamkit", "{'class': 'NetworkTopologyStrategy', 'dc1': 3}")


def squash(cql: str) -> str:
    return re.sub(r"\s+", " ", cql).strip()


def test_the_keyspace_is_created_with_the_configured_replication() -> None:
    assert STATEMENTS.create_keyspace == (
        "CREATE KEYSPACE IF NOT EXISTS streamkit WITH replication = "
        "{'class': 'NetworkTopologyStrategy', 'dc1': 3} AND durable_writes = true")
    assert STATEMENTS.drop_keyspace == "DROP KEYSPACE IF EXISTS streamkit"


def test_results_are_partitioned_by_stream_and_day_newest_first() -> None:
    ddl = squash(STATEMENTS.create_tables["results"])
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS streamkit.results (")
    assert "stream text, day date, window_start timestamp, key text," in ddl
    assert "window_end timestamp, payload text, updated_at timestamp," in ddl
    assert "PRIMARY KEY ((stream, day), window_start, key))" in ddl
    assert "WITH CLUSTERING ORDER BY (window_start DESC, key ASC)" in ddl


def test_the_key_table_and_the_day_index() -> None:
    by_key = squash(STATEMENTS.create_tables["results_by_key"])
    assert "PRIMARY KEY ((stream, key, day), window_start))" in by_key
    assert "WITH CLUSTERING ORDER BY (window_start DESC)" in by_key
    days = squash(STATEMENTS.create_tables["result_days"])
    assert "stream text, day date, ttl_s int, PRIMARY KEY (stream, day, ttl_s))" in days
    assert "WITH CLUSTERING ORDER BY (day DESC, ttl_s ASC)" in days
    assert list(STATEMENTS.create_tables) == ["results", "results_by_key", "result_days"]


def test_every_write_states_its_ttl() -> None:
    """USING TTL on every insert: n for retained rows, 0 for kept ones (0 overrides a table
    default TTL, so kept rows stay even on a table an operator gave one)."""
    assert STATEMENTS.insert == (
        "INSERT INTO streamkit.results"
        " (stream, day, window_start, key, window_end, payload, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?")
    assert STATEMENTS.insert_by_key == (
        "INSERT INTO streamkit.results_by_key"
        " (stream, key, day, window_start, window_end, payload, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?")
    assert STATEMENTS.insert_day == (
        "INSERT INTO streamkit.result_days (stream, day, ttl_s) VALUES (?, ?, ?) USING TTL ?")
    assert list(STATEMENTS.dml(reads_only=True)) == list(Statements.READS)
    assert all(cql.startswith("SELECT") for cql in STATEMENTS.dml(reads_only=True).values())
    assert list(STATEMENTS.dml()) == [*Statements.WRITES, *Statements.READS]


def test_tables_are_made_for_expiring_time_series() -> None:
    for table in ("results", "results_by_key"):
        ddl = squash(STATEMENTS.create_tables[table])
        assert ("compaction = {'class': 'TimeWindowCompactionStrategy', "
                "'compaction_window_unit': 'DAYS', 'compaction_window_size': '1', "
                "'unchecked_tombstone_compaction': 'true'}") in ddl
        assert "gc_grace_seconds = 10800" in ddl and "default_time_to_live = 0" in ddl
        assert STATEMENTS.alter_table(table).startswith(f"ALTER TABLE streamkit.{table} WITH compaction = {{")
    days = squash(STATEMENTS.create_tables["result_days"])
    assert "compaction" not in days and "gc_grace_seconds = 10800" in days
    assert STATEMENTS.alter_table("result_days") == (
        "ALTER TABLE streamkit.result_days WITH gc_grace_seconds = 10800")


def test_option_differences_compare_what_system_schema_shows() -> None:
    twcs = {"class": "org.apache.cassandra.db.compaction.TimeWindowCompactionStrategy",
            "compaction_window_size": "1", "compaction_window_unit": "DAYS",
            "max_threshold": "32", "min_threshold": "4", "unchecked_tombstone_compaction": "true"}
    stcs = {"class": "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy",
            "max_threshold": "32", "min_threshold": "4"}
    assert option_differences("results", {"compaction": twcs, "gc_grace_seconds": 10800}) == []
    assert option_differences("results", {"compaction": stcs, "gc_grace_seconds": 864000}) == [
        "compaction", "gc_grace_seconds"]
    hourly = {**twcs, "compaction_window_unit": "HOURS"}
    assert option_differences("results_by_key", {"compaction": hourly,
                                                 "gc_grace_seconds": 10800}) == ["compaction"]
    # the index keeps whatever compaction it has
    assert option_differences("result_days", {"compaction": stcs, "gc_grace_seconds": 10800}) == []
    assert option_differences("result_days", {"compaction": stcs,
                                              "gc_grace_seconds": 864000}) == ["gc_grace_seconds"]


def test_reads_restrict_one_partition_and_need_no_filtering() -> None:
    for name, cql in STATEMENTS.dml().items():
        assert "ALLOW FILTERING" not in cql, name
        if name in ("select_day", "select_day_range", "select_key_day", "select_key_day_range"):
            assert "WHERE stream = ?" in cql and "day = ?" in cql and cql.endswith("LIMIT ?")
    assert "key = ?" in STATEMENTS.select_key_day and "results_by_key" in STATEMENTS.select_key_day
    assert "window_start >= ? AND window_start < ?" in STATEMENTS.select_day_range
    assert STATEMENTS.select_days_between.endswith("WHERE stream = ? AND day >= ? AND day <= ?")


def columns_of(insert: str) -> list[str]:
    """Bind names of an INSERT, in order: its column list, then ``ttl`` for USING TTL ?."""
    match = re.search(r"\(([^)]*)\) VALUES", insert)
    assert match
    names = [c.strip() for c in match.group(1).split(",")]
    return names + (["ttl"] if insert.endswith("USING TTL ?") else [])


def test_bound_values_follow_each_statements_columns() -> None:
    start = dt.datetime(2026, 11, 22, 23, 59, 50, tzinfo=dt.UTC)
    rows = [ResultRow("s", "a", start, start + 10 * SECOND, {"n": 1, "label": "ünï"})]
    for ttl, ttl_s in [(None, 0), (dt.timedelta(hours=24), 86_400)]:
        plan = plan_upsert(rows, ttl, T0)
        for statement, params in [(STATEMENTS.insert, plan.results[0]),
                                  (STATEMENTS.insert_by_key, plan.by_key[0])]:
            assert statement.count("?") == len(params)
            bound = dict(zip(columns_of(statement), params, strict=True))
            assert bound["stream"] == "s" and bound["key"] == "a"
            assert bound["day"] == dt.date(2026, 11, 22)
            assert bound["window_start"] == to_millis(start)
            assert bound["window_end"] == to_millis(start) + 10_000
            assert bound["updated_at"] == to_millis(T0)
            assert bound["payload"] == '{"n":1,"label":"\\u00fcn\\u00ef"}'
            assert bound["ttl"] == ttl_s  # 0: kept, stated (overrides a table default)
        (index,) = plan.index
        assert STATEMENTS.insert_day.count("?") == len(index)
        if ttl is None:
            assert index == ("s", dt.date(2026, 11, 22), 0, 0)  # TTL 0: the entry never expires
        else:
            assert index == ("s", dt.date(2026, 11, 22), 86_400, 86_400 + INDEX_TTL_MARGIN_S)
    # the partition keys the batches group by are the bound values' first columns
    plan = plan_upsert(rows, None, T0)
    assert plan.results[0][:RESULTS_KEY] == ("s", dt.date(2026, 11, 22))
    assert plan.by_key[0][:BY_KEY_KEY] == ("s", "a", dt.date(2026, 11, 22))


def test_one_index_entry_per_stream_and_day() -> None:
    rows = [row("a", T0), row("b", T0), row("a", T0 + dt.timedelta(days=1)),
            row("a", T0, stream="other")]
    plan = plan_upsert(rows, None, T0)
    assert [(s, d) for s, d, _, _ in plan.index] == [
        ("other", dt.date(2026, 11, 22)), ("s", dt.date(2026, 11, 22)),
        ("s", dt.date(2026, 11, 23))]
    assert len(plan.results) == len(plan.by_key) == 4


def test_a_batch_writing_one_window_twice_keeps_the_last() -> None:
    rows = [row("a", T0, n=1), row("b", T0, n=2), row("a", T0, n=3)]
    assert [(r.key, r.values["n"]) for r in last_write_wins(rows)] == [("a", 3), ("b", 2)]
    assert len(plan_upsert(rows, None, T0).results) == 2


def test_naive_times_and_bad_ttls_are_refused_before_anything_is_sent() -> None:
    naive = ResultRow("s", "a", dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, 0, 0, 10))  # noqa: DTZ001
    with pytest.raises(StoreError, match="naive"):
        plan_upsert([naive], None, T0)
    with pytest.raises(StoreError, match="naive"):
        plan_upsert([row("a", T0)], None, dt.datetime(2026, 1, 1))  # noqa: DTZ001
    for bad in (dt.timedelta(0), dt.timedelta(seconds=-5), dt.timedelta(days=365 * 21)):
        with pytest.raises(StoreError, match="ttl"):
            plan_upsert([row("a", T0)], bad, T0)


# -- CQL through a real parser: Apache Cassandra's own cqlsh grammar (PyPI `cqlsh`) ---------


def cqlsh_parses(cql: str) -> bool:
    """Whether cqlsh's CQL grammar (cqlshlib, Cassandra 5.0) accepts the statement.

    That grammar has no bind markers (cqlsh never sees them), so each ``?`` is
    replaced by a literal first: an integer after LIMIT and TTL, a string elsewhere.
    """
    from cqlshlib.cql3handling import CqlRuleSet

    text = re.sub(r"\b(LIMIT|TTL) \?", r"\1 1", cql)
    text = text.replace("?", "'2026-11-22'") + ";"
    statements, incomplete = CqlRuleSet.cql_split_statements(text)
    tokens = [s for s in statements if s]
    if incomplete or len(tokens) != 1:
        return False
    return CqlRuleSet.cql_whole_parse_tokens(tokens[0], srcstr=text) is not None


def test_every_statement_parses_with_cqlshs_grammar() -> None:
    pytest.importorskip("cqlshlib.cql3handling", reason="PyPI package cqlsh is not installed")
    cql = [STATEMENTS.create_keyspace, STATEMENTS.drop_keyspace,
           Statements("streamkit").create_keyspace,
           *STATEMENTS.create_tables.values(), *STATEMENTS.dml().values(),
           *(STATEMENTS.alter_table(t) for t in STATEMENTS.create_tables)]
    rejected = [c for c in cql if not cqlsh_parses(c)]
    assert rejected == []
    # The parser does reject broken CQL (so the check above means something).
    assert not cqlsh_parses(STATEMENTS.insert.replace(" USING TTL ?", " TTL ?"))
    assert not cqlsh_parses(STATEMENTS.create_tables["results"].replace("PRIMARY KEY ((", "KEY (("))
    assert not cqlsh_parses(STATEMENTS.select_day.replace("LIMIT ?", "LIMIT ? ORDER BY day"))


# -- settings checks -----------------------------------------------------------------------


def test_keyspace_and_replication_are_checked() -> None:
    assert check_keyspace("Test_abc123") == "test_abc123"
    for bad in ("", "1abc", "a-b", "a;DROP", "x" * 49):
        with pytest.raises(StoreError, match="CASSANDRA_KEYSPACE"):
            check_keyspace(bad)
    default = load(environ={}).cassandra_replication
    assert check_replication(default) == "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    for bad in ("SimpleStrategy", "{'class': 'X'}; DROP KEYSPACE k", "{'replication_factor': 1}"):
        with pytest.raises(StoreError, match="CASSANDRA_REPLICATION"):
            check_replication(bad)


def test_from_settings_configures_the_driver(closed_port: int) -> None:
    store = store_at(closed_port, CASSANDRA_KEYSPACE="Kit_Test", CASSANDRA_LOCAL_DC="dc1",
                     CASSANDRA_HOSTS="127.0.0.1,127.0.0.2")
    assert isinstance(store, Store) and store.kind == "cassandra"
    assert store.keyspace == "kit_test" and store.hosts == ("127.0.0.1", "127.0.0.2")
    assert PASSWORD not in repr(store)
    cluster = store._new_cluster(connect_timeout_s=2.0)
    try:
        from cassandra import ConsistencyLevel
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

        assert cluster.port == closed_port
        assert cluster.contact_points == ["127.0.0.1", "127.0.0.2"]
        assert isinstance(cluster.auth_provider, PlainTextAuthProvider)
        assert cluster.auth_provider.username == "kit"
        profile = cluster.profile_manager.default
        assert isinstance(profile.load_balancing_policy, TokenAwarePolicy)
        child = profile.load_balancing_policy._child_policy
        assert isinstance(child, DCAwareRoundRobinPolicy) and child.local_dc == "dc1"
        assert profile.consistency_level == ConsistencyLevel.LOCAL_QUORUM
    finally:
        cluster.shutdown()


def test_without_credentials_no_auth_provider_is_sent() -> None:
    store = CassandraStore(["127.0.0.1"])
    cluster = store._new_cluster(connect_timeout_s=2.0)
    try:
        assert cluster.auth_provider is None
    finally:
        cluster.shutdown()


def test_from_settings_needs_hosts() -> None:
    with pytest.raises(StoreError, match="CASSANDRA_HOSTS"):
        CassandraStore.from_settings(load(environ={}))


# -- time, days, ordering ------------------------------------------------------------------


def test_day_buckets_are_utc_days() -> None:
    assert day_of(dt.datetime(2026, 11, 22, 23, 59, 59, tzinfo=dt.UTC)) == dt.date(2026, 11, 22)
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert day_of(dt.datetime(2026, 11, 23, 1, 0, tzinfo=plus2)) == dt.date(2026, 11, 22)
    minus2 = dt.timezone(dt.timedelta(hours=-2))
    assert day_of(dt.datetime(2026, 11, 22, 23, 0, tzinfo=minus2)) == dt.date(2026, 11, 23)
    assert day_of(dt.datetime(1850, 1, 1, tzinfo=dt.UTC)) == dt.date(1850, 1, 1)  # census
    with pytest.raises(StoreError, match="naive"):
        day_of(dt.datetime(2026, 1, 1))  # noqa: DTZ001


def test_times_are_milliseconds_utc_both_ways() -> None:
    census = dt.datetime(1850, 1, 1, tzinfo=dt.UTC)
    assert to_millis(census) == -3_786_825_600_000
    assert to_millis(T0 + dt.timedelta(microseconds=1999)) == to_millis(T0) + 1  # floor
    assert to_millis(dt.datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=dt.UTC)) == -1
    # range bounds round up: ms >= ceil_millis(t) exactly when ms >= t
    assert ceil_millis(T0) == to_millis(T0)
    assert ceil_millis(T0 + dt.timedelta(microseconds=1)) == to_millis(T0) + 1
    # what the driver returns (naive UTC, float-built) comes back aware, in whole ms
    naive_utc = (T0 + dt.timedelta(microseconds=122_999)).replace(tzinfo=None)
    assert from_driver_time(naive_utc) == T0 + dt.timedelta(milliseconds=123)
    assert from_driver_time(census.replace(tzinfo=None)) == census
    assert from_driver_time(census.replace(tzinfo=None)).tzinfo is dt.UTC


def test_bound_values_serialise_as_the_driver_sends_them() -> None:
    """The driver's own codecs: ints bind to ``timestamp`` as ms, dates to ``date`` (no server)."""
    from cassandra.cqltypes import DateType, SimpleDateType
    from cassandra.util import Date

    for when in (T0, dt.datetime(1850, 1, 1, tzinfo=dt.UTC)):
        encoded = DateType.serialize(to_millis(when), 4)
        assert encoded == DateType.serialize(when, 4)  # the same bytes as the datetime itself
        assert from_driver_time(DateType.deserialize(encoded, 4)) == when
    for day in (dt.date(2026, 11, 22), dt.date(1850, 1, 1)):
        decoded = SimpleDateType.deserialize(SimpleDateType.serialize(day, 4), 4)
        assert isinstance(decoded, Date) and from_driver_date(decoded) == day


def test_ttls_round_up_to_whole_seconds() -> None:
    assert ttl_seconds(None) == 0
    assert ttl_seconds(dt.timedelta(hours=24)) == 86_400
    assert ttl_seconds(dt.timedelta(milliseconds=1500)) == 2


def test_index_days_are_read_once_each_newest_first() -> None:
    from cassandra.util import Date

    days = [Date(dt.date(2026, 11, 22)), Date(dt.date(2026, 11, 22)), Date(dt.date(2026, 11, 21)),
            Date(dt.date(1850, 1, 1)), dt.date(2000, 1, 1)]
    assert distinct_days(days) == [dt.date(2026, 11, 22), dt.date(2026, 11, 21),
                                   dt.date(2000, 1, 1), dt.date(1850, 1, 1)]


def test_rows_of_several_days_merge_newest_first_then_by_key() -> None:
    day1 = [row("b", T0), row("a", T0), row("a", T0 - 10 * SECOND)]
    day2 = [row("z", T0 + dt.timedelta(days=1)), row("c", T0 + dt.timedelta(days=1))]
    merged = newest_first([*day1, *day2])
    assert [(r.key, r.window_start) for r in merged] == [
        ("c", T0 + dt.timedelta(days=1)), ("z", T0 + dt.timedelta(days=1)),
        ("a", T0), ("b", T0), ("a", T0 - 10 * SECOND)]
    assert [r.key for r in newest_first([*day1, *day2], limit=3)] == ["c", "z", "a"]
    assert newest_first(day1, limit=0) == []


def test_backoff_doubles_up_to_a_cap() -> None:
    delays = backoff_delays(first_s=0.2, factor=2.0, cap_s=1.0)
    assert [next(delays) for _ in range(6)] == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


# -- a real failed connection --------------------------------------------------------------


def test_nothing_connects_before_it_is_needed(closed_port: int) -> None:
    store = store_at(closed_port, timeout_s=30)
    started = time.monotonic()
    naive = ResultRow("s", "a", dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, 0, 0, 10))  # noqa: DTZ001
    with pytest.raises(StoreError, match="naive"):
        store.upsert([naive])
    store.upsert([])
    assert store.latest("s", 0) == []
    assert store.range("s", T0, T0) == []
    assert store.purge_expired() == 0  # Cassandra expires rows by itself
    assert time.monotonic() - started < 1
    assert store._session is None
    store.close()


def all_log_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter()
    return "\n".join(formatter.format(r) for r in records)


def test_an_unreachable_server_fails_within_the_deadline_naming_host_and_port(
        closed_port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the driver's debug lines too: none may hold the password
    store = store_at(closed_port, timeout_s=1.5)
    started = time.monotonic()
    with pytest.raises(StoreError) as failure:
        store.setup()
    elapsed = time.monotonic() - started
    store.close()
    message = str(failure.value)
    assert 1.5 <= elapsed < 1.5 + 5, elapsed  # retried until the deadline, then gave up
    assert "127.0.0.1" in message and str(closed_port) in message
    assert "CASSANDRA_HOSTS" in message and "CASSANDRA_CONNECT_TIMEOUT_S" in message
    assert "Connection refused" in message
    # the password is nowhere: not in the error, its causes, the store, or any log record
    cause: BaseException | None = failure.value
    while cause is not None:
        assert PASSWORD not in str(cause) and PASSWORD not in repr(cause)
        cause = cause.__cause__ or cause.__context__
    assert caplog.records, "the driver and the store should have logged the attempts"
    assert PASSWORD not in all_log_text(caplog.records)
    retries = [r for r in caplog.records if r.name == "storage.cassandra" and "retrying" in r.message]
    assert len(retries) >= 2


def test_retries_back_off_until_the_deadline(closed_port: int,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """Real refused connections; only time is simulated (a 3 s deadline on a fake clock)."""
    caplog.set_level(logging.DEBUG)
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    store = CassandraStore(["127.0.0.1"], closed_port, username="kit", password=PASSWORD,
                           connect_timeout_s=3.0, sleep=sleep, monotonic=lambda: now[0])
    with pytest.raises(StoreError, match="5 attempts"):
        store.setup()
    store.close()
    assert sleeps == pytest.approx([0.2, 0.4, 0.8, 1.6])
    # one line per failed attempt from the store; the driver's per-attempt tracebacks are dropped
    noisy = [r for r in caplog.records if r.getMessage().startswith(
        ("Control connection failed to connect", "[control connection] Error connecting"))]
    assert noisy == []
    assert not logging.getLogger("cassandra.cluster").filters  # the filter is gone afterwards
    assert PASSWORD not in all_log_text(caplog.records)


def test_an_index_entry_is_rewritten_at_most_every_ten_minutes() -> None:
    from storage.cassandra import INDEX_REFRESH_S

    assert INDEX_REFRESH_S < INDEX_TTL_MARGIN_S  # an entry outlives rows written since its write
    now = [1000.0]
    store = CassandraStore(["127.0.0.1"], monotonic=lambda: now[0])
    today = ("s", dt.date(2026, 11, 22), 86_400, 90_000)
    other = ("s", dt.date(2026, 11, 22), 0, 0)  # the same day, written without a ttl
    assert store._index_due([today]) == [today]
    store._index_written([today])
    now[0] += INDEX_REFRESH_S - 1
    assert store._index_due([today, other]) == [other]
    now[0] += 1
    assert store._index_due([today]) == [today]
    store.close()  # forgets what it wrote (a dropped keyspace needs its index again)
    assert store._index_due([today]) == [today]


# -- retention past 2038 -------------------------------------------------------------------


def test_check_ttl_refuses_an_expiry_past_2038_naming_retention_hours() -> None:
    from storage.cassandra import CLOCK_SKEW_S, MAX_EXPIRY, MAX_EXPIRY_S, check_ttl

    assert dt.datetime(2038, 1, 19, 3, 14, 6, tzinfo=dt.UTC) == MAX_EXPIRY
    assert check_ttl(None, T0) == 0
    assert check_ttl(dt.timedelta(hours=24), T0) == 86_400
    longest = MAX_EXPIRY_S - to_millis(T0) // 1000 - INDEX_TTL_MARGIN_S - CLOCK_SKEW_S
    assert check_ttl(dt.timedelta(seconds=longest), T0) == longest
    with pytest.raises(StoreError) as refused:
        check_ttl(dt.timedelta(seconds=longest + 1), T0)
    message = str(refused.value)
    assert "RETENTION_HOURS=" in message and "2038-01-19T03:14:06Z" in message
    assert f"at most {longest // 3600}" in message
    with pytest.raises(StoreError, match="RETENTION_HOURS"):
        plan_upsert([row("a", T0)], dt.timedelta(seconds=longest + 1), T0)
    # the same retention is fine when written earlier (the limit is a date, not a length)
    assert check_ttl(dt.timedelta(seconds=longest + 1), T0 - dt.timedelta(days=1))
    with pytest.raises(StoreError, match="RETENTION_HOURS"):
        check_ttl(dt.timedelta(hours=-1), T0)
    with pytest.raises(StoreError, match="naive"):
        check_ttl(dt.timedelta(hours=1), dt.datetime(2026, 1, 1))  # noqa: DTZ001


# -- one batch per partition ---------------------------------------------------------------


def test_rows_are_batched_per_partition_in_order() -> None:
    from storage.cassandra import partition_batches

    d1, d2 = dt.date(2026, 11, 22), dt.date(2026, 11, 23)
    params = [("s", d1, 1, "a"), ("s", d2, 2, "a"), ("s", d1, 3, "b"), ("t", d1, 4, "a")]
    assert partition_batches(params, 2) == [
        (("s", d1), [("s", d1, 1, "a"), ("s", d1, 3, "b")]),
        (("s", d2), [("s", d2, 2, "a")]),
        (("t", d1), [("t", d1, 4, "a")]),
    ]
    assert [key for key, _ in partition_batches(params, 3)] == [
        ("s", d1, 1), ("s", d2, 2), ("s", d1, 3), ("t", d1, 4)]


def test_an_oversize_partition_is_split_within_the_bounds() -> None:
    from storage.cassandra import bound_size, partition_batches

    rows = [("s", "k", i, "x" * 90) for i in range(10)]  # 1 + 1 + 8 + 90 = 100 bytes each
    assert bound_size(rows[0]) == 100
    split = partition_batches(rows, 2, max_bytes=350)
    assert [len(chunk) for _, chunk in split] == [3, 3, 3, 1]
    assert [r for _, chunk in split for r in chunk] == rows  # in order, none lost
    assert [len(chunk) for _, chunk in partition_batches(rows, 2, max_rows=4)] == [4, 4, 2]
    assert [len(c) for _, c in partition_batches(rows, 2, max_bytes=10)] == [1] * 10  # a row alone
    assert len(partition_batches(rows, 2)) == 1


# -- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A self-signed certificate (PEM) made by openssl, as a CA file."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=streamkit-test-ca", "-keyout", str(folder / "key.pem"),
                    "-out", str(folder / "ca.pem")], check=True, capture_output=True)
    return folder / "ca.pem"


def test_the_tls_context_verifies_the_server_with_tls_1_2_or_later(ca_pem: Any) -> None:
    import ssl

    from storage.cassandra import tls_context

    context = tls_context(ca_pem)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [dict(pair[0] for pair in c["subject"]) for c in context.get_ca_certs()] == [
        {"commonName": "streamkit-test-ca"}]
    system = tls_context(None)  # the system's CAs
    assert system.verify_mode == ssl.CERT_REQUIRED and system.check_hostname
    assert system.minimum_version == ssl.TLSVersion.TLSv1_2


def test_an_unusable_ca_file_names_the_setting(tmp_path: Any) -> None:
    from storage.cassandra import tls_context

    with pytest.raises(StoreError, match="CASSANDRA_TLS_CA_FILE=.*missing.pem"):
        tls_context(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(StoreError, match="CASSANDRA_TLS_CA_FILE"):
        tls_context(garbage)


def test_from_settings_passes_tls_to_the_driver(closed_port: int, ca_pem: Any) -> None:
    import ssl

    store = store_at(closed_port, CASSANDRA_TLS="true", CASSANDRA_TLS_CA_FILE=str(ca_pem))
    cluster = store._new_cluster(connect_timeout_s=2.0)
    try:
        assert isinstance(cluster.ssl_context, ssl.SSLContext)
        assert cluster.ssl_context is store.ssl_context
        assert len(cluster.ssl_context.get_ca_certs()) == 1
    finally:
        cluster.shutdown()
    assert "tls=True" in repr(store)
    plain = store_at(closed_port)
    assert plain.ssl_context is None


def test_a_password_sent_in_clear_beyond_loopback_is_warned_about(
        caplog: pytest.LogCaptureFixture, ca_pem: Any) -> None:
    caplog.set_level(logging.WARNING, logger="storage.cassandra")

    def warned(hosts: list[str], **options: Any) -> bool:
        caplog.clear()
        CassandraStore(hosts, **options)
        return any("unencrypted" in r.getMessage() for r in caplog.records)

    assert warned(["10.1.2.3"], username="kit", password=PASSWORD)
    assert warned(["127.0.0.1", "cassandra"], username="kit", password=PASSWORD)
    assert not warned(["127.0.0.1", "localhost", "::1"], username="kit", password=PASSWORD)
    assert not warned(["10.1.2.3"], username="kit", password=PASSWORD, tls=True,
                      tls_ca_file=ca_pem)
    assert not warned(["10.1.2.3"])  # no password, nothing to protect
    assert PASSWORD not in all_log_text(caplog.records)


# -- outage or broken request --------------------------------------------------------------


def test_driver_errors_are_told_apart_outage_or_not() -> None:
    import ssl

    from cassandra import (
        AuthenticationFailed,
        ConsistencyLevel,
        InvalidRequest,
        OperationTimedOut,
        ReadTimeout,
        Unauthorized,
        Unavailable,
        UnresolvableContactPoints,
        WriteTimeout,
        WriteType,
    )
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionShutdown

    from storage.cassandra import is_unavailable

    outages = [
        NoHostAvailable("down", {"127.0.0.1:9042": ConnectionRefusedError(111, "refused")}),
        OperationTimedOut("no answer"),
        ReadTimeout("slow", consistency=ConsistencyLevel.ONE, required_responses=1,
                    received_responses=0),
        WriteTimeout("slow", consistency=ConsistencyLevel.ONE, required_responses=1,
                     received_responses=0, write_type=WriteType.BATCH),
        Unavailable("replicas", consistency=ConsistencyLevel.LOCAL_QUORUM, required_replicas=2,
                    alive_replicas=1),
        ConnectionShutdown("closed"), ConnectionRefusedError(111, "refused"), TimeoutError(),
        UnresolvableContactPoints("cassandra"),
        OSError(8, "Last error: [SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation"),
    ]
    broken = [
        InvalidRequest("no such table"), Unauthorized("no CREATE right"),
        AuthenticationFailed("bad password"),
        NoHostAvailable("auth", {"h": AuthenticationFailed("bad password")}),
        NoHostAvailable("tls", {"h": ssl.SSLCertVerificationError(1, "certificate verify failed")}),
        # how the driver re-raises a failed handshake: the type is lost, the text stays
        NoHostAvailable("tls", {"h": PermissionError(1, "Tried connecting to [('10.0.0.1', 9042)]."
                                     " Last error: [SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                     "verify failed: self-signed certificate (_ssl.c:1006)")}),
        OSError(1, "Last error: [SSL: WRONG_VERSION_NUMBER] wrong version number"),
        ValueError("a bug"),
    ]
    assert [e for e in outages if not is_unavailable(e)] == []
    assert [e for e in broken if is_unavailable(e)] == []


def test_store_unavailable_is_a_retriable_store_error() -> None:
    from storage.base import StoreUnavailable

    assert issubclass(StoreUnavailable, StoreError)
    assert StoreUnavailable.retriable and not StoreError.retriable
    assert "StoreUnavailable" in repr(StoreUnavailable("down"))  # what Spark's error text shows


# -- one quick attempt ---------------------------------------------------------------------


class RecordingStore(CassandraStore):
    """The store, remembering every driver Cluster it made."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clusters: list[Any] = []

    def _new_cluster(self, connect_timeout_s: float, control_timeout_s: float = 10.0) -> Any:
        cluster = super()._new_cluster(connect_timeout_s, control_timeout_s)
        self.clusters.append(cluster)
        return cluster


def test_one_quick_attempt_fails_fast_as_unavailable(closed_port: int) -> None:
    from storage.base import StoreUnavailable

    sleeps: list[float] = []
    store = RecordingStore(["127.0.0.1"], closed_port, connect_timeout_s=60.0,
                           sleep=sleeps.append)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="1 attempt in") as failure:
        store.setup(create_schema=False, connect_timeout_s=0)
    assert time.monotonic() - started < 3
    assert sleeps == [] and len(store.clusters) == 1
    assert "CASSANDRA_CONNECT_TIMEOUT_S" in str(failure.value)
    assert all(c.is_shutdown for c in store.clusters) and store._cluster is None


def test_a_server_that_never_answers_fails_one_attempt_within_seconds() -> None:
    """A port that accepts TCP connections (the kernel's backlog) but never speaks CQL."""
    from storage.base import StoreUnavailable

    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        store = RecordingStore(["127.0.0.1"], silent.getsockname()[1], sleep=lambda _: None)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.setup(connect_timeout_s=0)
        assert time.monotonic() - started < 8
        assert all(c.is_shutdown for c in store.clusters) and store._cluster is None
    finally:
        silent.close()


def test_every_failed_attempt_shuts_its_cluster_down(closed_port: int) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    store = RecordingStore(["127.0.0.1"], closed_port, connect_timeout_s=1.0, sleep=sleep,
                           monotonic=lambda: now[0])
    with pytest.raises(StoreError):
        store.setup()
    assert len(store.clusters) >= 3
    assert all(c.is_shutdown for c in store.clusters)


def test_open_store_passes_its_options_and_closes_a_store_that_failed(
        closed_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from storage import open_store
    from storage.base import StoreUnavailable

    made: list[Any] = []
    original = CassandraStore._new_cluster

    def recording(self: CassandraStore, *args: Any, **kwargs: Any) -> Any:
        cluster = original(self, *args, **kwargs)
        made.append(cluster)
        return cluster

    monkeypatch.setattr(CassandraStore, "_new_cluster", recording)
    settings = load(environ={"CASSANDRA_HOSTS": "127.0.0.1", "CASSANDRA_PORT": str(closed_port),
                             "CASSANDRA_CONNECT_TIMEOUT_S": "60"})
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        open_store("cassandra", settings, create_schema=False, connect_timeout_s=0)
    assert time.monotonic() - started < 3  # one attempt, not the setting's 60 s
    assert len(made) == 1 and made[0].is_shutdown
