"""The fair scheduler's pools: each job's batches run in its context's pool, restarts too.

Real queries on the test session (Spark's ``rate`` source, no broker); the test session runs
with SPARK_SCHEDULER=fair, the default.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from common import settings
from common.waiting import eventually
from processing import queries
from processing.context import JobContext

pytestmark = pytest.mark.spark

POOL = "spark.scheduler.pool"


class PoolSeen:
    """foreachBatch function noting the scheduler pool its batch's jobs are submitted in."""

    def __init__(self) -> None:
        self.pools: list[str | None] = []

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        batch.count()  # a job of the batch, submitted from this thread
        self.pools.append(batch.sparkSession.sparkContext.getLocalProperty(POOL))


def test_the_session_schedules_fairly_from_the_kits_pools(spark: SparkSession) -> None:
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.scheduler.mode") == "FAIR"
    assert Path(conf.get("spark.scheduler.allocation.file") or "").name == "fairscheduler.xml"


@pytest.mark.parametrize("job", ["vmstat_windows", "random_stats"])
def test_a_jobs_batches_run_in_its_pool_and_so_do_its_restarts(
        spark: SparkSession, tmp_path: Path, job: str) -> None:
    cfg = settings.load(environ={"DATA_DIR": str(tmp_path)})
    ctx = JobContext(spark, cfg, None).for_job(job)
    expected = queries.LIVE_POOL if job == "vmstat_windows" else queries.OTHER_POOL
    seen = PoolSeen()
    rows = spark.readStream.format("rate").option("rowsPerSecond", 5).load()

    def start() -> StreamingQuery:
        return (rows.writeStream.queryName(f"pool-{job}").foreachBatch(seen)
                .option("checkpointLocation", str(tmp_path / "checkpoint"))
                .trigger(processingTime="0.2 seconds").start())

    before = spark.sparkContext.getLocalProperty(POOL)
    query = ctx.launch(start)
    assert spark.sparkContext.getLocalProperty(POOL) == before  # the caller's is given back
    try:
        eventually(lambda: len(seen.pools) >= 2, 60, "two batches", interval_s=0.1)
        query.stop()
        # The query supervisor restarts a failed query with the launcher, from its own thread.
        restarted: list[Any] = []
        thread = threading.Thread(target=lambda: restarted.append(ctx.launchers[query.name]()))
        thread.start()
        thread.join(60)
        query = restarted[0]
        count = len(seen.pools)
        eventually(lambda: len(seen.pools) >= count + 2, 60, "two batches after the restart",
                   interval_s=0.1)
    finally:
        query.stop()
    assert set(seen.pools) == {expected}, seen.pools
