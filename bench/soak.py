"""Soak: the whole stack for half an hour under load, watching every figure that could grow.

Starts the stack as ``bench/e2e_latency.py`` does (``python -m stack`` as ``make run``
starts it: its own embedded Kafka broker on a free port, its own data directory,
loopback only), connects one Socket.IO client to EVERY demo namespace (``/demo1`` ..
``/demo11``, from ``common.catalogue``), so that the display server pushes every page's
updates, waits for the first windowed update and for every query, then adds RATE
host-metric records/s (default 1,000, 24 hosts, the kit's own producer path: the load
of the e2e benchmark) for MINUTES (default 30).

Every SAMPLE seconds (default 30) it records:

* RSS and PSS of every process of the stack, summed by kind (broker, Spark's JVM, Spark's
  Python workers, the driver, the display server, the sources, the supervisor), and the
  CPU they used since the last sample (cores); the benchmark's load generator apart;
* the Spark queries' total lag (the ``lag`` of each query's latest ``query_progress``
  message on the ``health`` topic). That figure is the topic's latest offsets when the
  batch was planned minus the batch's end offsets, so it stays 0 unless a batch is capped
  (``MAX_OFFSETS_PER_TRIGGER``); hence also, for each topic a query accounts for
  (``common.catalogue``'s ``Accounting``: vmstat, random, nginx, cases), the records in
  the topic now (its end offsets) minus the records that query has read (its progress
  totals): it includes the input of up to one trigger interval and any records written
  before the query started, so its level means little, its growth that the query falls
  behind;
* the broker's disk use (blocks allocated under the workspace's ``kafka/`` directory,
  as ``du`` counts them) and the whole data directory's;
* the age of the newest event in each ``vmstat_tumbling`` update on arrival at the
  client (median over the interval).

It prints a progress line per sample, then a table of each figure at the start and the
end, its range and its growth per hour (least-squares slope over all samples, and over
the second half only: start-up and warm-up growth falls in the first), the count of
updates each demo namespace received (first half / second half, and how long ago the
last one came: a demo with data should keep receiving), and as the last line one JSON
object. Ctrl-C stops the run early and still reports what was sampled.

Not part of ``make bench`` (``bench/run_all.py``). Run:
``.venv/bin/python bench/soak.py [--minutes 30] [--rate 1000] [--sample 30] [--keep]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import KafkaException

from bench._listen import Health
from bench._loadgen import Load
from bench._processes import Workspace, install_signal_handlers
from bench._report import emit, loadavg, machine, say, slope, table
from bench._stack import Stack
from bench._usage import MemorySampler, _kind
from buffer import kafka, topics
from common import catalogue, processes
from common.records import parse_time
from common.waiting import eventually

MIB = 2**20
DEMO_EVENTS = ("update", "history", "unavailable", "graph")
#: A namespace still "receiving" got an update within this many seconds of the end.
RECENT_S = 90.0


def ts(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    with contextlib.suppress(ValueError):
        return parse_time(text).timestamp()
    return None


class Counts:
    """A Socket.IO client on many namespaces that counts what it receives and keeps little
    else (a client keeping every raw record would itself grow by gigabytes in half an hour)."""

    def __init__(self, url: str, namespaces: list[str]) -> None:
        import socketio

        self.url = url
        self.namespaces = namespaces
        self.events: dict[str, Counter[str]] = {ns: Counter() for ns in namespaces}
        self.streams: dict[str, Counter[str]] = {ns: Counter() for ns in namespaces}
        self.records: Counter[str] = Counter()  # raw records received per namespace
        self.update_times: dict[str, list[float]] = {ns: [] for ns in namespaces}
        #: (arrival, age of the update's newest event) of every vmstat_tumbling update on /demo7
        self.newest: list[tuple[float, float]] = []
        self.unavailable: dict[str, str] = {}
        self._lock = threading.Lock()
        self.client = socketio.Client(reconnection=True, reconnection_delay=1,
                                      reconnection_delay_max=5)
        for ns in namespaces:
            for event in DEMO_EVENTS:
                self.client.on(event, self._handler(ns, event), namespace=ns)
            for event in ("connect", "disconnect"):
                self.client.on(event, self._counter(ns, event), namespace=ns)

    def _counter(self, ns: str, event: str) -> Callable[..., None]:
        def handle(*_args: Any) -> None:
            with self._lock:
                self.events[ns][event] += 1

        return handle

    def _handler(self, ns: str, event: str) -> Callable[[Any], None]:
        def handle(data: Any) -> None:
            now = time.time()
            with self._lock:
                self.events[ns][event] += 1
                if event == "unavailable" and isinstance(data, dict):
                    self.unavailable[ns] = str(data.get("reason"))
                if event != "update" or not isinstance(data, dict):
                    return
                self.update_times[ns].append(now)
                stream = data.get("stream")
                if stream:
                    self.streams[ns][str(stream)] += 1
                records = data.get("records")
                if isinstance(records, list):
                    self.records[ns] += len(records)
                if ns == "/demo7" and stream == "vmstat_tumbling":
                    produced = ts((data.get("timing") or {}).get("produced_at"))
                    if produced is not None:
                        self.newest.append((now, now - produced))

        return handle

    def connect(self) -> None:
        self.client.connect(self.url, namespaces=self.namespaces, transports=["websocket"],
                            wait_timeout=10)

    def updates(self, ns: str) -> int:
        with self._lock:
            return self.events[ns]["update"]

    def total_updates(self) -> int:
        with self._lock:
            return sum(c["update"] for c in self.events.values())

    def first_update(self, ns: str, stream: str) -> bool:
        with self._lock:
            return self.streams[ns][stream] > 0

    def newest_since(self, start: float) -> list[float]:
        with self._lock:
            return [age for t, age in self.newest if t >= start]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()


def disk_bytes(folder: Path) -> int:
    """Bytes allocated to the files under ``folder`` (``du``: sparse index files count
    what they use, not their length); files that vanish meanwhile are skipped."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


