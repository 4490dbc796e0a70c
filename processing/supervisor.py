"""The query supervisor: a failed query is restarted alone, from its checkpoint, with backoff.

:class:`QuerySupervisor` watches the queries of an application, restarts a failed one
with the function that started it (``JobContext.launch``), gives up after too many
failures, and stops them all between micro-batches when the application stops.
"""

from __future__ import annotations

import collections
import functools
import logging
import time
from collections.abc import Callable

from pyspark.sql.streaming import StreamingQuery

from common.backoff import delay
from common.waiting import DeadlineExceeded, eventually

__all__ = ["LaunchFn", "QuerySupervisor"]

log = logging.getLogger(__name__)

#: A failed query is restarted from its checkpoint (with backoff) up to this many times
#: within RESTART_WINDOW_S; one more failure ends the application with exit code 1.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 600.0
#: How long stopping waits for the queries' running micro-batches to end (QuerySupervisor.stop_all);
#: the stack gives ``python -m processing`` 15 s to stop in all.
STOP_BETWEEN_BATCHES_S = 5.0
#: Failures that say the machine is overloaded, not that the query is broken: Spark gives a
#: new Python process a fixed 10 s to connect back (``PythonWorkerFactory``). They are
#: retried with the same backoff but never end the application.
TRANSIENT_FAILURES = ("Python worker failed to connect back",)
#: Failures that say a store is unreachable (storage.base.StoreUnavailable: Cassandra still
#: starting, restarting or cut off). The query is restarted with backoff for as long as the
#: outage lasts and never ends the application: the other stores' queries keep running.
OUTAGE_FAILURES = ("StoreUnavailable",)


#: Starts one query again (from its checkpoint); see :meth:`processing.context.JobContext.launch`.
LaunchFn = Callable[[], StreamingQuery]


class QuerySupervisor:
    """Keeps queries running: a failed query is restarted alone, from its checkpoint.

    Restarting one query does not touch the others: on 2 cores every restart is a
    new Python reader process that has only 10 s to connect back to a busy JVM
    (see :func:`processing.queries.wait_until_initialised`), so restarting a whole
    job for one failure turned one failure into a cascade (seen in CI). A query is
    restarted after a backoff (1, 2, 4 ... 30 s); its MAX_RESTARTS-th restart within
    RESTART_WINDOW_S is refused and :meth:`check` returns False (give up). A failure
    in :data:`TRANSIENT_FAILURES` (the machine too busy for a new Python process to
    connect back in 10 s; seen at load average 9-10 on 2 cores) or in
    :data:`OUTAGE_FAILURES` (a store out of reach) is restarted with the same backoff but
    never counts toward giving up: ending the application would stop every other query
    for a failure that goes away with the load or the outage.
    """

    def __init__(self, launchers: dict[str, LaunchFn], max_restarts: int = MAX_RESTARTS,
                 window_s: float = RESTART_WINDOW_S, max_backoff_s: float = 30.0) -> None:
        self.queries: dict[str, StreamingQuery] = {}
        self.restarts: dict[str, list[float]] = {}  # query name -> when it was restarted
        #: query name -> failures in TRANSIENT_FAILURES (restarted, never a reason to give up)
        self.transient: collections.Counter[str] = collections.Counter()
        self._transient_restarts: dict[str, list[float]] = {}  # for their backoff only
        self._launchers = launchers
        self._max_restarts = max_restarts
        self._window_s = window_s
        self._max_backoff_s = max_backoff_s
        #: query name -> (when its restart is due, whether it follows a transient failure)
        self._due: dict[str, tuple[float, bool]] = {}

    def watch(self, queries: list[StreamingQuery]) -> None:
        for q in queries:
            self.queries[str(q.name)] = q

    @property
    def names(self) -> list[str]:
        return list(self.queries)

    def any_active(self) -> bool:
        return any(q.isActive for q in self.queries.values()) or bool(self._due)

    def check(self) -> bool:
        """Restart the failed queries whose backoff is over; False: give up (too many failures)."""
        now = time.monotonic()
        for name, query in list(self.queries.items()):
            if query.isActive or query.exception() is None:
                continue
            if name in self._due:
                due, transient = self._due[name]
                if now >= due:
                    del self._due[name]
                    history = self._transient_restarts if transient else self.restarts
                    history.setdefault(name, []).append(now)
                    log.info("restarting query %s from its checkpoint", name)
                    try:
                        self.queries[name] = self._launchers[name]()
                    except Exception:  # counted as its next failure
                        log.exception("restarting query %s failed", name)
                continue
            log.error("query %s failed: %s", name, query.exception())
            if name not in self._launchers:
                log.error("query %s was not started with JobContext.launch: cannot restart it",
                          name)
                return False
            error = str(query.exception())
            transient = any(text in error for text in TRANSIENT_FAILURES + OUTAGE_FAILURES)
            history = self._transient_restarts if transient else self.restarts
            recent = [t for t in history.get(name, []) if now - t < self._window_s]
            history[name] = recent
            backoff = delay(len(recent), cap_s=self._max_backoff_s)
            if transient:
                self.transient[name] += 1
                why = ("its store cannot be reached" if any(t in error for t in OUTAGE_FAILURES)
                       else "the machine is too busy to start a Python process in time")
                log.warning("query %s: %s (%d such failures so far); restarting it in %.0f s",
                            name, why, self.transient[name], backoff)
            elif len(recent) >= self._max_restarts:
                log.error("query %s: %d failures within %.0f min: giving up", name,
                          len(recent) + 1, self._window_s / 60)
                return False
            else:
                log.info("query %s: restarting it alone in %.0f s", name, backoff)
            self._due[name] = (now + backoff, transient)
        return True

    def stop_all(self, between_batches_s: float = STOP_BETWEEN_BATCHES_S) -> None:
        """Stop every query, each between two of its micro-batches if one comes soon enough.

        ``stop()`` interrupts the batch a query is running: its writer then fails inside
        ``collect()`` and py4j logs a traceback (nothing is lost: the batch runs again from
        the checkpoint at the next start, and the store's upserts make that harmless).
        So each query is stopped once its current batch is done, all of them within
        ``between_batches_s``; a query still busy then is stopped as before.
        """
        self._due.clear()
        deadline = time.monotonic() + between_batches_s
        for name, q in self.queries.items():
            try:
                eventually(functools.partial(_between_batches, q),
                           max(0.0, deadline - time.monotonic()),
                           f"the running batch of {name}", interval_s=0.02)
            except DeadlineExceeded:
                log.info("stopping %s during a batch (it runs again at the next start)", name)
            if q.isActive:
                q.stop()


def _between_batches(query: StreamingQuery) -> bool:
    try:
        return not (query.isActive and query.status["isTriggerActive"])
    except Exception:  # noqa: BLE001 - the JVM going away: nothing to wait for
        return True
