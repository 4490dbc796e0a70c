"""The Cassandra store's schema without a server: its CQL text, checked by cqlsh's own grammar,
and the settings checks (:mod:`storage.cassandra_schema`). Against a real node: the DDL
(``test_cassandra_server.py``).
"""

from __future__ import annotations

import re

import pytest

from common.settings import load
from storage.base import StoreError
from storage.cassandra_schema import (
    Statements,
    check_keyspace,
    check_replication,
    option_differences,
)

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
