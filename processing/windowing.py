"""What the windowed jobs share: their description, and the columns and rows of their windows.

* :class:`WindowedStream` describes a windowed result stream once, for the live query
  (``JobContext.start_windowed``) and for a recomputation (``processing.recompute``).
* :func:`window_columns` and :func:`timing_aggregates` are the columns every windowed
  transform outputs; :func:`result_rows` turns its collected rows into result rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from common import records
from processing.panes import StoreRange
from processing.writer import TIMING, RowsFn
from storage.base import ResultRow

__all__ = ["TIMING_COLUMNS", "WindowedStream", "result_rows", "seconds", "timing_aggregates",
           "window_columns"]


def timing_aggregates() -> list[Column]:
    """Aggregates every windowed transform adds: the newest produce and broker time in the group.

    They travel with the batch to the results topic (see
    :class:`processing.writer.ResultWriter`), so the health view can show how long each
    stage took; they are not stored as values.
    """
    produced, broker = TIMING
    return [F.max(F.unix_micros("_produced_at")).alias(produced),
            F.max(F.unix_micros("_kafka_time")).alias(broker)]


TIMING_COLUMNS = tuple(TIMING)


def window_columns(window: str = "window") -> list[Column]:
    """Window bounds as microseconds since the epoch: no time zone can creep in on collect."""
    return [
        F.unix_micros(F.col(f"{window}.start")).alias("window_start_us"),
        F.unix_micros(F.col(f"{window}.end")).alias("window_end_us"),
    ]



@dataclass(frozen=True)
class WindowedStream:
    """A windowed result stream, described once and run two ways.

    Streaming (``JobContext.start_windowed``) reads the topic from Kafka; batch
    (``processing.recompute``) reads the same records from the Parquet archive.
    Both parse with :func:`processing.reading.parse_records` and call ``transform``, so a
    recomputation gives what the live job stored (for rows that were not late).

    Attributes:
        stream: the result stream's name.
        topic: the topic's role in queue/topics.toml.
        record_type: what the topic carries.
        transform: (valid parsed records, watermark or None) -> windowed rows with
            ``window_start_us`` and ``window_end_us``.
        to_rows: collected windowed rows -> result rows.
        with_store: the live query's ``to_rows`` instead, given a reader of the store's
            rows (by stream and a range of window starts): for rows built from stored ones
            (sliding windows from their panes: ``processing.panes``).
        derived: no query of its own; its rows come from another stream's ``with_store``
            (``transform`` and ``to_rows`` still recompute it from the archive).
    """

    stream: str
    topic: str
    record_type: type[records.Record]
    transform: Callable[[DataFrame, str | None], DataFrame]
    to_rows: RowsFn
    with_store: Callable[[StoreRange], RowsFn] | None = None
    derived: bool = False


def seconds(value: float) -> str:
    """A Spark interval string: ``seconds(10)`` -> ``"10 seconds"`` (``"10s"`` is refused)."""
    return f"{value:g} seconds"


def result_rows(stream: str, key_column: str, value_columns: Sequence[str]) -> RowsFn:
    """A ``to_rows`` for windowed aggregates: key from ``key_column``, values from the rest."""

    def convert(collected: list[dict[str, Any]]) -> list[ResultRow]:
        return [
            ResultRow(
                stream=stream,
                key=str(row[key_column]),
                window_start=records.from_micros(row["window_start_us"]),
                window_end=records.from_micros(row["window_end_us"]),
                values={c: row[c] for c in value_columns},
            )
            for row in collected
        ]

    return convert
