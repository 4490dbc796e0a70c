"""Run every benchmark in ``bench/`` (what ``make bench`` does) and merge their figures.

Each benchmark runs as its own process, one after another (they would disturb each
other on 2 cores): ``nginx_parse.py`` (NGINX parser, one core), ``e2e_latency.py``
(latency, start-up time and memory of the embedded stack, and of the baseline),
``throughput.py`` (highest sustained rate of the windowed job, and of the baseline), both
also for the peers of ``bench/peers/`` (Quix Streams, Pathway: issue #27).
e2e_latency.py measures the stack as ``make run`` starts it, Cassandra node included
(the same stream on /demo7, disk, and /demo8, Cassandra; the whole stack's memory), then
once more with ``CASSANDRA=off`` (``cassandra_off_*``: what the node and its queries cost).
Their output streams through; at the end, a summary table with each target (those of
issue #22, for these 2-core machines, and issue #23's for Cassandra) and, as the last
line, one JSON object merging every benchmark's figures, with the machine and its load.
``bench/soak.py`` (the stack for half an hour, for growth) is not part of it.

Run: ``.venv/bin/python bench/run_all.py [--quick] [--only NAME[,NAME]]``.
``--quick`` is a smoke run of a few minutes (short measurements, fewer steps); the
figures of a quick run are not the benchmark's figures (its e2e_latency run is Cassandra
on only). A full run takes about 50 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._processes import PY, ROOT
from bench._report import emit, loadavg, machine, say, table

BENCHMARKS = {
    "nginx_parse": (["bench/nginx_parse.py"], ["--repeat", "2", "--lines", "200000"]),
    "records_codec": (["bench/records_codec.py"], ["--repeat", "2", "--records", "20000"]),
    # Both Spark runs, Cassandra on (as make run) and off: the off run adds about 4 minutes.
    "e2e_latency": (["bench/e2e_latency.py", "--cassandra", "both"], ["--quick"]),
    "throughput": (["bench/throughput.py"], ["--quick"]),
}
DEFAULT = ("nginx_parse", "records_codec", "e2e_latency", "throughput")

#: (key, label, target, met(value)) of the summary table: the targets of issue #22
#: (benchmarks on these 2-core machines) and of issue #23 (Cassandra). The unprefixed
#: e2e_latency figures are the stack as ``make run`` starts it, with its Cassandra node;
#: ``cassandra_off_*`` those of its second run with ``CASSANDRA=off`` (not in --quick).
TARGETS: list[tuple[str, str, str, Any]] = [
    ("raw_p95_ms", "raw path latency p95 (ms)", "<= 25", lambda v: v <= 25),
    ("e2e_p50_s", "end-to-end latency p50 (s), /demo7 (disk), 10 s windows, 1,000/s", "<= 0.8",
     lambda v: v <= 0.8),
    ("e2e_p95_s", "end-to-end latency p95 (s), /demo7 (disk), 10 s windows, 1,000/s", "<= 1.2",
     lambda v: v <= 1.2),
    ("e2e_cassandra_p50_s", "end-to-end latency p50 (s), /demo8 (Cassandra), same stream", "-",
     None),
    ("e2e_cassandra_p95_s", "end-to-end latency p95 (s), /demo8 (Cassandra), same stream", "-",
     None),
    ("e2e_cassandra_minus_disk_p95_s", "end-to-end p95, /demo8 (Cassandra) - /demo7 (disk) (s)",
     "<= 0.3", lambda v: v <= 0.3),
    ("cassandra_off_e2e_p50_s", "end-to-end latency p50 (s), /demo7, CASSANDRA=off", "<= 0.8",
     lambda v: v <= 0.8),
    ("cassandra_off_e2e_p95_s", "end-to-end latency p95 (s), /demo7, CASSANDRA=off", "<= 1.2",
     lambda v: v <= 1.2),
    ("stored_pushed_p95_s", "stored -> server push p95 (s), /demo7 (disk)", "-", None),
    ("stored_pushed_cassandra_p95_s", "stored -> server push p95 (s), /demo8 (Cassandra)", "-",
     None),
    ("max_sustained_eps", "max sustained rate (events/s), flat lag, produced = stored",
     ">= 100,000", lambda v: v >= 100_000),
    ("peak_pss_mib", "peak PSS of the whole stack with Cassandra (MiB)", "<= 3,584",
     lambda v: v <= 3584),
    ("peak_rss_mib", "peak RSS of the whole stack with Cassandra (MiB)", "-", None),
    ("cassandra_node_steady_pss_mib", "the Cassandra node's steady PSS (MiB)", "-", None),
    ("cassandra_off_peak_pss_mib", "peak PSS of the stack, CASSANDRA=off (MiB)", "<= 2,048",
     lambda v: v <= 2048),
    ("first_update_s", "make run -> first windowed update on /demo7, Cassandra on (s)", "<= 20",
     lambda v: v <= 20),
    ("first_update_cassandra_s", "make run -> first windowed update on /demo8 (s)", "-", None),
    ("cassandra_off_first_update_s", "make run -> first windowed update, CASSANDRA=off (s)",
     "<= 20", lambda v: v <= 20),
    ("nginx_lines_per_s", "NGINX parser (lines/s, one core)", ">= 200,000", lambda v: v >= 200_000),
    ("records_encode_per_s", "VmstatSample records encoded (records/s, one core)", "-", None),
    ("records_decode_per_s", "VmstatSample records decoded and checked (records/s)", "-", None),
    ("baseline_max_sustained_eps", "baseline max sustained (events/s)", "-", None),
    ("baseline_e2e_p50_s", "baseline latency p50 (s)", "-", None),
    ("latency_ratio_p50", "latency Spark / baseline (p50)", "-", None),
    ("throughput_ratio", "throughput Spark / baseline", "-", None),
    # The peers of issue #27 (bench/peers/): the same windows, store and measurement.
    *[(f"{peer}_{key}", f"{label} ({name})", "-", None)
      for peer, name in (("quix", "Quix Streams"), ("pathway", "Pathway"))
      for key, label in (("e2e_p50_s", "latency p50 (s)"), ("e2e_p95_s", "latency p95 (s)"),
                         ("max_sustained_eps", "max sustained (events/s)"),
                         ("job_peak_pss_mib", "job's peak PSS alone (MiB)"),
                         ("job_lines", "lines of the job"))],
]


def run(name: str, quick: bool) -> dict[str, Any]:
    script, quick_args = BENCHMARKS[name]
    argv = [PY, *script, *(quick_args if quick else [])]
    say(f"=== {name}: {' '.join(argv[1:])}")
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    last = ""
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.strip():
                last = line
        code = proc.wait()
    except BaseException:
        proc.terminate()  # it stops its own children in its ``finally``
        proc.wait(120)
        raise
    elapsed = time.monotonic() - started
    if code != 0:
        say(f"=== {name} failed with exit code {code} after {elapsed:.0f} s")
        return {f"{name}_error": f"exit code {code}"}
    try:
        figures = json.loads(last)
    except ValueError:
        return {f"{name}_error": "no JSON on the last line"}
    say(f"=== {name} done in {elapsed:.0f} s")
    figures.pop("machine", None)
    return {**figures, f"{name}_seconds": round(elapsed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run (minutes)")
    parser.add_argument("--only", help=f"comma-separated, from {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    names = list(DEFAULT)
    if args.only:
        names = [n.strip() for n in args.only.split(",")]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            parser.error(f"unknown benchmarks {unknown}")
    info = machine()
    started = time.monotonic()
    merged: dict[str, Any] = {"machine": info, "quick": args.quick, "load_avg_start": loadavg()}
    for name in names:
        merged.update(run(name, args.quick))
    merged["load_avg_end"] = loadavg()
    merged["total_seconds"] = round(time.monotonic() - started)
    print()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, "
          f"{info['os']}, Python {info['python']}, Java {info['java']}, pyspark "
          f"{info.get('pyspark')}; load {merged['load_avg_start']} -> {merged['load_avg_end']}")
    rows = []
    for key, label, target, met in TARGETS:
        value = merged.get(key)
        ok = None if value is None or met is None else ("met" if met(value) else "NOT met")
        rows.append((label, value, target, ok or "-"))
    print(table(["figure", "measured", "target", ""], rows))
    if args.quick:
        print("(quick run: short measurements, not the benchmark's figures)")
    emit(merged)
    return 0


if __name__ == "__main__":
    sys.exit(main())
