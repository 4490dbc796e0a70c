"""Benchmark: the highest input rate the windowed host-metrics job holds, and the baseline's.

For each engine, one fresh embedded broker (``EmbeddedBroker``, port 0) and one long-lived
consumer of the ``vmstat`` topic, as a user runs them:

* ``spark``: ``python -m processing.vmstat_windows`` (one query: 10 s tumbling windows,
  and the 1 min sliding ones built from them, 1 s trigger, ``local[2]``), writing SQLite
  and ``results``;
* ``baseline``: ``bench/baseline.py``, the same windows in one plain Python process;
* ``quix`` and ``pathway`` (issue #27): ``bench/peers/quix_windows.py`` (Quix Streams) and
  ``bench/peers/pathway_windows.py`` (Pathway), the same windows, store and results, each
  in ``.venv-peers`` (``make bench`` installs it) and its own consumer group.

Then steps of a fixed input rate (default 10k, 20k, 40k, 80k, 120k, 160k records/s: the
target of issue #22 is 100,000/s), each from a load generator on the same 2 cores
(``bench/_load.py --mode fast``: the records of the kit's host-metrics source,
pre-encoded) with its own hosts: WARMUP s (default 10) at the rate, then SECONDS
(default 60) measured. Above ``--split-above`` records/s (default 100,000) the rate is
split among ``--producers`` generator processes (default 2; 24 hosts in all): one process
alone on this machine (15 s against a bare broker, 2026-12-06) used 0.41 cores at 80k/s,
0.61 at 120k/s and 1.1 at 160k/s (its Python loop near a whole core, which it would not
get beside the job), two processes at 80k/s each 0.75 in all. A step the generators did
not deliver (acknowledged under 97% of the rate) says so ("generator reached only ...",
with the generators' cores and whether the job kept up with what they did deliver). Each fresh
job is first primed for PRIME s (default 120) at 1,000 records/s: its JIT compiler works
for minutes, and a stream runs for hours (start-up: ``bench/e2e_latency.py``). Every
half second: lag = records acknowledged by the broker - records the query has processed
(its progress totals on the ``health`` topic). After the step, the generator stops and
the job gets DRAIN s (default 30) to catch up.

A step **holds** when, over the measured seconds, the lag's least-squares slope is under
2% of the rate (it does not grow) and at most 5 s of input waits at the end (median lag
of the last 5 s), plus the query's trigger interval (that much input waits between its
reads by design), the job drains within DRAIN s, and the store's
``vmstat_tumbling`` counts for the step's hosts add up to exactly the records produced
(produced = stored), with no late or malformed row. Stepping stops at the first step that
does not hold; then a step halfway between the highest held rate and the lowest failed one
refines the limit, twice (``--refine-rounds``; each on a fresh broker and job, the failed
step's backlog would distort it: with the default steps, 80k held and 120k failed -> 100k
-> 90k or 110k);
when not even the first step holds, the rate is halved (down to 1,000/s) until one does
(``--no-refine``: neither).

Run: ``.venv/bin/python bench/throughput.py [--quick] [--engine ENGINE[,ENGINE]|both|all]
[--steps 10000,20000,...] [--producers N]`` (engines: spark, baseline, quix, pathway; both:
spark and baseline; all, the default: the four, one after the other). Prints progress and a
table per engine; the last line is one JSON object: ``max_sustained_eps``,
``baseline_max_sustained_eps``, ``quix_max_sustained_eps``, ``pathway_max_sustained_eps``,
``throughput_ratio`` and every step, each step with the job's own peak PSS
(``job_peak_pss_mib``, the broker not counted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._engines import ENGINE_KINDS, PEER_SCRIPTS, engine_argv
from bench._listen import Health
from bench._loadgen import Load
from bench._processes import PY, Workspace, base_env, install_signal_handlers
from bench._report import emit, loadavg, machine, say, slope, table
from bench._usage import MemorySampler, cpu_seconds
from buffer.broker import EmbeddedBroker
from common import processes
from common.waiting import eventually

PEERS = tuple(PEER_SCRIPTS)
HOSTS = 24  # distinct hosts (Kafka keys) of a step, whatever the number of generators
SLOPE_LIMIT = 0.02  # lag may grow by at most 2% of the rate per second
BACKLOG_LIMIT_S = 5.0  # and end the step with at most 5 s of input waiting (+ its trigger)


def store_count(sqlite_path: Path, stream: str, key_prefix: str) -> tuple[int, int]:
    """(sum of ``count`` over the stream's rows whose key starts with the prefix, rows)."""
    import sqlite3

    if not sqlite_path.exists():
        return 0, 0
    conn = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT payload FROM results WHERE stream = ? AND key LIKE ?",
                            (stream, key_prefix.replace("%", "") + "%")).fetchall()
    except sqlite3.OperationalError:  # no table yet
        return 0, 0
    finally:
        conn.close()
    return sum(int(json.loads(p).get("count") or 0) for (p,) in rows), len(rows)


