"""The kit's settings: every environment variable, its default and its check, in one place.

Precedence is explicit: a CLI flag, then the environment, then the default.
Every entry point builds its parser with :func:`argument_parser`, which adds one
``--flag`` per setting (``DISPLAY_PORT`` -> ``--display-port``), and reads the
result with :func:`from_args`. Values are validated when loaded; a bad value
raises :class:`SettingsError` naming the setting, before anything starts.

Example::

    settings = load(environ={"DISPLAY_PORT": "8080"})
    settings.display_port  # 8080
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.nginx_format import LogFormat

__all__ = ["Settings", "SettingsError", "argument_parser", "from_args", "load"]


class SettingsError(ValueError):
    """A setting has a value the kit cannot use; the message names the setting."""


# -- parsers: each takes the raw string and returns the value or raises ValueError


def _str(raw: str) -> str:
    return raw.strip()


def _optional_str(raw: str) -> str | None:
    return raw.strip() or None


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _log_format(raw: str) -> str:
    """A preset name or an nginx log_format definition the traffic graph can use."""
    from common.nginx_format import check_usable, resolve

    check_usable(resolve(raw))  # LogFormatError is a ValueError: it names what is wrong
    return raw.strip()


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _jvm_size(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[1-9][0-9]*[kKmMgG]", value):
        raise ValueError("must be a JVM memory size such as 384m or 1g")
    return value


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("must not be empty")
    return Path(raw.strip()).expanduser()


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


#: The engines ``python -m stack --cluster`` can run as clusters (stack.cluster).
CLUSTER_ENGINES = ("kafka", "cassandra", "spark")


def _engines(raw: str) -> tuple[str, ...]:
    chosen = _csv(raw.lower())
    unknown = sorted(set(chosen) - set(CLUSTER_ENGINES))
    if unknown or not chosen:
        raise ValueError(f"must name one or more of {', '.join(CLUSTER_ENGINES)}, comma "
                         f"separated (got {raw!r})")
    return tuple(e for e in CLUSTER_ENGINES if e in chosen)


def _bins(raw: str) -> tuple[float, ...]:
    edges = tuple(float(part) for part in raw.split(",") if part.strip())
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError("must be at least two increasing numbers, comma separated")
    return edges


def _default_shuffle_partitions() -> str:
    return str(min(4, max(1, os.cpu_count() or 1)))


def setting(env: str, default: str | None, parse: Callable[[str], Any], help: str) -> Any:
    """Declare a settings field: its environment name, raw default, parser and help."""
    return dataclasses.field(
        default=None, metadata={"env": env, "default": default, "parse": parse, "help": help}
    )


@dataclasses.dataclass(frozen=True)
class Settings:
    """All settings of the kit. Build with :func:`load` or :func:`from_args`, not directly."""

    # Kafka
    kafka_bootstrap_servers: str | None = setting(
        "KAFKA_BOOTSTRAP_SERVERS", None, _optional_str,
        "Kafka brokers, host:port[,host:port]. Unset: start the embedded broker.")
    broker_host: str = setting(
        "BROKER_HOST", "127.0.0.1", _str, "Address the embedded broker listens on.")
    broker_port: int = setting(
        "BROKER_PORT", "9092", _int_range(0, 65535), "Port of the embedded broker; 0 picks a free one.")
    broker_ready_timeout_s: float = setting(
        "BROKER_READY_TIMEOUT_S", "60", _positive_float,
        "How long to wait for the embedded broker to answer a Kafka client (it starts in "
        "3-10 s on 2 cores).")
    broker_heap: str = setting(
        "BROKER_HEAP", "384m", _str,
        "Java heap of the embedded Kafka broker (-Xmx), e.g. 384m or 1g.")
    kafka_replication_factor: int = setting(
        "KAFKA_REPLICATION_FACTOR", "1", _int_range(1, 16),
        "Copies of each partition of the kit's topics when the kit creates them (1 on one "
        "broker; `--cluster` makes it 3 unless set).")
    kafka_min_insync_replicas: int = setting(
        "KAFKA_MIN_INSYNC_REPLICAS", "1", _int_range(1, 16),
        "Replicas that must hold a record before an acks=all producer is told it is written "
        "(`--cluster` makes it 2 unless set: one broker may die without losing or refusing "
        "a write).")
    jars_dir: Path = setting(
        "JARS_DIR", str(Path(__file__).resolve().parent.parent / "jars"), _path,
        "Where `make setup` puts the JVM jars of queue/pom.xml (kafka/, spark/, cassandra/).")

    # `python -m stack --cluster`: every engine as a cluster on this machine (stack.cluster)
    cluster_hosts: tuple[str, ...] = setting(
        "CLUSTER_HOSTS", "127.0.0.2,127.0.0.3,127.0.0.4", _csv,
        "With --cluster: the addresses of the three 'machines' (loopback aliases on Linux); "
        "each runs a Kafka broker and a Cassandra node, the first the Spark master, the "
        "others a Spark worker each.")
    cluster_engines: tuple[str, ...] = setting(
        "CLUSTER_ENGINES", ",".join(CLUSTER_ENGINES), _engines,
        "With --cluster: which engines run as clusters (kafka, cassandra, spark); the others "
        "run single-node as in `make run`, so one engine's cluster can be measured alone.")
    spark_master_port: int = setting(
        "SPARK_MASTER_PORT", "7077", _int_range(0, 65535),
        "With --cluster: the Spark standalone master's port (0 picks a free one).")
    spark_worker_cores: int = setting(
        "SPARK_WORKER_CORES", "2", _int_range(1, 256),
        "With --cluster: task slots each Spark worker offers.")
    spark_executor_memory: str = setting(
        "SPARK_EXECUTOR_MEMORY", "768m", _jvm_size,
        "With --cluster: heap of each Spark executor (one per worker).")

    # Paths and logs
    data_dir: Path = setting(
        "DATA_DIR", "./data", _path, "Where stores, checkpoints, logs and archives live.")
    log_level: str = setting(
        "LOG_LEVEL", "INFO", _choice("debug", "info", "warning", "error"), "Log level.")

    # Display and ingest servers
    display_host: str = setting("DISPLAY_HOST", "127.0.0.1", _str, "Display server address.")
    display_port: int = setting("DISPLAY_PORT", "5000", _int_range(0, 65535), "Display server port.")
    display_threads: int = setting(
        "DISPLAY_THREADS", "300", _int_range(4, 10_000),
        "Threads of the display server: each connected Socket.IO client holds one.")
    display_fetch_ms: int = setting(
        "DISPLAY_FETCH_MS", "500", _int_range(1, 10_000),
        "Longest wait (ms) of the display server's fetch of a raw topic with no new record; "
        "a record that arrives ends the wait at once, so this costs no latency.")
    display_results_fetch_ms: int = setting(
        "DISPLAY_RESULTS_FETCH_MS", "500", _int_range(1, 10_000),
        "The same for the results, health and dead-letter topics, which the display server "
        "follows with a consumer of their own.")
    ingest_host: str = setting("INGEST_HOST", "127.0.0.1", _str, "HTTP ingest address.")
    ingest_port: int = setting("INGEST_PORT", "5001", _int_range(0, 65535), "HTTP ingest port.")
    ingest_max_body_bytes: int = setting(
        "INGEST_MAX_BODY_BYTES", "65536", _int_range(64, 16 * 1024 * 1024),
        "Largest request body the ingest accepts (larger: 413).")
    ingest_topics: tuple[str, ...] = setting(
        "INGEST_TOPICS", "cases", _csv, "Topics the ingest accepts, comma separated.")
    cors_origins: tuple[str, ...] = setting(
        "CORS_ORIGINS", "", _csv,
        "Extra origins allowed to open Socket.IO connections, comma separated (same origin "
        "is always allowed).")

    # Spark
    spark_master: str = setting("SPARK_MASTER", "local[2]", _str, "Spark master URL.")
    spark_driver_memory: str = setting("SPARK_DRIVER_MEMORY", "1g", _str, "Spark driver heap.")
    shuffle_partitions: int = setting(
        "SHUFFLE_PARTITIONS", _default_shuffle_partitions(), _int_range(1, 10_000),
        "spark.sql.shuffle.partitions (Spark's 200 makes a 1 s trigger fall far behind on 2 cores).")
    trigger_seconds: float = setting(
        "TRIGGER_SECONDS", "1", _non_negative_float,
        "Micro-batch trigger interval in seconds (0: as fast as possible).")
    other_trigger_seconds: float = setting(
        "OTHER_TRIGGER_SECONDS", "10", _non_negative_float,
        "Trigger interval of every streaming query but the host-metrics tumbling windows "
        "(TRIGGER_SECONDS): on 2 cores every micro-batch costs about a core-second, and at 5 s "
        "the queries kept both cores busy (see docs/benchmark-history.md).")
    watermark_seconds: float = setting(
        "WATERMARK_SECONDS", "10", _non_negative_float,
        "How late an event may arrive (event time) and still be counted in its window.")
    window_seconds: int = setting(
        "WINDOW_SECONDS", "10", _int_range(1, 86_400), "Tumbling window length.")
    sliding_window_seconds: int = setting(
        "SLIDING_WINDOW_SECONDS", "60", _int_range(1, 86_400), "Sliding window length.")
    slide_seconds: int = setting(
        "SLIDE_SECONDS", "10", _int_range(1, 86_400), "Sliding window slide.")
    spark_scheduler: str = setting(
        "SPARK_SCHEDULER", "fair", _choice("fair", "fifo"),
        "How the one Spark application shares its cores among its queries: fair (the "
        "host-metrics windows' batches first, processing/fairscheduler.xml) or fifo (Spark's "
        "default: a batch waits behind the tasks of every job submitted before it).")
    max_offsets_per_trigger: int = setting(
        "MAX_OFFSETS_PER_TRIGGER", "250000", _int_range(0, 1_000_000_000),
        "Most records a micro-batch reads (0: no limit).")
    archive_trigger_seconds: float = setting(
        "ARCHIVE_TRIGGER_SECONDS", "30", _positive_float,
        "How often the raw archive writes Parquet files (longer: fewer, larger files).")
    sink: str | None = setting(
        "SINK", None, lambda raw: _choice("disk", "cassandra")(raw) if raw.strip() else None,
        "Store a job writes to: disk or cassandra; unset: the store the demo catalogue names.")
    random_bins: tuple[float, ...] = setting(
        "RANDOM_BINS", "-4,-3,-2,-1,0,1,2,3,4", _bins,
        "Histogram bin edges for the random-number job.")

    # Storage
    retention_hours: float = setting(
        "RETENTION_HOURS", "24", _positive_float, "Windows older than this are deleted (TTL).")
    cassandra: bool = setting(
        "CASSANDRA", "on", _bool,
        "Run the Cassandra demos: on (the default) starts a local Cassandra node in `make run` "
        "when CASSANDRA_HOSTS is unset; off skips Cassandra (less memory; /demo3, /demo6 and "
        "/demo8 then say so).")
    cassandra_hosts: tuple[str, ...] = setting(
        "CASSANDRA_HOSTS", "", _csv,
        "Cassandra contact points of a server elsewhere (the stack then starts no node); unset: "
        "the stack's own node when CASSANDRA is on.")
    cassandra_port: int = setting(
        "CASSANDRA_PORT", "9042", _int_range(0, 65535),
        "Cassandra's CQL port (0: the local node picks a free one).")
    cassandra_heap: str = setting(
        "CASSANDRA_HEAP", "512m", _jvm_size,
        "Heap of the local Cassandra node (its resident size is about 400 MiB more).")
    cassandra_ready_timeout_s: float = setting(
        "CASSANDRA_READY_TIMEOUT_S", "180", _positive_float,
        "How long the local Cassandra node may take to answer CQL.")
    cassandra_keyspace: str = setting(
        "CASSANDRA_KEYSPACE", "streamkit", _str, "Keyspace the kit creates and uses.")
    cassandra_replication: str = setting(
        "CASSANDRA_REPLICATION", "{'class': 'SimpleStrategy', 'replication_factor': 1}", _str,
        "Replication map of the keyspace, in CQL.")
    cassandra_username: str | None = setting(
        "CASSANDRA_USERNAME", None, _optional_str, "Cassandra user (optional).")
    cassandra_password: str | None = setting(
        "CASSANDRA_PASSWORD", None, _optional_str, "Cassandra password (optional; never logged).")
    cassandra_local_dc: str | None = setting(
        "CASSANDRA_LOCAL_DC", None, _optional_str, "Local datacenter for the load balancing policy.")
    cassandra_tls: bool = setting(
        "CASSANDRA_TLS", "false", _bool,
        "Connect to Cassandra over TLS (needed wherever CASSANDRA_PASSWORD crosses a network).")
    cassandra_tls_ca_file: Path | None = setting(
        "CASSANDRA_TLS_CA_FILE", None, lambda raw: _path(raw) if raw.strip() else None,
        "CA certificate(s) (PEM) that sign Cassandra's certificate; unset: the system's CAs.")
    cassandra_connect_timeout_s: float = setting(
        "CASSANDRA_CONNECT_TIMEOUT_S", "60", _positive_float,
        "How long to retry connecting to Cassandra at start.")

    # Sources
    vmstat_interval_s: float = setting(
        "VMSTAT_INTERVAL_S", "1", _positive_float, "Seconds between host metric samples.")
    random_rate: float = setting(
        "RANDOM_RATE", "20", _positive_float, "Random numbers per second.")
    random_distribution: str = setting(
        "RANDOM_DISTRIBUTION", "normal", _choice("uniform", "normal", "exponential"),
        "Distribution of the random numbers.")
    random_params: tuple[float, ...] = setting(
        "RANDOM_PARAMS", "", lambda raw: tuple(float(p) for p in _csv(raw)),
        "Distribution parameters: uniform low,high; normal mean,stddev; exponential rate.")
    random_seed: int | None = setting(
        "RANDOM_SEED", None, lambda raw: int(raw) if raw.strip() else None, "Seed (unset: random).")
    nginx_log_path: Path | None = setting(
        "NGINX_LOG_PATH", None, lambda raw: _path(raw) if raw.strip() else None,
        "Access log to follow (tail -F); unset: the live demo (a real nginx on loopback if "
        "installed, else the shipped recording replayed with re-timed events).")
    nginx_demo_rate: float = setting(
        "NGINX_DEMO_RATE", "5", _non_negative_float,
        "Requests per second the NGINX demo sends to its nginx (loopback only).")
    nginx_log_format: str = setting(
        "NGINX_LOG_FORMAT", "upstream", _log_format,
        "Access log format: a preset (combined, upstream = combined plus upstream fields, "
        "common) or the site's nginx log_format definition, e.g. "
        "'$remote_addr [$time_local] \"$request\" $status'.")
    nginx_conf: Path | None = setting(
        "NGINX_CONF", None, lambda raw: _path(raw) if raw.strip() else None,
        "The site's nginx.conf: the log format is read from it (includes followed): the one "
        "named by NGINX_LOG_FORMAT_NAME, else the one the access_log of NGINX_LOG_PATH uses.")
    nginx_log_format_name: str | None = setting(
        "NGINX_LOG_FORMAT_NAME", None, _optional_str,
        "With NGINX_CONF: the log_format to read from it.")
    nginx_replay_speed: float = setting(
        "NGINX_REPLAY_SPEED", "10", _non_negative_float,
        "Replay speed factor for recorded logs (0: as fast as possible).")
    nginx_from_start: bool = setting(
        "NGINX_FROM_START", "false", _bool,
        "Follow the log from its first line instead of its end (first run only; the saved "
        "position wins after that).")
    nginx_service_map: tuple[str, ...] = setting(
        "NGINX_SERVICE_MAP", "/api/=api,/static/=static,/auth/=auth,/=web", _csv,
        "How a request's service is named: prefix=service pairs tried in order against the "
        "path, then the upstream address.")
    census_dir: Path = setting(
        "CENSUS_DIR", str(Path(__file__).resolve().parent.parent / "input" / "data" / "census"),
        _path, "Folder holding population.json and income.json (the census batch input).")
    census_replay_speed: float = setting(
        "CENSUS_REPLAY_SPEED", "20", _non_negative_float,
        "Census rows per second when replayed to the census topic (0: as fast as possible).")
    cases_users: int = setting(
        "CASES_USERS", "2", _int_range(0, 1000),
        "Locust users posting case reports in `make run` (0: none).")
    cases_rate: float = setting(
        "CASES_RATE", "5", _positive_float,
        "Case reports per second per Locust user in `make run`.")

    @property
    def embedded_broker(self) -> bool:
        """True when no external broker is configured and the kit starts its own."""
        return self.kafka_bootstrap_servers is None

    @property
    def checkpoint_dir(self) -> Path:
        return self.data_dir / "checkpoints"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "store.sqlite3"

    def cassandra_configured(self) -> bool:
        """True when the jobs and the display use Cassandra (a server at CASSANDRA_HOSTS)."""
        return bool(self.cassandra_hosts)

    def nginx_access_format(self, log_path: Path | None = None) -> LogFormat:
        """The access log's format: read from NGINX_CONF if set, else NGINX_LOG_FORMAT.

        With NGINX_CONF and no NGINX_LOG_FORMAT_NAME, the format is the one of the
        ``access_log`` that writes NGINX_LOG_PATH, else ``log_path`` (the file a command
        was given to read).

        Raises:
            LogFormatError (a ValueError): the conf or the format cannot be used; says why.
        """
        from common.nginx_format import check_usable, read_nginx_conf, resolve

        if self.nginx_conf is not None:
            return check_usable(read_nginx_conf(self.nginx_conf, self.nginx_log_format_name,
                                                self.nginx_log_path or log_path))
        return check_usable(resolve(self.nginx_log_format))

    @property
    def embedded_cassandra(self) -> bool:
        """True when the stack starts its own Cassandra node (CASSANDRA on, no CASSANDRA_HOSTS)."""
        return self.cassandra and not self.cassandra_hosts

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict safe to log: secrets replaced."""
        values = dataclasses.asdict(self)
        if values.get("cassandra_password"):
            values["cassandra_password"] = "***"
        return values


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def env_name(field_name: str) -> str:
    """The environment variable of a settings field (``display_port`` -> ``DISPLAY_PORT``)."""
    return str(_FIELDS[field_name].metadata["env"])


