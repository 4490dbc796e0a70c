"""The Cassandra store against the session's real node: batches, retention limits, schema.

What the contract (test_contract.py) cannot say because it holds for one store only: how
writes are batched, what the server refuses, how the schema is created, checked and
altered by several openers at once, and which failures count as an outage. The node is
tests/conftest.py ``cassandra``; every test uses a keyspace of its own, dropped after it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from storage.base import ResultRow, StoreError, StoreUnavailable
from storage.cassandra import CassandraStore
from storage.cassandra_rows import CLOCK_SKEW_S, INDEX_TTL_MARGIN_S, MAX_EXPIRY_S
from storage.cassandra_schema import Statements
from tests.storage.support import RecordingStore

T0 = dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)


@pytest.fixture(scope="module")
def cql(cassandra: Any) -> Iterator[Any]:
    """A plain driver session on the node, for what the tests check behind the store's back."""
    from cassandra.cluster import Cluster

    cluster = Cluster(cassandra.hosts.split(","), port=cassandra.port, protocol_version=5)
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


@pytest.fixture
def keyspace(cql: Any) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    cql.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=60)


@pytest.fixture
def make_store(cassandra: Any) -> Iterator[Callable[..., RecordingStore]]:
    """Stores on the session's node (closed afterwards): ``make_store(keyspace, **options)``."""
    made: list[RecordingStore] = []

    def make(keyspace: str, **options: Any) -> RecordingStore:
        options.setdefault("connect_timeout_s", 30.0)
        store = RecordingStore(cassandra.hosts.split(","), cassandra.port, keyspace=keyspace,
                               **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def tables_of(cql: Any, keyspace: str) -> dict[str, Any]:
    rows = cql.execute("SELECT table_name, id, compaction, gc_grace_seconds, default_time_to_live"
                       " FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,))
    return {row.table_name: row for row in rows}


def census(n: int) -> list[ResultRow]:
    """``n`` census-like rows of one window (one partition), each with a 200-byte payload."""
    start = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
    return [ResultRow("census", f"{i:04d}|{i % 2 + 1}", start, end,
                      {"people": i, "label": "x" * 180}) for i in range(n)]


# -- batches -------------------------------------------------------------------------------


def test_a_census_sized_partition_is_one_batch_the_thresholds_do_not_refuse(
        keyspace: str, make_store: Callable[..., RecordingStore], cql: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    """~570 rows of ~230 bytes in one partition: one batch of over 100 KiB, twice the default
    batch_size_fail_threshold (50 KiB), which single-partition batches are exempt from."""
    caplog.set_level(logging.DEBUG, logger="storage.cassandra")
    store = make_store(keyspace)
    store.setup()
    rows = census(570)
    store.upsert(rows)
    assert len(store.latest("census", 10_000)) == 570
    assert [r.values["people"] for r in store.latest("census", 10, key="0007|2")] == [7]
    upserted = [r.getMessage() for r in caplog.records if r.getMessage().startswith("upserted")]
    assert upserted and "in 571 batches" in upserted[-1]  # 1 for results, 1 per key
    assert not [r for r in caplog.records if "warns" in r.getMessage() or "several" in r.getMessage()]
    # The same rows as one batch over two partitions: refused by the fail threshold.
    from cassandra import InvalidRequest
    from cassandra.query import BatchStatement, BatchType

    insert = cql.prepare(Statements(keyspace).insert)
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for i, row in enumerate(rows):
        batch.add(insert, ("census", dt.date(2000, 1, 1 + i % 2), 0, row.key, 0,
                           json.dumps(dict(row.values)), 0, 0))
    with pytest.raises(InvalidRequest, match="[Bb]atch too large"):
        cql.execute(batch)


def test_an_oversize_partition_is_split_and_said_once(
        keyspace: str, make_store: Callable[..., RecordingStore],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="storage.cassandra")
    store = make_store(keyspace, batch_max_bytes=4_000)  # ~16 census rows a batch
    store.setup()
    store.upsert(census(100))
    store.upsert(census(100))  # again: no second warning
    said = [r.getMessage() for r in caplog.records if "several" in r.getMessage()]
    assert len(said) == 1 and "'census'" in said[0] and "4000 bytes" in said[0]
    assert len(store.latest("census", 10_000)) == 100


# -- retention past 2038 -------------------------------------------------------------------


def test_the_server_refuses_an_expiry_past_2038_and_check_ttl_refuses_it_first(
        keyspace: str, make_store: Callable[..., RecordingStore], cql: Any) -> None:
    from cassandra import InvalidRequest

    store = make_store(keyspace)
    store.setup()
    insert = cql.prepare(Statements(keyspace).insert)
    values = ("raw", dt.date(2026, 11, 22), 0, "k", 0, "{}", 0)
    left = MAX_EXPIRY_S - int(time.time())  # seconds until 2038-01-19T03:14:06Z
    cql.execute(insert, (*values, left - 30))  # expires just before: accepted
    with pytest.raises(InvalidRequest, match="maximum supported expiration date of "
                                             "2038-01-19T03:14:06"):
        cql.execute(insert, (*values, left + 30))  # just after: refused (policy REJECT)
    # The store refuses before sending: its limit leaves room for the index and the clocks.
    now = dt.datetime.now(dt.UTC)
    store.clock = lambda: now
    longest = MAX_EXPIRY_S - int(now.timestamp()) - INDEX_TTL_MARGIN_S - CLOCK_SKEW_S
    store.upsert([ResultRow("s", "ok", T0, T0 + SECOND)], ttl=dt.timedelta(seconds=longest))
    with pytest.raises(StoreError, match="RETENTION_HOURS=.*2038-01-19T03:14:06Z"):
        store.upsert([ResultRow("s", "late", T0, T0 + SECOND)],
                     ttl=dt.timedelta(seconds=longest + 1))
    assert [r.key for r in store.latest("s", 10)] == ["ok"]


# -- schema --------------------------------------------------------------------------------


def test_several_openers_at_once_create_the_schema_once(
        keyspace: str, make_store: Callable[..., RecordingStore], cql: Any) -> None:
    """Jobs' first batches and the stack open the store at the same moment."""
    stores = [make_store(keyspace) for _ in range(6)]
    start = threading.Barrier(len(stores))
    failures: list[BaseException] = []

    def open_one(store: CassandraStore) -> None:
        try:
            start.wait(30)
            store.setup()
        except BaseException as e:  # noqa: BLE001 - surfaced below
            failures.append(e)

    threads = [threading.Thread(target=open_one, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    tables = tables_of(cql, keyspace)
    assert sorted(tables) == ["result_days", "results", "results_by_key"]
    for i, store in enumerate(stores):  # every opener reads what any other wrote
        store.upsert([ResultRow("s", f"k{i}", T0, T0 + SECOND, {"i": i})])
    assert len(stores[0].latest("s", 100)) == len(stores)


def test_a_reader_creates_nothing_and_waits_for_the_schema(
        keyspace: str, make_store: Callable[..., RecordingStore], cql: Any) -> None:
    reader = make_store(keyspace)
    with pytest.raises(StoreUnavailable, match=f"not created yet.*keyspace {keyspace}"):
        reader.setup(create_schema=False)
    assert list(cql.execute("SELECT keyspace_name FROM system_schema.keyspaces"
                            " WHERE keyspace_name = %s", (keyspace,))) == []
    assert reader._cluster is None and all(c.is_shutdown for c in reader.clusters)
    # the keyspace alone is not enough either
    cql.execute(Statements(keyspace).create_keyspace, timeout=60)
    with pytest.raises(StoreUnavailable, match="results, results_by_key, result_days"):
        reader.setup(create_schema=False)
    assert tables_of(cql, keyspace) == {}
    writer = make_store(keyspace)
    writer.setup()
    writer.upsert([ResultRow("s", "a", T0, T0 + SECOND, {"n": 1})])
    reader.setup(create_schema=False)
    assert sorted(reader._prepared) == sorted(Statements.READS)  # only SELECTs prepared
    assert [r.values for r in reader.latest("s", 5)] == [{"n": 1}]
    assert all(c.is_shutdown for c in reader.clusters[:-1])  # the failed opens' clusters


def test_tables_get_time_window_compaction_and_a_short_grace(
        keyspace: str, make_store: Callable[..., RecordingStore], cql: Any) -> None:
    make_store(keyspace).setup()
    tables = tables_of(cql, keyspace)
    for name in ("results", "results_by_key"):
        compaction = dict(tables[name].compaction)
        assert compaction["class"].endswith(".TimeWindowCompactionStrategy")
        assert (compaction["compaction_window_unit"], compaction["compaction_window_size"]) == (
            "DAYS", "1")
        assert compaction["unchecked_tombstone_compaction"] == "true"
    assert {n: (t.gc_grace_seconds, t.default_time_to_live) for n, t in tables.items()} == {
        n: (10_800, 0) for n in ("results", "results_by_key", "result_days")}


OLD_TABLES = {  # as the store created them before it set any option
    "results": "CREATE TABLE {ks}.results (stream text, day date, window_start timestamp,"
               " key text, window_end timestamp, payload text, updated_at timestamp,"
               " PRIMARY KEY ((stream, day), window_start, key))"
               " WITH CLUSTERING ORDER BY (window_start DESC, key ASC)"
               " AND default_time_to_live = 86400",
    "results_by_key": "CREATE TABLE {ks}.results_by_key (stream text, key text, day date,"
                      " window_start timestamp, window_end timestamp, payload text,"
                      " updated_at timestamp, PRIMARY KEY ((stream, key, day), window_start))"
                      " WITH CLUSTERING ORDER BY (window_start DESC)",
    "result_days": "CREATE TABLE {ks}.result_days (stream text, day date, ttl_s int,"
                   " PRIMARY KEY (stream, day, ttl_s)) WITH CLUSTERING ORDER BY (day DESC, ttl_s ASC)",
}


def test_tables_of_an_earlier_version_are_altered(
        keyspace: str, make_store: Callable[..., RecordingStore], cql: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="storage.cassandra_schema")
    cql.execute(Statements(keyspace).create_keyspace, timeout=60)
    for ddl in OLD_TABLES.values():
        cql.execute(ddl.format(ks=keyspace), timeout=60)
    before = tables_of(cql, keyspace)
    assert before["results"].gc_grace_seconds == 864_000  # Cassandra's default, 10 days
    make_store(keyspace).setup()
    after = tables_of(cql, keyspace)
    assert {n: t.id for n, t in after.items()} == {n: t.id for n, t in before.items()}  # kept
    for name in ("results", "results_by_key"):
        assert dict(after[name].compaction)["class"].endswith(".TimeWindowCompactionStrategy")
    assert {t.gc_grace_seconds for t in after.values()} == {10_800}
    assert after["results"].default_time_to_live == 86_400  # an operator's default: left alone
    altered = [r.getMessage() for r in caplog.records if r.getMessage().startswith("altered")]
    assert len(altered) == 3
    caplog.clear()
    make_store(keyspace).setup()  # nothing left to alter
    assert not [r for r in caplog.records if r.getMessage().startswith(("altered", "created"))]


def test_kept_rows_outlive_a_table_default_ttl(
        keyspace: str, make_store: Callable[..., RecordingStore], cql: Any) -> None:
    """Kept rows are written USING TTL 0, which overrides a default an operator may set."""
    store = make_store(keyspace)
    store.setup()
    for table in ("results", "results_by_key"):
        cql.execute(f"ALTER TABLE {keyspace}.{table} WITH default_time_to_live = 3600", timeout=60)
    year = dt.datetime(1850, 1, 1, tzinfo=dt.UTC)
    store.upsert([ResultRow("census", "1850|1", year, year + dt.timedelta(days=365), {"n": 1})])
    store.upsert([ResultRow("s", "a", T0, T0 + SECOND)], ttl=dt.timedelta(hours=2))
    # a row written without USING TTL (as this store wrote kept rows before) gets the default
    cql.execute(f"INSERT INTO {keyspace}.results (stream, day, window_start, key, window_end,"
                " payload, updated_at) VALUES ('census', '1850-01-01', '1850-01-01', 'sentinel',"
                " '1851-01-01', '{}', '2026-11-22')")

    def ttls(table: str, stream: str) -> dict[str, int | None]:
        rows = cql.execute(f"SELECT key, TTL(payload) AS ttl FROM {keyspace}.{table}"
                           " WHERE stream = %s AND day = %s ALLOW FILTERING",
                           (stream, year.date() if stream == "census" else T0.date()))
        return {row.key: row.ttl for row in rows}

    census_ttls = ttls("results", "census")
    assert census_ttls["1850|1"] is None  # never expires
    assert 3000 < (census_ttls["sentinel"] or 0) <= 3600  # the table's default
    assert ttls("results_by_key", "census") == {"1850|1": None}
    assert 7000 < (ttls("results", "s")["a"] or 0) <= 7200  # retention: its own TTL


# -- failures ------------------------------------------------------------------------------


def test_too_few_replicas_is_an_outage_and_a_bad_request_is_not(
        keyspace: str, make_store: Callable[..., RecordingStore]) -> None:
    """Replication factor 3 on one node: LOCAL_QUORUM (2) cannot be met (Unavailable)."""
    store = make_store(keyspace,
                       replication="{'class': 'SimpleStrategy', 'replication_factor': 3}")
    store.setup()
    with pytest.raises(StoreUnavailable, match="Unavailable") as failure:
        store.upsert([ResultRow("s", "a", T0, T0 + SECOND)])
    assert failure.value.retriable
    with pytest.raises(StoreUnavailable, match="Unavailable"):
        store.latest("s", 10)
    naive = ResultRow("s", "a", dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, 0, 0, 10))  # noqa: DTZ001
    with pytest.raises(StoreError, match="naive") as broken:
        store.upsert([naive])
    assert not isinstance(broken.value, StoreUnavailable) and not broken.value.retriable
