"""The result writer: the ``foreachBatch`` function of every query that writes result rows.

:class:`ResultWriter` upserts a batch's changed rows into the store (idempotent: a
replayed batch overwrites) and, at the same time, into its mirrors
(``processing.mirror``), and pushes the rows of each store to the ``results`` topic for
the display server as soon as that store has them. Any error fails the batch, and Spark
retries it from the checkpoint.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pyspark.sql import DataFrame

from buffer import topics
from common import records
from common.messages import ResultsBatch
from processing.ledger import Ledger
from processing.mirror import Mirror
from processing.stopping import collect
from storage.base import ResultRow

__all__ = ["SLOW_COPY_S", "TIMING", "ResultWriter", "RowsFn", "batch_timing"]

log = logging.getLogger(__name__)

#: A batch that waits longer than this for its copies (after its own store's write) says so.
SLOW_COPY_S = 1.0

#: The columns every windowed transform adds (processing.windowing.timing_aggregates: the
#: newest produce and broker time of a group, microseconds) and their names in a results
#: message, where the display's health view reads them.
TIMING = {"_produced_us": "produced_at", "_kafka_us": "broker_at"}

#: Turns a collected batch (a list of dicts) into result rows.
RowsFn = Callable[[list[dict[str, Any]]], list[ResultRow]]


def batch_timing(collected: list[dict[str, Any]]) -> dict[str, str]:
    """The newest produce and broker times among a batch's rows (the columns of
    :func:`processing.windowing.timing_aggregates`)."""
    out = {}
    for column, name in TIMING.items():
        values = [r[column] for r in collected if r.get(column) is not None]
        if values:
            out[name] = records.format_time(records.from_micros(max(values)))
    return out


class ResultWriter:
    """``foreachBatch`` function: upsert the batch's rows, then push them to ``results``.

    Args:
        stream: the result stream's name (``common.catalogue``); ``to_rows`` may also
            return rows of other streams (one query can feed several streams).
        to_rows: turns the collected batch (a list of dicts) into result rows.
        open_store: opens the store on first use (in the driver), reused across batches.
        bootstrap: the broker for the ``results`` topic (None: push nothing).
        ttl: retention of the rows written (None: kept).
        publish: replaces the push to Kafka (tests).
    """

    def __init__(self, stream: str, to_rows: RowsFn, open_store: Callable[[], Any],
                 bootstrap: str | None, ttl: dt.timedelta | None = None,
                 publish: Callable[[ResultsBatch], None] | None = None,
                 ledger: Ledger | None = None, mirrors: Sequence[Mirror] = ()) -> None:
        self.stream = stream
        #: Copies of every batch in other stores, written after this store (processing.mirror).
        self.mirrors = tuple(mirrors)
        self._copies: concurrent.futures.ThreadPoolExecutor | None = None
        self.query: str | None = None  # the query's name, set when it starts
        self.ledger = ledger if ledger is not None else Ledger()
        self.to_rows = to_rows
        self._open_store = open_store
        self._store: Any = None
        self._bootstrap = bootstrap
        self._publisher: Any = None
        self._publish = publish
        self.ttl = ttl
        self._lock = threading.Lock()
        self.rows_written = 0

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def _send(self, message: ResultsBatch) -> None:
        if self._publish is not None:
            self._publish(message)
            return
        if self._bootstrap is None:
            return
        if self._publisher is None:
            from buffer.kafka import JsonPublisher

            self._publisher = JsonPublisher(self._bootstrap)
        self._publisher.publish(topics.RESULTS.name, message, key=message.stream)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.time()
        collected = [row.asDict(recursive=True) for row in collect(batch, self.query, batch_id)]
        self.write(self.to_rows(collected), batch_id, started, batch_timing(collected))

    def write(self, rows: Sequence[ResultRow], batch_id: int, started: float | None = None,
              timing: dict[str, str] | None = None) -> None:
        """Upsert ``rows`` in one store write (the mirrors copy them meanwhile), then push
        one message per stream and store, the store's first, each mirror's once it has them.

        ``timing`` (newest produce and broker times of the batch's input) is added to
        the messages with the batch's start and write times, for the health view.
        """
        if not rows:
            return
        with self._lock:
            before = dt.datetime.now(dt.UTC)
            store = self.store
            # The copies are written while the primary is (a copy that lands first is
            # harmless: the batch is replayed and upserted again if the primary fails).
            copies = [(mirror, self._copier().submit(
                mirror.write, rows, self.ttl, store, before,
                functools.partial(self.ledger.record, mirror.kind))) for mirror in self.mirrors]
            try:
                store.upsert(rows, ttl=self.ttl)
            except BaseException:
                concurrent.futures.wait([copy for _, copy in copies])  # none outlives the batch
                raise
            self.rows_written += len(rows)
            self.ledger.record(store.kind, rows)
            # The primary's rows go out before the copies are waited for: a slow copy (a busy
            # Cassandra, a request waiting for its timeout) never delays the disk demos'
            # update. The batch still ends only when every copy has (or fell behind), so a
            # copy that fails for good fails the batch, and its replay overwrites the rows.
            self._push(rows, store.kind, batch_id, started, timing)
            self._flush()
            waited = time.monotonic()
            copied = [(mirror, copy.result()) for mirror, copy in copies]
            held = time.monotonic() - waited
            for mirror, ok in copied:
                if ok:
                    self._push(rows, mirror.kind, batch_id, started, timing)
            self._flush()
            if held > SLOW_COPY_S:
                log.warning("batch %d of %s waited %.1f s for its copies after the %s write "
                            "(a slow or failing %s)", batch_id, self.query or self.stream, held,
                            store.kind, "/".join(m.kind for m in self.mirrors))

    def _flush(self) -> None:
        if self._publisher is not None:
            self._publisher.flush()

    def _copier(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._copies is None:
            self._copies = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(1, len(self.mirrors)), thread_name_prefix=f"copy-{self.stream}")
        return self._copies

    def _push(self, rows: Sequence[ResultRow], kind: str, batch_id: int, started: float | None,
              timing: dict[str, str] | None) -> None:
        """One results message per stream: the rows just written to the store ``kind``."""
        written = records.format_time(dt.datetime.now(dt.UTC))
        by_stream: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_stream.setdefault(r.stream, []).append(r.to_json() | {"updated_at": written})
        stages = dict(timing or {})
        if started is not None:
            stages["batch_started_at"] = records.format_time(
                dt.datetime.fromtimestamp(started, dt.UTC))
        stages["written_at"] = written
        for stream, payload in by_stream.items():
            self._send(ResultsBatch(
                stream=stream, store=kind, query=self.query, batch_id=batch_id,
                written_at=written, batch_seconds=round(time.time() - (started or time.time()), 3),
                timing=stages, stored_records=self.ledger.total(kind, stream), rows=payload))
