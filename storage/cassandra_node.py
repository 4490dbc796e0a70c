"""The embedded Apache Cassandra node: one node in one JVM on loopback, for ``make run`` and tests.

Used when ``CASSANDRA=on`` (the default) and ``CASSANDRA_HOSTS`` is unset. The jars come
from Maven Central (``org.apache.cassandra:cassandra-all`` in ``queue/pom.xml``, fetched
by ``make setup`` into ``jars/cassandra/``), the settings from ``storage/conf/cassandra.yaml``
plus what this module writes for each start (addresses, ports, directories); data, commit
log, hints and caches live under ``DATA_DIR/cassandra`` and survive restarts.

Only two ports open, both on 127.0.0.1: CQL (``CASSANDRA_PORT``; 0 picks a free one) and
the inter-node storage port (a free one, kept across starts). No JMX: nothing sets
``cassandra.jmx.*.port``, so Cassandra starts no JMX server; the node is stopped with
SIGTERM, which runs Cassandra's own shutdown hook (it drains: flushes memtables and stops
accepting writes; "Cassandra shutdown complete" in its log).

Run it alone (it prints the CQL address and runs until Ctrl-C)::

    python -m storage.cassandra_node --cassandra-port 9042
"""

from __future__ import annotations

import logging
import re
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from common.jvm import JvmError, JvmProcess, classpath, free_port, java_command, port_is_taken

if TYPE_CHECKING:
    from common.settings import Settings

__all__ = ["CassandraNode", "NodeError", "node_config"]

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parent / "conf"
BASE_YAML = CONF_DIR / "cassandra.yaml"
LOGBACK_XML = CONF_DIR / "logback.xml"

#: The yaml keys this module writes for each start (storage/conf/cassandra.yaml must not set them).
PER_START_KEYS = ("listen_address", "rpc_address", "storage_port", "native_transport_port",
                  "seed_provider", "data_file_directories", "commitlog_directory",
                  "saved_caches_directory", "hints_directory", "cdc_raw_directory")

#: Cassandra 5.0's ``jvm17-server.options``: the JDK internals it opens (it refuses to start
#: without them: "Cassandra is unable to access required classes").
JPMS_FLAGS = (
    "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-exports", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED",
    "--add-opens", "java.base/java.nio=ALL-UNNAMED",
    "--add-opens", "java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "--add-opens", "java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.math=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/java.net=ALL-UNNAMED",
)

#: Flags of Cassandra's jvm-server.options that matter here. No -XX:+AlwaysPreTouch (it
#: would make the whole heap resident at once), no GC logging, no JMX.
JVM_FLAGS = (
    "-ea", "-Xss256k", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=300",
    "-XX:+ExitOnOutOfMemoryError",  # an out-of-memory node exits; the supervisor restarts it
    "-Djava.net.preferIPv4Stack=true", "-Djdk.attach.allowAttachSelf=true",
    "-Dio.netty.tryReflectionSetAccessible=true", "-Djava.awt.headless=true",
    "-Dcassandra-foreground=yes",  # keep stdout/stderr open: they are the node's log
    "-Dchronicle.analytics.disable=true",
    # A single node that is its own seed never bootstraps; without this it still waits
    # for gossip to settle (8 s or more) before it opens CQL.
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
)

#: What the JVM needs beyond the heap (metaspace, threads, direct buffers, memtables off heap,
#: the file cache): measured resident size with a 512 MiB heap was about 880 MiB.
OVERHEAD_MIB = 400


class NodeError(JvmError):
    """The embedded Cassandra node cannot start; the message says why and what to do."""


