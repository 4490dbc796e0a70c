"""Health arithmetic for the index page and /metrics: per-stage latency and record accounting.

Pure functions and small classes, no Flask and no Kafka, so they are tested alone.

**Stages.** Every record carries its event time and ``produced_at``; Kafka adds its
timestamp; a Spark job's results message says when the batch started and when
its rows were written (``timing``); the server stamps ``pushed_at``; the page
measures its own receive time. :func:`result_stages` and :func:`raw_stages` turn
one message into seconds per stage; :class:`StageLatency` keeps the last minute
and answers p50/p95.

**Accounting.** For each stream with :class:`common.catalogue.Accounting`, what the
sources published to its topic must equal what the query stored plus what it
dropped as late, what failed to parse, and what it has not read yet (lag):
:func:`accounting_rows` lays the figures side by side with the difference.
"""

from __future__ import annotations

import collections
import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from buffer import topics
from common import catalogue
from common.records import RecordError, parse_time
from common.stats import percentile

__all__ = ["STAGES", "StageLatency", "accounting_rows", "percentile", "raw_stages", "result_stages"]

#: Stage names, in path order.
STAGES = ("source→Kafka", "Kafka→Spark", "Spark→store", "store→server", "Kafka→server",
          "source→server")


def _time(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)  # Kafka timestamps: ms
    if isinstance(value, str):
        try:
            return parse_time(value)
        except RecordError:
            return None
    return None


def _gap(later: Any, earlier: Any) -> float | None:
    a, b = _time(later), _time(earlier)
    if a is None or b is None:
        return None
    return max(0.0, (a - b).total_seconds())


def result_stages(timing: Mapping[str, Any], pushed_at: Any) -> dict[str, float]:
    """Seconds per stage for one results message (its ``timing`` and the push time)."""
    pairs = {
        "source→Kafka": ("broker_at", "produced_at"),
        "Kafka→Spark": ("batch_started_at", "broker_at"),
        "Spark→store": ("written_at", "batch_started_at"),
    }
    out = {}
    for stage, (later, earlier) in pairs.items():
        gap = _gap(timing.get(later), timing.get(earlier))
        if gap is not None:
            out[stage] = gap
    for stage, earlier in (("store→server", "written_at"), ("source→server", "produced_at")):
        gap = _gap(pushed_at, timing.get(earlier))
        if gap is not None:
            out[stage] = gap
    return out


def raw_stages(record: Mapping[str, Any], pushed_at: Any) -> dict[str, float]:
    """Seconds per stage for one raw record shown as it is (no Spark)."""
    out = {}
    for stage, later, earlier in (("source→Kafka", record.get("kafka_time"), record.get("produced_at")),
                                  ("Kafka→server", pushed_at, record.get("kafka_time")),
                                  ("source→server", pushed_at, record.get("produced_at"))):
        gap = _gap(later, earlier)
        if gap is not None:
            out[stage] = gap
    return out


class StageLatency:
    """Stage latencies of the last ``span`` seconds, for one demo."""

    def __init__(self, span: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_samples: int = 5000) -> None:
        self.span = span
        self._clock = clock
        self._samples: collections.deque[tuple[float, dict[str, float]]] = collections.deque(
            maxlen=max_samples)

    def add(self, stages: Mapping[str, float]) -> None:
        if stages:
            self._samples.append((self._clock(), dict(stages)))

    def summary(self) -> dict[str, dict[str, float]]:
        """Per stage: p50, p95 (seconds) and n over the last ``span`` seconds."""
        cutoff = self._clock() - self.span
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
        by_stage: dict[str, list[float]] = collections.defaultdict(list)
        for _, stages in self._samples:
            for stage, seconds in stages.items():
                by_stage[stage].append(seconds)
        return {
            stage: {"p50": round(percentile(v, 50), 4), "p95": round(percentile(v, 95), 4),
                    "n": len(v)}
            for stage in STAGES if (v := by_stage.get(stage))
        }


