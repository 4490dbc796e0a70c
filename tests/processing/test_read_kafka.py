"""processing.spark.read_kafka (Spark's Kafka connector) in a real Spark session against the real broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from buffer import kafka
from common.settings import Settings
from common.waiting import eventually
from processing.spark import read_kafka

pytestmark = pytest.mark.spark


def produce(bootstrap: str, topic: str, count: int, partitions: int, first: int = 0) -> None:
    producer = kafka.producer(bootstrap)
    for i in range(first, first + count):
        value = json.dumps({"i": i, "text": f"record {i} ✓"}).encode()
        producer.produce(topic, value, key=str(i).encode(), partition=i % partitions)
    assert producer.flush(30) == 0


class Collector:
    """A foreachBatch function that keeps each batch's rows by batch id (a replay overwrites)."""

    def __init__(self, fail_on_batch: int | None = None) -> None:
        self.batches: dict[int, list[dict[str, Any]]] = {}
        self.fail_on_batch = fail_on_batch

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if batch_id == self.fail_on_batch:
            self.fail_on_batch = None
            raise RuntimeError(f"simulated crash in batch {batch_id}")
        self.batches[batch_id] = [row.asDict() for row in batch.collect()]

    def rows(self) -> list[dict[str, Any]]:
        return [row for rows in self.batches.values() for row in rows]


def start(df: DataFrame, collector: Collector, checkpoint: str, **trigger: Any) -> Any:
    return (
        df.writeStream.foreachBatch(collector)
        .option("checkpointLocation", checkpoint)
        .trigger(**(trigger or {"availableNow": True}))
        .start()
    )


def read(spark: SparkSession, settings: Settings, bootstrap: str, topic: str, **opts: Any) -> DataFrame:
    return read_kafka(spark, settings, [topic], bootstrap, **opts)


def test_available_now_reads_every_record_once_with_values_intact(
    spark: SparkSession, test_settings: Settings, bootstrap: str,
    new_topic: Callable[[int], str], checkpoint: str,
) -> None:
    topic = new_topic(3)
    produce(bootstrap, topic, 3000, partitions=3)
    collector = Collector()
    query = start(read(spark, test_settings, bootstrap, topic, starting_offsets="earliest"),
                  collector, checkpoint)
    query.awaitTermination(120)
    assert query.exception() is None
    rows = collector.rows()
    assert len(rows) == 3000
    assert len({(r["partition"], r["offset"]) for r in rows}) == 3000
    assert {r["topic"] for r in rows} == {topic}
    by_i = {json.loads(r["value"])["i"]: r for r in rows}
    assert sorted(by_i) == list(range(3000))
    sample = by_i[1234]
    assert json.loads(sample["value"])["text"] == "record 1234 ✓"
    assert sample["key"] == b"1234"
    assert sample["partition"] == 1234 % 3
    assert sample["timestampType"] == 0  # CreateTime
    assert sample["timestamp"] is not None


def test_schema_is_that_of_sparks_kafka_source(
    spark: SparkSession, test_settings: Settings, bootstrap: str, new_topic: Callable[[int], str]
) -> None:
    df = read(spark, test_settings, bootstrap, new_topic(1))
    assert [(f.name, f.dataType.simpleString()) for f in df.schema.fields] == [
        ("key", "binary"), ("value", "binary"), ("topic", "string"), ("partition", "int"),
        ("offset", "bigint"), ("timestamp", "timestamp"), ("timestampType", "int"),
    ]


def test_max_offsets_per_trigger_bounds_each_batch(
    spark: SparkSession, test_settings: Settings, bootstrap: str,
    new_topic: Callable[[int], str], checkpoint: str,
) -> None:
    topic = new_topic(3)
    produce(bootstrap, topic, 1000, partitions=3)
    collector = Collector()
    df = read(spark, test_settings, bootstrap, topic, starting_offsets="earliest",
              max_offsets_per_trigger=300)
    query = start(df, collector, checkpoint)
    query.awaitTermination(120)
    assert query.exception() is None
    sizes = [len(rows) for _, rows in sorted(collector.batches.items())]
    # The connector shares the limit among partitions by their backlog, rounding per partition.
    assert sum(sizes) == 1000 and len(sizes) == 4, sizes
    assert max(sizes) <= 300 + 3, sizes
    assert len({(r["partition"], r["offset"]) for r in collector.rows()}) == 1000


