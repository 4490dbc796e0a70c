"""Apache Cassandra as a cluster on one machine: three nodes, one per address of CLUSTER_HOSTS.

Each node is the kit's embedded node (:class:`storage.cassandra_node.CassandraNode`: same
jars, same ``storage/conf/cassandra.yaml``) with what a ring of several nodes needs, as
Cassandra's own ``ccm`` sets it up for several nodes on loopback aliases:

* one token per node, spread evenly over the ring (``num_tokens: 1`` and the ``initial_token``
  of :func:`tokens`), and ``auto_bootstrap: false``: the nodes start with an empty ring, so
  none needs to stream data from the others;
* the first node is every node's seed;
* all nodes use one storage (inter-node) port, each on its own address;
* hinted handoff on: a write a node missed while down is kept by the coordinator and replayed
  when it is back (within ``max_hint_window``, 3 h).

The keyspace then replicates every row on the three nodes (CASSANDRA_REPLICATION, which
``--cluster`` makes ``NetworkTopologyStrategy {'datacenter1': 3}``) and the store reads and
writes at ``LOCAL_QUORUM``: any one node may die without a read or a write failing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from common.jvm import free_port_on_every, port_is_taken
from storage.cassandra_node import CassandraNode, node_config, previous_storage_port

__all__ = ["CassandraClusterNode", "plan", "tokens"]

#: Replication of the kit's keyspace on a cluster of three nodes in SimpleSnitch's datacenter.
REPLICATION_3 = "{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}"


def tokens(count: int) -> list[int]:
    """``count`` Murmur3 tokens spread evenly over the ring (ccm's choice for ``num_tokens: 1``)."""
    return [-(2**63) + i * (2**64 // count) for i in range(count)]


def _replace_key(yaml: str, key: str, value: str) -> str:
    """Set a top-level key of the yaml text (replaced where it is, else appended)."""
    line = f"{key}: {value}"
    pattern = re.compile(rf"^{re.escape(key)}:.*$", re.M)
    return pattern.sub(line, yaml, count=1) if pattern.search(yaml) else yaml + line + "\n"


class CassandraClusterNode(CassandraNode):
    """One node of the ring; :func:`plan` builds them with one seed and one storage port."""

    def __init__(self, index: int, data_dir: Path, host: str, port: int, log_path: Path,
                 jars_dir: Path | None, heap: str, token: int, seed: str,
                 storage_port: int, ready_timeout_s: float = 180.0) -> None:
        super().__init__(data_dir, host=host, port=port, log_path=log_path,
                         ready_timeout_s=ready_timeout_s, jars_dir=jars_dir, heap=heap)
        self.index = index
        self.token = token
        self.seed = seed
        self.storage_port = storage_port

    def prepare(self) -> list[str]:
        """The single node's preparation, then its yaml rewritten as a member of the ring."""
        argv = super().prepare()
        text = node_config(self.host, self.port, self.storage_port, self.data_dir)
        text = text.replace(f'seeds: "{self.host}:{self.storage_port}"',
                            f'seeds: "{self.seed}:{self.storage_port}"')
        text = _replace_key(text, "initial_token", str(self.token))
        text = _replace_key(text, "hinted_handoff_enabled", "true")
        text = _replace_key(text, "auto_bootstrap", "false")
        self.config_path.write_text(text)
        return argv


def _storage_port(hosts: Sequence[str], first_config: Path) -> int:
    """One inter-node port free on every address; the one of the last start if still free
    (the nodes know each other by address and port in their system tables)."""
    previous = previous_storage_port(first_config)
    if previous and not any(port_is_taken(h, previous) for h in hosts):
        return previous
    return free_port_on_every(hosts)


def plan(hosts: Sequence[str], data_dir: Path, log_dir: Path, port: int,
         jars_dir: Path | None, heap: str, ready_timeout_s: float = 180.0
         ) -> list[CassandraClusterNode]:
    """One node per host: tokens, the first as seed, one storage port for all.

    ``port``: each node's CQL port on its own address (0: a free one each).
    """
    storage_port = _storage_port(hosts, data_dir / "node-1" / "cassandra.yaml")
    return [
        CassandraClusterNode(i, data_dir / f"node-{i}", host, port, log_dir / f"cassandra-{i}.log",
                             jars_dir, heap, token, hosts[0], storage_port, ready_timeout_s)
        for i, (host, token) in enumerate(zip(hosts, tokens(len(hosts)), strict=True), start=1)
    ]
