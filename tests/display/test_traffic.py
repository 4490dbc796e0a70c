"""The live traffic graph: which window it shows, peaks, bounds; and /demo9's ``graph`` events."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from common import settings
from common.messages import ResultsBatch
from common.records import format_time
from common.vizceral import INTERNET
from display.feed import route
from display.hub import Hub
from display.server import create_app
from display.traffic import TrafficGraph
from storage.base import ResultRow
from storage.disk import DiskStore

T0 = dt.datetime(2026, 11, 28, 5, 0, tzinfo=dt.UTC)


def values(host: str = "shop", source: str = INTERNET, target: str = "web", requests: int = 100,
           errors: int = 0) -> dict[str, Any]:
    return {"host": host, "source": source, "target": target, "requests": requests,
            "status_2xx": requests - errors, "status_3xx": 0, "status_4xx": 0,
            "status_5xx": errors, "error_rate": errors / requests if requests else 0.0,
            "p50_request_time": 0.01, "p95_request_time": 0.1, "bytes": 1000}


def row(window: int, seconds: int = 10, **kw: Any) -> dict[str, Any]:
    v = values(**kw)
    start = T0 + dt.timedelta(seconds=window * seconds)
    return {"stream": "nginx_edges", "key": f"{v['host']}|{v['source']}|{v['target']}",
            "window_start": format_time(start),
            "window_end": format_time(start + dt.timedelta(seconds=seconds)),
            "values": v, "updated_at": None}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry_metrics(payload: dict[str, Any], host: str = "shop") -> dict[str, float]:
    [c] = [c for c in payload["graph"]["connections"] if c["target"] == host]
    return dict(c["metrics"])


def test_nothing_to_show_before_any_row() -> None:
    assert TrafficGraph().payload() is None


def test_the_newest_window_is_shown_as_incomplete_until_another_follows() -> None:
    clock = Clock()
    traffic = TrafficGraph(clock=clock)
    traffic.add([row(0, requests=50)])
    first = traffic.payload()
    assert first is not None and first["complete"] is False
    assert entry_metrics(first) == {"normal": 5.0, "warning": 0.0, "danger": 0.0}
    # Spark updates the open window, then the next one starts: the graph shows the full one.
    traffic.add([row(0, requests=100)])
    traffic.add([row(1, requests=7)])
    shown = traffic.payload()
    assert shown is not None and shown["complete"] is True
    assert shown["window_start"] == format_time(T0)
    assert entry_metrics(shown)["normal"] == 10.0
    assert shown["graph"]["serverUpdateTime"] == int((T0.timestamp() + 10) * 1000)


def test_a_quiet_window_counts_as_complete() -> None:
    clock = Clock()
    traffic = TrafficGraph(clock=clock)
    traffic.add([row(0), row(1, requests=30)])
    payload = traffic.payload()
    assert payload is not None and payload["window_start"] == format_time(T0)
    clock.now += 20  # twice the window: the traffic stopped, or a replayed log ended
    payload = traffic.payload()
    assert payload is not None
    assert payload["window_start"] == format_time(T0 + dt.timedelta(seconds=10))


def test_a_row_sent_again_replaces_the_old_one() -> None:
    traffic = TrafficGraph(clock=Clock())
    traffic.add([row(0, requests=10), row(1)])
    traffic.add([row(0, requests=20)])
    payload = traffic.payload()
    assert payload is not None and entry_metrics(payload)["normal"] == 2.0
    assert payload["edges"] == 1


def test_max_volume_is_the_recent_peak() -> None:
    traffic = TrafficGraph(clock=Clock())
    traffic.add([row(0, requests=500), row(1, requests=100), row(2, requests=1)])
    payload = traffic.payload()
    assert payload is not None
    region = next(n for n in payload["graph"]["nodes"] if n["name"] == "shop")
    assert entry_metrics(payload)["normal"] == 10.0  # window 1
    assert region["maxVolume"] == 50.0  # window 0's peak


def test_old_windows_are_dropped() -> None:
    traffic = TrafficGraph(keep_windows=3, clock=Clock())
    traffic.add([row(i) for i in range(10)])
    payload = traffic.payload()
    assert payload is not None
    assert payload["window_start"] == format_time(T0 + dt.timedelta(seconds=80))
    assert len(traffic._windows) == 3


def test_only_the_busiest_hosts_are_drawn() -> None:
    traffic = TrafficGraph(max_regions=2, clock=Clock())
    traffic.add([row(0, host=f"h{i}", requests=10 * (i + 1)) for i in range(5)] + [row(1)])
    payload = traffic.payload()
    assert payload is not None
    assert [n["name"] for n in payload["graph"]["nodes"]] == [INTERNET, "h3", "h4"]
    assert (payload["hosts"], payload["hidden_hosts"]) == (5, 3)


def test_malformed_rows_are_counted_and_skipped() -> None:
    traffic = TrafficGraph(clock=Clock())
    bad_values = row(0)
    bad_values["values"] = {"host": "h"}
    bad_time = row(0)
    bad_time["window_end"] = "yesterday"
    assert traffic.add([bad_values, bad_time, {"nothing": 1}, row(0)]) == 1
    assert traffic.rejected == 3


# -- /demo9 over Socket.IO ---------------------------------------------------------------


@pytest.fixture
def app_parts(tmp_path: Path) -> Any:
    store = DiskStore(tmp_path / "store.sqlite3")
    store.setup()
    cfg = settings.load(environ={"DATA_DIR": str(tmp_path)})
    app, socketio, display = create_app(cfg, stores={"disk": store}, hub=Hub(), start_feed=False)
    return app, socketio, display, store


def received(client: Any, namespace: str) -> list[tuple[str, Any]]:
    return [(e["name"], e["args"][0]) for e in client.get_received(namespace)]


def test_demo9_gets_history_then_the_graph_then_both_on_each_update(app_parts: Any) -> None:
    app, socketio, display, store = app_parts
    store.upsert([ResultRow.from_json(row(0)), ResultRow.from_json(row(1, requests=40))])
    client = socketio.test_client(app, namespace="/demo9")
    events = received(client, "/demo9")
    assert [name for name, _ in events] == ["history", "graph"]
    graph = events[1][1]
    assert graph["complete"] and graph["window_start"] == format_time(T0)
    assert entry_metrics(graph)["normal"] == 10.0

    route(display.hub, {"results": [ResultsBatch(stream="nginx_edges", store="disk",
                                                 rows=[row(2, requests=300, errors=30)])]},
          display.emit)
    events = received(client, "/demo9")
    assert [name for name, _ in events] == ["update", "graph"]
    assert events[1][1]["window_start"] == format_time(T0 + dt.timedelta(seconds=10))
    # Other streams and other demos get no graph.
    route(display.hub, {"results": [ResultsBatch(stream="vmstat_tumbling", store="disk", rows=[])]},
          display.emit)
    assert received(client, "/demo9") == []


def test_demo9_without_rows_gets_no_graph(app_parts: Any) -> None:
    app, socketio, _, _ = app_parts
    client = socketio.test_client(app, namespace="/demo9")
    assert [name for name, _ in received(client, "/demo9")] == ["history"]


def test_history_of_streams_with_many_rows_per_window_is_whole(app_parts: Any) -> None:
    # census_age: 15 census years x 2 sexes x 19 age groups = 570 rows; the pyramid needs them all.
    app, socketio, _, store = app_parts
    rows = []
    for year in range(1860, 2010, 10):
        start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
        rows += [ResultRow("census_age", f"{year}|{sex}|{age}", start, start + dt.timedelta(days=365),
                           {"year": year, "sex": sex, "age": age, "people": 1, "share": 0.05})
                 for sex in (1, 2) for age in range(0, 95, 5)]
    store.upsert(rows)
    client = socketio.test_client(app, namespace="/demo4")
    [(name, history)] = received(client, "/demo4")
    assert name == "history" and len(history["streams"]["census_age"]) == 570
