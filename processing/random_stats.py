"""Random numbers per producer in tumbling event-time windows: count, mean, stddev, min, max,
a histogram over fixed bins, and sequence gaps and duplicates.

Reads the ``random`` topic; windows of WINDOW_SECONDS with a WATERMARK_SECONDS
watermark; bins from RANDOM_BINS; update mode; writes the stream
``random_stats`` to its stores and pushes each changed window to ``results``.

Run alone::

    spark-submit processing/random_stats.py [--sink disk|cassandra] [--replay]

Sequence numbers count up per producer. Within a window, ``gaps`` is how many
numbers between the smallest and the largest sequence number are missing and
``duplicates`` how many arrived twice; a gap across a window boundary shows as
one window's ``last_seq`` + 1 differing from the next one's ``first_seq``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from common.records import RandomNumber, from_micros
from common.settings import Settings
from processing import windowing
from processing.context import JobContext
from processing.runner import run_job
from processing.writer import RowsFn
from storage.base import ResultRow

STREAM = "random_stats"
VALUE_COLUMNS = ("count", "mean", "stddev", "min", "max", "histogram",
                 "first_seq", "last_seq", "gaps", "duplicates")


def bin_index(value: Column, edges: Sequence[float]) -> Column:
    """0 below ``edges[0]``, i for ``edges[i-1] <= value < edges[i]``, len(edges) at or above the last."""
    expr = F.when(value < F.lit(edges[0]), F.lit(0))
    for i, edge in enumerate(edges[1:], start=1):
        expr = expr.when(value < F.lit(edge), F.lit(i))
    return expr.otherwise(F.lit(len(edges)))


def window_stats(numbers: DataFrame, window: str, edges: Sequence[float],
                 watermark: str | None = None) -> DataFrame:
    """Per producer and tumbling window: the statistics of :data:`VALUE_COLUMNS`.

    ``histogram`` is an array of ``len(edges) + 1`` counts (see :func:`bin_index`).
    """
    if watermark:
        numbers = numbers.withWatermark("event_time", watermark)
    binned = numbers.withColumn("_bin", bin_index(F.col("value"), edges))
    counts = [F.sum(F.when(F.col("_bin") == i, 1).otherwise(0)) for i in range(len(edges) + 1)]
    distinct = F.size(F.collect_set("seq"))
    grouped = binned.groupBy(F.window("event_time", window).alias("window"), "producer").agg(
        F.count(F.lit(1)).alias("count"),
        F.avg("value").alias("mean"),
        F.stddev_samp("value").alias("stddev"),
        F.min("value").alias("min"),
        F.max("value").alias("max"),
        F.array(*counts).alias("histogram"),
        F.min("seq").alias("first_seq"),
        F.max("seq").alias("last_seq"),
        distinct.alias("distinct_seq"),
        *windowing.timing_aggregates(),
    )
    return grouped.select(
        "producer",
        *windowing.window_columns(),
        "count", "mean",
        F.when(F.isnan("stddev"), None).otherwise(F.col("stddev")).alias("stddev"),
        "min", "max", "histogram", "first_seq", "last_seq",
        (F.col("last_seq") - F.col("first_seq") + 1 - F.col("distinct_seq")).alias("gaps"),
        (F.col("count") - F.col("distinct_seq")).alias("duplicates"),
        *windowing.TIMING_COLUMNS,
    )


def to_rows(edges: Sequence[float]) -> RowsFn:
    def convert(collected: list[dict[str, Any]]) -> list[ResultRow]:
        rows = []
        for r in collected:
            values = {c: r[c] for c in VALUE_COLUMNS}
            values["histogram"] = {"edges": list(edges), "counts": list(r["histogram"])}
            rows.append(ResultRow(STREAM, str(r["producer"]), from_micros(r["window_start_us"]),
                                  from_micros(r["window_end_us"]), values))
        return rows

    return convert


def windowed_streams(settings: Settings) -> list[windowing.WindowedStream]:
    window, edges = windowing.seconds(settings.window_seconds), settings.random_bins
    return [windowing.WindowedStream(
        STREAM, "random", RandomNumber,
        lambda df, watermark: window_stats(df, window, edges, watermark), to_rows(edges))]


def start(spark: SparkSession, ctx: JobContext) -> list[StreamingQuery]:
    return ctx.start_windowed(windowed_streams(ctx.settings))


if __name__ == "__main__":
    sys.exit(run_job(__doc__ or "", start))
