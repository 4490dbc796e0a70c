"""NGINX traffic per event-time window and edge: requests, status classes, error rate,
approximate p50/p95 request time, bytes. These rows are what the Vizceral graph is drawn from.

Each access record is two edges of the traffic graph of its virtual host:
``INTERNET -> service`` (the request entering) and ``service -> upstream`` (where
nginx sent it; ``local`` when nginx answered itself). Reads the ``nginx``
topic; tumbling windows of WINDOW_SECONDS with a WATERMARK_SECONDS watermark;
update mode; writes the stream ``nginx_edges``.

Run alone::

    spark-submit processing/nginx_traffic.py [--sink disk|cassandra] [--replay]
"""

from __future__ import annotations

import sys
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from common.records import AccessRecord, from_micros
from common.settings import Settings
from common.vizceral import DEFAULT_HOST, INTERNET, UNKNOWN_SERVICE
from common.vizceral import LOCAL as VIZCERAL_LOCAL
from processing import windowing
from processing.context import JobContext
from processing.runner import run_job
from storage.base import ResultRow

STREAM = "nginx_edges"
# Defined once in common.vizceral.request_edges; the SQL below follows it.
ENTRY = INTERNET
LOCAL = VIZCERAL_LOCAL
VALUE_COLUMNS = ("host", "source", "target", "requests", "status_2xx", "status_3xx", "status_4xx",
                 "status_5xx", "error_rate", "p50_request_time", "p95_request_time", "bytes")


def edges(records: DataFrame) -> DataFrame:
    """Two rows per request: (host, INTERNET, service) and (host, service, upstream or local)."""
    host = F.coalesce(F.nullif(F.col("host"), F.lit("")), F.lit(DEFAULT_HOST))
    service = F.coalesce(F.nullif(F.col("service"), F.lit("")), F.lit(UNKNOWN_SERVICE))
    upstream = F.coalesce(F.nullif(F.col("upstream"), F.lit("")), F.lit(LOCAL))
    pairs = F.array(
        F.struct(F.lit(ENTRY).alias("source"), service.alias("target")),
        F.struct(service.alias("source"), upstream.alias("target")),
    )
    return records.select(
        "event_time", host.alias("host"), "status", "bytes", "request_time",
        "_produced_at", "_kafka_time", F.explode(pairs).alias("edge"),
    ).select("event_time", "host", "edge.source", "edge.target", "status", "bytes", "request_time",
             "_produced_at", "_kafka_time")


def edge_stats(records: DataFrame, window: str, watermark: str | None = None,
               accuracy: int = 1000) -> DataFrame:
    """Per window and edge: the values of :data:`VALUE_COLUMNS` (percentiles approximate)."""
    if watermark:
        records = records.withWatermark("event_time", watermark)
    status_class = F.floor(F.col("status") / 100)

    def count_class(n: int) -> Any:
        return F.sum(F.when(status_class == n, 1).otherwise(0)).alias(f"status_{n}xx")

    grouped = edges(records).groupBy(
        F.window("event_time", window).alias("window"), "host", "source", "target"
    ).agg(
        F.count(F.lit(1)).alias("requests"),
        count_class(2), count_class(3), count_class(4), count_class(5),
        F.percentile_approx("request_time", [0.5, 0.95], accuracy).alias("pct"),
        F.sum("bytes").alias("bytes"),
        *windowing.timing_aggregates(),
    )
    return grouped.select(
        *windowing.window_columns(), "host", "source", "target", "requests",
        "status_2xx", "status_3xx", "status_4xx", "status_5xx",
        (F.col("status_5xx") / F.col("requests")).alias("error_rate"),
        F.col("pct")[0].alias("p50_request_time"), F.col("pct")[1].alias("p95_request_time"),
        "bytes", *windowing.TIMING_COLUMNS,
    )


def to_rows(collected: list[dict[str, Any]]) -> list[ResultRow]:
    return [
        ResultRow(STREAM, f"{r['host']}|{r['source']}|{r['target']}",
                  from_micros(r["window_start_us"]), from_micros(r["window_end_us"]),
                  {c: r[c] for c in VALUE_COLUMNS})
        for r in collected
    ]


def windowed_streams(settings: Settings) -> list[windowing.WindowedStream]:
    window = windowing.seconds(settings.window_seconds)
    return [windowing.WindowedStream(
        STREAM, "nginx", AccessRecord, lambda df, watermark: edge_stats(df, window, watermark),
        to_rows)]


def start(spark: SparkSession, ctx: JobContext) -> list[StreamingQuery]:
    return ctx.start_windowed(windowed_streams(ctx.settings))


if __name__ == "__main__":
    sys.exit(run_job(__doc__ or "", start))
