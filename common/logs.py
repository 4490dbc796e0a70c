"""Logging set-up for entry points. Library modules only call ``logging.getLogger(__name__)``."""

from __future__ import annotations

import logging
import time


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
    for noisy in ("py4j", "werkzeug", "engineio", "socketio", "urllib3", "cassandra"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
