"""Census statistics, a batch job: population, mean and spread of age per year and sex, the age
distribution, and household income shares per state.

Input: the real US census files in CENSUS_DIR (``population.json``: people by
year, 5-year age group and sex, 1850-2000; ``income.json``: households by
income group and state, ACS 2013; see input/data/census/NOTICE.md). Output:
the streams ``census_population``, ``census_age`` and ``census_income`` in the
stores the demo catalogue names (``--sink`` to choose one). Rows are keyed, so
running it again writes the same rows (idempotent).

Run::

    spark-submit processing/census_stats.py [--sink disk|cassandra]

It logs how many rows it wrote and exits 0.

Ages come in 5-year groups (``age`` is the group's lowest age; 90 means 90 and
over), so the mean and standard deviation of age use each group's midpoint
(92.5 for the open top group): an approximation the data cannot avoid.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common import backoff
from processing.context import JobContext
from processing.runner import run_batch_job
from storage.base import ResultRow

log = logging.getLogger(__name__)

STREAMS = ("census_population", "census_age", "census_income")
INCOME_YEAR = 2013
SEX_LABEL = {1: "male", 2: "female"}


def midpoint(age: Any) -> Any:
    return F.col(age) + F.lit(2.5)


def population_stats(population: DataFrame) -> DataFrame:
    """Per year and sex: population, mean age and (population) standard deviation of age."""
    weighted = population.select(
        "year", "sex", "people", midpoint("age").alias("mid"))
    sums = weighted.groupBy("year", "sex").agg(
        F.sum("people").alias("population"),
        F.sum(F.col("people") * F.col("mid")).alias("sx"),
        F.sum(F.col("people") * F.col("mid") * F.col("mid")).alias("sxx"),
    )
    mean = F.col("sx") / F.col("population")
    variance = F.greatest(F.col("sxx") / F.col("population") - mean * mean, F.lit(0.0))
    return sums.select("year", "sex", "population", mean.alias("mean_age"),
                       F.sqrt(variance).alias("stddev_age"))


def age_distribution(population: DataFrame) -> DataFrame:
    """Per year, sex and age group: people and their share of that year's and sex's total."""
    total = F.sum("people").over(Window.partitionBy("year", "sex"))
    return population.select("year", "sex", "age", "people",
                             (F.col("people") / total).alias("share"))


def income_shares(income: DataFrame) -> DataFrame:
    """Per state and income group: the share of households and their number."""
    return income.select(
        F.col("name").alias("state"), "region", "group", F.col("pct").alias("share"),
        F.round(F.col("pct") * F.col("total")).cast("long").alias("households"))


def _year(year: int) -> dt.datetime:
    return dt.datetime(year, 1, 1, tzinfo=dt.UTC)


def to_rows(population: list[dict[str, Any]], ages: list[dict[str, Any]],
            income: list[dict[str, Any]]) -> list[ResultRow]:
    rows = []
    for r in population:
        year, sex = int(r["year"]), int(r["sex"])
        rows.append(ResultRow("census_population", f"{year}|{sex}", _year(year), _year(year + 1), {
            "year": year, "sex": sex, "sex_label": SEX_LABEL.get(sex, str(sex)),
            "population": int(r["population"]), "mean_age": r["mean_age"],
            "stddev_age": r["stddev_age"]}))
    for r in ages:
        year, sex, age = int(r["year"]), int(r["sex"]), int(r["age"])
        rows.append(ResultRow("census_age", f"{year}|{sex}|{age}", _year(year), _year(year + 1), {
            "year": year, "sex": sex, "age": age, "people": int(r["people"]),
            "share": r["share"]}))
    for r in income:
        rows.append(ResultRow("census_income", f"{r['state']}|{r['group']}", _year(INCOME_YEAR),
                              _year(INCOME_YEAR + 1), {
                                  "state": r["state"], "region": r["region"], "group": r["group"],
                                  "share": r["share"], "households": r["households"]}))
    return rows


def read_inputs(spark: SparkSession, ctx: JobContext) -> tuple[DataFrame, DataFrame]:
    folder = ctx.settings.census_dir
    for name in ("population.json", "income.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"census input {folder / name} is missing (CENSUS_DIR)")
    population = spark.read.schema("year INT, age INT, sex INT, people LONG").option(
        "multiLine", True).json(str(folder / "population.json"))
    income = spark.read.schema(
        "name STRING, region STRING, id INT, pct DOUBLE, total LONG, `group` STRING").option(
        "multiLine", True).json(str(folder / "income.json"))
    return population, income


def run(spark: SparkSession, ctx: JobContext) -> int:
    """Compute every census stream and write it to each of its stores. Returns 0."""
    population, income = read_inputs(spark, ctx)
    rows = to_rows(
        [r.asDict() for r in population_stats(population).collect()],
        [r.asDict() for r in age_distribution(population).collect()],
        [r.asDict() for r in income_shares(income).collect()],
    )
    for store in ctx.stores_for(STREAMS[0]):
        writer = ctx.writer("census", store, lambda _rows: [], retain=False)
        write_when_reachable(functools.partial(writer.write, rows, batch_id=0), store)
        log.info("census: wrote %d rows to the %s store", len(rows), store)
    return 0


def write_when_reachable(write: Callable[[], None], store: str, patience_s: float = 600.0,
                         sleep: Callable[[float], None] = time.sleep) -> None:
    """Run ``write``; while the store is unreachable (Cassandra still starting, or down), try
    again after 2, 4 ... 30 s, for at most ``patience_s``. Other errors are raised at once."""
    from storage.base import StoreUnavailable

    deadline = time.monotonic() + patience_s
    pauses = backoff.delays(first_s=2.0)
    while True:
        try:
            write()
            return
        except StoreUnavailable as e:
            pause = next(pauses)
            if time.monotonic() + pause > deadline:
                raise
            log.warning("census: the %s store is not reachable (%s); trying again in %.0f s",
                        store, e, pause)
            sleep(pause)


if __name__ == "__main__":
    sys.exit(run_batch_job(__doc__ or "", run))
