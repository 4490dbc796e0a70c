"""Benchmark: end-to-end latency, start-up time and memory of the embedded stack, and the baseline's.

Runs, each on a fresh stack started as ``make run`` starts it (``python -m stack``, its
own embedded broker on a free port, its own Cassandra node on a free port unless
Cassandra is off, its own data directory, loopback only):

1. **Spark** (the stack with every job, Cassandra on as in ``make run``): a Socket.IO
   client connects to /demo1 (raw host metrics), /demo7 (host-metric windows read from
   SQLite, "disk") and /demo8 (the same stream, ``vmstat_tumbling``, written by its own
   Spark query to Cassandra and read from there) as soon as the display server answers;
   the time from the start of ``python -m stack`` (plus ``make``'s own check of the
   set-up) to the first ``vmstat_tumbling`` update on /demo7 is the start-up time (the
   disk demo must not wait for Cassandra); the first one on /demo8 is shown too. Once
   every query runs and /demo8 has had its first update, the kit's own producer loop
   (``input.base.Source`` through ``KafkaSink``, which stamps ``produced_at``) adds RATE
   host-metric records/s (default 1,000, 24 hosts) for a warm-up (default 120 s: a fresh
   JVM's JIT compiler works for minutes), the measured time (default 60 s) and 5 s more.
   With ``--cassandra off`` the same with ``CASSANDRA=off`` (no node, no /demo8); with
   ``--cassandra both`` (what ``make bench`` runs), both runs, the off run's figures as
   ``cassandra_off_*`` (what the node and its queries cost in memory, CPU and latency).
2. **Baseline**: the same with ``python -m stack --no-spark`` (``CASSANDRA=off``: it does
   not use it) and ``bench/baseline.py`` (one plain Python consumer doing the same windows
   into the same store and results).
3. **Peers** (issue #27): the same as the baseline with ``bench/peers/quix_windows.py``
   (Quix Streams) or ``bench/peers/pathway_windows.py`` (Pathway) in its place, one at a
   time, each in ``.venv-peers`` (``make bench`` installs it) and its own consumer group.

Latency of an event = arrival at the client of the first ``vmstat_tumbling`` update whose
batch included it, minus the event's produce time; measured the same way on /demo7 and
/demo8, each from its own query's updates. An update carries ``timing.produced_at``,
the newest produce time of its batch's input, so every event produced up to then is in
it or in an earlier update; the producer saves every produce time, hence one latency per
event produced in the measured minute (produce times have 1 ms resolution). Also shown:
the newest event's latency per update and where it went (broker, Spark, store, server,
client); "stored -> server push" is the server's push time minus the time the job had
written the batch to its store. Raw path: every raw record on /demo1 (producer -> Kafka
-> server -> client).

Memory: every process of the stack (broker, Cassandra node, Spark's JVM, Python workers,
sources, display server, ...) and the load producer, summed every second (RSS; PSS every
5 s), also by kind of process; steady = median over the measured minute. The benchmark's
own client is not counted. CPU: the cores each kind of those processes used over the
measured minute, and the whole machine's (busy, and stolen by the hypervisor): a machine
much busier than the stack means something else ran beside it.

Run: ``.venv/bin/python bench/e2e_latency.py [--quick] [--only ENGINE[,ENGINE]]
[--cassandra on|off|both]`` (engines: spark, baseline, quix, pathway). Prints progress, then tables; the last line is one JSON
object: for /demo7 (disk) ``e2e_p50_s``, ``e2e_p95_s``, ``stored_pushed_p50_s``,
``stored_pushed_p95_s``; for /demo8 (Cassandra) ``e2e_cassandra_p50_s``,
``e2e_cassandra_p95_s``, ``stored_pushed_cassandra_p50_s``, ``stored_pushed_cassandra_p95_s``,
``e2e_cassandra_minus_disk_p95_s``; ``raw_p95_ms``, ``peak_rss_mib``, ``peak_pss_mib`` (the
whole stack, with Cassandra when ``cassandra`` is "on"), ``first_update_s``,
``first_update_cassandra_s``; the baseline's figures as ``baseline_*`` and
``latency_ratio_p50`` = Spark / baseline; each peer's as ``quix_*`` and ``pathway_*``, with
``<engine>_engine_peak_pss_mib`` (the engine's own processes: for Spark, every query of the
stack) and ``<engine>_job_lines`` (lines of its job's code).
"""

