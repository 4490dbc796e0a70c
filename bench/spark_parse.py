"""Benchmark: the cost per record of the host-metrics job's Spark work, without Kafka.

Builds N (default 100,000) Kafka-shaped rows of host-metric JSON in memory
(cached), then times on ``local[2]``, best of ``--repeat`` runs each, into
Spark's ``noop`` sink:

* ``scan``: the cached rows alone (the floor);
* ``parse``: ``processing.pipeline.parse_records`` (typed JSON parse, checks);
* ``parse (text)``: the same result the way it was done before: every field
  parsed as text, then ``try_cast`` field by field, for comparison;
* ``tumbling`` / ``sliding``: parse plus the job's windowed aggregation
  (10 s windows; 1 min every 10 s).

Batch mode, so this is the work per record of a micro-batch without the
streaming overheads (Kafka source, state store, per-batch planning).

Run: ``.venv/bin/python bench/spark_parse.py [--rows N] [--repeat R]``. Prints a
table; the last line is one JSON object (records/s per step).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import emit, machine, say, table
from bench._load import sample


def text_parse(kafka_rows: Any, record_type: Any) -> Any:
    """Every field as text, then try_cast each (the kit's parse before the two tiers)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType, TimestampType

    from processing.pipeline import ISO_WITH_ZONE, spark_schema

    schema = spark_schema(record_type)
    as_text = StructType([StructField(f.name, StringType(), True) for f in schema.fields]
                         + [StructField("produced_at", StringType(), True),
                            StructField("_corrupt", StringType(), True)])
    text = F.col("value").cast("string")
    parsed = kafka_rows.select(
        F.from_json(text, as_text, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"})
        .alias("j"), text.alias("_raw"))
    columns, checks = [], [F.when(F.col("j").isNull() | F.col("j._corrupt").isNotNull()
                                  | ~F.ltrim(F.col("_raw")).startswith("{"),
                                  F.lit("not a JSON object"))]
    for f in schema.fields:
        raw = F.col(f"j.{f.name}")
        value = raw if isinstance(f.dataType, StringType) else raw.try_cast(f.dataType)
        if isinstance(f.dataType, TimestampType):
            value = F.when(raw.rlike(ISO_WITH_ZONE), value)
            checks.append(F.when(raw.isNotNull() & ~raw.rlike(ISO_WITH_ZONE), F.lit("zone")))
        if f.name in record_type.required:
            checks.append(F.when(raw.isNull(), F.lit("missing")))
        if not isinstance(f.dataType, StringType):
            checks.append(F.when(raw.isNotNull() & value.isNull(), F.lit("type")))
        columns.append(value.alias(f.name))
    return parsed.select(*columns, F.coalesce(*checks).alias("_error"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from common import settings
    from common.records import VmstatSample
    from processing import pipeline
    from processing.kafka_source import KAFKA_SCHEMA
    from processing.spark import session
    from processing.vmstat_windows import windowed_stats

    data_dir = Path(tempfile.mkdtemp(prefix="bench-parse-"))
    config = settings.load(environ={"DATA_DIR": str(data_dir), "SHUFFLE_PARTITIONS": "2",
                                    "SPARK_MASTER": "local[2]", "LOG_LEVEL": "warning"})
    say("starting Spark (local[2]) ...")
    spark = session(config, "bench-spark-parse")
    rng = random.Random(1)
    t0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    rows = []
    for i in range(args.rows):
        host = f"h{i % 10}"
        record = sample(host, rng, t0 + dt.timedelta(milliseconds=i)).to_json()
        record["produced_at"] = record["event_time"]
        rows.append((host.encode(), json.dumps(record).encode(), "vmstat", i % 3, i, t0, 0))
    df = spark.createDataFrame(rows, KAFKA_SCHEMA).repartition(2).cache()
    df.count()

    def parsed() -> Any:
        return pipeline.valid(pipeline.parse_records(df, VmstatSample))

    steps = {
        "scan": df.select("value"),
        "parse": pipeline.parse_records(df, VmstatSample),
        "parse (text)": text_parse(df, VmstatSample),
        "tumbling": windowed_stats(parsed(), "10 seconds"),
        "sliding": windowed_stats(parsed(), "60 seconds", "10 seconds"),
    }
    result: dict[str, Any] = {"rows": args.rows, "machine": machine()}
    lines = []
    for name, frame in steps.items():
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            frame.write.format("noop").mode("overwrite").save()
            times.append(time.perf_counter() - started)
        best = min(times)
        rate = args.rows / best
        say(f"  {name:<13} best {best:.2f} s ({rate:,.0f} records/s)")
        lines.append((name, f"{best:.2f}", f"{rate:,.0f}", f"{times[0]:.2f}"))
        result[name.replace(" (text)", "_text").replace(" ", "_") + "_records_per_s"] = round(rate)
    spark.stop()
    print(table(("step", "best s", "records/s", "first run s"), lines))
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
