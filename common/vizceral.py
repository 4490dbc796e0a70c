"""Vizceral traffic graphs from ``nginx_edges`` rows: one pure function, checked against golden JSON.

The output follows the data format of Netflix's Vizceral as its example app loads it
(``Netflix/vizceral-example``: ``src/sample_data.json``, ``src/sample_data_simple.json``;
``Netflix/vizceral``: ``DATAFORMATS.md``), so a file written with ``json.dump(build_graph(...))``
loads in vizceral-example unchanged, and the /demo9 page passes it to ``updateData()`` as is:

* the global view (``renderer: "global"``, ``name: "edge"``): an ``INTERNET`` node and one
  ``region`` node per virtual host, with ``INTERNET -> host`` connections;
* each region node holds its own view: ``nodes`` (``INTERNET``, the services, their upstreams
  and ``local``), ``connections`` (one per edge), ``maxVolume`` (the particle density scale) and
  ``updated`` (milliseconds since the epoch);
* a connection's ``metrics`` are requests per second over the window: ``normal`` (2xx, 3xx and
  any other status), ``warning`` (4xx), ``danger`` (5xx);
* a node's ``class`` is ``danger`` or ``warning`` when the share of 5xx answers to the requests
  it received passes a threshold, with a ``notices`` entry saying so.

Vizceral inserts notice titles as HTML (``innerHTML``), so a title here is made of fixed text
and numbers only, never of a name from the data. Node names are drawn on the canvas.

Example::

    rows = store.latest("nginx_edges", 100)           # one window's rows
    graph = build_graph(edges_from_rows(r.to_json() for r in rows), window_seconds=10)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DANGER_ERROR_RATE",
    "HOST_NAMED_INTERNET",
    "INTERNET",
    "SLOW_P95_SECONDS",
    "WARNING_ERROR_RATE",
    "Edge",
    "build_graph",
    "edges_from_rows",
]

#: The entry node of every view (Vizceral requires one; its example app calls it INTERNET).
INTERNET = "INTERNET"
#: Edge ends of a request without a host, a service or an upstream (nginx answered itself).
DEFAULT_HOST = "default"
UNKNOWN_SERVICE = "unknown"
LOCAL = "local"


def request_edges(host: str, service: str, upstream: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The host and the two edges one request makes: INTERNET -> service -> upstream (or local).

    The Spark job (processing/nginx_traffic.py) does the same in SQL; this is the
    definition both follow, used as it is by the batch export.
    """
    service = service or UNKNOWN_SERVICE
    return host or DEFAULT_HOST, ((INTERNET, service), (service, upstream or LOCAL))


#: What a virtual host that is literally called INTERNET is shown as.
HOST_NAMED_INTERNET = "INTERNET (host)"
#: A node whose 5xx share reaches this is ``warning``; ``danger`` from DANGER_ERROR_RATE.
WARNING_ERROR_RATE = 0.01
DANGER_ERROR_RATE = 0.05
#: A connection whose p95 request time reaches this many seconds gets a notice.
SLOW_P95_SECONDS = 1.0

_PLACES = 3  # rates are rounded to milliseconds' precision, as in vizceral-example's samples


@dataclass(frozen=True)
class Edge:
    """One ``nginx_edges`` row's values: requests from ``source`` to ``target`` in ``host``."""

    host: str
    source: str
    target: str
    requests: int
    status_2xx: int = 0
    status_3xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    p50_request_time: float | None = None
    p95_request_time: float | None = None
    bytes: int = 0

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Edge:
        """Build from a row's ``values``; ValueError names a missing or malformed field."""
        return cls(
            host=_name(values, "host"), source=_name(values, "source"),
            target=_name(values, "target"), requests=_count(values, "requests"),
            status_2xx=_count(values, "status_2xx"), status_3xx=_count(values, "status_3xx"),
            status_4xx=_count(values, "status_4xx"), status_5xx=_count(values, "status_5xx"),
            p50_request_time=_seconds(values, "p50_request_time"),
            p95_request_time=_seconds(values, "p95_request_time"),
            bytes=_count(values, "bytes"),
        )

    @property
    def normal(self) -> int:
        """Answers that are not 4xx or 5xx (2xx, 3xx, and 1xx or none at all)."""
        return max(0, self.requests - self.status_4xx - self.status_5xx)


