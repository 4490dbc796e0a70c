"""Recompute a windowed result stream from the raw archive, and compare it with the store.

The archive (``processing/archive.py``) holds every record as Kafka delivered
it. This batch job reads a topic's records from it, runs the very transform
the live job runs (``windowed_streams()`` of the job module, without the
watermark), and reports how many windows equal the stored ones. With
``--write`` it upserts the recomputed rows (e.g. after changing a transform).

Run::

    spark-submit processing/recompute.py STREAM [--from 2026-11-22T05:00:00Z] [--to ...] [--write]

It prints one line per differing window and a summary, and exits 0 when every
recomputed window equals the stored one (1 otherwise). Rows the live job
dropped as late (after the watermark) are in the archive, so their windows
differ: that is the late-row count made visible.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common import catalogue
from common.records import parse_time
from processing import jobs, reading
from processing.context import JobContext
from storage.base import ResultRow

log = logging.getLogger(__name__)


def archived_records(spark: SparkSession, ctx: JobContext, role: str,
                     start: dt.datetime | None = None, end: dt.datetime | None = None) -> DataFrame:
    """The archived Kafka records of one topic (columns as Spark's kafka source)."""
    df = spark.read.parquet(str(ctx.settings.archive_dir)).where(
        F.col("topic") == ctx.topic_name(role))
    if start is not None:
        df = df.where(F.col("date") >= start.strftime("%Y-%m-%d"))
    if end is not None:
        df = df.where(F.col("date") <= end.strftime("%Y-%m-%d"))
    return df.select("key", "value", "topic", "partition", "offset", "timestamp", "timestampType")


def recompute(spark: SparkSession, ctx: JobContext, stream: str,
              start: dt.datetime | None = None, end: dt.datetime | None = None) -> list[ResultRow]:
    """The rows of ``stream`` recomputed from the archive, for windows starting in [start, end)."""
    spec = jobs.windowed_stream(stream, ctx.settings)
    records = reading.valid(reading.parse_records(
        archived_records(spark, ctx, spec.topic, start, end), spec.record_type))
    rows = spec.to_rows([r.asDict(recursive=True) for r in spec.transform(records, None).collect()])
    return [r for r in rows
            if (start is None or r.window_start >= start) and (end is None or r.window_start < end)]


def compare(recomputed: list[ResultRow], stored: list[ResultRow]) -> dict[str, Any]:
    """Which recomputed windows equal the stored ones (values compared exactly)."""
    by_id = {r.identity(): dict(r.values) for r in stored}
    equal, differ, missing = [], [], []
    for row in recomputed:
        found = by_id.get(row.identity())
        if found is None:
            missing.append(row)
        elif found == dict(row.values):
            equal.append(row)
        else:
            differ.append(row)
    return {"equal": equal, "differ": differ, "missing": missing}


def _run(spark: SparkSession, ctx: JobContext, args: argparse.Namespace) -> int:
    start = parse_time(args.start) if args.start else None
    end = parse_time(args.end) if args.end else None
    rows = recompute(spark, ctx, args.stream, start, end)
    store_kind = ctx.sink or (ctx.stores_for(args.stream) or ("disk",))[0]
    store = ctx.open_store(store_kind)
    low = min((r.window_start for r in rows), default=None)
    high = max((r.window_start for r in rows), default=None)
    stored = (store.range(args.stream, low, high + dt.timedelta(microseconds=1))
              if low and high else [])
    result = compare(rows, stored)
    for row in result["differ"] + result["missing"]:
        print(f"differs: {row.key} {row.window_start.isoformat()}")  # noqa: T201 - the report
    print(f"{args.stream}: {len(rows)} windows recomputed from {ctx.settings.archive_dir}; "  # noqa: T201
          f"{len(result['equal'])} equal the {store_kind} store, {len(result['differ'])} differ, "
          f"{len(result['missing'])} not stored")
    if args.write:
        store.upsert(rows)
        print(f"wrote {len(rows)} rows")  # noqa: T201
    return 0 if not result["differ"] and not result["missing"] else 1


def main(argv: list[str] | None = None) -> int:
    from common import cli
    from common.settings import argument_parser
    from processing.spark import session

    parser = argument_parser(__doc__ or "", only=[
        "data_dir", "log_level", "spark_master", "shuffle_partitions", "window_seconds",
        "sliding_window_seconds", "slide_seconds", "random_bins", "sink", "cassandra_hosts"])
    windowed = [s.name for s in catalogue.STREAMS.values() if s.windowed]
    parser.add_argument("stream", choices=windowed)
    parser.add_argument("--from", dest="start", help="first window start, ISO 8601 with zone")
    parser.add_argument("--to", dest="end", help="end (exclusive), ISO 8601 with zone")
    parser.add_argument("--write", action="store_true", help="upsert the recomputed rows")
    args, settings = cli.start(parser, argv)
    spark = session(settings, "recompute")
    ctx = JobContext(spark, settings, None, sink=settings.sink)
    try:
        return _run(spark, ctx, args)
    finally:
        ctx.close()
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
