"""The host-metrics job: the transform on small batch DataFrames, then the streaming job end to end."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from buffer import kafka, topics
from common import settings
from common.records import VmstatSample
from processing import reading
from processing.spark import KAFKA_SCHEMA
from processing.vmstat_windows import windowed_stats

pytestmark = pytest.mark.spark

T0 = dt.datetime(2026, 11, 22, 5, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def kafka_rows(spark: SparkSession, values: list[Any]) -> DataFrame:
    """A batch DataFrame shaped like Kafka records, one per value (bytes, or dicts as JSON)."""
    rows = []
    for i, v in enumerate(values):
        raw = v if isinstance(v, bytes) else json.dumps(v).encode()
        rows.append((None, raw, "vmstat", 0, i, T0, 0))
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def sample(seconds: float, host: str = "a", cpu: float = 10.0, **more: Any) -> dict[str, Any]:
    return VmstatSample(event_time=at(seconds), host=host, cpu_user=cpu, **more).to_json()


def test_tumbling_windows_per_host(spark: SparkSession) -> None:
    df = kafka_rows(spark, [
        sample(1, "a", cpu=10), sample(4, "a", cpu=30), sample(9.999, "a", cpu=20),
        sample(10, "a", cpu=50),  # the next window starts at 10 s exactly
        sample(2, "b", cpu=5, load_1m=1.0),
    ])
    parsed = reading.valid(reading.parse_records(df, VmstatSample))
    out = {(r["host"], r["window_start_us"]): r.asDict()
           for r in windowed_stats(parsed, "10 seconds").collect()}
    start = int(T0.timestamp() * 1_000_000)
    ten = 10_000_000
    assert sorted(out) == [("a", start), ("a", start + ten), ("b", start)]
    a0 = out[("a", start)]
    assert (a0["count"], a0["cpu_user_avg"], a0["cpu_user_min"], a0["cpu_user_max"]) == (3, 20.0, 10.0, 30.0)
    assert a0["window_end_us"] == start + ten
    assert a0["load_1m_avg"] is None  # no sample had it
    assert out[("a", start + ten)]["count"] == 1
    assert out[("b", start)]["load_1m_max"] == 1.0


def test_sliding_windows_count_a_sample_in_every_window_that_covers_it(spark: SparkSession) -> None:
    df = kafka_rows(spark, [sample(5, cpu=10), sample(25, cpu=30)])
    parsed = reading.valid(reading.parse_records(df, VmstatSample))
    out = windowed_stats(parsed, "60 seconds", "10 seconds").collect()
    start = int(T0.timestamp() * 1_000_000)
    counts = {(r["window_start_us"] - start) // 1_000_000: r["count"] for r in out}
    # 05:00:05 lies in the six windows starting -50..0 s; 05:00:25 in those starting -30..20 s.
    assert counts == {-50: 1, -40: 1, -30: 2, -20: 2, -10: 2, 0: 2, 10: 1, 20: 1}


def test_the_streaming_job_stores_exact_windows_and_counts_late_rows(
    spark: SparkSession, bootstrap: str, tmp_path: Any
) -> None:
    """Produce a known set to the real broker, run the job with availableNow, compare the store."""
    from processing import vmstat_windows
    from processing.context import JobContext
    from storage.disk import DiskStore

    cfg = settings.load(environ={"DATA_DIR": str(tmp_path), "SHUFFLE_PARTITIONS": "2",
                                 "WATERMARK_SECONDS": "5", "WINDOW_SECONDS": "10"})
    host = f"host-{tmp_path.name}"[-40:]
    # One batch: windows [0,10) and [10,20); then a batch that moves the watermark to 25 s,
    # then a row for 3 s: later than the watermark, so it must be counted as late, not stored.
    batches = [
        [sample(1, host, cpu=10), sample(2, host, cpu=20), sample(12, host, cpu=40)],
        [sample(30, host, cpu=60)],
        [sample(3, host, cpu=99)],
    ]
    published = kafka.JsonPublisher(bootstrap)
    ctx = JobContext(spark, cfg, bootstrap, sink="disk", starting_offsets="earliest",
                     available_now=True)
    results: list[dict[str, Any]] = []
    try:
        for batch in batches:
            for value in batch:
                published.publish(topics.VMSTAT.name, value, key=host)
            published.flush()
            queries = vmstat_windows.start(spark, ctx)
            for q in queries:
                q.awaitTermination(120)
                assert q.exception() is None
            results.extend(p for q in queries if q.name.startswith("vmstat_tumbling")
                           for p in q.recentProgress)
    finally:
        ctx.close()
    store = DiskStore(cfg.sqlite_path)
    rows = {r.window_start: dict(r.values) for r in store.latest("vmstat_tumbling", 100, key=host)}
    assert sorted(rows) == [T0, at(10), at(30)]
    assert (rows[T0]["count"], rows[T0]["cpu_user_avg"], rows[T0]["cpu_user_max"]) == (2, 15.0, 20.0)
    assert rows[at(10)]["count"] == 1 and rows[at(30)]["count"] == 1
    # Sliding windows (1 min every 10 s) built from those panes; the pane at 30 s came in a
    # later batch than the others, which were read back from the store.
    sliding = {r.window_start: dict(r.values) for r in store.latest("vmstat_sliding", 100, key=host)}
    assert sorted(sliding) == [at(s) for s in range(-50, 40, 10)]
    assert [sliding[at(s)]["count"] for s in (-50, 0, 10, 30)] == [2, 4, 2, 1]
    assert sliding[T0]["cpu_user_avg"] == 32.5 and sliding[T0]["cpu_user_n"] == 4
    late = sum(op["numRowsDroppedByWatermark"] for p in results for op in p["stateOperators"])
    assert late == 1
