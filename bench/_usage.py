"""What the processes use, by kind (broker, Cassandra, Spark, ...): memory sampled, CPU time."""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

from bench._engines import PEER_SCRIPTS

#: The kinds of process that are a JVM: the broker, the Cassandra node, Spark's JVM.
JVM_KINDS = ("broker", "cassandra", "JVM")


def _kind(cmdline: list[str]) -> str:
    """What a process is, from its command line (the by-kind memory and CPU breakdowns)."""
    text = " ".join(cmdline)
    if "kafka.Kafka" in text:
        return "broker"
    if "org.apache.cassandra.service.CassandraDaemon" in text:
        return "cassandra"
    if "java" in os.path.basename(cmdline[0] if cmdline else ""):
        return "JVM"
    if "pyspark" in text:
        return "Spark Python workers"
    if "-m processing" in text:
        return "Spark driver (Python)"
    if "bench/_load.py" in text or "-m input" in text or "locust" in text:
        return "producers"
    if "-m display" in text or "gunicorn" in text:
        return "display server"
    if "baseline.py" in text:
        return "baseline consumer"
    for name, script in PEER_SCRIPTS.items():
        if script.name in text:
            return f"peer job ({name})"
    if "-m stack" in text:
        return "supervisor"
    if "nginx" in text:
        return "producers"
    return "other"


def without_spawns_in_flight(procs: Sequence[Any]) -> list[Any]:
    """``procs`` less the JVMs' children that are still a copy of their JVM.

    A JVM starts a process (Spark's: Hadoop's ``chmod`` for each checkpoint file, several
    a micro-batch) through a child that is, until it calls exec, the JVM itself: same
    executable, and every page of the JVM resident in it, shared. Sampled in that
    moment, it counted the JVM twice (the "spikes" of +800 MiB seen in some runs).
    """
    import psutil

    by_pid = {proc.pid: proc for proc in procs}
    kept = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            parent = by_pid.get(proc.ppid())
            if (parent is not None and _kind(parent.cmdline()) in JVM_KINDS
                    and proc.exe() == parent.exe()):
                continue
            kept.append(proc)
    return kept


class MemorySampler:
    """Sums the resident memory of some processes and all their descendants, every second.

    RSS counts shared pages once per process (the forked Python workers share much),
    so PSS (shared pages divided among their users) is sampled too, every 5 s. Both
    are also kept per kind of process (:func:`_kind`: broker, cassandra, JVM, ...).
    """

    def __init__(self, roots: Sequence[int], interval_s: float = 1.0) -> None:
        self.roots = list(roots)
        self.interval_s = interval_s
        self.samples: list[tuple[float, int, dict[str, int]]] = []  # (monotonic, rss, by kind)
        self.pss: list[tuple[float, int]] = []
        self.pss_kinds: list[dict[str, int]] = []  # by kind, one per entry of ``pss``
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, pid: int) -> None:
        self.roots.append(pid)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def processes(self) -> list[Any]:
        import psutil

        seen: dict[int, Any] = {}
        for pid in self.roots:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    seen[proc.pid] = proc
        return without_spawns_in_flight(list(seen.values()))

    def _run(self) -> None:
        import psutil

        last_pss = 0.0
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            total = 0
            kinds: dict[str, int] = {}
            want_pss = now - last_pss >= 5
            pss = 0
            pss_kinds: dict[str, int] = {}
            for proc in self.processes():
                with contextlib.suppress(psutil.Error):
                    rss = proc.memory_info().rss
                    total += rss
                    kind = _kind(proc.cmdline())
                    kinds[kind] = kinds.get(kind, 0) + rss
                    if want_pss:
                        one = proc.memory_full_info().pss
                        pss += one
                        pss_kinds[kind] = pss_kinds.get(kind, 0) + one
            self.samples.append((now, total, kinds))
            if want_pss:
                last_pss = now
                self.pss.append((now, pss))
                self.pss_kinds.append(pss_kinds)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def current_mib(self) -> float:
        return self.samples[-1][1] / 2**20 if self.samples else 0.0

    def peak_pss_of(self, kinds: Sequence[str]) -> int | None:
        """The highest PSS (MiB) the processes of ``kinds`` had together in one sample."""
        totals = [sum(by_kind.get(k, 0) for k in kinds) for by_kind in self.pss_kinds]
        return round(max(totals) / 2**20) if totals else None

    def report(self, start: float, end: float) -> dict[str, Any]:
        """Peak over everything sampled; steady = median within [start, end].

        The by-kind breakdowns are those of the peak's sample (RSS and PSS each), and
        the steady PSS by kind each kind's median within [start, end].
        """
        mib = 2**20
        window = [s for s in self.samples if start <= s[0] <= end]
        pss_window = [(p, k) for (t, p), k in zip(self.pss, self.pss_kinds, strict=False)
                      if start <= t <= end]
        peak = max(self.samples, key=lambda s: s[1]) if self.samples else (0, 0, {})
        peak_pss = max(zip(self.pss, self.pss_kinds, strict=False), key=lambda x: x[0][1],
                       default=((0.0, 0), {}))
        kinds = sorted({k for _, by_kind in pss_window for k in by_kind})
        return {
            "peak_rss_mib": round(peak[1] / mib),
            "steady_rss_mib": round(statistics.median(s[1] for s in window) / mib) if window else None,
            "peak_pss_mib": round(peak_pss[0][1] / mib),
            "steady_pss_mib": (round(statistics.median(p for p, _ in pss_window) / mib)
                               if pss_window else None),
            "peak_rss_by_kind_mib": {k: round(v / mib) for k, v in sorted(peak[2].items())},
            "peak_pss_by_kind_mib": {k: round(v / mib) for k, v in sorted(peak_pss[1].items())},
            "steady_pss_by_kind_mib": {
                k: round(statistics.median(by_kind.get(k, 0) for _, by_kind in pss_window) / mib)
                for k in kinds},
        }


def cpu_seconds(roots: Sequence[int]) -> dict[str, float]:
    """CPU time (user + system) used so far by each kind of process under ``roots``."""
    import psutil

    out: dict[str, float] = {}
    sampler = MemorySampler(roots)
    for proc in sampler.processes():
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            kind = _kind(proc.cmdline())
            out[kind] = out.get(kind, 0.0) + times.user + times.system
    return out


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine so far, all cores.

    Busy counts every process, ours or not (compare with :func:`cpu_seconds` to see
    whether something else used the machine); stolen is time the hypervisor gave
    another guest while this one wanted to run.
    """
    import psutil

    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return busy, float(getattr(t, "steal", 0.0))
