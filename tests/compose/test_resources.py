"""Restart policies and memory limits: the whole stack fits a laptop with 8 GB of memory."""

from __future__ import annotations

import re

from common import settings as settings_module
from tests.compose import model

GIB = 1 << 30
MIB = 1 << 20
#: An 8 GB laptop, less what its operating system and Docker itself need.
LAPTOP = 8 * GIB
RESERVED_FOR_THE_HOST = 1 * GIB
#: Share of a JVM container's limit its heap may take: the rest is metaspace, code cache,
#: thread stacks, direct buffers, the health check's own JVM and (Spark) the Python driver.
MAX_HEAP_SHARE = 0.6

SERVICES = model.services()


def _one_shot(name: str) -> bool:
    waited_for = any(model.depends_on(s).get(name) == "service_completed_successfully"
                     for s in SERVICES.values())
    return waited_for or bool(SERVICES[name].get("profiles"))


def test_every_service_has_a_restart_policy_that_fits_its_role() -> None:
    long_running = []
    for name, service in SERVICES.items():
        policy = service.get("restart")
        assert policy, f"{name} has no restart policy"
        # `docker compose up` gives the engine only condition and max_attempts of
        # deploy.restart_policy (delay and window are Swarm's), and the engine counts
        # max_attempts over the container's life: see the comment atop docker-compose.yml.
        assert "restart_policy" not in (service.get("deploy") or {}), (
            f"{name}: use `restart:`; deploy.restart_policy cannot bound restarts in a time window "
            "under docker compose up (docker-compose.yml explains)")
        if _one_shot(name):
            assert policy == "no", f"{name} runs once: restart must be no, got {policy}"
        else:
            long_running.append(name)
            # unless-stopped: back after a crash and after Docker restarts (on-failure is not),
            # but not after `docker compose stop`.
            assert policy == "unless-stopped", (
                f"{name} must come back after a crash or a restart of Docker, got {policy}")
    assert {"kafka", "cassandra", "sources", "ingest", "locust", "processing", "display"} <= set(
        long_running)
    assert {"topics", "census"} <= set(SERVICES) - set(long_running)


def test_every_service_has_a_memory_limit_and_the_sum_fits_an_8_gb_laptop() -> None:
    limits = {name: model.memory_limit_bytes(s) for name, s in SERVICES.items()}
    unlimited = [name for name, limit in limits.items() if limit is None]
    assert not unlimited, f"no memory limit: {unlimited}"
    total = sum(limit or 0 for limit in limits.values())
    table = ", ".join(f"{n} {(v or 0) // MIB} MiB" for n, v in sorted(limits.items()))
    assert total <= LAPTOP - RESERVED_FOR_THE_HOST, (
        f"limits add up to {total / GIB:.2f} GiB (budget "
        f"{(LAPTOP - RESERVED_FOR_THE_HOST) / GIB:.0f} GiB): {table}")


def test_cpu_limits_are_set() -> None:
    for name, service in SERVICES.items():
        cpus = service["deploy"]["resources"]["limits"].get("cpus")
        assert cpus and 0 < float(cpus) <= 2, f"{name}: cpus limit {cpus}"


def _max_heap(opts: str) -> int:
    match = re.search(r"-Xmx(\d+[kmg])", opts, re.I)
    assert match, f"no -Xmx in {opts!r}"
    return model.parse_bytes(match.group(1))


def test_jvm_heaps_leave_room_inside_their_limits() -> None:
    heaps = {
        "kafka": _max_heap(model.environment(SERVICES["kafka"])["KAFKA_HEAP_OPTS"]),
        "cassandra": model.parse_bytes(model.environment(SERVICES["cassandra"])["MAX_HEAP_SIZE"]),
    }
    for name, service in model.spark_services().items():
        settings = settings_module.load(environ=model.environment(service))
        heaps[name] = model.parse_bytes(settings.spark_driver_memory)
        # Spark refuses a driver heap under 450 MiB (1.5 x its 300 MiB reserve).
        assert heaps[name] >= 512 * MIB, f"{name}: Spark needs at least 512m of heap"
    for name, heap in heaps.items():
        limit = model.memory_limit_bytes(SERVICES[name]) or 0
        assert heap <= MAX_HEAP_SHARE * limit, (
            f"{name}: heap {heap // MIB} MiB is more than {MAX_HEAP_SHARE:.0%} of its "
            f"{limit // MIB} MiB limit")


def test_cassandra_gets_only_the_heap_settings_its_garbage_collector_uses() -> None:
    # Cassandra 5.0 on the image's JDK 17 runs G1 (jvm17-server.options). cassandra-env.sh then
    # sizes the heap from MAX_HEAP_SIZE alone and ignores HEAP_NEWSIZE (it passes -Xmn only with
    # CMS, warning that it was "erroneously set"); an -Xmn with G1 stops it from starting.
    env = model.environment(SERVICES["cassandra"])
    assert "MAX_HEAP_SIZE" in env, "without it the heap is half of the host's memory, not the limit's"
    assert "HEAP_NEWSIZE" not in env, "HEAP_NEWSIZE is ignored under G1: drop it"
    assert "-Xmn" not in env.get("JVM_EXTRA_OPTS", ""), "cassandra-env.sh refuses -Xmn with G1"
    assert not re.search(r"-XX:\+Use(ConcMarkSweep|Serial|Parallel)GC", env.get("JVM_EXTRA_OPTS", "")), (
        "the heap settings assume the image's G1")
