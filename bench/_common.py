"""What the benchmarks share: a workspace that cleans up, the stack, clients, load, memory.

Every benchmark runs in its own :class:`Workspace` (a fresh directory under the
system's temp folder, never ``./data``), starts its own embedded broker (the
stack's, with ``BROKER_PORT=0``, or :class:`buffer.broker.EmbeddedBroker` on port
0), binds loopback only, bounds every wait, and stops every process it started,
including any left behind by a child that died (found by their ``DATA_DIR``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import messages  # noqa: E402 - after the path that finds it
from common.stats import percentile  # noqa: E402

PY = sys.executable
LOAD_SCRIPT = ROOT / "bench" / "_load.py"
BASELINE_SCRIPT = ROOT / "bench" / "baseline.py"
#: The peers (issue #27): each a job of its own in ``.venv-peers`` (``make bench`` makes it).
PEERS_PY = ROOT / ".venv-peers" / "bin" / "python"
PEER_SCRIPTS = {"quix": ROOT / "bench" / "peers" / "quix_windows.py",
                "pathway": ROOT / "bench" / "peers" / "pathway_windows.py"}
#: Every engine of the host-metric windows, and the files of its job's own code.
ENGINE_CODE = {"spark": [ROOT / "processing" / "vmstat_windows.py"],
               "baseline": [BASELINE_SCRIPT],
               **{name: [path, ROOT / "bench" / "peers" / "_writer.py"]
                  for name, path in PEER_SCRIPTS.items()}}
#: The kinds of process (:func:`_kind`) that are each engine itself.
ENGINE_KINDS = {"spark": ("JVM", "Spark Python workers", "Spark driver (Python)"),
                "baseline": ("baseline consumer",),
                **{name: (f"peer job ({name})",) for name in PEER_SCRIPTS}}


def engine_argv(engine: str) -> list[str]:
    """How to start a plain (not Spark) engine's job: the baseline, or a peer's."""
    if engine == "baseline":
        return [PY, str(BASELINE_SCRIPT)]
    if not PEERS_PY.exists():
        raise RuntimeError(f"no {PEERS_PY}: `make bench` installs the peers "
                           "(bench/peers/requirements.lock)")
    return [str(PEERS_PY), str(PEER_SCRIPTS[engine])]


def code_lines(paths: Sequence[Path]) -> int:
    """Lines of code in ``paths``: not blank, not only a comment, not a docstring."""
    import ast
    import io
    import tokenize

    total = 0
    for path in paths:
        text = path.read_text()
        docstrings: set[int] = set()
        for node in ast.walk(ast.parse(text)):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                docstrings.update(range(body[0].lineno, (body[0].end_lineno or 0) + 1))
        code: set[int] = set()
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                                tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
                code.update(range(tok.start[0], tok.end[0] + 1))
        total += len(code - docstrings)
    return total


# -- output


def say(text: str) -> None:
    """A progress line, with the wall-clock time and the load average."""
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:4.1f}] {text}", flush=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain text table, numbers right-aligned."""
    text_rows = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text_rows)) if text_rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(headers, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in text_rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values) if values else float("nan")}


def rounded(value: float, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def machine() -> dict[str, Any]:
    """What the figures ran on."""
    import psutil

    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    java = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        match = re.search(r'version "([^"]+)"', out.stderr)
        java = match.group(1) if match else ""
    versions = {}
    for package in ("pyspark", "confluent-kafka"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package)
    with contextlib.suppress(Exception):
        import xml.etree.ElementTree as ET

        pom = ET.parse(ROOT / "queue" / "pom.xml").getroot()
        ns = {"m": "http://maven.apache.org/POM/4.0.0"}
        versions["kafka"] = pom.findtext("m:properties/m:kafka.version", namespaces=ns) or ""
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "java": java,
        **versions,
    }


def emit(result: dict[str, Any]) -> None:
    """The benchmark's last line: one JSON object."""
    print(json.dumps(result, sort_keys=False), flush=True)


# -- processes


