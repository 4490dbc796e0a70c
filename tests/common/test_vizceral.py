"""The Vizceral graph builder: golden JSON, the shape vizceral-example loads, rates, determinism.

Regenerate the golden file after an intended change with
``UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/common/test_vizceral.py`` and review its diff.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from common.vizceral import (
    HOST_NAMED_INTERNET,
    INTERNET,
    Edge,
    build_graph,
    edges_from_rows,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "vizceral"
SHAPE = json.loads((FIXTURES / "shape.json").read_text())
WINDOW = json.loads((FIXTURES / "edges_window.json").read_text())


def window_graph(**kwargs: Any) -> dict[str, Any]:
    return build_graph(edges_from_rows(WINDOW["rows"]), WINDOW["window_seconds"],
                       updated_ms=WINDOW["updated_ms"], **kwargs)


def dumps(graph: dict[str, Any]) -> str:
    return json.dumps(graph, indent=2, sort_keys=True) + "\n"


def edge(host: str = "h", source: str = INTERNET, target: str = "web", requests: int = 10,
         **counts: Any) -> Edge:
    values = {"host": host, "source": source, "target": target, "requests": requests,
              "status_2xx": requests, **counts}
    return Edge.from_values(values)


# -- golden ---------------------------------------------------------------------------


def test_a_window_gives_exactly_the_golden_graph() -> None:
    golden = FIXTURES / "graph_window.json"
    text = dumps(window_graph())
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


# -- the shape vizceral-example loads --------------------------------------------------

_TYPES = {"str": str, "list": list, "dict": dict, "int": int, "number": (int, float)}


def check_keys(obj: dict[str, Any], spec: dict[str, Any], where: str,
               extra_required: dict[str, str] | None = None) -> None:
    required = {**spec["required"], **(extra_required or {})}
    allowed = {**spec["required"], **spec.get("optional", {})}
    for key in required:
        assert key in obj, f"{where}: missing {key}"
    for key, value in obj.items():
        assert key in allowed, f"{where}: {key} is not a key vizceral-example's data uses"
        kind = _TYPES[allowed[key]]
        assert isinstance(value, kind) and not isinstance(value, bool), f"{where}.{key}: {value!r}"


def check_notices(notices: list[dict[str, Any]], where: str) -> None:
    for i, notice in enumerate(notices):
        check_keys(notice, SHAPE["notice"], f"{where}.notices[{i}]")
        assert notice.get("severity", 0) in (0, 1, 2)


def check_connection(c: dict[str, Any], names: set[str], where: str) -> None:
    check_keys(c, SHAPE["connection"], where)
    assert c["source"] in names and c["target"] in names, f"{where}: joins unknown nodes"
    assert sorted(c["metrics"]) == SHAPE["metrics"]["keys"]
    assert all(isinstance(v, int | float) and v >= 0 for v in c["metrics"].values())
    assert c.get("class", "normal") in SHAPE["classes"]
    check_notices(c.get("notices", []), where)


def check_graph(graph: dict[str, Any]) -> None:
    """Everything vizceral-example's data has, nothing it lacks; each view self-contained."""
    check_keys(graph, SHAPE["global"], "graph")
    assert graph["renderer"] == SHAPE["global"]["renderer"]
    names = {n["name"] for n in graph["nodes"]}
    assert SHAPE["entry_node"] in names
    for node in graph["nodes"]:
        entry = node["name"] == SHAPE["entry_node"]
        where = f"global.{node['name']}"
        check_keys(node, SHAPE["global_node"], where,
                   None if entry else SHAPE["global_node"]["required_unless_entry"])
        assert node["renderer"] == SHAPE["global_node"]["renderer"]
        assert node["class"] in SHAPE["classes"]
        check_notices(node.get("notices", []), where)
        if entry:
            assert node["nodes"] == [] and node.get("connections", []) == []
            continue
        assert node["maxVolume"] >= 0
        inner = {n["name"] for n in node["nodes"]}
        assert SHAPE["entry_node"] in inner, f"{where}: a region view needs its entry node"
        for child in node["nodes"]:
            check_keys(child, SHAPE["region_node"], f"{where}.{child['name']}")
            assert child.get("class", "normal") in SHAPE["classes"]
            assert child.get("node_type", "users") in SHAPE["node_types"]
            check_notices(child.get("notices", []), f"{where}.{child['name']}")
        for c in node["connections"]:
            check_connection(c, inner, f"{where}.{c['source']}->{c['target']}")
    for c in graph["connections"]:
        check_connection(c, names, f"global.{c['source']}->{c['target']}")


def test_the_graph_has_the_shape_of_vizceral_examples_sample_data() -> None:
    check_graph(window_graph())
    check_graph(build_graph([], 10))
    check_graph(build_graph([edge()], 10))


def test_the_golden_file_itself_has_that_shape() -> None:
    check_graph(json.loads((FIXTURES / "graph_window.json").read_text()))


# -- meaning ---------------------------------------------------------------------------


def test_metrics_are_requests_per_second_by_status_class() -> None:
    e = edge(requests=100, status_2xx=70, status_3xx=10, status_4xx=15, status_5xx=5)
    graph = build_graph([e], window_seconds=20)
    [region_node] = [n for n in graph["nodes"] if n["name"] == "h"]
    [c] = region_node["connections"]
    assert c["metrics"] == {"normal": 4.0, "warning": 0.75, "danger": 0.25}
    [g] = graph["connections"]
    assert (g["source"], g["target"], g["metrics"]) == (INTERNET, "h", c["metrics"])