def queries(engine: str) -> list[str]:
    """The names of the engine's queries (Spark: one per windowed stream with its own)."""
    if engine != "spark":
        return [f"vmstat_windows@{engine}"]
    from common import settings
    from processing.vmstat_windows import windowed_streams

    return [f"{s.stream}@disk" for s in windowed_streams(settings.load(environ={}))
            if not s.derived]


class EngineRun:
    """A fresh broker and one engine consuming ``vmstat`` from it, in a workspace."""

    def __init__(self, ws: Workspace, engine: str, run_no: int, trigger: float) -> None:
        self.ws = ws
        self.engine = engine
        self.data_dir = ws.path(f"{engine}-{run_no}")
        self.data_dir.mkdir()
        self.broker = EmbeddedBroker(self.data_dir / "kafka", port=0, log_path=self.data_dir / "broker.log")
        self.bootstrap = self.broker.start()
        self.health = Health(self.bootstrap)
        env = base_env(self.data_dir, KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
                       TRIGGER_SECONDS=str(trigger))
        argv = ([PY, "-m", "processing.vmstat_windows"] if engine == "spark"
                else engine_argv(engine))
        self.proc = ws.start(argv, f"{engine}-{run_no}.log", env=env)
        assert self.broker.pid is not None
        self.memory = MemorySampler([self.proc.pid, self.broker.pid]).start()
        self.queries = queries(engine)
        #: Seconds between a query's reads: it leaves up to that much input waiting by design.
        # (A peer reports its progress when it writes, every trigger: so much input waits.)
        self.triggers = {q: 0.0 if engine == "baseline" else trigger for q in self.queries}
        self.steps_done = 0

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the {self.engine} job exited with {self.proc.returncode}; "
                               f"see {self.ws.dir}")

    def wait_ready(self, prime_s: float) -> float:
        """Wait for the queries, then prime them: ``prime_s`` seconds at 1,000 records/s,
        all processed.

        The first minutes of a fresh JVM are slow: Python workers start, code is
        generated, and the JIT compiler works for minutes (about 200 methods compiled
        a second in the first minute at 1,000 records/s, 30 a second after four,
        ``jcmd <pid> PerfCounter.print``); the steps measure the job warm, as it runs
        for hours. The start-up is measured by ``bench/e2e_latency.py``.
        """
        started = time.monotonic()
        if self.engine == "spark":
            eventually(lambda: self.health.ready is not None, 300, "the Spark queries",
                       check=self.check, interval_s=0.5)
        base = self.processed()
        load = Load(self.ws, self.bootstrap, 1000, prime_s, mode="fast",
                    name=f"prime-{self.engine}", host_prefix="prime-")
        produced = int(load.wait(prime_s + 60)["acked"])
        eventually(lambda: all(self.processed()[q] - base[q] >= produced for q in self.queries),
                   300, "the primed records to be processed", check=self.check, interval_s=0.5)
        return time.monotonic() - started

    def processed(self) -> dict[str, int]:
        return {q: self.health.processed(q) for q in self.queries}

    def step(self, rate: int, args: argparse.Namespace) -> dict[str, Any]:
        self.steps_done += 1
        prefix = f"r{rate // 1000}k-{self.steps_done}-"
        base = self.processed()
        roots = [self.proc.pid, *( [self.broker.pid] if self.broker.pid else [])]
        cpu0 = cpu_seconds(roots)
        total = args.warmup + args.seconds
        n = args.producers if rate > args.split_above else 1
        # Each generator its own hosts under the step's prefix (store_count sums them all).
        loads_: list[Load] = [
            Load(self.ws, self.bootstrap, rate / n, total, mode="fast",
                 name=f"load-{self.engine}-{rate}-{self.steps_done}-{i}",
                 hosts=max(1, HOSTS // n),
                 host_prefix=prefix if n == 1 else f"{prefix}{chr(ord('a') + i)}")
            for i in range(n)]
        t0 = time.monotonic()
        m0, m1 = t0 + args.warmup, t0 + total
        samples: list[tuple[float, int, dict[str, int]]] = []
        loads: list[list[float]] = []
        next_report = t0 + 5
        while (any(g.proc.poll() is None for g in loads_)
               and time.monotonic() < t0 + total + 60):
            self.check()
            time.sleep(0.5)
            now = time.monotonic()
            done = self.processed()
            acked = sum(g.acked for g in loads_)
            samples.append((now, acked, {q: done[q] - base[q] for q in self.queries}))
            if m0 <= now <= m1:
                loads.append(loadavg())
            if now >= next_report:
                next_report += 5
                lags = ", ".join(f"{q.split('@')[0]} {acked - (done[q] - base[q]):,}"
                                 for q in self.queries)
                say(f"[{self.engine} {rate:,}/s] {now - t0:4.0f}/{total:.0f} s: acked "
                    f"{acked:,}, lag {lags}, memory {self.memory.current_mib():,.0f} MiB")
        finals = [g.wait(120) for g in loads_]
        produced = sum(int(f["acked"]) for f in finals)
        load_cpus = [float(f.get("cpu_s") or 0.0) for f in finals]
        cpu1 = cpu_seconds(roots)
        # Drain: every query has processed what was produced, and the store counts it all.
        drain_start = time.monotonic()
        stored = (0, 0)

        def drained() -> bool:
            nonlocal stored
            done = self.processed()
            if any(done[q] - base[q] < produced for q in self.queries):
                return False
            stored = store_count(self.data_dir / "store.sqlite3", "vmstat_tumbling", prefix)
            return stored[0] >= produced

        try:
            eventually(drained, args.drain, "the job to catch up", check=self.check,
                       interval_s=0.5)
            drain_s: float | None = time.monotonic() - drain_start
        except TimeoutError:
            drain_s = None
        stored = store_count(self.data_dir / "store.sqlite3", "vmstat_tumbling", prefix)
        return self.analyse(rate, produced, stored, samples, m0, m1, drain_s, loads,
                            {k: cpu1.get(k, 0) - cpu0.get(k, 0) for k in cpu1}, load_cpus,
                            args)

    def analyse(self, rate: int, produced: int, stored: tuple[int, int],
                samples: list[tuple[float, int, dict[str, int]]], m0: float, m1: float,
                drain_s: float | None, loads: list[list[float]], cpu: dict[str, float],
                load_cpus: list[float], args: argparse.Namespace) -> dict[str, Any]:
        window = [s for s in samples if m0 <= s[0] <= m1]
        per_query: dict[str, dict[str, Any]] = {}
        late = malformed = 0
        for q in self.queries:
            lag = [(t - m0, acked - done[q]) for t, acked, done in window]
            grow = slope(lag)
            tail = [x for t, x in lag if t >= (m1 - m0) - 5]
            progress = self.health.since(q, m0)
            batch_ms = [int(p.get("batch_ms") or 0) for p in progress]
            late += sum(int(p.get("late_rows") or 0) for p in progress)
            malformed += sum(int(p.get("malformed") or 0) for p in progress)
            rate_in = ((window[-1][2][q] - window[0][2][q]) / (window[-1][0] - window[0][0])
                       if len(window) > 1 else 0.0)
            per_query[q] = {
                "lag_slope_per_s": round(grow), "lag_max": max((x for _, x in lag), default=0),
                "lag_end": round(statistics.median(tail)) if tail else None,
                "processed_per_s": round(rate_in),
                "batch_ms_p50": round(statistics.median(batch_ms)) if batch_ms else None,
                "batches": len(progress),
            }
        acked_rate = ((window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
                      if len(window) > 1 else 0.0)
        grows = any(p["lag_slope_per_s"] > SLOPE_LIMIT * rate for p in per_query.values())
        backlog = any((p["lag_end"] or 0) > (BACKLOG_LIMIT_S + self.triggers[q]) * rate
                      for q, p in per_query.items())
        kept_up = (not grows and not backlog and drain_s is not None and stored[0] == produced
                   and late == 0 and malformed == 0)
        generator_short = acked_rate < 0.97 * rate
        held = kept_up and not generator_short
        gen_cores = [round(c / (m1 - m0 + args.warmup), 2) for c in load_cpus]
        reasons = []
        if grows:
            reasons.append("lag grows")
        if backlog:
            reasons.append(f"more than {BACKLOG_LIMIT_S:g} s (+ trigger) of input waiting")
        if drain_s is None:
            reasons.append(f"not drained in {args.drain:.0f} s")
        if stored[0] != produced:
            reasons.append(f"stored {stored[0]:,} != produced {produced:,}")
        if late or malformed:
            reasons.append(f"{late} late, {malformed} malformed")
        if generator_short:
            reasons.append(f"generator reached only {acked_rate:,.0f}/s "
                           f"({len(load_cpus)} process(es), cores {gen_cores}; the job "
                           f"{'kept up with what it delivered' if kept_up else 'did not keep up either'})")
        seconds = max(m1 - m0, 1e-6)
        memory = self.memory.report(m0, m1)
        return {
            "rate": rate, "held": held, "why_not": "; ".join(reasons) or None,
            "produced": produced, "stored": stored[0], "acked_per_s": round(acked_rate),
            "drain_s": round(drain_s, 1) if drain_s is not None else None,
            "late": late, "malformed": malformed, "queries": per_query,
            "cores_used": {k: round(v / (seconds + (args.warmup or 0)), 2)
                           for k, v in sorted(cpu.items())},
            "load_generator_cores": round(sum(gen_cores), 2),
            "load_generators": len(load_cpus),
            "load_generator_cores_each": gen_cores,
            "generator_short": generator_short, "kept_up": kept_up,
            "peak_rss_mib": memory["peak_rss_mib"], "peak_pss_mib": memory["peak_pss_mib"],
            "job_peak_pss_mib": self.memory.peak_pss_of(ENGINE_KINDS[self.engine]),
            "load_avg": [round(sum(x[i] for x in loads) / len(loads), 2) for i in range(3)]
            if loads else None,
        }

    def close(self) -> None:
        self.memory.stop()
        self.health.close()
        processes.stop(self.proc, 30, group=True)
        self.broker.stop()


def run_engine(engine: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    with Workspace(f"throughput-{engine}", keep=args.keep) as ws:
        run_no = 1
        say(f"[{engine}] starting a broker and the job ...")
        run = EngineRun(ws, engine, run_no, args.trigger)
        try:
            say(f"[{engine}] queries running and primed after {run.wait_ready(args.prime):.0f} s")
            for rate in args.steps:
                result = run.step(rate, args)
                steps.append(result)
                say(f"[{engine}] {rate:,}/s: {'held' if result['held'] else 'NOT held: ' + str(result['why_not'])}")
                if not result["held"]:
                    break
            held = [s["rate"] for s in steps if s["held"]]
            failed = [s["rate"] for s in steps if not s["held"]]
            def fresh_step(rate: int, what: str) -> None:
                """One step on a fresh broker and job (a failed step's backlog would distort it)."""
                nonlocal run, run_no
                run.close()
                run_no += 1
                say(f"[{engine}] {what} {rate:,}/s on a fresh broker and job ...")
                run = EngineRun(ws, engine, run_no, args.trigger)
                say(f"[{engine}] queries running and primed after {run.wait_ready(args.prime):.0f} s")
                result = run.step(rate, args)
                result["refinement"] = True
                steps.append(result)
                say(f"[{engine}] {rate:,}/s: {'held' if result['held'] else 'NOT held: ' + str(result['why_not'])}")

            for _ in range(args.refine_rounds if args.refine else 0):
                held = [s["rate"] for s in steps if s["held"]]
                failed = [s["rate"] for s in steps if not s["held"]]
                if not (held and failed):
                    break
                rate = (max(held) + min(failed)) // 2 // 1000 * 1000
                if not max(held) < rate < min(failed):
                    break
                fresh_step(rate, "refining at")
            rate = min(failed) // 2 if failed else 0
            while args.refine and not held and rate >= 1000:
                # Not even the lowest step held: halve it until one does.
                fresh_step(rate, "stepping down to")
                held = [s["rate"] for s in steps if s["held"]]
                rate //= 2
        finally:
            run.close()
    return steps


def print_steps(engine: str, steps: list[dict[str, Any]]) -> None:
    rows = []
    for s in steps:
        q = list(s["queries"].values())
        rows.append((f"{s['rate']:,}/s" + (" (refine)" if s.get("refinement") else ""),
                     s["acked_per_s"], " / ".join(f"{x['processed_per_s']:,}" for x in q),
                     " / ".join(f"{x['lag_slope_per_s']:,}" for x in q),
                     " / ".join(f"{x['lag_max']:,}" for x in q),
                     " / ".join(str(x["batch_ms_p50"]) for x in q),
                     s["drain_s"], f"{s['stored']:,} / {s['produced']:,}",
                     sum(s["cores_used"].values()),
                     f"{s['load_generator_cores']} ({s['load_generators']})", s["peak_rss_mib"],
                     s.get("job_peak_pss_mib"),
                     " ".join(str(x) for x in s["load_avg"] or []),
                     "yes" if s["held"] else f"no: {s['why_not']}"))
    print(f"\n{engine} (per query: " + " / ".join(queries(engine)) + ")")
    print(table(["step", "acked/s", "processed/s", "lag slope/s", "max lag", "batch ms p50",
                 "drain s", "stored / produced", "job+broker cores", "generator cores (procs)",
                 "peak RSS MiB", "job peak PSS MiB", "load avg", "held"], rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="all",
                        help="spark, baseline, quix, pathway (comma-separated), both (spark and "
                             "baseline) or all (default)")
    parser.add_argument("--steps", default="10000,20000,40000,80000,120000,160000")
    parser.add_argument("--producers", type=int, default=2,
                        help="load generator processes for a step above --split-above (default 2)")
    parser.add_argument("--split-above", type=int, default=100_000,
                        help="records/s above which a step's rate is split among --producers "
                             "generator processes (default 100000)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--prime", type=float, default=120.0,
                        help="seconds at 1,000 records/s on each fresh job before its first "
                             "step: JIT warm-up (default 120)")
    parser.add_argument("--drain", type=float, default=30.0)
    parser.add_argument("--trigger", type=float, default=1.0)
    parser.add_argument("--no-refine", dest="refine", action="store_false")
    parser.add_argument("--refine-rounds", type=int, default=2,
                        help="steps halfway between the limits, each on a fresh job (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: steps 5k and 20k, 15 s each, no refinement")
    parser.add_argument("--keep", action="store_true", help="keep the workspace (logs)")
    args = parser.parse_args()
    install_signal_handlers()
    args.steps = [int(s) for s in str(args.steps).split(",")]
    if args.quick:
        args.steps, args.seconds, args.warmup, args.refine = [5000, 20000], 15.0, 5.0, False
        args.prime = 5.0
    info = machine()
    say(f"machine: {info['cpu']}, {info['cores']} cores; each fresh job primed {args.prime:g} s "
        f"at 1,000/s; steps {args.steps}, {args.warmup:g} s warm-up + {args.seconds:g} s each")
    known = ["spark", "baseline", *PEERS]
    engines = {"both": ["spark", "baseline"], "all": known}.get(
        args.engine, args.engine.split(","))
    if set(engines) - set(known):
        parser.error(f"unknown engines {sorted(set(engines) - set(known))}")
    results = {engine: run_engine(engine, args) for engine in engines}
    out: dict[str, Any] = {"machine": info}
    for engine, steps in results.items():
        print_steps(engine, steps)
        held = [s["rate"] for s in steps if s["held"]]
        key = "max_sustained_eps" if engine == "spark" else f"{engine}_max_sustained_eps"
        out[key] = max(held) if held else 0
        out["steps" if engine == "spark" else f"{engine}_steps"] = steps
        pss = [s["job_peak_pss_mib"] for s in steps if s.get("job_peak_pss_mib")]
        out[f"{engine}_job_peak_pss_mib"] = max(pss) if pss else None
    if "spark" in results and "baseline" in results and out["baseline_max_sustained_eps"]:
        out["throughput_ratio"] = round(out["max_sustained_eps"] / out["baseline_max_sustained_eps"], 2)
    for engine, steps in results.items():
        short = [s for s in steps if s["generator_short"]]
        for s in short:
            print(f"{engine} {s['rate']:,}/s: the load generator(s) delivered only "
                  f"{s['acked_per_s']:,}/s ({s['load_generators']} process(es), "
                  f"{s['load_generator_cores_each']} cores each); the job "
                  f"{'kept up with that' if s['kept_up'] else 'did not keep up'}")
        kept = [s["acked_per_s"] for s in short if s["kept_up"]]
        if engine == "spark" and kept:
            out["generator_limited_kept_up_eps"] = max(kept)
    if "spark" in results:
        print(f"\nmax sustained (Spark job): {out['max_sustained_eps']:,}/s "
              f"(target >= 100,000/s: {'met' if out['max_sustained_eps'] >= 100_000 else 'not met'})")
    for engine in results:
        if engine != "spark":
            print(f"max sustained ({engine}): {out[f'{engine}_max_sustained_eps']:,}/s")
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
