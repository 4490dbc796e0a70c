"""The batch Vizceral export of a whole log: golden output, shape, and the same edges as Spark."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from common.records import AccessRecord
from common.vizceral import INTERNET
from processing.vizceral_export import edges_of, export
from tests.common.test_vizceral import check_graph

ROOT = Path(__file__).resolve().parent.parent.parent
LOG = ROOT / "input" / "data" / "nginx" / "access-upstream.txt"
GOLDEN = ROOT / "tests" / "fixtures" / "vizceral" / "export-access-upstream.json"
T0 = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


def test_the_shipped_recording_gives_the_golden_graph() -> None:
    """Regenerate after a deliberate change: python -m processing.vizceral_export LOG > GOLDEN."""
    result = subprocess.run([sys.executable, "-m", "processing.vizceral_export", str(LOG),
                             "--log-level", "warning"], capture_output=True, text=True, check=True)
    graph = json.loads(result.stdout)
    assert graph == json.loads(GOLDEN.read_text())
    check_graph(graph)  # loads in vizceral-example unchanged: the shape of its sample data


def test_every_request_is_in_the_graph_once() -> None:
    lines = LOG.read_text().splitlines()
    graph, requests, rejected = export(lines, "upstream", "/api/=api,/static/=static,/auth/=auth,/=web")
    assert (requests, rejected) == (len([x for x in lines if x.strip()]), 0)
    total_rate = sum(sum(c["metrics"].values()) for c in graph["connections"])
    assert total_rate > 0


def test_edges_follow_the_spark_jobs_definition() -> None:
    def rec(status: int, host: str = "shop", service: str = "api", upstream: str = "u:1",
            t: float = 0.1) -> AccessRecord:
        return AccessRecord(event_time=T0, status=status, host=host, service=service,
                            upstream=upstream, request_time=t, bytes=10)

    edges = {(e.host, e.source, e.target): e for e in edges_of(
        [rec(200, t=0.1), rec(500, t=0.2), rec(404, t=0.3), rec(301, host="", service="",
                                                              upstream="", t=0.01)])}
    assert sorted(edges) == [("default", INTERNET, "unknown"), ("default", "unknown", "local"),
                             ("shop", INTERNET, "api"), ("shop", "api", "u:1")]
    entry = edges[("shop", INTERNET, "api")]
    assert (entry.requests, entry.status_2xx, entry.status_4xx, entry.status_5xx, entry.bytes) == (
        3, 1, 1, 1, 30)
    assert (entry.p50_request_time, entry.p95_request_time) == (0.2, 0.3)
