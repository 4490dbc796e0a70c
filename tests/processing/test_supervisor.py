"""A failed query is restarted alone, from its checkpoint; repeated failures end the application.

Real streaming queries on the test session (Spark's ``rate`` source, no broker needed), with a
``foreachBatch`` function that fails on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from common.waiting import eventually
from processing.supervisor import LaunchFn, QuerySupervisor
from tests.processing.test_stopping import SlowWriter, slow_query, stop_during_a_batch

pytestmark = pytest.mark.spark


class Writer:
    """foreachBatch function that raises for its first ``failures`` batches."""

    def __init__(self, failures: int, message: str = "on purpose",
                 error: type[Exception] = RuntimeError) -> None:
        self.failures = failures
        self.message = message
        self.error = error
        self.failed: list[int] = []
        self.written: list[int] = []

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if len(self.failed) < self.failures:
            self.failed.append(batch_id)
            raise self.error(f"failing batch {batch_id}: {self.message}")
        self.written.append(batch_id)


def launcher(spark: SparkSession, name: str, checkpoint: Path, writer: Writer,
             launches: list[str]) -> LaunchFn:
    rows = spark.readStream.format("rate").option("rowsPerSecond", 5).load()

    def launch() -> StreamingQuery:
        launches.append(name)
        return (rows.writeStream.queryName(name).foreachBatch(writer)
                .option("checkpointLocation", str(checkpoint))
                .trigger(processingTime="0.5 seconds").start())
    return launch


def wait_until_written(supervisor: QuerySupervisor, writer: Writer, timeout_s: float,
                       what: str) -> None:
    """Check the supervisor (it must not give up) until ``writer`` has written a batch."""
    def written() -> bool:
        assert supervisor.check(), "the supervisor gave up"
        return bool(writer.written)

    eventually(written, timeout_s, what, interval_s=0.1)


def test_a_failed_query_is_restarted_alone_and_replays_its_failed_batch(
    spark: SparkSession, tmp_path: Path
) -> None:
    failing, healthy = Writer(failures=1), Writer(failures=0)
    launches: list[str] = []
    launchers = {
        "flaky": launcher(spark, "flaky", tmp_path / "flaky", failing, launches),
        "steady": launcher(spark, "steady", tmp_path / "steady", healthy, launches),
    }
    supervisor = QuerySupervisor(launchers, max_backoff_s=0.2)
    supervisor.watch([launchers["flaky"](), launchers["steady"]()])
    steady = supervisor.queries["steady"]
    try:
        wait_until_written(supervisor, failing, 90, "the failed query to write after its restart")
        assert failing.failed == [0]
        # Restarted from its checkpoint: the batch that failed is the first one written.
        assert failing.written[0] == 0
        assert launches == ["flaky", "steady", "flaky"]
        assert len(supervisor.restarts["flaky"]) == 1
        assert "steady" not in supervisor.restarts
        # The other query was not touched: the same query object, still running.
        assert supervisor.queries["steady"] is steady and steady.isActive
        assert supervisor.queries["flaky"].isActive
    finally:
        supervisor.stop_all()
    assert not supervisor.any_active()


def test_a_query_that_keeps_failing_makes_the_supervisor_give_up(
    spark: SparkSession, tmp_path: Path
) -> None:
    doomed = Writer(failures=10**6)
    launches: list[str] = []
    launchers = {"doomed": launcher(spark, "doomed", tmp_path / "doomed", doomed, launches)}
    supervisor = QuerySupervisor(launchers, max_restarts=2, max_backoff_s=0.2)
    supervisor.watch([launchers["doomed"]()])
    try:
        eventually(lambda: not supervisor.check(), 90, "the supervisor to give up",
                   interval_s=0.1)
        assert launches == ["doomed"] * 3  # started, then restarted twice
        assert len(doomed.failed) == 3
        assert not doomed.written
    finally:
        supervisor.stop_all()


@pytest.mark.parametrize("failure", ["overloaded", "store unreachable"])
def test_failures_of_an_overloaded_machine_or_an_unreachable_store_never_make_it_give_up(
    spark: SparkSession, tmp_path: Path, failure: str
) -> None:
    from storage.base import StoreUnavailable

    starved = (Writer(failures=4, message="Python worker failed to connect back.")
               if failure == "overloaded" else
               Writer(failures=4, message="cannot connect to Cassandra", error=StoreUnavailable))
    launches: list[str] = []
    launchers = {"starved": launcher(spark, "starved", tmp_path / "starved", starved, launches)}
    supervisor = QuerySupervisor(launchers, max_restarts=2, max_backoff_s=0.2)
    supervisor.watch([launchers["starved"]()])
    try:
        wait_until_written(supervisor, starved, 120, "the query to write after 4 transient failures")
        assert launches == ["starved"] * 5
        assert supervisor.transient["starved"] == 4
        assert not supervisor.restarts.get("starved")  # none counted toward giving up
        assert starved.written[0] == 0  # every restart replayed the failed batch
    finally:
        supervisor.stop_all()


def test_stop_all_lets_a_running_batch_finish(spark: SparkSession, tmp_path: Path) -> None:
    writer = SlowWriter()
    # 3 rows a batch: its job takes about 0.6 s of the 3 s between triggers.
    query = slow_query(spark, tmp_path, writer, trigger_s=3, rows_per_s=1)
    supervisor = QuerySupervisor({})
    supervisor.watch([query])
    stop_during_a_batch(query, writer, lambda: supervisor.stop_all(between_batches_s=30))
    assert not query.isActive
    assert writer.errors == []