from __future__ import annotations

import argparse
import bisect
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._engines import ENGINE_CODE, ENGINE_KINDS, PEER_SCRIPTS, code_lines, engine_argv
from bench._listen import Listener
from bench._loadgen import Load
from bench._processes import ROOT, Workspace, base_env, install_signal_handlers
from bench._report import emit, loadavg, machine, rounded, say, summary, table
from bench._stack import Stack
from bench._usage import MemorySampler, cpu_seconds, machine_cpu_seconds
from common import processes
from common.records import parse_time
from common.settings import load
from common.waiting import eventually

TAIL_S = 5.0
STREAM = "vmstat_tumbling"
#: The demo each store's windows of STREAM are read on: (namespace, store).
DISK = ("/demo7", "disk")
CASSANDRA = ("/demo8", "cassandra")
STAGES = ("produced -> broker", "broker -> foreachBatch", "foreachBatch -> stored",
          "stored -> server push", "server push -> client", "newest event -> client")


@dataclass(frozen=True)
class Run:
    """One stack to measure: Spark or the baseline, with or without Cassandra."""

    engine: str  # "spark", "baseline", or a peer: "quix", "pathway"
    cassandra: bool

    @property
    def name(self) -> str:
        if self.cassandra or self.engine != "spark":  # the others never use Cassandra
            return self.engine
        return f"{self.engine}-cassandra-off"

    @property
    def demos(self) -> list[tuple[str, str]]:
        """The (namespace, store) demos of STREAM measured: /demo7, and /demo8 with Cassandra."""
        return [DISK, CASSANDRA] if self.cassandra else [DISK]


def ts(text: str | None) -> float | None:
    return parse_time(text).timestamp() if text else None


def make_overhead_s() -> float | None:
    """What ``make run`` adds before ``python -m stack`` when the set-up is done: its checks."""
    stamps = [".venv/.setup-stamp", "display/node_modules/.setup-stamp"]
    up_to_date = subprocess.run(["make", "--question", *stamps], cwd=ROOT,
                                capture_output=True, timeout=30).returncode == 0
    if not up_to_date:
        say("make's set-up is not up to date here: start-up time excludes make")
        return None
    started = time.monotonic()
    subprocess.run(["make", "--silent", "check-tools"], cwd=ROOT, capture_output=True,
                   timeout=60, check=True)
    return time.monotonic() - started


def per_event(events: list[float], updates: list[tuple[float, float]]
              ) -> list[tuple[float, float, int]]:
    """For each event time, (event, latency, index of the covering update); none if uncovered.

    ``updates``: (arrival, newest produce time) in arrival order. An event produced at ``e``
    (1 ms resolution, as in the records) is covered by the first update whose newest
    produce time, or an earlier update's, is at or after it.
    """
    covers: list[float] = []
    newest = float("-inf")
    for _, produced in updates:
        newest = max(newest, produced)
        covers.append(newest)
    out = []
    for e in events:
        i = bisect.bisect_left(covers, int(e * 1000) / 1000 - 1e-7)
        if i < len(updates):
            out.append((e, updates[i][0] - e, i))
    return out


def stream_updates(listener: Listener, demo: tuple[str, str], stream: str = STREAM
                   ) -> list[tuple[float, dict[str, Any]]]:
    """The updates of ``stream`` from the demo's store that say when their input was produced."""
    ns, store = demo
    return [(t, d) for t, d in listener.updates(ns) if d.get("stream") == stream
            and d.get("store") == store and (d.get("timing") or {}).get("produced_at")]


def newest_produced(listener: Listener, demo: tuple[str, str]) -> float:
    """The newest produce time any update of the demo has covered (0 before the first)."""
    return max((ts(d["timing"]["produced_at"]) or 0.0 for _, d in stream_updates(listener, demo)),
               default=0.0)


