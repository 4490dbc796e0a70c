"""Case reports: running totals per area, state and age group; the latest cases; and cases
per city over sliding event-time windows.

Three queries over the ``cases`` topic:

* **totals** (complete mode): the running count per (location, state, age group),
  small enough to re-emit whole each batch; each batch derives the streams
  ``cases_top_areas``, ``cases_by_state`` and ``cases_by_age`` from it. Running
  totals have no window: their rows share one ``window_start``, the moment this
  query's checkpoint started, so a fresh start never mixes with old totals.
* **latest** (append mode): every case as a row of ``cases_latest`` keyed by its
  id at its event time; the store's newest N are the last N cases.
* **per city** (update mode): counts per city over SLIDING_WINDOW_SECONDS windows
  every SLIDE_SECONDS (1 min / 10 s) with the watermark, to ``cases_city_sliding``.

Run alone::

    spark-submit processing/case_reports.py [--sink disk|cassandra] [--replay]
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
from collections import defaultdict
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from common.records import CaseReport, format_time
from common.settings import Settings
from processing import pipeline
from processing.jobs import JobContext, run_job
from storage.base import ResultRow

TOTALS = ("cases_top_areas", "cases_by_state", "cases_by_age")
LATEST = "cases_latest"
CITY = "cases_city_sliding"
OLDEST_GROUP = 80  # "80+"


def age_group(age: Column) -> Column:
    """Decades: '0-9', '10-19', ..., '70-79', then '80+'. Negative ages count as '0-9'."""
    lower = F.least(F.greatest(F.floor(age / 10) * 10, F.lit(0)), F.lit(OLDEST_GROUP)).cast("int")
    label = F.when(lower >= OLDEST_GROUP, F.lit(f"{OLDEST_GROUP}+")).otherwise(
        F.concat(lower.cast("string"), F.lit("-"), (lower + 9).cast("string")))
    return F.struct(label.alias("age_group"), lower.alias("lower"))


def totals(cases: DataFrame) -> DataFrame:
    """Running count per (location, state, age_group, lower)."""
    return (cases.select("location", "state", age_group(F.col("age")).alias("g"))
            .groupBy("location", "state", "g.age_group", "g.lower").count())


def split_totals(collected: list[dict[str, Any]], started: dt.datetime) -> list[ResultRow]:
    """The whole totals table -> rows of the three running-total streams (pure; see tests)."""
    areas: dict[tuple[str, str], int] = defaultdict(int)
    states: dict[str, int] = defaultdict(int)
    ages: dict[tuple[str, int], int] = defaultdict(int)
    for r in collected:
        areas[(r["location"], r["state"])] += r["count"]
        states[r["state"]] += r["count"]
        ages[(r["age_group"], r["lower"])] += r["count"]

    def row(stream: str, key: str, values: dict[str, Any]) -> ResultRow:
        return ResultRow(stream, key, started, started, values)

    rows = [row("cases_top_areas", loc, {"location": loc, "state": st, "count": n})
            for (loc, st), n in sorted(areas.items())]
    rows += [row("cases_by_state", st, {"state": st, "count": n}) for st, n in sorted(states.items())]
    rows += [row("cases_by_age", label, {"age_group": label, "lower": lower, "count": n})
             for (label, lower), n in sorted(ages.items(), key=lambda kv: kv[0][1])]
    return rows


def latest_rows(collected: list[dict[str, Any]]) -> list[ResultRow]:
    rows = []
    for r in collected:
        when = r["event_time_us"]
        at = pipeline.from_micros(when)
        values = {k: r[k] for k in ("id", "name", "location", "state", "age", "infection")}
        values["event_time"] = format_time(at)
        rows.append(ResultRow(LATEST, str(r["id"]), at, at, values))
    return rows


def city_windows(cases: DataFrame, window: str, slide: str, watermark: str | None) -> DataFrame:
    if watermark:
        cases = cases.withWatermark("event_time", watermark)
    grouped = cases.groupBy(F.window("event_time", window, slide).alias("window"),
                            "location").agg(F.count(F.lit(1)).alias("count"),
                                            F.max("state").alias("state"),
                                            *pipeline.timing_aggregates())
    return grouped.select(*pipeline.window_columns(), "location", "state", "count",
                          *pipeline.TIMING_COLUMNS)


def start(spark: SparkSession, ctx: JobContext) -> list[StreamingQuery]:
    s = ctx.settings
    queries = []

    def parsed(name: str) -> DataFrame:
        return pipeline.valid(pipeline.parse_records(ctx.read("cases"), CaseReport,
                                                     observe_as=f"{name}_input"))

    for store in ctx.stores_for(TOTALS[0]):
        started = ctx.run_started("cases_totals", store)
        writer = ctx.writer("cases_totals", store, functools.partial(split_totals, started=started),
                            retain=False)
        queries.append(ctx.start(totals(parsed("cases_totals")), "cases_totals", store, writer,
                                 output_mode="complete"))
    for store in ctx.stores_for(LATEST):
        latest = parsed(LATEST).select(
            "id", "name", "location", "state", "age", "infection",
            F.unix_micros("event_time").alias("event_time_us"))
        queries.append(ctx.start(latest, LATEST, store, ctx.writer(LATEST, store, latest_rows),
                                 output_mode="append"))
    return queries + ctx.start_windowed(windowed_streams(s))


def windowed_streams(settings: Settings) -> list[pipeline.WindowedStream]:
    window = pipeline.seconds(settings.sliding_window_seconds)
    slide = pipeline.seconds(settings.slide_seconds)
    return [pipeline.WindowedStream(
        CITY, "cases", CaseReport, lambda df, watermark: city_windows(df, window, slide, watermark),
        pipeline.result_rows(CITY, "location", ("location", "state", "count")))]


if __name__ == "__main__":
    sys.exit(run_job(__doc__ or "", start))
