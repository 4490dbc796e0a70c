"""The raw archive: every data topic's records, as received, in Parquet under DATA_DIR/archive,
partitioned by topic and date (the Kafka timestamp's UTC date).

Spark's file sink with its own checkpoint writes each micro-batch's files
exactly once: a file is only visible to readers once the sink's metadata log
(``archive/_spark_metadata``) lists it, so a crash never leaves a half batch
or a duplicate. Read the archive with ``spark.read.parquet(DATA_DIR/archive)``
(the root, so the metadata log is used); ``processing/recompute.py`` recomputes
any windowed result from it. A new file every ARCHIVE_TRIGGER_SECONDS (30 s).

Run alone::

    spark-submit processing/archive.py [--replay]
"""

from __future__ import annotations

import logging
import sys

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from processing import windowing
from processing.context import JobContext
from processing.runner import run_job

log = logging.getLogger(__name__)

#: Topic roles archived: the sources' topics and the dead letters (not results or health).
ARCHIVED = ["vmstat", "nginx", "random", "census", "cases", "dead_letters"]
NAME = "archive"


def archive_frame(kafka_rows: DataFrame) -> DataFrame:
    """Kafka records as they are, plus the ``date`` partition column (UTC date of the timestamp)."""
    return kafka_rows.withColumn("date", F.date_format(F.col("timestamp"), "yyyy-MM-dd"))


def start(spark: SparkSession, ctx: JobContext) -> list[StreamingQuery]:
    settings = ctx.settings
    frame = archive_frame(ctx.read_topics(ARCHIVED))
    writer = (
        frame.writeStream.queryName(NAME)
        .format("parquet")
        .partitionBy("topic", "date")
        .option("path", str(settings.archive_dir))
        .option("checkpointLocation", str(settings.checkpoint_dir / NAME))
    )
    if ctx.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=windowing.seconds(settings.archive_trigger_seconds))
    query = ctx.launch(writer.start)
    log.info("archiving %s to %s", ", ".join(ctx.topic_name(r) for r in ARCHIVED),
             settings.archive_dir)
    return [query]


if __name__ == "__main__":
    sys.exit(run_job(__doc__ or "", start))
