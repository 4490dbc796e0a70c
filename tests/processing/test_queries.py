"""``python -m processing`` lets the 1 s host-metrics query run its first batch with data alone
before it starts the others (``queries.wait_for_first_batch``). Real queries on the test session."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from processing.queries import wait_for_first_batch

pytestmark = pytest.mark.spark


def test_returns_once_a_batch_with_rows_has_run(spark: SparkSession, tmp_path: Path) -> None:
    query = (spark.readStream.format("rate").option("rowsPerSecond", 5).load()
             .writeStream.format("noop").queryName("first_batch_rate")
             .option("checkpointLocation", str(tmp_path / "cp"))
             .trigger(processingTime="0.5 seconds").start())
    try:
        assert wait_for_first_batch(query, timeout_s=90) is True
        assert any(p["numInputRows"] > 0 for p in query.recentProgress)
    finally:
        query.stop()


def without_data(spark: SparkSession, tmp_path: Path, name: str) -> StreamingQuery:
    """A query over an empty folder of JSON files: it runs no batch until a file appears."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return (spark.readStream.schema("x INT").json(str(inbox))
            .writeStream.format("noop").queryName(name)
            .option("checkpointLocation", str(tmp_path / "cp"))
            .trigger(processingTime="0.5 seconds").start())


def test_gives_up_after_the_timeout_when_no_data_comes(spark: SparkSession, tmp_path: Path) -> None:
    query = without_data(spark, tmp_path, "first_batch_empty")
    try:
        began = time.monotonic()
        assert wait_for_first_batch(query, timeout_s=2.0) is False
        assert time.monotonic() - began >= 2.0
        assert query.isActive
    finally:
        query.stop()


def test_a_stopped_query_does_not_hold_up_the_others(spark: SparkSession, tmp_path: Path) -> None:
    query = without_data(spark, tmp_path, "first_batch_stopped")
    query.stop()
    assert wait_for_first_batch(query, timeout_s=60) is True