def _name(values: Mapping[str, Any], name: str) -> str:
    raw = values.get(name)
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"nginx_edges row: {name} must be a non-empty string, got {raw!r:.60}")
    return raw


def _count(values: Mapping[str, Any], name: str) -> int:
    raw = values.get(name, 0)
    if raw is None:
        return 0
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
        raise ValueError(f"nginx_edges row: {name} must be a count, got {raw!r:.60}")
    return int(raw)


def _seconds(values: Mapping[str, Any], name: str) -> float | None:
    raw = values.get(name)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ValueError(f"nginx_edges row: {name} must be a number of seconds, got {raw!r:.60}")
    return float(raw)


def edges_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Edge]:
    """Edges from result rows (``{"values": {...}, ...}``) or from bare ``values`` mappings."""
    edges = []
    for row in rows:
        values = row.get("values", row)
        if not isinstance(values, Mapping):
            raise ValueError(f"nginx_edges row without values: {row!r:.120}")
        edges.append(Edge.from_values(values))
    return edges


@dataclass
class _Tally:
    """Counts of one connection or of the requests a node received."""

    requests: int = 0
    normal: int = 0
    warning: int = 0
    danger: int = 0
    weighted_p95: float = 0.0  # sum of p95 x requests, for a request-weighted mean
    timed: int = 0  # requests of the edges that had request times
    p95_max: float | None = None

    def add(self, edge: Edge) -> None:
        self.requests += edge.requests
        self.normal += edge.normal
        self.warning += edge.status_4xx
        self.danger += edge.status_5xx
        if edge.p95_request_time is not None:
            self.weighted_p95 += edge.p95_request_time * edge.requests
            self.timed += edge.requests
            self.p95_max = max(self.p95_max or 0.0, edge.p95_request_time)

    @property
    def error_rate(self) -> float:
        return self.danger / self.requests if self.requests else 0.0

    @property
    def p95(self) -> float | None:
        """The p95 of the merged edges: request-weighted (approximate, like the inputs)."""
        if self.timed:
            return self.weighted_p95 / self.timed
        return self.p95_max

    def metrics(self, window_seconds: float) -> dict[str, float]:
        return {name: _rate(count, window_seconds)
                for name, count in (("danger", self.danger), ("normal", self.normal),
                                    ("warning", self.warning))}


def _rate(count: int, window_seconds: float) -> float:
    return round(count / window_seconds, _PLACES)


def _volume(metrics: Mapping[str, float]) -> float:
    return round(sum(metrics.values()), _PLACES)


class _Rules:
    """Thresholds that turn counts into a class and notices."""

    def __init__(self, warning_rate: float, danger_rate: float, slow_p95: float) -> None:
        self.warning_rate = warning_rate
        self.danger_rate = danger_rate
        self.slow_p95 = slow_p95

    def klass(self, tally: _Tally) -> str:
        if not tally.requests:
            return "normal"
        if tally.error_rate >= self.danger_rate:
            return "danger"
        if tally.error_rate >= self.warning_rate:
            return "warning"
        return "normal"

    def notices(self, tally: _Tally) -> list[dict[str, Any]]:
        # Fixed text and numbers only: Vizceral shows notice titles as HTML.
        notices: list[dict[str, Any]] = []
        klass = self.klass(tally)
        if klass != "normal":
            notices.append({
                "title": f"5xx answers: {tally.error_rate * 100:.1f} % of {tally.requests} requests",
                "severity": 2 if klass == "danger" else 1,
            })
        p95 = tally.p95
        if p95 is not None and p95 >= self.slow_p95:
            notices.append({"title": f"slow: p95 request time {p95:.2f} s", "severity": 1})
        return notices


