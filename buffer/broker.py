"""The embedded Apache Kafka broker: one KRaft node (broker and controller) in one JVM.

Used when ``KAFKA_BOOTSTRAP_SERVERS`` is unset. The jars come from Maven Central
(``queue/pom.xml``, fetched by ``make setup`` into ``jars/kafka/``), the settings
from ``queue/server.properties``; the data lives under ``DATA_DIR/kafka`` and
survives restarts: topics, records and consumer offsets are kept, so Spark's
checkpoints stay valid. The storage is formatted once, on first start, with a
new cluster id.

Run it alone (it prints the bootstrap address and runs until Ctrl-C)::

    python -m buffer.broker --broker-port 9092
"""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from buffer import kafka, topics
from common.jvm import JvmError, JvmProcess, classpath, free_port, java_command, port_is_taken
from common.settings import Settings

__all__ = ["BrokerError", "EmbeddedBroker", "free_port", "java_command"]

log = logging.getLogger(__name__)

QUEUE_DIR = Path(__file__).resolve().parent.parent / "queue"
SERVER_PROPERTIES = QUEUE_DIR / "server.properties"
LOG4J_PROPERTIES = QUEUE_DIR / "log4j2.properties"

#: JVM flags of Kafka's own start script (kafka-run-class.sh), minus JMX and GC logging.
JVM_FLAGS = ("-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
             "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
             "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true")


class BrokerError(JvmError):
    """The embedded broker could not start; the message says why and what to do."""


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as kafka-storage).

    Never one that starts with ``-``: the storage tool would read it as an option (``-t
    -x...``: "expected one argument"; 1 start in 64 failed so). Kafka's own Uuid.randomUuid
    draws again in that case too.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def server_config(host: str, port: int, controller_port: int, log_dirs: Path) -> str:
    """``queue/server.properties`` plus what depends on this machine: listeners and data."""
    lines = [
        SERVER_PROPERTIES.read_text(),
        "\n# Written by buffer/broker.py for this start:",
        f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        f"advertised.listeners=PLAINTEXT://{host}:{port}",
        f"controller.quorum.voters=1@{host}:{controller_port}",
        f"log.dirs={log_dirs.resolve()}",
        "",
    ]
    return "\n".join(lines)


class EmbeddedBroker(JvmProcess):
    """An Apache Kafka process on loopback, its data kept, the kit's topics created.

    Use as a context manager, or call :meth:`start` and, in a ``finally``, :meth:`stop`
    (:class:`~common.jvm.JvmProcess`).

    Args:
        data_dir: the broker's folder (config, ``meta.properties``, logs of topics).
        host: address to listen on.
        port: port to listen on; 0 picks a free one.
        log_path: file the broker's output goes to.
        ready_timeout_s: deadline for a Kafka client to see the broker.
        jars_dir: folder holding ``kafka/*.jar`` (``make setup`` fills it).
        heap: the JVM's heap (-Xmx and -Xms).
        create: topics to create once ready (default: all of ``queue/topics.toml``).
    """

    engine = "Kafka"

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | None = None,
        ready_timeout_s: float = 60.0,
        jars_dir: Path | None = None,
        heap: str = "384m",
        create: Iterable[topics.Topic] = topics.ALL,
    ) -> None:
        super().__init__(data_dir, log_path or data_dir / "broker.log", host, port,
                         ready_timeout_s, jars_dir, heap)
        self.controller_port = 0
        self.create = tuple(create)
        #: The cluster id the storage is formatted with; None: a new one (a single node).
        self.cluster_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedBroker:
        return cls(
            data_dir=settings.data_dir / "kafka",
            host=settings.broker_host,
            port=settings.broker_port,
            log_path=settings.log_dir / "broker.log",
            ready_timeout_s=settings.broker_ready_timeout_s,
            jars_dir=settings.jars_dir,
            heap=settings.broker_heap,
        )

    @property
    def bootstrap(self) -> str:
        """The bootstrap address clients connect to (:attr:`address`)."""
        return self.address

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "logs"

    def _java(self, main: str, *args: str, heap: str | None = None) -> list[str]:
        flags = [f"-Xmx{heap or self.heap}", f"-Xms{heap or self.heap}", *JVM_FLAGS,
                 f"-Dkafka.logs.dir={self.log_path.parent.resolve()}",
                 f"-Dlog4j2.configurationFile={LOG4J_PROPERTIES}"]
        return [java_command(), *flags, "-cp", classpath(self.jars_dir, "kafka"), main, *args]

    def prepare(self) -> list[str]:
        """Pick ports, write the config, format the storage if new; returns the broker's argv.

        The supervisor of ``python -m stack`` runs that argv as a child (and again after a
        crash: the config and data stay, so a restart needs no new preparation).
        """
        if self.port == 0:
            self.port = free_port(self.host)
        elif port_is_taken(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is taken (another broker or `make run`?): stop "
                f"that process, set BROKER_PORT to a free port (0 picks one), or set "
                f"KAFKA_BOOTSTRAP_SERVERS={self.host}:{self.port} to use that broker"
            )
        if self.controller_port == 0:
            self.controller_port = free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        if not (self.log_dirs / "meta.properties").exists():
            self._format()
        return self._java("kafka.Kafka", str(self.config_path))

    def config_text(self) -> str:
        """The server.properties of this start (a node of a cluster adds its quorum)."""
        return server_config(self.host, self.port, self.controller_port, self.log_dirs)

    def _format(self) -> None:
        """Format the storage once (``kafka-storage format``), with :attr:`cluster_id`
        (the nodes of one cluster share it) or a new one."""
        cluster_id = self.cluster_id or new_cluster_id()
        argv = self._java("kafka.tools.StorageTool", "format", "-c", str(self.config_path),
                          "-t", cluster_id, heap="256m")
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka's storage in {self.log_dirs} failed "
                              f"({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
        log.info("formatted Kafka storage %s (cluster id %s)", self.log_dirs, cluster_id)

    def wait_ready(self, exit_code: Callable[[], int | None]) -> list[str]:
        """Wait until a Kafka client sees the broker, then create the missing topics.

        ``exit_code`` tells whether the broker's process has ended (None: running), so a
        broker that dies while starting fails at once with the end of its log.
        """
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            code = exit_code()
            if code is not None:
                raise BrokerError(
                    f"Kafka exited with code {code} while starting on {self.bootstrap}; its "
                    f"log {self.log_path} ends with:\n{self.log_tail()}"
                )
            try:
                kafka.wait_until_ready(self.bootstrap, timeout_s=0.5)
                break
            except kafka.KafkaUnavailable:
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"Kafka did not answer a client at {self.bootstrap} within "
                        f"{self.ready_timeout_s:.0f} s (raise BROKER_READY_TIMEOUT_S on a slow "
                        f"machine); log {self.log_path}:\n{self.log_tail()}"
                    ) from None
        return kafka.create_topics(self.bootstrap, self.create)


def main(argv: Sequence[str] | None = None) -> int:
    from common import cli
    from common import settings as settings_module

    parser = settings_module.argument_parser(
        __doc__ or "", only=["broker_host", "broker_port", "broker_ready_timeout_s", "broker_heap",
                             "jars_dir", "data_dir", "log_level"])
    _, settings = cli.start(parser, argv)
    return EmbeddedBroker.from_settings(settings).serve()


if __name__ == "__main__":
    sys.exit(main())
