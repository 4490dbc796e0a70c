"""The health reporter publishes the end of every query before it closes (real Spark, real broker)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from py4j.java_gateway import JavaObject
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from buffer import topics
from common.waiting import eventually
from processing.health import HealthReporter
from tests.kafka_topics import read_topic

pytestmark = pytest.mark.spark


def test_the_end_of_a_stopped_query_is_published_before_the_close(
    spark: SparkSession, bootstrap: str, tmp_path: Path
) -> None:
    app = f"test-{uuid.uuid4().hex[:8]}"
    reporter = HealthReporter(bootstrap, app)
    spark.streams.addListener(reporter)
    try:
        query = (spark.readStream.format("rate").option("rowsPerSecond", 5).load()
                 .writeStream.format("noop").queryName(f"{app}-rate")
                 .option("checkpointLocation", str(tmp_path / "cp"))
                 .trigger(processingTime="0.5 seconds").start())
        eventually(lambda: query.recentProgress, 90, "a progress report", interval_s=0.2)
        query.stop()
        reporter.close(wait_for=[f"{app}-rate"], timeout_s=30)
    finally:
        spark.streams.removeListener(reporter)
    assert reporter.terminated == {f"{app}-rate"}
    ours = [r["value"] for r in read_topic(bootstrap, topics.HEALTH.name)
            if r["value"].get("app") == app]
    assert [m["kind"] for m in ours if m["kind"] != "query_progress"] == \
        ["query_started", "query_terminated"]
    assert ours[-1]["query"] == f"{app}-rate"


def test_progress_reaches_the_reporter_as_json_with_observed_metrics(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Events come through the reporter's own py4j callback, not pyspark's conversion."""
    app = f"test-{uuid.uuid4().hex[:8]}"
    reporter = HealthReporter(None, app)
    spark.streams.addListener(reporter)
    name = f"{app}-observed"
    try:
        rows = spark.readStream.format("rate").option("rowsPerSecond", 20).load()
        query = (rows.observe("seen", F.count(F.lit(1)).alias("rows"))
                 .writeStream.format("noop").queryName(name)
                 .option("checkpointLocation", str(tmp_path / "cp"))
                 .trigger(processingTime="0.5 seconds").start())
        eventually(lambda: reporter.totals.get(name, {}).get("input_rows", 0) > 0, 90,
                   "a progress report with rows", interval_s=0.2)
        query.stop()
        reporter.close(wait_for=[name], timeout_s=30)
    finally:
        spark.streams.removeListener(reporter)
    assert isinstance(reporter._jlistener_obj, JavaObject)
    last = reporter.last[name]
    assert last.query == name and last.batch_id is not None and last.batch_id >= 0
    assert last.observed["seen"]["rows"] == last.input_rows
    assert reporter.terminated == {name}


def test_an_event_after_the_close_is_dropped_with_a_debug_line(
    bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    reporter = HealthReporter(bootstrap, f"test-{uuid.uuid4().hex[:8]}")
    reporter.close()
    with caplog.at_level(logging.DEBUG, logger="processing.health"):
        reporter.onQueryTerminated(SimpleNamespace(id="late", exception=None))
    assert [r.levelname for r in caplog.records] == ["DEBUG"]
    assert "after close not sent: QueryTerminated(" in caplog.text and "query='late'" in caplog.text
