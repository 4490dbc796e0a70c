"""Host metrics per host over event-time windows: count and avg/min/max of every metric.

Two queries over the ``vmstat`` topic: tumbling windows (WINDOW_SECONDS, 10 s)
to the stream ``vmstat_tumbling``, triggered every TRIGGER_SECONDS, and sliding
windows (SLIDING_WINDOW_SECONDS every SLIDE_SECONDS, 1 min every 10 s) to
``vmstat_sliding``, triggered every OTHER_TRIGGER_SECONDS. Both keep a
watermark of WATERMARK_SECONDS, emit changed windows each trigger (update
mode), upsert them into the store and push them to the ``results`` topic.

Run alone::

    spark-submit processing/vmstat_windows.py [--sink disk|cassandra] [--replay]

(with the kit's virtual environment: ``PYSPARK_PYTHON=.venv/bin/python
.venv/bin/spark-submit ...``). It logs each query's start and runs until
stopped; ``--replay`` reads the topic from the start and exits when done.
"""

from __future__ import annotations

import sys

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from common.records import VmstatSample
from common.settings import Settings
from processing import pipeline
from processing.jobs import JobContext, run_job

METRICS = VmstatSample.METRICS
STATS = ("avg", "min", "max")
VALUE_COLUMNS = ("count", *(f"{m}_{s}" for m in METRICS for s in STATS))


def windowed_stats(samples: DataFrame, window: str, slide: str | None = None,
                   watermark: str | None = None) -> DataFrame:
    """Per host and window: ``count`` and ``<metric>_avg/_min/_max`` of every metric.

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
        ]
    bucket = F.window("event_time", window, slide) if slide else F.window("event_time", window)
    grouped = samples.groupBy(bucket.alias("window"), "host").agg(
        *aggregates, *pipeline.timing_aggregates())
    return grouped.select("host", *pipeline.window_columns(), *VALUE_COLUMNS,
                          *pipeline.TIMING_COLUMNS)


def windowed_streams(settings: Settings) -> list[pipeline.WindowedStream]:
    """The tumbling and the sliding stream (see :class:`processing.pipeline.WindowedStream`)."""
    tumbling = pipeline.seconds(settings.window_seconds)
    sliding = pipeline.seconds(settings.sliding_window_seconds)
    slide = pipeline.seconds(settings.slide_seconds)
    return [
        pipeline.WindowedStream(
            "vmstat_tumbling", "vmstat", VmstatSample,
            lambda df, watermark: windowed_stats(df, tumbling, None, watermark),
            pipeline.result_rows("vmstat_tumbling", "host", VALUE_COLUMNS)),
        pipeline.WindowedStream(
            "vmstat_sliding", "vmstat", VmstatSample,
            lambda df, watermark: windowed_stats(df, sliding, slide, watermark),
            pipeline.result_rows("vmstat_sliding", "host", VALUE_COLUMNS), slow=True),
    ]


def start(spark: SparkSession, ctx: JobContext) -> list[StreamingQuery]:
    """Start the tumbling and the sliding query on ``spark``; returns both."""
    return ctx.start_windowed(windowed_streams(ctx.settings))


if __name__ == "__main__":
    sys.exit(run_job(__doc__ or "", start))
