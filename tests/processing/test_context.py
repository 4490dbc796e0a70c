"""The job context: each job's trigger interval, its queries started through it (none really
started: ``queries.start_query`` is replaced), each of them restartable alone."""

from __future__ import annotations

import types
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from common import settings as settings_module
from processing import case_reports, queries, random_stats, vmstat_windows
from processing.context import JobContext
from processing.spark import KAFKA_SCHEMA

pytestmark = pytest.mark.spark


def test_only_the_host_metrics_job_runs_at_the_fast_trigger(tmp_path: Any) -> None:
    s = settings_module.load({"DATA_DIR": str(tmp_path), "TRIGGER_SECONDS": "1",
                              "OTHER_TRIGGER_SECONDS": "5"})
    ctx = JobContext(None, s, None)  # type: ignore[arg-type]
    assert ctx.for_job("vmstat_windows").trigger_seconds is None  # TRIGGER_SECONDS
    other = ctx.for_job("case_reports")
    assert other.trigger_seconds == 5.0
    assert other.ledger is ctx.ledger and other._stores is ctx._stores  # shared, closed once


def _recorded_triggers(spark: SparkSession, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                       other_trigger_seconds: str) -> tuple[Any, dict[str, float | None]]:
    """A JobContext whose jobs read no Kafka and start no query, and the ``trigger_seconds``
    each query would have started with, by query name (filled as jobs start)."""
    s = settings_module.load({"DATA_DIR": str(tmp_path), "TRIGGER_SECONDS": "1",
                              "OTHER_TRIGGER_SECONDS": other_trigger_seconds})
    monkeypatch.setattr(JobContext, "read",
                        lambda self, role: spark.createDataFrame([], KAFKA_SCHEMA))
    triggers: dict[str, float | None] = {}

    def start_query(df: DataFrame, name: str, *args: Any, **kwargs: Any) -> Any:
        triggers[name] = kwargs["trigger_seconds"]
        return types.SimpleNamespace(name=name)

    monkeypatch.setattr(queries, "start_query", start_query)
    return JobContext(spark, s, "127.0.0.1:9", sink="disk"), triggers


def test_the_host_metrics_job_is_one_query_on_the_fast_trigger(
    spark: SparkSession, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared, triggers = _recorded_triggers(spark, tmp_path, monkeypatch, "5")
    ctx = shared.for_job("vmstat_windows")
    vmstat_windows.start(spark, ctx)
    # None: TRIGGER_SECONDS; the sliding windows are built from the tumbling ones' batches.
    assert triggers == {"vmstat_tumbling@disk": None}
    assert set(ctx.launchers) == set(triggers)  # each can be restarted alone


def test_the_other_jobs_queries_run_on_other_trigger_seconds(
    spark: SparkSession, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, triggers = _recorded_triggers(spark, tmp_path, monkeypatch, "10")
    random_stats.start(spark, ctx.for_job("random_stats"))
    case_reports.start(spark, ctx.for_job("case_reports"))
    assert len(triggers) == 3
    assert set(triggers.values()) == {10.0}, triggers
