"""The display server's Kafka feed follows a raw topic only while a page shows it (real broker)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buffer import kafka, topics
from buffer.broker import EmbeddedBroker
from common import catalogue
from common.messages import SourceProgress
from common.records import VmstatSample
from common.waiting import eventually
from display.feed import KafkaFeed
from display.hub import Hub

TUMBLING = "vmstat_tumbling"  # a stream of common.catalogue


def sample(host: str) -> dict[str, Any]:
    return VmstatSample(event_time=dt.datetime.now(dt.UTC), host=host, cpu_user=1.0).to_json()


@pytest.fixture
def bootstrap(tmp_path: Path) -> Iterator[str]:
    """A broker of its own: this test writes the kit's ``vmstat`` topic with current event
    times, which would move the watermark of every job test reading the shared broker's."""
    broker = EmbeddedBroker(tmp_path / "kafka", port=0, log_path=tmp_path / "broker.log")
    try:
        yield broker.start()
    finally:
        broker.stop()


def test_a_raw_topic_is_followed_from_its_end_while_a_page_is_open(bootstrap: str) -> None:
    hub = Hub()
    pushed: list[tuple[str, dict[str, Any], str]] = []
    feed = KafkaFeed(bootstrap, hub, lambda event, data, ns: pushed.append((event, data, ns)),
                     fetch_ms=50)
    publisher = kafka.JsonPublisher(bootstrap)
    tag = uuid.uuid4().hex[:8]

    def hosts_pushed() -> set[str]:
        return {r.get("host") for _, data, ns in list(pushed) if ns == "/demo1"
                for r in data.get("records", [])}

    def health_probe(name: str) -> None:
        publisher.publish(topics.HEALTH.name, SourceProgress(component="input", source=name,
                                                             topic="none", sent=0, rejected=0))
        publisher.flush()
        eventually(lambda: name in hub.status(lambda d: None)["sources"], 20,
                   f"health report {name} through the feed")

    feed.start()
    try:
        assert feed.ready.wait(20)
        assert set(feed.following) == set(feed.always)  # no page open: no raw topic
        publisher.publish(topics.VMSTAT.name, sample(f"before-{tag}"))
        publisher.flush()

        hub.client_joined("/demo1")
        eventually(lambda: topics.VMSTAT.name in feed.following, 20, "the feed follows vmstat")
        publisher.publish(topics.VMSTAT.name, sample(f"open-{tag}"))
        publisher.flush()
        eventually(lambda: f"open-{tag}" in hosts_pushed(), 20, "a record while the page is open")
        assert f"before-{tag}" not in hosts_pushed()  # followed from the end, not replayed
        assert any(r.get("host") == f"open-{tag}" for r in hub.recent(1))

        hub.client_left("/demo1")
        eventually(lambda: topics.VMSTAT.name not in feed.following, 20, "vmstat dropped")
        assert hub.recent(1) == []  # a later page gets no stale history
        publisher.publish(topics.VMSTAT.name, sample(f"closed-{tag}"))
        publisher.flush()
        health_probe(f"probe-{tag}")  # the always-followed topics still flow ...
        assert f"closed-{tag}" not in hosts_pushed()  # ... the raw one does not
        # A health or results message not of its type is counted, and the feed goes on.
        before = hub.malformed
        publisher.publish(topics.HEALTH.name, {"kind": "source_progress", "source": "x"})
        publisher.publish(topics.RESULTS.name, {"stream": "vmstat_tumbling", "rows": "none"})
        publisher.flush()
        eventually(lambda: hub.malformed == before + 2, 20, "two malformed messages counted")
        health_probe(f"after-{tag}")
    finally:
        feed.stop()
        publisher.close()


def test_results_do_not_wait_behind_a_raw_topic(bootstrap: str) -> None:
    """Results have a consumer and a thread of their own: while pushing a raw record is
    stuck, a result still reaches its page (one consumer made results wait for the raw
    topics' fetch pacing, and for every raw record before them)."""
    hub = Hub()
    raw_stuck, release = threading.Event(), threading.Event()
    pushed: list[tuple[dict[str, Any], str]] = []

    def emit(event: str, data: dict[str, Any], ns: str) -> None:
        if "records" in data:  # a raw record: hold this loop until the test lets go
            raw_stuck.set()
            release.wait(30)
        pushed.append((data, ns))

    demo = next(d for d in catalogue.DEMOS if TUMBLING in d.streams)
    feed = KafkaFeed(bootstrap, hub, emit, fetch_ms=200, results_fetch_ms=50)
    publisher = kafka.JsonPublisher(bootstrap)
    feed.start()
    try:
        assert feed.ready.wait(20)
        hub.client_joined("/demo1")
        eventually(lambda: topics.VMSTAT.name in feed.following, 20, "the feed follows vmstat")
        publisher.publish(topics.VMSTAT.name, sample("stuck"))
        publisher.flush()
        assert raw_stuck.wait(20), "the raw record reached emit"
        publisher.publish(topics.RESULTS.name, {"stream": TUMBLING, "store": demo.store,
                                                "batch_id": 7, "rows": []})
        publisher.flush()
        eventually(lambda: any(d.get("batch_id") == 7 and ns == demo.namespace
                               for d, ns in list(pushed)), 20,
                   "the result pushed while the raw loop is stuck")
        assert not release.is_set()
    finally:
        release.set()
        feed.stop()
        publisher.close()
