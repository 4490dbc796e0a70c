"""Stage latencies, accounting and /metrics: pure functions first, then through the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common import settings
from common.messages import QueryProgress, ResultsBatch, SourceProgress
from display.feed import route
from display.health import StageLatency, accounting_rows, percentile, raw_stages, result_stages
from display.hub import Hub
from display.server import create_app
from storage.disk import DiskStore

TIMING = {"produced_at": "2026-11-22T05:00:00.000Z", "broker_at": "2026-11-22T05:00:00.010Z",
          "batch_started_at": "2026-11-22T05:00:00.600Z", "written_at": "2026-11-22T05:00:00.900Z"}


def test_result_stages_in_seconds() -> None:
    stages = result_stages(TIMING, "2026-11-22T05:00:00.950Z")
    assert stages == pytest.approx({"source→Kafka": 0.01, "Kafka→Spark": 0.59, "Spark→store": 0.3,
                                    "store→server": 0.05, "source→server": 0.95})


def test_raw_stages_use_the_kafka_timestamp_in_milliseconds() -> None:
    record = {"produced_at": "2026-11-22T05:00:00.000Z", "kafka_time": 1795323600003}
    stages = raw_stages(record, "2026-11-22T05:00:00.020Z")
    assert stages == pytest.approx({"source→Kafka": 0.003, "Kafka→server": 0.017,
                                    "source→server": 0.02})
    assert raw_stages({"produced_at": "garbage"}, "2026-11-22T05:00:00.020Z") == {}


def test_percentiles_and_the_last_minute() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0, 5.0], 50) == 3.0
    now = [0.0]
    latency = StageLatency(span=60, clock=lambda: now[0])
    for i in range(100):
        latency.add({"source→server": i / 100})
    now[0] = 30.0
    latency.add({"source→server": 5.0})
    summary = latency.summary()["source→server"]
    assert summary["n"] == 101 and summary["p50"] == pytest.approx(0.5)
    now[0] = 61.0  # the first hundred are older than a minute now
    assert latency.summary()["source→server"] == {"p50": 5.0, "p95": 5.0, "n": 1}


def test_accounting_balances_and_shows_what_is_missing() -> None:
    sources = [{"source": "vmstat", "topic": "vmstat", "sent": 100},
               {"source": "ingest", "topic": "cases", "sent": 10}]
    queries = {"vmstat_tumbling@disk": {"batch_id": 7, "lag": 3,
                                        "totals": {"input_rows": 97, "late_rows": 2, "malformed": 1}},
               "cases_totals@disk": {"batch_id": 3,
                                     "totals": {"input_rows": 10, "late_rows": 0, "malformed": 0}}}
    stored = {("vmstat_tumbling", "disk"): {"query": "vmstat_tumbling@disk",
                                            "batches": {5: 80, 6: 94, 8: 99}},  # 8: not reported yet
              ("cases_by_state", "disk"): {"query": "cases_totals@disk", "batches": {3: 9}}}
    by = {r["stream"]: r for r in accounting_rows(sources, queries, stored)}
    vmstat = by["vmstat_tumbling"]
    assert (vmstat["stored"], vmstat["late"], vmstat["unaccounted"]) == (94, 2, 0)
    assert vmstat["not_read_yet"] == 4  # in flight, not lost (the malformed one came from elsewhere)
    assert by["cases_by_state"]["unaccounted"] == 1  # no late group, yet a case missing: shown


def test_late_records_need_a_dropped_group() -> None:
    queries = {"random_stats@disk": {"batch_id": 2,
                                     "totals": {"input_rows": 100, "late_rows": 1, "malformed": 0}}}
    stored = {("random_stats", "disk"): {"query": "random_stats@disk", "batches": {2: 50}}}
    [row] = accounting_rows([], queries, stored)
    assert (row["late"], row["late_groups"], row["unaccounted"]) == (50, 1, 0)  # 50 in one window
    stored = {("random_stats", "disk"): {"query": "random_stats@disk", "batches": {2: 101}}}
    [row] = accounting_rows([], queries, stored)
    assert row["unaccounted"] == -2  # more stored than read: counted twice


def test_status_and_metrics_after_pushed_results(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "s.sqlite3")
    store.setup()
    cfg = settings.load(environ={"DATA_DIR": str(tmp_path)})
    hub = Hub()
    app, socketio, _ = create_app(cfg, stores={"disk": store}, hub=hub, start_feed=False)
    emitted: list[Any] = []
    route(hub, {
        "results": [ResultsBatch(stream="vmstat_tumbling", store="disk", rows=[], timing=TIMING,
                                 stored_records=42, query="vmstat_tumbling@disk", batch_id=4)],
        "health": [QueryProgress(component="processing", batch_id=4,
                                 query="vmstat_tumbling@disk", lag=0, input_rate=1.0, batch_ms=800,
                                 totals={"input_rows": 42, "late_rows": 0, "malformed": 0}),
                   SourceProgress(component="input", source="vmstat", topic="vmstat", sent=42,
                                  rejected=0, rate=1.0)],
    }, lambda *a: emitted.append(a))
    status = app.test_client().get("/api/status").get_json()
    demo7 = next(d for d in status["demos"] if d["number"] == 7)
    assert set(demo7["latency"]) >= {"source→Kafka", "Kafka→Spark", "Spark→store"}
    [row] = [r for r in status["accounting"] if r["stream"] == "vmstat_tumbling"]
    assert (row["produced"], row["stored"], row["unaccounted"]) == (42, 42, 0)
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'streamkit_query_lag_records{query="vmstat_tumbling@disk"} 0.0' in text
    assert 'streamkit_unaccounted_records{store="disk",stream="vmstat_tumbling"} 0.0' in text
    assert 'streamkit_stage_latency_seconds{demo="/demo7",quantile="0.5",stage="Spark→store"}' in text
    assert "streamkit_source_sent_records_total" in text


def test_not_read_yet_compares_with_a_source_report_sent_after_the_batch() -> None:
    """A source report older than the batch would make ``not_read_yet`` negative (seen in CI)."""
    def report(sent: int, second: int) -> dict[str, Any]:
        return {"source": "vmstat", "topic": "vmstat", "sent": sent,
                "time": f"2026-01-01T00:00:{second:02d}Z"}

    queries = {"vmstat_tumbling@disk": {"batch_id": 4, "time": "2026-01-01T00:00:10Z",
                                        "batch_ms": 1500,
                                        "totals": {"input_rows": 120, "malformed": 0}}}
    stored = {("vmstat_tumbling", "disk"): {"query": "vmstat_tumbling@disk", "batches": {4: 120}}}
    [row] = accounting_rows([report(100, 8), report(107, 10)], queries, stored)
    assert row["not_read_yet"] is None  # no report since the batch fixed its offsets (11.5 s)
    [row] = accounting_rows([report(100, 8), report(130, 12), report(150, 14)], queries, stored)
    assert (row["produced"], row["not_read_yet"]) == (130, 10)  # the first report after it
    queries["vmstat_tumbling@disk"]["totals"]["malformed"] = 20  # injected by another producer
    [row] = accounting_rows([report(130, 12)], queries, stored)
    assert row["not_read_yet"] == 30
