"""Benchmark: the kit's Spark Kafka source against a plain Kafka consumer, in one run.

Starts its own embedded broker, produces 1,000,000 records of about 200 bytes
into 3 partitions, then times

  (a) the Spark source (``processing.kafka_source``) feeding a count on
      ``local[2]`` with ``trigger(availableNow=True)``: once cold (first query
      of the JVM: Python workers start, code is compiled) and twice warm;
  (b) a plain confluent-kafka consumer in this process reading the same records.

Run: ``.venv/bin/python bench/kafka_source.py [--records N]``. Prints a table;
the last line is one JSON object:
``{"source_records_per_s": ..., "baseline_records_per_s": ..., "ratio": ...}``
where the source figure is the better warm run and ratio = source / baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import KafkaError, TopicPartition

from bench._common import in_process_spark_settings
from common import kafka
from common.broker import EmbeddedBroker
from common.topics import Topic

PARTITIONS = 3


def produce(bootstrap: str, topic: str, count: int) -> float:
    producer = kafka.producer(bootstrap)
    value = json.dumps({"host": "bench", "seq": 0, "pad": "x" * 160}).encode()
    assert 190 <= len(value) <= 210, len(value)
    started = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 100_000 == 0:
            print(f"  produced {i:>9,}", end="\r", flush=True)
    if producer.flush(60):
        raise RuntimeError("records not acknowledged")
    return time.perf_counter() - started


def spark_count(spark, config, bootstrap: str, topic: str, checkpoint: str) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    from processing.spark import read_kafka

    counts: list[int] = []
    df = read_kafka(spark, config, [topic], bootstrap, starting_offsets="earliest",
                    max_offsets_per_trigger=0)
    started = time.perf_counter()
    query = (df.writeStream.foreachBatch(lambda batch, _id: counts.append(batch.count()))
             .option("checkpointLocation", checkpoint).trigger(availableNow=True).start())
    query.awaitTermination()
    elapsed = time.perf_counter() - started
    if query.exception():
        raise RuntimeError(query.exception())
    return sum(counts), elapsed


def plain_consumer(bootstrap: str, topic: str, count: int) -> tuple[int, float]:
    consumer = kafka.consumer(bootstrap, {"enable.partition.eof": True})
    started = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen, ended = 0, 0
    while ended < PARTITIONS:
        for message in consumer.consume(100_000, 0.5):
            error = message.error()
            if error is None:
                message.value()
                seen += 1
            elif error.code() == KafkaError._PARTITION_EOF:
                ended += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    config = in_process_spark_settings("bench-kafka-source-")
    work = config.data_dir
    topic = Topic("bench", "bench", PARTITIONS)
    warm_topic = Topic("warm", "warm", PARTITIONS)
    with EmbeddedBroker(port=0, log_path=work / "broker.log", create=[topic, warm_topic]) as broker:
        print(f"broker {broker.bootstrap}; producing {args.records:,} records of ~200 bytes")
        produced_s = produce(broker.bootstrap, topic.name, args.records)
        print(f"  produced {args.records:,} in {produced_s:.1f} s "
              f"({args.records / produced_s:,.0f}/s)")

        print("plain confluent-kafka consumer ...")
        n, base_s = plain_consumer(broker.bootstrap, topic.name, args.records)
        assert n == args.records, f"baseline read {n}, expected {args.records}"

        from processing.spark import session

        print("starting Spark (local[2]) ...")
        spark = session(config, "bench-kafka-source")
        runs = []
        for label in ("cold", "warm 1", "warm 2"):
            print(f"Spark source, {label} ...")
            n, elapsed = spark_count(spark, config, broker.bootstrap, topic.name,
                                     str(work / f"checkpoint-{len(runs)}"))
            assert n == args.records, f"Spark read {n}, expected {args.records}"
            runs.append((label, elapsed))
        spark.stop()

    baseline = args.records / base_s
    rows = [(f"Spark source ({label})", s, args.records / s) for label, s in runs]
    rows.append(("plain consumer (baseline)", base_s, baseline))
    print()
    print(f"{'reader':<28} {'seconds':>8} {'records/s':>12}")
    for label, secs, rate in rows:
        print(f"{label:<28} {secs:>8.2f} {rate:>12,.0f}")
    source = max(args.records / s for _, s in runs[1:])
    result = {
        "records": args.records,
        "source_records_per_s": round(source),
        "source_cold_records_per_s": round(args.records / runs[0][1]),
        "baseline_records_per_s": round(baseline),
        "ratio": round(source / baseline, 3),
    }
    print(f"ratio source/baseline: {result['ratio']:.2f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
