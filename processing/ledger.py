"""The ledger: how many input records the rows written so far account for, per store and stream.

Its totals travel in every results message (``stored_records``), so the health view can
compare records in with records stored (``common.catalogue.Accounting``).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence

from storage.base import ResultRow

__all__ = ["Ledger"]


class Ledger:
    """How many input records the rows written so far account for, per store and stream.

    For a stream with :class:`common.catalogue.Accounting`, each window's latest
    written value (e.g. its ``count``) is kept; their sum is the number of records
    aggregated into the store since this application started. A replayed batch
    overwrites the same windows, so it never adds. Shared by a job's writers, it
    survives a query's restart within the application.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], dict[tuple[str, dt.datetime], int]] = {}

    def record(self, store: str, rows: Sequence[ResultRow]) -> None:
        from common import catalogue

        with self._lock:
            for r in rows:
                accounting = catalogue.STREAMS[r.stream].accounting \
                    if r.stream in catalogue.STREAMS else None
                if accounting is None:
                    continue
                self._rows.setdefault((store, r.stream), {})[(r.key, r.window_start)] = \
                    accounting.counts(dict(r.values))

    def total(self, store: str, stream: str) -> int | None:
        """Records accounted for in ``stream``'s rows in ``store``; None if not accounted."""
        with self._lock:
            rows = self._rows.get((store, stream))
            return sum(rows.values()) if rows is not None else None
