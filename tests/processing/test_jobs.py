"""Each job's transforms on small batch DataFrames, with exact expected rows."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from common.records import AccessRecord, CaseReport, RandomNumber
from processing import case_reports, census_stats, nginx_traffic, random_stats, reading
from processing.spark import KAFKA_SCHEMA
from storage.base import ResultRow

pytestmark = pytest.mark.spark

T0 = dt.datetime(2026, 11, 22, 5, 0, 0, tzinfo=dt.UTC)
START_US = int(T0.timestamp() * 1_000_000)
TEN_S = 10_000_000


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def kafka_rows(spark: SparkSession, values: list[Any]) -> DataFrame:
    rows = [(None, json.dumps(v).encode(), "t", 0, i, T0, 0) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def parsed(spark: SparkSession, record_type: Any, records: list[Any]) -> DataFrame:
    return reading.valid(reading.parse_records(
        kafka_rows(spark, [r.to_json() for r in records]), record_type))


# -- random numbers


def number(seconds: float, seq: int, value: float, producer: str = "p") -> RandomNumber:
    return RandomNumber(event_time=at(seconds), producer=producer, seq=seq, value=value)


def test_random_window_stats_histogram_gaps_duplicates(spark: SparkSession) -> None:
    records = [
        number(1, 0, -5.0), number(2, 1, -0.5), number(3, 1, 0.5),  # seq 1 twice
        number(4, 4, 0.75), number(9, 5, 3.0),  # 2 and 3 missing
        number(12, 6, 1.0),  # next window
    ]
    edges = (-1.0, 0.0, 1.0)
    out = {r["window_start_us"]: r.asDict() for r in
           random_stats.window_stats(parsed(spark, RandomNumber, records), "10 seconds", edges).collect()}
    first = out[START_US]
    assert first["count"] == 5
    assert first["mean"] == pytest.approx((-5 - 0.5 + 0.5 + 0.75 + 3) / 5)
    assert first["stddev"] == pytest.approx(
        math.sqrt(sum((x - first["mean"]) ** 2 for x in (-5, -0.5, 0.5, 0.75, 3)) / 4))
    assert (first["min"], first["max"]) == (-5.0, 3.0)
    # below -1 | [-1, 0) | [0, 1) | at or above 1
    assert first["histogram"] == [1, 1, 2, 1]
    assert (first["first_seq"], first["last_seq"], first["gaps"], first["duplicates"]) == (0, 5, 2, 1)
    second = out[START_US + TEN_S]
    assert second["count"] == 1 and second["stddev"] is None and second["histogram"] == [0, 0, 0, 1]


def test_random_rows_carry_the_bin_edges() -> None:
    row = {"producer": "p", "window_start_us": START_US, "window_end_us": START_US + TEN_S,
           "count": 1, "mean": 0.5, "stddev": None, "min": 0.5, "max": 0.5,
           "histogram": [0, 1, 0], "first_seq": 3, "last_seq": 3, "gaps": 0, "duplicates": 0}
    [result] = random_stats.to_rows((0.0, 1.0))([row])
    assert result.key == "p" and result.window_start == T0
    assert result.values["histogram"] == {"edges": [0.0, 1.0], "counts": [0, 1, 0]}


# -- nginx


def access(seconds: float, status: int, service: str = "api", upstream: str = "10.0.0.1:80",
           request_time: float = 0.1, host: str = "shop", nbytes: int = 100) -> AccessRecord:
    return AccessRecord(event_time=at(seconds), client="127.0.0.1", method="GET", path="/x",
                        protocol="HTTP/1.1", status=status, bytes=nbytes, host=host,
                        upstream=upstream, request_time=request_time, service=service)


def test_nginx_edges_per_window(spark: SparkSession) -> None:
    records = [
        access(1, 200, request_time=0.1), access(2, 200, request_time=0.2),
        access(3, 404, request_time=0.3), access(4, 502, request_time=1.0, nbytes=0),
        access(5, 301, service="web", upstream="", request_time=0.01, host=""),
        access(15, 200),
    ]
    out = nginx_traffic.edge_stats(parsed(spark, AccessRecord, records), "10 seconds").collect()
    rows = {(r["window_start_us"], r["host"], r["source"], r["target"]): r.asDict() for r in out}
    assert sorted(k[1:] for k in rows if k[0] == START_US) == [
        ("default", "INTERNET", "web"), ("default", "web", "local"),
        ("shop", "INTERNET", "api"), ("shop", "api", "10.0.0.1:80")]
    entry = rows[(START_US, "shop", "INTERNET", "api")]
    assert (entry["requests"], entry["status_2xx"], entry["status_3xx"], entry["status_4xx"],
            entry["status_5xx"]) == (4, 2, 0, 1, 1)
    assert entry["error_rate"] == 0.25
    assert entry["p50_request_time"] == 0.2 and entry["p95_request_time"] == 1.0
    assert entry["bytes"] == 300
    assert rows[(START_US, "default", "web", "local")]["status_3xx"] == 1
    assert rows[(START_US + TEN_S, "shop", "api", "10.0.0.1:80")]["requests"] == 1
    [row] = nginx_traffic.to_rows([entry])
    assert row.key == "shop|INTERNET|api" and row.values["requests"] == 4


# -- case reports


def case(seconds: float, cid: str, location: str, state: str, age: int) -> CaseReport:
    return CaseReport(event_time=at(seconds), id=cid, name=f"n{cid}", location=location,
                      state=state, age=age, infection="flu")


CASES = [case(1, "a", "Austin", "TX", 34), case(2, "b", "Austin", "TX", 39),
         case(3, "c", "Dallas", "TX", 81), case(4, "d", "Boise", "ID", 0),
         case(65, "e", "Boise", "ID", 105)]


def test_case_totals_split_into_three_streams(spark: SparkSession) -> None:
    table = [r.asDict() for r in case_reports.totals(parsed(spark, CaseReport, CASES)).collect()]
    rows = case_reports.split_totals(table, T0)
    by = {(r.stream, r.key): dict(r.values) for r in rows}
    assert by[("cases_top_areas", "Austin")] == {"location": "Austin", "state": "TX", "count": 2}
    assert by[("cases_top_areas", "Boise")]["count"] == 2
    assert by[("cases_by_state", "TX")] == {"state": "TX", "count": 3}
    assert [(k, v["count"]) for (s, k), v in by.items() if s == "cases_by_age"] == [
        ("0-9", 1), ("30-39", 2), ("80+", 2)]
    assert all(r.window_start == T0 == r.window_end for r in rows)


def test_cases_per_city_over_sliding_windows_built_from_panes(spark: SparkSession,
                                                               test_settings: Any) -> None:
    # test_settings: 1 min windows every 10 s (the panes), as the kit's defaults.
    collected = [r.asDict(recursive=True) for r in case_reports.city_panes(
        parsed(spark, CaseReport, CASES), "10 seconds", None).collect()]
    rows = case_reports.CityAndLatest(test_settings)(collected)
    panes = {(r.key, r.window_start): r.values["count"] for r in rows
             if r.stream == case_reports.PANES}
    assert panes == {("Austin", T0): 2, ("Dallas", T0): 1, ("Boise", T0): 1, ("Boise", at(60)): 1}
    city = {(r.key, r.window_start): r.values for r in rows if r.stream == case_reports.CITY}
    austin = {(start - T0).total_seconds(): v["count"] for (key, start), v in city.items()
              if key == "Austin"}
    assert austin == {-50: 2, -40: 2, -30: 2, -20: 2, -10: 2, 0: 2}
    boise = {(start - T0).total_seconds(): v["count"] for (key, start), v in city.items()
             if key == "Boise"}
    assert boise == {-50: 1, -40: 1, -30: 1, -20: 1, -10: 1, 0: 1,
                     10: 1, 20: 1, 30: 1, 40: 1, 50: 1, 60: 1}
    assert city[("Dallas", T0)] == {"location": "Dallas", "state": "TX", "count": 1}
    assert all(r.window_end - r.window_start == dt.timedelta(minutes=1) for r in rows
               if r.stream == case_reports.CITY)
    latest = {r.key: r for r in rows if r.stream == case_reports.LATEST}
    assert sorted(latest) == ["a", "b", "c", "d", "e"]
    assert latest["e"].window_start == at(65) and latest["e"].values["age"] == 105


def test_city_windows_merge_the_batch_panes_with_the_stored_ones(test_settings: Any) -> None:
    stored_pane = ResultRow(case_reports.PANES, "Austin", T0, at(10),
                            {"location": "Austin", "state": "TX", "count": 3})
    asked = []

    def stored(stream: str, start: dt.datetime, end: dt.datetime) -> list[ResultRow]:
        asked.append((stream, start, end))
        return [stored_pane]

    batch = [{"location": "Austin", "state": "TX", "count": 2, "window_start_us": START_US + TEN_S,
              "window_end_us": START_US + 2 * TEN_S,
              "cases": [{"id": "x", "name": "n", "location": "Austin", "state": "TX", "age": 3,
                         "infection": "flu", "event_time_us": START_US + TEN_S}]}]
    rows = case_reports.CityAndLatest(test_settings, stored)(batch)
    city = {r.window_start: r.values["count"] for r in rows if r.stream == case_reports.CITY}
    assert city == {at(-40): 5, at(-30): 5, at(-20): 5, at(-10): 5, at(0): 5, at(10): 2}
    assert asked == [(case_reports.PANES, at(-50), at(70))]
    assert [r.key for r in rows if r.stream == case_reports.LATEST] == ["x"]


def test_latest_cases_rows_are_keyed_by_id_at_their_event_time() -> None:
    [row] = case_reports.latest_rows([{"id": "a", "name": "n", "location": "Austin", "state": "TX",
                                       "age": 3, "infection": "flu", "event_time_us": START_US}])
    assert (row.stream, row.key, row.window_start) == ("cases_latest", "a", T0)
    assert row.values["event_time"] == "2026-11-22T05:00:00.000Z"


# -- census


def test_census_statistics_on_the_real_files(spark: SparkSession, test_settings: Any) -> None:
    from processing.context import JobContext

    ctx = JobContext(spark, test_settings, None)
    population, income = census_stats.read_inputs(spark, ctx)
    stats = {(r["year"], r["sex"]): r.asDict()
             for r in census_stats.population_stats(population).collect()}
    assert len(stats) == 2 * 15  # 1850..2000 every 10 years, except 1890 (its records burned)
    raw = [r.asDict() for r in population.where("year = 2000 AND sex = 2").collect()]
    total = sum(r["people"] for r in raw)
    mean = sum(r["people"] * (r["age"] + 2.5) for r in raw) / total
    sd = math.sqrt(sum(r["people"] * (r["age"] + 2.5 - mean) ** 2 for r in raw) / total)
    women_2000 = stats[(2000, 2)]
    assert women_2000["population"] == total
    assert women_2000["mean_age"] == pytest.approx(mean)
    assert women_2000["stddev_age"] == pytest.approx(sd)
    ages = [r.asDict() for r in census_stats.age_distribution(population).where(
        "year = 2000 AND sex = 2").collect()]
    assert sum(r["share"] for r in ages) == pytest.approx(1.0)
    shares = [r.asDict() for r in census_stats.income_shares(income).where(
        "state = 'Alabama'").collect()]
    assert shares and sum(r["share"] for r in shares) == pytest.approx(1.0, abs=0.01)
