"""Benchmark: the cost per record of the host-metrics job's Spark work, without Kafka.

Builds N (default 100,000) Kafka-shaped rows of host-metric JSON in memory
(cached), then times on ``local[2]``, best of ``--repeat`` runs each, into
Spark's ``noop`` sink:

* ``scan``: the cached rows alone (the floor);
* ``parse``: ``processing.reading.parse_records`` (every field as text, then
  ``try_cast`` and the checks that name what is wrong);
* ``parse (typed)``: one typed JSON parse without those checks, for comparison:
  the most a cheaper parse could gain per record;
* ``tumbling`` / ``sliding``: parse plus the job's windowed aggregation
  (10 s windows; 1 min every 10 s).

Batch mode, so this is the work per record of a micro-batch without the
streaming overheads (Kafka source, state store, per-batch planning), which
are most of the cost at the kit's rates: see docs/benchmark-history.md.

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

from bench._load import sample
from bench._report import emit, machine, say, table


def in_process_spark_settings(prefix: str) -> Any:
    """Settings for a benchmark that runs Spark in its own process: ``local[2]``, 2 shuffle
    partitions, quiet logs, a fresh temporary DATA_DIR (``settings.data_dir``)."""
    from common import settings

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    return settings.load(environ={"DATA_DIR": str(data_dir), "SHUFFLE_PARTITIONS": "2",
                                  "SPARK_MASTER": "local[2]", "LOG_LEVEL": "warning"})


def typed_parse(kafka_rows: Any, record_type: Any) -> Any:
    """One JSON parse with the record's types, no checks: a lower bound for parsing."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField, StructType, TimestampType

    from processing.reading import spark_schema

    schema = spark_schema(record_type)
    typed = StructType(list(schema.fields) + [StructField("produced_at", TimestampType(), True)])
    return kafka_rows.select(F.from_json(F.col("value").cast("string"), typed).alias("j")) \
        .select("j.*")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()

    from common.records import VmstatSample
    from processing import reading
    from processing.spark import KAFKA_SCHEMA, session
    from processing.vmstat_windows import windowed_stats

    config = in_process_spark_settings("bench-parse-")
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
        return reading.valid(reading.parse_records(df, VmstatSample))

    steps = {
        "scan": df.select("value"),
        "parse": reading.parse_records(df, VmstatSample),
        "parse (typed)": typed_parse(df, VmstatSample),
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
        result[name.replace(" (typed)", "_typed").replace(" ", "_") + "_records_per_s"] = round(rate)
    spark.stop()
    print(table(("step", "best s", "records/s", "first run s"), lines))
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
