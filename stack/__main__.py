"""The whole stream on one machine: ``python -m stack`` (what ``make run`` does).

Starts, in order: the embedded Apache Kafka broker (unless KAFKA_BOOTSTRAP_SERVERS
is set), the display server, one Spark application running every streaming job,
the live sources once its first query has started, the local Apache Cassandra node
once its first windows are out (unless CASSANDRA=off or CASSANDRA_HOSTS is set;
nothing waits for it: the Cassandra demos fill in once it answers), and the
case-report ingest (with Locust) once every query has. Prints the URL, shows
progress while Spark starts, then a one-line health summary every few seconds.
A stage that dies is started again after a backoff (stack.supervisor); one that
keeps dying stops the stack. Ctrl-C stops everything it started, the stages newest
first, then Cassandra and the broker; logs stay in DATA_DIR/logs/, and the broker's data, the
Spark checkpoints and the stores stay in DATA_DIR for the next start.

``python -m stack --cluster`` (``make cluster``) runs Kafka, Cassandra and Spark as clusters
of three nodes on loopback aliases instead (:mod:`stack.cluster`); the stages are the same.

Every setting can be given as a flag (``python -m stack --display-port 8080``)
or an environment variable (``DISPLAY_PORT=8080 make run``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from buffer import topics
from common import cli, messages
from common import settings as settings_module
from common.jvm import JvmError
from common.records import format_time, utc_now
from common.settings import Settings
from stack.supervisor import Child, GaveUp, Supervisor, become_subreaper

log = logging.getLogger("stack")


class Progress:
    """Prints on one updating line in a terminal, on separate lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self._last = ""

    def show(self, text: str) -> None:
        if self.tty:
            sys.stdout.write("\r\033[K" + text)
            sys.stdout.flush()
        elif text != self._last:
            print(text, flush=True)
        self._last = text

    def done(self, text: str) -> None:
        if self.tty:
            sys.stdout.write("\r\033[K")
        print(text, flush=True)
        self._last = ""


def broker_health(cpu_cores: float, uptime_s: float) -> str:
    """The embedded broker's part of the health line, e.g. ``broker 14% CPU, up 8 min``."""
    return f"broker {cpu_cores * 100:.0f}% CPU, up {uptime_s / 60:.0f} min"


