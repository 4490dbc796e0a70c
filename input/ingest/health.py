"""The ingest's health report: its counters logged and published to ``health`` as
``source_progress`` of source ``ingest``, every few seconds."""

from __future__ import annotations

import logging
import threading
import time

from buffer import topics
from common.messages import SourceProgress
from input.ingest.handler import Ingest

__all__ = ["report_health"]

log = logging.getLogger(__name__)


def report_health(ingest: Ingest, bootstrap: str, stop: threading.Event,
                   interval_s: float = 2.0) -> None:
    """Log the counters and publish them to ``health`` every ``interval_s`` until ``stop``."""
    from buffer.kafka import JsonPublisher

    publisher = JsonPublisher(bootstrap)
    last = (time.monotonic(), 0)
    try:
        while not stop.wait(interval_s):
            stats = ingest.stats()
            now, total = time.monotonic(), stats["accepted"] + stats["rejected"] + stats["failed"]
            rate = (total - last[1]) / max(now - last[0], 1e-6)
            last = (now, total)
            publisher.publish(topics.HEALTH.name, SourceProgress(
                component="input", source=ingest.name,
                topic=",".join(sorted({route.topic for route in ingest.routes.values()})),
                sent=stats["accepted"], rejected=stats["rejected"], failed=stats["failed"],
                rate=round(rate, 2), time=stats["time"]), key=ingest.name)
            log.debug("ingest: %s", stats)
    finally:
        publisher.close()