class Sampler:
    """One sample of the stack's processes: RSS, PSS and CPU by kind."""

    def __init__(self, stack_pid: int) -> None:
        self.stack_pid = stack_pid
        self._cpu: dict[tuple[int, float], float] = {}  # (pid, create time) -> CPU seconds
        self._at = time.monotonic()
        self.memory()  # the CPU baseline: the first sample's cores count from here

    def memory(self) -> tuple[dict[str, int], dict[str, int], dict[str, float], int]:
        """(RSS by kind, PSS by kind, cores by kind since the last call, processes)."""
        import psutil

        rss: dict[str, int] = {}
        pss: dict[str, int] = {}
        cpu: dict[str, float] = {}
        seen: dict[tuple[int, float], float] = {}
        procs = MemorySampler([self.stack_pid]).processes()
        now = time.monotonic()
        elapsed = max(now - self._at, 1e-6)
        count = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                kind = _kind(proc.cmdline())
                full = proc.memory_full_info()
                times = proc.cpu_times()
                key = (proc.pid, proc.create_time())
                used = times.user + times.system
                seen[key] = used
                rss[kind] = rss.get(kind, 0) + full.rss
                pss[kind] = pss.get(kind, 0) + full.pss
                # CPU since the last sample; all of it for a process started since.
                cpu[kind] = cpu.get(kind, 0.0) + (used - self._cpu.get(key, 0.0)) / elapsed
                count += 1
        self._cpu = seen
        self._at = now
        return rss, pss, cpu, count


def one_process(pid: int) -> tuple[int, int, float]:
    """(RSS, PSS, CPU seconds so far) of one process; zeros when it is gone."""
    import psutil

    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        full = proc.memory_full_info()
        times = proc.cpu_times()
        return full.rss, full.pss, times.user + times.system
    return 0, 0, 0.0


