"""A batch interrupted by its query's stop ends in one INFO line; Spark's loggers are quietened.

Real streaming queries on the test session (Spark's ``rate`` source, no broker needed), with a
``foreachBatch`` function whose Spark job is slow enough to be stopped midway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from common.waiting import eventually
from processing.stopping import BatchInterrupted, collect, quiet_interrupted_batches

pytestmark = pytest.mark.spark


class SlowWriter:
    """foreachBatch function whose Spark job takes about a second (a Python UDF that works
    0.2 s a row); records how each batch ended."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.written: list[int] = []
        self.collecting = threading.Event()  # set while a batch's Spark job runs

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        from pyspark.sql import functions as F

        # useArrow=False: pyspark 4.2 would try Arrow (spark.sql.execution.pythonUDF.arrow
        # .enabled) and warn that the kit has neither pyarrow nor pandas.
        @F.udf("long", useArrow=False)
        def slow(value):  # type: ignore[no-untyped-def]  # no hints: pyspark reads them as a pandas UDF
            import time

            time.sleep(0.2)  # the batch's work, not a wait for something
            return value

        self.collecting.set()
        try:
            collect(batch.select(slow("value")).coalesce(1), "slow_batches", batch_id)
        except BaseException as e:
            self.errors.append(e)
            raise
        finally:
            self.collecting.clear()
        self.written.append(batch_id)


def slow_query(spark: SparkSession, tmp_path: Path, writer: SlowWriter,
               trigger_s: float, rows_per_s: int) -> StreamingQuery:
    rows = spark.readStream.format("rate").option("rowsPerSecond", rows_per_s).load()
    return (rows.writeStream.queryName("slow_batches").foreachBatch(writer)
            .option("checkpointLocation", str(tmp_path / "cp"))
            .trigger(processingTime=f"{trigger_s} seconds").start())


def stop_during_a_batch(query: StreamingQuery, writer: SlowWriter,
                        stop: Callable[[], None]) -> None:
    try:
        eventually(lambda: writer.written, 120, "a first batch written", interval_s=0.1)
        # The batch's job runs 0.2 s a row (3 rows or more): stopped well inside it.
        assert writer.collecting.wait(30), "no batch ran its Spark job"
        stop()
    finally:
        if query.isActive:
            query.stop()


def test_a_batch_stopped_midway_ends_in_one_info_line(
        spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    quiet_interrupted_batches()
    writer = SlowWriter()
    query = slow_query(spark, tmp_path, writer, trigger_s=0.5, rows_per_s=5)  # back to back
    with caplog.at_level(logging.INFO, logger="py4j.clientserver"):
        stop_during_a_batch(query, writer, query.stop)
    assert [type(e) for e in writer.errors] == [BatchInterrupted]
    py4j = [r for r in caplog.records if r.name == "py4j.clientserver"]
    assert [r.getMessage() for r in py4j if r.levelno >= logging.WARNING] == []
    ours = [r for r in py4j if "interrupted by the query's stop" in r.getMessage()]
    assert [(r.levelname, r.exc_info) for r in ours] == [("INFO", None)]


def test_stopping_quietens_the_dag_schedulers_warnings(spark: SparkSession) -> None:
    from processing.stopping import QUIET_ON_STOP, quiet_spark_stop

    log4j = spark._jvm.org.apache.logging.log4j  # type: ignore[union-attr]
    name = QUIET_ON_STOP[0]
    before = str(log4j.LogManager.getLogger(name).getLevel())
    assert before != "ERROR"
    try:
        quiet_spark_stop(spark)
        assert str(log4j.LogManager.getLogger(name).getLevel()) == "ERROR"
    finally:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.toLevel(before))
