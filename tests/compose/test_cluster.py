"""docker-compose.cluster.yml: the same stack on three brokers, a Spark master with workers
and three Cassandra nodes, checked without Docker like docker-compose.yml.

The override is merged into the base file as Compose merges a second ``-f`` file
(:func:`tests.compose.model.merge`, for the keys the override is allowed to set), and the
result is checked: schema, the brokers' quorum and replication, the Cassandra ring, the Spark
master, workers and driver, settings, start order and memory.
"""

from __future__ import annotations

import ast
import subprocess
from typing import Any

import pytest

from common import settings as settings_module
from tests.compose import model, tools
from tests.compose.test_schema import _errors

BASE = model.services()
OVERRIDE = model.cluster_override()
SERVICES = model.cluster_services()
#: The kit's own services (the Spark daemons use the processing image but run no kit code).
KIT = {name: s for name, s in SERVICES.items()
       if "build" in s and not name.startswith("spark-")}
BROKERS = ("kafka", "kafka-2", "kafka-3")
CASSANDRA_NODES = ("cassandra", "cassandra-2", "cassandra-3")
#: Keys of a broker's settings that are its own: its id and how it is reached.
PER_BROKER = {"KAFKA_NODE_ID", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS",
              "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"}
#: Variables of kit services that are Spark's own, not kit settings.
NOT_SETTINGS = {"SPARK_LOCAL_IP", "SPARK_LOCAL_HOSTNAME", "SPARK_DAEMON_MEMORY"}
GIB = 1 << 30
#: The cluster's limits, with the default number of workers, fit a 16 GiB machine (less 1 GiB
#: for the host); the base stack fits 8 GB.
BUDGET = 15 * GIB


def _env(name: str) -> dict[str, str]:
    return model.environment(SERVICES[name])


def _settings(name: str) -> settings_module.Settings:
    return settings_module.load(environ={k: v for k, v in _env(name).items()
                                         if k not in NOT_SETTINGS})


def _replicas(service: dict[str, Any]) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


# -- the file and the merge


def test_the_override_and_the_merged_stack_validate_against_the_compose_spec() -> None:
    errors = _errors(OVERRIDE)
    assert not errors, "docker-compose.cluster.yml:\n" + "\n".join(errors)
    errors = _errors(model.cluster_compose())
    assert not errors, "the merged stack:\n" + "\n".join(errors)