def test_a_crashed_query_resumes_from_its_checkpoint_exactly_once(
    spark: SparkSession, test_settings: Settings, bootstrap: str,
    new_topic: Callable[[int], str], checkpoint: str,
) -> None:
    topic = new_topic(3)
    produce(bootstrap, topic, 2000, partitions=3)
    df = read(spark, test_settings, bootstrap, topic, starting_offsets="earliest",
              max_offsets_per_trigger=400)
    collector = Collector(fail_on_batch=2)  # batches 0 and 1 commit; 2 is planned, then crashes
    first = start(df, collector, checkpoint)
    with pytest.raises(Exception, match="simulated crash"):
        first.awaitTermination(120)
    assert sorted(collector.batches) == [0, 1]

    second = start(df, collector, checkpoint)  # same checkpoint: batch 2 is replayed
    second.awaitTermination(120)
    assert second.exception() is None
    rows = collector.rows()
    assert sorted(collector.batches) == list(range(len(collector.batches)))  # batch 2 replayed
    assert len(collector.batches) >= 5  # at most ~400 rows a batch (rounded per partition)
    assert len(rows) == 2000
    assert len({(r["partition"], r["offset"]) for r in rows}) == 2000


def test_a_stopped_query_resumes_where_it_stopped(
    spark: SparkSession, test_settings: Settings, bootstrap: str,
    new_topic: Callable[[int], str], checkpoint: str,
) -> None:
    topic = new_topic(3)
    produce(bootstrap, topic, 1500, partitions=3)
    df = read(spark, test_settings, bootstrap, topic, starting_offsets="earliest",
              max_offsets_per_trigger=100)
    collector = Collector()
    running = start(df, collector, checkpoint, processingTime="1 second")
    try:
        eventually(lambda: len(collector.batches) >= 2, 60, "two batches",
                   check=lambda: _raise(running.exception()))
    finally:
        running.stop()
    seen_before_restart = len(collector.rows())
    assert 0 < seen_before_restart < 1500

    produce(bootstrap, topic, 300, partitions=3, first=1500)  # more arrives while stopped
    unlimited = read(spark, test_settings, bootstrap, topic, starting_offsets="earliest",
                     max_offsets_per_trigger=0)  # a restart may change the limit
    resumed = start(unlimited, collector, checkpoint)
    resumed.awaitTermination(120)
    assert resumed.exception() is None
    rows = collector.rows()
    assert len(rows) == 1800
    assert len({(r["partition"], r["offset"]) for r in rows}) == 1800


def test_starting_offsets_latest_skips_old_records(
    spark: SparkSession, test_settings: Settings, bootstrap: str,
    new_topic: Callable[[int], str], checkpoint: str,
) -> None:
    topic = new_topic(3)
    produce(bootstrap, topic, 90, partitions=3)
    collector = Collector()
    query = start(read(spark, test_settings, bootstrap, topic, starting_offsets="latest"),
                  collector, checkpoint, processingTime="0 seconds")
    try:
        # The first progress report means the start offsets are fixed (and in the checkpoint).
        eventually(lambda: query.lastProgress, 60, "the first progress report",
                   check=lambda: _raise(query.exception()))
        produce(bootstrap, topic, 30, partitions=3, first=1000)
        eventually(lambda: len(collector.rows()) >= 30, 60, "the new records",
                   check=lambda: _raise(query.exception()))
    finally:
        query.stop()
    values = sorted(json.loads(r["value"])["i"] for r in collector.rows())
    assert values == list(range(1000, 1030))


def test_bad_starting_offsets_fail_the_query_naming_the_value(
    spark: SparkSession, bootstrap: str, new_topic: Callable[[int], str], checkpoint: str
) -> None:
    topic = new_topic(1)
    with pytest.raises(Exception, match="got tomorrow"):
        query = (spark.readStream.format("kafka")
                 .option("kafka.bootstrap.servers", bootstrap).option("subscribe", topic)
                 .option("startingOffsets", "tomorrow").load()
                 .writeStream.format("noop").option("checkpointLocation", checkpoint).start())
        try:
            query.awaitTermination(60)
        finally:
            query.stop()


def test_without_the_connector_jars_the_session_refuses_to_start(tmp_path: Path) -> None:
    """A clear error naming `make setup`, before a JVM starts, when jars/spark/ is empty."""
    from common.settings import load
    from processing.spark import ConnectorMissing, session

    settings = load(environ={"JARS_DIR": str(tmp_path), "DATA_DIR": str(tmp_path)})
    with pytest.raises(ConnectorMissing, match="make setup"):
        session(settings, "no-jars")


def _raise(error: BaseException | None) -> None:
    if error is not None:
        raise AssertionError(f"query failed: {error}")
