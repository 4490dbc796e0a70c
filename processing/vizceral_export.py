"""One Vizceral graph from a whole NGINX access log, in batch: the file Netflix's
vizceral-example loads (``src/sample_data.json`` is the same format).

Run::

    python -m processing.vizceral_export ACCESS_LOG [--nginx-log-format combined] > traffic.json

Every line is parsed by the same parser as the live source
(``common.accesslog``), every request becomes the same two edges as in the
Spark job (``common.vizceral.request_edges``), and the graph is built by the
same function as the live /demo9 page (``common.vizceral.build_graph``), with the
whole log as one window: metrics are requests per second over the log's span.
Lines that do not parse are counted and reported on stderr, never guessed at.
No Spark is needed: a log file fits in memory.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from common.accesslog import AccessLogParser, Malformed, parse_service_map
from common.nginx_format import LogFormat, LogFormatError
from common.records import AccessRecord
from common.vizceral import Edge, build_graph, request_edges

log = logging.getLogger(__name__)


def _quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile, as Spark's percentile_approx returns an element of the data."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def edges_of(records: Iterable[AccessRecord]) -> list[Edge]:
    """Aggregate requests into edges: counts by status class, p50/p95 request time, bytes."""
    counts: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "2": 0, "3": 0, "4": 0, "5": 0, "bytes": 0, "times": []})
    for r in records:
        host, pairs = request_edges(r.host, r.service, r.upstream)
        for source, target in pairs:
            c = counts[(host, source, target)]
            c["requests"] += 1
            klass = str(r.status // 100)
            if klass in "2345":
                c[klass] += 1
            c["bytes"] += r.bytes
            if r.request_time is not None:
                c["times"].append(r.request_time)
    return [
        Edge(host=host, source=source, target=target, requests=c["requests"],
             status_2xx=c["2"], status_3xx=c["3"], status_4xx=c["4"], status_5xx=c["5"],
             p50_request_time=_quantile(c["times"], 0.5),
             p95_request_time=_quantile(c["times"], 0.95), bytes=c["bytes"])
        for (host, source, target), c in sorted(counts.items())
    ]


def export(lines: Iterable[str], log_format: str | LogFormat, service_map: str) -> tuple[dict[str, Any], int, int]:
    """(graph, requests, rejected lines) for a whole log."""
    parser = AccessLogParser(log_format, parse_service_map(service_map))
    records: list[AccessRecord] = []
    rejected = 0
    for line in lines:
        if not line.strip():
            continue
        parsed = parser.parse(line)
        if isinstance(parsed, Malformed):
            rejected += 1
            log.warning("line not in the %s format (%s): %.120r", parser.log_format,
                        parsed.reason, line)
        else:
            records.append(parsed)
    if not records:
        return build_graph([], 1.0), 0, rejected
    first = min(r.event_time for r in records)
    last = max(r.event_time for r in records)
    span = max(1.0, (last - first).total_seconds())
    graph = build_graph(edges_of(records), span, updated_ms=int(last.timestamp() * 1000))
    return graph, len(records), rejected


def main(argv: list[str] | None = None) -> int:
    from common import cli
    from common import settings as settings_module

    parser = settings_module.argument_parser(__doc__ or "", only=[
        "nginx_log_format", "nginx_conf", "nginx_log_format_name", "nginx_service_map",
        "log_level"])
    parser.add_argument("access_log", type=Path, help="the access log to read ('-': stdin)")
    args, settings = cli.start(parser, argv)
    try:
        log_format = settings.nginx_access_format(
            None if str(args.access_log) == "-" else args.access_log)
    except LogFormatError as e:
        parser.error(str(e))
    service_map = ",".join(settings.nginx_service_map)
    if str(args.access_log) == "-":
        graph, requests, rejected = export(sys.stdin, log_format, service_map)
    else:
        if not args.access_log.is_file():
            parser.error(f"{args.access_log} is not a file")
        with args.access_log.open(encoding="utf-8", errors="surrogateescape") as f:
            graph, requests, rejected = export(f, log_format, service_map)
    json.dump(graph, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    log.info("%d requests in the graph, %d lines rejected", requests, rejected)
    return 0


if __name__ == "__main__":
    sys.exit(main())
