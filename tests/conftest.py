"""Shared fixtures: a real embedded broker and one Spark session for the whole test session."""

from __future__ import annotations

import logging
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from buffer import kafka
from buffer.broker import EmbeddedBroker
from buffer.topics import Topic
from common import settings

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """Give back the root logger's handlers and level after each test. A test that runs a
    command's main() in-process (common.cli.start -> setup_logging) leaves a handler on the
    stderr pytest captured for that test, closed once it ends: every later log line was a
    "--- Logging error ---" traceback (seen in test_mirror and test_contract)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The embedded Kafka broker on free ports, with the kit's topics, for the whole session."""
    folder = tmp_path_factory.mktemp("broker")
    embedded = EmbeddedBroker(folder / "kafka", port=0, log_path=folder / "broker.log")
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def bootstrap(broker: EmbeddedBroker) -> str:
    return broker.bootstrap


@dataclass(frozen=True)
class CassandraServer:
    """Where the tests' Cassandra answers; ``node`` is None for a server the tests did not start."""

    hosts: str
    port: int
    node: Any = None

    def environ(self, keyspace: str | None = None) -> dict[str, str]:
        """Settings' environment for this server (and a keyspace of the test's own)."""
        env = {"CASSANDRA_HOSTS": self.hosts, "CASSANDRA_PORT": str(self.port)}
        if keyspace:
            env["CASSANDRA_KEYSPACE"] = keyspace
        return env


@pytest.fixture(scope="session")
def cassandra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CassandraServer]:
    """One Cassandra for the whole session: CASSANDRA_HOSTS (and CASSANDRA_PORT) if set, else
    a node of the kit's own (storage.cassandra_node) on a free port. Skipped, with the reason,
    only where the node cannot run: no Cassandra jars (`make setup` fetches them)."""
    if os.environ.get("CASSANDRA_HOSTS"):
        yield CassandraServer(os.environ["CASSANDRA_HOSTS"],
                              int(os.environ.get("CASSANDRA_PORT") or 9042))
        return
    from storage.cassandra_node import CassandraNode

    jars = Path(__file__).resolve().parent.parent / "jars" / "cassandra"
    if not any(jars.glob("cassandra-all-*.jar")):
        pytest.skip(f"no Cassandra jars in {jars}: run `make setup` (or set CASSANDRA_HOSTS)")
    folder = tmp_path_factory.mktemp("cassandra")
    # unsafe_system: schema changes are not flushed to disk (a keyspace per test: much faster).
    node = CassandraNode(folder, port=0, log_path=folder / "cassandra.log", unsafe_system=True)
    node.start()
    try:
        yield CassandraServer(node.host, node.port, node)
    finally:
        node.stop()


@pytest.fixture
def new_topic(bootstrap: str) -> Iterator[Callable[[int], str]]:
    """Make uniquely named topics for one test (``new_topic(3)`` -> name); deleted afterwards."""
    made: list[str] = []

    def make(partitions: int = 3) -> str:
        name = f"test-{uuid.uuid4().hex[:10]}"
        kafka.create_topics(bootstrap, [Topic(name, name, partitions)])
        made.append(name)
        return name

    yield make
    if made:
        kafka.delete_topics(bootstrap, made)


@pytest.fixture(scope="session")
def test_settings(tmp_path_factory: pytest.TempPathFactory) -> settings.Settings:
    data_dir = tmp_path_factory.mktemp("data")
    return settings.load(
        environ={
            "DATA_DIR": str(data_dir),
            "SHUFFLE_PARTITIONS": "2",
            "SPARK_MASTER": "local[2]",
            "LOG_LEVEL": "warning",
        }
    )


@pytest.fixture(scope="session")
def spark(test_settings: settings.Settings):  # type: ignore[no-untyped-def]
    """One Spark session for every test that needs one (starting one costs 5-10 s)."""
    from processing.spark import session

    spark_session = session(test_settings, "streamkit-tests")
    try:
        yield spark_session
    finally:
        spark_session.stop()


@pytest.fixture
def checkpoint(tmp_path: Path) -> str:
    return str(tmp_path / "checkpoint")


class RunningStack:
    """A `python -m stack` process on free ports, with its own data directory."""

    def __init__(self, data_dir: Path, port: int, process: subprocess.Popen[bytes], out: Path,
                 broker_port: int, ingest_port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.bootstrap = f"127.0.0.1:{broker_port}"
        self.ingest_url = f"http://127.0.0.1:{ingest_port}"
        self.process = process
        self.out = out

    def output(self) -> str:
        return self.out.read_text(errors="replace")


def _stack_processes(data_dir: Path) -> list[Any]:
    """Processes (other than ours) whose environment points at this stack's data directory."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("DATA_DIR") == str(data_dir) and proc.pid != os.getpid():
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The whole embedded stack, as `make run` starts it, on free ports; stopped with Ctrl-C."""
    import signal
    import subprocess
    import sys
    import urllib.request

    from buffer.broker import free_port
    from common.waiting import eventually

    data_dir = tmp_path_factory.mktemp("stack").resolve()
    port, broker_port, ingest_port = free_port(), free_port(), free_port()
    out = data_dir / "stack.out"
    env = {**os.environ, "DATA_DIR": str(data_dir), "BROKER_PORT": str(broker_port),
           "DISPLAY_PORT": str(port), "INGEST_PORT": str(ingest_port), "LOG_LEVEL": "info",
           "CASSANDRA_PORT": "0"}  # the stack's own Cassandra node, on a free port
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "CASSANDRA_HOSTS", "CASSANDRA"):
        env.pop(name, None)
    with out.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "stack"], env=env, stdout=sink,
                                   stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent)
    stack = RunningStack(data_dir, port, process, out, broker_port, ingest_port)

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{stack.url}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def alive() -> None:
        if process.poll() is not None:
            raise AssertionError(f"the stack exited ({process.returncode}):\n{stack.output()}")

    try:
        eventually(up, 60, "the display server of the stack", interval_s=0.2, check=alive)
        yield stack
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f"the stack did not stop on Ctrl-C:\n{stack.output()}") from None
        leftovers = _stack_processes(data_dir)
        for proc in leftovers:
            proc.kill()
        assert code == 0, f"stack exited with {code}:\n{stack.output()}"
        assert not leftovers, f"processes left behind: {[p.cmdline()[:3] for p in leftovers]}"


#: Fixtures that start an engine, a browser or the stack: tests using them are not fast.
SLOW_FIXTURES = frozenset({"broker", "bootstrap", "new_topic", "cassandra", "spark",
                           "running_stack", "browser"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fast", action="store_true",
                     help="only the tests that need no broker, Spark, Cassandra, browser or "
                          "running stack (make test-fast: the edit-test loop)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests that use the whole running stack last, together; with ``--fast``, only
    the tests that start nothing (no fixture of :data:`SLOW_FIXTURES`, no ``slow`` mark).

    The stack (a broker, a Spark application with every job, the sources) keeps two cores
    busy while it runs; started early, it would slow every test after it.
    """
    if config.getoption("--fast"):
        slow = [item for item in items
                if SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
                or item.get_closest_marker("slow") or item.get_closest_marker("spark")
                or item.get_closest_marker("browser")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            kept = set(map(id, slow))
            items[:] = [item for item in items if id(item) not in kept]
    items.sort(key=lambda item: "running_stack" in getattr(item, "fixturenames", ()))
