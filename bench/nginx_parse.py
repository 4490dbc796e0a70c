"""Benchmark: lines/s of the pure NGINX access-log parser (``common/accesslog.py``), one core.

Input: the shipped recording (``input/data/nginx/access-{upstream,combined}.txt``, real
nginx 1.22.1 lines, 1,120 each), looped to 1,000,000 lines held in memory. The process
is pinned to one CPU (``sched_setaffinity``) and the garbage collector is off while
timing. Each case runs ``--repeat`` times (default 5); the table shows the best and
the median run, in wall-clock and in CPU time of this process (on a machine shared
with other work, CPU time is the steadier figure). Cases:

* ``upstream`` / ``combined``: ``AccessLogParser.parse`` on each line (the headline);
* ``site format, 17 variables``: a site's own ``log_format`` (:data:`SITE_FORMAT`,
  the layout of ``tests/fixtures/nginx``'s ``upstream_custom``), compiled from its
  definition; the recording's requests written in it by ``render_line``;
* ``upstream, new second per line``: every line's ``$time_local`` differs, so the
  cached time conversion never hits (a quiet log; real busy logs share seconds);
* ``bytes -> record``: what the source does per line (UTF-8 decode, then parse);
* ``regex only``: the compiled pattern's ``fullmatch`` alone, the floor.

For scale: GoAccess, a C log analyser, states about 88,000 lines/s for its parser.

Run: ``.venv/bin/python bench/nginx_parse.py [--lines 1000000] [--repeat 5]``.
Prints a table; the last line is one JSON object with ``nginx_lines_per_s`` (the best
wall-clock rate of the ``upstream`` case) and the other figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import accesslog
from common.accesslog import AccessLogParser, Malformed, render_line
from input.nginx import to_item

DATA = Path(__file__).resolve().parent.parent / "input" / "data" / "nginx"
SERVICES = "/api/=api,/static/=static,/auth/=auth,/=web"
#: A site's own format: 17 variables, the upstream fields in its own order.
SITE_FORMAT = ("""'$time_iso8601 $remote_addr "$request_method $request_uri $server_protocol" '"""
               """'$status $body_bytes_sent rt=$request_time uct="$upstream_connect_time" '"""
               """'urt="$upstream_response_time" us=$upstream_status ua="$upstream_addr" '"""
               """'host=$host "$http_referer" "$http_user_agent" xff="$http_x_forwarded_for" '"""
               """'rl=$request_length'""")


def in_site_format(lines: list[str]) -> list[str]:
    """The recording's requests as the site's format writes them (one render per distinct line)."""
    parser = AccessLogParser("upstream")
    rendered: dict[str, str] = {}
    out = []
    for line in lines:
        if line not in rendered:
            r = parser.parse(line)
            assert not isinstance(r, Malformed), r
            rendered[line] = render_line(SITE_FORMAT, {
                "time_iso8601": r.event_time.isoformat(), "remote_addr": r.client,
                "request_method": r.method or None, "request_uri": r.path or None,
                "server_protocol": r.protocol or None, "status": str(r.status),
                "body_bytes_sent": str(r.bytes), "request_time": f"{r.request_time or 0:.3f}",
                "upstream_connect_time": None if r.upstream_time is None else "0.001",
                "upstream_response_time": None if r.upstream_time is None
                else f"{r.upstream_time:.3f}",
                "upstream_status": None if not r.upstream else str(r.status),
                "upstream_addr": r.upstream or None, "host": r.host or None,
                "http_referer": r.referer or None, "http_user_agent": r.user_agent or None,
                "http_x_forwarded_for": None, "request_length": "180"})
        out.append(rendered[line])
    return out


def looped(name: str, count: int) -> list[bytes]:
    lines = (DATA / name).read_bytes().splitlines()
    return [lines[i % len(lines)] for i in range(count)]


def distinct_seconds(lines: list[str]) -> list[str]:
    """The same lines, each with its own $time_local (one second apart)."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    out = []
    for i, line in enumerate(lines):
        stamp = (start + dt.timedelta(seconds=i)).strftime("%d/%b/%Y:%H:%M:%S %z")
        left, _, rest = line.partition("[")
        out.append(f"{left}[{stamp}]{rest.partition(']')[2]}")
    return out


