"""Progress summaries of a query's progress report: pure, no Spark session."""

from __future__ import annotations

from buffer import kafka
from common import messages
from processing.health import lag_of, summarise_progress


def test_summary_of_a_progress_report() -> None:
    progress = {
        "name": "vmstat_tumbling@disk", "batchId": 7, "timestamp": "2026-11-22T00:00:01.000Z",
        "durationMs": {"triggerExecution": 812, "latestOffset": 101, "addBatch": 640,
                       "queryPlanning": 50, "walCommit": "?"},
        "sources": [{"numInputRows": 10, "inputRowsPerSecond": 9.5, "processedRowsPerSecond": 12.0,
                     "endOffset": {"vmstat": {"0": 5, "1": 7}},
                     "latestOffset": '{"vmstat":{"0":9,"1":7}}'}],
        "stateOperators": [{"numRowsDroppedByWatermark": 2, "numRowsTotal": 30}],
        "observedMetrics": {"vmstat_tumbling_input": {"rows": 10, "malformed": 1}},
        "eventTime": {"watermark": "2026-11-22T00:00:00.000Z"},
    }
    s = summarise_progress(progress, "app")
    assert (s.query, s.batch_id, s.input_rows, s.batch_ms) == ("vmstat_tumbling@disk", 7, 10, 812)
    assert (s.lag, s.late_rows, s.malformed, s.state_rows) == (4, 2, 1, 30)
    assert s.stages_ms == {"latestOffset": 101, "addBatch": 640, "queryPlanning": 50}
    # what the display server reads back is what was sent
    assert messages.decode_health(kafka.dumps(s)) == s


def test_lag_is_unknown_without_a_latest_offset() -> None:
    assert lag_of({"endOffset": {"t": {"0": 1}}}) is None