def _produced_by(reports: Iterable[Mapping[str, Any]], cut: dt.datetime | None
                 ) -> tuple[dict[str, int], set[str]]:
    """Records sent per topic, from each source's first report at or after ``cut``.

    ``reports`` is every kept ``source_progress`` message, oldest first. Without a
    ``cut``, each source's latest report counts. Returns (topic -> sent, topics with
    a source that has not reported since ``cut`` yet).
    """
    chosen: dict[str, Mapping[str, Any]] = {}
    waiting: dict[str, Mapping[str, Any]] = {}
    for report in reports:
        name = str(report.get("source"))
        if cut is None:
            chosen[name] = report
            continue
        when = _time(report.get("time"))
        if name not in chosen and when is not None and when >= cut:
            chosen[name] = report
        waiting[name] = report
    produced: dict[str, int] = collections.Counter()
    pending: set[str] = set()
    for name in {*chosen, *waiting}:
        report = chosen.get(name) or waiting[name]
        for topic in str(report.get("topic") or "").split(","):
            if topic:
                produced[topic] += int(report.get("sent") or 0)
                if name not in chosen:
                    pending.add(topic)
    return produced, pending


def accounting_rows(sources: Iterable[Mapping[str, Any]], queries: Mapping[str, Mapping[str, Any]],
                    stored: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per accounted stream and store, its figures taken at the same micro-batch.

    A query's progress report (batch ``b``: rows read, late and malformed since the
    application started) and its results messages (records stored as of batch ``b``)
    arrive separately; comparing them at the same batch makes the check exact.

    Late records: Spark counts the *groups* it drops at the watermark
    (``numRowsDroppedByWatermark``: rows are pre-aggregated per window before the state
    store, so 50 late records of one window count as 1). The records are
    ``late = read - malformed - stored``, and Spark's group count checks them: no dropped
    group means no late record, and each dropped group holds at least one.
    ``unaccounted`` is what breaks that check (0 unless a record was lost or counted
    twice).

    ``not_read_yet`` is what the sources had published that the batch did not read
    (records in flight, or a query falling behind): ``produced - (read - malformed)``.
    The kit's sources publish only well-formed records (they dead-letter the rest), so a
    malformed record on a topic came from another producer and is no part of ``produced``. The sources report every few
    seconds, apart from the query, so ``produced`` comes from each source's first
    report after the batch fixed its offsets (its trigger time plus its duration):
    everything the batch could read had been sent by then, so ``not_read_yet`` is
    never negative unless records came from elsewhere. Until such a report arrives,
    ``not_read_yet`` is None (comparing with an older report made it negative: the
    query had read records sent after it).

    Args:
        sources: ``source_progress`` messages (``source``, ``topic``, ``sent``, ``time``),
            oldest first; a few per source, so that one after each batch is there.
        queries: the latest ``query_progress`` message per query name (``batch_id``,
            ``totals``, ``time``: the trigger's start, ``batch_ms``).
        stored: (stream, store) -> {"query": name, "batches": {batch id: records stored}}.
    """
    reports = list(sources)
    rows = []
    for (stream_name, store), entry in sorted(stored.items()):
        stream = catalogue.STREAMS.get(stream_name)
        if stream is None or stream.accounting is None:
            continue
        acc = stream.accounting
        name = entry.get("query") or f"{acc.query}@{store}"
        progress = queries.get(name) or {}
        totals = progress.get("totals") or {}
        batch = progress.get("batch_id")
        batches: Mapping[int, int] = entry.get("batches") or {}
        started = _time(progress.get("time"))
        cut = (started + dt.timedelta(milliseconds=int(progress.get("batch_ms") or 0))
               if started is not None else None)
        produced, pending = _produced_by(reports, cut)
        # Records stored as of the reported batch (a batch that stored nothing sent nothing).
        known = [b for b in batches if isinstance(batch, int) and b <= batch]
        in_store = batches[max(known)] if known else None
        topic = getattr(topics, acc.topic.upper()).name
        read = totals.get("input_rows")
        late_groups = int(totals.get("late_rows") or 0)
        malformed = int(totals.get("malformed") or 0)
        row: dict[str, Any] = {
            "stream": stream_name, "store": store, "topic": topic, "query": name,
            "batch": batch, "produced": produced.get(topic), "read": read, "stored": in_store,
            "late": None, "late_groups": late_groups, "malformed": malformed,
            "unaccounted": None, "not_read_yet": None,
        }
        if read is not None and in_store is not None:
            late = int(read) - malformed - in_store
            row["late"] = late
            row["unaccounted"] = late if late_groups == 0 else min(0, late - late_groups)
        if read is not None and row["produced"] is not None and topic not in pending:
            row["not_read_yet"] = row["produced"] - (int(read) - malformed)
        rows.append(row)
    return rows