def run(spec: Run, args: argparse.Namespace, ws: Workspace) -> dict[str, Any]:
    spark = spec.engine == "spark"
    name = spec.name
    say(f"[{name}] starting python -m stack{'' if spark else ' --no-spark'} "
        f"(CASSANDRA={'on' if spec.cassandra else 'off'}) ...")
    cluster = args.cluster if spark else None
    stack = Stack(ws, name=name, no_spark=not spark, cassandra=spec.cassandra,
                  env={"TRIGGER_SECONDS": str(args.trigger)}, cluster_hosts=cluster)
    stack.start()
    started_wall = time.time()
    listener: Listener | None = None
    load: Load | None = None
    baseline: subprocess.Popen[Any] | None = None
    mem: MemorySampler | None = None
    first_cassandra_s: float | None = None
    try:
        bootstrap = stack.bootstrap(args.startup_timeout if cluster else 60)
        assert stack.proc is not None
        mem = MemorySampler([stack.proc.pid]).start()
        stack.wait_display()
        listener = Listener(stack.url, ["/demo1", *(ns for ns, _ in spec.demos)])
        listener.connect()
        say(f"[{name}] broker {bootstrap}, display {stack.url}: client connected after "
            f"{time.time() - started_wall:.1f} s")
        if not spark:
            baseline = ws.start(engine_argv(spec.engine), f"{spec.engine}.log",
                                env=base_env(stack.data_dir, KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                                             TRIGGER_SECONDS=str(args.trigger)))
            mem.add(baseline.pid)

        def first(demo: tuple[str, str]) -> float | None:
            if baseline is not None and baseline.poll() is not None:
                raise RuntimeError(f"the {spec.engine} job exited with {baseline.returncode}")
            ups = stream_updates(listener, demo) if listener else []
            return ups[0][0] if ups else None

        def waiting(what: str) -> Any:
            def check() -> None:
                stack.check()
                elapsed = time.time() - started_wall
                if int(elapsed * 10) % 50 == 0:
                    say(f"[{name}] waiting for {what} ... {elapsed:.0f} s")

            return check

        first_at = eventually(lambda: first(DISK), args.startup_timeout,
                              f"the first {STREAM} update on /demo7",
                              interval_s=0.1,
                              check=waiting("the first windowed update on /demo7"))
        first_update_s = first_at - started_wall
        say(f"[{name}] first {STREAM} update on /demo7 (disk) after {first_update_s:.1f} s")
        if spark:
            # Measure the steady state: the stack starts its queries one by one.
            log_file = stack.data_dir / "logs" / "processing.log"

            def all_running() -> bool:
                return log_file.exists() and " queries running: " in log_file.read_text()

            eventually(all_running, args.startup_timeout, "every query of the stack running",
                       check=stack.check, interval_s=0.5)
            say(f"[{name}] every query running after {time.time() - started_wall:.1f} s")
        if spec.cassandra:
            try:
                at = eventually(lambda: first(CASSANDRA), args.startup_timeout,
                                f"the first {STREAM} update on /demo8 (Cassandra)",
                                interval_s=0.1,
                                check=waiting("Cassandra and the first update on /demo8"))
                first_cassandra_s = at - started_wall
                ready = stack.said(r"Cassandra: ready at \S+ after (\d+) s")
                say(f"[{name}] first {STREAM} update on /demo8 (Cassandra) after "
                    f"{first_cassandra_s:.1f} s (the stack: Cassandra ready after "
                    f"{ready[1].group(1) + ' s' if ready else '?'})")
            except TimeoutError as error:  # the disk figures still count; the logs are kept
                ws.failed = True
                say(f"[{name}] {error}; Cassandra's log ends with:\n{stack.log_tail('cassandra')}"
                    f"\nprocessing.log ends with:\n{stack.log_tail('processing')}")

        total = args.warmup + args.seconds + TAIL_S
        times_file = ws.path(f"{name}-produce-times.txt")
        load = Load(ws, bootstrap, args.rate, total, mode="kit", name=f"{name}-load",
                    times_out=times_file)
        mem.add(load.proc.pid)
        load_started = time.monotonic()
        measure_start = load_started + args.warmup
        measure_end = measure_start + args.seconds
        loads: list[list[float]] = []
        # CPU at the start and the end of the measured minute: ours by kind, the machine's.
        marks: list[tuple[float, dict[str, float], tuple[float, float]]] = []
        roots = [stack.proc.pid, load.proc.pid]
        deadline = load_started + total + 60
        next_report = load_started
        while load.proc.poll() is None and time.monotonic() < deadline:
            stack.check()
            now = time.monotonic()
            if (not marks and now >= measure_start) or (len(marks) == 1 and now >= measure_end):
                marks.append((now, cpu_seconds(roots), machine_cpu_seconds()))
            if now >= next_report:
                next_report += 5
                parts = []
                for demo in spec.demos:
                    ups = stream_updates(listener, demo)
                    fresh = (ups[-1][0] - (ts(ups[-1][1]["timing"]["produced_at"]) or 0)
                             if ups else float("nan"))
                    parts.append(f"{demo[0]} {len(ups)} updates ({fresh:.2f} s)")
                phase = "warm-up" if now < measure_start else "measuring" if now < measure_end else "tail"
                say(f"[{name}] {phase} {now - load_started:5.0f}/{total:.0f} s: "
                    f"{load.acked:,} records acked; {', '.join(parts)} "
                    f"(newest event's age on arrival); memory {mem.current_mib():,.0f} MiB")
                if measure_start <= now <= measure_end:
                    loads.append(loadavg())
            time.sleep(0.2)
        produced = load.wait(30)
        times = [float(x) for x in times_file.read_text().split()]
        t0 = times[0]
        window = [t for t in times if t0 + args.warmup <= t < t0 + args.warmup + args.seconds]
        last = int(window[-1] * 1000) / 1000
        measured = [d for d in spec.demos if d != CASSANDRA or first_cassandra_s is not None]
        try:
            eventually(lambda: all(newest_produced(listener, d) >= last for d in measured), 120,
                       "the updates covering the last measured event", interval_s=0.1,
                       check=stack.check)
        except TimeoutError as error:  # reported as uncovered events, not a crash
            say(f"[{name}] {error}")
        time.sleep(1.0)
        steady_end = time.monotonic()
    finally:
        if listener is not None:
            listener.close()
        if mem is not None:
            mem.stop()
        if load is not None:
            load.stop()
        if baseline is not None:
            processes.stop(baseline, 20, group=True)
        say(f"[{name}] stopping the stack (Ctrl-C) ...")
        stack.stop()
    assert mem is not None and listener is not None
    memory = mem.report(measure_start, min(measure_end, steady_end))
    memory["engine_peak_pss_mib"] = mem.peak_pss_of(ENGINE_KINDS[spec.engine])
    return analyse(spec, listener, window, produced, first_update_s, first_cassandra_s, memory,
                   loads, cpu_use(marks), args)