def build_graph(
    edges: Iterable[Edge],
    window_seconds: float,
    *,
    updated_ms: int | None = None,
    max_volumes: Mapping[str, float] | None = None,
    name: str = "edge",
    warning_error_rate: float = WARNING_ERROR_RATE,
    danger_error_rate: float = DANGER_ERROR_RATE,
    slow_p95_seconds: float = SLOW_P95_SECONDS,
) -> dict[str, Any]:
    """The Vizceral graph (global view holding one region view per host) of one window's edges.

    Args:
        edges: the window's edges; two edges with the same host, source and target are merged
            (counts added, request times averaged weighted by requests).
        window_seconds: the window's length: metrics are requests per second over it.
        updated_ms: when the data was current (e.g. the window's end), milliseconds since the
            epoch; sets each region's ``updated`` and the graph's ``serverUpdateTime``. Left out
            when None, which keeps the output a function of the edges alone.
        max_volumes: per host, the particle density scale (``maxVolume``), e.g. the largest
            volume seen recently; default: the host's current volume from INTERNET.
        name: the global view's name.
        warning_error_rate, danger_error_rate, slow_p95_seconds: class and notice thresholds.

    Returns:
        A JSON-ready dict; every list sorted, so equal input gives byte-equal JSON.
    """
    if not window_seconds > 0:
        raise ValueError(f"window_seconds must be greater than 0, got {window_seconds!r}")
    rules = _Rules(warning_error_rate, danger_error_rate, slow_p95_seconds)
    # host -> (source, target) -> tally of the connection
    by_host: dict[str, dict[tuple[str, str], _Tally]] = defaultdict(lambda: defaultdict(_Tally))
    for edge in edges:
        if edge.target == INTERNET or edge.source == edge.target:
            continue  # nothing sends traffic to the entry node, and a loop cannot be drawn
        # The Host header is the client's: one that says INTERNET must not become the entry node.
        host = HOST_NAMED_INTERNET if edge.host == INTERNET else edge.host
        by_host[host][(edge.source, edge.target)].add(edge)

    regions = []
    global_connections = []
    for host in sorted(by_host):
        region, entry = _region(host, by_host[host], window_seconds, rules, updated_ms,
                                (max_volumes or {}).get(host))
        regions.append(region)
        entry_metrics = entry.metrics(window_seconds)
        global_connections.append({
            "source": INTERNET,
            "target": host,
            "metrics": entry_metrics,
            "notices": [],
            "class": rules.klass(entry),
        })

    graph: dict[str, Any] = {
        "renderer": "global",
        "name": name,
        "maxVolume": max((r["maxVolume"] for r in regions), default=0.0),
        "nodes": [
            {"renderer": "region", "name": INTERNET, "displayName": INTERNET, "nodes": [],
             "connections": [], "metadata": {}, "class": "normal"},
            *regions,
        ],
        "connections": global_connections,
    }
    if updated_ms is not None:
        graph["serverUpdateTime"] = updated_ms
    return graph


def _region(host: str, connections: Mapping[tuple[str, str], _Tally], window_seconds: float,
            rules: _Rules, updated_ms: int | None,
            max_volume: float | None) -> tuple[dict[str, Any], _Tally]:
    """A host's region node (its own view) and the tally of its traffic from INTERNET."""
    received: dict[str, _Tally] = defaultdict(_Tally)  # node -> requests it received
    names = {INTERNET}
    for (source, target), tally in connections.items():
        names.update((source, target))
        _merge(received[target], tally)
    entry = _Tally()
    for (source, _), tally in connections.items():
        if source == INTERNET:
            _merge(entry, tally)

    nodes = []
    for node in sorted(names, key=lambda n: (n != INTERNET, n)):
        item: dict[str, Any] = {"name": node, "class": "normal", "metadata": {}}
        if node == INTERNET:
            item["node_type"] = "users"
        else:
            tally = received.get(node, _Tally())
            item["class"] = rules.klass(tally)
            item["notices"] = rules.notices(tally)
        nodes.append(item)

    region_connections = []
    for source, target in sorted(connections):
        tally = connections[(source, target)]
        region_connections.append({
            "source": source,
            "target": target,
            "metrics": tally.metrics(window_seconds),
            "notices": rules.notices(tally),
            "metadata": {},
            "class": rules.klass(tally),
        })

    volume = _volume(entry.metrics(window_seconds))
    chosen = volume if max_volume is None else max(volume, round(float(max_volume), _PLACES))
    region: dict[str, Any] = {
        "renderer": "region",
        "name": host,
        "displayName": host,
        "maxVolume": chosen,
        "class": rules.klass(entry),
        "notices": rules.notices(entry),
        "metadata": {},
        "nodes": nodes,
        "connections": region_connections,
    }
    if updated_ms is not None:
        region["updated"] = updated_ms
    return region, entry


def _merge(into: _Tally, other: _Tally) -> None:
    into.requests += other.requests
    into.normal += other.normal
    into.warning += other.warning
    into.danger += other.danger
    into.weighted_p95 += other.weighted_p95
    into.timed += other.timed
    if other.p95_max is not None:
        into.p95_max = max(into.p95_max or 0.0, other.p95_max)
