"""Starting the JVM engines the kit fetches from Maven Central (``make setup``): what they share.

Kafka's broker (:mod:`buffer.broker`) and Cassandra's node (:mod:`storage.cassandra_node`)
each run as one ``java -cp jars/<engine>/*`` process on loopback; both need a ``java``, their
jars, free ports and the end of their log for error messages, and both are started, waited
for, stopped and killed the same way (:class:`JvmProcess`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from common import processes

__all__ = ["JvmError", "JvmProcess", "classpath", "ephemeral_ports", "free_port",
           "free_port_on_every", "java_command", "log_tail", "port_is_taken"]

log = logging.getLogger(__name__)


class JvmError(RuntimeError):
    """A JVM engine cannot start; the message says why and what to do."""


#: Lowest port :func:`free_port` picks from (below the kernel's ephemeral range).
LOWEST_PICKED_PORT = 15_000


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux's default where
    /proc does not say)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, below the kernel's ephemeral range. Whoever binds it next must still
    handle losing a race.

    A port from ``bind(0)`` is an ephemeral one: the kernel may give it to the next outgoing
    connection as its local port, and a server that binds it a minute later (the stack starts
    its stages in turn) finds it taken: the stack test's ingest did, six times over, in a full
    run. Below the range only another listener can take it.
    """
    low, _ = ephemeral_ports()
    if low - 1 > LOWEST_PICKED_PORT:
        for _ in range(100):
            port = random.randint(LOWEST_PICKED_PORT, low - 1)
            if not port_is_taken(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port_on_every(hosts: Sequence[str]) -> int:
    """A port free now on every one of ``hosts`` (nodes of a cluster on loopback aliases,
    each binding the same port on its own address)."""
    for _ in range(50):
        port = free_port(hosts[0])
        if not any(port_is_taken(h, port) for h in hosts[1:]):
            return port
    raise OSError(f"no port free on every one of {', '.join(hosts)}")


def port_is_taken(host: str, port: int) -> bool:
    """True when something listens on the port. Connections of a process that just ended
    (TIME_WAIT) do not count: Java binds with SO_REUSEADDR, and so does this check."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def java_command() -> str:
    """The ``java`` to run the JVM engines with: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").is_file():
        return str(Path(home, "bin", "java"))
    found = shutil.which("java")
    if not found:
        raise JvmError("Java 17 or newer is needed for Kafka, Spark and Cassandra and was not "
                       "found (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: "
                       "brew install openjdk@17)")
    return found


def classpath(jars_dir: Path, engine: str) -> str:
    """``jars_dir/engine/*`` as a Java class path; a clear error when the jars are missing."""
    folder = jars_dir / engine
    if not any(folder.glob("*.jar")):
        raise JvmError(f"no {engine} jars in {folder}: run `make setup` (it fetches them from "
                       "Maven Central with `mvn -f queue/pom.xml`, see README)")
    return str(folder / "*")


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class JvmProcess:
    """One engine's JVM as a child process: started, waited for, stopped, killed.

    Use as a context manager, or call :meth:`start` and, in a ``finally``, :meth:`stop`.
    A subclass says what differs: :attr:`engine` (its name in messages), :meth:`prepare`
    (checks and config; returns the argv) and :meth:`wait_ready`. The
    stack's supervisor runs the argv of :meth:`prepare` itself instead of :meth:`start`.
    """

    engine = "JVM"

    def __init__(self, data_dir: Path, log_path: Path, host: str, port: int,
                 ready_timeout_s: float, jars_dir: Path | None, heap: str) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.host = host
        self.port = port  # 0 until prepare() picks a free one
        self.ready_timeout_s = ready_timeout_s
        self.jars_dir = jars_dir or Path(__file__).resolve().parent.parent / "jars"
        self.heap = heap
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def prepare(self) -> list[str]:  # pragma: no cover - every engine has one
        raise NotImplementedError

    def wait_ready(self, exit_code: Callable[[], int | None]) -> Any:  # pragma: no cover
        """Wait until the engine answers; ``exit_code`` says whether it ended (None: running)."""
        raise NotImplementedError

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def start(self) -> str:
        """Start the process and wait until it answers; returns its address."""
        argv = self.prepare()
        # In a session of its own: Ctrl-C goes to our supervisor, which stops it in order.
        self._process = processes.start(
            argv, self.log_path, append=True,
            header=f"--- {self.engine.lower()} starting on {self.address} at {time.ctime()}")
        try:
            self.wait_ready(lambda: self._process.poll() if self._process else -1)
        except BaseException:
            self.stop()
            raise
        log.info("embedded %s (pid %s) ready at %s; data %s; log %s", self.engine,
                 self._process.pid, self.address, self.data_dir, self.log_path)
        return self.address

    def kill(self) -> None:
        """``kill -9`` the process (tests of crashes); its data stays for the next start."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after ``timeout_s``. Idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        processes.stop(process, timeout_s, what=self.engine)

    def __enter__(self) -> JvmProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def serve(self) -> int:
        """``python -m`` of an engine: start, print the address, run until SIGTERM or Ctrl-C."""
        try:
            print(self.start(), flush=True)  # noqa: T201 - the address is the command's output
        except JvmError as e:
            log.error("%s", e)
            return 1
        from common import cli

        stop = threading.Event()
        cli.on_stop(lambda _signum: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            while self._process and self._process.poll() is None and not stop.wait(0.2):
                pass
        self.stop()
        return 0
