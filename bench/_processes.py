"""The processes a benchmark starts: a workspace that stops them all, and their environment.

Every benchmark runs in its own :class:`Workspace` (a fresh directory under the
system's temp folder, never ``./data``), starts its own embedded broker (the stack's,
with ``BROKER_PORT=0``, or :class:`buffer.broker.EmbeddedBroker` on port 0), binds
loopback only, bounds every wait, and stops every process it started, including any
left behind by a child that died (found by their ``DATA_DIR``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._report import say
from common import processes

#: The repository: the children's working directory.
ROOT = Path(__file__).resolve().parent.parent
#: The Python that runs the kit's children (this one).
PY = sys.executable


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
        """Start a child in its own session; output to ``log_name`` (stdout to a text pipe
        with ``stdout_pipe``, stderr to ``log_name``)."""
        proc = processes.start(argv, self.path(log_name), env, cwd=ROOT, pipe_stdout=stdout_pipe)
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self._procs):
            processes.stop(proc, 20, group=True)
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


def free_port() -> int:
    from buffer.broker import free_port as free

    return free("127.0.0.1")


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This environment for a child, less the addresses of servers elsewhere (a benchmark
    measures its own broker and Cassandra node), with ``DATA_DIR`` and ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "CASSANDRA_HOSTS")}
    env.update({"DATA_DIR": str(data_dir), "SPARK_LOCAL_IP": "127.0.0.1",
                "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "info"})
    env.update(extra)
    return env


def install_signal_handlers() -> None:
    """SIGTERM (e.g. from ``make``'s caller) unwinds like Ctrl-C, so every ``finally`` cleans up."""

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