def _data_dir_processes(folder: Path) -> list[Any]:
    """Processes other than this one whose DATA_DIR is inside ``folder`` (ours, left behind)."""
    import psutil

    found = []
    prefix = str(folder)
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("DATA_DIR", "").startswith(prefix):
                found.append(proc)
    return found


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace_s: float = 30.0,
                 group: bool = True) -> int | None:
    """Signal a process we started (its group with ``group``), wait, then SIGKILL the group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            say(f"pid {proc.pid} did not stop within {grace_s:.0f} s: killing it")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in its group
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    return proc.returncode


class Workspace:
    """A fresh folder and the processes started in it; :meth:`close` stops them all.

    The folder is removed at the end unless ``keep`` (or a failure, to read the logs).
    """

    def __init__(self, name: str, keep: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"streamkit-bench-{name}-")).resolve()
        self.keep = keep
        self.failed = False
        self._procs: list[subprocess.Popen[Any]] = []

    def path(self, name: str) -> Path:
        return self.dir / name

    def start(self, argv: Sequence[str], log_name: str, env: dict[str, str] | None = None,
              stdout_pipe: bool = False) -> subprocess.Popen[Any]:
        """Start a child in its own session; output to ``log_name`` (or a pipe)."""
        out: Any = subprocess.PIPE if stdout_pipe else self.path(log_name).open("wb")
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT if not stdout_pipe else
                                self.path(log_name).open("wb"),
                                env=env, cwd=ROOT, start_new_session=True,
                                text=stdout_pipe)
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self._procs):
            stop_process(proc, grace_s=20)
        for proc in _data_dir_processes(self.dir):
            say(f"killing leftover pid {proc.pid} ({' '.join(proc.cmdline()[:3])})")
            with contextlib.suppress(Exception):
                proc.kill()
        if self.keep or self.failed:
            say(f"kept {self.dir} (logs)")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.failed = True
        self.close()


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str,
             check: Callable[[], None] | None = None, interval_s: float = 0.1) -> Any:
    """Poll ``condition`` until truthy; TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check is not None:
            check()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def free_port() -> int:
    from buffer.broker import free_port as free

    return free("127.0.0.1")