def cpu_use(marks: list[tuple[float, dict[str, float], tuple[float, float]]]) -> dict[str, Any]:
    """Cores used between the two marks: by kind of our processes, in all, and the machine's."""
    if len(marks) < 2:
        return {}
    (t0, ours0, (busy0, steal0)), (t1, ours1, (busy1, steal1)) = marks[0], marks[-1]
    wall = t1 - t0
    by_kind = {k: round((ours1.get(k, 0.0) - ours0.get(k, 0.0)) / wall, 2)
               for k in sorted(ours1)}
    return {"cpu_cores_by_kind": by_kind, "stack_cpu_cores": round(sum(by_kind.values()), 2),
            "machine_busy_cores": round((busy1 - busy0) / wall, 2),
            "machine_steal_cores": round((steal1 - steal0) / wall, 2)}


def latency(listener: Listener, demo: tuple[str, str], window: list[float],
            stream: str = STREAM) -> dict[str, Any]:
    """Per-event latency of ``stream`` on one demo over ``window``, and its stages per update."""
    ups = stream_updates(listener, demo, stream)
    pairs = [(t, ts(d["timing"]["produced_at"]) or 0.0) for t, d in ups]
    lat = per_event(window, pairs)
    used = sorted({i for _, _, i in lat})
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    for i in used:
        recv, d = ups[i]
        timing = d["timing"]
        p = ts(timing.get("produced_at"))
        b = ts(timing.get("broker_at"))
        f = ts(timing.get("batch_started_at"))
        w = ts(d.get("written_at"))
        s = ts(d.get("pushed_at"))
        for stage, a, z in zip(STAGES, (p, b, f, w, s, p), (b, f, w, s, recv, recv), strict=True):
            if a is not None and z is not None:
                stages[stage].append(z - a)
    store_lat = [(ts(ups[i][1].get("written_at")) or e) - e for e, _, i in lat]
    return {"events": summary([x for _, x, _ in lat]), "updates": len(used),
            "uncovered": len(window) - len(lat),
            "stages": {k: summary(v) for k, v in stages.items()}, "store": summary(store_lat)}


