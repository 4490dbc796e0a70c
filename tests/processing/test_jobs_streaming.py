"""Each streaming job against the real broker: produce a known set, run availableNow,
compare what the store holds with the expected rows exactly."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from buffer import kafka
from common import settings
from common.records import AccessRecord, CaseReport, RandomNumber, Record
from processing import case_reports, census_stats, nginx_traffic, random_stats
from processing.context import JobContext
from storage.disk import DiskStore

pytestmark = pytest.mark.spark

T0 = dt.datetime(2026, 11, 22, 6, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def make_ctx(spark: SparkSession, bootstrap: str, data_dir: Path, **topics: str) -> JobContext:
    cfg = settings.load(environ={"DATA_DIR": str(data_dir), "SHUFFLE_PARTITIONS": "2",
                                 "WATERMARK_SECONDS": "5", "WINDOW_SECONDS": "10",
                                 "RANDOM_BINS": "-1,0,1"})
    return JobContext(spark, cfg, bootstrap, sink="disk", starting_offsets="earliest",
                      available_now=True, topic_names=dict(topics))


def publish(bootstrap: str, topic: str, records: list[Record]) -> None:
    publisher = kafka.JsonPublisher(bootstrap)
    for r in records:
        publisher.publish(topic, r.to_json(), key=r.key())
    publisher.flush()


def run_once(spark: SparkSession, ctx: JobContext, start: Callable[..., Any]) -> list[Any]:
    queries = start(spark, ctx)
    for q in queries:
        q.awaitTermination(180)
        assert q.exception() is None, q.exception()
    return queries


def stored(ctx: JobContext, stream: str) -> dict[tuple[str, dt.datetime], dict[str, Any]]:
    store = DiskStore(ctx.settings.sqlite_path)
    try:
        return {(r.key, r.window_start): dict(r.values) for r in store.latest(stream, 10_000)}
    finally:
        store.close()


def test_random_stats_job(spark: SparkSession, bootstrap: str, new_topic: Callable[[int], str],
                          tmp_path: Path) -> None:
    topic = new_topic(3)
    values = [0.5, -0.5, 2.0, -3.0, 0.25]
    records = [RandomNumber(event_time=at(i * 3), producer="p1", seq=i, value=v)
               for i, v in enumerate(values)]
    records += [RandomNumber(event_time=at(1), producer="p2", seq=7, value=0.0)]
    publish(bootstrap, topic, records)
    ctx = make_ctx(spark, bootstrap, tmp_path, random=topic)
    try:
        run_once(spark, ctx, random_stats.start)
    finally:
        ctx.close()
    rows = stored(ctx, "random_stats")
    assert sorted(rows) == [("p1", T0), ("p1", at(10)), ("p2", T0)]
    first = rows[("p1", T0)]  # seq 0..3 at 0, 3, 6, 9 s
    assert (first["count"], first["min"], first["max"]) == (4, -3.0, 2.0)
    assert first["mean"] == pytest.approx(sum(values[:4]) / 4)
    assert first["histogram"] == {"edges": [-1.0, 0.0, 1.0], "counts": [1, 1, 1, 1]}
    assert (first["first_seq"], first["last_seq"], first["gaps"], first["duplicates"]) == (0, 3, 0, 0)
    assert rows[("p1", at(10))]["count"] == 1 and rows[("p2", T0)]["first_seq"] == 7


def test_nginx_traffic_job(spark: SparkSession, bootstrap: str, new_topic: Callable[[int], str],
                           tmp_path: Path) -> None:
    topic = new_topic(3)
    records = [AccessRecord(event_time=at(s), status=st, service="api", upstream="u:80",
                            host="shop", request_time=0.1, bytes=10)
               for s, st in [(1, 200), (2, 500), (3, 404), (12, 200)]]
    publish(bootstrap, topic, records)
    ctx = make_ctx(spark, bootstrap, tmp_path, nginx=topic)
    try:
        run_once(spark, ctx, nginx_traffic.start)
    finally:
        ctx.close()
    rows = stored(ctx, "nginx_edges")
    assert sorted(rows) == [("shop|INTERNET|api", T0), ("shop|INTERNET|api", at(10)),
                            ("shop|api|u:80", T0), ("shop|api|u:80", at(10))]
    entry = rows[("shop|INTERNET|api", T0)]
    assert (entry["requests"], entry["status_2xx"], entry["status_4xx"], entry["status_5xx"],
            entry["bytes"]) == (3, 1, 1, 1, 30)
    assert entry["error_rate"] == pytest.approx(1 / 3)


def test_case_reports_job(spark: SparkSession, bootstrap: str, new_topic: Callable[[int], str],
                          tmp_path: Path) -> None:
    topic = new_topic(3)
    cases = [CaseReport(event_time=at(s), id=f"c{s}", name="x", location=loc, state=st, age=age,
                        infection="flu")
             for s, loc, st, age in [(1, "Austin", "TX", 30), (2, "Austin", "TX", 35),
                                     (3, "Reno", "NV", 70), (14, "Reno", "NV", 9)]]
    publish(bootstrap, topic, cases)
    ctx = make_ctx(spark, bootstrap, tmp_path, cases=topic)
    try:
        run_once(spark, ctx, case_reports.start)
    finally:
        ctx.close()
    areas = {key: v["count"] for (key, _), v in stored(ctx, "cases_top_areas").items()}
    assert areas == {"Austin": 2, "Reno": 2}
    assert {k: v["count"] for (k, _), v in stored(ctx, "cases_by_state").items()} == {"TX": 2, "NV": 2}
    assert {k: v["count"] for (k, _), v in stored(ctx, "cases_by_age").items()} == {
        "30-39": 2, "70-79": 1, "0-9": 1}
    latest = DiskStore(ctx.settings.sqlite_path).latest("cases_latest", 3)
    assert [r.key for r in latest] == ["c14", "c3", "c2"]
    city = stored(ctx, "cases_city_sliding")
    assert city[("Austin", T0)]["count"] == 2 and city[("Reno", at(10))]["count"] == 1
    assert len([k for k in city if k[0] == "Austin"]) == 6  # six 1-min windows cover 00:01-00:02


def test_census_batch_job_is_idempotent(spark: SparkSession, tmp_path: Path) -> None:
    ctx = make_ctx(spark, "unused:1", tmp_path)
    ctx.bootstrap = None  # a batch job needs no broker; nothing is pushed
    try:
        assert census_stats.run(spark, ctx) == 0
        first = {s: stored(ctx, s) for s in census_stats.STREAMS}
        assert census_stats.run(spark, ctx) == 0
        again = {s: stored(ctx, s) for s in census_stats.STREAMS}
    finally:
        ctx.close()
    assert len(first["census_population"]) == 30 and len(first["census_age"]) == 570
    assert len(first["census_income"]) == len(json.loads(
        (ctx.settings.census_dir / "income.json").read_text()))
    assert again == first


def test_replay_gives_the_same_windows_as_the_incremental_run(
    spark: SparkSession, bootstrap: str, new_topic: Callable[[int], str], tmp_path: Path
) -> None:
    """Backfill (one availableNow run from earliest) equals a run that saw the data arrive."""
    topic = new_topic(3)
    live = make_ctx(spark, bootstrap, tmp_path / "live", random=topic)
    waves = [[RandomNumber(event_time=at(w * 7 + i), producer="p", seq=w * 3 + i, value=i - 1.0)
              for i in range(3)] for w in range(3)]
    try:
        for wave in waves:
            publish(bootstrap, topic, list(wave))
            run_once(spark, live, random_stats.start)
    finally:
        live.close()
    replay = make_ctx(spark, bootstrap, tmp_path / "replay", random=topic)
    try:
        run_once(spark, replay, random_stats.start)
    finally:
        replay.close()
    assert stored(replay, "random_stats") == stored(live, "random_stats")
    assert {k: v["count"] for k, v in stored(live, "random_stats").items()} == {
        ("p", T0): 6, ("p", at(10)): 3}
