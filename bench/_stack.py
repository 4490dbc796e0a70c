"""``python -m stack``, as ``make run`` starts it, in a benchmark's workspace."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import urllib.request

from bench._processes import PY, Workspace, base_env, free_port
from common import processes
from common.waiting import eventually


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

        return str(eventually(found, timeout_s, "the stack's broker address", interval_s=0.1,
                              check=self.check))

    def wait_display(self, timeout_s: float = 90) -> None:
        def up() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        eventually(up, timeout_s, "the display server", check=self.check, interval_s=0.2)

    def stop(self) -> None:
        """Ctrl-C, as a user stops ``make run``; the stack stops its children in order."""
        if self.proc is not None:
            processes.stop(self.proc, 60, signal.SIGINT)
