"""The Spark session and the one Kafka reader every job uses.

Every job reads Kafka with Spark's own connector (``format("kafka")``), the same
code under ``make run``, ``spark-submit`` and compose. Its jars come from Maven
Central (``queue/pom.xml``; ``make setup`` puts them in ``jars/spark/``):
:func:`session` adds them to ``spark.jars`` when it starts the JVM itself; under
``spark-submit`` pass them with ``--jars`` (docs/processing.md).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from common.settings import Settings

__all__ = ["KAFKA_SCHEMA", "ConnectorMissing", "connector_jars", "jvm_class_exists", "jvm_kafka_available", "read_kafka", "session"]

log = logging.getLogger(__name__)

_JVM_PROVIDER = "org.apache.spark.sql.kafka010.KafkaSourceProvider"
#: The fair scheduler's pools (SPARK_SCHEDULER=fair); processing.queries.in_pool puts a
#: query's batches in one.
FAIR_POOLS = Path(__file__).with_name("fairscheduler.xml")
#: Generated classes Spark keeps compiled (its default: 100). See session().
CODEGEN_CACHE_ENTRIES = 500
#: Checkpoint and state files through Hadoop's FileSystem API rather than its FileContext
#: API (Spark's default), first name as of Spark 4.1, second before it. See session().
_FILESYSTEM_CHECKPOINTS = (
    "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager",
    "org.apache.spark.sql.execution.streaming.FileSystemBasedCheckpointFileManager",
)


#: The columns of Spark's ``kafka`` source (without headers), for tests and batch frames.
KAFKA_SCHEMA = StructType([
    StructField("key", BinaryType(), True),
    StructField("value", BinaryType(), True),
    StructField("topic", StringType(), True),
    StructField("partition", IntegerType(), True),
    StructField("offset", LongType(), True),
    StructField("timestamp", TimestampType(), True),
    StructField("timestampType", IntegerType(), True),
])


class ConnectorMissing(RuntimeError):
    """Spark's Kafka connector is not on the classpath; the message says how to get it."""


def connector_jars(settings: Settings) -> list[str]:
    """The jars of Spark's Kafka connector that ``make setup`` fetched (``jars/spark/``)."""
    return sorted(str(p) for p in (settings.jars_dir / "spark").glob("*.jar"))


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
        # Not under spark-submit (whose --master, --driver-memory and --jars must win): set
        # them here, before pyspark starts the JVM.
        jars = connector_jars(settings)
        if not jars:
            raise ConnectorMissing(
                f"Spark's Kafka connector is not in {settings.jars_dir / 'spark'}: run `make "
                "setup` (it fetches the jars of queue/pom.xml from Maven Central)")
        builder = (
            builder.master(settings.spark_master)
            .config("spark.jars", ",".join(jars))
            .config("spark.driver.memory", settings.spark_driver_memory)
            .config("spark.driver.extraJavaOptions",
                    f"-XX:+UseSerialGC -Xss4m -Dderby.system.home={settings.data_dir / 'derby'}")
        )
        if settings.spark_master.startswith("spark://"):
            # A standalone master (docker-compose.cluster.yml): executors on its workers, each
            # of SPARK_EXECUTOR_MEMORY, which a worker's --memory must hold.
            builder = (builder.config("spark.executor.memory", settings.spark_executor_memory)
                       .config("spark.executor.extraJavaOptions", "-XX:+UseSerialGC -Xss4m"))
    builder = (
        builder.config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        .config("spark.default.parallelism", str(settings.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.streaming.metricsEnabled", "true")
        .config("spark.sql.adaptive.enabled", "false")
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
    if settings.spark_scheduler == "fair":
        builder = (builder.config("spark.scheduler.mode", "FAIR")
                   .config("spark.scheduler.allocation.file", str(FAIR_POOLS)))
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


def read_kafka(
    spark: SparkSession,
    settings: Settings,
    topics: Iterable[str],
    bootstrap: str,
    starting_offsets: str = "latest",
    fail_on_data_loss: bool = True,
    max_offsets_per_trigger: int | None = None,
) -> DataFrame:
    """A streaming DataFrame of Kafka records, read by Spark's Kafka connector."""
    limit = settings.max_offsets_per_trigger if max_offsets_per_trigger is None else max_offsets_per_trigger
    if id(spark) not in _checked:
        if not jvm_kafka_available(spark):
            raise ConnectorMissing(
                "Spark's Kafka connector is not on the classpath: run `make setup`, then "
                "bin/spark-submit (it adds the jars), or pass pyspark's spark-submit --jars "
                f"{','.join(connector_jars(settings)) or 'jars/spark/*.jar'}")
        _checked.add(id(spark))
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", starting_offsets)
        .option("failOnDataLoss", str(fail_on_data_loss).lower())
    )
    if limit:
        reader = reader.option("maxOffsetsPerTrigger", str(limit))
    return reader.load()


_checked: set[int] = set()
