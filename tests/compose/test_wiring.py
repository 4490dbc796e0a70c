"""The compose stack is wired to what the code needs: topics, settings, ports, order of start.

What a service's code needs is derived from the code itself where possible: its command's
entry modules, the kit modules they import (followed statically, tests/compose/model.py), the
settings of common/settings.py and the topics of queue/topics.toml.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from buffer import topics
from common import settings as settings_module
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
#: What stopping ``python -m processing`` may take besides the running batches' end and a store
#: connection's retries (processing.runner.run_jobs): the health publisher's close (up to 5 s),
#: the queries' stops and Spark's own.
STOP_OVERHEAD_S = 15.0


def _setting_names() -> set[str]:
    return {settings_module.env_name(f) for f in settings_module._FIELDS}


def _service_env(name: str) -> dict[str, str]:
    return model.environment(SERVICES[name])


def _uses_cassandra(service: dict[str, Any]) -> bool:
    """The service's code can open a Cassandra store (storage.open_store("cassandra", ...))."""
    return model.service_closure(service).reaches("storage.cassandra")


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
    assert model.command(topics_service) == ["python", "-m", "buffer"]
    assert topics_service.get("restart") == "no"
    source = (model.ROOT / "buffer" / "__main__.py").read_text()
    assert re.search(r"create_topics\([^)]*\bALL\b", source), "python -m buffer no longer creates ALL"
    # The broker does not create topics on first use: each topic must exist before its users.
    assert model.environment(SERVICES["kafka"])["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for name, service in KIT.items():
        if name == "topics" or not model.service_closure(service).reaches("buffer.kafka"):
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
    users = [n for n, s in KIT.items() if model.service_closure(s).reaches("buffer.kafka")]
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


def test_spark_settings_fit_each_spark_container() -> None:
    # The kit's session starts Spark from these settings (processing.spark.session): the
    # services pass them as variables, never as spark-submit flags that could disagree.
    spark_services = model.spark_services()
    assert {"processing", "census"} <= set(spark_services)
    for name, service in spark_services.items():
        env = model.environment(service)
        assert {"SPARK_MASTER", "SPARK_DRIVER_MEMORY"} <= set(env), name
        settings = settings_module.load(environ=env)
        cores = re.fullmatch(r"local\[(\d+)\]", settings.spark_master)
        assert cores, f"{name}: local mode with a fixed core count, got {settings.spark_master}"
        cpus = float(service["deploy"]["resources"]["limits"]["cpus"])
        assert int(cores.group(1)) <= max(1.0, cpus), f"{name}: more Spark cores than its cpus limit"
        # os.cpu_count() in a container is the host's: the default would not match the limit.
        assert "SHUFFLE_PARTITIONS" in env, name
        assert settings.shuffle_partitions <= int(cores.group(1)), name


def test_a_sigterm_to_a_spark_container_reaches_the_python_driver_first() -> None:
    # Under `spark-submit x.py` the JVM is the command's process and Python its child: the JVM
    # exits on SIGTERM and the driver never stops its queries. `python -m ...` makes the driver
    # the process tini (init: true) signals; pyspark starts the JVM as the driver's child.
    image = model.dockerfile(model.ROOT / "processing" / "Dockerfile")
    assert not image.final.args("ENTRYPOINT"), "an ENTRYPOINT would run before the command"
    cmd = image.final.args("CMD")
    assert len(cmd) == 1 and json.loads(cmd[0])[:2] == ["python", "-m"], (
        f"processing/Dockerfile: CMD must run the Python driver (python -m ...), got {cmd}")
    for name, service in model.spark_services().items():
        args = model.command(service)
        assert args[:2] == ["python", "-m"], f"{name}: run the driver with python -m, got {args}"
        assert "entrypoint" not in service, f"{name}: an entrypoint would run before the command"
        assert service.get("init") is True, f"{name}: needs init (tini forwards SIGTERM, reaps)"
        assert "spark-submit" not in args, name
        assert "signal.SIGTERM" in model.service_closure(service).source(), (
            f"{name}: no SIGTERM handler in the driver's code: it would die without stopping")


def test_the_processing_service_has_time_to_stop_its_queries() -> None:
    from processing import supervisor

    service = SERVICES["processing"]
    settings = settings_module.load(environ=model.environment(service))
    grace = model.parse_duration(str(service.get("stop_grace_period", "10s")))
    # Running batches end (or are interrupted) within STOP_BETWEEN_BATCHES_S, but a query's
    # stop() waits for its batch's Python code, which may be retrying a Cassandra connection.
    needed = supervisor.STOP_BETWEEN_BATCHES_S + settings.cassandra_connect_timeout_s + STOP_OVERHEAD_S
    assert grace >= needed, (
        f"processing: stop_grace_period {grace:.0f} s < {needed:.0f} s it may need to stop cleanly")


def test_streaming_and_batch_jobs_are_all_run_by_the_stack() -> None:
    from processing import jobs
    from processing.runner import job_name

    streaming, batch = set(), set()
    for path in (model.ROOT / "processing").glob("*.py"):
        text = path.read_text()
        if re.search(r"^\s+sys\.exit\(run_job\(", text, re.M):
            streaming.add(path.stem)
        if re.search(r"^\s+sys\.exit\(run_batch_job\(", text, re.M):
            batch.add(path.stem)
    assert {"vmstat_windows", "census_stats"} <= streaming | batch
    assert model.command(SERVICES["processing"]) == ["python", "-m", "processing"]
    run = {job_name(start) for start in jobs.STREAMING_JOBS}
    assert streaming <= run, (
        f"streaming jobs the stack would not run (add them to processing.jobs.STREAMING_JOBS): "
        f"{sorted(streaming - run)}")
    batches = {job_name(run_batch) for run_batch in jobs.BATCH_JOBS}
    assert batch <= batches, sorted(batch - batches)
    census = model.command(SERVICES["census"])
    assert census == ["python", "-m", "processing.census_stats"] and "census_stats" in batch


def test_commands_name_modules_and_files_that_exist() -> None:
    for name, service in KIT.items():
        _, modules = model.entry_point(model.command(service))
        for module in modules:
            assert model.module_file(module), f"{name}: {module} does not exist"


def test_secrets_come_only_from_the_git_ignored_env_file() -> None:
    text = model.COMPOSE_FILE.read_text()
    for secret in SECRETS:
        # Named only to be set empty (x-no-cassandra-credentials): never with a value.
        for line in (line for line in text.splitlines() if secret in line):
            assert re.fullmatch(rf'\s*{secret}: ""', line) or line.lstrip().startswith("#"), (
                f"{secret} must come from .env, not docker-compose.yml: {line.strip()!r}")
    assert ".env" in (model.ROOT / ".gitignore").read_text().split()
    assert model.ignored_by_docker(".env"), ".env must stay out of the build context"
    example = _env_example()
    for secret in SECRETS:
        assert example.get(secret) == "", f".env.example must list {secret} with no value"
    for name, service in KIT.items():
        if _uses_cassandra(service):
            assert ".env" in _env_files(service), f"{name} needs the Cassandra credentials from .env"
    for name, service in SERVICES.items():
        if name not in KIT:
            assert not _env_files(service), f"{name} is not the kit's: .env is not for it"


def test_only_services_that_use_cassandra_get_its_credentials_and_address() -> None:
    users = {name for name, service in KIT.items() if _uses_cassandra(service)}
    assert {"processing", "census", "display"} <= users
    assert not users & {"topics", "sources", "ingest", "locust"}, users
    for name, service in KIT.items():
        env = model.environment(service)
        if name in users:
            # From .env (env_file), which an `environment:` entry would override.
            assert not set(SECRETS) & set(env), f"{name} uses Cassandra: its credentials come from .env"
            continue
        # Every kit service reads .env (its tunables); one that does not use Cassandra sets the
        # credentials empty, which wins over env_file: the secret never reaches it.
        assert ".env" in _env_files(service), name
        masked = {secret: env.get(secret) for secret in SECRETS}
        assert masked == dict.fromkeys(SECRETS, ""), (
            f"{name} does not use Cassandra: merge x-no-cassandra-credentials into its "
            f"environment (got {masked})")
        settings = settings_module.load(environ=env)
        assert settings.cassandra_username is None and settings.cassandra_password is None, name
        assert not settings.cassandra_configured(), f"{name} does not use Cassandra: no CASSANDRA_HOSTS"


def _env_files(service: dict[str, Any]) -> list[str]:
    entries = service.get("env_file") or []
    entries = [entries] if isinstance(entries, str | dict) else entries
    return [e["path"] if isinstance(e, dict) else e for e in entries]


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
        # The credentials are set empty on purpose where Cassandra is not used (see above).
        shadowed = (suggested - set(SECRETS)) & set(model.environment(service))
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


def test_nothing_long_running_waits_for_cassandra_to_be_healthy() -> None:
    # Cassandra takes 1-2 minutes to start. The display opens its store on first use and shows
    # the Cassandra demos as starting meanwhile; the Spark queries writing to Cassandra retry.
    for name, service in SERVICES.items():
        if service.get("restart") == "no" or name == "cassandra":
            continue
        waits = model.all_dependencies(name).get("cassandra", set())
        assert "service_healthy" not in waits, (
            f"{name} would wait for Cassandra's 1-2 minute start: use service_started")
    for name in ("processing", "display"):
        assert model.all_dependencies(name).get("cassandra") == {"service_started"}, (
            f"{name} uses Cassandra: list it (service_started), so `up {name}` starts it")
    # The census batch job runs once to fill Cassandra and has no query to retry.
    assert model.depends_on(SERVICES["census"]).get("cassandra") == "service_healthy"


def test_the_health_checks_test_the_real_service() -> None:
    assert "kafka-broker-api-versions.sh" in " ".join(SERVICES["kafka"]["healthcheck"]["test"])
    assert "cqlsh" in " ".join(SERVICES["cassandra"]["healthcheck"]["test"])
    cassandra_volumes = {str(v).split(":")[1] for v in SERVICES["cassandra"]["volumes"]}
    assert "/var/lib/cassandra" in cassandra_volumes
