"""The benchmarks' memory sampler: what it counts and how it names each process (pure; fake processes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench._usage import _kind, without_spawns_in_flight

JAVA = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"
PYTHON = "/work/.venv/bin/python"


@dataclass
class _Proc:
    pid: int
    parent: int
    executable: str
    args: list[str] = field(default_factory=list)

    def ppid(self) -> int:
        return self.parent

    def exe(self) -> str:
        return self.executable

    def cmdline(self) -> list[str]:
        return self.args or [self.executable]


def test_a_jvm_child_not_yet_exec_d_is_not_counted_again() -> None:
    jvm = _Proc(10, 1, JAVA, [JAVA, "-cp", "spark.jar", "org.apache.spark.deploy.SparkSubmit"])
    spawning = _Proc(11, 10, JAVA, jvm.args)  # the JVM's copy, before exec: its pages are the JVM's
    helper = _Proc(12, 10, "/usr/lib/jvm/java-17-openjdk-amd64/lib/jspawnhelper")
    daemon = _Proc(13, 10, PYTHON, [PYTHON, "-m", "pyspark.daemon", "pyspark.worker"])
    worker = _Proc(14, 13, PYTHON, daemon.args)  # forked by the daemon: a real worker
    driver = _Proc(9, 1, PYTHON, [PYTHON, "-m", "processing"])
    kept = without_spawns_in_flight([driver, jvm, spawning, helper, daemon, worker])
    assert [p.pid for p in kept] == [9, 10, 12, 13, 14]


def test_the_cassandra_node_is_a_kind_of_its_own() -> None:
    cassandra = [JAVA, "-Xms512m", "-cp", "jars/cassandra/*",
                 "org.apache.cassandra.service.CassandraDaemon"]
    broker = [JAVA, "-cp", "jars/kafka/*", "kafka.Kafka", "server.properties"]
    spark = [JAVA, "-cp", "spark.jar", "org.apache.spark.deploy.SparkSubmit"]
    assert [_kind(c) for c in (cassandra, broker, spark)] == ["cassandra", "broker", "JVM"]


def test_a_cassandra_child_not_yet_exec_d_is_not_counted_again() -> None:
    node = _Proc(20, 1, JAVA, [JAVA, "org.apache.cassandra.service.CassandraDaemon"])
    spawning = _Proc(21, 20, JAVA, node.args)
    assert [p.pid for p in without_spawns_in_flight([node, spawning])] == [20]
