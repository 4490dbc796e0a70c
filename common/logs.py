"""Logging set-up for entry points. Library modules only call ``logging.getLogger(__name__)``."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable


class RepeatFilter(logging.Filter):
    """Lets the same message from a logger through once per ``every_s`` seconds.

    librdkafka logs each failed connection attempt (every 50-1000 ms of backoff, per
    client): while a broker restarts, a handful of clients wrote 300 identical lines in
    4 s. One line per client and message every half minute says the same. The message
    is compared without its numbers (ports, counts and milliseconds change).
    """

    def __init__(self, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = re.sub(r"\d+", "#", record.getMessage())
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        return True


class _UtcFormatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]


def setup_logging(level: str = "info") -> None:
    """Log to stderr with UTC timestamps, one line per record, at ``level``."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        _UtcFormatter("%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s",
                      "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    client = logging.getLogger("librdkafka")
    if not any(isinstance(f, RepeatFilter) for f in client.filters):
        client.addFilter(RepeatFilter())
    for noisy in ("py4j", "werkzeug", "engineio", "socketio", "urllib3", "cassandra"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
