"""What ``python -m stack --cluster`` plans before it starts anything: settings, the Kafka
quorum, the Cassandra ring and the spark-submit argv (no engine runs here; the cluster itself
is tested in tests/test_cluster_faults.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from buffer import cluster as kafka_cluster
from common.settings import load
from processing import standalone
from stack.cluster import Cluster, cluster_settings
from stack.supervisor import Supervisor
from storage import cassandra_cluster

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def _properties(text: str) -> dict[str, str]:
    """A Java properties file as Kafka reads it: the later line of a key wins."""
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_the_cluster_replicates_three_times_unless_the_operator_said_otherwise() -> None:
    settings = cluster_settings(load(environ={}))
    assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (3, 2)
    assert settings.cassandra_replication == cassandra_cluster.REPLICATION_3
    chosen = cluster_settings(load(environ={"KAFKA_MIN_INSYNC_REPLICAS": "3"}))
    assert chosen.kafka_min_insync_replicas == 3


def test_three_addresses_are_needed() -> None:
    settings = load(environ={"CLUSTER_HOSTS": "127.0.0.2,127.0.0.3"})
    with pytest.raises(ValueError, match="three addresses"):
        Cluster(settings, Supervisor())


def test_kafka_nodes_share_a_cluster_id_and_one_quorum(tmp_path: Path) -> None:
    nodes = kafka_cluster.plan(HOSTS, tmp_path, tmp_path / "logs", 0, None, "384m")
    assert [n.node_id for n in nodes] == [1, 2, 3]
    assert len({n.cluster_id for n in nodes}) == 1
    voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes)
    for node in nodes:
        config = _properties(node.config_text())
        assert config["node.id"] == str(node.node_id)
        assert config["controller.quorum.voters"] == voters
        assert config["default.replication.factor"] == "3"
        assert config["min.insync.replicas"] == "2"
        assert config["offsets.topic.replication.factor"] == "3"
        assert config["transaction.state.log.min.isr"] == "2"
    # A later start keeps the cluster id its storage was formatted with.
    again = kafka_cluster.plan(HOSTS, tmp_path, tmp_path / "logs", 0, None, "384m")
    assert again[0].cluster_id == nodes[0].cluster_id
    assert kafka_cluster.bootstrap_of(nodes) == ",".join(n.bootstrap for n in nodes)


def test_cassandra_tokens_are_ccms_and_the_first_node_is_every_nodes_seed(tmp_path: Path) -> None:
    assert cassandra_cluster.tokens(3) == [
        -9223372036854775808, -3074457345618258603, 3074457345618258602]
    nodes = cassandra_cluster.plan(HOSTS, tmp_path, tmp_path / "logs", 0, None, "384m")
    assert {n.seed for n in nodes} == {HOSTS[0]}
    assert len({n.storage_port for n in nodes}) == 1
    assert len({n.data_dir for n in nodes}) == 3
    assert [n.token for n in nodes] == cassandra_cluster.tokens(3)


def test_the_job_is_submitted_to_the_master_in_client_mode() -> None:
    argv = standalone.submit_argv("spark://127.0.0.2:7077", ["processing/jobs.py"], "768m", 4,
                                  "127.0.0.2", "1g")
    pairs = dict(zip(argv, argv[1:], strict=False))
    assert pairs["--master"] == "spark://127.0.0.2:7077"
    assert pairs["--deploy-mode"] == "client"
    assert pairs["--executor-memory"] == "768m"
    assert "spark.cores.max=4" in argv
    assert argv[-1] == "processing/jobs.py"


def test_stage_settings_point_every_stage_at_the_cluster(tmp_path: Path) -> None:
    settings = dataclasses.replace(load(environ={"DATA_DIR": str(tmp_path), "BROKER_PORT": "0",
                                                 "CASSANDRA_PORT": "0",
                                                 "SPARK_MASTER_PORT": "0"}),
                                   cluster_hosts=HOSTS)
    cluster = Cluster(settings, Supervisor())
    stage = cluster.stage_settings()
    assert stage.kafka_bootstrap_servers == cluster.bootstrap
    assert stage.cassandra_hosts == HOSTS
    assert stage.spark_master == cluster.master.url
    assert stage.kafka_replication_factor == 3
    assert set(cluster.describe()) == {"kafka", "cassandra", "spark"}


def test_cluster_engines_cluster_one_engine_and_leave_the_others_single_node(
        tmp_path: Path) -> None:
    """CLUSTER_ENGINES=kafka: three brokers, their replication; Spark stays local[2] and
    Cassandra the stack's own single node (no hosts), each with its single-node settings."""
    settings = dataclasses.replace(load(environ={"DATA_DIR": str(tmp_path), "BROKER_PORT": "0",
                                                 "SPARK_MASTER_PORT": "0",
                                                 "CLUSTER_ENGINES": "Kafka"}),
                                   cluster_hosts=HOSTS)
    single = load(environ={})
    cluster = Cluster(settings, Supervisor())
    stage = cluster.stage_settings()
    assert len(cluster.kafka) == 3 and not cluster.cassandra and not cluster.workers
    assert stage.kafka_bootstrap_servers == cluster.bootstrap
    assert stage.kafka_replication_factor == 3 and stage.kafka_min_insync_replicas == 2
    assert stage.spark_master == single.spark_master
    assert stage.embedded_cassandra
    assert stage.cassandra_replication == single.cassandra_replication
    assert cluster.title() == "3 Kafka brokers" and list(cluster.describe()) == ["kafka"]

    spark_only = Cluster(dataclasses.replace(settings, cluster_engines=("spark",)), Supervisor())
    stage = spark_only.stage_settings()
    assert stage.embedded_broker and stage.embedded_cassandra
    assert stage.spark_master == spark_only.master.url
    assert stage.kafka_replication_factor == single.kafka_replication_factor
    assert spark_only.title() == "a Spark master and 2 workers"


@pytest.mark.parametrize("raw", ["", "kafka,zookeeper", "hdfs"])
def test_cluster_engines_name_known_engines(raw: str) -> None:
    with pytest.raises(ValueError, match="CLUSTER_ENGINES"):
        load(environ={"CLUSTER_ENGINES": raw})
