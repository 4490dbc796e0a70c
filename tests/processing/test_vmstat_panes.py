"""The sliding host-metric windows built from the tumbling ones (pure: no Spark, no Kafka)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from common import settings
from processing.panes import PanedSliding, sliding_starts
from processing.vmstat_windows import (
    METRICS,
    SLIDING,
    TUMBLING,
    TumblingAndSliding,
    merge_panes,
)
from storage.base import ResultRow

T0 = dt.datetime(2026, 11, 22, 5, 0, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
CFG = settings.load(environ={})  # 10 s tumbling, 60 s sliding every 10 s


def at(seconds: float) -> dt.datetime:
    return T0 + seconds * SECOND


def stats(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """What Spark's aggregates give for these samples (the reference)."""
    out: dict[str, Any] = {"count": len(samples)}
    for m in METRICS:
        seen = [s[m] for s in samples if s.get(m) is not None]
        out[f"{m}_avg"] = sum(seen) / len(seen) if seen else None
        out[f"{m}_min"] = min(seen, default=None)
        out[f"{m}_max"] = max(seen, default=None)
        out[f"{m}_n"] = len(seen)
    return out


def windows(samples: list[dict[str, Any]], length: int, slide: int) -> dict[tuple[str, dt.datetime], dict[str, Any]]:
    """(host, start) -> stats of every window of ``length`` s every ``slide`` s with a sample."""
    grouped: dict[tuple[str, dt.datetime], list[dict[str, Any]]] = {}
    for s in samples:
        offset = (s["time"] - T0).total_seconds()
        last = offset - offset % slide
        start = last
        while start > offset - length:
            grouped.setdefault((s["host"], at(start)), []).append(s)
            start -= slide
    return {k: stats(v) for k, v in grouped.items()}


def as_rows(stream: str, found: dict[tuple[str, dt.datetime], dict[str, Any]], length: int) -> list[ResultRow]:
    return [ResultRow(stream, host, start, start + length * SECOND, values)
            for (host, start), values in sorted(found.items())]


def collected(rows: list[ResultRow]) -> list[dict[str, Any]]:
    """Tumbling rows as the query's batch collects them."""
    return [{"host": r.key, "window_start_us": int(r.window_start.timestamp() * 1e6),
             "window_end_us": int(r.window_end.timestamp() * 1e6), **r.values} for r in rows]


def close(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (a[k] is not None and b[k] is not None and a[k] == pytest.approx(b[k]))
        for k in a)


def test_a_pane_lies_in_the_sliding_windows_that_start_up_to_a_minute_before_it() -> None:
    minute, ten = 60 * SECOND, 10 * SECOND
    assert sliding_starts(at(20), minute, ten) == [at(s) for s in (-30, -20, -10, 0, 10, 20)]
    assert sliding_starts(at(0), 30 * SECOND, 30 * SECOND) == [at(0)]


def test_panes_merge_by_samples_that_had_each_metric() -> None:
    a = stats([{"cpu_user": 10.0}, {"cpu_user": 10.0}])
    b = stats([{"cpu_user": 40.0}, {}, {}])  # two samples without the metric
    merged = merge_panes([a, b])
    assert merged["count"] == 5
    assert (merged["cpu_user_avg"], merged["cpu_user_min"], merged["cpu_user_max"],
            merged["cpu_user_n"]) == (20.0, 10.0, 40.0, 3)
    assert (merged["load_1m_avg"], merged["load_1m_min"], merged["load_1m_n"]) == (None, None, 0)


def test_sliding_windows_from_panes_equal_sliding_windows_from_the_samples() -> None:
    rng = random.Random(7)
    samples = [{"host": rng.choice("ab"), "time": at(rng.uniform(0, 95)),
                **{m: (rng.uniform(0, 100) if rng.random() > 0.2 else None) for m in METRICS}}
               for _ in range(400)]
    panes = as_rows(TUMBLING, windows(samples, 10, 10), 10)
    rows = TumblingAndSliding(CFG)(collected(panes))
    assert [r for r in rows if r.stream == TUMBLING] == panes
    built = {(r.key, r.window_start): r.values for r in rows if r.stream == SLIDING}
    expected = windows(samples, 60, 10)
    assert built.keys() == expected.keys()
    for key, values in expected.items():
        assert close(built[key], values), key


def test_a_batch_merges_its_panes_with_the_stored_ones_and_its_own_win() -> None:
    old = as_rows(TUMBLING, windows([{"host": "a", "time": at(s), "cpu_user": 10.0}
                                     for s in (1, 11, 21)], 10, 10), 10)
    stale = ResultRow(TUMBLING, "a", at(30), at(40), stats([{"cpu_user": 99.0}]))
    store = old + [stale]
    asked: list[tuple[str, dt.datetime, dt.datetime]] = []

    def stored(stream: str, start: dt.datetime, end: dt.datetime) -> list[ResultRow]:
        asked.append((stream, start, end))
        return [r for r in store if start <= r.window_start < end]

    fresh = as_rows(TUMBLING, windows([{"host": "a", "time": at(31), "cpu_user": 30.0},
                                       {"host": "a", "time": at(32), "cpu_user": 50.0}], 10, 10), 10)
    rows = TumblingAndSliding(CFG, stored)(collected(fresh))
    sliding = {r.window_start: r.values for r in rows if r.stream == SLIDING}
    # The pane at 30 s lies in the windows starting -20..30 s; the stale pane is replaced.
    assert sorted(sliding) == [at(s) for s in (-20, -10, 0, 10, 20, 30)]
    assert asked == [(TUMBLING, at(-30), at(90))]
    assert (sliding[at(0)]["count"], sliding[at(0)]["cpu_user_avg"]) == (5, 22.0)
    assert (sliding[at(20)]["count"], sliding[at(20)]["cpu_user_max"]) == (3, 50.0)
    assert (sliding[at(30)]["count"], sliding[at(30)]["cpu_user_min"]) == (2, 30.0)


def test_no_rows_no_reads() -> None:
    def stored(stream: str, start: dt.datetime, end: dt.datetime) -> list[ResultRow]:
        raise AssertionError("read the store for an empty batch")

    assert TumblingAndSliding(CFG, stored)([]) == []


def test_panes_must_divide_the_window_and_the_slide() -> None:
    with pytest.raises(ValueError, match="multiples of its panes"):
        PanedSliding(SLIDING, TUMBLING, merge_panes, 60 * SECOND, 15 * SECOND, 10 * SECOND)
