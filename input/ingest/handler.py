"""One ingest request end to end: validate, publish (waiting for Kafka's acknowledgement) or
dead-letter, and count. :class:`Ingest` knows no HTTP: :mod:`input.ingest.app` is a thin
layer over :meth:`Ingest.handle`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from common.records import format_time, utc_now
from input.base import Clock, Sink
from input.ingest.sink import PUBLISH_ERRORS
from input.ingest.validate import STATUS, Rejection, Route, validate

__all__ = ["DEAD_LETTER_RAW_CHARS", "Ingest"]

log = logging.getLogger(__name__)

#: How much of a rejected body the dead letter keeps (characters, or bytes if not UTF-8).
DEAD_LETTER_RAW_CHARS = 2048


class Ingest:
    """Validates, publishes and counts; the Flask views are a thin layer over :meth:`handle`.

    ``accepted``, ``rejected``, ``rejected_by_reason`` and ``failed`` are the
    counters a supervising process reads for its health report.
    """

    name = "ingest"

    def __init__(self, sink: Sink, routes: Mapping[str, Route], max_body_bytes: int,
                 clock: Clock = utc_now, dead_letter_raw_chars: int = DEAD_LETTER_RAW_CHARS) -> None:
        self.sink = sink
        self.routes = dict(routes)
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.dead_letter_raw_chars = dead_letter_raw_chars
        self._lock = threading.Lock()
        self._accepted = 0
        self._failed = 0
        self._rejected: dict[str, int] = {}

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    @property
    def failed(self) -> int:
        with self._lock:
            return self._failed

    @property
    def rejected(self) -> int:
        with self._lock:
            return sum(self._rejected.values())

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        with self._lock:
            return dict(self._rejected)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "accepted": self._accepted,
                "rejected": sum(self._rejected.values()),
                "rejected_by_reason": dict(sorted(self._rejected.items())),
                "failed": self._failed,
                "topics": {name: route.topic for name, route in self.routes.items()},
                "time": format_time(self.clock()),
            }

    def handle(self, name: str, mimetype: str, charset: str | None, body: bytes | None,
               body_size: int | None) -> tuple[int, dict[str, Any]]:
        """Answer one ``POST /ingest/<name>``: (HTTP status, JSON answer).

        ``body`` is None when it was too large to read; ``body_size`` is its
        declared length when known.
        """
        try:
            record, route = validate(self.routes, self.max_body_bytes, name, mimetype, charset,
                                     body, body_size)
        except Rejection as r:
            self._reject(name, r, body, body_size)
            return STATUS[r.code], {"error": r.code, "reason": r.reason}
        try:
            self.sink.publish(route.topic, record.key(), record)
        except PUBLISH_ERRORS as e:
            with self._lock:
                self._failed += 1
            log.error("ingest: publishing to %s failed: %s", route.topic, e)
            return 503, {"error": "unavailable", "reason": f"Kafka did not take the record: {e}"}
        with self._lock:
            self._accepted += 1
        return 202, {"accepted": True, "topic": route.topic, "key": record.key()}

    def _reject(self, name: str, rejection: Rejection, body: bytes | None,
                body_size: int | None) -> None:
        with self._lock:
            self._rejected[rejection.code] = self._rejected.get(rejection.code, 0) + 1
        raw: bytes | str = b"" if body is None else body
        reason = f"{rejection.code} (POST /ingest/{name}): {rejection.reason}"
        limit = self.dead_letter_raw_chars
        if body is not None:
            try:
                text = body.decode("utf-8")
                raw = text[:limit]
                truncated = len(text) > limit
            except UnicodeDecodeError:
                raw = body[:limit]
                truncated = len(body) > limit
            if truncated:
                reason += f" [body truncated to {limit} of {len(body)} bytes]"
        else:
            reason += f" [body of {body_size if body_size is not None else 'unknown'} bytes not read]"
        log.warning("ingest: rejected %s", reason)
        self.sink.dead_letter(self.name, reason, raw)

    def close(self) -> None:
        """Flush what was published and close the sink if it can be closed."""
        close = getattr(self.sink, "close", None)
        try:
            self.sink.flush()
        finally:
            if callable(close):
                close()
