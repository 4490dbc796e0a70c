"""Peer: the host-metrics windows of ``processing/vmstat_windows.py`` in Quix Streams.

A Quix Streams ``Application`` (its own consumer group, from the topic's start) reads the
``vmstat`` topic (JSON, keyed by host: Quix windows group by the message key, so no
repartition is needed), takes each record's ``event_time`` as its timestamp, and keeps:

* WINDOW_SECONDS tumbling windows (``vmstat_tumbling``) and SLIDING_WINDOW_SECONDS
  windows every SLIDE_SECONDS (Quix: a hopping window; ``vmstat_sliding``), per host;
* the watermark as a grace period of WATERMARK_SECONDS: a record whose window ended more
  than that before the newest timestamp its partition has seen is dropped (counted late);
* per window ``count`` and, per metric, the sum, minimum, maximum and number of the
  non-null values, plus the newest produce and broker times (:class:`HostStats`, one
  custom aggregator);
* ``.current()``: every record emits its windows' new values; a sink keeps the latest
  value of each window and writes them at each checkpoint (every TRIGGER_SECONDS, Quix's
  ``commit_interval``) through ``bench/peers/_writer.PeerWriter``: the kit's store and
  ``results`` topic, and a ``query_progress`` message (query ``vmstat_windows@quix``).

Window state lives in RocksDB under DATA_DIR/quix-state, with the library's changelog
topics on the broker (its defaults: at-least-once, state recovered after a restart).

Run (``make bench`` installs Quix Streams into ``.venv-peers``; the benchmarks start it)::

    .venv-peers/bin/python bench/peers/quix_windows.py --kafka-bootstrap-servers 127.0.0.1:9092

It logs a line every 10 s and runs until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import datetime as dt
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from quixstreams import Application
from quixstreams.dataframe.windows import Aggregator
from quixstreams.sinks import BaseSink

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


def event_ms(value: dict[str, Any], key: Any, timestamp: int, headers: Any) -> int:
    """The record's event time (ISO 8601 with a zone) in milliseconds."""
    return int(dt.datetime.fromisoformat(value["event_time"]).timestamp() * 1000)


def valid(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("event_time"), str)
            and isinstance(value.get("host"), str))


def with_times(value: dict[str, Any], key: Any, timestamp: int, headers: Any) -> dict[str, Any]:
    """Adds the produce time and the broker's timestamp (ms), for the latency's stages."""
    produced = value.get("produced_at")
    value["_produced_ms"] = (dt.datetime.fromisoformat(produced).timestamp() * 1000
                             if isinstance(produced, str) else None)
    value["_broker_ms"] = timestamp
    return value


class HostStats(Aggregator):
    """One window's aggregates in one state value (a Quix custom aggregator).

    ``[count, newest produced ms, newest broker ms]`` then, per metric, sum, min, max and
    the number of non-null samples. The library's own Count/Sum/Min/Max (which skip nulls
    too) do the same as 61 aggregators of one state entry each: 3-4 times slower here.
    """

    def initialize(self) -> list[Any]:
        return [0, 0.0, 0.0] + [0.0, None, None, 0] * len(METRICS)

    def agg(self, old: list[Any], new: dict[str, Any], timestamp: int) -> list[Any]:
        old[0] += 1
        old[1] = max(old[1], new["_produced_ms"] or 0.0)
        old[2] = max(old[2], new["_broker_ms"] or 0.0)
        i = 3
        for m in METRICS:
            v = new.get(m)
            if v is not None:
                old[i] += v
                old[i + 1] = v if old[i + 1] is None else min(old[i + 1], v)
                old[i + 2] = v if old[i + 2] is None else max(old[i + 2], v)
                old[i + 3] += 1
            i += 4
        return old

    def result(self, value: list[Any]) -> dict[str, Any]:
        stats = {m: value[3 + 4 * k: 7 + 4 * k] for k, m in enumerate(METRICS)}
        return {"values": kit_values(value[0], {m: s[0] for m, s in stats.items()},
                                     {m: s[1] for m, s in stats.items()},
                                     {m: s[2] for m, s in stats.items()},
                                     {m: s[3] for m, s in stats.items()}),
                "produced_ms": value[1], "broker_ms": value[2]}


class StoreSink(BaseSink):
    """Keeps each window's newest value; at each checkpoint writes them all in one go."""

    def __init__(self, writer: PeerWriter, totals: Totals) -> None:
        super().__init__()
        self.writer = writer
        self.totals = totals
        self.pending: dict[tuple[str, str, int], Window] = {}
        self.flushed_inputs = 0

    def add(self, value: Any, key: Any, timestamp: int, headers: Any, topic: str,
            partition: int, offset: int) -> None:
        stats = value["value"]
        self.pending[(value["stream"], key, value["start"])] = Window(
            value["stream"], key, value["start"], value["end"], stats["values"],
            stats["produced_ms"], stats["broker_ms"])

    def flush(self) -> None:
        inputs = self.totals.input_rows - self.flushed_inputs
        if not self.pending and not inputs:
            return
        started = time.time()
        windows, self.pending = list(self.pending.values()), {}
        self.writer.write(windows, self.totals, inputs, started)
        self.flushed_inputs += inputs


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__ or "")
    settings, args = parse_settings(parser, argv)
    totals = Totals()

    def counted(topic: str, partition: int, offset: int) -> None:
        totals.input_rows += 1

    def late(*_: Any) -> bool:
        totals.late_rows += 1  # once per record: from the tumbling windows only
        return False  # counted, not logged one by one

    app = Application(
        broker_address=settings.kafka_bootstrap_servers,
        consumer_group=args.group or "streamkit-peer-quix",
        auto_offset_reset="earliest",
        commit_interval=settings.trigger_seconds,
        state_dir=str(Path(settings.data_dir) / "quix-state"),
        on_message_processed=counted,
        consumer_poll_timeout=0.05,
        loglevel=settings.log_level.upper(),
    )
    topic = app.topic(args.topic, key_deserializer="str", value_deserializer="json")
    sink = StoreSink(PeerWriter(settings, "quix"), totals)

    # Records: valid ones only, timed by their event time, with their produce/broker times.
    sdf = app.dataframe(topic)
    sdf = sdf.filter(valid).apply(with_times, metadata=True).set_timestamp(event_ms)
    # Tumbling windows, the watermark as the grace period, every update to the sink.
    grace = dt.timedelta(seconds=settings.watermark_seconds)
    tumbling = (sdf.tumbling_window(dt.timedelta(seconds=settings.window_seconds),
                                    grace_ms=grace, on_late=late)
                .agg(value=HostStats()).current())
    tumbling.apply(lambda w: {**w, "stream": TUMBLING}).sink(sink)
    # Sliding windows: Quix calls them hopping windows.
    if args.sliding:
        sliding = (sdf.hopping_window(dt.timedelta(seconds=settings.sliding_window_seconds),
                                      dt.timedelta(seconds=settings.slide_seconds),
                                      grace_ms=grace, on_late=lambda *_: False)
                   .agg(value=HostStats()).current())
        sliding.apply(lambda w: {**w, "stream": SLIDING}).sink(sink)

    signal.signal(signal.SIGTERM, lambda *_: app.stop())
    try:
        app.run()
    finally:
        sink.writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