def test_check_jsonschema_accepts_the_override() -> None:
    result = subprocess.run(
        [tools.check_jsonschema(), "--builtin-schema", "vendor.compose-spec",
         str(model.CLUSTER_FILE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_services_are_changed_only_where_compose_merges_as_the_model_does() -> None:
    for name, service in OVERRIDE["services"].items():
        if name not in BASE:
            continue
        extra = set(service) - model.MERGED_KEYS
        assert not extra, f"{name}: {sorted(extra)} are merged by Compose in ways of their own"
        for key in ("environment", "depends_on"):
            assert isinstance(service.get(key, {}), dict), f"{name}.{key}: use the mapping form"


def test_the_merge_is_not_vacuous() -> None:
    assert model.merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": 3}, "d": [2]}) == {
        "a": {"b": 1, "c": 3}, "d": [2]}
    assert _env("kafka")["KAFKA_NODE_ID"] == "1"  # kept from the base
    assert _env("kafka")["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"  # from the override


# -- Kafka


def test_three_brokers_form_one_quorum() -> None:
    envs = {name: _env(name) for name in BROKERS}
    assert {SERVICES[n]["image"] for n in BROKERS} == {BASE["kafka"]["image"]}
    assert len({e["CLUSTER_ID"] for e in envs.values()}) == 1
    ids = {name: e["KAFKA_NODE_ID"] for name, e in envs.items()}
    assert sorted(ids.values()) == ["1", "2", "3"], ids
    voters = {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs.values()}
    assert len(voters) == 1, voters
    controller_port = {n: dict(item.split("://", 1) for item in e["KAFKA_LISTENERS"].split(","))
                       ["CONTROLLER"].rsplit(":", 1)[1] for n, e in envs.items()}
    assert voters.pop().split(",") == [f"{ids[n]}@{n}:{controller_port[n]}" for n in BROKERS]
    for name, env in envs.items():
        assert env["KAFKA_ADVERTISED_LISTENERS"].split(",")[0] == f"PLAINTEXT://{name}:9092"
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}


def test_every_broker_has_the_base_brokers_settings() -> None:
    first = _env("kafka")
    for name in BROKERS[1:]:
        env = _env(name)
        shared = set(first) - PER_BROKER - {"KAFKA_NODE_ID"}
        differ = {k: (first.get(k), env.get(k)) for k in shared | (set(env) - PER_BROKER)
                  if first.get(k) != env.get(k)}
        assert not differ, f"{name} differs from kafka (kafka's, {name}'s): {differ}"
        assert SERVICES[name]["healthcheck"] == SERVICES["kafka"]["healthcheck"], name
        assert SERVICES[name]["deploy"] == SERVICES["kafka"]["deploy"], name
        assert SERVICES[name].get("restart") == "unless-stopped", name
        assert not SERVICES[name].get("ports"), f"{name}: only kafka publishes its debug listener"
    volumes = [str(v).split(":")[0] for n in BROKERS for v in SERVICES[n]["volumes"]]
    assert len(set(volumes)) == 3, f"each broker needs its own log volume: {volumes}"


def test_topics_are_replicated_three_times_two_in_sync() -> None:
    settings = _settings("topics")
    assert settings.kafka_replication_factor == 3
    assert settings.kafka_min_insync_replicas == 2
    broker = _env("kafka")
    for key, value in {"KAFKA_DEFAULT_REPLICATION_FACTOR": "3", "KAFKA_MIN_INSYNC_REPLICAS": "2",
                       "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "3",
                       "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
                       "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "2"}.items():
        assert broker[key] == value, key
    # python -m buffer passes both settings on (else every topic would have one copy).
    source = (model.ROOT / "buffer" / "__main__.py").read_text()
    call = next(node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "create_topics")
    assert {k.arg for k in call.keywords} >= {"replication_factor", "min_insync_replicas"}
    waits = model.depends_on(SERVICES["topics"])
    assert all(waits.get(b) == "service_healthy" for b in BROKERS), waits


def test_every_kafka_user_bootstraps_from_the_three_brokers() -> None:
    users = [n for n, s in KIT.items() if model.service_closure(s).reaches("buffer.kafka")]
    assert {"topics", "sources", "ingest", "processing", "display"} <= set(users)
    for name in users:
        assert _settings(name).kafka_bootstrap_servers == ",".join(f"{b}:9092" for b in BROKERS), name


# -- Cassandra


def test_three_cassandra_nodes_join_one_ring_one_at_a_time() -> None:
    base = model.environment(BASE["cassandra"])
    for i, name in enumerate(CASSANDRA_NODES):
        service, env = SERVICES[name], _env(name)
        assert service["image"] == BASE["cassandra"]["image"], name
        assert env["CASSANDRA_CLUSTER_NAME"] == base["CASSANDRA_CLUSTER_NAME"], name
        assert env["MAX_HEAP_SIZE"] == base["MAX_HEAP_SIZE"], name
        assert env["CASSANDRA_SEEDS"] == "cassandra", name
        assert service["healthcheck"] == BASE["cassandra"]["healthcheck"], name
        assert service["deploy"] == BASE["cassandra"]["deploy"], name
        if i:  # a joining node bootstraps; two may not bootstrap at once
            previous = CASSANDRA_NODES[i - 1]
            assert model.depends_on(service).get(previous) == "service_healthy", name
    volumes = [str(v).split(":")[0] for n in CASSANDRA_NODES for v in SERVICES[n]["volumes"]]
    assert len(set(volumes)) == 3, volumes


def test_cassandra_users_reach_every_node_and_keep_three_copies() -> None:
    users = [n for n, s in KIT.items() if model.service_closure(s).reaches("storage.cassandra")]
    assert {"processing", "census", "display"} <= set(users)
    for name in users:
        settings = _settings(name)
        assert settings.cassandra_hosts == CASSANDRA_NODES, name
        assert settings.cassandra_local_dc == "datacenter1", name
        replication = ast.literal_eval(settings.cassandra_replication)
        assert replication == {"class": "NetworkTopologyStrategy", "datacenter1": 3}, name


# -- Spark


def _spark_class() -> str:
    image = model.dockerfile(model.ROOT / "processing" / "Dockerfile")
    return image.final.env()["SPARK_HOME"] + "/bin/spark-class"


def test_the_master_and_workers_run_pyspark_spark_class_from_the_processing_image() -> None:
    for name in ("spark-master", "spark-worker"):
        service = SERVICES[name]
        assert service["build"] == BASE["processing"]["build"], name
        assert service["image"] == BASE["processing"]["image"], name
        assert model.command(service)[0] == _spark_class(), name
        assert service.get("init") is True and service.get("restart") == "unless-stopped", name
    assert model.command(SERVICES["spark-master"])[1] == "org.apache.spark.deploy.master.Master"
    assert model.command(SERVICES["spark-worker"])[1] == "org.apache.spark.deploy.worker.Worker"


def test_workers_scale_and_register_with_the_master_the_driver_uses() -> None:
    master = model.command(SERVICES["spark-master"])
    url = f"spark://{model.option(master, '--host')}:{model.option(master, '--port')}"
    assert SERVICES["spark-master"]["hostname"] == model.option(master, "--host")
    worker = SERVICES["spark-worker"]
    assert model.command(worker)[-1] == url
    # --scale needs a worker without a fixed name or host port.
    assert not {"container_name", "hostname", "ports"} & set(worker), sorted(worker)
    assert _replicas(worker) >= 2
    assert _settings("processing").spark_master == url
    assert model.depends_on(SERVICES["processing"]).get("spark-master") == "service_healthy"


def test_an_executor_fits_a_worker_and_the_tasks_fit_the_cores() -> None:
    worker = SERVICES["spark-worker"]
    args = model.command(worker)
    offered = model.parse_bytes(str(model.option(args, "--memory")))
    settings = _settings("processing")
    assert model.parse_bytes(settings.spark_executor_memory) <= offered, (
        "SPARK_EXECUTOR_MEMORY exceeds a worker's --memory: no executor would start")
    daemon = model.parse_bytes(_env("spark-worker")["SPARK_DAEMON_MEMORY"])
    limit = model.memory_limit_bytes(worker) or 0
    assert offered + daemon <= 0.75 * limit, "the worker's heap, its executor's and Python's"
    cores = int(model.option(args, "--cores") or 0) * _replicas(worker)
    assert float(worker["deploy"]["resources"]["limits"]["cpus"]) >= int(
        model.option(args, "--cores") or 0)
    assert settings.shuffle_partitions <= cores


def test_executors_see_the_drivers_checkpoints_and_reach_the_driver() -> None:
    data_dir = _settings("processing").data_dir
    driver_volume = {str(v).split(":")[1]: str(v).split(":")[0]
                     for v in SERVICES["processing"]["volumes"]}[str(data_dir)]
    worker_volumes = {str(v).split(":")[1]: str(v).split(":")[0]
                      for v in SERVICES["spark-worker"].get("volumes", [])}
    assert worker_volumes.get(str(data_dir)) == driver_volume, (
        "executors write the state store under the checkpoint folder: mount it where the "
        "driver has it")
    env = _env("processing")
    assert env["SPARK_LOCAL_HOSTNAME"] == SERVICES["processing"]["hostname"]
    assert not env["SPARK_LOCAL_IP"].startswith("127."), "executors cannot reach a loopback driver"
    # The session gives executors SPARK_EXECUTOR_MEMORY when the master is a standalone one.
    source = (model.ROOT / "processing" / "spark.py").read_text()
    assert '"spark.executor.memory", settings.spark_executor_memory' in source


# -- settings, restart, memory


@pytest.mark.parametrize("name", sorted(KIT))
def test_every_variable_is_a_kit_setting_or_sparks_own_and_parses(name: str) -> None:
    names = {settings_module.env_name(f) for f in settings_module._FIELDS}
    unknown = set(_env(name)) - names - NOT_SETTINGS
    assert not unknown, f"{name}: not settings of common/settings.py: {sorted(unknown)}"
    _settings(name)


def test_dependencies_exist_and_new_services_are_long_running_with_limits() -> None:
    for name, service in SERVICES.items():
        for dep, condition in model.depends_on(service).items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            if condition == "service_healthy":
                assert SERVICES[dep].get("healthcheck", {}).get("test"), f"{dep}: no health check"
    for name in set(OVERRIDE["services"]) - set(BASE):
        service = SERVICES[name]
        assert service.get("restart") == "unless-stopped", name
        limits = service["deploy"]["resources"]["limits"]
        assert limits.get("memory") and limits.get("cpus"), name
    declared = set(model.cluster_compose()["volumes"])
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            assert source.startswith(("/", ".")) or source in declared, f"{name}: {source}"


def test_the_cluster_fits_a_16_gib_machine() -> None:
    limits = {name: (model.memory_limit_bytes(s) or 0) * _replicas(s)
              for name, s in SERVICES.items()}
    total = sum(limits.values())
    table = ", ".join(f"{n} {v >> 20} MiB" for n, v in sorted(limits.items()))
    assert total <= BUDGET, f"limits add up to {total / GIB:.2f} GiB: {table}"
