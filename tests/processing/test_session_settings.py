"""Settings of ``processing.spark.session`` that cut the cost of every micro-batch.

Checkpoints go through Hadoop's FileSystem API.

Spark's default checkpoint manager (FileContext) makes Hadoop, which has no native library
here, start a ``readlink`` process for every rename and a ``chmod`` for every file it
writes. The kit's session picks the FileSystem-based manager; this counts the processes
the machine starts (``processes`` in /proc/stat) while a stateful query runs a few
batches, with each manager, on the test session.

Generated code: the session keeps more compiled classes than Spark's 100.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from processing.spark import CODEGEN_CACHE_ENTRIES, jvm_class_exists

pytestmark = pytest.mark.spark

KEY = "spark.sql.streaming.checkpointFileManagerClass"
FILE_CONTEXT = "org.apache.spark.sql.execution.streaming.checkpointing.FileContextBasedCheckpointFileManager"
BATCHES = 8


def processes_started() -> int:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("processes "):
            return int(line.split()[1])
    raise AssertionError("no 'processes' line in /proc/stat")


def forks_per_batch(spark: SparkSession, checkpoint: Path, manager: str) -> float:
    """Processes started per batch of a windowed count (state store, offset and commit logs)."""
    previous = spark.conf.get(KEY)
    spark.conf.set(KEY, manager)
    counts = (spark.readStream.format("rate").option("rowsPerSecond", 20).load()
              .withWatermark("timestamp", "5 seconds")
              .groupBy(F.window("timestamp", "5 seconds")).count())
    query = (counts.writeStream.format("noop").outputMode("update")
             .option("checkpointLocation", str(checkpoint))
             .trigger(processingTime="0.2 seconds").start())
    try:
        deadline = time.monotonic() + 120
        while (query.lastProgress or {}).get("batchId", -1) < 2:  # past the first batches' set-up
            assert time.monotonic() < deadline, "the query ran no batch in 120 s"
            query.awaitTermination(0.1)
        first, before = query.lastProgress["batchId"], processes_started()
        while query.lastProgress["batchId"] < first + BATCHES:
            assert time.monotonic() < deadline, f"the query ran fewer than {BATCHES} batches"
            query.awaitTermination(0.05)
        after, last = processes_started(), query.lastProgress["batchId"]
    finally:
        query.stop()
        spark.conf.set(KEY, previous)
    return (after - before) / (last - first)


def test_session_writes_checkpoints_through_the_filesystem_api(spark: SparkSession) -> None:
    manager = spark.conf.get(KEY)
    assert manager.endswith(".FileSystemBasedCheckpointFileManager")
    assert jvm_class_exists(spark, manager)


def test_checkpoints_start_far_fewer_processes_than_sparks_default(
        spark: SparkSession, tmp_path: Path) -> None:
    assert jvm_class_exists(spark, FILE_CONTEXT), "Spark renamed its default manager"
    ours = forks_per_batch(spark, tmp_path / "ours", spark.conf.get(KEY))
    default = forks_per_batch(spark, tmp_path / "default", FILE_CONTEXT)
    # Measured: 33 per batch fewer with the FileSystem API (/proc/stat counts threads too).
    assert default - ours > 20, (ours, default)


def compilations(spark: SparkSession) -> int:
    metrics = spark._jvm.org.apache.spark.metrics.source.CodegenMetrics  # type: ignore[union-attr]
    return int(metrics.METRIC_COMPILATION_TIME().getCount())


def test_generated_code_of_more_than_100_plans_stays_compiled(spark: SparkSession) -> None:
    # 150 plans whose generated code differs (the literal is in the code): more than
    # Spark's default cache holds, fewer than the session's.
    assert CODEGEN_CACHE_ENTRIES > 150
    plans = [spark.range(3).selectExpr(f"id * 7 + {1000 + i} AS x") for i in range(150)]
    for plan in plans:
        plan.collect()
    before = compilations(spark)
    for plan in plans:
        plan.collect()
    assert compilations(spark) == before
