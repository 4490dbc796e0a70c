"""``python -m stack --cluster``: the engines as clusters on one machine, each node supervised.

Three "machines", the addresses of CLUSTER_HOSTS (127.0.0.2-4 by default; on Linux every
127.x.y.z address is the loopback, so each node binds its own address with Kafka's, CQL's
and Spark's usual ports), each running:

* a Kafka broker that is also a controller (:mod:`buffer.cluster`): a quorum of three;
* a Cassandra node (:mod:`storage.cassandra_cluster`): a ring of three;
* the Spark master on the first, a Spark worker on each of the others
  (:mod:`processing.standalone`).

:class:`Cluster` starts them in order (Kafka, then Cassandra, then Spark), waits until each
answers, creates the kit's topics (replication factor 3, two in sync) and its Cassandra
schema (from this one client: before Cassandra 5.1 two coordinators creating one table at
the same moment may give it two ids), and hands the stack the settings that point every
stage at the cluster. Each node is a child of the stack's supervisor, restarted after a
crash like any stage; a thread marks it ready again once it answers (:meth:`Cluster.watch`),
so the index shows each node as starting, running or restarting.

CLUSTER_ENGINES picks which engines run as clusters (all three by default); the others run
single-node as ``make run`` starts them, so the cost of one engine's cluster can be measured
alone (docs/cluster.md): ``CLUSTER_ENGINES=kafka`` is three brokers beside Spark's
``local[2]`` and one Cassandra node.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from buffer import cluster as kafka_cluster
from buffer import kafka
from common.jvm import free_port_on_every, port_is_taken
from common.settings import Settings, load
from processing import standalone
from stack.supervisor import Child, Supervisor
from storage import cassandra_cluster

__all__ = ["Cluster", "Node", "cluster_settings"]

log = logging.getLogger(__name__)


def cluster_settings(settings: Settings) -> Settings:
    """``settings`` with the cluster's defaults where they are still the single node's:
    KAFKA_REPLICATION_FACTOR 3, KAFKA_MIN_INSYNC_REPLICAS 2, and CASSANDRA_REPLICATION
    three copies in ``datacenter1`` (a value set by the operator is kept), each only for an
    engine of CLUSTER_ENGINES."""
    single = load(environ={})
    changes: dict[str, Any] = {}
    replicas = min(3, len(settings.cluster_hosts))
    engines = settings.cluster_engines
    if "kafka" in engines:
        if settings.kafka_replication_factor == single.kafka_replication_factor:
            changes["kafka_replication_factor"] = replicas
        if settings.kafka_min_insync_replicas == single.kafka_min_insync_replicas:
            changes["kafka_min_insync_replicas"] = max(1, replicas - 1)
    if ("cassandra" in engines
            and settings.cassandra_replication == single.cassandra_replication):
        changes["cassandra_replication"] = (
            f"{{'class': 'NetworkTopologyStrategy', 'datacenter1': {replicas}}}")
    return dataclasses.replace(settings, **changes)


@dataclass
class Node:
    """One process of the cluster: its engine, its supervised child and how to ask it."""

    engine: str  # kafka, cassandra, spark
    child: Child
    address: str
    answers: Callable[[], bool]


class Cluster:
    """The nodes of the engines of CLUSTER_ENGINES, planned from the settings, run by
    ``supervisor`` (an engine not chosen has no nodes here: the stack runs it single-node)."""

    def __init__(self, settings: Settings, supervisor: Supervisor,
                 stopping: threading.Event | None = None) -> None:
        hosts = settings.cluster_hosts
        if len(hosts) < 3:
            raise ValueError(f"CLUSTER_HOSTS needs three addresses, got {','.join(hosts)!r}")
        self.settings = cluster_settings(settings)
        self.supervisor = supervisor
        self.hosts = hosts[:3]
        self.engines = settings.cluster_engines
        data, logs = settings.data_dir.resolve() / "cluster", settings.log_dir
        self.kafka = kafka_cluster.plan(self.hosts, data / "kafka", logs, settings.broker_port,
                                        settings.jars_dir, settings.broker_heap
                                        ) if "kafka" in self.engines else []
        self.cassandra = cassandra_cluster.plan(
            self.hosts, data / "cassandra", logs,
            settings.cassandra_port or free_port_on_every(self.hosts), settings.jars_dir,
            settings.cassandra_heap, settings.cassandra_ready_timeout_s
        ) if "cassandra" in self.engines else []
        self.master = standalone.master(self.hosts[0], settings.spark_master_port, logs)
        self.workers = [
            standalone.worker(i, host, self.master.url, settings.spark_worker_cores,
                              standalone.worker_memory(settings.spark_executor_memory),
                              data / "spark" / f"worker-{i}", logs)
            for i, host in enumerate(self.hosts[1:], start=1)] if "spark" in self.engines else []
        self.nodes: list[Node] = []
        self._stopping = stopping or threading.Event()  # Ctrl-C while starting
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def bootstrap(self) -> str:
        return kafka_cluster.bootstrap_of(self.kafka)

    def stage_settings(self) -> Settings:
        """The settings every stage gets: the cluster's brokers, Cassandra nodes and master
        (for the engines of CLUSTER_ENGINES; the others' settings are left as they are)."""
        changes: dict[str, Any] = {}
        if self.kafka:
            changes["kafka_bootstrap_servers"] = self.bootstrap
        if self.cassandra:
            changes.update(cassandra_hosts=tuple(n.host for n in self.cassandra),
                           cassandra_port=self.cassandra[0].port)
        if self.workers:
            changes["spark_master"] = self.master.url
        return dataclasses.replace(self.settings, **changes)

    def title(self) -> str:
        """What starts, in a few words: "3 Kafka brokers, a Spark master and 2 workers"."""
        parts = [f"{len(self.kafka)} Kafka brokers" if self.kafka else "",
                 f"{len(self.cassandra)} Cassandra nodes" if self.cassandra else "",
                 f"a Spark master and {len(self.workers)} workers" if self.workers else ""]
        return ", ".join(p for p in parts if p)

    # -- starting

    def _run(self, engine: str, name: str, argv: list[str], log_path: Any, env: dict[str, str],
             address: str, answers: Callable[[], bool]) -> Node:
        child = self.supervisor.start(Child(name, argv, log_path, env, service=True,
                                            needs_ready=True, address=address))
        node = Node(engine, child, address, answers)
        self.nodes.append(node)
        return node

    def _wait(self, nodes: list[Node], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(nodes)
        while pending:
            for node in list(pending):
                if node.child.exit_code is not None:
                    raise RuntimeError(f"{node.child.name} exited with code "
                                       f"{node.child.exit_code} while starting:\n"
                                       f"{node.child.log_tail()}")
                if node.answers():
                    node.child.ready = True
                    pending.remove(node)
            if self._stopping.is_set():
                raise RuntimeError(f"stopped while waiting for {what}")
            if pending and time.monotonic() > deadline:
                names = ", ".join(n.child.name for n in pending)
                raise TimeoutError(f"{what}: {names} did not answer within {timeout_s:.0f} s")
            if pending:
                time.sleep(0.5)

    def start(self, say: Callable[[str], None]) -> Settings:
        """Start every node, wait until each answers, create topics and schema; returns the
        settings of the stages (:meth:`stage_settings`). ``say`` gets one line per step.

        The JVMs that need nothing else start at once (the brokers, Cassandra's seed, the
        Spark master and workers): on 2 cores that put everything up in 75 s instead of
        116 s one engine after the other.
        """
        started = time.monotonic()
        lines = self.describe()
        kafka_nodes = self.launch_kafka() if self.kafka else []
        seed = self.launch_cassandra_seed() if self.cassandra else None
        spark_nodes = self.launch_spark() if self.workers else []
        if kafka_nodes:
            created = self.finish_kafka(kafka_nodes)
            say(f"{lines['kafka']}; up after {time.monotonic() - started:.0f} s (topics "
                f"created: {', '.join(created) or 'none'})")
        if spark_nodes:
            self._wait(spark_nodes, 120, "Spark")
            say(f"{lines['spark']}; up after {time.monotonic() - started:.0f} s")
        if seed is not None:
            self.finish_cassandra(seed)
            say(f"{lines['cassandra']}; up after {time.monotonic() - started:.0f} s")
        return self.stage_settings()

    def launch_kafka(self) -> list[Node]:
        env = dict(os.environ)
        # prepare() formats a new node's storage with a JVM of its own: three at once.
        with concurrent.futures.ThreadPoolExecutor(len(self.kafka)) as pool:
            argvs = list(pool.map(lambda broker: broker.prepare(), self.kafka))
        return [self._run("kafka", f"kafka-{broker.node_id}", argv, broker.log_path, env,
                          broker.bootstrap, _kafka_answers(broker.bootstrap))
                for broker, argv in zip(self.kafka, argvs, strict=True)]

    def start_kafka(self) -> list[str]:
        """Start the three brokers together (the quorum needs two to elect a leader), wait
        until all are registered, create the kit's topics; returns the topics created."""
        return self.finish_kafka(self.launch_kafka())

    def finish_kafka(self, nodes: list[Node]) -> list[str]:
        self._wait(nodes, self.settings.broker_ready_timeout_s * 2, "Kafka")
        kafka_cluster.wait_for_brokers(self.bootstrap, len(self.kafka),
                                       self.settings.broker_ready_timeout_s)
        return kafka_cluster.create_topics(self.bootstrap, self.settings.kafka_replication_factor,
                                           self.settings.kafka_min_insync_replicas)

    def launch_cassandra_seed(self) -> Node:
        first = self.cassandra[0]
        return self._run("cassandra", f"cassandra-{first.index}", first.prepare(),
                         first.log_path, dict(os.environ), first.address, first.answers)

    def start_cassandra(self) -> None:
        self.finish_cassandra(self.launch_cassandra_seed())

    def finish_cassandra(self, seed: Node) -> None:
        """The seed first, then the other nodes together (none bootstraps: tokens are fixed
        and the ring starts empty), then the keyspace and tables, from here only."""
        env = dict(os.environ)
        timeout = self.settings.cassandra_ready_timeout_s
        first = self.cassandra[0]
        # The others need the seed's gossip (its storage port), not its CQL: starting them
        # then saved about 25 s of the ring's 96 s on 2 cores.
        gossip = Node("cassandra", seed.child, f"{first.host}:{first.storage_port}",
                      lambda: port_is_taken(first.host, first.storage_port))
        self._wait([gossip], timeout, "Cassandra's seed (gossip)")
        seed.child.ready = False
        rest = [self._run("cassandra", f"cassandra-{n.index}", n.prepare(), n.log_path, env,
                          n.address, n.answers) for n in self.cassandra[1:]]
        self._wait([seed, *rest], timeout, "Cassandra")
        from storage import open_store

        open_store("cassandra", self.stage_settings()).close()

    def start_spark(self) -> None:
        self._wait(self.launch_spark(), 120, "Spark")

    def launch_spark(self) -> list[Node]:
        """The master and the workers (a worker retries registering until the master
        answers); ready once the master lists the worker ALIVE."""
        env = {**os.environ, **standalone.python_env()}
        webui = self.master.webui
        master = self._run("spark", self.master.name, self.master.argv(), self.master.log_path,
                           self.master.env(env), self.master.url,
                           lambda: _http_answers(webui))
        nodes = [master]
        for worker in self.workers:
            host = worker.host
            nodes.append(self._run("spark", worker.name, worker.argv(), worker.log_path,
                                   worker.env(env), f"{host}:{worker.port}",
                                   functools.partial(_worker_alive, webui, host)))
        return nodes

    def submit_argv(self, job: str = "jobs") -> list[str]:
        """spark-submit to the master of every streaming job (``jobs``: what ``python -m
        processing`` runs in local mode) or of one (a module of ``processing``)."""
        cores = self.settings.spark_worker_cores * len(self.workers)
        return standalone.submit_argv(
            self.master.url, [str(standalone.ROOT / "processing" / f"{job}.py")],
            self.settings.spark_executor_memory, cores, self.hosts[0],
            self.settings.spark_driver_memory)

    # -- watching

    def watch(self) -> None:
        """Mark each restarted node ready again once it answers (a thread, until close)."""
        def run() -> None:
            while not self._stop.wait(1.0):
                for node in self.nodes:
                    child = node.child
                    if child.ready or child.process is None or child.exit_code is not None:
                        continue
                    try:
                        child.ready = node.answers()
                    except Exception:
                        log.debug("%s does not answer yet", child.name, exc_info=True)
                    if child.ready:
                        log.info("%s answers again after %.0f s", child.name,
                                 time.monotonic() - child.started_at)

        self._thread = threading.Thread(target=run, daemon=True, name="cluster-watch")
        self._thread.start()

    def describe(self) -> dict[str, str]:
        """A line per clustered engine: its nodes and their addresses."""
        lines: dict[str, str] = {}
        if self.kafka:
            lines["kafka"] = (
                f"Kafka: {len(self.kafka)} brokers (KRaft, each a controller) at "
                f"{self.bootstrap}; topics with replication factor "
                f"{self.settings.kafka_replication_factor}, min.insync.replicas "
                f"{self.settings.kafka_min_insync_replicas}")
        if self.cassandra:
            lines["cassandra"] = (
                f"Cassandra: {len(self.cassandra)} nodes at "
                f"{', '.join(n.address for n in self.cassandra)}; keyspace replication "
                f"{self.settings.cassandra_replication}, LOCAL_QUORUM")
        if self.workers:
            lines["spark"] = (
                f"Spark: master {self.master.url} (UI {self.master.webui}), "
                f"{len(self.workers)} workers at {', '.join(w.host for w in self.workers)}, "
                f"{self.settings.spark_worker_cores} cores and an executor of "
                f"{self.settings.spark_executor_memory} each")
        return lines

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def _kafka_answers(bootstrap: str) -> Callable[[], bool]:
    def answers() -> bool:
        try:
            kafka.wait_until_ready(bootstrap, timeout_s=1.0)
            return True
        except kafka.KafkaUnavailable:
            return False

    return answers


def _http_answers(url: str) -> bool:
    try:
        standalone.master_state(url, timeout_s=1.0)
        return True
    except (OSError, ValueError):
        return False


def _worker_alive(webui: str, host: str) -> bool:
    try:
        state = standalone.master_state(webui, timeout_s=1.0)
    except (OSError, ValueError):
        return False
    return any(w.get("host") == host and w.get("state") == "ALIVE"
               for w in state.get("workers", []))