class BrokerMeter:
    """CPU of the embedded broker's process between two calls (a share of one core)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self._started = time.monotonic()
        self._last = (self._started, self._cpu())

    def _cpu(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def read(self) -> str:
        now, cpu = time.monotonic(), self._cpu()
        then, before = self._last
        self._last = (now, cpu)
        return broker_health((cpu - before) / max(now - then, 1e-3), now - self._started)


class HealthWatcher:
    """Follows the ``health`` topic from its end, keeping the latest message per query/source."""

    def __init__(self, bootstrap: str) -> None:
        from buffer import kafka

        self._consumer = kafka.follower(bootstrap, 250)
        probe = kafka.offset_probe(bootstrap)
        self._consumer.assign(kafka.positions(probe, [topics.HEALTH.name])[topics.HEALTH.name])
        probe.close()
        self.ready_queries: list[str] | None = None
        self.first_query: str | None = None  # the first query Spark started
        self.queries: dict[str, messages.QueryProgress] = {}
        self.sources: dict[str, messages.SourceProgress] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="health")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.5)
            if msg is None or msg.error() or msg.value() is None:
                continue
            try:
                value = messages.decode_health(msg.value() or b"")
            except messages.MessageError as e:
                log.debug("%s", e)
                continue
            if isinstance(value, messages.Ready):
                self.ready_queries = list(value.queries)
            elif isinstance(value, messages.QueryStarted) and self.first_query is None:
                self.first_query = value.query
            elif isinstance(value, messages.QueryProgress):
                self.queries[value.query] = value
            elif isinstance(value, messages.SourceProgress):
                self.sources[value.source] = value

    def summary(self) -> str:
        rate_in = sum(s.rate for s in self.sources.values())
        lag = sum(q.lag or 0 for q in self.queries.values())
        late = sum(q.late_rows for q in self.queries.values())
        batch = max((q.batch_ms or 0 for q in self.queries.values()), default=0)
        rejected = sum(s.rejected for s in self.sources.values())
        return (f"sources {rate_in:,.0f} rec/s (rejected {rejected}) | {len(self.queries)} queries, "
                f"lag {lag:,}, slowest batch {batch} ms, late rows {late}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._consumer.close()


class StagePublisher:
    """Publishes the stages' states (running, restarting, restarts) to the ``health`` topic.

    The display server shows them on its index and in /metrics. Sent every 5 s and at
    once after an exit or a restart; while the broker is down the producer keeps them
    and sends them when it is back.
    """

    EVERY_S = 5.0

    def __init__(self, bootstrap: str) -> None:
        from buffer import kafka

        self._publisher = kafka.JsonPublisher(bootstrap)
        self._last = 0.0

    def publish(self, states: list[dict[str, Any]], changed: bool = False) -> None:
        now = time.monotonic()
        if not changed and now - self._last < self.EVERY_S:
            return
        self._last = now
        self._publisher.publish(topics.HEALTH.name, messages.StackStages(
            component="stack", time=format_time(utc_now()),
            stages=msgspec.convert(states, list[messages.StageState])))

    def close(self) -> None:
        try:
            self._publisher.close()
        except Exception:
            log.debug("closing the stage publisher failed", exc_info=True)


class CassandraWatch:
    """Marks the Cassandra node's child ready once CQL answers and the kit's schema exists.

    Runs beside the stack's loop (the disk demos never wait for it) and again after each
    restart of the node. The keyspace and tables are created here, once the node answers,
    so that the display server (which only reads) finds them; the jobs' stores create
    them too if missing (``CREATE ... IF NOT EXISTS``), whoever comes first.
    """

    def __init__(self, node: Any, child: Child, settings: Settings) -> None:
        self.node = node
        self.child = child
        self.settings = settings
        self.events: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cassandra-watch")
        self._thread.start()

    def _run(self) -> None:
        from storage import open_store
        from storage.base import StoreError

        while not self._stop.wait(0.5):
            child = self.child
            if child.ready or child.exit_code is not None or child.process is None:
                continue
            if not self.node.answers():
                continue
            try:
                open_store("cassandra", self.settings).close()
            except StoreError as e:
                log.warning("Cassandra answers but creating the kit's schema failed: %s", e)
                continue
            child.ready = True
            with self._lock:
                self.events.append(
                    f"Cassandra: ready at {self.node.address} after "
                    f"{time.monotonic() - child.started_at:.0f} s (log {self.node.log_path})")

    def take_events(self) -> list[str]:
        with self._lock:
            events, self.events = self.events, []
        return events

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


ROOT = Path(__file__).resolve().parent.parent
#: The local Cassandra node starts with Spark's first progress report, or after this long.
CASSANDRA_START_AFTER_S = 90.0


def wait_for_http(url: str, child: Child, timeout_s: float = 30.0) -> None:
    """Wait until ``url`` answers 200, failing early if ``child`` exits."""
    import urllib.request

    from common.waiting import eventually

    def up() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def alive() -> None:
        if child.exit_code is not None:
            raise RuntimeError(f"{child.name} exited with code {child.exit_code}:\n{child.log_tail()}")

    eventually(up, timeout_s, f"{child.name} at {url}", interval_s=0.1, check=alive)


def child_env(settings: Settings, bootstrap: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATA_DIR": str(settings.data_dir.resolve()),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "PYTHONUNBUFFERED": "1",
    })
    # Flags given to `python -m stack` reach the children as environment variables.
    for name, value in settings.redacted().items():
        if name == "cassandra_password":
            value = settings.cassandra_password
        if value is None or name == "kafka_bootstrap_servers" or name == "data_dir":
            continue
        if isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        env[settings_module.env_name(name)] = str(value)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = settings_module.argument_parser(__doc__ or "")
    parser.add_argument("--no-spark", action="store_true", help="start everything but the Spark jobs")
    parser.add_argument("--cluster", action="store_true",
                        help="run Kafka, Cassandra and Spark (or those of CLUSTER_ENGINES) as "
                             "clusters of three nodes on the addresses of CLUSTER_HOSTS "
                             "(stack.cluster)")
    args, settings = cli.start(parser, argv)
    progress = Progress()
    settings.log_dir.mkdir(parents=True, exist_ok=True)

    stopping = threading.Event()
    cli.on_stop(lambda _signum: stopping.set())

    become_subreaper()
    supervisor = Supervisor()
    watcher: HealthWatcher | None = None
    stages: StagePublisher | None = None
    cassandra_watch: CassandraWatch | None = None
    cassandra_child: Child | None = None
    cluster = None
    try:
        if args.cluster:
            from stack.cluster import Cluster

            cluster = Cluster(settings, supervisor, stopping)
            progress.show(f"starting the cluster: {cluster.title()} ...")
            settings = cluster.start(progress.done)
            cluster.watch()
        if settings.embedded_broker:
            from buffer.broker import EmbeddedBroker

            broker = EmbeddedBroker.from_settings(settings)
            progress.show("starting the embedded Apache Kafka broker ...")
            try:
                argv = broker.prepare()
                kafka_child = supervisor.start(Child("kafka", argv, broker.log_path,
                                                     dict(os.environ), service=True))
                broker.wait_ready(lambda: kafka_child.exit_code)
            except JvmError as e:
                progress.done(f"error: {e}")
                return 1
            bootstrap = broker.bootstrap
            progress.done(f"Kafka: embedded Apache Kafka at {bootstrap} (data {broker.data_dir}; "
                          f"log {broker.log_path})")
        else:
            from buffer import kafka

            bootstrap = str(settings.kafka_bootstrap_servers)
            kafka.wait_until_ready(bootstrap, settings.broker_ready_timeout_s)
            created = kafka.create_topics(
                bootstrap, topics.ALL, replication_factor=settings.kafka_replication_factor,
                min_insync_replicas=settings.kafka_min_insync_replicas)
            progress.done(f"Kafka: {bootstrap} (created topics: {', '.join(created) or 'none'})")

        if settings.embedded_cassandra:
            from storage.cassandra_node import CassandraNode

            node = CassandraNode.from_settings(settings)
            try:
                node_argv = node.prepare()
            except JvmError as e:
                progress.done(f"error: {e}")
                return 1
            # Started once Spark's first windows are out (below): its JVM's start (about 25
            # CPU-seconds) beside Spark's on 2 cores put the first disk window 10 s later
            # (30 s instead of 20 s, bench/e2e_latency.py).
            cassandra_child = Child("cassandra", node_argv, node.log_path, dict(os.environ),
                                    service=True, needs_ready=True)
            settings = dataclasses.replace(settings, cassandra_hosts=(node.host,),
                                           cassandra_port=node.port)
            cassandra_watch = CassandraWatch(node, cassandra_child, settings)
            progress.done(f"Cassandra: a local Apache Cassandra node at {node.address} (heap "
                          f"{node.heap}; data {node.data_dir}; log {node.log_path}), started "
                          "once Spark's first windows are out; the Cassandra demos fill in "
                          "once it answers")
        elif settings.cassandra_hosts:
            progress.done(f"Cassandra: {','.join(settings.cassandra_hosts)} port "
                          f"{settings.cassandra_port}")
        else:
            progress.done("Cassandra: off (CASSANDRA=off); /demo3, /demo6 and /demo8 say so")

        stages = StagePublisher(bootstrap)
        watcher = HealthWatcher(bootstrap)
        env = child_env(settings, bootstrap)
        py = sys.executable
        logs = settings.log_dir
        supervisor.start(Child("display", [py, "-m", "display"], logs / "display.log", env))

        def start_live_sources() -> None:
            supervisor.start(Child("input", [py, "-m", "input"], logs / "input.log", env))

        def start_case_reports() -> None:
            ingest = supervisor.start(Child("ingest", [py, "-m", "input.ingest"],
                                            logs / "ingest.log", env))
            if settings.cases_users > 0:
                wait_for_http(f"http://{settings.ingest_host}:{settings.ingest_port}/healthz",
                              ingest)
                users = str(settings.cases_users)
                supervisor.start(Child("locust", [
                    py, "-m", "locust", "-f", str(ROOT / "input" / "traffic.py"), "--headless",
                    "-u", users, "-r", users, "--host",
                    f"http://{settings.ingest_host}:{settings.ingest_port}", "--stop-timeout", "5",
                    "--only-summary"], logs / "locust.log", env))

        # Spark first. The live sources (one light process) start once Spark's first query,
        # the 1 s host-metrics one, has started: its windows reach a page about 20 s sooner.
        # The HTTP ingest and Locust (the heaviest to start) wait until every query has: each
        # query starts a Python reader that has only 10 s to connect back to the JVM, and a
        # busy machine makes it miss that (connect-back failures in CI, retried by
        # processing.supervisor.QuerySupervisor).
        live_started = cases_started = args.no_spark
        if args.no_spark:
            start_live_sources()
            start_case_reports()
        else:
            jobs = (cluster.submit_argv() if cluster and cluster.workers
                    else [py, "-m", "processing"])
            supervisor.start(Child("processing", jobs, logs / "processing.log", env))
        url = f"http://{settings.display_host}:{settings.display_port}/"
        progress.done(f"Display: {url}  (logs in {logs}/; Ctrl-C stops everything)")

        started = time.monotonic()
        announced = args.no_spark
        last_summary = 0.0
        def kafka_meter() -> BrokerMeter | None:
            """The embedded broker's CPU meter (None with an external broker)."""
            for child in supervisor.children:
                if child.name == "kafka" and child.process is not None and child.exit_code is None:
                    return BrokerMeter(child.process.pid)
            return None

        meter = kafka_meter()
        while not stopping.is_set():
            events = supervisor.poll()  # raises GaveUp for a stage that keeps failing
            if cassandra_watch is not None:
                events += cassandra_watch.take_events()
            for event in events:
                progress.done(event)
                if event.startswith("kafka restarted"):
                    meter = kafka_meter()
            stages.publish(supervisor.states(), changed=bool(events))
            now = time.monotonic()
            if not live_started and (watcher.first_query or watcher.ready_queries is not None):
                live_started = True
                start_live_sources()
                progress.done(f"Spark: first query ({watcher.first_query}) started after "
                              f"{now - started:.0f} s; live sources started")
            if not cases_started and watcher.ready_queries is not None:
                cases_started = True
                start_case_reports()
                progress.done(f"Spark: {len(watcher.ready_queries)} streaming queries started "
                              f"after {now - started:.0f} s; case-report ingest started")
            if cassandra_child is not None and cassandra_child.process is None and (
                    announced or now - started > CASSANDRA_START_AFTER_S):
                supervisor.start(cassandra_child)
                progress.done(f"Cassandra: starting the local node after {now - started:.0f} s")
            if not announced:
                if watcher.queries:
                    announced = True
                    progress.done(f"Spark: first progress reports after {now - started:.0f} s")
                else:
                    stage = ("sources started, waiting for the first batches"
                             if watcher.ready_queries is not None
                             else "the first query's first batch, then the other queries"
                             if live_started else "starting the JVM, the session and the first query")
                    progress.show(f"Spark: {stage} ... {now - started:.0f} s")
            elif now - last_summary >= 5:
                last_summary = now
                line = watcher.summary()
                if meter is not None:
                    try:
                        line += " | " + meter.read()
                    except Exception:  # noqa: BLE001 - the broker's end is reported elsewhere
                        meter = None
                progress.show(line)
            stopping.wait(0.5)
        progress.done("stopping ...")
        return 0
    except GaveUp as e:
        progress.done(f"error: {e}\nstopping everything.")
        return 1
    except (RuntimeError, TimeoutError) as e:  # a child that failed to start, a broker gone
        progress.done(f"error: {e}")
        return 1
    finally:
        if cluster is not None:
            cluster.close()
        if cassandra_watch is not None:
            cassandra_watch.close()
        if watcher is not None:
            watcher.close()
        if stages is not None:
            stages.close()
        supervisor.stop_all()
        if supervisor.children:
            print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
