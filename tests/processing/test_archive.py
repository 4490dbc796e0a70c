"""The raw Parquet archive, and a recomputation from it that equals the live result."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from common.records import CaseReport, VmstatSample
from processing import archive, case_reports, recompute, vmstat_windows
from processing.context import JobContext
from storage.disk import DiskStore
from tests.processing.test_jobs_streaming import make_ctx, publish, run_once

pytestmark = pytest.mark.spark

T0 = dt.datetime(2026, 11, 22, 7, 0, 0, tzinfo=dt.UTC)


def test_archive_then_recompute_equals_the_live_windows(
    spark: SparkSession, bootstrap: str, new_topic: Callable[[int], str], tmp_path: Path
) -> None:
    topic = new_topic(3)
    samples = [VmstatSample(event_time=T0 + dt.timedelta(seconds=s), host=h, cpu_user=float(s))
               for s in range(0, 25, 2) for h in ("a", "b")]
    publish(bootstrap, topic, list(samples))
    cases_topic = new_topic(3)
    cases = [CaseReport(event_time=T0 + dt.timedelta(seconds=s), id=f"c{s}", name="x",
                        location=("Austin", "Reno")[s % 2], state=("TX", "NV")[s % 2], age=s,
                        infection="flu") for s in range(0, 75, 3)]
    publish(bootstrap, cases_topic, list(cases))
    ctx: JobContext = make_ctx(spark, bootstrap, tmp_path, vmstat=topic, cases=cases_topic)
    try:
        run_once(spark, ctx, archive.start)
        run_once(spark, ctx, vmstat_windows.start)
        run_once(spark, ctx, case_reports.start)
        archived = spark.read.parquet(str(ctx.settings.archive_dir)).where(f"topic = '{topic}'")
        assert archived.count() == len(samples)
        # partitioned by the UTC date of each record's Kafka timestamp
        for r in archived.selectExpr("date", "date_format(timestamp, 'yyyy-MM-dd') AS day").collect():
            assert r["date"].isoformat() == r["day"]
        assert sorted(p.name for p in ctx.settings.archive_dir.iterdir()
                      if p.name.startswith("topic="))[0].startswith("topic=")

        for stream in ("vmstat_tumbling", "vmstat_sliding", "cases_city_sliding", "cases_latest"):
            rows = recompute.recompute(spark, ctx, stream)
            stored = DiskStore(ctx.settings.sqlite_path).latest(stream, 10_000)
            result = recompute.compare(rows, stored)
            assert len(rows) == len(stored) > 0, stream
            assert (len(result["differ"]), len(result["missing"])) == (0, 0), stream
    finally:
        ctx.close()
