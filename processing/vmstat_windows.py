"""Host metrics per host over event-time windows: count and avg/min/max of every metric.

One query over the ``vmstat`` topic: tumbling windows (WINDOW_SECONDS, 10 s) to the
stream ``vmstat_tumbling``, triggered every TRIGGER_SECONDS, with a watermark of
WATERMARK_SECONDS; each trigger emits the changed windows (update mode), upserts
them into the store and pushes them to the ``results`` topic.

The sliding windows of ``vmstat_sliding`` (SLIDING_WINDOW_SECONDS every
SLIDE_SECONDS, 1 min every 10 s) are built from the tumbling ones, which serve as
panes: each batch's writer merges, for every sliding window that contains a changed
tumbling window, its panes from the batch and the store (``processing.panes``). A
second Spark query over the same topic cost a core-second per micro-batch and
expanded every record into 6 windows (see docs/benchmark-history.md, "Where a micro-batch goes").

Run alone::

    spark-submit processing/vmstat_windows.py [--sink disk|cassandra] [--replay]

(with the kit's virtual environment: ``PYSPARK_PYTHON=.venv/bin/python
.venv/bin/spark-submit ...``). It logs each query's start and runs until
stopped; ``--replay`` reads the topic from the start and exits when done.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from common.records import VmstatSample
from common.settings import Settings
from processing import windowing
from processing.context import JobContext
from processing.panes import PanedSliding, StoreRange
from processing.runner import run_job
from storage.base import ResultRow

TUMBLING = "vmstat_tumbling"
SLIDING = "vmstat_sliding"
METRICS = VmstatSample.METRICS
#: Per metric: its average, minimum and maximum, and ``n``, the samples that had it (a
#: metric may be null), which the sliding windows need to weigh each pane's average.
STATS = ("avg", "min", "max", "n")
VALUE_COLUMNS = ("count", *(f"{m}_{s}" for m in METRICS for s in STATS))


def windowed_stats(samples: DataFrame, window: str, slide: str | None = None,
                   watermark: str | None = None) -> DataFrame:
    """Per host and window: ``count`` and ``<metric>_avg/_min/_max/_n`` of every metric.

    ``samples`` has the columns of :class:`VmstatSample`. The output has
    ``host``, ``window_start_us``, ``window_end_us`` and :data:`VALUE_COLUMNS`.
    """
    if watermark:
        samples = samples.withWatermark("event_time", watermark)
    aggregates = [F.count(F.lit(1)).alias("count")]
    for metric in METRICS:
        aggregates += [
            F.avg(metric).alias(f"{metric}_avg"),
            F.min(metric).alias(f"{metric}_min"),
            F.max(metric).alias(f"{metric}_max"),
            F.count(metric).alias(f"{metric}_n"),
        ]
    bucket = F.window("event_time", window, slide) if slide else F.window("event_time", window)
    grouped = samples.groupBy(bucket.alias("window"), "host").agg(
        *aggregates, *windowing.timing_aggregates())
    return grouped.select("host", *windowing.window_columns(), *VALUE_COLUMNS,
                          *windowing.TIMING_COLUMNS)


def merge_panes(panes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The values of a window made of ``panes`` (values of adjacent windows, oldest first).

    Counts add up, minima and maxima carry over, and each metric's average is the
    average of the panes' averages weighed by their ``<metric>_n``. Deterministic
    for the same panes, so a recomputation equals what the live job stored.
    """
    out: dict[str, Any] = {"count": sum(int(p["count"]) for p in panes)}
    for m in METRICS:
        having = [p for p in panes if p.get(f"{m}_n")]
        n = sum(int(p[f"{m}_n"]) for p in having)
        out[f"{m}_avg"] = (sum(p[f"{m}_avg"] * p[f"{m}_n"] for p in having) / n) if n else None
        out[f"{m}_min"] = min((p[f"{m}_min"] for p in having), default=None)
        out[f"{m}_max"] = max((p[f"{m}_max"] for p in having), default=None)
        out[f"{m}_n"] = n
    return out


class TumblingAndSliding:
    """``to_rows`` of the tumbling query: a batch's tumbling rows, then the sliding windows
    that contain them (:class:`processing.panes.PanedSliding`: the other panes are read by
    ``stored``; None: the batch holds every pane, as in a recomputation).
    """

    def __init__(self, settings: Settings, stored: StoreRange | None = None) -> None:
        self.tumbling = windowing.result_rows(TUMBLING, "host", VALUE_COLUMNS)
        self.sliding = PanedSliding(
            SLIDING, TUMBLING, merge_panes, dt.timedelta(seconds=settings.sliding_window_seconds),
            dt.timedelta(seconds=settings.slide_seconds),
            dt.timedelta(seconds=settings.window_seconds), stored)

    def __call__(self, collected: list[dict[str, Any]]) -> list[ResultRow]:
        tumbling = self.tumbling(collected)
        return tumbling + self.sliding(tumbling)


def windowed_streams(settings: Settings) -> list[windowing.WindowedStream]:
    """The tumbling stream, and the sliding one derived from it (see
    :class:`processing.windowing.WindowedStream`)."""
    tumbling = windowing.seconds(settings.window_seconds)

    def transform(df: DataFrame, watermark: str | None) -> DataFrame:
        return windowed_stats(df, tumbling, None, watermark)

    both = TumblingAndSliding(settings)
    return [
        windowing.WindowedStream(TUMBLING, "vmstat", VmstatSample, transform, both.tumbling,
                                with_store=lambda stored: TumblingAndSliding(settings, stored)),
        windowing.WindowedStream(SLIDING, "vmstat", VmstatSample, transform,
                                lambda collected: both.sliding(both.tumbling(collected)),
                                derived=True),
    ]


def start(spark: SparkSession, ctx: JobContext) -> list[StreamingQuery]:
    """Start the windows' query on ``spark`` (one per store); returns them."""
    return ctx.start_windowed(windowed_streams(ctx.settings))


if __name__ == "__main__":
    sys.exit(run_job(__doc__ or "", start))
