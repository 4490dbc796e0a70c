"""The Cassandra store without a server (:mod:`storage.cassandra`): what it does before
it connects, its index memo, its warnings, and how :func:`storage.open_store` builds it.

Its parts have their own tests: ``test_cassandra_schema.py``, ``test_cassandra_rows.py``,
``test_cassandra_connect.py``. Against a real node: the contract (``test_contract.py``),
the store's own behaviour (``test_cassandra_server.py``) and TLS (``test_cassandra_tls.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import pytest

from common.settings import load
from storage.base import ResultRow, StoreError
from storage.cassandra import CassandraStore
from storage.cassandra_connect import Connector
from storage.cassandra_rows import INDEX_TTL_MARGIN_S
from tests.storage.support import PASSWORD, all_log_text, store_at

T0 = dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.UTC)


def test_from_settings_needs_hosts() -> None:
    with pytest.raises(StoreError, match="CASSANDRA_HOSTS"):
        CassandraStore.from_settings(load(environ={}))


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


def test_store_unavailable_is_a_retriable_store_error() -> None:
    from storage.base import StoreUnavailable

    assert issubclass(StoreUnavailable, StoreError)
    assert StoreUnavailable.retriable and not StoreError.retriable
    assert "StoreUnavailable" in repr(StoreUnavailable("down"))  # what Spark's error text shows


def test_open_store_passes_its_options_and_closes_a_store_that_failed(
        closed_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from storage import open_store
    from storage.base import StoreUnavailable

    made: list[Any] = []
    original = Connector.new_cluster

    def recording(self: Connector, *args: Any, **kwargs: Any) -> Any:
        cluster = original(self, *args, **kwargs)
        made.append(cluster)
        return cluster

    monkeypatch.setattr(Connector, "new_cluster", recording)
    settings = load(environ={"CASSANDRA_HOSTS": "127.0.0.1", "CASSANDRA_PORT": str(closed_port),
                             "CASSANDRA_CONNECT_TIMEOUT_S": "60"})
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        open_store("cassandra", settings, create_schema=False, connect_timeout_s=0)
    assert time.monotonic() - started < 3  # one attempt, not the setting's 60 s
    assert len(made) == 1 and made[0].is_shutdown