def figures(m: dict[str, Any], suffix: str = "") -> dict[str, Any]:
    """The JSON figures of one demo's latency (``suffix``: "" for /demo7, "_cassandra")."""
    ev, stages = m["events"], m["stages"]
    pushed = stages["stored -> server push"]
    return {
        f"e2e{suffix}_p50_s": rounded(ev["p50"]), f"e2e{suffix}_p95_s": rounded(ev["p95"]),
        f"e2e{suffix}_p99_s": rounded(ev["p99"]), f"e2e{suffix}_max_s": rounded(ev["max"]),
        f"e2e{suffix}_updates": m["updates"], f"e2e{suffix}_uncovered": m["uncovered"],
        f"e2e{suffix}_newest_p50_s": rounded(stages["newest event -> client"]["p50"]),
        f"e2e{suffix}_store_p50_s": rounded(m["store"]["p50"]),
        f"stored_pushed{suffix}_p50_s": rounded(pushed["p50"]),
        f"stored_pushed{suffix}_p95_s": rounded(pushed["p95"]),
    }


def analyse(spec: Run, listener: Listener, window: list[float], produced: dict[str, Any],
            first_update_s: float, first_cassandra_s: float | None, memory: dict[str, Any],
            loads: list[list[float]], cpu: dict[str, Any], args: argparse.Namespace
            ) -> dict[str, Any]:
    disk = latency(listener, DISK, window)
    sliding = latency(listener, DISK, window, "vmstat_sliding")
    raw: list[float] = []
    lo, hi = window[0], window[-1] + 1e-3
    for recv, d in listener.updates("/demo1"):
        for r in d.get("records") or []:
            if str(r.get("host", "")).startswith("bench-"):
                p = ts(r.get("produced_at"))
                if p is not None and lo - 1e-3 <= p <= hi:
                    raw.append(recv - p)
    raw_s = summary(raw)
    mean_load = [round(sum(x[i] for x in loads) / len(loads), 2) for i in range(3)] if loads else None
    out: dict[str, Any] = {
        "engine": spec.engine, "run": spec.name, "cassandra": "on" if spec.cassandra else "off",
        # Which engines ran as clusters (CLUSTER_ENGINES, all three unless set), and the
        # replication the stack's topics got (KAFKA_REPLICATION_FACTOR overrides the 3).
        "cluster": (",".join(load().cluster_engines)
                    if args.cluster and spec.engine == "spark" else None),
        "kafka_replication_factor": os.environ.get("KAFKA_REPLICATION_FACTOR"),
        "rate": args.rate, "trigger_s": args.trigger,
        "measured_s": args.seconds, "events": len(window), "produced": produced.get("acked"),
        **figures(disk),
        "sliding_p50_s": rounded(sliding["events"]["p50"]),
        "sliding_p95_s": rounded(sliding["events"]["p95"]),
        "raw_records": len(raw), "raw_p50_ms": rounded(raw_s["p50"] * 1000, 1),
        "raw_p95_ms": rounded(raw_s["p95"] * 1000, 1), "raw_p99_ms": rounded(raw_s["p99"] * 1000, 1),
        "first_update_s": round(first_update_s, 1),
    }
    cassandra = latency(listener, CASSANDRA, window) if spec.cassandra else None
    if cassandra is not None:
        out.update(figures(cassandra, "_cassandra"))
        for q in ("p50", "p95"):
            a, b = out[f"e2e_cassandra_{q}_s"], out[f"e2e_{q}_s"]
            out[f"e2e_cassandra_minus_disk_{q}_s"] = (
                None if a is None or b is None else round(a - b, 3))
        out["first_update_cassandra_s"] = rounded(first_cassandra_s or float("nan"), 1)
    out.update(memory)
    if spec.cassandra:
        out["cassandra_node_steady_pss_mib"] = memory["steady_pss_by_kind_mib"].get("cassandra")
    out["load_avg"] = mean_load
    out.update(cpu)
    out["stages_p50_s"] = {k: rounded(v["p50"]) for k, v in disk["stages"].items()}
    if cassandra is not None:
        out["stages_cassandra_p50_s"] = {k: rounded(v["p50"])
                                         for k, v in cassandra["stages"].items()}
    return out


