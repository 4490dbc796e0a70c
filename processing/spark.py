"""The Spark session and the one Kafka reader every job uses.

``read_kafka`` returns a DataFrame with the schema of Spark's ``kafka`` source,
fed by Spark's JVM connector when its jar is on the classpath (the compose
image lists the connector's jars, resolved at build time, in ``spark.jars``) and
by the kit's Python data source otherwise. It logs which. Jobs never branch on it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

from pyspark.sql import DataFrame, SparkSession

from common.settings import Settings

__all__ = ["jvm_class_exists", "jvm_kafka_available", "read_kafka", "session"]

log = logging.getLogger(__name__)

_JVM_PROVIDER = "org.apache.spark.sql.kafka010.KafkaSourceProvider"
#: Generated classes Spark keeps compiled (its default: 100). See session().
CODEGEN_CACHE_ENTRIES = 500
#: Checkpoint and state files through Hadoop's FileSystem API rather than its FileContext
#: API (Spark's default), first name as of Spark 4.1, second before it. See session().
_FILESYSTEM_CHECKPOINTS = (
    "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager",
    "org.apache.spark.sql.execution.streaming.FileSystemBasedCheckpointFileManager",
)


def session(settings: Settings, app_name: str) -> SparkSession:
    """A Spark session sized for a small machine (or the one ``spark-submit`` already made).

    Measured on 2 cores: ``spark.sql.shuffle.partitions=200`` (Spark's default)
    puts a 1 s trigger 14 s behind; 2 keeps up. The UI and console progress
    bars are off (they cost latency), the session time zone is UTC, and the
    driver heap is capped (1 GB with SerialGC: about 0.46 GB resident).

    Checkpoints are written through Hadoop's FileSystem API. Spark's default
    (FileContext) makes Hadoop, without its native library (pyspark ships none),
    start a ``readlink`` process for every rename and a ``chmod`` for every file:
    measured, 41 processes per micro-batch of one windowed query, 8 with this
    (the ``chmod`` remain), and the offset and commit log writes of a batch took
    111 ms instead of 33. A rename on a local disk is atomic either way.

    The cache of generated code holds CODEGEN_CACHE_ENTRIES classes instead of 100:
    the stack's six queries compiled about 7 classes a second with 100 (each query
    alone: 1 a batch, its watermark predicate), 1.2 with 500. Under the e2e benchmark:
    the JVM 0.86 -> 0.70 cores (its JIT compiler 0.26 -> 0.18), load average 4.7 ->
    2.3, e2e p50 / p95 2.1 / 5.7 -> 1.5 / 3.3 s.
    """
    # Python workers must run the interpreter the kit is installed in.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        # Not under spark-submit (whose --master and --driver-memory must win): set them here.
        builder = (
            builder.master(settings.spark_master)
            .config("spark.driver.memory", settings.spark_driver_memory)
            .config("spark.driver.extraJavaOptions",
                    f"-XX:+UseSerialGC -Xss4m -Dderby.system.home={settings.data_dir / 'derby'}")
        )
    builder = (
        builder.config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        .config("spark.default.parallelism", str(settings.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.streaming.metricsEnabled", "true")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.streaming.noDataMicroBatches.enabled", "true")
        .config("spark.python.worker.reuse", "true")
        # Spark keeps 100 generated classes; the kit's queries use more (about 150 at
        # start-up), so every batch compiled again what another query's batch had evicted.
        .config("spark.sql.codegen.cache.maxEntries", str(CODEGEN_CACHE_ENTRIES))
        # A Python worker that starts slowly on a busy 2-core machine must not fail the query
        # ("Python worker failed to connect back" after the default 15 s).
        .config("spark.python.authenticate.socketTimeout", "120s")
        .config("spark.sql.warehouse.dir", str(settings.data_dir / "spark-warehouse"))
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN" if settings.log_level != "debug" else "INFO")
    manager = next((name for name in _FILESYSTEM_CHECKPOINTS if jvm_class_exists(spark, name)), None)
    if manager is None:
        log.warning("no FileSystem-based checkpoint manager in this Spark: keeping its default")
    else:
        spark.conf.set("spark.sql.streaming.checkpointFileManagerClass", manager)
    return spark


def jvm_class_exists(spark: SparkSession, name: str) -> bool:
    """True when the class ``name`` is on the driver's classpath."""
    try:
        loader = spark._jvm.java.lang.Thread.currentThread().getContextClassLoader()  # type: ignore[union-attr]
        loader.loadClass(name)
        return True
    except Exception:  # noqa: BLE001 - py4j raises Py4JJavaError wrapping ClassNotFoundException
        return False


def jvm_kafka_available(spark: SparkSession) -> bool:
    """True when Spark's own Kafka connector is on the driver's classpath."""
    return jvm_class_exists(spark, _JVM_PROVIDER)


_registered: set[int] = set()


def _register_python_source(spark: SparkSession) -> None:
    """Register the kit's Kafka data source once per Spark session."""
    from processing.kafka_source import KafkaDataSource

    if id(spark) not in _registered:
        spark.dataSource.register(KafkaDataSource)
        _registered.add(id(spark))


def kafka_format(spark: SparkSession, settings: Settings) -> str:
    """The format name to read Kafka with, per ``KAFKA_SOURCE``; logs the choice once."""
    from processing.kafka_source import FORMAT_NAME

    choice = settings.kafka_source
    if choice == "auto":
        choice = "jvm" if jvm_kafka_available(spark) else "python"
    elif choice == "jvm" and not jvm_kafka_available(spark):
        raise RuntimeError(
            "KAFKA_SOURCE=jvm but Spark's Kafka connector is not on the classpath: pass "
            "--packages org.apache.spark:spark-sql-kafka-0-10_2.13:<spark version> to "
            "spark-submit, or set KAFKA_SOURCE=auto"
        )
    first = id(spark) not in _registered and id(spark) not in _announced
    _announced.add(id(spark))
    if choice == "jvm":
        if first:
            log.info("reading Kafka with Spark's JVM connector (format kafka)")
        return "kafka"
    _register_python_source(spark)
    if first:
        log.info("reading Kafka with the kit's Python data source (format %s)", FORMAT_NAME)
    return FORMAT_NAME


_announced: set[int] = set()


def read_kafka(
    spark: SparkSession,
    settings: Settings,
    topics: Iterable[str],
    bootstrap: str,
    starting_offsets: str = "latest",
    fail_on_data_loss: bool = True,
    max_offsets_per_trigger: int | None = None,
    max_read_tasks: int | None = None,
) -> DataFrame:
    """A streaming DataFrame of Kafka records (schema of Spark's ``kafka`` source).

    ``max_read_tasks``: most read tasks of a large batch (the kit's Python source only);
    default one per core (``SHUFFLE_PARTITIONS``). A background query passes 1, so its
    batches leave a task slot to the 1 s query.
    """
    limit = settings.max_offsets_per_trigger if max_offsets_per_trigger is None else max_offsets_per_trigger
    fmt = kafka_format(spark, settings)
    reader = (
        spark.readStream.format(fmt)
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", starting_offsets)
        .option("failOnDataLoss", str(fail_on_data_loss).lower())
    )
    if limit:
        reader = reader.option("maxOffsetsPerTrigger", str(limit))
    if fmt != "kafka":  # large batches may be read by one task per core
        reader = reader.option("maxReadTasks", str(max_read_tasks or settings.shuffle_partitions))
    return reader.load()