def total_lag(health: Health) -> tuple[int | None, dict[str, int | None]]:
    """The sum of every query's latest reported lag (None when no query reported one)."""
    with health._lock:
        names = list(health.progress)
    per: dict[str, int | None] = {}
    for q in names:
        latest = health.latest(q) or {}
        value = latest.get("lag")
        per[q] = int(value) if isinstance(value, int | float) else None
    known = [v for v in per.values() if v is not None]
    return (sum(known) if known else None), per


class Unread:
    """Records in each accounted topic now minus the records its query has read so far."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = kafka.consumer(bootstrap)
        #: topic name -> the query (as on the health topic) that accounts for it
        self.queries = {getattr(topics, s.accounting.topic.upper()).name: f"{s.accounting.query}@disk"
                        for s in catalogue.STREAMS.values() if s.accounting is not None}

    def sample(self, health: Health) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for topic_name, query in sorted(self.queries.items()):
            try:
                count = next(t.partitions for t in topics.ALL if t.name == topic_name)
                ends = kafka.end_offsets(self.consumer, [(topic_name, p) for p in range(count)], 5)
                in_topic = sum(high for _, high in ends.values())
            except (KafkaException, StopIteration) as error:  # a figure missing, not the soak stopped
                say(f"end offsets of {topic_name}: {error}")
                out[topic_name] = None
                continue
            read = health.processed(query) if health.latest(query) else None
            out[topic_name] = None if read is None else in_topic - read
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.consumer.close()


def take_sample(t0: float, sampler: Sampler, load: Load, health: Health, counts: Counts,
                stack: Stack, last_t: float, last: dict[str, Any] | None,
                unread: Unread) -> dict[str, Any]:
    now = time.monotonic()
    rss, pss, cpu, procs = sampler.memory()
    load_rss, load_pss, load_cpu = (one_process(load.proc.pid) if load.proc.poll() is None
                                    else (0, 0, 0.0))
    own = os.times()
    own_cpu = own.user + own.system  # this process: the Socket.IO client, the health follower
    elapsed = max(now - last_t, 1e-6)
    bench_cores = (round((load_cpu - last["load_cpu_s"] + own_cpu - last["own_cpu_s"]) / elapsed, 3)
                   if last is not None else None)
    lag, lags = total_lag(health)
    not_read = unread.sample(health)
    newest = counts.newest_since(time.time() - (now - last_t))
    return {
        "t_s": round(now - t0, 1),
        "rss_mib": {k: round(v / MIB, 1) for k, v in sorted(rss.items())},
        "pss_mib": {k: round(v / MIB, 1) for k, v in sorted(pss.items())},
        "cores": {k: round(v, 3) for k, v in sorted(cpu.items())},
        "stack_rss_mib": round(sum(rss.values()) / MIB, 1),
        "stack_pss_mib": round(sum(pss.values()) / MIB, 1),
        "stack_cores": round(sum(cpu.values()), 3),
        "processes": procs,
        "load_rss_mib": round(load_rss / MIB, 1), "load_pss_mib": round(load_pss / MIB, 1),
        "load_cpu_s": load_cpu, "own_cpu_s": own_cpu, "bench_cores": bench_cores,
        "lag": lag, "lags": lags, "unread": not_read,
        "unread_total": (sum(v for v in not_read.values() if v is not None)
                         if any(v is not None for v in not_read.values()) else None),
        "kafka_disk_mib": round(disk_bytes(stack.data_dir / "kafka") / MIB, 1),
        "data_dir_mib": round(disk_bytes(stack.data_dir) / MIB, 1),
        "newest_p50_s": round(statistics.median(newest), 3) if newest else None,
        "acked": load.acked,
        "updates": counts.total_updates(),
        "load_avg": loadavg()[0],
    }


def series(samples: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Each figure as (hours since the load started, value) points."""
    out: dict[str, list[tuple[float, float]]] = {}

    def add(name: str, t: float, value: Any) -> None:
        points = out.setdefault(name, [])  # the rows' order: the first sample's, even if empty
        if isinstance(value, int | float):
            points.append((t / 3600, float(value)))

    kinds = sorted({k for s in samples for k in s["rss_mib"]})
    unread = sorted({k for s in samples for k in s["unread"]})
    for s in samples:
        t = s["t_s"]
        add("stack RSS (MiB)", t, s["stack_rss_mib"])
        add("stack PSS (MiB)", t, s["stack_pss_mib"])
        for k in kinds:
            add(f"  RSS {k} (MiB)", t, s["rss_mib"].get(k, 0.0))
        for k in kinds:
            add(f"  PSS {k} (MiB)", t, s["pss_mib"].get(k, 0.0))
        add("stack processes", t, s["processes"])
        first = s is samples[0]  # its CPU interval is empty
        add("stack CPU (cores)", t, None if first else s["stack_cores"])
        for k in kinds:
            add(f"  CPU {k} (cores)", t, None if first else s["cores"].get(k, 0.0))
        add("load generator RSS (MiB, not in the stack)", t, s["load_rss_mib"])
        add("bench CPU: client + load generator (cores, not in the stack)", t, s["bench_cores"])
        add("Spark lag as reported, all queries (records)", t, s["lag"])
        add("unread: in topic - read by its query (records)", t, s["unread_total"])
        for name in unread:
            add(f"  unread {name}", t, s["unread"].get(name))
        add("broker disk, kafka/ (MiB)", t, s["kafka_disk_mib"])
        add("data directory (MiB)", t, s["data_dir_mib"])
        add("newest event -> client, vmstat_tumbling p50 (s)", t, s["newest_p50_s"])
        add("load average (1 min)", t, s["load_avg"])
    return out