def in_process_spark_settings(prefix: str) -> Any:
    """Settings for a benchmark that runs Spark in its own process: ``local[2]``, 2 shuffle
    partitions, quiet logs, a fresh temporary DATA_DIR (``settings.data_dir``)."""
    from common import settings

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    return settings.load(environ={"DATA_DIR": str(data_dir), "SHUFFLE_PARTITIONS": "2",
                                  "SPARK_MASTER": "local[2]", "LOG_LEVEL": "warning"})


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This environment for a child, less the addresses of servers elsewhere (a benchmark
    measures its own broker and Cassandra node), with ``DATA_DIR`` and ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "CASSANDRA_HOSTS")}
    env.update({"DATA_DIR": str(data_dir), "SPARK_LOCAL_IP": "127.0.0.1",
                "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "info"})
    env.update(extra)
    return env


class Stack:
    """``python -m stack`` (what ``make run`` runs) on free loopback ports in the workspace.

    With ``cassandra`` (the default, as in ``make run``) the stack starts its own Cassandra
    node on a free CQL port (``CASSANDRA_PORT=0``: a developer's own node on 9042 does not
    clash); without it, ``CASSANDRA=off`` (no node, no Cassandra queries).
    """

    def __init__(self, ws: Workspace, name: str = "stack", no_spark: bool = False,
                 env: dict[str, str] | None = None, cassandra: bool = True,
                 cluster_hosts: str | None = None) -> None:
        self.ws = ws
        self.data_dir = ws.path(name)
        self.data_dir.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cassandra = cassandra
        self.env = base_env(self.data_dir, BROKER_PORT="0", DISPLAY_HOST="127.0.0.1",
                            DISPLAY_PORT=str(self.port), INGEST_HOST="127.0.0.1",
                            INGEST_PORT=str(free_port()), CASSANDRA="on" if cassandra else "off",
                            CASSANDRA_PORT="0", **(env or {}))
        #: ``python -m stack --cluster`` on these three loopback addresses (free ports).
        self.cluster_hosts = cluster_hosts
        if cluster_hosts:
            self.env.update(CLUSTER_HOSTS=cluster_hosts, SPARK_MASTER_PORT="0")
        self.no_spark = no_spark
        self.lines: list[str] = []
        self.line_times: list[float] = []  # time.time() of each line's arrival
        self.proc: subprocess.Popen[str] | None = None
        self.started = 0.0

    def start(self) -> None:
        argv = [PY, "-m", "stack", *(["--no-spark"] if self.no_spark else []),
                *(["--cluster"] if self.cluster_hosts else [])]
        self.started = time.monotonic()
        self.proc = self.ws.start(argv, f"{self.data_dir.name}.out", env=self.env,
                                  stdout_pipe=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.ws.path(f"{self.data_dir.name}.stdout").open("w") as copy:
            for line in self.proc.stdout:
                self.line_times.append(time.time())
                self.lines.append(line.rstrip())
                copy.write(line)
                copy.flush()

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the stack exited with {self.proc.returncode}:\n"
                               + "\n".join(self.lines[-30:]))

    def said(self, pattern: str) -> tuple[float, re.Match[str]] | None:
        """(arrival time, match) of the first line of the stack's output matching ``pattern``."""
        for stamp, line in zip(list(self.line_times), list(self.lines), strict=False):
            match = re.search(pattern, line)
            if match:
                return stamp, match
        return None

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The end of one of the stack's logs (``DATA_DIR/logs/<name>.log``)."""
        path = self.data_dir / "logs" / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no {path})"

    def bootstrap(self, timeout_s: float = 60) -> str:
        def found() -> str | None:
            for line in self.lines:
                match = re.search(r"(?:embedded Apache Kafka|Kafka: \d+ brokers \([^)]*\)) "
                                  r"at ([^\s;]+)", line)
                if match:
                    return match.group(1)
            return None

        return str(wait_for(found, timeout_s, "the stack's broker address", check=self.check))

    def wait_display(self, timeout_s: float = 90) -> None:
        def up() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_for(up, timeout_s, "the display server", check=self.check, interval_s=0.2)

    def stop(self) -> None:
        """Ctrl-C, as a user stops ``make run``; the stack stops its children in order."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGINT, grace_s=60, group=False)


# -- clients


class Listener:
    """A Socket.IO client on some demo namespaces, keeping every event with its arrival time."""

    def __init__(self, url: str, namespaces: Sequence[str]) -> None:
        import socketio

        self.url = url
        self.namespaces = list(namespaces)
        self.events: list[tuple[float, str, str, Any]] = []  # (time.time(), ns, event, data)
        self._lock = threading.Lock()
        self.client = socketio.Client(reconnection=False)
        for ns in self.namespaces:
            for event in ("update", "history", "unavailable"):
                self.client.on(event, self._handler(ns, event), namespace=ns)

    def _handler(self, ns: str, event: str) -> Callable[[Any], None]:
        def handle(data: Any) -> None:
            now = time.time()
            with self._lock:
                self.events.append((now, ns, event, data))

        return handle

    def connect(self) -> None:
        self.client.connect(self.url, namespaces=self.namespaces, transports=["websocket"],
                            wait_timeout=10)

    def updates(self, ns: str) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return [(t, d) for t, n, e, d in self.events if n == ns and e == "update"]

    def first_update(self, ns: str, stream: str | None = None) -> float | None:
        with self._lock:
            for t, n, e, d in self.events:
                if n == ns and e == "update" and (stream is None or d.get("stream") == stream):
                    return t
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()


class Load:
    """``bench/_load.py`` in a child process; its progress lines are parsed as they come."""

    def __init__(self, ws: Workspace, bootstrap: str, rate: float, seconds: float,
                 mode: str = "kit", name: str = "load", hosts: int = 24,
                 host_prefix: str | None = None, times_out: Path | None = None) -> None:
        argv = [PY, str(LOAD_SCRIPT), "--bootstrap", bootstrap, "--rate", str(rate),
                "--seconds", str(seconds), "--mode", mode, "--hosts", str(hosts)]
        if host_prefix:
            argv += ["--host-prefix", host_prefix]
        if times_out:
            argv += ["--times-out", str(times_out)]
        self.started = time.monotonic()
        self.proc = ws.start(argv, f"{name}.err", env=base_env(ws.path(name)), stdout_pipe=True)
        self.last: dict[str, Any] = {"sent": 0, "acked": 0, "failed": 0}
        self.done: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                self.last = value
                if value.get("done"):
                    self.done = value

    @property
    def acked(self) -> int:
        return int(self.last.get("acked", 0))

    def wait(self, timeout_s: float) -> dict[str, Any]:
        self.proc.wait(timeout_s)
        self._thread.join(5)
        if self.done is None:
            raise RuntimeError(f"load generator ended without its final counts ({self.last})")
        return self.done

    def stop(self) -> None:
        stop_process(self.proc, grace_s=30)


class Health:
    """Follows the ``health`` topic from its start: every query's progress, as it arrives."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import TopicPartition

        from buffer import kafka, topics

        self._consumer = kafka.follower(bootstrap, 250)
        self._consumer.assign([TopicPartition(topics.HEALTH.name, 0, 0)])
        self.progress: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.ready: list[str] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.2):
                if msg.error() is not None or msg.value() is None:
                    continue
                with contextlib.suppress(messages.MessageError):
                    value = messages.decode_health(msg.value() or b"")
                    if isinstance(value, messages.Ready):
                        self.ready = list(value.queries)
                    elif isinstance(value, messages.QueryProgress) and not value.idle:
                        with self._lock:  # as JSON: the benchmarks print and save them
                            self.progress.setdefault(value.query, []).append(
                                (time.monotonic(), messages.to_json(value)))

    def latest(self, query: str) -> dict[str, Any] | None:
        with self._lock:
            items = self.progress.get(query) or []
            return items[-1][1] if items else None

    def since(self, query: str, start: float) -> list[dict[str, Any]]:
        with self._lock:
            return [v for t, v in self.progress.get(query) or [] if t >= start]

    def processed(self, query: str) -> int:
        latest = self.latest(query)
        return int((latest or {}).get("totals", {}).get("input_rows", 0))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._consumer.close()


# -- memory


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


def install_signal_handlers() -> None:
    """SIGTERM (e.g. from ``make``'s caller) unwinds like Ctrl-C, so every ``finally`` cleans up."""

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)


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


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; 0 with fewer than two."""
    if len(points) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0
