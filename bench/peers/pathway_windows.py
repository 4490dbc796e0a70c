"""Peer: the host-metrics windows of ``processing/vmstat_windows.py`` in Pathway.

A Pathway dataflow reads the ``vmstat`` topic (``pw.io.kafka.read``, JSON, its own
consumer group, from the topic's start; a new input batch every TRIGGER_SECONDS,
Pathway's ``autocommit_duration_ms``) and keeps, per host (the window's ``instance``):

* WINDOW_SECONDS tumbling windows (``vmstat_tumbling``) and SLIDING_WINDOW_SECONDS
  windows every SLIDE_SECONDS (``pw.temporal.sliding``; ``vmstat_sliding``);
* the watermark as the windows' ``cutoff`` of WATERMARK_SECONDS: a window that ended
  more than that before the newest event time seen (updated after each batch, as Spark's
  watermark) takes no more records, and its state is freed (``keep_results=False``);
* per window ``count`` and, per metric, the sum, minimum, maximum and number of non-null
  values (Pathway's ``sum``/``min``/``max`` refuse optional columns, and ``min`` would
  take a null for the smallest: nulls become 0, +inf and -inf, and are counted apart),
  and the newest produce and broker times.

``pw.io.subscribe`` receives each batch's changed windows; at the end of each batch
(``on_time_end``) they are written through ``bench/peers/_writer.PeerWriter``: the kit's
store and ``results`` topic, and a ``query_progress`` message (``vmstat_windows@pathway``).
No persistence is configured (Pathway's is a licensed feature): like the baseline, a
restart starts from the topic's start.

Run (``make bench`` installs Pathway into ``.venv-peers``; the benchmarks start it)::

    .venv-peers/bin/python bench/peers/pathway_windows.py --kafka-bootstrap-servers 127.0.0.1:9092

It logs a line every 10 s and runs until stopped (SIGTERM or Ctrl-C).
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import pathway as pw

from bench.peers._writer import (
    METRICS,
    SLIDING,
    TUMBLING,
    PeerWriter,
    Totals,
    Window,
    argument_parser,
    kit_values,
    parse_settings,
)

#: The records' schema: host and times, and every metric, optional (built from the kit's list).
VmstatSchema = pw.schema_builder({
    "host": pw.column_definition(dtype=str),
    "event_time": pw.column_definition(dtype=str),
    "produced_at": pw.column_definition(dtype=str | None, default_value=None),
    **{m: pw.column_definition(dtype=float | None, default_value=None) for m in METRICS},
}, name="VmstatSchema")
ISO = "%Y-%m-%dT%H:%M:%S.%f%z"


def ms(text: pw.ColumnExpression) -> pw.ColumnExpression:
    """An ISO 8601 time with ``Z`` or an offset, as milliseconds since the epoch."""
    return text.str.replace("Z", "+00:00").dt.strptime(ISO).dt.timestamp(unit="ms")


def windowed(samples: pw.Table, window: Any, stream: str, cutoff: dt.timedelta) -> pw.Table:
    """Per host and window: count, and per metric sum/min/max/n; the newest input times."""
    stats: dict[str, Any] = {
        "count": pw.reducers.count(), "produced_ms": pw.reducers.max(pw.this.produced_ms),
        "broker_ms": pw.reducers.max(pw.this.broker_ms)}
    for m in METRICS:
        value = pw.this[m]
        stats |= {f"{m}_sum": pw.reducers.sum(pw.coalesce(value, 0.0)),
                  f"{m}_min": pw.reducers.min(pw.coalesce(value, math.inf)),
                  f"{m}_max": pw.reducers.max(pw.coalesce(value, -math.inf)),
                  f"{m}_n": pw.reducers.sum(pw.if_else(value.is_none(), 0, 1))}
    return samples.windowby(
        pw.this.t, window=window, instance=pw.this.host,
        behavior=pw.temporal.common_behavior(cutoff=cutoff, keep_results=False),
    ).reduce(stream=stream, host=pw.this._pw_instance, start=pw.this._pw_window_start,
             end=pw.this._pw_window_end, **stats)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__ or "")
    settings, args = parse_settings(parser, argv)
    writer = PeerWriter(settings, "pathway")
    totals = Totals()
    clock = time.time  # the callbacks' argument ``time`` hides the module

    # The topic, from its start, in the engine's own consumer group.
    raw = pw.io.kafka.read(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "auto.offset.reset": "earliest",
         "group.id": args.group or "streamkit-peer-pathway", "session.timeout.ms": "6000"},
        topic=args.topic, format="json", schema=VmstatSchema, with_metadata=True,
        autocommit_duration_ms=max(1, int(settings.trigger_seconds * 1000)))
    # Event time, produce time and the broker's timestamp of each record.
    samples = raw.with_columns(
        t=pw.this.event_time.str.replace("Z", "+00:00").dt.strptime(ISO),
        produced_ms=ms(pw.coalesce(pw.this.produced_at, "1970-01-01T00:00:00.000Z")),
        broker_ms=pw.this._metadata["timestamp_millis"].as_float(default=0.0),
    )
    cutoff = dt.timedelta(seconds=settings.watermark_seconds)
    tables = [windowed(samples, pw.temporal.tumbling(
        duration=dt.timedelta(seconds=settings.window_seconds)), TUMBLING, cutoff)]
    if args.sliding:
        tables.append(windowed(samples, pw.temporal.sliding(
            hop=dt.timedelta(seconds=settings.slide_seconds),
            duration=dt.timedelta(seconds=settings.sliding_window_seconds)), SLIDING, cutoff))
    results = pw.Table.concat_reindex(*tables)

    # Each batch's changed windows, written when the batch ends; the input count beside.
    pending: dict[tuple[str, str, int], Window] = {}
    flushed_inputs = 0

    def on_window(key: Any, row: dict[str, Any], time: int, is_addition: bool) -> None:
        if not is_addition:  # the old value of an updated window, or a window cut off
            return
        start = int(row["start"].timestamp() * 1000)
        pending[(row["stream"], row["host"], start)] = Window(
            row["stream"], row["host"], start, int(row["end"].timestamp() * 1000),
            kit_values(row["count"], {m: row[f"{m}_sum"] for m in METRICS},
                       {m: row[f"{m}_min"] for m in METRICS},
                       {m: row[f"{m}_max"] for m in METRICS},
                       {m: row[f"{m}_n"] for m in METRICS}),
            row["produced_ms"], row["broker_ms"])

    def on_batch_end(_time: int) -> None:
        nonlocal flushed_inputs
        inputs = totals.input_rows - flushed_inputs
        if pending or inputs:
            started = clock()
            windows = list(pending.values())
            pending.clear()
            writer.write(windows, totals, inputs, started)
            flushed_inputs += inputs

    def on_count(key: Any, row: dict[str, Any], time: int, is_addition: bool) -> None:
        if is_addition:
            totals.input_rows = row["n"]

    pw.io.subscribe(raw.reduce(n=pw.reducers.count()), on_change=on_count)
    pw.io.subscribe(results, on_change=on_window, on_time_end=on_batch_end)
    try:
        pw.run(monitoring_level=pw.MonitoringLevel.NONE)
    finally:
        writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
