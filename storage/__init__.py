"""Result stores behind one contract (storage.base.Store): SQLite on disk, or Cassandra.

``open_store(kind, settings)`` returns a set-up store; jobs choose the kind with
``--sink`` (or the demo catalogue), the display server opens whichever its
demos use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common.settings import Settings
    from storage.base import Store


def open_store(kind: str, settings: Settings) -> Store:
    """A store of ``kind`` ("disk" or "cassandra"), schema created. Raises StoreError."""
    store: Store
    if kind == "disk":
        from storage.disk import DiskStore

        store = DiskStore(settings.sqlite_path)
    elif kind == "cassandra":
        from storage.cassandra import CassandraStore

        store = CassandraStore.from_settings(settings)
    else:
        raise ValueError(f"unknown store {kind!r}: disk or cassandra")
    store.setup()
    return store
