"""Following what the stack puts out: its Socket.IO updates and its ``health`` topic."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from common import messages


class Listener:
    """A Socket.IO client on some demo namespaces, keeping every event with its arrival time."""

    def __init__(self, url: str, namespaces: Sequence[str]) -> None:
        import socketio

        self.url = url
        self.namespaces = list(namespaces)
        self.events: list[tuple[float, str, str, Any]] = []  # (time.time(), ns, event, data)
        self._lock = threading.Lock()
        self.client = socketio.Client(reconnection=False)
        for ns in self.namespaces:
            for event in ("update", "history", "unavailable"):
                self.client.on(event, self._handler(ns, event), namespace=ns)

    def _handler(self, ns: str, event: str) -> Callable[[Any], None]:
        def handle(data: Any) -> None:
            now = time.time()
            with self._lock:
                self.events.append((now, ns, event, data))

        return handle

    def connect(self) -> None:
        self.client.connect(self.url, namespaces=self.namespaces, transports=["websocket"],
                            wait_timeout=10)

    def updates(self, ns: str) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return [(t, d) for t, n, e, d in self.events if n == ns and e == "update"]

    def first_update(self, ns: str, stream: str | None = None) -> float | None:
        with self._lock:
            for t, n, e, d in self.events:
                if n == ns and e == "update" and (stream is None or d.get("stream") == stream):
                    return t
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()


class Health:
    """Follows the ``health`` topic from its start: every query's progress, as it arrives."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import TopicPartition

        from buffer import kafka, topics

        self._consumer = kafka.follower(bootstrap, 250)
        self._consumer.assign([TopicPartition(topics.HEALTH.name, 0, 0)])
        self.progress: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.ready: list[str] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.2):
                if msg.error() is not None or msg.value() is None:
                    continue
                with contextlib.suppress(messages.MessageError):
                    value = messages.decode_health(msg.value() or b"")
                    if isinstance(value, messages.Ready):
                        self.ready = list(value.queries)
                    elif isinstance(value, messages.QueryProgress) and not value.idle:
                        with self._lock:  # as JSON: the benchmarks print and save them
                            self.progress.setdefault(value.query, []).append(
                                (time.monotonic(), messages.to_json(value)))

    def latest(self, query: str) -> dict[str, Any] | None:
        with self._lock:
            items = self.progress.get(query) or []
            return items[-1][1] if items else None

    def since(self, query: str, start: float) -> list[dict[str, Any]]:
        with self._lock:
            return [v for t, v in self.progress.get(query) or [] if t >= start]

    def processed(self, query: str) -> int:
        latest = self.latest(query)
        return int((latest or {}).get("totals", {}).get("input_rows", 0))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._consumer.close()
