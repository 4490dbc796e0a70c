"""The compose stack is wired to what the code needs: topics, settings, ports, order of start.

What a service's code needs is derived from the code itself where possible: its command's
entry modules, the kit modules they import (followed statically, tests/compose/model.py), the
settings of common/settings.py and the topics of queue/topics.toml.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from common import settings as settings_module
from common import topics
from tests.compose import model

SERVICES = model.services()
KIT = model.kit_services()
#: Environment variables of kit services that are not kit settings, with why they are set.
NOT_SETTINGS = {
    "SPARK_LOCAL_IP": "Spark's own: the driver binds to loopback (local mode needs no network)",
}
#: Variables the kit's images set (Dockerfile ENV) that are not kit settings: the interpreter's
#: and Spark's own.
IMAGE_NOT_SETTINGS = {"PATH", "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",
                      "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME", "SPARK_CONF_DIR"}
SECRETS = ("CASSANDRA_USERNAME", "CASSANDRA_PASSWORD")


def _setting_names() -> set[str]:
    return {settings_module.env_name(f) for f in settings_module._FIELDS}


def _service_env(name: str) -> dict[str, str]:
    return model.environment(SERVICES[name])


# -- topics


def _code_files() -> list[Path]:
    return [p for pkg in model.FIRST_PARTY if pkg != "stack"
            for p in (model.ROOT / pkg).rglob("*.py") if "node_modules" not in p.parts]


def test_every_topic_the_code_names_is_defined_in_topics_toml() -> None:
    defined = tomllib.loads((model.ROOT / "queue" / "topics.toml").read_text())
    not_topics = {"ALL", "DEFINITION_FILE", "Topic"}
    used: dict[str, set[str]] = {}
    for path in _code_files():
        for role in re.findall(r"\btopics\.([A-Z][A-Z_]*)\b", path.read_text()):
            if role not in not_topics:
                used.setdefault(role.lower(), set()).add(str(path.relative_to(model.ROOT)))
    assert used, "found no topics.<ROLE> in the code: has the convention changed?"
    missing = {role: files for role, files in used.items() if role not in defined}
    assert not missing, f"topics used by the code but not in queue/topics.toml: {missing}"


def test_topics_the_stack_is_configured_with_exist() -> None:
    names = {t.name for t in topics.ALL}
    for name, service in KIT.items():
        env = model.environment(service)
        settings = settings_module.load(environ=env)
        unknown = set(settings.ingest_topics) - names
        assert not unknown, f"{name}: INGEST_TOPICS names topics not in queue/topics.toml: {unknown}"


def test_the_topics_service_creates_every_topic_before_anything_uses_kafka() -> None:
    topics_service = SERVICES["topics"]
    assert model.command(topics_service) == ["python", "-m", "common.topics"]
    assert topics_service.get("restart") == "no"
    source = (model.ROOT / "common" / "topics.py").read_text()
    assert re.search(r"create_topics\([^)]*\bALL\)", source), "common.topics no longer creates ALL"
    # The broker does not create topics on first use: each topic must exist before its users.
    assert model.environment(SERVICES["kafka"])["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for name, service in KIT.items():
        if name == "topics" or not model.service_closure(service).reaches("common.kafka"):
            continue
        waits = model.all_dependencies(name)
        assert "service_completed_successfully" in waits.get("topics", set()), (
            f"{name} uses Kafka but does not wait for the topics service to complete")


# -- settings


@pytest.mark.parametrize("name", sorted(KIT))
def test_every_variable_is_a_kit_setting_and_parses(name: str) -> None:
    env = _service_env(name)
    unknown = set(env) - _setting_names() - set(NOT_SETTINGS)
    assert not unknown, f"{name}: not settings of common/settings.py (a typo?): {sorted(unknown)}"
    settings_module.load(environ=env)  # raises SettingsError naming the bad value


@pytest.mark.parametrize("path", sorted(model.kit_dockerfiles()))
def test_every_variable_an_image_sets_is_a_kit_setting_or_a_tools_own(path: str) -> None:
    env = model.kit_dockerfiles()[path].final.env()
    unknown = set(env) - _setting_names() - IMAGE_NOT_SETTINGS
    assert not unknown, f"{path}: ENV names what is not a setting of common/settings.py: {sorted(unknown)}"
    settings_module.load(environ={k: v for k, v in env.items() if k in _setting_names()})


def test_kafka_users_get_the_brokers_internal_listener() -> None:
    host, port = model.kafka_listeners("ADVERTISED_LISTENERS")["PLAINTEXT"]
    assert host == "kafka" and model.kafka_listeners("LISTENERS")["PLAINTEXT"][1] == port
    users = [n for n, s in KIT.items() if model.service_closure(s).reaches("common.kafka")]
    assert {"topics", "sources", "ingest", "processing", "display"} <= set(users)
    for name in users:
        assert _service_env(name).get("KAFKA_BOOTSTRAP_SERVERS") == f"{host}:{port}", name
        assert model.all_dependencies(name).get("kafka") == {"service_healthy"}, name


def test_services_that_keep_files_keep_them_in_a_volume() -> None:
    writers = [n for n, s in KIT.items() if re.search(
        r"\.(data_dir|sqlite_path|checkpoint_dir|log_dir|state_dir)\b",
        model.service_closure(s).source())]
    assert {"sources", "processing", "display"} <= set(writers)
    named = set(model.compose().get("volumes") or {})
    for name in writers:
        data_dir = _service_env(name).get("DATA_DIR")
        assert data_dir and data_dir.startswith("/"), f"{name}: DATA_DIR must be a mount point"
        mounts = {str(v).split(":")[1]: str(v).split(":")[0]
                  for v in SERVICES[name].get("volumes", [])}
        assert mounts.get(data_dir) in named, f"{name}: no named volume at DATA_DIR={data_dir}"


def test_services_that_share_the_store_share_one_volume() -> None:
    sharing = {name: {str(v) for v in s.get("volumes", [])} for name, s in KIT.items()
               if model.service_closure(s).reaches("storage")}
    assert {"processing", "display"} <= set(sharing)
    assert len({frozenset(v) for v in sharing.values()}) == 1, sharing


def test_storage_users_reach_cassandra() -> None:
    users = [n for n, s in KIT.items() if model.service_closure(s).reaches("storage")]
    assert {"processing", "display"} <= set(users)
    for name in users:
        settings = settings_module.load(environ=_service_env(name))
        assert settings.cassandra_hosts == ("cassandra",), (
            f"{name}: CASSANDRA_HOSTS must name the cassandra service (else its demos are off)")
        assert settings.cassandra_port == 9042  # the CQL port of the official image
        assert settings.cassandra_local_dc == "datacenter1"  # the DC of a SimpleSnitch node


def test_spark_submit_flags_agree_with_settings() -> None:
    spark_services = {n: s for n, s in KIT.items() if model.command(s)[0] == "spark-submit"}
    assert "processing" in spark_services
    for name, service in spark_services.items():
        args = model.command(service)
        settings = settings_module.load(environ=model.environment(service))
        assert model.option(args, "--master") == settings.spark_master, name
        assert model.option(args, "--driver-memory") == settings.spark_driver_memory, name
        cores = re.fullmatch(r"local\[(\d+)\]", settings.spark_master)
        assert cores, f"{name}: local mode with a fixed core count, got {settings.spark_master}"
        # os.cpu_count() in a container is the host's: the default would not match the limit.
        assert "SHUFFLE_PARTITIONS" in model.environment(service), name
        assert settings.shuffle_partitions <= int(cores.group(1)), name


def test_streaming_and_batch_jobs_are_all_run_by_the_stack() -> None:
    from processing import jobs

    streaming, batch = set(), set()
    for path in (model.ROOT / "processing").glob("*.py"):
        text = path.read_text()
        if re.search(r"^\s+sys\.exit\(run_job\(", text, re.M):
            streaming.add(path.stem)
        if re.search(r"^\s+sys\.exit\(run_batch_job\(", text, re.M):
            batch.add(path.stem)
    assert {"vmstat_windows", "census_stats"} <= streaming | batch
    assert model.command(SERVICES["processing"])[-1] == "processing/jobs.py"
    assert streaming <= set(jobs.STREAMING_JOBS), (
        f"streaming jobs the stack would not run (add them to processing.jobs.STREAMING_JOBS): "
        f"{sorted(streaming - set(jobs.STREAMING_JOBS))}")
    assert batch <= set(jobs.BATCH_JOBS), sorted(batch - set(jobs.BATCH_JOBS))
    census = model.command(SERVICES["census"])
    assert census[-1] == "processing/census_stats.py" and "census_stats" in batch


def test_commands_name_modules_and_files_that_exist() -> None:
    for name, service in KIT.items():
        _, modules = model.entry_point(model.command(service))
        for module in modules:
            assert model.module_file(module), f"{name}: {module} does not exist"


def test_secrets_come_only_from_the_git_ignored_env_file() -> None:
    text = model.COMPOSE_FILE.read_text()
    for secret in SECRETS:
        assert secret not in text, f"{secret} must come from .env, not docker-compose.yml"
    assert ".env" in (model.ROOT / ".gitignore").read_text().split()
    assert model.ignored_by_docker(".env"), ".env must stay out of the build context"
    example = _env_example()
    for secret in SECRETS:
        assert example.get(secret) == "", f".env.example must list {secret} with no value"
    for name, service in KIT.items():
        if model.service_closure(service).reaches("storage"):
            files = [e["path"] if isinstance(e, dict) else e for e in service.get("env_file", [])]
            assert ".env" in files, f"{name} needs the Cassandra credentials from .env"


def test_env_example_names_only_settings_with_valid_values() -> None:
    example = _env_example()
    assert example
    unknown = set(example) - _setting_names()
    assert not unknown, f".env.example names variables that are not settings: {sorted(unknown)}"
    settings_module.load(environ={k: v for k, v in example.items() if v})


def test_env_example_only_suggests_what_env_can_change() -> None:
    # docker-compose.yml's `environment:` wins over env_file: a suggestion set there is ignored.
    suggested = set(_env_example()) | set(re.findall(
        r"^#\s*([A-Z][A-Z0-9_]+)=", (model.ROOT / ".env.example").read_text(), re.M))
    assert suggested - set(SECRETS)
    for name, service in KIT.items():
        shadowed = suggested & set(model.environment(service))
        assert not shadowed, f"{name} sets {sorted(shadowed)}: .env cannot change them"


def _env_example() -> dict[str, str]:
    values = {}
    for line in (model.ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not NAME=value"
            values[key.strip()] = value.strip()
    return values


# -- ports and listeners


def test_only_the_display_and_kafkas_debug_listener_are_published_on_loopback() -> None:
    ports = model.published_ports()
    assert {(p.service, p.container_port) for p in ports} == {("display", 5000), ("kafka", 9094)}
    for p in ports:
        assert p.host_ip == "127.0.0.1", f"{p.service}:{p.container_port} is published beyond loopback"
    host_ports = [p.host_port for p in ports]
    assert len(host_ports) == len(set(host_ports)), f"two services publish one host port: {ports}"


def test_kafkas_listeners_are_consistent() -> None:
    listeners = model.kafka_listeners("LISTENERS")
    advertised = model.kafka_listeners("ADVERTISED_LISTENERS")
    env = model.environment(SERVICES["kafka"])
    ports = [port for _, port in listeners.values()]
    assert len(ports) == len(set(ports)), listeners
    protocol_map = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocol_map)
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners and controller not in advertised
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:{listeners[controller][1]}"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    published = {p.container_port: p for p in model.published_ports() if p.service == "kafka"}
    external = published[listeners["EXTERNAL"][1]]
    assert advertised["EXTERNAL"] == (external.host_ip, external.host_port)
    volumes = {str(v).split(":")[1] for v in SERVICES["kafka"]["volumes"]}
    assert env["KAFKA_LOG_DIRS"] in volumes, "Kafka's log dirs must be on the named volume"


def test_servers_listen_where_their_clients_and_health_checks_look() -> None:
    display = SERVICES["display"]
    bind = model.option(model.command(display), "-b")
    settings = settings_module.load(environ=model.environment(display))
    assert bind == f"0.0.0.0:{settings.display_port}"
    assert settings.display_host == "0.0.0.0"
    assert [p.container_port for p in model.published_ports() if p.service == "display"] == [
        settings.display_port]
    assert f":{settings.display_port}/healthz" in " ".join(display["healthcheck"]["test"])
    for flag in ("--no-control-socket", "--threads"):
        assert flag in model.command(display)
    assert model.option(model.command(display), "-w") == "1"

    ingest = SERVICES["ingest"]
    settings = settings_module.load(environ=model.environment(ingest))
    assert settings.ingest_host == "0.0.0.0"
    assert [str(settings.ingest_port)] == [str(p) for p in ingest["expose"]]
    assert f":{settings.ingest_port}/healthz" in " ".join(ingest["healthcheck"]["test"])
    target = urlsplit(str(model.option(model.command(SERVICES["locust"]), "--host")))
    assert (target.hostname, target.port) == ("ingest", settings.ingest_port)
    assert "--allow-remote" in model.command(SERVICES["locust"])  # ingest is not loopback


# -- start order


def test_dependencies_exist_are_acyclic_and_health_checked() -> None:
    for name, service in SERVICES.items():
        for dep, condition in model.depends_on(service).items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            target: dict[str, Any] = SERVICES[dep]
            if condition == "service_healthy":
                assert target.get("healthcheck", {}).get("test"), f"{dep} has no health check"
            if condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dep} is one-shot: restart must be no"
        assert name not in model.all_dependencies(name), f"{name} depends on itself"


def test_spark_waits_for_cassandra_and_the_health_checks_test_the_real_service() -> None:
    for name in ("processing", "census"):
        assert model.depends_on(SERVICES[name]).get("cassandra") == "service_healthy"
    assert "kafka-broker-api-versions.sh" in " ".join(SERVICES["kafka"]["healthcheck"]["test"])
    assert "cqlsh" in " ".join(SERVICES["cassandra"]["healthcheck"]["test"])
    cassandra_volumes = {str(v).split(":")[1] for v in SERVICES["cassandra"]["volumes"]}
    assert "/var/lib/cassandra" in cassandra_volumes
