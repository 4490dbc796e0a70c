"""Starting queries and waiting on them: the kit's trigger, checkpoint and name, one at a time.

:func:`start_query` starts a query and waits until it has initialised its sources;
:func:`wait_for_first_batch` lets the first query run its first batch with data alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from common.settings import Settings
from common.waiting import DeadlineExceeded, eventually

__all__ = ["LIVE_POOL", "OTHER_POOL", "in_pool", "start_query", "wait_for_first_batch",
           "wait_until_initialised"]

log = logging.getLogger(__name__)

#: The fair scheduler's pools (processing/fairscheduler.xml): the host-metrics windows' batches
#: first, every other query's after them. Ignored under SPARK_SCHEDULER=fifo.
LIVE_POOL, OTHER_POOL = "live", "other"
_POOL = "spark.scheduler.pool"
T = TypeVar("T")


def in_pool(spark: SparkSession, pool: str, start: Callable[[], T]) -> T:
    """``start()`` with ``pool`` as this thread's scheduler pool, restored afterwards.

    A streaming query's thread copies the local properties of the thread that starts it,
    so every job of its micro-batches (the ``foreachBatch`` included) runs in ``pool``.
    """
    context = spark.sparkContext
    before = context.getLocalProperty(_POOL)
    context.setLocalProperty(_POOL, pool)
    try:
        return start()
    finally:
        context.setLocalProperty(_POOL, before)  # type: ignore[arg-type]  # None unsets it


def start_query(df: DataFrame, name: str, writer: Callable[[DataFrame, int], None],
                settings: Settings, output_mode: str = "update", available_now: bool = False,
                checkpoint_name: str | None = None, trigger_seconds: float | None = None
                ) -> StreamingQuery:
    """Start ``df`` with ``writer`` as ``foreachBatch``, named ``name``, checkpointed under DATA_DIR.

    Triggered every ``trigger_seconds`` (default: TRIGGER_SECONDS)."""
    checkpoint = settings.checkpoint_dir / (checkpoint_name or name)
    writer_stream = (
        df.writeStream.queryName(name)
        .outputMode(output_mode)
        .foreachBatch(writer)
        .option("checkpointLocation", str(checkpoint))
    )
    if available_now:
        writer_stream = writer_stream.trigger(availableNow=True)
    else:
        every = settings.trigger_seconds if trigger_seconds is None else trigger_seconds
        writer_stream = writer_stream.trigger(processingTime=f"{every:g} seconds")
    query = writer_stream.start()
    wait_until_initialised(query)
    log.info("query %s started (checkpoint %s)", name, checkpoint)
    return query


#: How long a query may take to initialise its sources before the next one starts anyway.
INITIALISE_TIMEOUT_S = 120.0


def wait_until_initialised(query: StreamingQuery, timeout_s: float = INITIALISE_TIMEOUT_S) -> None:
    """Wait until ``query`` has initialised its sources (or stopped), so queries start one by one.

    Introduced for the Python Kafka data source the kit used before Spark's own connector
    (each query's reader was a Python process that Spark gave a fixed 10 s to connect back;
    a dozen at once failed on 2 cores). Spark's connector initialises in the JVM, so this
    wait now costs little and may no longer be needed: not yet measured on the new stack
    (docs/benchmark-history.md), so it stays until a figure says otherwise.
    """
    def initialised() -> bool:
        return not query.isActive or not str(query.status.get("message", "")).startswith(
            "Initializing")

    try:
        eventually(initialised, timeout_s, f"query {query.name} to initialise its sources")
    except DeadlineExceeded:
        log.warning("query %s still initialising after %.0f s; starting the next one",
                    query.name, timeout_s)


#: How long ``python -m processing`` lets the 1 s host-metrics query run its first batch
#: with data alone before starting the other queries (see :func:`wait_for_first_batch`).
FIRST_BATCH_TIMEOUT_S = 30.0


def wait_for_first_batch(query: StreamingQuery, timeout_s: float = FIRST_BATCH_TIMEOUT_S) -> bool:
    """Wait until ``query`` has processed a micro-batch with input rows (or stopped).

    A query's first batch with data is its slowest (Spark generates and compiles the
    code of its plan; the JIT is cold). The embedded stack starts its sources once the
    first query has started and waits here before starting the others. Measured with
    Apache Kafka and Spark's connector (2026-12-06, 2 cores, `bench/e2e_latency.py`): the
    first windows reach a page 19-25 s after `make run` with this wait (four runs) and
    30-33 s without it (two runs), so it stays. Returns False after ``timeout_s`` (no data
    yet: e.g. its source is not running); the caller goes on.
    """
    def done() -> bool:
        return not query.isActive or any(
            int(p.get("numInputRows") or 0) > 0 for p in query.recentProgress)

    try:
        eventually(done, timeout_s, f"query {query.name}'s first batch with data", interval_s=0.2)
    except DeadlineExceeded:
        log.info("query %s has had no data for %.0f s; starting the next queries", query.name,
                 timeout_s)
        return False
    return True