def test_answers_without_a_status_class_count_as_normal() -> None:
    # 1xx or no status at all (a request NGINX closed): neither 4xx nor 5xx.
    e = edge(requests=10, status_2xx=6, status_4xx=1, status_5xx=1)
    [c] = build_graph([e], 1)["nodes"][1]["connections"]
    assert c["metrics"] == {"normal": 8.0, "warning": 1.0, "danger": 1.0}


def test_each_region_is_its_own_view_with_its_services_and_upstreams() -> None:
    graph = window_graph()
    regions = {n["name"]: n for n in graph["nodes"]}
    assert list(regions) == [INTERNET, "default", "shop.example"]
    shop = regions["shop.example"]
    assert [n["name"] for n in shop["nodes"]] == [INTERNET, "10.0.0.5:8080", "10.0.0.7:9000",
                                                  "api", "local", "web"]
    assert shop["maxVolume"] == 25.0  # (200 + 50 requests from INTERNET) / 10 s
    assert shop["updated"] == graph["serverUpdateTime"] == WINDOW["updated_ms"]


def test_classes_and_notices_follow_the_5xx_share() -> None:
    shop = {n["name"]: n for n in window_graph()["nodes"]}["shop.example"]
    nodes = {n["name"]: n for n in shop["nodes"]}
    assert nodes["api"]["class"] == "danger"  # 6 of 50
    assert nodes["web"]["class"] == "warning"  # 4 of 200
    assert nodes["local"]["class"] == "normal"
    assert [n["severity"] for n in nodes["api"]["notices"]] == [2, 1]  # errors, then slow
    assert "12.0 %" in nodes["api"]["notices"][0]["title"]


def test_max_volumes_scale_the_particles_but_never_below_the_current_volume() -> None:
    graph = window_graph(max_volumes={"shop.example": 100.0, "default": 0.1})
    regions = {n["name"]: n for n in graph["nodes"]}
    assert regions["shop.example"]["maxVolume"] == 100.0
    assert regions["default"]["maxVolume"] == 0.7
    assert graph["maxVolume"] == 100.0


def test_the_same_edges_in_any_order_give_the_same_json() -> None:
    edges = edges_from_rows(WINDOW["rows"])
    expected = dumps(window_graph())
    rng = random.Random(7)
    for _ in range(5):
        rng.shuffle(edges)
        assert dumps(build_graph(edges, 10, updated_ms=WINDOW["updated_ms"])) == expected


def test_duplicate_edges_are_merged() -> None:
    a = Edge.from_values({"host": "h", "source": INTERNET, "target": "web", "requests": 10,
                          "status_2xx": 10, "p95_request_time": 1.0})
    b = Edge.from_values({"host": "h", "source": INTERNET, "target": "web", "requests": 30,
                          "status_5xx": 30, "p95_request_time": 3.0})
    [c] = build_graph([a, b], 10)["nodes"][1]["connections"]
    assert c["metrics"] == {"normal": 1.0, "warning": 0.0, "danger": 3.0}
    assert "p95 request time 2.50 s" in c["notices"][1]["title"]  # weighted by requests


def test_no_edges_give_an_internet_node_alone() -> None:
    graph = build_graph([], 10)
    assert [n["name"] for n in graph["nodes"]] == [INTERNET]
    assert graph["connections"] == [] and graph["maxVolume"] == 0.0
    assert "serverUpdateTime" not in graph


def test_names_from_the_data_never_reach_a_notice() -> None:
    # Vizceral shows notice titles as HTML; names are drawn on the canvas only.
    evil = "<img src=x onerror=alert(1)>"
    graph = build_graph([edge(host=evil, target=evil, requests=10, status_2xx=0, status_5xx=10,
                              p95_request_time=9.0)], 10)
    text = json.dumps([n.get("notices") for n in graph["nodes"][1]["nodes"]])
    text += json.dumps(graph["nodes"][1]["notices"])
    assert "5xx answers" in text and "<" not in text
    assert graph["nodes"][1]["name"] == evil  # the name itself is kept, as data


def test_a_host_called_internet_does_not_become_the_entry_node() -> None:
    graph = build_graph([edge(host=INTERNET)], 10)
    assert [n["name"] for n in graph["nodes"]] == [INTERNET, HOST_NAMED_INTERNET]
    assert graph["connections"][0]["target"] == HOST_NAMED_INTERNET


def test_loops_and_traffic_into_the_entry_node_are_left_out() -> None:
    graph = build_graph([edge(source="web", target="web"), edge(source="web", target=INTERNET),
                         edge()], 10)
    assert [(c["source"], c["target"]) for c in graph["nodes"][1]["connections"]] == [
        (INTERNET, "web")]


@pytest.mark.parametrize("values, field", [
    ({"source": INTERNET, "target": "t", "requests": 1}, "host"),
    ({"host": "h", "source": "", "target": "t", "requests": 1}, "source"),
    ({"host": "h", "source": INTERNET, "target": "t", "requests": "many"}, "requests"),
    ({"host": "h", "source": INTERNET, "target": "t", "requests": -1}, "requests"),
    ({"host": "h", "source": INTERNET, "target": "t", "requests": 1, "p95_request_time": "x"},
     "p95_request_time"),
])
def test_a_malformed_row_is_refused_naming_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Edge.from_values(values)


def test_window_seconds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        build_graph([edge()], 0)


def test_rows_or_bare_values_are_accepted() -> None:
    row = WINDOW["rows"][0]
    assert edges_from_rows([row]) == edges_from_rows([row["values"]])
