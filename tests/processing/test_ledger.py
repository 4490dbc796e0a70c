"""The ledger of stored records: each window counted once, however often it is rewritten."""

from __future__ import annotations

import datetime as dt

from processing.ledger import Ledger
from storage.base import ResultRow

T0 = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


def test_ledger_counts_each_window_once_however_often_it_is_rewritten() -> None:
    ledger = Ledger()

    def rows(counts: list[int]) -> list[ResultRow]:
        return [ResultRow("vmstat_tumbling", "h", T0 + dt.timedelta(seconds=10 * i), T0, {"count": c})
                for i, c in enumerate(counts)]

    ledger.record("disk", rows([3]))
    ledger.record("disk", rows([5, 1]))  # window 0 grew, window 1 opened
    ledger.record("disk", rows([5, 1]))  # a replayed batch
    assert ledger.total("disk", "vmstat_tumbling") == 6
    ledger.record("disk", [ResultRow("nginx_edges", "h|INTERNET|api", T0, T0,
                                     {"source": "INTERNET", "requests": 4}),
                           ResultRow("nginx_edges", "h|api|local", T0, T0,
                                     {"source": "api", "requests": 4})])
    assert ledger.total("disk", "nginx_edges") == 4  # each request once, on its entry edge
    assert ledger.total("disk", "vmstat_sliding") is None  # not accounted (windows overlap)