def load(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, str | None] | None = None
) -> Settings:
    """Read settings from ``overrides`` (raw strings by field name), then ``environ``, then defaults.

    Raises:
        SettingsError: a value does not parse; the message names the variable.
    """
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    values: dict[str, Any] = {}
    for name, field in _FIELDS.items():
        meta = field.metadata
        raw = overrides.get(name)
        source = f"--{name.replace('_', '-')}"
        if raw is None:
            raw = environ.get(meta["env"])
            source = meta["env"]
        if raw is None:
            raw = meta["default"]
            source = f"{meta['env']} (default)"
        if raw is None:
            values[name] = None
            continue
        try:
            values[name] = meta["parse"](raw)
        except ValueError as e:
            raise SettingsError(f"{source}={raw!r} is invalid: {e}") from e
    settings = Settings(**values)
    if settings.sliding_window_seconds % settings.slide_seconds:
        raise SettingsError(
            f"SLIDING_WINDOW_SECONDS={settings.sliding_window_seconds} must be a multiple of "
            f"SLIDE_SECONDS={settings.slide_seconds}"
        )
    if settings.slide_seconds % settings.window_seconds:
        raise SettingsError(
            f"SLIDE_SECONDS={settings.slide_seconds} must be a multiple of "
            f"WINDOW_SECONDS={settings.window_seconds}: the sliding host-metric windows are "
            "built from the tumbling ones"
        )
    if settings.nginx_log_format_name and settings.nginx_conf is None:
        raise SettingsError("NGINX_LOG_FORMAT_NAME names a format of NGINX_CONF, which is unset")
    return settings


def argument_parser(
    description: str, only: Sequence[str] | None = None, **kwargs: Any
) -> argparse.ArgumentParser:
    """A parser with one ``--flag`` per setting (all of them, or those named in ``only``).

    The flag's help names its environment variable and default, so ``--help`` documents both.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs
    )
    group = parser.add_argument_group("settings (flag, else environment variable, else default)")
    for name, field in _FIELDS.items():
        if only is not None and name not in only:
            continue
        meta = field.metadata
        default = meta["default"]
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"setting_{name}",
            metavar=meta["env"],
            default=None,
            help=f"{meta['help']} [env {meta['env']}, default {default if default else 'unset'}]",
        )
    return parser


def from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from a namespace parsed by :func:`argument_parser`."""
    overrides = {
        key.removeprefix("setting_"): value
        for key, value in vars(args).items()
        if key.startswith("setting_")
    }
    return load(environ, overrides)