def figures(samples: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for name, points in series(samples).items():
        if not points:
            continue
        values = [v for _, v in points]
        end_t = points[-1][0]
        late = [p for p in points if p[0] >= end_t / 2]
        out[name] = {
            "start": values[0], "end": values[-1], "min": min(values), "max": max(values),
            "per_hour": round(slope(points), 2) if len(points) > 1 else None,
            "per_hour_late": round(slope(late), 2) if len(late) > 1 else None,
        }
    return out


def namespace_report(counts: Counts, load_start_wall: float, end_wall: float
                     ) -> dict[str, dict[str, Any]]:
    half = load_start_wall + (end_wall - load_start_wall) / 2
    out: dict[str, dict[str, Any]] = {}
    for demo in catalogue.DEMOS:
        ns = demo.namespace
        ev = counts.events[ns]
        times = [t for t in counts.update_times[ns] if t <= end_wall]
        during = [t for t in times if t >= load_start_wall]
        last_age = round(end_wall - times[-1], 1) if times else None
        if ev["unavailable"]:
            status = "unavailable"
        elif times and "batch" in demo.path_text.lower() and (last_age or 0) > RECENT_S:
            status = "done (a batch job: finite data)"
        elif not times:
            status = "no updates"
        elif last_age is not None and last_age <= RECENT_S:
            status = "receiving"
        else:
            status = f"stopped ({last_age:.0f} s before the end)"
        out[ns] = {
            "title": demo.title, "updates": len(times),
            "updates_first_half": sum(1 for t in during if t < half),
            "updates_second_half": sum(1 for t in during if t >= half),
            "last_update_age_s": last_age, "history": ev["history"], "graph": ev["graph"],
            "unavailable": ev["unavailable"], "records": counts.records[ns],
            "streams": dict(counts.streams[ns]), "connects": ev["connect"],
            "disconnects": ev["disconnect"], "status": status,
            **({"unavailable_reason": counts.unavailable[ns]} if ns in counts.unavailable else {}),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes under load (default 30)")
    parser.add_argument("--rate", type=float, default=1000, help="records/s (default 1000)")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--trigger", type=float, default=1.0, help="trigger seconds (default 1)")
    parser.add_argument("--startup-timeout", type=float, default=240.0)
    parser.add_argument("--keep", action="store_true", help="keep the workspace (logs)")
    args = parser.parse_args()
    install_signal_handlers()
    info = machine()
    duration = args.minutes * 60
    say(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; soak "
        f"{args.minutes:g} min at {args.rate:,.0f} records/s, a sample every {args.sample:g} s")
    namespaces = [d.namespace for d in catalogue.DEMOS]
    samples: list[dict[str, Any]] = []
    interrupted = False
    load: Load | None = None
    counts: Counts | None = None
    health: Health | None = None
    unread: Unread | None = None
    produced: dict[str, Any] = {}
    first_update_s = None
    with Workspace("soak", keep=args.keep) as ws:
        stack = Stack(ws, name="stack", env={"TRIGGER_SECONDS": str(args.trigger)})
        stack.start()
        started_wall = time.time()
        load_start_wall = started_wall
        ns_report: dict[str, dict[str, Any]] = {}
        try:
            bootstrap = stack.bootstrap()
            assert stack.proc is not None
            stack.wait_display()
            counts = Counts(stack.url, namespaces)
            counts.connect()
            health = Health(bootstrap)
            say(f"broker {bootstrap}, display {stack.url}: client on {len(namespaces)} "
                f"namespaces after {time.time() - started_wall:.1f} s")
            c = counts
            eventually(lambda: c.first_update("/demo7", "vmstat_tumbling"), args.startup_timeout,
                       "the first vmstat_tumbling update", check=stack.check, interval_s=0.2)
            first_update_s = round(time.time() - started_wall, 1)
            log_file = stack.data_dir / "logs" / "processing.log"
            eventually(lambda: log_file.exists() and " queries running: " in log_file.read_text(),
                       args.startup_timeout, "every query of the stack running",
                       check=stack.check, interval_s=0.5)
            say(f"first vmstat_tumbling update after {first_update_s} s; every query running "
                f"after {time.time() - started_wall:.1f} s; starting the load")
            load = Load(ws, bootstrap, args.rate, duration + 5, mode="kit", name="soak-load")
            load_start_wall = time.time()
            t0 = time.monotonic()
            sampler = Sampler(stack.proc.pid)
            unread = Unread(bootstrap)
            last_t = t0
            next_at = t0
            try:
                while True:
                    stack.check()
                    if load.proc.poll() is not None and time.monotonic() - t0 < duration:
                        raise RuntimeError(f"the load generator exited with "
                                           f"{load.proc.returncode}; see {ws.dir}")
                    now = time.monotonic()
                    if now >= next_at:
                        sample = take_sample(t0, sampler, load, health, counts, stack, last_t,
                                             samples[-1] if samples else None, unread)
                        last_t = now
                        samples.append(sample)
                        per_kind = ", ".join(f"{k} {v:,.0f}" for k, v in sample["pss_mib"].items())
                        say(f"{sample['t_s'] / 60:5.1f}/{args.minutes:g} min: acked "
                            f"{sample['acked']:,}; stack RSS {sample['stack_rss_mib']:,.0f} "
                            f"PSS {sample['stack_pss_mib']:,.0f} MiB ({per_kind}); CPU "
                            f"{sample['stack_cores']:.2f} cores (bench {sample['bench_cores']}); lag {sample['lag']}, "
                            f"unread {sample['unread']}; kafka/ "
                            f"{sample['kafka_disk_mib']:,.0f} MiB; newest event p50 "
                            f"{sample['newest_p50_s']} s; updates {sample['updates']:,}")
                        next_at += args.sample
                        if now - t0 >= duration - 1:
                            break
                    time.sleep(min(1.0, max(0.05, next_at - time.monotonic())))
            except KeyboardInterrupt:
                interrupted = True
                say("interrupted: stopping and reporting what was sampled")
            with contextlib.suppress(Exception):
                produced = load.wait(30) if not interrupted else {}
        finally:
            if counts is not None:
                end_wall = time.time()
                # Before the client disconnects (its own disconnects are not the server's).
                ns_report = namespace_report(counts, load_start_wall, end_wall)
                counts.close()
            if health is not None:
                health.close()
            if unread is not None:
                unread.close()
            if load is not None:
                processes.stop(load.proc, 30, group=True)
            say("stopping the stack (Ctrl-C) ...")
            stack.stop()
        exits = [line for line in stack.lines if "exited with code" in line]
    if not samples or counts is None:
        say("no samples")
        return 1
    figs = figures(samples)
    print()
    print(f"soak: {samples[-1]['t_s'] / 60:.1f} min at {args.rate:,.0f} records/s, "
          f"{len(samples)} samples every {args.sample:g} s"
          f"{' (interrupted)' if interrupted else ''}; growth per hour = least-squares slope")
    rows = [(name, f["start"], f["end"], f["min"], f["max"], f["per_hour"], f["per_hour_late"])
            for name, f in figs.items()]
    print(table(["figure", "start", "end", "min", "max", "growth/h", "growth/h 2nd half"], rows))
    print()
    print(table(["namespace", "demo", "updates", "1st half", "2nd half", "last s ago", "history",
                 "records (raw)", "connects", "disconnects", "status"],
                [(ns, r["title"], r["updates"], r["updates_first_half"], r["updates_second_half"],
                  r["last_update_age_s"], r["history"], r["records"], r["connects"],
                  r["disconnects"], r["status"]) for ns, r in ns_report.items()]))
    for ns, r in ns_report.items():
        if r.get("unavailable_reason"):
            print(f"{ns}: unavailable: {r['unavailable_reason']}")
    if exits:
        print(f"\nstack: {len(exits)} stage exit(s): " + "; ".join(exits[:10]))
    stopped = [ns for ns, r in ns_report.items() if r["status"].startswith("stopped")]
    if stopped:
        print(f"namespaces that stopped receiving: {', '.join(stopped)}")

    def fig(name: str, field: str) -> float | None:
        return figs.get(name, {}).get(field)

    out: dict[str, Any] = {
        "machine": info, "minutes": args.minutes,
        "ran_minutes": round(samples[-1]["t_s"] / 60, 1), "interrupted": interrupted,
        "rate": args.rate, "sample_s": args.sample, "samples": len(samples),
        "first_update_s": first_update_s,
        "acked": produced.get("acked", samples[-1]["acked"]), "failed": produced.get("failed"),
        "stage_exits": len(exits),
        "soak_peak_pss_mib": round(max(s["stack_pss_mib"] for s in samples)),
        "soak_peak_rss_mib": round(max(s["stack_rss_mib"] for s in samples)),
        "soak_pss_growth_mib_per_h": fig("stack PSS (MiB)", "per_hour"),
        "soak_pss_growth_mib_per_h_late": fig("stack PSS (MiB)", "per_hour_late"),
        "soak_rss_growth_mib_per_h": fig("stack RSS (MiB)", "per_hour"),
        "soak_rss_growth_mib_per_h_late": fig("stack RSS (MiB)", "per_hour_late"),
        "soak_lag_end": samples[-1]["lag"],
        "soak_lag_max": max((s["lag"] for s in samples if s["lag"] is not None), default=None),
        "soak_unread_end": samples[-1]["unread"],
        "soak_unread_growth_per_h": fig("unread: in topic - read by its query (records)",
                                        "per_hour"),
        "soak_kafka_disk_mib_end": samples[-1]["kafka_disk_mib"],
        "soak_kafka_disk_growth_mib_per_h": fig("broker disk, kafka/ (MiB)", "per_hour"),
        "soak_cpu_cores_start": fig("stack CPU (cores)", "start"),
        "soak_cpu_cores_end": fig("stack CPU (cores)", "end"),
        "soak_cpu_growth_cores_per_h": fig("stack CPU (cores)", "per_hour"),
        "namespaces_stopped": stopped,
        "figures": figs,
        "namespaces": ns_report,
        "series": {k: [s[k] for s in samples] for k in (
            "t_s", "stack_rss_mib", "stack_pss_mib", "stack_cores", "lag", "unread_total",
            "kafka_disk_mib",
            "newest_p50_s")},
    }
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