def parse_size_mib(text: str) -> int:
    """A JVM size (``512m``, ``1g``, ``768M``) in MiB."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a JVM memory size such as 512m or 1g")
    number, unit = int(match.group(1)), match.group(2).lower()
    return {"k": number // 1024, "m": number, "g": number * 1024, "": number // (1024 * 1024)}[unit]


def node_config(host: str, native_port: int, storage_port: int, data_dir: Path) -> str:
    """``storage/conf/cassandra.yaml`` plus what depends on this machine and start."""
    data = data_dir.resolve()
    lines = [
        BASE_YAML.read_text(),
        "# Written by storage/cassandra_node.py for this start:",
        f"listen_address: {host}",
        f"rpc_address: {host}",
        f"storage_port: {storage_port}",
        f"native_transport_port: {native_port}",
        "seed_provider:",
        "  - class_name: org.apache.cassandra.locator.SimpleSeedProvider",
        f'    parameters: [{{seeds: "{host}:{storage_port}"}}]',
        f"data_file_directories: [{data / 'data'}]",
        f"commitlog_directory: {data / 'commitlog'}",
        f"saved_caches_directory: {data / 'saved_caches'}",
        f"hints_directory: {data / 'hints'}",
        f"cdc_raw_directory: {data / 'cdc_raw'}",
        "",
    ]
    return "\n".join(lines)


def previous_storage_port(config: Path) -> int | None:
    """The storage port of the last start (kept: the node's address in its own tables)."""
    try:
        match = re.search(r"^storage_port: (\d+)$", config.read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def available_memory_mib() -> int:
    import psutil

    return int(psutil.virtual_memory().available // (1024 * 1024))


class CassandraNode(JvmProcess):
    """An Apache Cassandra process on loopback, its data kept.

    Use as a context manager, or call :meth:`start` and, in a ``finally``, :meth:`stop`
    (:class:`~common.jvm.JvmProcess`).
    ``python -m stack`` uses :meth:`prepare` (the argv) and :meth:`answers` (readiness)
    and runs the process under its supervisor instead.

    Args:
        data_dir: the node's folder (its yaml, data, commit log, hints, caches).
        host: the address to listen on (CQL and the storage port).
        port: the CQL port; 0 picks a free one.
        log_path: the file the node's output goes to.
        ready_timeout_s: deadline for CQL to answer.
        jars_dir: the folder holding ``cassandra/*.jar`` (``make setup`` fills it).
        heap: the JVM's heap (-Xms and -Xmx).
        unsafe_system: skip flushing schema changes (tests: a keyspace per test is 3x faster;
            a crash can then lose schema changes).
    """

    engine = "Cassandra"

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 0,
                 log_path: Path | None = None, ready_timeout_s: float = 120.0,
                 jars_dir: Path | None = None, heap: str = "512m",
                 unsafe_system: bool = False) -> None:
        super().__init__(data_dir, log_path or data_dir / "cassandra.log", host, port,
                         ready_timeout_s, jars_dir, heap)
        self.storage_port = 0
        self.unsafe_system = unsafe_system

    @classmethod
    def from_settings(cls, settings: Settings) -> CassandraNode:
        return cls(
            data_dir=settings.data_dir / "cassandra",
            host="127.0.0.1",
            port=settings.cassandra_port,
            log_path=settings.log_dir / "cassandra.log",
            ready_timeout_s=settings.cassandra_ready_timeout_s,
            jars_dir=settings.jars_dir,
            heap=settings.cassandra_heap,
        )


    @property
    def config_path(self) -> Path:
        return self.data_dir / "cassandra.yaml"

    def prepare(self) -> list[str]:
        """Check memory, Java, jars and ports; write the config; return the node's argv.

        The supervisor of ``python -m stack`` runs that argv as a child (and again after a
        crash: the config and data stay, so a restart needs no new preparation).
        """
        heap_mib = parse_size_mib(self.heap)
        free_mib = available_memory_mib()
        if free_mib < heap_mib + OVERHEAD_MIB:
            raise NodeError(
                f"too little memory for Cassandra: it needs about {heap_mib + OVERHEAD_MIB} MiB "
                f"(a heap of {self.heap} plus ~{OVERHEAD_MIB} MiB) and {free_mib} MiB are "
                "available. Set CASSANDRA=off to run without it (the Cassandra demos are then "
                "off), lower CASSANDRA_HEAP (384m is the least that works well), or point "
                "CASSANDRA_HOSTS at a server elsewhere")
        argv = self._java()  # Java and the jars first: the clearest errors
        if self.port == 0:
            self.port = free_port(self.host)
        elif port_is_taken(self.host, self.port):
            raise NodeError(
                f"port {self.port} on {self.host} is taken (another Cassandra, or `make run` "
                f"already running?): stop that process, set CASSANDRA_PORT to a free port (0 "
                f"picks one), or set CASSANDRA_HOSTS={self.host} CASSANDRA_PORT={self.port} "
                "to use that server")
        if self.storage_port == 0:
            previous = previous_storage_port(self.config_path)
            usable = previous is not None and previous != self.port and not port_is_taken(
                self.host, previous)
            self.storage_port = previous if usable and previous else free_port(self.host)
        for folder in ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "logs"):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(node_config(self.host, self.port, self.storage_port,
                                                self.data_dir))
        return argv

    def _java(self) -> list[str]:
        cp = classpath(self.jars_dir, "cassandra")
        jamm = sorted((self.jars_dir / "cassandra").glob("jamm-*.jar"))
        # jamm measures object sizes for memtable accounting; as an agent it measures them
        # exactly (Cassandra's own scripts load it so), without it it falls back to Unsafe.
        agent = [f"-javaagent:{jamm[0]}"] if jamm else []
        data = self.data_dir.resolve()
        flags = [
            f"-Xms{self.heap}", f"-Xmx{self.heap}", *JVM_FLAGS, *JPMS_FLAGS, *agent,
            f"-Dcassandra.config=file://{self.config_path.resolve()}",
            f"-Dcassandra.storagedir={data}",
            f"-Dcassandra.logdir={data / 'logs'}",
            f"-Dlogback.configurationFile={LOGBACK_XML}",
        ]
        if self.unsafe_system:
            flags.append("-Dcassandra.unsafesystem=true")
        return [java_command(), *flags, "-cp", cp, "org.apache.cassandra.service.CassandraDaemon"]

    def answers(self, timeout_s: float = 2.0) -> bool:
        """True when CQL answers ``SELECT release_version FROM system.local``."""
        try:
            with socket.create_connection((self.host, self.port), timeout=min(timeout_s, 1.0)):
                pass
        except OSError:
            return False  # not listening yet: cheaper than the driver's attempt
        from cassandra import ProtocolVersion
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import RoundRobinPolicy

        profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(),
                                   request_timeout=timeout_s)
        cluster = Cluster([self.host], port=self.port, connect_timeout=timeout_s,
                          control_connection_timeout=timeout_s,
                          protocol_version=ProtocolVersion.V5,
                          execution_profiles={EXEC_PROFILE_DEFAULT: profile})
        try:
            session = cluster.connect()
            return session.execute("SELECT release_version FROM system.local").one() is not None
        except Exception:  # noqa: BLE001 - any driver failure means: not ready yet
            return False
        finally:
            cluster.shutdown()

    def wait_ready(self, exit_code: Callable[[], int | None]) -> None:
        """Wait until CQL answers; ``exit_code`` says whether the process ended (None: running)."""
        started = time.monotonic()
        deadline = started + self.ready_timeout_s
        while True:
            code = exit_code()
            if code is not None:
                raise NodeError(
                    f"Cassandra exited with code {code} while starting on {self.address}; its "
                    f"log {self.log_path} ends with:\n{self.log_tail()}")
            if self.answers():
                log.info("Cassandra answered at %s after %.1f s", self.address,
                         time.monotonic() - started)
                return
            if time.monotonic() > deadline:
                raise NodeError(
                    f"Cassandra did not answer CQL at {self.address} within "
                    f"{self.ready_timeout_s:.0f} s (raise CASSANDRA_READY_TIMEOUT_S on a slow "
                    f"machine); log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.25)


def main(argv: Sequence[str] | None = None) -> int:
    from common import cli
    from common import settings as settings_module

    parser = settings_module.argument_parser(
        __doc__ or "", only=["cassandra_port", "cassandra_heap", "cassandra_ready_timeout_s",
                             "jars_dir", "data_dir", "log_level"])
    _, settings = cli.start(parser, argv)
    return CassandraNode.from_settings(settings).serve()


if __name__ == "__main__":
    sys.exit(main())
