"""Shared fixtures: a real embedded broker and one Spark session for the whole test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common import kafka, settings
from common.broker import EmbeddedBroker
from common.topics import Topic

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The embedded broker on a free port, with the kit's topics; its log is printed on failure."""
    log_path = tmp_path_factory.mktemp("broker") / "broker.log"
    embedded = EmbeddedBroker(port=0, log_path=log_path)
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def bootstrap(broker: EmbeddedBroker) -> str:
    return broker.bootstrap


@pytest.fixture
def new_topic(bootstrap: str) -> Iterator[Callable[[int], str]]:
    """Make uniquely named topics for one test (``new_topic(3)`` -> name); deleted afterwards."""
    made: list[str] = []

    def make(partitions: int = 3) -> str:
        name = f"test-{uuid.uuid4().hex[:10]}"
        kafka.create_topics(bootstrap, [Topic(name, name, partitions)])
        made.append(name)
        return name

    yield make
    if made:
        kafka.delete_topics(bootstrap, made)


@pytest.fixture(scope="session")
def test_settings(tmp_path_factory: pytest.TempPathFactory) -> settings.Settings:
    data_dir = tmp_path_factory.mktemp("data")
    return settings.load(
        environ={
            "DATA_DIR": str(data_dir),
            "SHUFFLE_PARTITIONS": "2",
            "SPARK_MASTER": "local[2]",
            "LOG_LEVEL": "warning",
        }
    )


@pytest.fixture(scope="session")
def spark(test_settings: settings.Settings):  # type: ignore[no-untyped-def]
    """One Spark session for every test that needs one (starting one costs 5-10 s)."""
    from processing.spark import session

    spark_session = session(test_settings, "streamkit-tests")
    try:
        yield spark_session
    finally:
        spark_session.stop()


@pytest.fixture
def checkpoint(tmp_path: Path) -> str:
    return str(tmp_path / "checkpoint")