def timed(run: Callable[[], int], repeat: int) -> tuple[list[float], list[float], int]:
    walls, cpus = [], []
    bad = 0
    for _ in range(repeat):
        accesslog._utc_time.cache_clear()
        gc.collect()
        gc.disable()
        try:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            bad = run()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        finally:
            gc.enable()
        walls.append(wall)
        cpus.append(cpu)
    return walls, cpus, bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    cpu_pinned = None
    if hasattr(os, "sched_setaffinity"):
        cpu_pinned = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu_pinned})

    up_bytes = looped("access-upstream.txt", args.lines)
    up = [b.decode("utf-8", "backslashreplace") for b in up_bytes]
    combined = [b.decode("utf-8", "backslashreplace")
                for b in looped("access-combined.txt", args.lines)]
    up_new_seconds = distinct_seconds(up)
    site = in_site_format(up)
    p_up = AccessLogParser("upstream", SERVICES)
    p_co = AccessLogParser("combined", SERVICES)
    p_site = AccessLogParser(SITE_FORMAT, SERVICES)

    def parse_all(p: AccessLogParser, lines: list[str]) -> Callable[[], int]:
        def run() -> int:
            parse = p.parse
            bad = 0
            for line in lines:
                if parse(line).__class__ is Malformed:
                    bad += 1
            return bad
        return run

    def from_bytes() -> int:
        bad = 0
        for raw in up_bytes:
            if not hasattr(to_item(raw, p_up), "status"):
                bad += 1
        return bad

    def regex_only() -> int:
        match = p_up.pattern.fullmatch
        return sum(1 for line in up if match(line) is None)

    cases = [
        ("upstream", parse_all(p_up, up)),
        ("combined", parse_all(p_co, combined)),
        ("site format, 17 variables", parse_all(p_site, site)),
        ("upstream, new second per line", parse_all(p_up, up_new_seconds)),
        ("bytes -> record (source path)", from_bytes),
        ("regex only (floor)", regex_only),
    ]
    print(f"{args.lines:,} lines per run, {args.repeat} runs, Python {platform.python_version()}, "
          f"pinned to CPU {cpu_pinned}")
    print()
    header = (f"{'case':<32} {'best lines/s':>13} {'median':>11} {'best CPU':>11} "
              f"{'us/line':>8} {'rejected':>8}")
    print(header)
    print("-" * len(header))
    results: dict[str, dict[str, float]] = {}
    for label, run in cases:
        walls, cpus, bad = timed(run, args.repeat)
        best, median, best_cpu = (args.lines / min(walls), args.lines / statistics.median(walls),
                                  args.lines / min(cpus))
        results[label] = {"best": best, "median": median, "best_cpu": best_cpu}
        print(f"{label:<32} {best:>13,.0f} {median:>11,.0f} {best_cpu:>11,.0f} "
              f"{1e6 / best:>8.2f} {bad:>8}")
    print()
    print("lines/s = lines / wall-clock seconds of the best run; CPU = the same in process CPU time")
    out = {
        "nginx_lines_per_s": round(results["upstream"]["best"]),
        "nginx_lines_per_s_median": round(results["upstream"]["median"]),
        "nginx_lines_per_s_cpu": round(results["upstream"]["best_cpu"]),
        "nginx_combined_lines_per_s": round(results["combined"]["best"]),
        "nginx_site_format_lines_per_s": round(results["site format, 17 variables"]["best"]),
        "nginx_new_second_lines_per_s": round(results["upstream, new second per line"]["best"]),
        "nginx_bytes_to_record_lines_per_s": round(results["bytes -> record (source path)"]["best"]),
        "nginx_regex_only_lines_per_s": round(results["regex only (floor)"]["best"]),
        "lines": args.lines,
        "repeat": args.repeat,
        "python": platform.python_version(),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
