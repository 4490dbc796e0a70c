"""Result stores behind one contract (storage.base.Store): SQLite on disk, or Cassandra.

``open_store(kind, settings)`` returns a set-up store; jobs choose the kind with
``--sink`` (or the demo catalogue), the display server opens whichever its
demos use, with ``create_schema=False`` (it needs no schema rights) and short
connection attempts (``connect_timeout_s``). Failures are ``storage.base.StoreError``;
``storage.base.StoreUnavailable`` (a subclass) marks an outage worth retrying later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common.settings import Settings
    from storage.base import Store


def open_store(kind: str, settings: Settings, *, create_schema: bool = True,
               connect_timeout_s: float | None = None) -> Store:
    """A store of ``kind`` ("disk" or "cassandra"), set up (:meth:`storage.base.Store.setup`).

    Jobs open with ``create_schema=True`` (the default); a reader that may lack schema
    rights (the display server) with ``create_schema=False``. ``connect_timeout_s``
    bounds the connection's retries (None: CASSANDRA_CONNECT_TIMEOUT_S; 0: one attempt).
    A store whose setup fails is closed before the error propagates.

    Raises:
        StoreUnavailable: the server is out of reach, or its schema is not created yet.
        StoreError: anything else.
    """
    store: Store
    if kind == "disk":
        from storage.disk import DiskStore

        store = DiskStore(settings.sqlite_path)
    elif kind == "cassandra":
        from storage.cassandra import CassandraStore

        store = CassandraStore.from_settings(settings)
    else:
        raise ValueError(f"unknown store {kind!r}: disk or cassandra")
    try:
        store.setup(create_schema=create_schema, connect_timeout_s=connect_timeout_s)
    except BaseException:
        store.close()
        raise
    return store