def met(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit  # None: nothing measured


def targets(r: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """Issue #22's targets (2-core machines) and issue #23's for Cassandra, for one run."""
    rows = [
        ("e2e p50 <= 0.8 s (/demo7, disk)", r["e2e_p50_s"], met(r["e2e_p50_s"], 0.8)),
        ("e2e p95 <= 1.2 s (/demo7, disk)", r["e2e_p95_s"], met(r["e2e_p95_s"], 1.2)),
        ("raw p95 <= 25 ms", r["raw_p95_ms"], met(r["raw_p95_ms"], 25)),
    ]
    if r["cassandra"] == "on":
        rows += [
            ("e2e p95 /demo8 (Cassandra) - /demo7 (disk) <= 0.3 s",
             r["e2e_cassandra_minus_disk_p95_s"], met(r["e2e_cassandra_minus_disk_p95_s"], 0.3)),
            ("peak PSS, whole stack with Cassandra <= 3.5 GiB", r["peak_pss_mib"],
             met(r["peak_pss_mib"], 3584)),
            ("first update on /demo7 <= 20 s, Cassandra on", r["first_update_s"],
             met(r["first_update_s"], 20)),
        ]
    else:
        rows += [
            ("peak PSS, stack with Cassandra off <= 2 GiB", r["peak_pss_mib"],
             met(r["peak_pss_mib"], 2048)),
            ("first update on /demo7 <= 20 s, Cassandra off", r["first_update_s"],
             met(r["first_update_s"], 20)),
        ]
    return rows


def print_tables(results: dict[str, dict[str, Any]]) -> None:
    rows: list[tuple[Any, ...]] = []
    for name, r in results.items():
        for demo, suffix, first in (("/demo7 disk", "", "first_update_s"),
                                    ("/demo8 Cassandra", "_cassandra", "first_update_cassandra_s")):
            if f"e2e{suffix}_p50_s" not in r:
                continue
            rows.append((f"{name} {demo}", r["events"], r[f"e2e{suffix}_updates"],
                         r[f"e2e{suffix}_uncovered"], r[f"e2e{suffix}_p50_s"],
                         r[f"e2e{suffix}_p95_s"], r[f"e2e{suffix}_p99_s"],
                         r[f"e2e{suffix}_newest_p50_s"], r[f"e2e{suffix}_store_p50_s"],
                         r[f"stored_pushed{suffix}_p50_s"], r[f"stored_pushed{suffix}_p95_s"],
                         r.get(first)))
    print(table(["run / demo (vmstat_tumbling)", "events", "updates", "uncovered", "p50 s",
                 "p95 s", "p99 s", "newest p50", "event->stored p50", "stored->pushed p50",
                 "stored->pushed p95", "first update s"], rows))
    print()
    rows = [(name, r["cassandra"], r["raw_p50_ms"], r["raw_p95_ms"], r["peak_rss_mib"],
             r["steady_rss_mib"], r["peak_pss_mib"], r["steady_pss_mib"],
             " ".join(str(x) for x in r["load_avg"] or []), r.get("stack_cpu_cores"),
             r.get("machine_busy_cores"), r.get("machine_steal_cores"))
            for name, r in results.items()]
    print(table(["run", "Cassandra", "raw p50 ms", "raw p95 ms", "peak RSS MiB", "steady RSS",
                 "peak PSS", "steady PSS", "load avg (measured minute)", "our CPU cores",
                 "machine busy cores", "stolen cores"], rows))
    for name, r in results.items():
        print(f"\n{name}: where the newest event of each update spent its time (p50, s)")
        if "stages_cassandra_p50_s" in r:
            print(table(["stage", "/demo7 disk", "/demo8 Cassandra"],
                        [(k, v, r["stages_cassandra_p50_s"].get(k))
                         for k, v in r["stages_p50_s"].items()]))
        else:
            print(table(["stage", "/demo7 disk"], list(r["stages_p50_s"].items())))
        print(f"{name}: peak RSS by kind (MiB): {r['peak_rss_by_kind_mib']}")
        print(f"{name}: peak PSS by kind (MiB): {r['peak_pss_by_kind_mib']}")
        print(f"{name}: steady PSS by kind (MiB): {r['steady_pss_by_kind_mib']}")
        print(f"{name}: CPU cores by kind over the measured minute: {r.get('cpu_cores_by_kind')}")


#: The figures of a second Spark run with Cassandra off, kept as ``cassandra_off_<key>``.
OFF_KEYS = ("e2e_p50_s", "e2e_p95_s", "raw_p95_ms", "peak_rss_mib", "steady_rss_mib",
            "peak_pss_mib", "steady_pss_mib", "peak_rss_by_kind_mib", "peak_pss_by_kind_mib",
            "first_update_s", "load_avg", "stack_cpu_cores", "cpu_cores_by_kind")
BASELINE_KEYS = ("e2e_p50_s", "e2e_p95_s", "e2e_p99_s", "raw_p50_ms", "raw_p95_ms",
                 "peak_rss_mib", "steady_rss_mib", "peak_pss_mib", "steady_pss_mib",
                 "first_update_s", "load_avg")
#: Every plain engine's figures, kept as ``<engine>_<key>`` (the baseline's and the peers').
ENGINE_KEYS = (*BASELINE_KEYS, "sliding_p50_s", "sliding_p95_s", "engine_peak_pss_mib",
               "e2e_uncovered", "stack_cpu_cores", "cpu_cores_by_kind")
PEERS = tuple(PEER_SCRIPTS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000, help="records/s (default 1000)")
    parser.add_argument("--trigger", type=float, default=1.0, help="trigger seconds (default 1)")
    parser.add_argument("--warmup", type=float, default=120.0,
                        help="seconds at the rate before measuring (default 120: the JIT "
                             "compiler of a fresh JVM works for minutes)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--startup-timeout", type=float, default=240.0)
    parser.add_argument("--only", help="comma-separated engines: spark, baseline, quix, pathway "
                                       "(default: all, one at a time)")
    parser.add_argument("--cassandra", choices=("on", "off", "both"), default="on",
                        help="the Spark run with the stack's Cassandra node (on, the default, as "
                             "make run), without it (off), or both runs one after the other "
                             "(about 4 minutes more on 2 cores; what make bench runs); the "
                             "baseline runs without it")
    parser.add_argument("--cluster", metavar="HOSTS", nargs="?", const="127.0.0.8,127.0.0.9,127.0.0.10",
                        help="the Spark run on python -m stack --cluster (3 brokers, replication "
                             "3, a Spark master with 2 workers, 3 Cassandra nodes) on these "
                             "three loopback addresses (default 127.0.0.8-10); "
                             "CLUSTER_ENGINES=kafka (or spark, cassandra) runs only that "
                             "engine as a cluster, to measure its cost alone")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s warm-up, 15 s measured")
    parser.add_argument("--keep", action="store_true", help="keep the workspace (logs)")
    args = parser.parse_args()
    install_signal_handlers()
    if args.quick:
        args.warmup, args.seconds = 5.0, 15.0
    info = machine()
    say(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; "
        f"{args.rate:,.0f} records/s, trigger {args.trigger:g} s, warm-up {args.warmup:g} s, "
        f"measured {args.seconds:g} s, Cassandra {args.cassandra}")
    make_s = make_overhead_s()
    specs = [Run("spark", on) for on in
             {"on": (True,), "off": (False,), "both": (True, False)}[args.cassandra]]
    specs += [Run(engine, False) for engine in ("baseline", *PEERS)]
    only = set(args.only.split(",")) if args.only else None
    if only and only - {"spark", "baseline", *PEERS}:
        parser.error(f"unknown engines {sorted(only - {'spark', 'baseline', *PEERS})}")
    results: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for spec in specs:
        if only and spec.engine not in only:
            continue
        started = time.monotonic()
        with Workspace(f"e2e-{spec.name}", keep=args.keep) as ws:
            results[spec.name] = run(spec, args, ws)
        seconds[spec.name] = time.monotonic() - started
        say(f"[{spec.name}] done in {seconds[spec.name]:.0f} s")
    for r in results.values():
        if r["engine"] == "spark" and make_s is not None:
            for key in ("first_update_s", "first_update_cassandra_s"):
                if r.get(key) is not None:
                    r[key] = round(r[key] + make_s, 1)
    print()
    print_tables(results)
    out: dict[str, Any] = {"machine": info}
    spark = next((r for r in results.values() if r["engine"] == "spark"), None)
    off = results.get("spark-cassandra-off") if spark and spark["cassandra"] == "on" else None
    base = results.get("baseline")
    if spark:
        nested = ("engine", "run", "stages_p50_s", "stages_cassandra_p50_s",
                  "peak_rss_by_kind_mib", "peak_pss_by_kind_mib", "steady_pss_by_kind_mib",
                  "cpu_cores_by_kind")
        out.update({k: v for k, v in spark.items() if k not in nested})
        out.update({k: spark[k] for k in nested[2:] if k in spark})
        out["make_overhead_s"] = rounded(make_s or 0.0, 2)
        out["spark_run_seconds"] = round(seconds[spark["run"]])
    if off:
        out.update({f"cassandra_off_{k}": off[k] for k in OFF_KEYS})
        out["cassandra_off_run_seconds"] = round(seconds[off["run"]])
    if base:
        out.update({f"baseline_{k}": base[k] for k in BASELINE_KEYS})
        out["baseline_engine_peak_pss_mib"] = base["engine_peak_pss_mib"]
    if spark:
        out["spark_engine_peak_pss_mib"] = spark["engine_peak_pss_mib"]
    for peer in PEERS:
        if peer in results:
            out.update({f"{peer}_{k}": results[peer].get(k) for k in ENGINE_KEYS})
    for engine in ("spark", "baseline", *PEERS):
        out[f"{engine}_job_lines"] = code_lines(ENGINE_CODE[engine])
    print()
    print(table(["engine", "e2e p50 s", "e2e p95 s", "sliding p95 s", "engine peak PSS MiB",
                 "job lines", "load avg (measured minute)"],
                [(r["run"], r["e2e_p50_s"], r["e2e_p95_s"], r["sliding_p95_s"],
                  r["engine_peak_pss_mib"], out[f"{r['engine']}_job_lines"],
                  " ".join(str(x) for x in r["load_avg"] or []))
                 for r in results.values()]))
    if spark and base and base["e2e_p50_s"] and spark["e2e_p50_s"] is not None:
        out["latency_ratio_p50"] = round(spark["e2e_p50_s"] / base["e2e_p50_s"], 2)
        out["latency_ratio_p95"] = round(spark["e2e_p95_s"] / base["e2e_p95_s"], 2)
    rows = [(f"{name}: {label}", value, ok) for name, r in results.items()
            if r["engine"] == "spark" for label, value, ok in targets(r)]
    if rows:
        print()
        print(table(["target", "measured", "met"], rows))
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
