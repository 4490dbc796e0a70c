"""Stopping quietly: a micro-batch interrupted by its query's stop, and Spark's loggers on stop.

``StreamingQuery.stop()`` interrupts the batch a query is running. Nothing is lost (the
batch is not committed and runs again from the checkpoint), so it is logged as one line,
not as a failure: :func:`collect` turns the interruption into :class:`BatchInterrupted`,
:func:`quiet_interrupted_batches` logs that as INFO, and :func:`quiet_spark_stop` silences
the warnings Spark prints for a query stopped between batches.
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession

__all__ = ["BatchInterrupted", "collect", "quiet_interrupted_batches", "quiet_spark_stop"]

log = logging.getLogger(__name__)


class BatchInterrupted(RuntimeError):
    """A micro-batch's Spark job was interrupted: its query is being stopped.

    Nothing is lost: the batch is not committed, and the query runs it again from its
    checkpoint when it starts next (the store's upserts make a replay harmless).
    """


def collect(batch: DataFrame, query: str | None, batch_id: int) -> list[Any]:
    """``batch.collect()``; an interruption (a query stopped mid-batch) is a BatchInterrupted.

    ``StreamingQuery.stop()`` interrupts the running batch's job. The Java error text
    (a stack trace of about 100 lines) would travel back to the JVM inside the writer's
    error, where Spark's handling of that text overflowed the stream thread's stack
    (a ``java.lang.StackOverflowError`` printed for each such query at shutdown);
    the short BatchInterrupted does not, and :func:`quiet_interrupted_batches` logs it
    as one line.
    """
    from py4j.protocol import Py4JJavaError

    try:
        return batch.collect()
    except Py4JJavaError as e:
        if not _is_interruption(e):
            raise
    raise BatchInterrupted(f"batch {batch_id} of {query} interrupted by the query's stop; "
                           "it runs again from the checkpoint at the next start")


def _is_interruption(error: Any) -> bool:
    try:
        name = error.java_exception.getClass().getName()
    except Exception:  # noqa: BLE001 - the JVM may be going away as well
        return False
    return name == "java.lang.InterruptedException"


class _InterruptedBatchAsInfo(logging.Filter):
    """py4j logs every error a foreachBatch function raises with its traceback, at ERROR;
    a BatchInterrupted (a stop, not a failure) becomes one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BatchInterrupted):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "%s", (str(error),)
            record.exc_info, record.exc_text = None, None
        return True


def quiet_interrupted_batches() -> None:
    """Install the filter that logs BatchInterrupted as one INFO line (once per process)."""
    py4j_log = logging.getLogger("py4j.clientserver")
    if not any(isinstance(f, _InterruptedBatchAsInfo) for f in py4j_log.filters):
        py4j_log.addFilter(_InterruptedBatchAsInfo())


#: Spark loggers whose warnings on stopping say nothing: a query stopped between batches has
#: no job to cancel ("Failed to cancel job group ... Cannot find active jobs for it", twice).
QUIET_ON_STOP = ("org.apache.spark.scheduler.DAGScheduler",)


def quiet_spark_stop(spark: SparkSession) -> None:
    """Raise the level of :data:`QUIET_ON_STOP` to ERROR; called when the application stops."""
    try:
        log4j = spark._jvm.org.apache.logging.log4j  # type: ignore[union-attr]
        for name in QUIET_ON_STOP:
            log4j.core.config.Configurator.setLevel(name, log4j.Level.ERROR)
    except Exception:  # cosmetic: never let it stand in the way of stopping
        log.debug("could not quieten Spark's loggers", exc_info=True)
