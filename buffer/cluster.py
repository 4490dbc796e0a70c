"""Apache Kafka as a cluster on one machine: three KRaft nodes, each broker and controller.

``python -m stack --cluster`` starts one :class:`KafkaClusterNode` per address of
CLUSTER_HOSTS (loopback aliases, 127.0.0.2-4 by default). Each is the kit's embedded broker
(:class:`buffer.broker.EmbeddedBroker`: same jars, same ``queue/server.properties``) plus
what a cluster needs:

* a ``node.id`` per node and one controller quorum of every node (``controller.quorum.voters``,
  static: three voters, so two of them elect a leader when one dies);
* the storage of every node formatted with one cluster id;
* internal topics (consumer offsets, transactions) with three replicas, two in sync;
* a broker that stops heartbeating is fenced after ``broker.session.timeout.ms``; the kit
  keeps Kafka's 9 s default (README, "When one machine is not enough").

The kit's topics are created once the quorum has a leader and every broker is registered
(:func:`create_topics`), with KAFKA_REPLICATION_FACTOR and KAFKA_MIN_INSYNC_REPLICAS.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from buffer import kafka, topics
from buffer.broker import EmbeddedBroker, new_cluster_id, server_config
from common.jvm import free_port

__all__ = ["KafkaClusterNode", "bootstrap_of", "create_topics", "leaders", "plan", "wait_for_brokers"]


class KafkaClusterNode(EmbeddedBroker):
    """One node of a KRaft cluster; :func:`plan` builds all of them with one voter list."""

    def __init__(self, node_id: int, data_dir: Path, host: str, port: int, log_path: Path,
                 jars_dir: Path | None, heap: str, ready_timeout_s: float = 90.0) -> None:
        super().__init__(data_dir, host=host, port=port, log_path=log_path,
                         ready_timeout_s=ready_timeout_s, jars_dir=jars_dir, heap=heap, create=())
        self.node_id = node_id
        self.voters = ""
        self.replicas = 3

    def config_text(self) -> str:
        """The single node's config, then what makes it one node of the cluster (the later
        line of a key wins in a Java properties file)."""
        min_isr = max(1, self.replicas - 1)
        return "\n".join([
            server_config(self.host, self.port, self.controller_port, self.log_dirs),
            "# A node of the cluster (buffer/cluster.py):",
            f"node.id={self.node_id}",
            f"controller.quorum.voters={self.voters}",
            f"offsets.topic.replication.factor={self.replicas}",
            f"transaction.state.log.replication.factor={self.replicas}",
            f"transaction.state.log.min.isr={min_isr}",
            f"share.coordinator.state.topic.replication.factor={self.replicas}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            f"default.replication.factor={self.replicas}",
            f"min.insync.replicas={min_isr}",
            "",
        ])


def _cluster_id(folder: Path) -> str:
    """The cluster id of the nodes under ``folder``, made once and kept (every node's storage
    is formatted with it; a node formatted with another could not join)."""
    path = folder / "cluster-id"
    if path.exists():
        return path.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    cluster_id = new_cluster_id()
    path.write_text(cluster_id + "\n")
    return cluster_id


def plan(hosts: Sequence[str], data_dir: Path, log_dir: Path, port: int,
         jars_dir: Path | None, heap: str) -> list[KafkaClusterNode]:
    """One node per host, their ports chosen and their voter list written into each.

    ``port``: each node's client port on its own address (0: a free one). The controller
    ports are free ones, chosen for each start (the quorum is static: its voters are read
    from the config at every start, not from the storage).
    """
    cluster_id = _cluster_id(data_dir)
    nodes = []
    for i, host in enumerate(hosts, start=1):
        node = KafkaClusterNode(i, data_dir / f"node-{i}", host, port or free_port(host),
                                log_dir / f"kafka-{i}.log", jars_dir, heap)
        node.controller_port = free_port(host)
        node.cluster_id = cluster_id
        node.replicas = min(3, len(hosts))
        nodes.append(node)
    voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes)
    for node in nodes:
        node.voters = voters
    return nodes


def bootstrap_of(nodes: Iterable[EmbeddedBroker]) -> str:
    """The bootstrap list clients get: every node (any one that answers will do)."""
    return ",".join(n.bootstrap for n in nodes)


def wait_for_brokers(bootstrap: str, count: int, timeout_s: float) -> None:
    """Wait until the metadata lists ``count`` brokers (each registered with the quorum)."""
    kafka.wait_until_ready(bootstrap, timeout_s)
    client = kafka.admin(bootstrap)
    deadline = time.monotonic() + timeout_s
    while True:
        seen = len(client.list_topics(timeout=5).brokers)
        if seen >= count:
            return
        if time.monotonic() > deadline:
            raise kafka.KafkaUnavailable(
                f"only {seen} of {count} Kafka brokers registered at {bootstrap} within "
                f"{timeout_s:.0f} s")
        time.sleep(0.2)


def create_topics(bootstrap: str, replication_factor: int, min_insync_replicas: int,
                  wanted: Iterable[topics.Topic] = topics.ALL) -> list[str]:
    """The kit's topics, replicated (see :func:`buffer.kafka.create_topics`)."""
    return kafka.create_topics(bootstrap, wanted, replication_factor=replication_factor,
                               min_insync_replicas=min_insync_replicas)


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """The broker id leading each partition of ``topic`` now (-1: none)."""
    meta = kafka.admin(bootstrap).list_topics(topic, timeout=10).topics[topic]
    return {p: info.leader for p, info in meta.partitions.items()}
