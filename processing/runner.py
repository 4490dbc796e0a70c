"""Running jobs in one Spark application: the ``__main__`` every job module shares.

A streaming job module exposes ``start(spark, ctx) -> list[StreamingQuery]``
and ends with ``sys.exit(run_job(__doc__, start))``; a batch job exposes
``run(spark, ctx) -> int`` and ends with ``sys.exit(run_batch_job(__doc__, run))``, so that

* ``spark-submit processing/<job>.py`` runs that job alone,
* ``spark-submit processing/jobs.py`` runs them all in one application (``processing.jobs``
  lists them), and
* ``python -m processing`` does the same from the kit's virtual environment (the embedded stack).

:func:`run_jobs` parses the options, starts Spark, starts the jobs one by one, runs the
batch jobs, then keeps the queries running (``processing.supervisor``) until stopped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from pyspark.sql import SparkSession

from common.settings import argument_parser
from processing.context import FAST_TRIGGER_JOBS, BatchFn, JobContext, StartFn
from processing.queries import wait_for_first_batch
from processing.stopping import quiet_interrupted_batches, quiet_spark_stop
from processing.supervisor import QuerySupervisor

__all__ = ["job_name", "run_batch_job", "run_job", "run_jobs"]

log = logging.getLogger(__name__)


def _parser(description: str) -> argparse.ArgumentParser:
    parser = argument_parser(description, only=[
        "kafka_bootstrap_servers", "jars_dir", "data_dir", "log_level", "spark_master",
        "spark_driver_memory", "shuffle_partitions", "trigger_seconds", "other_trigger_seconds",
        "watermark_seconds",
        "window_seconds", "sliding_window_seconds", "slide_seconds", "max_offsets_per_trigger",
        "sink", "retention_hours", "random_bins", "cassandra_hosts",
    ])
    parser.add_argument("--replay", action="store_true",
                        help="backfill: read the topics from the start with availableNow, then exit")
    parser.add_argument("--starting-offsets", default="earliest",
                        help="where a new query (no checkpoint) starts: earliest (default) or latest")
    return parser


def run_jobs(description: str, starts: list[StartFn], app_name: str,
             argv: list[str] | None = None, batches: list[BatchFn] | None = None) -> int:
    """Parse options, build one session, start every job's queries, run the batch jobs once,
    then wait; Ctrl-C stops the queries. With only batch jobs, returns when they are done."""
    from common import cli
    from processing.health import HealthReporter
    from processing.spark import session

    args, settings = cli.start(_parser(description), argv)
    quiet_interrupted_batches()
    if settings.kafka_bootstrap_servers is None and starts:
        log.error("KAFKA_BOOTSTRAP_SERVERS (or --kafka-bootstrap-servers) is required")
        return 2
    if settings.cassandra_configured() and settings.sink != "disk":
        from storage.base import StoreError
        from storage.cassandra_rows import check_ttl

        try:  # refused before Spark starts, not at the first batch
            check_ttl(dt.timedelta(hours=settings.retention_hours))
        except StoreError as e:
            log.error("%s", e)
            return 2
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    log.info("starting Spark (%s) ...", settings.spark_master)
    spark = session(settings, app_name)
    ctx = JobContext(spark, settings, settings.kafka_bootstrap_servers, sink=settings.sink,
                     starting_offsets="earliest" if args.replay else args.starting_offsets,
                     available_now=args.replay)
    reporter = HealthReporter(settings.kafka_bootstrap_servers, app_name)
    spark.streams.addListener(reporter)
    stopping = threading.Event()
    cli.on_stop(lambda _signum: stopping.set())
    queries = QuerySupervisor(ctx.launchers)
    try:
        for i, start in enumerate(starts):
            job = job_name(start)
            started = start(spark, ctx.for_job(job))
            queries.watch(started)
            if job in FAST_TRIGGER_JOBS and i < len(starts) - 1:
                # Its first batch alone, then the others (wait_for_first_batch);
                # not a Cassandra query's: its first batch waits for the node to answer.
                for query in started:
                    if not str(query.name).endswith("@cassandra"):
                        wait_for_first_batch(query)
        names = queries.names
        reporter.announce_ready(names)
        if names:
            log.info("%d queries running: %s", len(names), ", ".join(names))
        if not names:  # batch jobs alone: run them and return
            for batch in batches or []:
                code = batch(spark, ctx)
                if code != 0:
                    log.error("batch job %s failed with %d", batch.__module__, code)
                    return code
            return 0
        # Beside streaming queries, the batch jobs run in a thread of their own: one waiting
        # for a store (Cassandra still starting) must not stop the queries being watched.
        threading.Thread(target=_run_batches, args=(batches or [], spark, ctx), daemon=True,
                         name="batch-jobs").start()
        while not stopping.is_set():
            if not queries.check():
                return 1
            if not queries.any_active():
                log.info("all queries finished")
                return 0
            stopping.wait(0.5)
        return 0
    finally:
        quiet_spark_stop(spark)
        queries.stop_all()
        ctx.close()
        reporter.close(wait_for=queries.names)
        spark.stop()


def _run_batches(batches: list[BatchFn], spark: SparkSession, ctx: JobContext) -> None:
    for batch in batches:
        try:
            code = batch(spark, ctx)
        except Exception:  # logged; the streaming queries keep running
            log.exception("batch job %s failed", batch.__module__)
            continue
        if code != 0:
            log.error("batch job %s failed with %d", batch.__module__, code)


def job_name(fn: Callable[..., Any]) -> str:
    name = fn.__module__.rsplit(".", 1)[-1]
    if name == "__main__":  # run as a script by spark-submit
        name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    return name


def run_job(description: str, start: StartFn, argv: list[str] | None = None) -> int:
    """``__main__`` of a single streaming job (``spark-submit processing/<job>.py``)."""
    return run_jobs(description, [start], app_name=job_name(start), argv=argv)


def run_batch_job(description: str, run: BatchFn, argv: list[str] | None = None) -> int:
    """``__main__`` of a batch job: runs once and returns its exit code."""
    return run_jobs(description, [], app_name=job_name(run), argv=argv, batches=[run])
