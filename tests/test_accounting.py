"""After a run: what the sources published = what the job stored + late + malformed, exactly.

A real source publishes a known number of records to a real broker, some records arrive
after the watermark and some are garbage; the real job runs until it has read everything.
Then the ledger of stored records, the late and malformed counts from the query's progress
and the source's own count must add up, with nothing in flight.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from buffer import kafka
from buffer.broker import EmbeddedBroker
from common import settings
from common.messages import QueryProgress
from input.base import KafkaSink
from input.random_numbers import RandomSource
from processing import random_stats
from processing.context import JobContext
from processing.health import summarise_progress
from storage.disk import DiskStore

pytestmark = pytest.mark.spark

T0 = dt.datetime(2026, 11, 22, 9, 0, 0, tzinfo=dt.UTC)


def publish_numbers(bootstrap: str, count: int, first_second: float, seed: int) -> int:
    """``count`` numbers from the real source, event times 10 ms apart from ``first_second``."""
    ticks = (T0 + dt.timedelta(seconds=first_second, milliseconds=10 * i) for i in itertools.count())
    source = RandomSource(rate=100_000, producer=f"p{seed}", rng=random.Random(seed), count=count,
                          clock=lambda: next(ticks), sleep=lambda _s: None)
    sink = KafkaSink(bootstrap)
    try:
        return source.run(sink).sent
    finally:
        sink.close()


def test_published_equals_stored_plus_late_plus_malformed(spark: Any, tmp_path: Path) -> None:
    with EmbeddedBroker(tmp_path / "kafka", port=0, log_path=tmp_path / "broker.log") as broker:
        cfg = settings.load(environ={"DATA_DIR": str(tmp_path), "SHUFFLE_PARTITIONS": "2",
                                     "WATERMARK_SECONDS": "5", "WINDOW_SECONDS": "10"})
        ctx = JobContext(spark, cfg, broker.bootstrap, sink="disk", starting_offsets="earliest",
                         available_now=True)
        progress: list[QueryProgress] = []

        def run() -> None:
            for query in random_stats.start(spark, ctx):
                query.awaitTermination(180)
                assert query.exception() is None, query.exception()
                progress.extend(summarise_progress(json.loads(p.json), "test")
                                for p in query.recentProgress)

        try:
            published = publish_numbers(broker.bootstrap, 600, 0, seed=1)  # 0-6 s
            published += publish_numbers(broker.bootstrap, 400, 60, seed=2)  # 60-64 s
            run()  # the watermark is now at 59 s
            published += publish_numbers(broker.bootstrap, 50, 1, seed=3)  # late: 1-1.5 s
            garbage = kafka.JsonPublisher(broker.bootstrap)
            for value in (b"{oops", b"\xff" * 40, b'{"event_time": "never", "producer": "x"}'):
                garbage.publish("random", value)
            garbage.flush()
            run()
        finally:
            ctx.close()

        stored = ctx.ledger.total("disk", "random_stats")
        late_groups = sum(p.late_rows for p in progress)
        malformed = sum(p.malformed for p in progress)
        read = sum(p.input_rows for p in progress)
        in_store = sum(r.values["count"] for r in DiskStore(cfg.sqlite_path).latest("random_stats", 1000))
    assert published == 1050
    assert read == published + 3  # every record in the topic was read: nothing in flight
    assert malformed == 3
    assert stored == in_store == 1000  # the ledger agrees with the store itself
    late = read - malformed - stored  # as the index computes it
    assert late == 50  # exactly the records sent after the watermark
    # Spark counts dropped groups (pre-aggregated per window): the 50 fall into one window.
    assert late_groups == 1
    assert published == stored + late  # nothing accepted is lost, nothing counted twice
