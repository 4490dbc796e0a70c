"""Helpers the Cassandra store's test files share: a store on a given port with credentials,
one that remembers every driver Cluster it made, and the text of captured log records."""

from __future__ import annotations

import logging
from typing import Any

from common.settings import load
from storage.cassandra import CassandraStore

PASSWORD = "pw-7f3a9c-never-logged"


def store_at(port: int, timeout_s: float = 1.0, **kwargs: Any) -> CassandraStore:
    settings = load(environ={
        "CASSANDRA_HOSTS": "127.0.0.1", "CASSANDRA_PORT": str(port),
        "CASSANDRA_USERNAME": "kit", "CASSANDRA_PASSWORD": PASSWORD,
        "CASSANDRA_CONNECT_TIMEOUT_S": str(timeout_s), **kwargs,
    })
    return CassandraStore.from_settings(settings)


def all_log_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter()
    return "\n".join(formatter.format(r) for r in records)


class RecordingStore(CassandraStore):
    """The store, remembering every driver Cluster it made."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clusters: list[Any] = []

        make = self.connector.new_cluster

        def recording(connect_timeout_s: float, control_timeout_s: float = 10.0) -> Any:
            cluster = make(connect_timeout_s, control_timeout_s)
            self.clusters.append(cluster)
            return cluster

        self.connector.new_cluster = recording  # type: ignore[method-assign]
