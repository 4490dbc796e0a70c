"""The display server's stores, opened so that no request ever waits for one.

The disk store opens at once (a SQLite file). Cassandra may still be starting (the
embedded node takes 5-15 s, a compose container a minute or two) or be down: once a
page needs it, it is opened in a background thread that keeps trying, one short attempt
at a time with a growing pause between attempts (1, 2, 4 ... 15 s), and the outcome of
the last attempt is remembered, so a page asking
for a Cassandra demo gets "waiting for Cassandra (12 s ...)" at once instead of a
request stuck for the driver's connect timeout, and a disk demo never waits behind it.

The display only reads: it opens Cassandra without creating any schema
(``create_schema=False``), so its role needs SELECT on the keyspace and nothing more;
the jobs or ``python -m stack`` create the tables.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common import backoff

if TYPE_CHECKING:
    from common.settings import Settings

__all__ = ["StoreOpener"]

log = logging.getLogger(__name__)

#: Longest pause between two attempts to open Cassandra.
MAX_PAUSE_S = 15.0
#: How long one attempt may take (the driver's connect timeout).
ATTEMPT_TIMEOUT_S = 3.0

OpenFn = Callable[[str], Any]


@dataclass
class _Attempts:
    since: float  #: when the display first needed the store
    attempts: int = 0
    error: str | None = None  #: why the last attempt failed


class StoreOpener:
    """Stores by kind ("disk", "cassandra"); :meth:`get` never blocks on Cassandra.

    Args:
        settings: where the stores are.
        open_fn: opens a store of a kind (default: :func:`storage.open_store`, read-only
            for Cassandra); tests replace it.
        on_open: called (in the opening thread) with the kind once a store opened in the
            background; the server sends the waiting pages their history then.
        given: stores already open (tests); then nothing else is opened.
    """

    def __init__(self, settings: Settings, open_fn: OpenFn | None = None,
                 on_open: Callable[[str], None] | None = None,
                 given: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._open = open_fn or self._open_store
        self.on_open = on_open
        self._stores: dict[str, Any] = dict(given or {})
        self.fixed = given is not None
        self._clock = clock
        self._lock = threading.Lock()  # guards the dicts; never held while opening Cassandra
        self._disk_lock = threading.Lock()
        self._attempts: dict[str, _Attempts] = {}
        self._closed = False
        self._stopped = threading.Event()

    def _open_store(self, kind: str) -> Any:
        from storage import open_store

        if kind == "cassandra":
            return open_store(kind, self.settings, create_schema=False,
                              connect_timeout_s=ATTEMPT_TIMEOUT_S)
        return open_store(kind, self.settings)

    def usable(self, kind: str) -> bool:
        """True when a store of ``kind`` can exist here (Cassandra only when configured)."""
        if kind in self._stores:
            return True
        if self.fixed:
            return False
        return kind != "cassandra" or self.settings.cassandra_configured()

    def get(self, kind: str) -> Any:
        """The store of ``kind`` if it is open; None if it is not usable here or still opening
        (then an attempt starts in the background if one is due). Disk errors raise."""
        with self._lock:
            store = self._stores.get(kind)
        if store is not None or not self.usable(kind):
            return store
        if kind != "cassandra":
            with self._disk_lock:
                if kind not in self._stores:
                    opened = self._open(kind)
                    with self._lock:
                        self._stores[kind] = opened
                return self._stores[kind]
        self._kick(kind)
        return None

    def _kick(self, kind: str) -> None:
        """Start the background opener of ``kind`` unless it runs already."""
        with self._lock:
            if self._closed or kind in self._attempts:
                return
            self._attempts[kind] = _Attempts(since=self._clock())
        threading.Thread(target=self._keep_trying, args=(kind,), daemon=True,
                         name=f"open-{kind}").start()

    def _keep_trying(self, kind: str) -> None:
        """Try to open ``kind`` until it opens or the display closes, pausing 1, 2, 4 ... 15 s
        between attempts; each failure is remembered for :meth:`waiting`."""
        while not self._stopped.is_set():
            store: Any = None
            error: str | None = None
            try:
                store = self._open(kind)
            except Exception as e:  # noqa: BLE001 - remembered and shown; tried again later
                error = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
            with self._lock:
                state = self._attempts[kind]
                state.attempts += 1
                if store is not None and not self._closed:
                    self._stores[kind] = store
                    waited = self._clock() - state.since
                    del self._attempts[kind]
                    break
                state.error = error
                pause = backoff.delay(state.attempts - 1, cap_s=MAX_PAUSE_S)
            if store is not None:  # opened while the display was closing
                store.close()
                return
            log.info("%s not open yet (attempt %d; next in %.0f s): %s", kind, state.attempts,
                     pause, error)
            self._stopped.wait(pause)
        else:
            return
        log.info("%s store open after %.1f s", kind, waited)
        if self.on_open is not None:
            try:
                self.on_open(kind)
            except Exception:
                log.exception("announcing the %s store failed", kind)

    def waiting(self, kind: str) -> str | None:
        """Why the store of ``kind`` is not open yet, or None (open, or not usable here)."""
        if not self.usable(kind):
            return None
        with self._lock:
            if kind in self._stores:
                return None
            state = self._attempts.get(kind)
            since = self._clock() - state.since if state else 0.0
            error = state.error if state else None
        where = ""
        if kind == "cassandra":
            where = (f" at {','.join(self.settings.cassandra_hosts)} port "
                     f"{self.settings.cassandra_port}")
        text = f"waiting for {kind.capitalize()}{where} for {since:.0f} s"
        if error:
            text += f" (last attempt: {error})"
        return text + "; this page fills in once it answers."

    def close(self) -> None:
        self._stopped.set()
        with self._lock:
            self._closed = True
            stores, self._stores = dict(self._stores), {}
        if not self.fixed:
            for store in stores.values():
                store.close()
