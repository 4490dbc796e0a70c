"""Case reports: running totals per area, state and age group; the latest cases; and cases
per city over sliding event-time windows.

Two queries over the ``cases`` topic:

* **totals** (complete mode): the running count per (location, state, age group),
  small enough to re-emit whole each batch; each batch derives the streams
  ``cases_top_areas``, ``cases_by_state`` and ``cases_by_age`` from it. Running
  totals have no window: their rows share one ``window_start``, the moment this
  query's checkpoint started, so a fresh start never mixes with old totals.
* **per city** (update mode, with the watermark): counts per city in panes of
  SLIDE_SECONDS (10 s), stored as ``cases_city_panes``, each with the list of its
  cases. The writer builds from them the sliding windows of ``cases_city_sliding``
  (SLIDING_WINDOW_SECONDS every SLIDE_SECONDS, 1 min every 10 s; ``processing.panes``)
  and the rows of ``cases_latest`` (every case keyed by its id at its event time; the
  store's newest N are the last N cases). The latest cases were a query of their own
  until each query's core-second per micro-batch on 2 cores (docs/benchmark-history.md) made
  one fewer worth it; cases older than the watermark are now counted as late and are
  in neither stream (the running totals still count them).

Run alone::

    spark-submit processing/case_reports.py [--sink disk|cassandra] [--replay]
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from common.records import CaseReport, format_time, from_micros
from common.settings import Settings
from processing import reading, windowing
from processing.context import JobContext
from processing.panes import PanedSliding, StoreRange
from processing.runner import run_job
from storage.base import ResultRow

TOTALS = ("cases_top_areas", "cases_by_state", "cases_by_age")
LATEST = "cases_latest"
CITY = "cases_city_sliding"
PANES = "cases_city_panes"
CASE_FIELDS = ("id", "name", "location", "state", "age", "infection")
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


def latest_rows(cases: Iterable[dict[str, Any]]) -> list[ResultRow]:
    """Cases (:data:`CASE_FIELDS` and ``event_time_us``) -> rows of ``cases_latest``."""
    rows = []
    for r in cases:
        at = from_micros(r["event_time_us"])
        values = {k: r[k] for k in CASE_FIELDS}
        values["event_time"] = format_time(at)
        rows.append(ResultRow(LATEST, str(r["id"]), at, at, values))
    return rows


def city_panes(cases: DataFrame, pane: str, watermark: str | None) -> DataFrame:
    """Per city and pane: ``count``, ``state`` (the largest name seen: a city's state), and
    ``cases``, the list of its cases (:data:`CASE_FIELDS` and ``event_time_us``)."""
    if watermark:
        cases = cases.withWatermark("event_time", watermark)
    case = F.struct(*CASE_FIELDS, F.unix_micros("event_time").alias("event_time_us"))
    grouped = cases.groupBy(F.window("event_time", pane).alias("window"), "location").agg(
        F.count(F.lit(1)).alias("count"), F.max("state").alias("state"),
        F.collect_list(case).alias("cases"), *windowing.timing_aggregates())
    return grouped.select(*windowing.window_columns(), "location", "state", "count", "cases",
                          *windowing.TIMING_COLUMNS)


def merge_counts(panes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A city's window from its panes: counts add up; the state is the largest, as in a pane."""
    return {"location": panes[0]["location"], "state": max(p["state"] for p in panes),
            "count": sum(int(p["count"]) for p in panes)}


class CityAndLatest:
    """``to_rows`` of the per-city query: a batch's panes, the sliding windows that contain
    them (other panes read by ``stored``; None: the batch holds every pane, as in a
    recomputation), and its cases as rows of ``cases_latest``.

    A pane's list holds every case of the pane so far, so a case is written again while
    its pane is open (once per micro-batch): an idempotent upsert of the same row.
    """

    def __init__(self, settings: Settings, stored: StoreRange | None = None) -> None:
        slide = dt.timedelta(seconds=settings.slide_seconds)
        self.panes = windowing.result_rows(PANES, "location", ("location", "state", "count"))
        self.sliding = PanedSliding(
            CITY, PANES, merge_counts, dt.timedelta(seconds=settings.sliding_window_seconds),
            slide, slide, stored)

    def __call__(self, collected: list[dict[str, Any]]) -> list[ResultRow]:
        changed = self.panes(collected)
        return changed + self.sliding(changed) + self.latest(collected)

    @staticmethod
    def latest(collected: list[dict[str, Any]]) -> list[ResultRow]:
        return latest_rows(case for r in collected for case in r["cases"])


def start(spark: SparkSession, ctx: JobContext) -> list[StreamingQuery]:
    queries = []
    for store in ctx.stores_for(TOTALS[0]):
        cases = reading.valid(reading.parse_records(ctx.read("cases"), CaseReport,
                                                      observe_as="cases_totals_input"))
        started = ctx.run_started("cases_totals", store)
        writer = ctx.writer("cases_totals", store, functools.partial(split_totals, started=started),
                            retain=False)
        queries.append(ctx.start(totals(cases), "cases_totals", store, writer,
                                 output_mode="complete"))
    return queries + ctx.start_windowed(windowed_streams(ctx.settings))


def windowed_streams(settings: Settings) -> list[windowing.WindowedStream]:
    """The per-city query (named after ``cases_city_sliding``, which it writes with the panes
    and ``cases_latest``), and ``cases_latest`` derived from it (for recomputation)."""
    pane = windowing.seconds(settings.slide_seconds)

    def transform(df: DataFrame, watermark: str | None) -> DataFrame:
        return city_panes(df, pane, watermark)

    both = CityAndLatest(settings)
    return [
        windowing.WindowedStream(CITY, "cases", CaseReport, transform,
                                lambda collected: both.sliding(both.panes(collected)),
                                with_store=lambda stored: CityAndLatest(settings, stored)),
        windowing.WindowedStream(LATEST, "cases", CaseReport, transform, both.latest,
                                derived=True),
    ]


if __name__ == "__main__":
    sys.exit(run_job(__doc__ or "", start))
